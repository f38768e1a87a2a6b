//! Backendless's `GET /api/info`: the app information the Backendless SDK loads in `initApp`
//! (and again for its logging levels). Without it the SDK logs "could not load backendless app
//! info" at every start.

use async_trait::async_trait;
use http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};

use crate::access_token::AccessTokenVerifier;
use crate::config::ConfigError;
use crate::contracts::backendless::ErrorCode;
use crate::contracts::{header, json_response};
use crate::wiring::{HttpHandler, Wiring};

/// `GET /api/info`: open to anyone, as Backendless's is. A `user-token` that is sent must be
/// a valid access token: otherwise 3064, on which the SDK forgets the token and asks again
/// without it. No AWS call.
pub struct AppInfo {
    verifier: AccessTokenVerifier,
}

impl AppInfo {
    pub fn from_config(w: &Wiring<'_>) -> Result<Self, ConfigError> {
        Ok(Self { verifier: AccessTokenVerifier::from_config(w.config, w.clock.clone())? })
    }

    async fn answer(&self, request: &Request) -> Result<Value, ErrorCode> {
        if let Some(token) = header(request, "user-token") {
            self.verifier.verify(token).await.map_err(ErrorCode::from)?;
        }
        // Of what the SDK reads, only the console's logger levels (`[{"name", "level"}]`) can
        // be told truthfully: there are none. There is no app id, API key or real-time server
        // to name, so the SDK's RT features, which need them, stay unavailable.
        Ok(json!({ "loggers": [] }))
    }
}

#[async_trait]
impl HttpHandler for AppInfo {
    async fn handle(&self, request: Request) -> Response<Body> {
        match self.answer(&request).await {
            Ok(body) => json_response(StatusCode::OK, &body),
            Err(code) => code.response(),
        }
    }
}
