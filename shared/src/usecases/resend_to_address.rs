//! 10npay's resend: the request names the address as well as the user, and a mail goes only
//! to that user's pending address. Still one conditional write.

use std::sync::Arc;

use crate::config::{self, ConfigError};
use crate::wiring::Wiring;

use crate::domain::user::SendRefusal;
use crate::domain::{CooldownPolicy, EmailAddress, SendRequirements, UnixTime, UserId};
use crate::ports::{ClaimCondition, SendClaims};
use crate::usecases::Failure;
use crate::usecases::delivery::Delivery;

#[derive(Debug, thiserror::Error)]
pub enum AddressedResendError {
    #[error("e-mail is disabled")]
    MailDisabled,
    #[error("no such user")]
    UserNotFound,
    #[error("the address is already confirmed")]
    AlreadyConfirmed,
    #[error("the request names another address than the user's")]
    AddressMismatch,
    #[error("a confirmation mail was sent less than a cooldown ago")]
    CooldownActive { remaining_seconds: u64 },
    #[error("mail to the address bounced or was reported as spam")]
    Undeliverable,
    #[error(transparent)]
    Failed(#[from] Failure),
}

impl AddressedResend {
    pub fn from_config(w: &Wiring<'_>) -> Result<Self, ConfigError> {
        let store = w.store()?;
        let delivery = Delivery::from_config(w.config, store.clone(), w.mailer()?)?;
        Ok(Self::new(store, delivery, config::cooldown(w.config)?))
    }
}

pub struct AddressedResend {
    claims: Arc<dyn SendClaims>,
    delivery: Delivery,
    cooldown: CooldownPolicy,
}

impl AddressedResend {
    pub fn new(claims: Arc<dyn SendClaims>, delivery: Delivery, cooldown: CooldownPolicy) -> Self {
        Self { claims, delivery, cooldown }
    }

    #[tracing::instrument(name = "send confirmation mail to a named address", skip_all, fields(user_id = %user_id))]
    pub async fn resend(
        &self,
        user_id: &UserId,
        address: &EmailAddress,
        now: UnixTime,
    ) -> Result<(), AddressedResendError> {
        if !self.delivery.settings().enabled {
            return Err(AddressedResendError::MailDisabled);
        }
        let requirements = SendRequirements { client: None, address: Some(address), command: None };
        let until = self.cooldown.claim_until(now);
        let code = self.delivery.new_code(user_id, now);
        let claim = self
            .claims
            .claim_send(
                user_id,
                now,
                until,
                ClaimCondition::CooldownOver,
                &requirements,
                code.as_ref().map(|c| c.stored()),
            )
            .await
            .map_err(Failure::Storage)?
            .map_err(|seen| match crate::usecases::explain_refusal(seen.as_ref(), &requirements, now) {
                SendRefusal::UserNotFound | SendRefusal::ClientMismatch => AddressedResendError::UserNotFound,
                SendRefusal::AlreadyConfirmed => AddressedResendError::AlreadyConfirmed,
                SendRefusal::AddressMismatch => AddressedResendError::AddressMismatch,
                SendRefusal::Undeliverable => AddressedResendError::Undeliverable,
                SendRefusal::CooldownActive { remaining_seconds } => {
                    AddressedResendError::CooldownActive { remaining_seconds }
                }
            })?;
        self.delivery.deliver(&claim, None, now, code.as_ref(), None).await.map_err(Failure::from)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::usecases::fakes::{Fakes, pending_user};

    #[tokio::test]
    async fn only_the_users_own_pending_address_is_mailed() {
        let fakes = Fakes::new();
        fakes.store.insert(pending_user("7", "ada@example.org"));
        let resend = AddressedResend::new(
            fakes.store.clone(),
            fakes.delivery(),
            CooldownPolicy { period: Duration::from_secs(60) },
        );
        let user = UserId::parse("7").unwrap();
        let other = EmailAddress::parse("eve@example.org").unwrap();
        let refused = resend.resend(&user, &other, UnixTime(0)).await.unwrap_err();
        assert!(matches!(refused, AddressedResendError::AddressMismatch), "{refused:?}");
        let own = EmailAddress::parse("Ada@Example.org").unwrap();
        resend.resend(&user, &own, UnixTime(0)).await.unwrap();
        assert_eq!(fakes.mailer.sent_to(), ["ada@example.org"]);
    }
}
