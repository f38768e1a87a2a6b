//! mailconfirm's `POST /v1/confirmations/code`: the app posts the one-time code of the mail
//! for its signed-in user (`{"code": "123456"}` with the user's access token). Every answer
//! but success is `{"error": "<code>", "message": "…"}`, decided in [`respond`].

use std::sync::Arc;

use async_trait::async_trait;
use http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::Deserialize;
use serde_json::json;

use crate::access_token::{AccessTokenError, AccessTokenVerifier};
use crate::config::ConfigError;
use crate::contracts::{confirmed_by, json_response, source_ip};
use crate::domain::{ConfirmMethod, OneTimeCode, UnixTime, client_subject};
use crate::ports::Clock;
use crate::usecases::MaybeFailure;
use crate::usecases::confirm_code::{CodeConfirmer, CodeThrottles, ConfirmCodeError};
use crate::wiring::{HttpHandler, Wiring};

/// Every way a request ends without success.
#[derive(Debug)]
pub enum Rejection {
    /// Not JSON, or no `code` of 4 to 10 digits.
    Malformed,
    Token(AccessTokenError),
    Code(ConfirmCodeError),
}

/// The body the app posts. Without `Debug`: it holds the code.
#[derive(Deserialize)]
struct CodeBody {
    code: String,
}

fn parse(body: &[u8]) -> Result<OneTimeCode, Rejection> {
    let body: CodeBody = serde_json::from_slice(body).map_err(|_| Rejection::Malformed)?;
    OneTimeCode::parse(&body.code).map_err(|_| Rejection::Malformed)
}

const ASK_FOR_A_NEW_MAIL: &str = "This code no longer works; ask for a new confirmation mail, which has a new code.";

/// The one place this route turns an outcome into its response; a failure of ours is reported
/// here and nowhere else.
pub fn respond(outcome: Result<(), Rejection>, now: UnixTime) -> Response<Body> {
    let rejection = match outcome {
        Ok(()) => return json_response(StatusCode::OK, &json!({ "confirmed": true })),
        Err(rejection) => rejection,
    };
    if let Rejection::Code(err) = &rejection
        && let Some(failure) = err.failure()
    {
        failure.report();
    }
    let (status, error, message) = match &rejection {
        Rejection::Malformed => (
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The body must be JSON {\"code\": \"…\"} with a code of 4 to 10 digits.",
        ),
        Rejection::Token(AccessTokenError::KeysUnavailable) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "The access token cannot be checked right now; retry later.",
        ),
        Rejection::Token(_) => {
            (StatusCode::UNAUTHORIZED, "invalid_token", "A valid access token of the user is required.")
        }
        // Confirmed already (by this code, its link, or another way): what the app wanted.
        Rejection::Code(ConfirmCodeError::AlreadyConfirmed) => {
            return json_response(StatusCode::OK, &json!({ "confirmed": true }));
        }
        Rejection::Code(ConfirmCodeError::WrongCode { attempts_left }) => {
            let message = "This is not the code of the latest confirmation mail.";
            let body = json!({ "error": "wrong_code", "attempts_left": attempts_left, "message": message });
            return json_response(StatusCode::UNPROCESSABLE_ENTITY, &body);
        }
        Rejection::Code(ConfirmCodeError::Expired) => (StatusCode::GONE, "code_expired", ASK_FOR_A_NEW_MAIL),
        Rejection::Code(ConfirmCodeError::TooManyAttempts) => {
            (StatusCode::GONE, "too_many_attempts", ASK_FOR_A_NEW_MAIL)
        }
        Rejection::Code(ConfirmCodeError::NoCode) => (StatusCode::GONE, "no_code", ASK_FOR_A_NEW_MAIL),
        Rejection::Code(ConfirmCodeError::UserNotFound) => {
            (StatusCode::NOT_FOUND, "user_not_found", "The token's user does not exist.")
        }
        Rejection::Code(ConfirmCodeError::Throttled(_)) => {
            (StatusCode::TOO_MANY_REQUESTS, "too_many_requests", "Too many requests; retry after Retry-After seconds.")
        }
        Rejection::Code(ConfirmCodeError::Failed(_)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "The code could not be checked; nothing changed and no attempt was lost. Retry.",
        ),
    };
    let mut response = json_response(status, &json!({ "error": error, "message": message }));
    match &rejection {
        Rejection::Token(AccessTokenError::Missing | AccessTokenError::Invalid | AccessTokenError::Expired) => {
            response.headers_mut().insert(http::header::WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
        }
        Rejection::Code(ConfirmCodeError::Throttled(throttled)) => {
            let retry_after = throttled.retry_after_seconds(now);
            response.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from(retry_after));
        }
        _ => {}
    }
    response
}

