//! The use cases, one module each, each with its own error type and only the ports it uses.
//! Contracts map these outcomes to HTTP; the use cases know nothing of HTTP.

pub mod client_resend;
pub mod confirm;
pub mod cooldown_status;
pub mod create_link;
pub mod delivery;
pub mod failure;
pub mod resend;
pub mod resend_to_address;
pub mod signup;
pub mod throttle;

#[cfg(test)]
pub(crate) mod fakes;

pub use failure::{Failure, MaybeFailure};

use crate::domain::{Identity, UserId};
use crate::ports::UserReader;

/// The user a request names: an id as it is, an address by one read of its look-up.
pub(crate) async fn user_id_of(users: &dyn UserReader, identity: &Identity) -> Result<Option<UserId>, Failure> {
    match identity {
        Identity::UserId(user_id) => Ok(Some(user_id.clone())),
        Identity::Email(email) => users.find_user_id_by_email(email).await.map_err(Failure::Storage),
    }
}
