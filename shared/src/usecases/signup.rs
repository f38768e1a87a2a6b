//! A sign-up event: create the pending user and send the first confirmation mail, once,
//! however often the event is delivered.

use std::sync::Arc;

use crate::config::{self, ConfigError};
use crate::wiring::Wiring;

use crate::domain::{CooldownPolicy, SignUp, UnixTime, UserStatus};
use crate::ports::{ClaimCondition, CreateOutcome, Mailer, SendClaims, UserRegistry};
use crate::usecases::Failure;
use crate::usecases::delivery::{Delivery, DeliveryError};

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
    /// Another delivery of this sign-up holds the first mail's claim and may still be sending;
    /// the message comes back once the claim has lapsed.
    #[error("the first mail's claim is held for {retry_after_seconds} s more")]
    FirstMailInFlight { retry_after_seconds: u64 },
    /// SES refused the mail for the account's sending rate: nothing was sent and the claim was
    /// given back, so sending it later sends it once.
    #[error("SES refused the first mail for the account's sending rate")]
    MailRefusedForRate,
    #[error(transparent)]
    Failed(#[from] Failure),
}

impl SignUps {
    /// Sign-ups whose first mails go through `mailer` (the sign-up consumer's paced SES mailer).
    pub fn from_config(w: &Wiring<'_>, mailer: Arc<dyn Mailer>) -> Result<Self, ConfigError> {
        let store = w.store()?;
        let delivery = Delivery::from_config(w.config, store.clone(), mailer)?;
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
        let code = self.delivery.new_code(&sign_up.user_id, now);
        let stored_code = code.as_ref().map(|code| code.stored());
        let created = self
            .registry
            .create_pending_user(sign_up, now, mail_enabled.then_some(until), stored_code)
            .await
            .map_err(Failure::Storage)?;
        let claim = match created {
            CreateOutcome::AddressTaken => {
                return Err(SignUpError::Conflict("another user owns the address"));
            }
            CreateOutcome::Created { claim: None, .. } => return Ok(SignUpOutcome::CreatedWithoutMail),
            CreateOutcome::Created { claim: Some(claim), .. } => claim,
            CreateOutcome::Existing(user) if user.email.normalized() != sign_up.email.normalized() => {
                return Err(SignUpError::Conflict("the user exists with another address"));
            }
            CreateOutcome::Existing(_) if !mail_enabled => return Ok(SignUpOutcome::AlreadyHandled),
            CreateOutcome::Existing(user) if user.last_mail_sent_at.is_some() => {
                return Ok(SignUpOutcome::AlreadyHandled);
            }
            // Created before, but its first mail never reached the mail service (it failed, or
            // the invocation died mid-send): send it once the earlier claim has lapsed.
            CreateOutcome::Existing(_) => {
                match self
                    .claims
                    .claim_send(
                        &sign_up.user_id,
                        now,
                        until,
                        ClaimCondition::FirstMailNotAccepted,
                        &Default::default(),
                        stored_code,
                    )
                    .await
                    .map_err(Failure::Storage)?
                {
                    Ok(claim) => claim,
                    Err(Some(seen))
                        if seen.status == UserStatus::EmailConfirmationPending && seen.last_mail_sent_at.is_none() =>
                    {
                        let retry_after_seconds = now.seconds_until(seen.cooldown_until.unwrap_or(now)).max(1);
                        return Err(SignUpError::FirstMailInFlight { retry_after_seconds });
                    }
                    Err(_) => return Ok(SignUpOutcome::AlreadyHandled),
                }
            }
        };
        match self
            .delivery
            .deliver(&claim, sign_up.locale.as_ref(), now, code.as_ref(), sign_up.redirect_to.as_deref())
            .await
        {
            Ok(_) => Ok(SignUpOutcome::MailSent),
            Err(DeliveryError::MailSend(refusal)) if refusal.is_refused_for_rate() => {
                Err(SignUpError::MailRefusedForRate)
            }
            Err(err) => Err(SignUpError::Failed(Failure::from(err))),
        }
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
            redirect_to: None,
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
    async fn a_sign_up_whose_first_mail_never_reached_the_mail_service_sends_it_once_the_claim_lapses() {
        let fakes = Fakes::new();
        let sign_ups = sign_ups(&fakes);
        let event = sign_up("u-1", "ada@example.org");
        // The invocation that created the user died before the mail was handed over.
        let until = UnixTime(60);
        fakes.store.create_pending_user(&event, UnixTime(0), Some(until), None).await.unwrap();
        let early = sign_ups.process(&event, UnixTime(10)).await;
        assert!(matches!(early, Err(SignUpError::FirstMailInFlight { retry_after_seconds: 50 })), "{early:?}");
        assert!(fakes.mailer.sent_to().is_empty());
        assert_eq!(sign_ups.process(&event, UnixTime(60)).await.unwrap(), SignUpOutcome::MailSent);
        assert_eq!(sign_ups.process(&event, UnixTime(200)).await.unwrap(), SignUpOutcome::AlreadyHandled);
        assert_eq!(fakes.mailer.sent_to(), ["ada@example.org"]);
    }

    #[tokio::test]
    async fn a_mail_refused_for_the_rate_is_later_not_a_failure_and_is_sent_when_tried_again() {
        let fakes = Fakes::new();
        let sign_ups = sign_ups(&fakes);
        let event = sign_up("u-1", "ada@example.org");
        fakes.mailer.refuse_for_rate(1);
        let refused = sign_ups.process(&event, UnixTime(0)).await;
        assert!(matches!(refused, Err(SignUpError::MailRefusedForRate)), "{refused:?}");
        assert_eq!(
            sign_ups.process(&event, UnixTime(0)).await.unwrap(),
            SignUpOutcome::MailSent,
            "the claim was given back"
        );
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
