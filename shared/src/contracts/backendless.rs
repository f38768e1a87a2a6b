//! The Backendless Users API: `POST /api/users/resendconfirmation/{identity}` and
//! `POST /api/users/createEmailConfirmationURL/{identity}`, with errors `{"message", "code"}`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::Serialize;
use serde_json::json;

use crate::access_token::{AccessTokenError, AccessTokenVerifier, AdminPolicy, bearer_token};
use crate::config::{self, ConfigError, Source};
use crate::contracts::{header, json_response, path_param, source_ip};
use crate::domain::{Identity, IdentityAttribute, Throttled, UnixTime, client_subject};
use crate::ports::Clock;
use crate::usecases::MaybeFailure;
use crate::usecases::create_link::{CreateLink, CreateLinkError};
use crate::usecases::resend::{Resend, ResendError};
use crate::usecases::throttle::{Limited, ResendThrottles};
use crate::wiring::{HttpHandler, Wiring};

/// Backendless's answers besides success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 3102: the address is already confirmed.
    AlreadyConfirmed,
    /// 3103: "Require email confirmation" is off (here: `EMAIL_ENABLED=false`).
    ConfirmationDisabled,
    /// 3104: no user has that identity (also: an identity that cannot be one).
    UserNotFound,
    /// 3130 (mailconfirm's own code): mail to the address bounced or was reported as spam.
    Undeliverable,
    /// Too many requests: the user's cooldown or a throttle.
    TooManyRequests { retry_after_seconds: u64 },
    /// 3064: no valid token (missing, or one that does not verify): 401.
    NotAuthenticated,
    /// A valid token without the admin role or scope: 403.
    NotPermitted,
    /// A failure of ours: 500.
    Internal,
    /// The identity provider's keys (`ACCESS_TOKEN_JWKS_URL`) could not be fetched: 503. Not
    /// 3064, on which the SDK would forget a token that may well be good.
    KeysUnavailable,
}

impl ErrorCode {
    fn parts(self) -> (StatusCode, u32, &'static str) {
        match self {
            ErrorCode::AlreadyConfirmed => (
                StatusCode::BAD_REQUEST,
                3102,
                "User has already confirmed the email address. Email confirmation will not be sent.",
            ),
            ErrorCode::ConfirmationDisabled => (
                StatusCode::BAD_REQUEST,
                3103,
                "Unable to send email confirmation. The \"Require Email Confirmation\" option must be enabled.",
            ),
            ErrorCode::UserNotFound => (
                StatusCode::BAD_REQUEST,
                3104,
                "Unable to send email confirmation - user account with the email cannot be found.",
            ),
            ErrorCode::Undeliverable => (
                StatusCode::BAD_REQUEST,
                3130,
                "Unable to send email confirmation - mail to the address bounced or was reported as spam. Change the address.",
            ),
            ErrorCode::TooManyRequests { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                999,
                "Cannot process request - request limit has been exhausted. Retry later.",
            ),
            ErrorCode::NotAuthenticated => {
                (StatusCode::UNAUTHORIZED, 3064, "Not existing user token. Log in again to get a valid one.")
            }
            ErrorCode::NotPermitted => {
                (StatusCode::FORBIDDEN, 3066, "Permission denied: this operation requires an administrator.")
            }
            ErrorCode::Internal => (StatusCode::INTERNAL_SERVER_ERROR, 8000, "Internal server error. Please retry."),
            ErrorCode::KeysUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                8000,
                "The keys that verify user tokens cannot be fetched. Please retry.",
            ),
        }
    }

    pub fn status(self) -> StatusCode {
        self.parts().0
    }

    pub fn code(self) -> u32 {
        self.parts().1
    }

    pub fn response(self) -> Response<Body> {
        let (status, code, message) = self.parts();
        let mut response = json_response(status, &ErrorBody { message, code });
        if let ErrorCode::TooManyRequests { retry_after_seconds } = self {
            response.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from(retry_after_seconds));
        }
        response
    }
}

/// A token that does not verify, for whatever reason, is 3064; keys we could not fetch are ours.
impl From<AccessTokenError> for ErrorCode {
    fn from(err: AccessTokenError) -> Self {
        match err {
            AccessTokenError::Missing | AccessTokenError::Invalid | AccessTokenError::Expired => {
                ErrorCode::NotAuthenticated
            }
            AccessTokenError::KeysUnavailable => ErrorCode::KeysUnavailable,
        }
    }
}

/// Every way a request of this contract ends without success.
#[derive(Debug)]
pub enum Rejection {
    /// Refused before any use case ran: the token or the identity.
    Request(ErrorCode),
    Throttled(Throttled),
    Resend(ResendError),
    CreateLink(CreateLinkError),
}

