//! Confirming an address with the token from a link: one conditional write, harmless to repeat.

use std::sync::Arc;

use crate::config::{self, ConfigError};
use crate::wiring::Wiring;

use crate::domain::user::ConfirmRefusal;
use crate::domain::{ConfirmedBy, UnixTime, User};
use crate::link_token::{AuthenticLink, LinkTokenError, LinkVerifier};
use crate::ports::Confirmations;
use crate::usecases::Failure;

impl Confirmer {
    pub fn from_config(w: &Wiring<'_>) -> Result<Self, ConfigError> {
        Ok(Self::new(w.store()?, LinkVerifier::from_config(w.config)?, config::email_enabled(w.config)?))
    }
}

pub struct Confirmer {
    confirmations: Arc<dyn Confirmations>,
    links: LinkVerifier,
    mail_enabled: bool,
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
    #[error(transparent)]
    Failed(#[from] Failure),
}

impl Confirmer {
    pub fn new(confirmations: Arc<dyn Confirmations>, links: LinkVerifier, mail_enabled: bool) -> Self {
        Self { confirmations, links, mail_enabled }
    }

    pub fn mail_enabled(&self) -> bool {
        self.mail_enabled
    }

    /// Checks a link's token: who it is for, and whether it is still valid at `now`.
    pub fn authenticate(&self, token: &str, now: UnixTime) -> Result<AuthenticLink, LinkTokenError> {
        self.links.authenticate(token, now)
    }

    #[tracing::instrument(name = "confirm address", skip_all)]
    pub async fn confirm(&self, token: Option<&str>, now: UnixTime, by: &ConfirmedBy) -> Result<User, ConfirmError> {
        let link = token.ok_or(LinkTokenError::Missing).and_then(|token| self.links.authenticate(token, now));
        self.confirm_link(link, now, by).await
    }

    /// [`Self::confirm`] with the token already checked: the confirm page reads the link once,
    /// for its language as well as for the confirmation.
    pub async fn confirm_link(
        &self,
        link: Result<AuthenticLink, LinkTokenError>,
        now: UnixTime,
        by: &ConfirmedBy,
    ) -> Result<User, ConfirmError> {
        if !self.mail_enabled {
            return Err(ConfirmError::MailDisabled);
        }
        let link = match link? {
            AuthenticLink { expired: true, .. } => return Err(LinkTokenError::Expired.into()),
            AuthenticLink { link, .. } => link,
        };
        let outcome =
            self.confirmations.confirm(&link.user_id, &link.address, now, by).await.map_err(Failure::Storage)?;
        if outcome.is_ok() {
            crate::metrics::count(crate::metrics::Metric::Confirmations);
        }
        outcome.map_err(|seen| match ConfirmRefusal::explain(seen.as_ref(), &link.address) {
            ConfirmRefusal::UserNotFound => ConfirmError::UserNotFound,
            ConfirmRefusal::AlreadyConfirmed => ConfirmError::AlreadyConfirmed,
            ConfirmRefusal::AddressChanged => ConfirmError::AddressChanged,
        })
    }
}