/// `POST /v1/confirmations/code`.
pub struct ConfirmCode {
    access: AccessTokenVerifier,
    confirmer: CodeConfirmer,
    throttles: CodeThrottles,
    clock: Arc<dyn Clock>,
}

impl ConfirmCode {
    pub fn from_config(w: &Wiring<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            access: AccessTokenVerifier::from_config(w.config, w.clock.clone())?,
            confirmer: CodeConfirmer::from_config(w)?,
            throttles: CodeThrottles::from_config(w.config)?,
            clock: w.clock.clone(),
        })
    }

    async fn confirm(&self, request: &Request, now: UnixTime) -> Result<(), Rejection> {
        let principal = self.access.authenticate(request.headers()).await.map_err(Rejection::Token)?;
        let code = parse(request.body().as_ref())?;
        let client = source_ip(request).map(client_subject).unwrap_or_else(|| "unknown".to_owned());
        let throttles = self.throttles.counting(client, &principal.user_id);
        let by = confirmed_by(request, ConfirmMethod::Code);
        self.confirmer.confirm(&principal.user_id, &code, now, &by, &throttles).await.map_err(Rejection::Code)?;
        Ok(())
    }
}

#[async_trait]
impl HttpHandler for ConfirmCode {
    async fn handle(&self, request: Request) -> Response<Body> {
        let now = self.clock.now();
        respond(self.confirm(&request, now).await, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_json_object_with_a_code_of_four_to_ten_digits_is_taken() {
        assert_eq!(parse(br#"{"code":"012345"}"#).ok().map(|c| c.as_str().to_owned()).as_deref(), Some("012345"));
        for bad in
            [&br#"{"code":12345}"#[..], br#"{"code":"12 345"}"#, br#"{"code":"123"}"#, b"", b"code=1234", br#"[]"#]
        {
            assert!(matches!(parse(bad), Err(Rejection::Malformed)), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn each_outcome_has_its_status_and_error() {
        let now = UnixTime(0);
        let status_and_error = |outcome| {
            let response = respond(outcome, now);
            let body: serde_json::Value = match response.body() {
                Body::Text(text) => serde_json::from_str(text).unwrap(),
                _ => panic!("a text body"),
            };
            (response.status().as_u16(), body)
        };
        let (status, body) = status_and_error(Ok(()));
        assert_eq!((status, body), (200, json!({ "confirmed": true })));
        let (status, body) = status_and_error(Err(Rejection::Code(ConfirmCodeError::AlreadyConfirmed)));
        assert_eq!((status, body), (200, json!({ "confirmed": true })));
        let (status, body) = status_and_error(Err(Rejection::Code(ConfirmCodeError::WrongCode { attempts_left: 3 })));
        assert_eq!(
            (status, body["error"].as_str(), body["attempts_left"].as_u64()),
            (422, Some("wrong_code"), Some(3))
        );
        for (err, error) in [
            (ConfirmCodeError::Expired, "code_expired"),
            (ConfirmCodeError::TooManyAttempts, "too_many_attempts"),
            (ConfirmCodeError::NoCode, "no_code"),
        ] {
            let (status, body) = status_and_error(Err(Rejection::Code(err)));
            assert_eq!((status, body["error"].as_str()), (410, Some(error)));
            assert!(body["message"].as_str().unwrap().contains("new confirmation mail"));
        }
        assert_eq!(status_and_error(Err(Rejection::Malformed)).0, 400);
        assert_eq!(status_and_error(Err(Rejection::Token(AccessTokenError::Expired))).0, 401);
        assert_eq!(status_and_error(Err(Rejection::Token(AccessTokenError::KeysUnavailable))).0, 503);
        let throttled = crate::domain::Throttled {
            rule: crate::domain::ThrottleRule {
                name: "code-user",
                limit: 1,
                window: std::time::Duration::from_secs(60),
            },
            resets_at: UnixTime(42),
        };
        let response = respond(Err(Rejection::Code(ConfirmCodeError::Throttled(throttled))), now);
        assert_eq!(
            (response.status().as_u16(), &response.headers()["retry-after"]),
            (429, &http::HeaderValue::from(42))
        );
    }
}
