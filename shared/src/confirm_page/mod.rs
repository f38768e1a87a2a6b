//! The hosted confirm page behind every confirmation link (`/confirm-email?token=…`).
//!
//! `GET` and `HEAD` only show the page: mail scanners fetch links before people do, so
//! opening a link must neither confirm nor use anything up. The page's Confirm button posts
//! the token back, and that `POST` confirms. An expired link offers one button that asks for
//! a new link, through the same cooldown and throttles as every other send.

pub mod outcome;
pub mod render;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use http::StatusCode;
use lambda_http::{Body, Request, Response};

use crate::clients::Clients;
use crate::config::ConfigError;
use crate::contracts::{form_field, header, query_param, source_ip};
use crate::domain::{ClientId, EmailAddress, Locale, OneTimeCode, UnixTime, UserId, client_subject};
use crate::link_token::AuthenticLink;
use crate::mail::MailSettings;
use crate::ports::{Clock, UserReader};
use crate::result_token::{ResultSigner, with_result};
use crate::usecases::MaybeFailure;
use crate::usecases::confirm::Confirmer;
use crate::usecases::confirm_code::{CodeConfirmer, CodeThrottles, ConfirmCodeError};
use crate::usecases::resend::Resend;
use crate::usecases::throttle::{Limited, ResendThrottles};
use crate::wiring::{HttpHandler, Wiring};
use outcome::{Action, MaskedAddress, Page};
use render::{PageForm, PageRenderer, PageView, content_security_policy, protect};

/// The page's path, where every link points.
pub use crate::link_token::CONFIRM_PAGE_PATH;

pub struct ConfirmPage {
    users: Arc<dyn UserReader>,
    confirmer: Confirmer,
    resend: Resend,
    throttles: ResendThrottles,
    codes: CodeConfirmer,
    code_throttles: CodeThrottles,
    results: ResultSigner,
    clients: Arc<Clients>,
    pages: PageRenderer,
    clock: Arc<dyn Clock>,
    /// The Content-Security-Policy of each app (its logo, colours and redirect targets), made
    /// once at start-up; `None` is the global one.
    policies: HashMap<Option<String>, String>,
}

/// What the request carries, whichever method brought it.
struct Submission {
    token: Option<String>,
    redirect_to: Option<String>,
}

/// A page to show, in the language chosen for it, with the token its button sends back, the
/// (masked) address it is about, when known, and the app it belongs to.
struct Shown<'a> {
    page: Page,
    locale: &'static str,
    submission: &'a Submission,
    address: Option<MaskedAddress>,
    client: Option<&'a ClientId>,
    /// What the person typed into the code form, to show it again.
    typed_address: Option<&'a str>,
    /// The user a success page is about, for the signed result handed to the app.
    confirmed: Option<&'a UserId>,
}

/// The form for a one-time code, beside the page: `/confirm-email/code`.
pub const CODE_FORM_PATH: &str = "/confirm-email/code";

/// The query parameter of the result page a Confirm `POST` is redirected to (post/redirect/get),
/// naming the page the press ended on.
const AFTER_CONFIRM: &str = "done";

impl ConfirmPage {
    pub fn from_config(w: &Wiring<'_>) -> Result<Self, ConfigError> {
        let store = w.store()?;
        let clients = MailSettings::from_config(w.config)?.clients;
        let policies = clients
            .all()
            .map(|(id, settings)| {
                (id.map(str::to_owned), content_security_policy(&settings.brand, &settings.redirects))
            })
            .collect();
        Ok(Self {
            users: store,
            confirmer: Confirmer::from_config(w)?,
            resend: Resend::from_config(w)?,
            throttles: ResendThrottles::from_config(w.config)?,
            codes: CodeConfirmer::from_config(w)?,
            code_throttles: CodeThrottles::from_config(w.config)?,
            results: ResultSigner::from_config(w.config)?,
            clients,
            pages: PageRenderer::default(),
            clock: w.clock.clone(),
            policies,
        })
    }

