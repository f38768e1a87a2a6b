//! Mastodon's `POST /api/v1/emails/confirmations` (and the singular path its documentation
//! shows): resend, optionally to a new address, for the OAuth application that created the user.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};

use crate::access_token::{AccessTokenError, AccessTokenVerifier, Principal};
use crate::config::{self, ConfigError};
use crate::contracts::{form_field, header, json_response, query_param, source_ip};
use crate::domain::{ClientId, EmailAddress, Throttle, ThrottleRule, UnixTime, UserStatus, client_subject};
use crate::ports::Clock;
use crate::usecases::Failure;
use crate::usecases::admin::{AdminError, UserLookup};
use crate::usecases::client_resend::{ClientResend, ClientResendError};
use crate::wiring::{HttpHandler, Wiring};

/// Mastodon's answers besides success, with its wording.
#[derive(Debug)]
pub enum Refusal {
    TokenInvalid,
    TokenExpired,
    OutsideScopes,
    NotOwnedByApplication,
    NotAwaitingConfirmation,
    /// `Validation failed: …`, as Rails words a failed `update!`.
    ValidationFailed(&'static str),
    /// A throttle, or the cooldown: 429 with rack-attack's headers.
    TooManyRequests {
        limit: u32,
        resets_at: UnixTime,
    },
    MailDisabled,
    /// The identity provider's keys (`ACCESS_TOKEN_JWKS_URL`) could not be fetched.
    KeysUnavailable,
    /// A failure of ours, reported when the response is made.
    Internal(Failure),
}

impl Refusal {
    /// The one place this contract turns a refusal into its response; a failure of ours is
    /// reported here and nowhere else.
    pub fn response(&self) -> Response<Body> {
        let (status, error) = match self {
            Refusal::TokenInvalid => (StatusCode::UNAUTHORIZED, "The access token is invalid".to_owned()),
            Refusal::TokenExpired => (StatusCode::UNAUTHORIZED, "The access token expired".to_owned()),
            Refusal::OutsideScopes => {
                (StatusCode::FORBIDDEN, "This action is outside the authorized scopes".to_owned())
            }
            Refusal::NotOwnedByApplication => (
                StatusCode::FORBIDDEN,
                "This method is only available to the application the user originally signed-up with".to_owned(),
            ),
            Refusal::NotAwaitingConfirmation => (
                StatusCode::FORBIDDEN,
                "This method is only available while the e-mail is awaiting confirmation".to_owned(),
            ),
            Refusal::ValidationFailed(reason) => {
                (StatusCode::UNPROCESSABLE_ENTITY, format!("Validation failed: {reason}"))
            }
            Refusal::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, "Too many requests".to_owned()),
            Refusal::MailDisabled => (StatusCode::SERVICE_UNAVAILABLE, "E-mail is disabled on this server".to_owned()),
            Refusal::KeysUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "The access token cannot be checked right now; retry later".to_owned(),
            ),
            Refusal::Internal(failure) => {
                failure.report();
                (StatusCode::INTERNAL_SERVER_ERROR, "Internal server error".to_owned())
            }
        };
        let mut response = json_response(status, &json!({ "error": error }));
        if let Refusal::TooManyRequests { limit, resets_at } = self {
            let headers = response.headers_mut();
            headers.insert("x-ratelimit-limit", http::HeaderValue::from(*limit));
            headers.insert("x-ratelimit-remaining", http::HeaderValue::from_static("0"));
            if let Ok(reset) = http::HeaderValue::from_str(&iso8601_micros(*resets_at)) {
                headers.insert("x-ratelimit-reset", reset);
            }
        }
        response
    }
}

/// `Time#iso8601(6)` in UTC, as rack-attack writes `X-RateLimit-Reset`.
fn iso8601_micros(time: UnixTime) -> String {
    time::OffsetDateTime::from_unix_timestamp(time.0)
        .ok()
        .and_then(|t| {
            t.format(&time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].000000Z")).ok()
        })
        .unwrap_or_default()
}

