//! The Singularity e-mail verification contract (`/api/auth/email/verification…`):
//! success bodies, and every error as `{"timestamp","status","code","error","message","path"}`.

use std::sync::Arc;

use lambda_http::{Body, Request, Response};
use serde::Serialize;
use serde_json::json;

use crate::access_token::{AccessTokenError, AccessTokenVerifier, Principal};
use crate::aws::AwsClients;
use crate::config::{ConfigError, Source};
use crate::contracts::{UserView, error_chain, json_response, query_param, rfc3339};
use crate::domain::{Locale, UnixTime};
use crate::link_token::LinkTokenError;
use crate::usecases::confirm::{ConfirmError, Confirmer};
use crate::usecases::cooldown_status::{CooldownStatus, CooldownStatusError};
use crate::usecases::send::{ConfirmationSender, DeliveryError, SendError};

/// Every answer this contract gives besides success, as Singularity names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    AuthenticationRequired,
    AccessTokenInvalid,
    AccessTokenExpired,
    InvalidRequest,
    UserNotFound,
    EmailAlreadyVerified,
    EmailCooldownActive { remaining_seconds: u64 },
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
    fn parts(self) -> (u16, &'static str, &'static str, &'static str) {
        use ErrorCode::*;
        match self {
            AuthenticationRequired => (
                401,
                "AUTHENTICATION_REQUIRED",
                "AuthenticationRequired",
                "Authentication is required to access this resource.",
            ),
            AccessTokenInvalid => {
                (401, "ACCESS_TOKEN_INVALID", "Invalid", "The access token cannot be decoded or verified.")
            }
            AccessTokenExpired => (401, "ACCESS_TOKEN_EXPIRED", "Expired", "The access token is expired."),
            InvalidRequest => (400, "INVALID_REQUEST", "InvalidRequestFailure", "The request is malformed."),
            UserNotFound => (404, "USER_NOT_FOUND", "UserNotFoundFailure", "User not found."),
            EmailAlreadyVerified => {
                (304, "EMAIL_ALREADY_VERIFIED", "AlreadyVerified", "The user's email is already verified.")
            }
            EmailCooldownActive { .. } => (
                429,
                "EMAIL_COOLDOWN_ACTIVE",
                "EmailCooldownActiveFailure",
                "Failed to send email because cooldown is active.",
            ),
            EmailVerificationTokenMissing => {
                (401, "EMAIL_VERIFICATION_TOKEN_MISSING", "Missing", "The email verification token is missing.")
            }
            EmailVerificationTokenInvalid => {
                (401, "EMAIL_VERIFICATION_TOKEN_INVALID", "Invalid", "The email verification token is invalid.")
            }
            EmailVerificationTokenExpired => {
                (401, "EMAIL_VERIFICATION_TOKEN_EXPIRED", "Expired", "The email verification token is expired.")
            }
            DatabaseFailure => (500, "DATABASE_FAILURE", "DatabaseFailure", "A database operation failed."),
            EmailSendFailure => (500, "EMAIL_SEND_FAILURE", "EmailSendFailure", "The email could not be sent."),
            EmailTemplateFailure => (
                500,
                "EMAIL_TEMPLATE_FAILURE",
                "EmailTemplateFailure",
                "The email could not be created from its template.",
            ),
            EmailVerificationTokenCreationFailure => (
                500,
                "EMAIL_VERIFICATION_TOKEN_CREATION_FAILURE",
                "EmailVerificationTokenCreationFailure",
                "The email verification token could not be created.",
            ),
            EmailDisabled => (503, "EMAIL_DISABLED", "Disabled", "Email is disabled in this application."),
        }
    }

    pub fn status(self) -> u16 {
        self.parts().0
    }

    pub fn code(self) -> &'static str {
        self.parts().1
    }

    /// The error response for a request to `path` (path only, as Singularity reports it).
    pub fn response(self, path: &str) -> Response<Body> {
        let (status, code, error, message) = self.parts();
        let mut response = json_response(
            status,
            &ErrorBody { timestamp: rfc3339(UnixTime::now()), status, code, error, message, path },
        );
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
        }
    }
}

impl From<&SendError> for ErrorCode {
    fn from(err: &SendError) -> Self {
        match err {
            SendError::MailDisabled => ErrorCode::EmailDisabled,
            SendError::UserNotFound => ErrorCode::UserNotFound,
            SendError::AlreadyConfirmed => ErrorCode::EmailAlreadyVerified,
            // Singularity sends without these requirements; they cannot occur here.
            SendError::ClientMismatch | SendError::AddressMismatch | SendError::AddressTaken => {
                ErrorCode::InvalidRequest
            }
            SendError::CooldownActive { remaining_seconds } => {
                ErrorCode::EmailCooldownActive { remaining_seconds: *remaining_seconds }
            }
            SendError::Storage(_) => ErrorCode::DatabaseFailure,
            SendError::Delivery(DeliveryError::TokenCreation(_)) => ErrorCode::EmailVerificationTokenCreationFailure,
            SendError::Delivery(DeliveryError::Template(_)) => ErrorCode::EmailTemplateFailure,
            SendError::Delivery(DeliveryError::MailSend(_)) => ErrorCode::EmailSendFailure,
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
            ConfirmError::Storage(_) => ErrorCode::DatabaseFailure,
        }
    }
}

impl From<&CooldownStatusError> for ErrorCode {
    fn from(err: &CooldownStatusError) -> Self {
        match err {
            CooldownStatusError::MailDisabled => ErrorCode::EmailDisabled,
            CooldownStatusError::UserNotFound => ErrorCode::UserNotFound,
            CooldownStatusError::Storage(_) => ErrorCode::DatabaseFailure,
        }
    }
}