    fn policy_for(&self, client: Option<&ClientId>) -> &str {
        let known = client.map(|id| id.as_str().to_owned()).filter(|id| self.policies.contains_key(&Some(id.clone())));
        self.policies.get(&known).map(String::as_str).unwrap_or(FALLBACK_POLICY)
    }
}

/// Only used if the global policy were missing, which `from_config` rules out: the strictest.
const FALLBACK_POLICY: &str = "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

#[async_trait]
impl HttpHandler for ConfirmPage {
    async fn handle(&self, request: Request) -> Response<Body> {
        let method = request.method().clone();
        let code_form = request.uri().path().trim_end_matches('/').ends_with(CODE_FORM_PATH);
        let (mut response, client) = match (&method, code_form) {
            (&http::Method::GET | &http::Method::HEAD, true) => (self.code_form(&request), None),
            (&http::Method::POST, true) => self.submit_code(&request).await,
            (&http::Method::GET | &http::Method::HEAD, false) => self.open(&request).await,
            (&http::Method::POST, false) => self.submit(&request).await,
            _ => {
                let mut response = Response::new(Body::Empty);
                *response.status_mut() = http::StatusCode::METHOD_NOT_ALLOWED;
                response.headers_mut().insert(http::header::ALLOW, http::HeaderValue::from_static("GET, HEAD, POST"));
                (response, None)
            }
        };
        if method == http::Method::HEAD {
            *response.body_mut() = Body::Empty;
        }
        protect(&mut response, self.policy_for(client.as_ref()));
        response
    }
}

impl ConfirmPage {
    /// `GET`/`HEAD`: reads the user to say where the link stands; writes nothing. After a
    /// Confirm `POST` (`done=<page>`), the same reading, with what the press said, tells how it ended.
    async fn open(&self, request: &Request) -> (Response<Body>, Option<ClientId>) {
        let mut submission =
            Submission { token: query_param(request, "token"), redirect_to: query_param(request, "redirect_to") };
        let after_confirm = query_param(request, AFTER_CONFIRM);
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
        let page = match after_confirm {
            Some(pressed) => page.after_confirm_redirect(&pressed),
            None => page,
        };
        let user = link.as_ref().and_then(|(_, user)| user.as_ref());
        let link_locale = link.as_ref().and_then(|(link, _)| link.link.locale.clone());
        let stored_locale = user.and_then(|user| user.locale.clone());
        // The link's own client and target, sealed when it was mailed, win over the request's.
        let sealed = link.as_ref().map(|(link, _)| (link.link.client_id.clone(), link.link.redirect_to.clone()));
        let (sealed_client, sealed_target) = sealed.unwrap_or_default();
        let client = sealed_client.or_else(|| user.and_then(|user| user.client_id.clone()));
        if sealed_target.is_some() {
            submission.redirect_to = sealed_target;
        }
        let locale = self.locale_for(request, [link_locale.as_ref(), stored_locale.as_ref()], client.as_ref());
        let address = user.map(|user| MaskedAddress::of(&user.email));
        let confirmed = user.filter(|_| page.is_success()).map(|user| &user.id);
        let response = self.show(Shown {
            page,
            locale,
            submission: &submission,
            address,
            client: client.as_ref(),
            typed_address: None,
            confirmed,
        });
        (response, client)
    }

