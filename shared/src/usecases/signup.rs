//! A sign-up event: create the pending user and send the first confirmation mail, once,
//! however often the event is delivered.

use std::sync::Arc;

use crate::config::{self, ConfigError};
use crate::wiring::Wiring;

use crate::domain::{CooldownPolicy, SignUp, UnixTime};
use crate::ports::{Claim, ClaimCondition, CreateOutcome, SendClaims, UserRegistry};
use crate::usecases::Failure;
use crate::usecases::delivery::Delivery;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignUpOutcome {
    /// The user was created (or found unmailed) and the first mail went out.
    MailSent,
    /// Mail is switched off: the user is pending and nothing was sent.
    CreatedWithoutMail,
    /// A redelivery: this sign-up was handled before, and nothing is sent again.
    AlreadyHandled,
}

#[derive(Debug, thiserror::Error)]
pub enum SignUpError {
    /// The event contradicts what is stored; retrying cannot help, so it goes to the dead-letter queue.
    #[error("the sign-up conflicts with a stored user: {0}")]
    Conflict(&'static str),
    #[error(transparent)]
    Failed(#[from] Failure),
}

impl SignUps {
    pub fn from_config(w: &Wiring<'_>) -> Result<Self, ConfigError> {
        let store = w.store()?;
        let delivery = Delivery::from_config(w.config, store.clone(), w.mailer()?)?;
        Ok(Self::new(store.clone(), store, delivery, config::cooldown(w.config)?))
    }
}

pub struct SignUps {
    registry: Arc<dyn UserRegistry>,
    claims: Arc<dyn SendClaims>,
    delivery: Delivery,
    cooldown: CooldownPolicy,
}

impl SignUps {
    pub fn new(
        registry: Arc<dyn UserRegistry>,
        claims: Arc<dyn SendClaims>,
        delivery: Delivery,
        cooldown: CooldownPolicy,
    ) -> Self {
        Self { registry, claims, delivery, cooldown }
    }

    #[tracing::instrument(name = "process sign-up", skip_all, fields(user_id = %sign_up.user_id))]
    pub async fn process(&self, sign_up: &SignUp, now: UnixTime) -> Result<SignUpOutcome, SignUpError> {
        let mail_enabled = self.delivery.settings().enabled;
        let until = self.cooldown.claim_until(now);
        let created = self
            .registry
            .create_pending_user(sign_up, now, mail_enabled.then_some(until))
            .await
            .map_err(Failure::Storage)?;
        let claim = match created {
            CreateOutcome::AddressTaken => {
                return Err(SignUpError::Conflict("another user owns the address"));
            }
            CreateOutcome::Created(_) if !mail_enabled => return Ok(SignUpOutcome::CreatedWithoutMail),
            CreateOutcome::Created(mut user) => {
                // The claim was written with the user; before it, no cooldown existed.
                user.cooldown_until = None;
                Claim { user, until }
            }
            CreateOutcome::Existing(user) if user.email.normalized() != sign_up.email.normalized() => {
                return Err(SignUpError::Conflict("the user exists with another address"));
            }
            CreateOutcome::Existing(_) if !mail_enabled => return Ok(SignUpOutcome::AlreadyHandled),
            CreateOutcome::Existing(user) if user.cooldown_until.is_some() => {
                return Ok(SignUpOutcome::AlreadyHandled);
            }
            // Created before, but its mail failed and the claim was given back: send it now.
            CreateOutcome::Existing(user) => {
                match self
                    .claims
                    .claim_send(&user.id, now, until, ClaimCondition::NothingSentYet, &Default::default())
                    .await
                    .map_err(Failure::Storage)?
                {
                    Ok(claim) => claim,
                    Err(_) => return Ok(SignUpOutcome::AlreadyHandled),
                }
            }
        };
        self.delivery.deliver(&claim, sign_up.locale.as_ref(), now).await.map_err(Failure::from)?;
        Ok(SignUpOutcome::MailSent)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::{EmailAddress, UserId};
    use crate::usecases::fakes::Fakes;

    fn sign_ups(fakes: &Fakes) -> SignUps {
        let store = fakes.store.clone();
        SignUps::new(store.clone(), store, fakes.delivery(), CooldownPolicy { period: Duration::from_secs(60) })
    }

    fn sign_up(id: &str, email: &str) -> SignUp {
        SignUp {
            user_id: UserId::parse(id).unwrap(),
            email: EmailAddress::parse(email).unwrap(),
            locale: None,
            client_id: None,
        }
    }

    #[tokio::test]
    async fn a_redelivered_sign_up_sends_nothing_again() {
        let fakes = Fakes::new();
        let sign_ups = sign_ups(&fakes);
        let event = sign_up("u-1", "ada@example.org");
        assert_eq!(sign_ups.process(&event, UnixTime(0)).await.unwrap(), SignUpOutcome::MailSent);
        assert_eq!(sign_ups.process(&event, UnixTime(1)).await.unwrap(), SignUpOutcome::AlreadyHandled);
        assert_eq!(fakes.mailer.sent_to(), ["ada@example.org"]);
    }

    #[tokio::test]
    async fn a_failed_first_mail_is_sent_on_redelivery() {
        let fakes = Fakes::new();
        let sign_ups = sign_ups(&fakes);
        let event = sign_up("u-1", "ada@example.org");
        fakes.mailer.fail_next();
        assert!(matches!(sign_ups.process(&event, UnixTime(0)).await, Err(SignUpError::Failed(_))));
        assert_eq!(sign_ups.process(&event, UnixTime(1)).await.unwrap(), SignUpOutcome::MailSent);
        assert_eq!(fakes.mailer.sent_to(), ["ada@example.org"]);
    }

    #[tokio::test]
    async fn an_address_owned_by_another_user_is_a_conflict() {
        let fakes = Fakes::new();
        let sign_ups = sign_ups(&fakes);
        sign_ups.process(&sign_up("u-1", "ada@example.org"), UnixTime(0)).await.unwrap();
        let taken = sign_ups.process(&sign_up("u-2", "ADA@example.org"), UnixTime(0)).await;
        assert!(matches!(taken, Err(SignUpError::Conflict(_))), "{taken:?}");
    }
}
