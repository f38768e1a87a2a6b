//! Mailing a claimed send: compose the mail with a fresh link, hand it to the mailer, and give
//! the claim back if the mail did not go out, so a failure never costs the user their next attempt.

use std::sync::Arc;

use crate::config::{ConfigError, Source};
use crate::domain::{Locale, UnixTime};
use crate::link_token::{LinkIssuer, TokenCreationError};
use crate::mail::{MailSendError, MailSettings, TemplateError};
use crate::ports::{Claim, Mailer, SendClaims};

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

pub struct Delivery {
    claims: Arc<dyn SendClaims>,
    mailer: Arc<dyn Mailer>,
    settings: MailSettings,
    links: LinkIssuer,
}

impl Delivery {
    pub fn new(
        claims: Arc<dyn SendClaims>,
        mailer: Arc<dyn Mailer>,
        settings: MailSettings,
        links: LinkIssuer,
    ) -> Self {
        Self { claims, mailer, settings, links }
    }

    pub fn from_config(
        source: &dyn Source,
        claims: Arc<dyn SendClaims>,
        mailer: Arc<dyn Mailer>,
    ) -> Result<Self, ConfigError> {
        Ok(Self::new(claims, mailer, MailSettings::from_config(source)?, LinkIssuer::from_config(source)?))
    }

    pub fn settings(&self) -> &MailSettings {
        &self.settings
    }

    /// Mails the claimed user a fresh link; gives the claim back when the mail does not go out.
    pub async fn deliver(
        &self,
        claim: &Claim,
        requested_locale: Option<&Locale>,
        now: UnixTime,
    ) -> Result<&'static str, DeliveryError> {
        let result = self.compose_and_send(claim, requested_locale, now).await;
        if result.is_ok() {
            crate::metrics::count(crate::metrics::Metric::MailsSent);
        } else {
            // The failure itself is reported once, where the contract answers it.
            tracing::info!("confirmation mail not sent; releasing the cooldown claim");
            if let Err(release_failure) = self.claims.release_send(claim).await {
                // The user then waits one cooldown before a resend; nothing else is lost.
                tracing::error!(error = %format!("{release_failure:#}"), "could not release the cooldown claim");
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
        let link = self.links.issue(user, locale, None, now)?;
        let mail = self.settings.templates.render_confirmation(
            locale,
            &self.settings.app_name,
            &link.url,
            self.links.lifetime,
        )?;
        self.mailer.send(&user.email, &mail).await?;
        tracing::info!(locale, "confirmation mail sent");
        if let Err(err) = self.claims.record_accepted(claim, now).await {
            // The mail went out; only a redelivered sign-up could send it again.
            tracing::error!(error = %format!("{err:#}"), "could not record the accepted mail");
        }
        Ok(locale)
    }
}
