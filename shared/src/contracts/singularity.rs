//! The Singularity e-mail verification contract (`/api/auth/email/verification…`):
//! success bodies, and every error as `{"timestamp","status","code","error","message","path"}`.

use std::sync::Arc;

use async_trait::async_trait;
use http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::Serialize;
use serde_json::json;

use crate::access_token::{AccessTokenError, AccessTokenVerifier, Principal};
use crate::config::ConfigError;
use crate::contracts::{UserView, json_response, query_param, rfc3339};
use crate::domain::{Locale, UnixTime, User};
use crate::link_token::LinkTokenError;
use crate::ports::Clock;
use crate::usecases::confirm::{ConfirmError, Confirmer};
use crate::usecases::cooldown_status::{CooldownStatus, CooldownStatusError};
use crate::usecases::delivery::DeliveryError;
use crate::usecases::resend::{Resend, ResendError, Sent};
use crate::usecases::{Failure, MaybeFailure};
use crate::wiring::{HttpHandler, Wiring};

/// Every answer this contract gives besides success, as Singularity names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    AuthenticationRequired,
    AccessTokenInvalid,
    AccessTokenExpired,
    /// The identity provider's keys (`ACCESS_TOKEN_JWKS_URL`) could not be fetched: 503.
    AccessTokenKeysUnavailable,
    InvalidRequest,
    UserNotFound,
    EmailAlreadyVerified,
    /// mailconfirm's own code: mail to the address bounced or was reported as spam: 422.
    EmailUndeliverable,
    EmailCooldownActive {
        remaining_seconds: u64,
    },
    EmailVerificationTokenMissing,
    EmailVerificationTokenInvalid,
    EmailVerificationTokenExpired,
    DatabaseFailure,
    EmailSendFailure,
    EmailTemplateFailure,
    EmailVerificationTokenCreationFailure,
    EmailDisabled,
}

impl ErrorCode {
    /// Status, code, `error` (Singularity puts its exception's class name there) and message.
    fn parts(self) -> (StatusCode, &'static str, &'static str, &'static str) {
        use ErrorCode::*;
        match self {
            AuthenticationRequired => (
                StatusCode::UNAUTHORIZED,
                "AUTHENTICATION_REQUIRED",
                "AuthenticationRequired",
                "Authentication is required to access this resource.",
            ),
            AccessTokenInvalid => (
                StatusCode::UNAUTHORIZED,
                "ACCESS_TOKEN_INVALID",
                "Invalid",
                "The access token cannot be decoded or verified.",
            ),
            AccessTokenExpired => {
                (StatusCode::UNAUTHORIZED, "ACCESS_TOKEN_EXPIRED", "Expired", "The access token is expired.")
            }
            AccessTokenKeysUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "ACCESS_TOKEN_KEYS_UNAVAILABLE",
                "KeysUnavailable",
                "The keys that verify access tokens cannot be fetched. Retry later.",
            ),
            InvalidRequest => {
                (StatusCode::BAD_REQUEST, "INVALID_REQUEST", "InvalidRequestFailure", "The request is malformed.")
            }
            UserNotFound => (StatusCode::NOT_FOUND, "USER_NOT_FOUND", "UserNotFoundFailure", "User not found."),
            EmailAlreadyVerified => (
                StatusCode::NOT_MODIFIED,
                "EMAIL_ALREADY_VERIFIED",
                "AlreadyVerified",
                "The user's email is already verified.",
            ),
            EmailUndeliverable => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "EMAIL_UNDELIVERABLE",
                "Undeliverable",
                "Mail to the user's email bounced or was reported as spam; no mail is sent until the address changes.",
            ),
            EmailCooldownActive { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "EMAIL_COOLDOWN_ACTIVE",
                "EmailCooldownActiveFailure",
                "Failed to send email because cooldown is active.",
            ),
            EmailVerificationTokenMissing => (
                StatusCode::UNAUTHORIZED,
                "EMAIL_VERIFICATION_TOKEN_MISSING",
                "Missing",
                "The email verification token is missing.",
            ),
            EmailVerificationTokenInvalid => (
                StatusCode::UNAUTHORIZED,
                "EMAIL_VERIFICATION_TOKEN_INVALID",
                "Invalid",
                "The email verification token is invalid.",
            ),
            EmailVerificationTokenExpired => (
                StatusCode::UNAUTHORIZED,
                "EMAIL_VERIFICATION_TOKEN_EXPIRED",
                "Expired",
                "The email verification token is expired.",
            ),
            DatabaseFailure => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "DATABASE_FAILURE",
                "DatabaseFailure",
                "A database operation failed.",
            ),
            EmailSendFailure => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "EMAIL_SEND_FAILURE",
                "EmailSendFailure",
                "The email could not be sent.",
            ),
            EmailTemplateFailure => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "EMAIL_TEMPLATE_FAILURE",
                "EmailTemplateFailure",
                "The email could not be created from its template.",
            ),
            EmailVerificationTokenCreationFailure => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "EMAIL_VERIFICATION_TOKEN_CREATION_FAILURE",
                "EmailVerificationTokenCreationFailure",
                "The email verification token could not be created.",
            ),
            EmailDisabled => (
                StatusCode::SERVICE_UNAVAILABLE,
                "EMAIL_DISABLED",
                "Disabled",
                "Email is disabled in this application.",
            ),
        }
    }

    pub fn status(self) -> StatusCode {
        self.parts().0
    }

    pub fn code(self) -> &'static str {
        self.parts().1
    }

    /// The error response for a request to `path` (path only, as Singularity reports it).
    pub fn response(self, path: &str, now: UnixTime) -> Response<Body> {
        let (status, code, error, message) = self.parts();
        let body = ErrorBody { timestamp: rfc3339(now), status: status.as_u16(), code, error, message, path };
        let mut response = json_response(status, &body);
        if let ErrorCode::EmailCooldownActive { remaining_seconds } = self {
            response.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from(remaining_seconds));
        }
        response
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    timestamp: String,
    status: u16,
    code: &'static str,
    error: &'static str,
    message: &'static str,
    path: &'a str,
}

