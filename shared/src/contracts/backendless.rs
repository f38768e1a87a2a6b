//! The Backendless Users API: `POST /api/users/resendconfirmation/{identity}` and
//! `POST /api/users/createEmailConfirmationURL/{identity}`, with errors `{"message", "code"}`.

use std::sync::Arc;

use lambda_http::{Body, Request, Response};
use serde::Serialize;
use serde_json::json;

use crate::access_token::{AccessTokenVerifier, bearer_token};
use crate::aws::AwsClients;
use crate::config::{self, ConfigError, Source};
use crate::contracts::{header, json_response, log_failure, path_param, source_ip};
use crate::domain::{Identity, IdentityAttribute, UnixTime, client_subject};
use crate::usecases::send::{ConfirmationSender, SendError};
use crate::usecases::throttle::{self, ResendThrottles, ThrottleError};

/// Backendless's answers besides success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 3102: the address is already confirmed.
    AlreadyConfirmed,
    /// 3103: "Require email confirmation" is off (here: `EMAIL_ENABLED=false`).
    ConfirmationDisabled,
    /// 3104: no user has that identity (also: an identity that cannot be one).
    UserNotFound,
    /// Too many requests: the user's cooldown or a throttle.
    TooManyRequests { retry_after_seconds: u64 },
    /// No valid token: 401.
    NotAuthenticated,
    /// A valid token without the admin role or scope: 403.
    NotPermitted,
    /// A failure of ours: 500.
    Internal,
}

impl ErrorCode {
    fn parts(self) -> (u16, u32, &'static str) {
        match self {
            ErrorCode::AlreadyConfirmed => {
                (400, 3102, "User has already confirmed the email address. Email confirmation will not be sent.")
            }
            ErrorCode::ConfirmationDisabled => (
                400,
                3103,
                "Unable to send email confirmation. The \"Require Email Confirmation\" option must be enabled.",
            ),
            ErrorCode::UserNotFound => {
                (400, 3104, "Unable to send email confirmation - user account with the email cannot be found.")
            }
            ErrorCode::TooManyRequests { .. } => {
                (429, 999, "Cannot process request - request limit has been exhausted. Retry later.")
            }
            ErrorCode::NotAuthenticated => (401, 3064, "Not existing user token. Please log in as an administrator."),
            ErrorCode::NotPermitted => (403, 3066, "Permission denied: this operation requires an administrator."),
            ErrorCode::Internal => (500, 8000, "Internal server error. Please retry."),
        }
    }