    /// `POST`: the Confirm button, or "send me a new link". Confirm always ends in a `303`:
    /// to the app when it is done and the app asked for it, else to the result page, so
    /// Reload, Back and Forward never post again.
    async fn submit(&self, request: &Request) -> (Response<Body>, Option<ClientId>) {
        let body = request.body().as_ref();
        let field = |name: &str| form_field(body, name).or_else(|| query_param(request, name));
        let mut submission = Submission { token: field("token"), redirect_to: field("redirect_to") };
        let now = self.clock.now();
        let link = self.confirmer.authenticate(submission.token.as_deref().unwrap_or_default(), now);
        let sealed_client = link.as_ref().ok().and_then(|link| link.link.client_id.clone());
        if let Some(sealed) = link.as_ref().ok().and_then(|link| link.link.redirect_to.clone()) {
            submission.redirect_to = Some(sealed);
        }
        match Action::parse(field("action").as_deref()) {
            None => {
                let locale =
                    self.locale_for(request, [link.as_ref().ok().and_then(|l| l.link.locale.as_ref()), None], None);
                let page = Page::Invalid;
                (
                    self.show(Shown {
                        page,
                        locale,
                        submission: &submission,
                        address: None,
                        client: None,
                        typed_address: None,
                        confirmed: None,
                    }),
                    None,
                )
            }
            Some(Action::Confirm) => {
                let by = crate::contracts::confirmed_by(request, crate::domain::ConfirmMethod::Link);
                let result = self.confirmer.confirm_link(link, now, &by).await;
                if let Some(failure) = result.as_ref().err().and_then(MaybeFailure::failure) {
                    failure.report();
                }
                let client = sealed_client.or_else(|| result.as_ref().ok().and_then(|user| user.client_id.clone()));
                let settings = self.clients.for_client(client.as_ref());
                let page = Page::after_confirm(&result);
                if let Ok(user) = &result
                    && let Some(target) = settings.redirects.target(submission.redirect_to.as_deref())
                {
                    let result = self.results.sign_confirmed(&user.id, client.as_ref(), now);
                    return (see_other(&with_result(target, &result)), client);
                }
                if page == Page::Invalid {
                    // Not a link of ours (perhaps not even a token): nothing to read again, and
                    // nothing of it belongs in a Location header.
                    let locale = self.locale_for(request, [None, None], None);
                    let shown = Shown {
                        page,
                        locale,
                        submission: &submission,
                        address: None,
                        client: None,
                        typed_address: None,
                        confirmed: None,
                    };
                    return (self.show(shown), None);
                }
                let redirect_to = submission.redirect_to.as_deref().filter(|target| settings.redirects.allows(target));
                (see_other(&result_page(submission.token.as_deref(), redirect_to, page)), client)
            }
            Some(Action::SendNewLink) => {
                let locale =
                    self.locale_for(request, [link.as_ref().ok().and_then(|l| l.link.locale.as_ref()), None], None);
                let page = self.send_new_link(request, link.as_ref().ok(), now).await;
                (
                    self.show(Shown {
                        page,
                        locale,
                        submission: &submission,
                        address: None,
                        client: None,
                        typed_address: None,
                        confirmed: None,
                    }),
                    None,
                )
            }
        }
    }

    /// `GET /confirm-email/code`: the form; after a code confirmed (`done=…`), its result.
    fn code_form(&self, request: &Request) -> Response<Body> {
        let page = match query_param(request, AFTER_CONFIRM).as_deref() {
            Some("confirmed") => Page::Confirmed,
            Some("already_confirmed") => Page::AlreadyConfirmed,
            _ => Page::EnterCode,
        };
        let locale = self.locale_for(request, [None, None], None);
        let submission = Submission { token: None, redirect_to: None };
        self.show(Shown {
            page,
            locale,
            submission: &submission,
            address: None,
            client: None,
            typed_address: None,
            confirmed: None,
        })
    }