impl From<AccessTokenError> for ErrorCode {
    fn from(err: AccessTokenError) -> Self {
        match err {
            AccessTokenError::Missing => ErrorCode::AuthenticationRequired,
            AccessTokenError::Invalid => ErrorCode::AccessTokenInvalid,
            AccessTokenError::Expired => ErrorCode::AccessTokenExpired,
            AccessTokenError::KeysUnavailable => ErrorCode::AccessTokenKeysUnavailable,
        }
    }
}

impl From<&ResendError> for ErrorCode {
    fn from(err: &ResendError) -> Self {
        match err {
            ResendError::MailDisabled => ErrorCode::EmailDisabled,
            ResendError::UserNotFound => ErrorCode::UserNotFound,
            ResendError::AlreadyConfirmed => ErrorCode::EmailAlreadyVerified,
            ResendError::Undeliverable => ErrorCode::EmailUndeliverable,
            ResendError::CooldownActive { remaining_seconds } => {
                ErrorCode::EmailCooldownActive { remaining_seconds: *remaining_seconds }
            }
            ResendError::Failed(failure) => failure.into(),
        }
    }
}

impl From<&Failure> for ErrorCode {
    fn from(failure: &Failure) -> Self {
        match failure {
            Failure::Storage(_) => ErrorCode::DatabaseFailure,
            Failure::Delivery(DeliveryError::TokenCreation(_)) => ErrorCode::EmailVerificationTokenCreationFailure,
            Failure::Delivery(DeliveryError::Template(_)) => ErrorCode::EmailTemplateFailure,
            Failure::Delivery(DeliveryError::MailSend(_)) => ErrorCode::EmailSendFailure,
        }
    }
}

