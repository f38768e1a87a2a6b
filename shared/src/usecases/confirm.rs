//! Confirming an address with the token from a link: one conditional write, harmless to repeat.

use std::sync::Arc;

use crate::aws::AwsClients;
use crate::config::{self, ConfigError, Source};
use crate::domain::UnixTime;
use crate::domain::User;
use crate::domain::user::ConfirmRefusal;
use crate::link_token::{AuthenticLink, LinkTokenError, LinkVerifier};
use crate::store::UserStore;

pub struct Confirmer {
    pub store: UserStore,
    pub links: LinkVerifier,
    pub mail_enabled: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfirmError {
    #[error("e-mail is disabled")]
    MailDisabled,
    #[error(transparent)]
    Token(#[from] LinkTokenError),
    #[error("the link's user does not exist")]
    UserNotFound,
    #[error("the address is already confirmed")]
    AlreadyConfirmed,
    #[error("the link was sent to an address the user no longer has")]
    AddressChanged,
    #[error("the user store failed")]
    Storage(#[source] anyhow::Error),
}

impl Confirmer {
    pub fn from_config(source: &dyn Source, aws: Arc<AwsClients>) -> Result<Self, ConfigError> {
        Ok(Self {
            store: UserStore::new(aws, config::table_name(source)?),
            links: LinkVerifier::from_config(source)?,
            mail_enabled: config::email_enabled(source)?,
        })
    }

    #[tracing::instrument(name = "confirm address", skip_all)]
    pub async fn confirm(&self, token: Option<&str>, now: UnixTime) -> Result<User, ConfirmError> {
        let link = token.ok_or(LinkTokenError::Missing).and_then(|token| self.links.authenticate(token, now));
        self.confirm_link(link, now).await
    }

    /// [`Self::confirm`] with the token already checked: the confirm page reads the link once,
    /// for its language as well as for the confirmation.
    pub async fn confirm_link(
        &self,
        link: Result<AuthenticLink, LinkTokenError>,
        now: UnixTime,
    ) -> Result<User, ConfirmError> {
        if !self.mail_enabled {
            return Err(ConfirmError::MailDisabled);
        }
        let link = match link? {
            AuthenticLink { expired: true, .. } => return Err(LinkTokenError::Expired.into()),
            AuthenticLink { link, .. } => link,
        };
        let outcome = self.store.confirm(&link.user_id, &link.address, now).await.map_err(ConfirmError::Storage)?;
        outcome.map_err(|seen| match ConfirmRefusal::explain(seen.as_ref(), &link.address) {
            ConfirmRefusal::UserNotFound => ConfirmError::UserNotFound,
            ConfirmRefusal::AlreadyConfirmed => ConfirmError::AlreadyConfirmed,
            ConfirmRefusal::AddressChanged => ConfirmError::AddressChanged,
        })
    }
}