impl From<ErrorCode> for Rejection {
    fn from(code: ErrorCode) -> Self {
        Rejection::Request(code)
    }
}

impl From<Limited<ResendError>> for Rejection {
    fn from(err: Limited<ResendError>) -> Self {
        match err {
            Limited::Throttled(throttled) => Rejection::Throttled(throttled),
            Limited::Refused(err) => Rejection::Resend(err),
        }
    }
}

impl From<ResendError> for Rejection {
    fn from(err: ResendError) -> Self {
        Rejection::Resend(err)
    }
}

impl From<CreateLinkError> for Rejection {
    fn from(err: CreateLinkError) -> Self {
        Rejection::CreateLink(err)
    }
}

impl Rejection {
    /// Backendless's code for it.
    pub fn code(&self, now: UnixTime) -> ErrorCode {
        match self {
            Rejection::Request(code) => *code,
            Rejection::Throttled(throttled) => {
                ErrorCode::TooManyRequests { retry_after_seconds: throttled.retry_after_seconds(now) }
            }
            Rejection::Resend(ResendError::CooldownActive { remaining_seconds }) => {
                ErrorCode::TooManyRequests { retry_after_seconds: *remaining_seconds }
            }
            Rejection::Resend(ResendError::MailDisabled) | Rejection::CreateLink(CreateLinkError::MailDisabled) => {
                ErrorCode::ConfirmationDisabled
            }
            Rejection::Resend(ResendError::UserNotFound) | Rejection::CreateLink(CreateLinkError::UserNotFound) => {
                ErrorCode::UserNotFound
            }
            Rejection::Resend(ResendError::AlreadyConfirmed)
            | Rejection::CreateLink(CreateLinkError::AlreadyConfirmed) => ErrorCode::AlreadyConfirmed,
            Rejection::Resend(ResendError::Undeliverable) => ErrorCode::Undeliverable,
            Rejection::Resend(ResendError::Failed(_)) | Rejection::CreateLink(CreateLinkError::Failed(_)) => {
                ErrorCode::Internal
            }
        }
    }

    fn failure(&self) -> Option<&crate::usecases::Failure> {
        match self {
            Rejection::Request(_) | Rejection::Throttled(_) => None,
            Rejection::Resend(err) => err.failure(),
            Rejection::CreateLink(err) => err.failure(),
        }
    }
}

/// The one place this contract turns a rejection into its response; a failure of ours is
/// reported here and nowhere else.
pub fn respond(rejection: &Rejection, now: UnixTime) -> Response<Body> {
    if let Some(failure) = rejection.failure() {
        failure.report();
    }
    rejection.code(now).response()
}

#[derive(Serialize)]
struct ErrorBody {
    message: &'static str,
    code: u32,
}

/// The identity in the path, parsed as the configured identity attribute.
fn identity_of(request: &Request, attribute: IdentityAttribute) -> Result<Identity, ErrorCode> {
    let raw = path_param(request, "identity").ok_or(ErrorCode::UserNotFound)?;
    attribute.parse(&raw).ok_or(ErrorCode::UserNotFound)
}

fn identity_attribute(source: &dyn Source) -> Result<IdentityAttribute, ConfigError> {
    match config::optional(source, "BACKENDLESS_IDENTITY").as_deref().map(str::trim) {
        None | Some("email") => Ok(IdentityAttribute::Email),
        Some("id") => Ok(IdentityAttribute::UserId),
        Some(_) => Err(ConfigError::invalid("BACKENDLESS_IDENTITY", "expected email or id")),
    }
}

/// `POST /api/users/resendconfirmation/{identity}`: unauthenticated, so throttled per client
/// address and per identity, in the same round trip as the claim.
pub struct ResendConfirmation {
    resend: Resend,
    identity: IdentityAttribute,
    /// `BACKENDLESS_PARANOID`: unknown identities are answered as known ones are.
    paranoid: Option<Paranoid>,
    throttles: ResendThrottles,
    clock: Arc<dyn Clock>,
}

/// Paranoid mode: what an answer would tell about the account is hidden. Every identity,
/// known or not, is counted by the same throttles (the same writes), every outcome that
/// depends on the account is answered as a sent mail, and no answer leaves sooner than
/// `min_response` after the request came, so the time of the work does not tell either.
#[derive(Debug, Clone, Copy)]
struct Paranoid {
    min_response: Duration,
}

