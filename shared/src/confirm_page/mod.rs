//! The hosted confirm page behind every confirmation link (`/confirm-email?token=…`).
//!
//! `GET` and `HEAD` only show the page: mail scanners fetch links before people do, so
//! opening a link must neither confirm nor use anything up. The page's Confirm button posts
//! the token back, and that `POST` confirms. An expired link offers one button that asks for
//! a new link, through the same cooldown and throttles as every other send.

pub mod outcome;
pub mod render;

use std::sync::Arc;

use async_trait::async_trait;
use http::StatusCode;
use lambda_http::{Body, Request, Response};

use crate::config::ConfigError;
use crate::contracts::{form_field, header, query_param, source_ip};
use crate::domain::{Locale, UnixTime, client_subject};
use crate::link_token::AuthenticLink;
use crate::mail::MailSettings;
use crate::ports::{Clock, UserReader};
use crate::usecases::MaybeFailure;
use crate::usecases::confirm::Confirmer;
use crate::usecases::resend::Resend;
use crate::usecases::throttle::{Limited, ResendThrottles};
use crate::wiring::{HttpHandler, Wiring};
use outcome::{Action, MaskedAddress, Page, RedirectPolicy};
use render::{PageForm, PageRenderer, content_security_policy, protect};

/// The page's path, where every link points.
pub use crate::link_token::CONFIRM_PAGE_PATH;

pub struct ConfirmPage {
    users: Arc<dyn UserReader>,
    confirmer: Confirmer,
    resend: Resend,
    throttles: ResendThrottles,
    redirects: RedirectPolicy,
    pages: PageRenderer,
    clock: Arc<dyn Clock>,
    csp: String,
}

/// What the request carries, whichever method brought it.
struct Submission {
    token: Option<String>,
    redirect_to: Option<String>,
}

/// A page to show, in the language chosen for it, with the token its button sends back and
/// the (masked) address it is about, when known.
struct Shown<'a> {
    page: Page,
    locale: &'static str,
    submission: &'a Submission,
    address: Option<MaskedAddress>,
}

impl ConfirmPage {
    pub fn from_config(w: &Wiring<'_>) -> Result<Self, ConfigError> {
        let store = w.store()?;
        let settings = MailSettings::from_config(w.config)?;
        let redirects = RedirectPolicy::from_config(w.config)?;
        Ok(Self {
            users: store,
            confirmer: Confirmer::from_config(w)?,
            resend: Resend::from_config(w)?,
            throttles: ResendThrottles::from_config(w.config)?,
            csp: content_security_policy(&redirects.origins()),
            redirects,
            pages: PageRenderer::new(settings.app_name, settings.default_locale),
            clock: w.clock.clone(),
        })
    }
}

#[async_trait]
impl HttpHandler for ConfirmPage {
    async fn handle(&self, request: Request) -> Response<Body> {
        let method = request.method().clone();
        let mut response = match method {
            http::Method::GET | http::Method::HEAD => self.open(&request).await,
            http::Method::POST => self.submit(&request).await,
            _ => {
                let mut response = Response::new(Body::Empty);
                *response.status_mut() = http::StatusCode::METHOD_NOT_ALLOWED;
                response.headers_mut().insert(http::header::ALLOW, http::HeaderValue::from_static("GET, HEAD, POST"));
                response
            }
        };
        if method == http::Method::HEAD {
            *response.body_mut() = Body::Empty;
        }
        protect(&mut response, &self.csp);
        response
    }
}

impl ConfirmPage {
    /// `GET`/`HEAD`: reads the user to say where the link stands; writes nothing.
    async fn open(&self, request: &Request) -> Response<Body> {
        let submission =
            Submission { token: query_param(request, "token"), redirect_to: query_param(request, "redirect_to") };
        let link = self.confirmer.authenticate(submission.token.as_deref().unwrap_or_default(), self.clock.now());
        let (page, link) = match link {
            Err(err) => (Page::on_bad_link(err), None),
            Ok(_) if !self.confirmer.mail_enabled() => (Page::MailDisabled, None),
            Ok(link) => match self.users.get_user(&link.link.user_id).await {
                Ok(user) => (Page::on_open(&link, user.as_ref()), Some((link, user))),
                Err(err) => {
                    // The read only decides which page to show; the button still works.
                    crate::usecases::Failure::Storage(err).report();
                    let page = if link.expired { Page::Expired } else { Page::AskToConfirm };
                    (page, Some((link, None)))
                }
            },
        };
        let link_locale = link.as_ref().and_then(|(link, _)| link.link.locale.clone());
        let stored_locale = link.as_ref().and_then(|(_, user)| user.as_ref()).and_then(|user| user.locale.clone());
        let locale = self.locale_for(request, [link_locale.as_ref(), stored_locale.as_ref()]);
        let address = link.as_ref().and_then(|(_, user)| user.as_ref()).map(|user| MaskedAddress::of(&user.email));
        self.show(Shown { page, locale, submission: &submission, address })
    }

