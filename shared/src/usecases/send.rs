//! Sending a confirmation mail: claim the cooldown, mail, and give the claim back if the mail
//! did not go out, so a failure never costs the user their next attempt.

use std::sync::Arc;

use crate::aws::AwsClients;
use crate::config::{self, ConfigError, Source};
use crate::domain::user::SendRefusal;
use crate::domain::{
    ClientId, CooldownPolicy, EmailAddress, Identity, Locale, SendRequirements, UnixTime, UserId, UserStatus,
};
use crate::link_token::{LinkIssuer, TokenCreationError};
use crate::mail::{MailSendError, MailSettings, SesMailer, TemplateError};
use crate::store::{AddressChangeRefusal, Claim, ClaimCondition, UserStore};

/// Everything a function that sends confirmation mail needs.
pub struct ConfirmationSender {
    pub store: UserStore,
    pub mailer: SesMailer,
    pub settings: MailSettings,
    pub links: LinkIssuer,
    pub cooldown: CooldownPolicy,
}

/// A mail that went out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// Seconds until the next mail may be sent.
    pub cooldown_seconds: u64,
    pub locale: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("e-mail is disabled")]
    MailDisabled,
    #[error("no such user")]
    UserNotFound,
    #[error("the user was created by another client")]
    ClientMismatch,
    #[error("the address is already confirmed")]
    AlreadyConfirmed,
    #[error("the request names another address than the user's")]
    AddressMismatch,
    #[error("another user owns the new address")]
    AddressTaken,
    #[error("a confirmation mail was sent less than a cooldown ago")]
    CooldownActive { remaining_seconds: u64 },
    #[error("the user store failed")]
    Storage(#[source] anyhow::Error),
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
}

/// Why a claimed mail did not go out. The claim has been given back by then.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error(transparent)]
    TokenCreation(#[from] TokenCreationError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    MailSend(#[from] MailSendError),
}

impl ConfirmationSender {
    pub fn from_config(source: &dyn Source, aws: Arc<AwsClients>) -> Result<Self, ConfigError> {
        Ok(Self {
            store: UserStore::new(aws.clone(), config::table_name(source)?),
            mailer: SesMailer::new(aws),
            settings: MailSettings::from_config(source)?,
            links: LinkIssuer::from_config(source)?,
            cooldown: config::cooldown(source)?,
        })
    }

    /// Resends the confirmation mail, at most once per cooldown.
    pub async fn resend(
        &self,
        user_id: &UserId,
        requested_locale: Option<&Locale>,
        now: UnixTime,
    ) -> Result<Sent, SendError> {
        self.resend_requiring(user_id, &SendRequirements::default(), requested_locale, now).await
    }

    /// [`Self::resend`], refused unless the user also meets `requirements`; still one write.
    #[tracing::instrument(name = "send confirmation mail", skip_all, fields(user_id = %user_id))]
    pub async fn resend_requiring(
        &self,
        user_id: &UserId,
        requirements: &SendRequirements<'_>,
        requested_locale: Option<&Locale>,
        now: UnixTime,
    ) -> Result<Sent, SendError> {
        if !self.settings.enabled {
            return Err(SendError::MailDisabled);
        }
        let until = self.cooldown.claim_until(now);
        let claim = self
            .store
            .claim_send(user_id, now, until, ClaimCondition::CooldownOver, requirements)
            .await
            .map_err(SendError::Storage)?
            .map_err(|seen| match SendRefusal::explain(seen.as_ref(), requirements, &self.cooldown, now) {
                SendRefusal::UserNotFound => SendError::UserNotFound,
                SendRefusal::ClientMismatch => SendError::ClientMismatch,
                SendRefusal::AlreadyConfirmed => SendError::AlreadyConfirmed,
                SendRefusal::AddressMismatch => SendError::AddressMismatch,
                SendRefusal::CooldownActive { remaining_seconds } => SendError::CooldownActive { remaining_seconds },
            })?;
        let locale = self.deliver(&claim, requested_locale, now).await?;
        Ok(Sent { cooldown_seconds: self.cooldown.period.as_secs(), locale })
    }

    /// Resends to a user named by address or id: one read to find the user when named by
    /// address, then the same single write as [`Self::resend`].
    pub async fn resend_to(
        &self,
        identity: &Identity,
        requested_locale: Option<&Locale>,
        now: UnixTime,
    ) -> Result<Sent, SendError> {
        if !self.settings.enabled {
            return Err(SendError::MailDisabled);
        }
        let user_id = self.resolve(identity).await?;
        self.resend(&user_id, requested_locale, now).await
    }