impl Paranoid {
    /// Whether a refusal depends on the account, and so is answered as a sent mail.
    fn hides(rejection: &Rejection) -> bool {
        matches!(
            rejection,
            Rejection::Request(ErrorCode::UserNotFound)
                | Rejection::Resend(
                    ResendError::UserNotFound
                        | ResendError::AlreadyConfirmed
                        | ResendError::Undeliverable
                        | ResendError::CooldownActive { .. }
                )
        )
    }
}

impl ResendConfirmation {
    pub fn from_config(w: &Wiring<'_>) -> Result<Self, ConfigError> {
        let paranoid = config::flag(w.config, "BACKENDLESS_PARANOID", false)?;
        let min_response = config::milliseconds(w.config, "BACKENDLESS_PARANOID_MIN_RESPONSE_MS", 400)?;
        Ok(Self {
            resend: Resend::from_config(w)?,
            identity: identity_attribute(w.config)?,
            paranoid: paranoid.then_some(Paranoid { min_response }),
            throttles: ResendThrottles::from_config(w.config)?,
            clock: w.clock.clone(),
        })
    }

    async fn resend(&self, request: &Request, now: UnixTime) -> Result<(), Rejection> {
        let raw_identity = path_param(request, "identity").unwrap_or_default();
        let client = source_ip(request).map(client_subject).unwrap_or_else(|| "unknown".to_owned());
        // Counted by the identity as a mailbox would be: case does not make a new one.
        let throttles = self.throttles.counting(client, raw_identity.trim().to_lowercase());
        let identity = match identity_of(request, self.identity) {
            Ok(identity) => identity,
            Err(code) => {
                self.resend.count_only(&throttles, now).await?;
                return Err(code.into());
            }
        };
        self.resend.resend_to(&identity, None, now, &throttles).await?;
        Ok(())
    }
}

#[async_trait]
impl HttpHandler for ResendConfirmation {
    async fn handle(&self, request: Request) -> Response<Body> {
        let started = tokio::time::Instant::now();
        let now = self.clock.now();
        let result = self.resend(&request, now).await;
        let Some(paranoid) = self.paranoid else {
            return match result {
                Ok(()) => Response::new(Body::Empty),
                Err(rejection) => respond(&rejection, now),
            };
        };
        let response = match result {
            Err(rejection) if !Paranoid::hides(&rejection) => respond(&rejection, now),
            Ok(()) | Err(_) => Response::new(Body::Empty),
        };
        tokio::time::sleep_until(started + paranoid.min_response).await;
        response
    }
}

/// Who may create confirmation URLs: a token with the configured admin role or scope.
pub struct AdminAccess {
    verifier: AccessTokenVerifier,
    policy: AdminPolicy,
}

impl AdminAccess {
    pub fn from_config(source: &dyn Source, clock: Arc<dyn Clock>) -> Result<Self, ConfigError> {
        Ok(Self {
            verifier: AccessTokenVerifier::from_config(source, clock)?,
            policy: AdminPolicy::from_config(source),
        })
    }

    /// The token comes in `user-token` (what the Backendless SDK sends) or as a Bearer token.
    pub async fn authorize(&self, request: &Request) -> Result<(), ErrorCode> {
        let token = header(request, "user-token")
            .or_else(|| bearer_token(request.headers()))
            .ok_or(ErrorCode::NotAuthenticated)?;
        let principal = self.verifier.verify(token).await.map_err(ErrorCode::from)?;
        if self.policy.allows(&principal) { Ok(()) } else { Err(ErrorCode::NotPermitted) }
    }
}

/// `POST /api/users/createEmailConfirmationURL/{identity}`: a link for a trusted backend to
/// deliver itself. No mail, no cooldown.
pub struct CreateConfirmationUrl {
    links: CreateLink,
    identity: IdentityAttribute,
    admin: AdminAccess,
    clock: Arc<dyn Clock>,
}

impl CreateConfirmationUrl {
    pub fn from_config(w: &Wiring<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            links: CreateLink::from_config(w)?,
            identity: identity_attribute(w.config)?,
            admin: AdminAccess::from_config(w.config, w.clock.clone())?,
            clock: w.clock.clone(),
        })
    }

    async fn create(&self, request: &Request, now: UnixTime) -> Result<String, Rejection> {
        self.admin.authorize(request).await?;
        let identity = identity_of(request, self.identity)?;
        Ok(self.links.create_link(&identity, now).await?)
    }
}

#[async_trait]
impl HttpHandler for CreateConfirmationUrl {
    async fn handle(&self, request: Request) -> Response<Body> {
        let now = self.clock.now();
        match self.create(&request, now).await {
            Ok(url) => json_response(StatusCode::OK, &json!({ "confirmationURL": url })),
            Err(rejection) => respond(&rejection, now),
        }
    }
}
