//! A sign-up event: create the pending user and send the first confirmation mail, once,
//! however often the event is delivered.

use crate::domain::{SignUp, UnixTime};
use crate::store::{Claim, ClaimCondition, CreateOutcome};
use crate::usecases::send::{ConfirmationSender, DeliveryError};

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
    #[error("the user store failed")]
    Storage(#[source] anyhow::Error),
    #[error("the first confirmation mail was not sent")]
    Delivery(#[from] DeliveryError),
}

#[tracing::instrument(name = "process sign-up", skip_all, fields(user_id = %sign_up.user_id))]
pub async fn process_sign_up(
    sender: &ConfirmationSender,
    sign_up: &SignUp,
    now: UnixTime,
) -> Result<SignUpOutcome, SignUpError> {
    let mail_enabled = sender.settings.enabled;
    let until = sender.cooldown.claim_until(now);
    let created = sender
        .store
        .create_pending_user(sign_up, now, mail_enabled.then_some(until))
        .await
        .map_err(SignUpError::Storage)?;
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
            match sender
                .store
                .claim_send(&user.id, now, until, ClaimCondition::NothingSentYet, &Default::default())
                .await
                .map_err(SignUpError::Storage)?
            {
                Ok(claim) => claim,
                Err(_) => return Ok(SignUpOutcome::AlreadyHandled),
            }
        }
    };
    sender.deliver(&claim, sign_up.locale.as_ref(), now).await?;
    Ok(SignUpOutcome::MailSent)
}