impl From<&ConfirmError> for ErrorCode {
    fn from(err: &ConfirmError) -> Self {
        match err {
            ConfirmError::MailDisabled => ErrorCode::EmailDisabled,
            ConfirmError::Token(LinkTokenError::Missing) => ErrorCode::EmailVerificationTokenMissing,
            ConfirmError::Token(LinkTokenError::Invalid) => ErrorCode::EmailVerificationTokenInvalid,
            ConfirmError::Token(LinkTokenError::Expired) => ErrorCode::EmailVerificationTokenExpired,
            ConfirmError::UserNotFound => ErrorCode::UserNotFound,
            ConfirmError::AlreadyConfirmed => ErrorCode::EmailAlreadyVerified,
            // Singularity has no word for it; the link no longer proves anything.
            ConfirmError::AddressChanged => ErrorCode::EmailVerificationTokenInvalid,
            ConfirmError::Failed(failure) => failure.into(),
        }
    }
}

impl From<&CooldownStatusError> for ErrorCode {
    fn from(err: &CooldownStatusError) -> Self {
        match err {
            CooldownStatusError::MailDisabled => ErrorCode::EmailDisabled,
            CooldownStatusError::UserNotFound => ErrorCode::UserNotFound,
            CooldownStatusError::Failed(failure) => failure.into(),
        }
    }
}

/// Every way a request of this contract ends without success.
#[derive(Debug)]
pub enum Rejection {
    /// Refused before any use case ran: the access token or a parameter.
    Request(ErrorCode),
    Resend(ResendError),
    Confirm(ConfirmError),
    CooldownStatus(CooldownStatusError),
}

impl From<ErrorCode> for Rejection {
    fn from(code: ErrorCode) -> Self {
        Rejection::Request(code)
    }
}

impl From<ResendError> for Rejection {
    fn from(err: ResendError) -> Self {
        Rejection::Resend(err)
    }
}

impl From<ConfirmError> for Rejection {
    fn from(err: ConfirmError) -> Self {
        Rejection::Confirm(err)
    }
}

impl From<CooldownStatusError> for Rejection {
    fn from(err: CooldownStatusError) -> Self {
        Rejection::CooldownStatus(err)
    }
}

/// The one place this contract turns a rejection into its response; a failure of ours is
/// reported here and nowhere else.
pub fn respond(rejection: &Rejection, path: &str, now: UnixTime) -> Response<Body> {
    let (code, failure) = match rejection {
        Rejection::Request(code) => (*code, None),
        Rejection::Resend(err) => (ErrorCode::from(err), err.failure()),
        Rejection::Confirm(err) => (ErrorCode::from(err), err.failure()),
        Rejection::CooldownStatus(err) => (ErrorCode::from(err), err.failure()),
    };
    if let Some(failure) = failure {
        failure.report();
    }
    code.response(path, now)
}

/// The optional `locale` query parameter; blank means none.
fn requested_locale(request: &Request) -> Result<Option<Locale>, ErrorCode> {
    match query_param(request, "locale").filter(|tag| !tag.trim().is_empty()) {
        None => Ok(None),
        Some(tag) => Locale::parse(&tag).map(Some).map_err(|_| ErrorCode::InvalidRequest),
    }
}

async fn authenticate(verifier: &AccessTokenVerifier, request: &Request) -> Result<Principal, ErrorCode> {
    verifier.authenticate(request.headers()).await.map_err(ErrorCode::from)
}

/// `POST /api/auth/email/verification/send?locale=xx`.
pub struct SendVerification {
    access: AccessTokenVerifier,
    resend: Resend,
    clock: Arc<dyn Clock>,
}

impl SendVerification {
    pub fn from_config(w: &Wiring<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            access: AccessTokenVerifier::from_config(w.config, w.clock.clone())?,
            resend: Resend::from_config(w)?,
            clock: w.clock.clone(),
        })
    }

    async fn send(&self, request: &Request, now: UnixTime) -> Result<Sent, Rejection> {
        let principal = authenticate(&self.access, request).await?;
        let locale = requested_locale(request)?;
        Ok(self.resend.resend(&principal.user_id, locale.as_ref(), now).await?)
    }
}

#[async_trait]
impl HttpHandler for SendVerification {
    async fn handle(&self, request: Request) -> Response<Body> {
        let now = self.clock.now();
        match self.send(&request, now).await {
            Ok(sent) => json_response(StatusCode::OK, &json!({ "cooldown": sent.cooldown_seconds })),
            Err(rejection) => respond(&rejection, request.uri().path(), now),
        }
    }
}

