//! mailconfirm's own routes for the app's backend: `GET /v1/users/{user_id}`,
//! `POST /v1/users/{user_id}/confirm` and `DELETE /v1/users/{user_id}`. Authorised by an access
//! token with `ADMIN_ROLE` or `ADMIN_SCOPE`; every error is RFC 9457 problem details.

use std::sync::Arc;

use async_trait::async_trait;
use http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::Serialize;
use serde_json::json;

use crate::access_token::{AccessTokenError, AccessTokenVerifier, AdminPolicy};
use crate::config::ConfigError;
use crate::contracts::{confirmed_by, json_response, path_param, rfc3339};
use crate::domain::{ConfirmMethod, UnixTime, User, UserId, UserStatus};
use crate::ports::Clock;
use crate::usecases::Failure;
use crate::usecases::admin::{AdminError, Erasure, ManualConfirmation, UserLookup};
use crate::wiring::{HttpHandler, Wiring};

/// Every answer of these routes but success.
#[derive(Debug)]
pub enum Problem {
    /// No token, or one that does not verify.
    Unauthenticated,
    /// A valid token without the admin role or scope.
    Forbidden,
    /// The path's user id is not one.
    InvalidUserId,
    UserNotFound,
    /// The identity provider's keys (`ACCESS_TOKEN_JWKS_URL`) could not be fetched.
    KeysUnavailable,
    /// A failure of ours, reported when the response is made.
    Internal(Failure),
}

impl From<AdminError> for Problem {
    fn from(err: AdminError) -> Self {
        match err {
            AdminError::UserNotFound => Problem::UserNotFound,
            AdminError::Failed(failure) => Problem::Internal(failure),
        }
    }
}

impl Problem {
    /// The one place these routes turn a refusal into its response.
    pub fn response(&self) -> Response<Body> {
        let (status, detail) = match self {
            Problem::Unauthenticated => {
                (StatusCode::UNAUTHORIZED, "A valid access token is required (Authorization: Bearer).")
            }
            Problem::Forbidden => (StatusCode::FORBIDDEN, "The access token lacks the admin role or scope."),
            Problem::InvalidUserId => {
                (StatusCode::BAD_REQUEST, "A user id is 1 to 128 characters without control characters.")
            }
            Problem::UserNotFound => (StatusCode::NOT_FOUND, "No user has this id."),
            Problem::KeysUnavailable => {
                (StatusCode::SERVICE_UNAVAILABLE, "The keys that verify access tokens cannot be fetched. Retry later.")
            }
            Problem::Internal(failure) => {
                failure.report();
                (StatusCode::INTERNAL_SERVER_ERROR, "A transient failure; nothing was changed. Retry.")
            }
        };
        let body = json!({
            "type": "about:blank",
            "title": status.canonical_reason().unwrap_or_default(),
            "status": status.as_u16(),
            "detail": detail,
        });
        let mut response = json_response(status, &body);
        let headers = response.headers_mut();
        headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/problem+json"));
        if matches!(self, Problem::Unauthenticated) {
            headers.insert(http::header::WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Checks the token and parses the path's user: what each of the three routes does first.
struct ServiceAccess {
    verifier: AccessTokenVerifier,
    policy: AdminPolicy,
}

impl ServiceAccess {
    fn from_config(w: &Wiring<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            verifier: AccessTokenVerifier::from_config(w.config, w.clock.clone())?,
            policy: AdminPolicy::from_config(w.config),
        })
    }

    async fn user_of(&self, request: &Request) -> Result<UserId, Problem> {
        let principal = self.verifier.authenticate(request.headers()).await.map_err(|err| match err {
            AccessTokenError::KeysUnavailable => Problem::KeysUnavailable,
            AccessTokenError::Missing | AccessTokenError::Invalid | AccessTokenError::Expired => {
                Problem::Unauthenticated
            }
        })?;
        if !self.policy.allows(&principal) {
            return Err(Problem::Forbidden);
        }
        let id = path_param(request, "user_id").unwrap_or_default();
        UserId::parse(&id).map_err(|_| Problem::InvalidUserId)
    }
}

/// A user as these routes show it.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct UserStatusView {
    pub user_id: String,
    pub email: String,
    /// `pending` or `confirmed`.
    pub status: &'static str,
    pub locale: Option<String>,
    pub client_id: Option<String>,
    pub created_at: String,
    pub confirmed_at: Option<String>,
    pub last_mail_sent_at: Option<String>,
    /// Seconds until another confirmation mail may be sent; 0 when one may now.
    pub cooldown_remaining_seconds: u64,
    /// `ok`, `bounced` or `complained`.
    pub delivery: &'static str,
}

impl UserStatusView {
    pub fn of(user: &User, now: UnixTime) -> Self {
        let remaining = user.cooldown_until.map_or(0, |until| until.0.saturating_sub(now.0).max(0));
        Self {
            user_id: user.id.as_str().to_owned(),
            email: user.email.as_typed().to_owned(),
            status: match user.status {
                UserStatus::EmailConfirmationPending => "pending",
                UserStatus::Enabled => "confirmed",
            },
            locale: user.locale.as_ref().map(|l| l.as_str().to_owned()),
            client_id: user.client_id.as_ref().map(|c| c.as_str().to_owned()),
            created_at: rfc3339(user.created_at),
            confirmed_at: user.confirmed_at.map(rfc3339),
            last_mail_sent_at: user.last_mail_sent_at.map(rfc3339),
            cooldown_remaining_seconds: u64::try_from(remaining).unwrap_or(0),
            delivery: user.delivery.as_str(),
        }
    }
}

/// `GET /v1/users/{user_id}`.
pub struct GetUser {
    access: ServiceAccess,
    lookup: UserLookup,
    clock: Arc<dyn Clock>,
}

impl GetUser {
    pub fn from_config(w: &Wiring<'_>) -> Result<Self, ConfigError> {
        Ok(Self { access: ServiceAccess::from_config(w)?, lookup: UserLookup::new(w.store()?), clock: w.clock.clone() })
    }

