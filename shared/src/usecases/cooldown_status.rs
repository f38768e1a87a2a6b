//! How long until a user may be sent another confirmation mail.

use std::sync::Arc;

use crate::aws::AwsClients;
use crate::config::{self, ConfigError, Source};
use crate::domain::{CooldownPolicy, UnixTime, UserId};
use crate::store::UserStore;

pub struct CooldownStatus {
    pub store: UserStore,
    pub cooldown: CooldownPolicy,
    pub mail_enabled: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CooldownStatusError {
    #[error("e-mail is disabled")]
    MailDisabled,
    #[error("no such user")]
    UserNotFound,
    #[error("the user store failed")]
    Storage(#[source] anyhow::Error),
}

impl CooldownStatus {
    pub fn from_config(source: &dyn Source, aws: Arc<AwsClients>) -> Result<Self, ConfigError> {
        Ok(Self {
            store: UserStore::new(aws, config::table_name(source)?),
            cooldown: config::cooldown(source)?,
            mail_enabled: config::email_enabled(source)?,
        })
    }

    /// Seconds until the next send is allowed; 0 when it is allowed now.
    pub async fn remaining(&self, user_id: &UserId, now: UnixTime) -> Result<u64, CooldownStatusError> {
        if !self.mail_enabled {
            return Err(CooldownStatusError::MailDisabled);
        }
        let user = self
            .store
            .get_user(user_id)
            .await
            .map_err(CooldownStatusError::Storage)?
            .ok_or(CooldownStatusError::UserNotFound)?;
        Ok(self.cooldown.remaining(user.cooldown_until, now))
    }
}
