//! How long until a user may be sent another confirmation mail.

use std::sync::Arc;

use crate::config::{self, ConfigError};
use crate::wiring::Wiring;

use crate::domain::{CooldownPolicy, UnixTime, UserId};
use crate::ports::UserReader;
use crate::usecases::Failure;

impl CooldownStatus {
    pub fn from_config(w: &Wiring<'_>) -> Result<Self, ConfigError> {
        Ok(Self::new(w.store()?, config::cooldown(w.config)?, config::email_enabled(w.config)?))
    }
}

pub struct CooldownStatus {
    users: Arc<dyn UserReader>,
    cooldown: CooldownPolicy,
    mail_enabled: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CooldownStatusError {
    #[error("e-mail is disabled")]
    MailDisabled,
    #[error("no such user")]
    UserNotFound,
    #[error(transparent)]
    Failed(#[from] Failure),
}

impl CooldownStatus {
    pub fn new(users: Arc<dyn UserReader>, cooldown: CooldownPolicy, mail_enabled: bool) -> Self {
        Self { users, cooldown, mail_enabled }
    }

    /// Seconds until the next send is allowed; 0 when it is allowed now.
    pub async fn remaining(&self, user_id: &UserId, now: UnixTime) -> Result<u64, CooldownStatusError> {
        if !self.mail_enabled {
            return Err(CooldownStatusError::MailDisabled);
        }
        let user =
            self.users.get_user(user_id).await.map_err(Failure::Storage)?.ok_or(CooldownStatusError::UserNotFound)?;
        Ok(self.cooldown.remaining(user.cooldown_until, now))
    }
}
