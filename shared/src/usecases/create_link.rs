//! A confirmation link for a trusted backend to deliver itself: no mail, no cooldown.

use std::sync::Arc;

use crate::config::ConfigError;
use crate::wiring::Wiring;

use crate::domain::{Identity, UnixTime, UserStatus};
use crate::link_token::LinkIssuer;
use crate::mail::MailSettings;
use crate::ports::UserReader;
use crate::usecases::delivery::DeliveryError;
use crate::usecases::{Failure, user_id_of};

#[derive(Debug, thiserror::Error)]
pub enum CreateLinkError {
    #[error("e-mail is disabled")]
    MailDisabled,
    #[error("no such user")]
    UserNotFound,
    #[error("the address is already confirmed")]
    AlreadyConfirmed,
    #[error(transparent)]
    Failed(#[from] Failure),
}

impl CreateLink {
    pub fn from_config(w: &Wiring<'_>) -> Result<Self, ConfigError> {
        Ok(Self::new(w.store()?, LinkIssuer::from_config(w.config)?, MailSettings::from_config(w.config)?))
    }
}

pub struct CreateLink {
    users: Arc<dyn UserReader>,
    links: LinkIssuer,
    settings: MailSettings,
}

impl CreateLink {
    pub fn new(users: Arc<dyn UserReader>, links: LinkIssuer, settings: MailSettings) -> Self {
        Self { users, links, settings }
    }

    /// The link's URL, for a pending user named by address (one more read) or id.
    pub async fn create_link(&self, identity: &Identity, now: UnixTime) -> Result<String, CreateLinkError> {
        if !self.settings.enabled {
            return Err(CreateLinkError::MailDisabled);
        }
        let user_id = user_id_of(self.users.as_ref(), identity).await?.ok_or(CreateLinkError::UserNotFound)?;
        let user =
            self.users.get_user(&user_id).await.map_err(Failure::Storage)?.ok_or(CreateLinkError::UserNotFound)?;
        if user.status == UserStatus::Enabled {
            return Err(CreateLinkError::AlreadyConfirmed);
        }
        let locale = self.settings.choose_locale(None, user.locale.as_ref(), user.client_id.as_ref());
        let link =
            self.links.issue(&user, locale, None, now).map_err(|err| Failure::Delivery(DeliveryError::from(err)))?;
        // The client's own confirm-page domain, when it has one, as in its mails.
        let base = self.settings.clients.for_client(user.client_id.as_ref()).link_base.as_deref();
        Ok(self.links.rebased(&link.url, base))
    }
}