    async fn get(&self, request: &Request) -> Result<Response<Body>, Problem> {
        let user_id = self.access.user_of(request).await?;
        let user = self.lookup.user(&user_id).await?;
        Ok(json_response(StatusCode::OK, &UserStatusView::of(&user, self.clock.now())))
    }
}

/// `POST /v1/users/{user_id}/confirm`: confirms without a link; a confirmed user is left as is.
pub struct ConfirmUser {
    access: ServiceAccess,
    confirmation: ManualConfirmation,
    clock: Arc<dyn Clock>,
}

impl ConfirmUser {
    pub fn from_config(w: &Wiring<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            access: ServiceAccess::from_config(w)?,
            confirmation: ManualConfirmation::new(w.store()?),
            clock: w.clock.clone(),
        })
    }

    async fn confirm(&self, request: &Request) -> Result<Response<Body>, Problem> {
        let user_id = self.access.user_of(request).await?;
        let now = self.clock.now();
        let (user, _) = self.confirmation.confirm(&user_id, now, &confirmed_by(request, ConfirmMethod::Admin)).await?;
        Ok(json_response(StatusCode::OK, &UserStatusView::of(&user, now)))
    }
}

/// `DELETE /v1/users/{user_id}`: the user and its address look-up, in one transaction.
pub struct DeleteUser {
    access: ServiceAccess,
    erasure: Erasure,
}

impl DeleteUser {
    pub fn from_config(w: &Wiring<'_>) -> Result<Self, ConfigError> {
        let store = w.store()?;
        Ok(Self { access: ServiceAccess::from_config(w)?, erasure: Erasure::new(store.clone(), store) })
    }

    async fn delete(&self, request: &Request) -> Result<Response<Body>, Problem> {
        let user_id = self.access.user_of(request).await?;
        self.erasure.erase(&user_id).await?;
        let mut response = Response::new(Body::Empty);
        *response.status_mut() = StatusCode::NO_CONTENT;
        Ok(response)
    }
}

macro_rules! answers_problems {
    ($($handler:ident :: $method:ident),* $(,)?) => {$(
        #[async_trait]
        impl HttpHandler for $handler {
            async fn handle(&self, request: Request) -> Response<Body> {
                self.$method(&request).await.unwrap_or_else(|problem| problem.response())
            }
        }
    )*};
}

answers_problems!(GetUser::get, ConfirmUser::confirm, DeleteUser::delete);