/// The optional `email` parameter: query string, form data or JSON, as Rails merges them.
fn email_param(request: &Request) -> Option<String> {
    if let Some(email) = query_param(request, "email") {
        return Some(email);
    }
    let body = request.body().as_ref();
    let content_type = header(request, "content-type").unwrap_or_default().to_ascii_lowercase();
    if content_type.starts_with("application/json") {
        let value: Value = serde_json::from_slice(body).ok()?;
        return value.get("email").map(|e| e.as_str().map(str::to_owned).unwrap_or_default());
    }
    if content_type.starts_with("application/x-www-form-urlencoded") {
        return form_field(body, "email");
    }
    None
}

pub struct ResendConfirmation {
    access: AccessTokenVerifier,
    resend: ClientResend,
    /// 25 requests per 5 minutes per client address, as Mastodon's rack-attack.
    per_ip: ThrottleRule,
    /// 5 requests per 30 minutes per user.
    per_user: ThrottleRule,
    clock: Arc<dyn Clock>,
}

impl ResendConfirmation {
    pub fn from_config(w: &Wiring<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            access: AccessTokenVerifier::from_config(w.config, w.clock.clone())?,
            resend: ClientResend::from_config(w)?,
            per_ip: config::throttle(
                w.config,
                "mastodon-confirmations-ip",
                ["MASTODON_IP_LIMIT", "MASTODON_IP_WINDOW_SECONDS"],
                25,
                300,
            )?,
            per_user: config::throttle(
                w.config,
                "mastodon-confirmations-user",
                ["MASTODON_USER_LIMIT", "MASTODON_USER_WINDOW_SECONDS"],
                5,
                1800,
            )?,
            clock: w.clock.clone(),
        })
    }

    async fn authenticate(&self, request: &Request) -> Result<Principal, Refusal> {
        self.access.authenticate(request.headers()).await.map_err(|err| match err {
            AccessTokenError::Expired => Refusal::TokenExpired,
            AccessTokenError::Missing | AccessTokenError::Invalid => Refusal::TokenInvalid,
            AccessTokenError::KeysUnavailable => Refusal::KeysUnavailable,
        })
    }

    /// What the request asks for, once its token is known: the application and the new address.
    fn parse<'a>(principal: &'a Principal, request: &Request) -> Result<(&'a ClientId, Option<EmailAddress>), Refusal> {
        if !principal.scopes.iter().any(|s| s == "write" || s == "write:accounts") {
            return Err(Refusal::OutsideScopes);
        }
        let client_id = principal.client_id.as_ref().ok_or(Refusal::NotOwnedByApplication)?;
        let new_address = match email_param(request) {
            None => None,
            Some(email) => match EmailAddress::parse(&email) {
                Ok(email) => Some(email),
                Err(_) if email.trim().is_empty() => return Err(Refusal::ValidationFailed("Email can't be blank")),
                Err(_) => return Err(Refusal::ValidationFailed("Email is invalid")),
            },
        };
        Ok((client_id, new_address))
    }

    async fn resend(&self, request: &Request, now: UnixTime) -> Result<(), Refusal> {
        // rack-attack counts every request for its address, and valid tokens for their user,
        // before the request is looked at; a refusal is told only if the throttles allow it.
        let client = source_ip(request).map(client_subject).unwrap_or_else(|| "unknown".to_owned());
        let per_ip = self.per_ip.counting(client);
        let principal = match self.authenticate(request).await {
            Ok(principal) => principal,
            Err(refusal) => return Err(self.refuse_counted(refusal, &[per_ip], now).await),
        };
        let throttles = [per_ip, self.per_user.counting(principal.user_id.as_str())];
        let (client_id, new_address) = match Self::parse(&principal, request) {
            Ok(parsed) => parsed,
            Err(refusal) => return Err(self.refuse_counted(refusal, &throttles, now).await),
        };
        self.resend
            .resend(&principal.user_id, client_id, new_address.as_ref(), now, &throttles)
            .await
            .map_err(|err| Self::refusal(err, now))
    }

    /// `refusal`, unless counting the request finds it throttled (or fails).
    async fn refuse_counted(&self, refusal: Refusal, throttles: &[Throttle], now: UnixTime) -> Refusal {
        match self.resend.count_only(throttles, now).await {
            Ok(()) => refusal,
            Err(err) => Self::refusal(err, now),
        }
    }

    fn refusal(err: ClientResendError, now: UnixTime) -> Refusal {
        match err {
            ClientResendError::NotOwnedByClient => Refusal::NotOwnedByApplication,
            ClientResendError::AlreadyConfirmed => Refusal::NotAwaitingConfirmation,
            ClientResendError::AddressTaken => Refusal::ValidationFailed("Email has already been taken"),
            ClientResendError::Undeliverable => {
                Refusal::ValidationFailed("Email bounced or was reported as spam; change the address")
            }
            ClientResendError::Throttled(throttled) => {
                Refusal::TooManyRequests { limit: throttled.rule.limit, resets_at: throttled.resets_at }
            }
            // The cooldown is told as a throttle of one request.
            ClientResendError::CooldownActive { remaining_seconds } => {
                Refusal::TooManyRequests { limit: 1, resets_at: now.plus(Duration::from_secs(remaining_seconds)) }
            }
            ClientResendError::MailDisabled => Refusal::MailDisabled,
            ClientResendError::Failed(failure) => Refusal::Internal(failure),
        }
    }
}

