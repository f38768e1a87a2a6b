//! Resending the confirmation mail to a user named by id or address: at most once per
//! cooldown, decided and claimed in one conditional write.

use std::sync::Arc;

use crate::config::{self, ConfigError};
use crate::wiring::Wiring;

use crate::domain::user::SendRefusal;
use crate::domain::{CooldownPolicy, Identity, Locale, SendRequirements, UnixTime, UserId};
use crate::ports::{ClaimCondition, SendClaims, UserReader};
use crate::usecases::delivery::Delivery;
use crate::usecases::{Failure, user_id_of};

/// A mail that went out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// Seconds until the next mail may be sent.
    pub cooldown_seconds: u64,
    pub locale: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum ResendError {
    #[error("e-mail is disabled")]
    MailDisabled,
    #[error("no such user")]
    UserNotFound,
    #[error("the address is already confirmed")]
    AlreadyConfirmed,
    #[error("a confirmation mail was sent less than a cooldown ago")]
    CooldownActive { remaining_seconds: u64 },
    #[error(transparent)]
    Failed(#[from] Failure),
}

impl Resend {
    /// `TABLE_NAME`, the mail settings and `COOLDOWN_SECONDS`.
    pub fn from_config(w: &Wiring<'_>) -> Result<Self, ConfigError> {
        let store = w.store()?;
        let delivery = Delivery::from_config(w.config, store.clone(), w.mailer()?)?;
        Ok(Self::new(store.clone(), store, delivery, config::cooldown(w.config)?))
    }
}

pub struct Resend {
    users: Arc<dyn UserReader>,
    claims: Arc<dyn SendClaims>,
    delivery: Delivery,
    cooldown: CooldownPolicy,
}

impl Resend {
    pub fn new(
        users: Arc<dyn UserReader>,
        claims: Arc<dyn SendClaims>,
        delivery: Delivery,
        cooldown: CooldownPolicy,
    ) -> Self {
        Self { users, claims, delivery, cooldown }
    }

    pub fn mail_enabled(&self) -> bool {
        self.delivery.settings().enabled
    }

    /// Resends the confirmation mail, at most once per cooldown: one write, no read.
    #[tracing::instrument(name = "send confirmation mail", skip_all, fields(user_id = %user_id))]
    pub async fn resend(
        &self,
        user_id: &UserId,
        requested_locale: Option<&Locale>,
        now: UnixTime,
    ) -> Result<Sent, ResendError> {
        if !self.mail_enabled() {
            return Err(ResendError::MailDisabled);
        }
        let none = SendRequirements::default();
        let until = self.cooldown.claim_until(now);
        let claim = self
            .claims
            .claim_send(user_id, now, until, ClaimCondition::CooldownOver, &none)
            .await
            .map_err(Failure::Storage)?
            .map_err(|seen| match SendRefusal::explain(seen.as_ref(), &none, now) {
                SendRefusal::UserNotFound => ResendError::UserNotFound,
                SendRefusal::AlreadyConfirmed => ResendError::AlreadyConfirmed,
                SendRefusal::CooldownActive { remaining_seconds } => ResendError::CooldownActive { remaining_seconds },
                // Only asked of sends with requirements, which this one has none of.
                SendRefusal::ClientMismatch | SendRefusal::AddressMismatch => ResendError::UserNotFound,
            })?;
        let locale = self.delivery.deliver(&claim, requested_locale, now).await.map_err(Failure::from)?;
        Ok(Sent { cooldown_seconds: self.cooldown.period.as_secs(), locale })
    }

    /// Resends to a user named by address or id: one read to find the user when named by
    /// address, then the same single write as [`Self::resend`].
    pub async fn resend_to(
        &self,
        identity: &Identity,
        requested_locale: Option<&Locale>,
        now: UnixTime,
    ) -> Result<Sent, ResendError> {
        if !self.mail_enabled() {
            return Err(ResendError::MailDisabled);
        }
        let user_id = user_id_of(self.users.as_ref(), identity).await?.ok_or(ResendError::UserNotFound)?;
        self.resend(&user_id, requested_locale, now).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::{EmailAddress, UserStatus};
    use crate::usecases::fakes::{Fakes, pending_user};

    const MINUTE: CooldownPolicy = CooldownPolicy { period: Duration::from_secs(60) };

    fn resend(fakes: &Fakes) -> Resend {
        Resend::new(fakes.store.clone(), fakes.store.clone(), fakes.delivery(), MINUTE)
    }

    #[tokio::test]
    async fn a_resend_mails_once_per_cooldown_by_the_clock_it_is_given() {
        let fakes = Fakes::new();
        fakes.store.insert(pending_user("u-1", "ada@example.org"));
        let resend = resend(&fakes);
        let user = UserId::parse("u-1").unwrap();
        let sent = resend.resend(&user, None, UnixTime(1_000)).await.unwrap();
        assert_eq!(sent.cooldown_seconds, 60);
        let refused = resend.resend(&user, None, UnixTime(1_059)).await.unwrap_err();
        assert!(matches!(refused, ResendError::CooldownActive { remaining_seconds: 1 }), "{refused:?}");
        resend.resend(&user, None, UnixTime(1_060)).await.unwrap();
        assert_eq!(fakes.mailer.sent_to(), ["ada@example.org", "ada@example.org"]);
    }

    #[tokio::test]
    async fn a_mail_that_fails_gives_the_claim_back() {
        let fakes = Fakes::new();
        fakes.store.insert(pending_user("u-1", "ada@example.org"));
        fakes.mailer.fail_next();
        let resend = resend(&fakes);
        let user = UserId::parse("u-1").unwrap();
        let failed = resend.resend(&user, None, UnixTime(1_000)).await.unwrap_err();
        assert!(matches!(failed, ResendError::Failed(Failure::Delivery(_))), "{failed:?}");
        assert_eq!(fakes.store.user("u-1").unwrap().cooldown_until, None);
        resend.resend(&user, None, UnixTime(1_001)).await.unwrap();
        assert_eq!(fakes.mailer.sent_to(), ["ada@example.org"]);
    }

    #[tokio::test]
    async fn unknown_and_confirmed_users_are_refused_without_mail() {
        let fakes = Fakes::new();
        let mut confirmed = pending_user("u-2", "grace@example.org");
        confirmed.status = UserStatus::Enabled;
        fakes.store.insert(confirmed);
        let resend = resend(&fakes);
        let unknown = Identity::Email(EmailAddress::parse("nobody@example.org").unwrap());
        assert!(matches!(resend.resend_to(&unknown, None, UnixTime(0)).await, Err(ResendError::UserNotFound)));
        let by_address = Identity::Email(EmailAddress::parse("GRACE@example.org").unwrap());
        assert!(matches!(resend.resend_to(&by_address, None, UnixTime(0)).await, Err(ResendError::AlreadyConfirmed)));
        assert!(fakes.mailer.sent_to().is_empty());
    }

    #[tokio::test]
    async fn a_storage_failure_is_ours_and_sends_nothing() {
        let fakes = Fakes::new();
        fakes.store.insert(pending_user("u-1", "ada@example.org"));
        fakes.store.fail_next();
        let failed = resend(&fakes).resend(&UserId::parse("u-1").unwrap(), None, UnixTime(0)).await.unwrap_err();
        assert!(matches!(failed, ResendError::Failed(Failure::Storage(_))), "{failed:?}");
        assert!(fakes.mailer.sent_to().is_empty());
    }
}
