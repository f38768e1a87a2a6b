//! Moving a pending user to a new address (old links die, the cooldown starts afresh), and the
//! sign-up queue's `change_email` command: the move, then the confirmation mail to the new address.

use std::sync::Arc;

use crate::domain::user::SendRefusal;
use crate::domain::{EmailAddress, Locale, SendRequirements, UnixTime, UserId};
use crate::ports::{AddressChangeRefusal, UserReader, UserRegistry};
use crate::usecases::Failure;
use crate::usecases::resend::{Resend, ResendError, Sent};

#[derive(Debug, thiserror::Error)]
pub enum AddressChangeError {
    /// The user may not be moved: unknown, another client's, or confirmed.
    #[error("the user may not be moved: {0:?}")]
    Refused(SendRefusal),
    #[error("another user owns the new address")]
    AddressTaken,
    #[error(transparent)]
    Failed(#[from] Failure),
}

/// One read and, unless the user is already there, one transaction.
pub struct AddressChange {
    users: Arc<dyn UserReader>,
    registry: Arc<dyn UserRegistry>,
}

impl AddressChange {
    pub fn new(users: Arc<dyn UserReader>, registry: Arc<dyn UserRegistry>) -> Self {
        Self { users, registry }
    }

    /// Moves a pending user that meets `requirements` to `new_address` unless it is already there.
    pub async fn change(
        &self,
        user_id: &UserId,
        requirements: &SendRequirements<'_>,
        new_address: &EmailAddress,
        now: UnixTime,
    ) -> Result<(), AddressChangeError> {
        let user = self.users.get_user(user_id).await.map_err(Failure::Storage)?;
        match SendRefusal::decide(user.as_ref(), requirements, now) {
            // A running cooldown or a bounced address does not hold the change back: the new
            // address starts afresh, with nothing bounced.
            Ok(()) | Err(SendRefusal::CooldownActive { .. } | SendRefusal::Undeliverable) => {}
            Err(refusal) => return Err(AddressChangeError::Refused(refusal)),
        }
        let Some(user) = user.filter(|user| user.email.normalized() != new_address.normalized()) else {
            return Ok(());
        };
        match self.registry.change_pending_address(&user, new_address, now).await.map_err(Failure::Storage)? {
            Ok(()) => {
                tracing::info!("pending address replaced");
                Ok(())
            }
            Err(AddressChangeRefusal::AddressTaken) => Err(AddressChangeError::AddressTaken),
            Err(AddressChangeRefusal::UserChanged) => {
                Err(Failure::Storage(anyhow::anyhow!("the user changed during the address change")).into())
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChangeEmailError {
    #[error("no such user")]
    UserNotFound,
    #[error("the address is already confirmed")]
    AlreadyConfirmed,
    #[error("another user owns the new address")]
    AddressTaken,
    /// The user is at the new address; its mail was refused (cooldown, mail disabled, ...).
    #[error("the user is at the new address, but no mail was sent: {0}")]
    NotMailed(ResendError),
    #[error(transparent)]
    Failed(#[from] Failure),
}

/// A trusted service's address change (no client check): the move, then a resend.
///
/// Safe under redelivery without a record of handled commands: a redelivery after success finds
/// the user already at the new address (nothing written), and its resend meets the cooldown the
/// first mail started, so nothing is sent twice within a cooldown. A redelivery after a failure
/// does what the first delivery left undone: the move if it was not made, the mail if it did not
/// go out (its claim was given back).
pub struct ChangeEmail {
    addresses: AddressChange,
    resend: Arc<Resend>,
}

impl ChangeEmail {
    pub fn new(addresses: AddressChange, resend: Arc<Resend>) -> Self {
        Self { addresses, resend }
    }

    #[tracing::instrument(name = "change a pending address", skip_all, fields(user_id = %user_id))]
    pub async fn change(
        &self,
        user_id: &UserId,
        new_address: &EmailAddress,
        requested_locale: Option<&Locale>,
        now: UnixTime,
        command: Option<&str>,
    ) -> Result<Sent, ChangeEmailError> {
        match self.addresses.change(user_id, &SendRequirements::default(), new_address, now).await {
            Ok(()) => {}
            Err(AddressChangeError::Refused(SendRefusal::AlreadyConfirmed)) => {
                return Err(ChangeEmailError::AlreadyConfirmed);
            }
            // Without requirements only an unknown user is left to refuse.
            Err(AddressChangeError::Refused(_)) => return Err(ChangeEmailError::UserNotFound),
            Err(AddressChangeError::AddressTaken) => return Err(ChangeEmailError::AddressTaken),
            Err(AddressChangeError::Failed(failure)) => return Err(ChangeEmailError::Failed(failure)),
        }
        match self.resend.resend_command(user_id, requested_locale, now, command).await {
            Ok(sent) => Ok(sent),
            Err(ResendError::Failed(failure)) => Err(ChangeEmailError::Failed(failure)),
            Err(ResendError::UserNotFound) => Err(ChangeEmailError::UserNotFound),
            Err(ResendError::AlreadyConfirmed) => Err(ChangeEmailError::AlreadyConfirmed),
            Err(refused) => Err(ChangeEmailError::NotMailed(refused)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::{CooldownPolicy, UserStatus};
    use crate::usecases::fakes::{Fakes, pending_user};

    fn change_email(fakes: &Fakes) -> ChangeEmail {
        let store = fakes.store.clone();
        let cooldown = CooldownPolicy { period: Duration::from_secs(60) };
        let resend = Resend::new(store.clone(), store.clone(), store.clone(), fakes.delivery(), cooldown);
        ChangeEmail::new(AddressChange::new(store.clone(), store), Arc::new(resend))
    }

    #[tokio::test]
    async fn the_new_address_is_mailed_at_once_and_a_redelivery_sends_nothing_more() {
        let fakes = Fakes::new();
        let mut user = pending_user("u-1", "ada@example.org");
        user.cooldown_until = Some(UnixTime(100));
        fakes.store.insert(user);
        let change = change_email(&fakes);
        let user_id = UserId::parse("u-1").unwrap();
        let new = EmailAddress::parse("new@example.org").unwrap();

        change.change(&user_id, &new, None, UnixTime(50), None).await.unwrap();
        let again = change.change(&user_id, &new, None, UnixTime(51), None).await;

        assert!(
            matches!(again, Err(ChangeEmailError::NotMailed(ResendError::CooldownActive { remaining_seconds: 59 }))),
            "{again:?}"
        );
        assert_eq!(fakes.mailer.sent_to(), ["new@example.org"]);
        assert_eq!(fakes.store.user("u-1").unwrap().email.as_typed(), "new@example.org");
    }

    #[tokio::test]
    async fn unknown_and_confirmed_users_are_neither_moved_nor_mailed() {
        let fakes = Fakes::new();
        let mut confirmed = pending_user("u-2", "grace@example.org");
        confirmed.status = UserStatus::Enabled;
        fakes.store.insert(confirmed);
        let change = change_email(&fakes);
        let new = EmailAddress::parse("new@example.org").unwrap();

        let unknown = change.change(&UserId::parse("nobody").unwrap(), &new, None, UnixTime(0), None).await;
        let done = change.change(&UserId::parse("u-2").unwrap(), &new, None, UnixTime(0), None).await;

        assert!(matches!(unknown, Err(ChangeEmailError::UserNotFound)), "{unknown:?}");
        assert!(matches!(done, Err(ChangeEmailError::AlreadyConfirmed)), "{done:?}");
        assert_eq!(fakes.store.user("u-2").unwrap().email.as_typed(), "grace@example.org");
        assert!(fakes.mailer.sent_to().is_empty());
    }

    #[tokio::test]
    async fn an_address_another_user_owns_is_refused() {
        let fakes = Fakes::new();
        fakes.store.insert(pending_user("u-1", "ada@example.org"));
        fakes.store.insert(pending_user("u-2", "grace@example.org"));
        let taken = EmailAddress::parse("Grace@example.org").unwrap();

        let refused =
            change_email(&fakes).change(&UserId::parse("u-1").unwrap(), &taken, None, UnixTime(0), None).await;

        assert!(matches!(refused, Err(ChangeEmailError::AddressTaken)), "{refused:?}");
        assert!(fakes.mailer.sent_to().is_empty());
    }
}