/// Logs an internal failure with its whole chain; the caller only sees the code.
fn log_failure(code: ErrorCode, err: &dyn std::error::Error) {
    if code.status() >= 500 {
        tracing::error!(code = code.code(), error = %error_chain(err), "request failed");
    }
}

/// The optional `locale` query parameter; blank means none.
fn requested_locale(request: &Request) -> Result<Option<Locale>, ErrorCode> {
    match query_param(request, "locale").filter(|tag| !tag.trim().is_empty()) {
        None => Ok(None),
        Some(tag) => Locale::parse(&tag).map(Some).map_err(|_| ErrorCode::InvalidRequest),
    }
}

fn authenticate(verifier: &AccessTokenVerifier, request: &Request) -> Result<Principal, ErrorCode> {
    verifier.authenticate(request.headers()).map_err(ErrorCode::from)
}

/// `POST /api/auth/email/verification/send?locale=xx`.
pub struct SendVerification {
    pub access: AccessTokenVerifier,
    pub sender: ConfirmationSender,
}

impl SendVerification {
    pub fn from_config(source: &dyn Source, aws: Arc<AwsClients>) -> Result<Self, ConfigError> {
        Ok(Self {
            access: AccessTokenVerifier::from_config(source)?,
            sender: ConfirmationSender::from_config(source, aws)?,
        })
    }

    pub async fn handle(&self, request: Request) -> Response<Body> {
        let path = request.uri().path().to_owned();
        let result = async {
            let principal = authenticate(&self.access, &request)?;
            let locale = requested_locale(&request)?;
            self.sender.resend(&principal.user_id, locale.as_ref(), UnixTime::now()).await.map_err(|err| {
                let code = ErrorCode::from(&err);
                log_failure(code, &err);
                code
            })
        }
        .await;
        match result {
            Ok(sent) => json_response(200, &json!({ "cooldown": sent.cooldown_seconds })),
            Err(code) => code.response(&path),
        }
    }
}

/// `GET /api/auth/email/verification/cooldown`.
pub struct VerificationCooldown {
    pub access: AccessTokenVerifier,
    pub status: CooldownStatus,
}

impl VerificationCooldown {
    pub fn from_config(source: &dyn Source, aws: Arc<AwsClients>) -> Result<Self, ConfigError> {
        Ok(Self {
            access: AccessTokenVerifier::from_config(source)?,
            status: CooldownStatus::from_config(source, aws)?,
        })
    }

    pub async fn handle(&self, request: Request) -> Response<Body> {
        let path = request.uri().path().to_owned();
        let result = async {
            let principal = authenticate(&self.access, &request)?;
            self.status.remaining(&principal.user_id, UnixTime::now()).await.map_err(|err| {
                let code = ErrorCode::from(&err);
                log_failure(code, &err);
                code
            })
        }
        .await;
        match result {
            Ok(remaining) => json_response(200, &json!({ "remaining": remaining })),
            Err(code) => code.response(&path),
        }
    }
}

/// `POST /api/auth/email/verification?token=…&locale=xx`.
pub struct VerifyEmail {
    pub confirmer: Confirmer,
}

impl VerifyEmail {
    pub fn from_config(source: &dyn Source, aws: Arc<AwsClients>) -> Result<Self, ConfigError> {
        Ok(Self { confirmer: Confirmer::from_config(source, aws)? })
    }

    pub async fn handle(&self, request: Request) -> Response<Body> {
        let path = request.uri().path().to_owned();
        let result = async {
            // Validated for the contract's sake; the verification itself has no language.
            requested_locale(&request)?;
            let token = query_param(&request, "token");
            self.confirmer.confirm(token.as_deref(), UnixTime::now()).await.map_err(|err| {
                let code = ErrorCode::from(&err);
                log_failure(code, &err);
                code
            })
        }
        .await;
        match result {
            Ok(user) => json_response(200, &UserView::from(&user)),
            Err(code) => code.response(&path),
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
        let token_failure = TokenCreationError::from(jsonwebtoken::errors::Error::from(
            jsonwebtoken::errors::ErrorKind::InvalidKeyFormat,
        ));
        let cases = [
            (
                SendError::Delivery(DeliveryError::TokenCreation(token_failure)),
                "EMAIL_VERIFICATION_TOKEN_CREATION_FAILURE",
            ),
            (
                SendError::Delivery(DeliveryError::Template(TemplateError::from(anyhow::anyhow!("x")))),
                "EMAIL_TEMPLATE_FAILURE",
            ),
            (
                SendError::Delivery(DeliveryError::MailSend(MailSendError::from(anyhow::anyhow!("x")))),
                "EMAIL_SEND_FAILURE",
            ),
            (SendError::Storage(anyhow::anyhow!("x")), "DATABASE_FAILURE"),
        ];
        for (error, code) in cases {
            let response = ErrorCode::from(&error).response("/api/auth/email/verification/send");
            assert_eq!(response.status(), 500);
            let body = body_of(&response);
            assert_eq!(body["code"], code);
            assert_eq!(body["path"], "/api/auth/email/verification/send");
        }
    }

    #[test]
    fn a_cooldown_refusal_says_when_to_retry() {
        let response = ErrorCode::EmailCooldownActive { remaining_seconds: 42 }.response("/p");
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()[http::header::RETRY_AFTER], "42");
        assert_eq!(body_of(&response)["code"], "EMAIL_COOLDOWN_ACTIVE");
    }
}