    /// `POST /confirm-email/code`: the address and the code of the mail. The same answer for an
    /// unknown address as for a wrong code; each attempt on a known one counts (5 per code)
    /// and goes through the code throttles, per client address and per user.
    async fn submit_code(&self, request: &Request) -> (Response<Body>, Option<ClientId>) {
        let body = request.body().as_ref();
        let typed = form_field(body, "email");
        let typed = typed.as_deref().map(str::trim).filter(|typed| !typed.is_empty() && typed.len() <= 254);
        let code = form_field(body, "code").and_then(|code| OneTimeCode::parse(code.trim()).ok());
        let locale = self.locale_for(request, [None, None], None);
        let now = self.clock.now();
        let submission = Submission { token: None, redirect_to: None };
        let address = typed.and_then(|typed| EmailAddress::parse(typed).ok());
        let result = match (address, code) {
            (Some(address), Some(code)) => match self.users.find_user_id_by_email(&address).await {
                Ok(Some(user_id)) => {
                    let client = source_ip(request).map(client_subject).unwrap_or_else(|| "unknown".to_owned());
                    let throttles = self.code_throttles.counting(client, &user_id);
                    let by = crate::contracts::confirmed_by(request, crate::domain::ConfirmMethod::Code);
                    self.codes.confirm(&user_id, &code, now, &by, &throttles).await
                }
                Ok(None) => Err(ConfirmCodeError::UserNotFound),
                Err(err) => Err(ConfirmCodeError::Failed(crate::usecases::Failure::Storage(err))),
            },
            _ => Err(ConfirmCodeError::WrongCode { attempts_left: 0 }),
        };
        if let Err(ConfirmCodeError::Failed(failure)) = &result {
            failure.report();
        }
        let page = Page::after_code(&result, now);
        if page.is_success() {
            let client = result.as_ref().ok().and_then(|user| user.client_id.clone());
            let settings = self.clients.for_client(client.as_ref());
            let target = match (settings.redirects.target(None), &result) {
                (Some(target), Ok(user)) => {
                    with_result(target, &self.results.sign_confirmed(&user.id, client.as_ref(), now))
                }
                _ => format!("code?{AFTER_CONFIRM}={}", page.key()),
            };
            return (see_other(&target), client);
        }
        let shown = Shown {
            page,
            locale,
            submission: &submission,
            address: None,
            client: None,
            typed_address: typed,
            confirmed: None,
        };
        (self.show(shown), None)
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

    fn locale_for(
        &self,
        request: &Request,
        preferred: [Option<&Locale>; 2],
        client: Option<&ClientId>,
    ) -> &'static str {
        let preferred: Vec<&Locale> = preferred.into_iter().flatten().collect();
        let default = self.clients.for_client(client).default_locale;
        render::choose_locale(&preferred, header(request, "accept-language"), default)
    }

    fn show(&self, shown: Shown<'_>) -> Response<Body> {
        let Shown { page, locale, submission, address, client, typed_address, confirmed } = shown;
        let settings = self.clients.for_client(client);
        let form = match (page.button(), submission.token.as_deref()) {
            (Some(action), Some(token)) => {
                Some(PageForm { action: action.as_str(), token, redirect_to: submission.redirect_to.as_deref() })
            }
            _ => None,
        };
        // Done: on to where the app asked (with the signed result), else to the app itself.
        let now = self.clock.now();
        let continue_to = match (page.is_success(), settings.redirects.target(submission.redirect_to.as_deref())) {
            (false, _) => None,
            (true, Some(target)) => Some(match confirmed {
                Some(user_id) => with_result(target, &self.results.sign_confirmed(user_id, client, now)),
                None => target.to_owned(),
            }),
            (true, None) => settings.brand.app_url.clone(),
        };
        tracing::info!(page = page.key(), status = page.status().as_u16(), "confirm page shown");
        let view = PageView {
            page,
            locale,
            brand: &settings.brand,
            form,
            continue_to: continue_to.as_deref(),
            address: address.as_ref(),
            typed_address,
        };
        let html = match self.pages.render(view) {
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

/// The result page of a Confirm `POST`, relative to the page itself (so it works under a
/// stage path too): the same link, read again, with `done=confirm`.
fn result_page(token: Option<&str>, redirect_to: Option<&str>, pressed: Page) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("token", token.unwrap_or_default());
    if let Some(redirect_to) = redirect_to {
        query.append_pair("redirect_to", redirect_to);
    }
    query.append_pair(AFTER_CONFIRM, pressed.key());
    format!("{}?{}", CONFIRM_PAGE_PATH.trim_start_matches('/'), query.finish())
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
