//! Mastodon's resend: for the OAuth application that created the user, optionally to a new
//! pending address first (old links die, the new address is mailed at once).

use std::sync::Arc;

use crate::config::{self, ConfigError};
use crate::wiring::Wiring;

use crate::domain::user::SendRefusal;
use crate::domain::{ClientId, CooldownPolicy, EmailAddress, SendRequirements, Throttle, Throttled, UnixTime, UserId};
use crate::ports::{ClaimCondition, RequestCounters, SendClaims, UserReader, UserRegistry};
use crate::usecases::Failure;
use crate::usecases::change_address::{AddressChange, AddressChangeError};
use crate::usecases::delivery::Delivery;
use crate::usecases::throttle::{self, Limited, ThrottleError};

#[derive(Debug, thiserror::Error)]
pub enum ClientResendError {
    #[error("e-mail is disabled")]
    MailDisabled,
    /// No such user, or one that another application created.
    #[error("the user was not created by this client")]
    NotOwnedByClient,
    #[error("the address is already confirmed")]
    AlreadyConfirmed,
    #[error("another user owns the new address")]
    AddressTaken,
    #[error("a confirmation mail was sent less than a cooldown ago")]
    CooldownActive { remaining_seconds: u64 },
    #[error("mail to the address bounced or was reported as spam")]
    Undeliverable,
    #[error("the request is over a limit")]
    Throttled(Throttled),
    #[error(transparent)]
    Failed(#[from] Failure),
}

impl From<Limited<ClientResendError>> for ClientResendError {
    fn from(err: Limited<ClientResendError>) -> Self {
        match err {
            Limited::Throttled(throttled) => ClientResendError::Throttled(throttled),
            Limited::Refused(refused) => refused,
        }
    }
}

impl From<ThrottleError> for ClientResendError {
    fn from(err: ThrottleError) -> Self {
        Limited::from(err).into()
    }
}

impl ClientResend {
    pub fn from_config(w: &Wiring<'_>) -> Result<Self, ConfigError> {
        let store = w.store()?;
        let delivery = Delivery::from_config(w.config, store.clone(), w.mailer()?)?;
        Ok(Self::new(store.clone(), store.clone(), store.clone(), store, delivery, config::cooldown(w.config)?))
    }
}

pub struct ClientResend {
    addresses: AddressChange,
    claims: Arc<dyn SendClaims>,
    counters: Arc<dyn RequestCounters>,
    delivery: Delivery,
    cooldown: CooldownPolicy,
}

impl ClientResend {
    pub fn new(
        users: Arc<dyn UserReader>,
        registry: Arc<dyn UserRegistry>,
        claims: Arc<dyn SendClaims>,
        counters: Arc<dyn RequestCounters>,
        delivery: Delivery,
        cooldown: CooldownPolicy,
    ) -> Self {
        Self { addresses: AddressChange::new(users, registry), claims, counters, delivery, cooldown }
    }

    fn refusal(refusal: SendRefusal) -> ClientResendError {
        match refusal {
            SendRefusal::UserNotFound | SendRefusal::ClientMismatch => ClientResendError::NotOwnedByClient,
            SendRefusal::AlreadyConfirmed => ClientResendError::AlreadyConfirmed,
            SendRefusal::Undeliverable => ClientResendError::Undeliverable,
            SendRefusal::CooldownActive { remaining_seconds } => {
                ClientResendError::CooldownActive { remaining_seconds }
            }
            // No address is required of this send.
            SendRefusal::AddressMismatch => ClientResendError::NotOwnedByClient,
        }
    }