/// `GET /api/auth/email/verification/cooldown`.
pub struct VerificationCooldown {
    access: AccessTokenVerifier,
    status: CooldownStatus,
    clock: Arc<dyn Clock>,
}

impl VerificationCooldown {
    pub fn from_config(w: &Wiring<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            access: AccessTokenVerifier::from_config(w.config, w.clock.clone())?,
            status: CooldownStatus::from_config(w)?,
            clock: w.clock.clone(),
        })
    }

    async fn remaining(&self, request: &Request, now: UnixTime) -> Result<u64, Rejection> {
        let principal = authenticate(&self.access, request).await?;
        Ok(self.status.remaining(&principal.user_id, now).await?)
    }
}

#[async_trait]
impl HttpHandler for VerificationCooldown {
    async fn handle(&self, request: Request) -> Response<Body> {
        let now = self.clock.now();
        match self.remaining(&request, now).await {
            Ok(remaining) => json_response(StatusCode::OK, &json!({ "remaining": remaining })),
            Err(rejection) => respond(&rejection, request.uri().path(), now),
        }
    }
}

/// `POST /api/auth/email/verification?token=…&locale=xx`.
pub struct VerifyEmail {
    confirmer: Confirmer,
    clock: Arc<dyn Clock>,
}

impl VerifyEmail {
    pub fn from_config(w: &Wiring<'_>) -> Result<Self, ConfigError> {
        Ok(Self { confirmer: Confirmer::from_config(w)?, clock: w.clock.clone() })
    }

    async fn verify(&self, request: &Request, now: UnixTime) -> Result<User, Rejection> {
        // Validated for the contract's sake; the verification itself has no language.
        requested_locale(request)?;
        let token = query_param(request, "token");
        let by = crate::contracts::confirmed_by(request, crate::domain::ConfirmMethod::VerifyApi);
        Ok(self.confirmer.confirm(token.as_deref(), now, &by).await?)
    }
}

#[async_trait]
impl HttpHandler for VerifyEmail {
    async fn handle(&self, request: Request) -> Response<Body> {
        let now = self.clock.now();
        match self.verify(&request, now).await {
            Ok(user) => json_response(StatusCode::OK, &UserView::from(&user)),
            Err(rejection) => respond(&rejection, request.uri().path(), now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link_token::TokenCreationError;
    use crate::mail::{MailSendError, TemplateError};

    fn body_of(response: &Response<Body>) -> serde_json::Value {
        match response.body() {
            Body::Text(text) => serde_json::from_str(text).unwrap(),
            other => panic!("unexpected body {other:?}"),
        }
    }

    #[test]
    fn every_failure_after_the_claim_maps_to_its_own_500_code() {
        let token_failure = TokenCreationError::NoKey;
        let cases = [
            (
                Failure::Delivery(DeliveryError::TokenCreation(token_failure)),
                "EMAIL_VERIFICATION_TOKEN_CREATION_FAILURE",
            ),
            (
                Failure::Delivery(DeliveryError::Template(TemplateError::from(anyhow::anyhow!("x")))),
                "EMAIL_TEMPLATE_FAILURE",
            ),
            (
                Failure::Delivery(DeliveryError::MailSend(MailSendError::from(anyhow::anyhow!("x")))),
                "EMAIL_SEND_FAILURE",
            ),
            (Failure::Storage(anyhow::anyhow!("x")), "DATABASE_FAILURE"),
        ];
        for (error, code) in cases {
            let response = respond(
                &Rejection::Resend(ResendError::Failed(error)),
                "/api/auth/email/verification/send",
                UnixTime(0),
            );
            assert_eq!(response.status(), 500);
            let body = body_of(&response);
            assert_eq!(body["code"], code);
            assert_eq!(body["path"], "/api/auth/email/verification/send");
        }
    }

    #[test]
    fn a_cooldown_refusal_says_when_to_retry() {
        let response = ErrorCode::EmailCooldownActive { remaining_seconds: 42 }.response("/p", UnixTime(0));
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()[http::header::RETRY_AFTER], "42");
        assert_eq!(body_of(&response)["code"], "EMAIL_COOLDOWN_ACTIVE");
    }
}
