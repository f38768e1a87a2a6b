//! Mailing a claimed send: compose the mail with a fresh link (and the one-time code drawn
//! before the claim), hand it to the mailer, and give the claim back if the mail did not go
//! out, so a failure never costs the user their next attempt.

use std::sync::Arc;

use crate::config::{ConfigError, Source};
use crate::confirmation_code::{CodeIssuer, NewCode};
use crate::domain::{Locale, UnixTime, UserId};
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
    codes: CodeIssuer,
}

impl Delivery {
    pub fn new(
        claims: Arc<dyn SendClaims>,
        mailer: Arc<dyn Mailer>,
        settings: MailSettings,
        links: LinkIssuer,
        codes: CodeIssuer,
    ) -> Self {
        Self { claims, mailer, settings, links, codes }
    }

    pub fn from_config(
        source: &dyn Source,
        claims: Arc<dyn SendClaims>,
        mailer: Arc<dyn Mailer>,
    ) -> Result<Self, ConfigError> {
        let links = LinkIssuer::from_config(source)?;
        let codes = CodeIssuer::from_config(source, links.lifetime)?;
        Ok(Self::new(claims, mailer, MailSettings::from_config(source)?, links, codes))
    }

    pub fn settings(&self) -> &MailSettings {
        &self.settings
    }

    /// The code of the user's next mail, drawn before its claim so that the claim's write
    /// stores its digest; `None` when codes are off.
    pub fn new_code(&self, user_id: &UserId, now: UnixTime) -> Option<NewCode> {
        self.codes.new_code(user_id, now)
    }

    /// Mails the claimed user a fresh link and `code` (the one whose digest the claim stored);
    /// gives the claim back when the mail does not go out.
    pub async fn deliver(
        &self,
        claim: &Claim,
        requested_locale: Option<&Locale>,
        now: UnixTime,
        code: Option<&NewCode>,
        redirect_to: Option<&str>,
    ) -> Result<&'static str, DeliveryError> {
        let result = self.compose_and_send(claim, requested_locale, now, code, redirect_to).await;
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
        code: Option<&NewCode>,
        redirect_to: Option<&str>,
    ) -> Result<&'static str, DeliveryError> {
        let user = &claim.user;
        let app = self.settings.clients.for_client(user.client_id.as_ref());
        let locale = self.settings.choose_locale(requested_locale, user.locale.as_ref(), user.client_id.as_ref());
        // Sealed into the link only when the client's allow-list has it; the mail goes anyway.
        let sealed = redirect_to.filter(|target| app.redirects.allows(target));
        if redirect_to.is_some() && sealed.is_none() {
            tracing::warn!("redirect_to is not on the client's allow-list; the link goes without it");
        }
        let link = self.links.issue(user, locale, sealed, now)?;
        let url = self.links.rebased(&link.url, app.link_base.as_deref());
        let mut mail = self.settings.templates.render_confirmation_with_code(
            locale,
            &app.brand,
            &url,
            self.links.lifetime,
            code.map(|code| code.plaintext().as_str()),
        )?;
        mail.from = app.sender.clone();
        self.mailer.send(&user.email, &mail).await?;
        tracing::info!(locale, "confirmation mail sent");
        if let Err(err) = self.claims.record_accepted(claim, now).await {
            // The mail went out; only a redelivered sign-up could send it again.
            tracing::error!(error = %format!("{err:#}"), "could not record the accepted mail");
        }
        Ok(locale)
    }
}