    /// `POST`: the Confirm button, or "send me a new link".
    async fn submit(&self, request: &Request) -> Response<Body> {
        let body = request.body().as_ref();
        let field = |name: &str| form_field(body, name).or_else(|| query_param(request, name));
        let submission = Submission { token: field("token"), redirect_to: field("redirect_to") };
        let now = self.clock.now();
        let link = self.confirmer.authenticate(submission.token.as_deref().unwrap_or_default(), now);
        let locale = self.locale_for(request, [link.as_ref().ok().and_then(|l| l.link.locale.as_ref()), None]);
        let (page, address) = match Action::parse(field("action").as_deref()) {
            None => (Page::Invalid, None),
            Some(Action::Confirm) => {
                let by = crate::contracts::confirmed_by(request, crate::domain::ConfirmMethod::Link);
                let result = self.confirmer.confirm_link(link, now, &by).await;
                if let Some(failure) = result.as_ref().err().and_then(MaybeFailure::failure) {
                    failure.report();
                }
                (Page::after_confirm(&result), result.as_ref().ok().map(|user| MaskedAddress::of(&user.email)))
            }
            Some(Action::SendNewLink) => (self.send_new_link(request, link.as_ref().ok(), now).await, None),
        };
        if page.is_success()
            && let Some(target) = self.redirects.target(submission.redirect_to.as_deref())
        {
            return see_other(target);
        }
        self.show(Shown { page, locale, submission: &submission, address })
    }

    async fn send_new_link(&self, request: &Request, link: Option<&AuthenticLink>, now: UnixTime) -> Page {
        let Some(link) = link else { return Page::Invalid };
        if !self.resend.mail_enabled() {
            return Page::MailDisabled;
        }
        let client = source_ip(request).map(client_subject).unwrap_or_else(|| "unknown".to_owned());
        let throttles = self.throttles.counting(client, link.link.user_id.as_str().to_owned());
        // The new mail is written in the language of the one whose link expired.
        let result = self.resend.resend_counted(&link.link.user_id, link.link.locale.as_ref(), now, &throttles).await;
        if let Err(Limited::Refused(refused)) = &result
            && let Some(failure) = refused.failure()
        {
            failure.report();
        }
        Page::after_new_link(&result, now)
    }

    fn locale_for(&self, request: &Request, preferred: [Option<&Locale>; 2]) -> &'static str {
        let preferred: Vec<&Locale> = preferred.into_iter().flatten().collect();
        self.pages.choose_locale(&preferred, header(request, "accept-language"))
    }

    fn show(&self, shown: Shown<'_>) -> Response<Body> {
        let Shown { page, locale, submission, address } = shown;
        let form = match (page.button(), submission.token.as_deref()) {
            (Some(action), Some(token)) => {
                Some(PageForm { action: action.as_str(), token, redirect_to: submission.redirect_to.as_deref() })
            }
            _ => None,
        };
        let continue_to =
            if page.is_success() { self.redirects.target(submission.redirect_to.as_deref()) } else { None };
        tracing::info!(page = page.key(), status = page.status().as_u16(), "confirm page shown");
        let html = match self.pages.render(page, locale, form, continue_to, address.as_ref()) {
            Ok(html) => html,
            Err(reason) => {
                tracing::error!(error = %reason, "the confirm page does not render");
                return text_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "The page could not be shown. Please try again later.",
                );
            }
        };
        let mut response = text_response(page.status(), &html);
        let headers = response.headers_mut();
        headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/html; charset=utf-8"));
        headers.insert(http::header::CONTENT_LANGUAGE, http::HeaderValue::from_static(locale));
        headers.insert(http::header::VARY, http::HeaderValue::from_static("Accept-Language"));
        if let Page::TooManyRequests { retry_after_seconds } = page {
            headers.insert(http::header::RETRY_AFTER, http::HeaderValue::from(retry_after_seconds));
        }
        response
    }
}

fn text_response(status: StatusCode, text: &str) -> Response<Body> {
    let mut response = Response::new(Body::Text(text.to_owned()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// `303 See Other`: after the form's `POST`, the browser continues with a `GET`.
fn see_other(target: &str) -> Response<Body> {
    let mut response = Response::new(Body::Empty);
    *response.status_mut() = http::StatusCode::SEE_OTHER;
    if let Ok(location) = http::HeaderValue::from_str(target) {
        response.headers_mut().insert(http::header::LOCATION, location);
    }
    response
}
