//! The use cases, one module each, each with its own error type and only the ports it uses.
//! Contracts map these outcomes to HTTP; the use cases know nothing of HTTP.

pub mod admin;
pub mod change_address;
pub mod client_resend;
pub mod confirm;
pub mod confirm_code;
pub mod cooldown_status;
pub mod create_link;
pub mod delivery;
pub mod resend;
pub mod resend_to_address;
pub mod signup;
pub mod throttle;

#[cfg(test)]
pub(crate) mod fakes;

use crate::domain::user::SendRefusal;
use crate::domain::{Identity, SendRequirements, UnixTime, User, UserId};
use crate::metrics::{self, Metric};
use crate::ports::UserReader;
use crate::usecases::delivery::DeliveryError;

/// The user a request names: an id as it is, an address by one read of its look-up.
pub(crate) async fn user_id_of(users: &dyn UserReader, identity: &Identity) -> Result<Option<UserId>, Failure> {
    match identity {
        Identity::UserId(user_id) => Ok(Some(user_id.clone())),
        Identity::Email(email) => users.find_user_id_by_email(email).await.map_err(Failure::Storage),
    }
}

/// Why a claim was refused, from the user its condition saw; a refusal by the cooldown is counted.
pub(crate) fn explain_refusal(seen: Option<&User>, requirements: &SendRequirements<'_>, now: UnixTime) -> SendRefusal {
    let refusal = SendRefusal::explain(seen, requirements, now);
    if matches!(refusal, SendRefusal::CooldownActive { .. }) {
        metrics::count(Metric::CooldownRefusals);
    }
    refusal
}

/// A failure of ours, as opposed to a refusal the request deserved: storage or mail did not
/// work. Every contract answers it with its 5xx; [`Failure::report`] is the one place that logs it.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("the user store failed")]
    Storage(#[source] anyhow::Error),
    #[error("the confirmation mail was not sent")]
    Delivery(#[from] DeliveryError),
}

impl Failure {
    /// Logs the failure with its whole chain of causes; the caller only sees a code.
    pub fn report(&self) {
        tracing::error!(error = %error_chain(self), "request failed");
        metrics::count(match self {
            Failure::Storage(_) => Metric::StorageFailures,
            Failure::Delivery(_) => Metric::MailsFailed,
        });
    }
}

/// `outer: cause: root cause`, so a log line says what failed and why.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut chain = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    chain
}

/// The failure of ours inside a use case's error, if that is what it is.
pub trait MaybeFailure {
    fn failure(&self) -> Option<&Failure>;
}

/// Implements [`MaybeFailure`] for use-case errors whose `Failed` variant holds a [`Failure`].
macro_rules! failure_variant {
    ($($error:ty),* $(,)?) => {$(
        impl $crate::usecases::MaybeFailure for $error {
            fn failure(&self) -> Option<&$crate::usecases::Failure> {
                match self {
                    Self::Failed(failure) => Some(failure),
                    _ => None,
                }
            }
        }
    )*};
}

failure_variant!(
    crate::usecases::resend::ResendError,
    crate::usecases::resend_to_address::AddressedResendError,
    crate::usecases::client_resend::ClientResendError,
    crate::usecases::change_address::AddressChangeError,
    crate::usecases::change_address::ChangeEmailError,
    crate::usecases::create_link::CreateLinkError,
    crate::usecases::confirm::ConfirmError,
    crate::usecases::confirm_code::ConfirmCodeError,
    crate::usecases::cooldown_status::CooldownStatusError,
    crate::usecases::signup::SignUpError,
    crate::usecases::throttle::ThrottleError,
    crate::usecases::admin::AdminError,
);