#[async_trait]
impl HttpHandler for ResendConfirmation {
    async fn handle(&self, request: Request) -> Response<Body> {
        match self.resend(&request, self.clock.now()).await {
            Ok(()) => json_response(StatusCode::OK, &json!({})),
            Err(refusal) => refusal.response(),
        }
    }
}

/// `GET /api/v1/emails/check_confirmation`: `true` once the token's user has confirmed, else
/// `false`, for a token with `read` or `read:accounts` (Mastodon 4.3's `EmailsController`).
pub struct CheckConfirmation {
    access: AccessTokenVerifier,
    users: UserLookup,
}

impl CheckConfirmation {
    pub fn from_config(w: &Wiring<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            access: AccessTokenVerifier::from_config(w.config, w.clock.clone())?,
            users: UserLookup::new(w.store()?),
        })
    }

    async fn check(&self, request: &Request) -> Result<bool, Refusal> {
        let principal = self.access.authenticate(request.headers()).await.map_err(|err| match err {
            AccessTokenError::Expired => Refusal::TokenExpired,
            AccessTokenError::Missing | AccessTokenError::Invalid => Refusal::TokenInvalid,
            AccessTokenError::KeysUnavailable => Refusal::KeysUnavailable,
        })?;
        if !principal.scopes.iter().any(|s| s == "read" || s == "read:accounts") {
            return Err(Refusal::OutsideScopes);
        }
        match self.users.user(&principal.user_id).await {
            Ok(user) => Ok(user.status == UserStatus::Enabled),
            // Mastodon revokes the tokens of a user that is gone.
            Err(AdminError::UserNotFound) => Err(Refusal::TokenInvalid),
            Err(AdminError::Failed(failure)) => Err(Refusal::Internal(failure)),
        }
    }
}

#[async_trait]
impl HttpHandler for CheckConfirmation {
    async fn handle(&self, request: Request) -> Response<Body> {
        match self.check(&request).await {
            Ok(confirmed) => json_response(StatusCode::OK, &confirmed),
            Err(refusal) => refusal.response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reset_header_is_iso8601_with_microseconds_in_utc() {
        assert_eq!(iso8601_micros(UnixTime(1_795_286_700)), "2026-11-21T18:45:00.000000Z");
    }
}