    /// Replaces the pending address of a user created by `client`, then resends to the new one.
    /// The checks of [`Self::resend_requiring`] come first, so a refused request changes nothing.
    pub async fn change_address_and_resend(
        &self,
        user_id: &UserId,
        client: &ClientId,
        new_address: &EmailAddress,
        requested_locale: Option<&Locale>,
        now: UnixTime,
    ) -> Result<Sent, SendError> {
        if !self.settings.enabled {
            return Err(SendError::MailDisabled);
        }
        let requirements = SendRequirements { client: Some(client), address: None };
        let user = self.store.get_user(user_id).await.map_err(SendError::Storage)?;
        match (&user, SendRefusal::explain(user.as_ref(), &requirements, &self.cooldown, now)) {
            (_, SendRefusal::UserNotFound) => return Err(SendError::UserNotFound),
            (_, SendRefusal::ClientMismatch) => return Err(SendError::ClientMismatch),
            (_, SendRefusal::AlreadyConfirmed) => return Err(SendError::AlreadyConfirmed),
            (Some(user), _) if user.email.normalized() != new_address.normalized() => {
                match self.store.change_pending_address(user, new_address, now).await.map_err(SendError::Storage)? {
                    Ok(()) => tracing::info!("pending address replaced"),
                    Err(AddressChangeRefusal::AddressTaken) => return Err(SendError::AddressTaken),
                    Err(AddressChangeRefusal::UserChanged) => {
                        return Err(SendError::Storage(anyhow::anyhow!("the user changed during the address change")));
                    }
                }
            }
            _ => {}
        }
        self.resend_requiring(user_id, &requirements, requested_locale, now).await
    }

    /// A confirmation link for a pending user, without mail and without starting a cooldown.
    pub async fn create_link(&self, identity: &Identity, now: UnixTime) -> Result<String, SendError> {
        if !self.settings.enabled {
            return Err(SendError::MailDisabled);
        }
        let user_id = self.resolve(identity).await?;
        let user = self.store.get_user(&user_id).await.map_err(SendError::Storage)?.ok_or(SendError::UserNotFound)?;
        if user.status == UserStatus::Enabled {
            return Err(SendError::AlreadyConfirmed);
        }
        let locale = self.settings.choose_locale(None, user.locale.as_ref());
        let link = self.links.issue(&user, locale, now).map_err(|err| SendError::Delivery(err.into()))?;
        Ok(link.url)
    }

    async fn resolve(&self, identity: &Identity) -> Result<UserId, SendError> {
        match identity {
            Identity::UserId(user_id) => Ok(user_id.clone()),
            Identity::Email(email) => self
                .store
                .find_user_id_by_email(email)
                .await
                .map_err(SendError::Storage)?
                .ok_or(SendError::UserNotFound),
        }
    }

    /// Mails the claimed user a fresh link; gives the claim back when the mail does not go out.
    pub async fn deliver(
        &self,
        claim: &Claim,
        requested_locale: Option<&Locale>,
        now: UnixTime,
    ) -> Result<&'static str, DeliveryError> {
        let result = self.compose_and_send(claim, requested_locale, now).await;
        if let Err(failure) = &result {
            tracing::error!(error = ?failure, "confirmation mail not sent; releasing the cooldown claim");
            if let Err(release_failure) = self.store.release_send(&claim.user.id, claim).await {
                // The user then waits one cooldown before a resend; nothing else is lost.
                tracing::error!(error = ?release_failure, "could not release the cooldown claim");
            }
        }
        result
    }

    async fn compose_and_send(
        &self,
        claim: &Claim,
        requested_locale: Option<&Locale>,
        now: UnixTime,
    ) -> Result<&'static str, DeliveryError> {
        let user = &claim.user;
        let locale = self.settings.choose_locale(requested_locale, user.locale.as_ref());
        let link = self.links.issue(user, locale, now)?;
        let valid_hours = self.links.lifetime.as_secs().div_ceil(3600);
        let mail =
            self.settings.templates.render_confirmation(locale, &self.settings.app_name, &link.url, valid_hours)?;
        self.mailer.send(&self.settings, &user.email, &mail).await?;
        tracing::info!(locale, "confirmation mail sent");
        Ok(locale)
    }
}