    /// Resends to the user's pending address, or first replaces it with `new_address`. The
    /// checks come first, so a refused request changes nothing: a plain resend is counted by
    /// `throttles` in the claim's round trip, an address change before anything is written.
    #[tracing::instrument(name = "send confirmation mail for a client", skip_all, fields(user_id = %user_id))]
    pub async fn resend(
        &self,
        user_id: &UserId,
        client: &ClientId,
        new_address: Option<&EmailAddress>,
        now: UnixTime,
        throttles: &[Throttle],
    ) -> Result<(), ClientResendError> {
        if !self.delivery.settings().enabled {
            return Err(ClientResendError::MailDisabled);
        }
        let requirements = SendRequirements { client: Some(client), address: None, command: None };
        let mut throttles = throttles;
        if let Some(new_address) = new_address {
            self.count_only(throttles, now).await?;
            throttles = &[];
            self.change_address(user_id, &requirements, new_address, now).await?;
        }
        let until = self.cooldown.claim_until(now);
        let code = self.delivery.new_code(user_id, now);
        let stored_code = code.as_ref().map(|code| code.stored());
        let claim = async {
            self.claims
                .claim_send(user_id, now, until, ClaimCondition::CooldownOver, &requirements, stored_code)
                .await
                .map_err(Failure::Storage)?
                .map_err(|seen| Self::refusal(crate::usecases::explain_refusal(seen.as_ref(), &requirements, now)))
        };
        let claim =
            throttle::claim_counted(self.counters.as_ref(), self.claims.as_ref(), throttles, now, claim).await?;
        self.delivery.deliver(&claim, None, now, code.as_ref(), None).await.map_err(Failure::from)?;
        Ok(())
    }

    /// Counts a request that is refused before any claim, as one that reached it would be.
    pub async fn count_only(&self, throttles: &[Throttle], now: UnixTime) -> Result<(), ClientResendError> {
        Ok(throttle::count_request(self.counters.as_ref(), throttles, now).await?)
    }

    /// Moves a pending user of `client` to `new_address` unless it is already there.
    async fn change_address(
        &self,
        user_id: &UserId,
        requirements: &SendRequirements<'_>,
        new_address: &EmailAddress,
        now: UnixTime,
    ) -> Result<(), ClientResendError> {
        self.addresses.change(user_id, requirements, new_address, now).await.map_err(|err| match err {
            AddressChangeError::Refused(refusal) => Self::refusal(refusal),
            AddressChangeError::AddressTaken => ClientResendError::AddressTaken,
            AddressChangeError::Failed(failure) => ClientResendError::Failed(failure),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::usecases::fakes::{Fakes, pending_user};

    fn resend(fakes: &Fakes) -> ClientResend {
        let store = fakes.store.clone();
        ClientResend::new(
            store.clone(),
            store.clone(),
            store.clone(),
            store,
            fakes.delivery(),
            CooldownPolicy { period: Duration::from_secs(60) },
        )
    }

    #[tokio::test]
    async fn another_applications_user_is_not_mailed_or_moved() {
        let fakes = Fakes::new();
        let mut user = pending_user("u-1", "ada@example.org");
        user.client_id = Some(ClientId::parse("web").unwrap());
        fakes.store.insert(user);
        let other_app = ClientId::parse("app").unwrap();
        let new = EmailAddress::parse("new@example.org").unwrap();
        let refused =
            resend(&fakes).resend(&UserId::parse("u-1").unwrap(), &other_app, Some(&new), UnixTime(0), &[]).await;
        assert!(matches!(refused, Err(ClientResendError::NotOwnedByClient)), "{refused:?}");
        assert_eq!(fakes.store.user("u-1").unwrap().email.as_typed(), "ada@example.org");
        assert!(fakes.mailer.sent_to().is_empty());
    }

    #[tokio::test]
    async fn a_new_address_is_mailed_at_once_even_within_the_old_ones_cooldown() {
        let fakes = Fakes::new();
        let mut user = pending_user("u-1", "ada@example.org");
        user.client_id = Some(ClientId::parse("web").unwrap());
        user.cooldown_until = Some(UnixTime(100));
        fakes.store.insert(user);
        let web = ClientId::parse("web").unwrap();
        let new = EmailAddress::parse("new@example.org").unwrap();
        resend(&fakes).resend(&UserId::parse("u-1").unwrap(), &web, Some(&new), UnixTime(50), &[]).await.unwrap();
        assert_eq!(fakes.mailer.sent_to(), ["new@example.org"]);
        let again = resend(&fakes).resend(&UserId::parse("u-1").unwrap(), &web, None, UnixTime(51), &[]).await;
        assert!(matches!(again, Err(ClientResendError::CooldownActive { remaining_seconds: 59 })), "{again:?}");
    }
}
