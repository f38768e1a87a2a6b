//! What the app's backend may do to a user without a link: look it up, confirm it, erase it.
//! Each takes only the port it uses; the three share one error, since all they can meet is an
//! unknown user or a failure of ours.

use std::sync::Arc;

use crate::domain::{ConfirmedBy, UnixTime, User, UserId, UserStatus};
use crate::ports::{Confirmations, UserEraser, UserReader};
use crate::usecases::Failure;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("no such user")]
    UserNotFound,
    #[error(transparent)]
    Failed(#[from] Failure),
}

/// A user as stored.
pub struct UserLookup {
    users: Arc<dyn UserReader>,
}

impl UserLookup {
    pub fn new(users: Arc<dyn UserReader>) -> Self {
        Self { users }
    }

    pub async fn user(&self, user_id: &UserId) -> Result<User, AdminError> {
        self.users.get_user(user_id).await.map_err(Failure::Storage)?.ok_or(AdminError::UserNotFound)
    }
}

/// Confirms a user without a link.
pub struct ManualConfirmation {
    confirmations: Arc<dyn Confirmations>,
}

/// Whether the confirmation changed anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmed {
    Now,
    Already,
}

impl ManualConfirmation {
    pub fn new(confirmations: Arc<dyn Confirmations>) -> Self {
        Self { confirmations }
    }

    /// Confirms a pending user in one write; a confirmed one is left as it is.
    pub async fn confirm(
        &self,
        user_id: &UserId,
        now: UnixTime,
        by: &ConfirmedBy,
    ) -> Result<(User, Confirmed), AdminError> {
        match self.confirmations.confirm_without_link(user_id, now, by).await.map_err(Failure::Storage)? {
            Ok(user) => {
                crate::metrics::count(crate::metrics::Metric::Confirmations);
                Ok((user, Confirmed::Now))
            }
            Err(Some(user)) if user.status == UserStatus::Enabled => Ok((user, Confirmed::Already)),
            // Pending, yet the condition failed: it was confirmed or erased between two writes.
            Err(Some(_)) | Err(None) => Err(AdminError::UserNotFound),
        }
    }
}

/// Erases a user and its address look-up.
pub struct Erasure {
    users: Arc<dyn UserReader>,
    eraser: Arc<dyn UserEraser>,
}

/// How often an erasure reads again after the user changed address between its read and its write.
const ERASE_ATTEMPTS: usize = 3;

impl Erasure {
    pub fn new(users: Arc<dyn UserReader>, eraser: Arc<dyn UserEraser>) -> Self {
        Self { users, eraser }
    }

    /// One read (which address to release) and one transaction; read again if the address
    /// changed in between.
    pub async fn erase(&self, user_id: &UserId) -> Result<User, AdminError> {
        for _ in 0..ERASE_ATTEMPTS {
            let user = self.users.get_user(user_id).await.map_err(Failure::Storage)?.ok_or(AdminError::UserNotFound)?;
            if self.eraser.erase(&user).await.map_err(Failure::Storage)? {
                return Ok(user);
            }
        }
        Err(Failure::Storage(anyhow::anyhow!("the user kept changing while it was erased")).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ConfirmMethod;
    use crate::usecases::fakes::{MemoryStore, pending_user};

    fn by() -> ConfirmedBy {
        ConfirmedBy::new(ConfirmMethod::Admin, None, None)
    }

    #[tokio::test]
    async fn confirming_twice_changes_nothing_the_second_time_and_an_unknown_user_is_not_found() {
        let store = Arc::new(MemoryStore::default());
        store.insert(pending_user("u-1", "ada@example.org"));
        let confirm = ManualConfirmation::new(store.clone());
        let id = UserId::parse("u-1").unwrap();
        let (user, first) = confirm.confirm(&id, UnixTime(10), &by()).await.unwrap();
        assert_eq!((user.status, first), (UserStatus::Enabled, Confirmed::Now));
        let (user, second) = confirm.confirm(&id, UnixTime(20), &by()).await.unwrap();
        assert_eq!((user.confirmed_at, second), (Some(UnixTime(10)), Confirmed::Already));
        let unknown = confirm.confirm(&UserId::parse("nobody").unwrap(), UnixTime(0), &by()).await;
        assert!(matches!(unknown, Err(AdminError::UserNotFound)));
    }

    #[tokio::test]
    async fn an_erased_user_is_gone_and_erasing_again_finds_nobody() {
        let store = Arc::new(MemoryStore::default());
        store.insert(pending_user("u-1", "ada@example.org"));
        let erasure = Erasure::new(store.clone(), store.clone());
        let id = UserId::parse("u-1").unwrap();
        assert_eq!(erasure.erase(&id).await.unwrap().id, id);
        assert!(matches!(UserLookup::new(store.clone()).user(&id).await, Err(AdminError::UserNotFound)));
        assert!(matches!(erasure.erase(&id).await, Err(AdminError::UserNotFound)));
    }
}