    pub fn status(self) -> u16 {
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

    fn from_send(err: &SendError) -> Self {
        match err {
            SendError::MailDisabled => ErrorCode::ConfirmationDisabled,
            SendError::UserNotFound => ErrorCode::UserNotFound,
            SendError::AlreadyConfirmed => ErrorCode::AlreadyConfirmed,
            // Backendless sends without these requirements; they cannot occur here.
            SendError::ClientMismatch | SendError::AddressMismatch | SendError::AddressTaken => ErrorCode::UserNotFound,
            SendError::CooldownActive { remaining_seconds } => {
                ErrorCode::TooManyRequests { retry_after_seconds: *remaining_seconds }
            }
            SendError::Storage(_) | SendError::Delivery(_) => ErrorCode::Internal,
        }
    }
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
/// address and per identity before anything is looked up.
pub struct ResendConfirmation {
    pub sender: ConfirmationSender,
    pub identity: IdentityAttribute,
    /// `BACKENDLESS_PARANOID`: unknown identities are answered as known ones are.
    pub paranoid: bool,
    pub throttles: ResendThrottles,
}

impl ResendConfirmation {
    pub fn from_config(source: &dyn Source, aws: Arc<AwsClients>) -> Result<Self, ConfigError> {
        Ok(Self {
            sender: ConfirmationSender::from_config(source, aws)?,
            identity: identity_attribute(source)?,
            paranoid: config::flag(source, "BACKENDLESS_PARANOID", false)?,
            throttles: ResendThrottles::from_config(source)?,
        })
    }

    pub async fn handle(&self, request: Request) -> Response<Body> {
        match self.resend(&request).await {
            Ok(()) => Response::new(Body::Empty),
            Err(code) => code.response(),
        }
    }

    async fn resend(&self, request: &Request) -> Result<(), ErrorCode> {
        let now = UnixTime::now();
        let raw_identity = path_param(request, "identity").unwrap_or_default();
        let client = source_ip(request).map(client_subject).unwrap_or_else(|| "unknown".to_owned());
        // Counted by the identity as a mailbox would be: case does not make a new one.
        let rules = self.throttles.rules(client, raw_identity.trim().to_lowercase());
        throttle::count_request(&self.sender.store, &rules, now).await.map_err(|err| match err {
            ThrottleError::Throttled(throttled) => {
                ErrorCode::TooManyRequests { retry_after_seconds: throttled.retry_after_seconds(now) }
            }
            ThrottleError::Storage(err) => {
                log_failure(err.as_ref());
                ErrorCode::Internal
            }
        })?;
        let identity = identity_of(request, self.identity);
        let result = match identity {
            Ok(identity) => self.sender.resend_to(&identity, None, now).await.map(drop).map_err(|err| {
                if matches!(err, SendError::Storage(_) | SendError::Delivery(_)) {
                    log_failure(&err);
                }
                ErrorCode::from_send(&err)
            }),
            Err(code) => Err(code),
        };
        match result {
            Err(ErrorCode::UserNotFound) if self.paranoid => Ok(()),
            other => other,
        }
    }
}

/// Who may create confirmation URLs: a token with the configured admin role or scope.
pub struct AdminAccess {
    pub verifier: AccessTokenVerifier,
    /// `ADMIN_ROLE`, looked for in the `roles` claim.
    pub role: String,
    /// `ADMIN_SCOPE`, looked for in `scope`/`scp`.
    pub scope: String,
}

impl AdminAccess {
    pub fn from_config(source: &dyn Source) -> Result<Self, ConfigError> {
        Ok(Self {
            verifier: AccessTokenVerifier::from_config(source)?,
            role: config::optional(source, "ADMIN_ROLE").unwrap_or_else(|| "mailconfirm-admin".to_owned()),
            scope: config::optional(source, "ADMIN_SCOPE").unwrap_or_else(|| "mailconfirm:admin".to_owned()),
        })
    }

    /// The token comes in `user-token` (what the Backendless SDK sends) or as a Bearer token.
    pub fn authorize(&self, request: &Request) -> Result<(), ErrorCode> {
        let token = header(request, "user-token")
            .or_else(|| bearer_token(request.headers()))
            .ok_or(ErrorCode::NotAuthenticated)?;
        let principal = self.verifier.verify(token).map_err(|_| ErrorCode::NotAuthenticated)?;
        let admin = principal.roles.contains(&self.role) || principal.scopes.contains(&self.scope);
        if admin { Ok(()) } else { Err(ErrorCode::NotPermitted) }
    }
}

/// `POST /api/users/createEmailConfirmationURL/{identity}`: a link for a trusted backend to
/// deliver itself. No mail, no cooldown.
pub struct CreateConfirmationUrl {
    pub sender: ConfirmationSender,
    pub identity: IdentityAttribute,
    pub admin: AdminAccess,
}

impl CreateConfirmationUrl {
    pub fn from_config(source: &dyn Source, aws: Arc<AwsClients>) -> Result<Self, ConfigError> {
        Ok(Self {
            sender: ConfirmationSender::from_config(source, aws)?,
            identity: identity_attribute(source)?,
            admin: AdminAccess::from_config(source)?,
        })
    }

    pub async fn handle(&self, request: Request) -> Response<Body> {
        let result = async {
            self.admin.authorize(&request)?;
            let identity = identity_of(&request, self.identity)?;
            let now = UnixTime::now();
            self.sender.create_link(&identity, now).await.map_err(|err| {
                if matches!(err, SendError::Storage(_) | SendError::Delivery(_)) {
                    log_failure(&err);
                }
                ErrorCode::from_send(&err)
            })
        }
        .await;
        match result {
            Ok(url) => json_response(200, &json!({ "confirmationURL": url })),
            Err(code) => code.response(),
        }
    }
}
