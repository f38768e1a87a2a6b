//! 10npay's `POST /User/email/send-confirmation`: a Bearer token, a JSON body `{id, email}`,
//! 204 whenever the request was valid, and RFC 7807 problem details for everything else.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use http::StatusCode;
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::access_token::{AccessTokenError, AccessTokenVerifier, bearer_token};
use crate::config::{self, ConfigError};
use crate::contracts::header;
use crate::domain::{EmailAddress, UserId};
use crate::ports::Clock;
use crate::usecases::resend_to_address::{AddressedResend, AddressedResendError};
use crate::wiring::{HttpHandler, Wiring};

/// A request that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendConfirmationRequest {
    pub id: i32,
    pub email: EmailAddress,
}

/// Validation errors keyed by field, as ASP.NET's model state reports them.
pub type FieldErrors = BTreeMap<&'static str, Vec<&'static str>>;

impl SendConfirmationRequest {
    /// Parses the body; every invalid field is reported, not just the first.
    pub fn parse(body: &[u8]) -> Result<Self, FieldErrors> {
        let mut errors = FieldErrors::new();
        if body.iter().all(u8::is_ascii_whitespace) {
            errors.insert("$", vec!["A non-empty request body is required."]);
            return Err(errors);
        }
        let value: Value = match serde_json::from_slice(body) {
            Ok(Value::Object(object)) => Value::Object(object),
            Ok(_) => {
                errors.insert("$", vec!["The request body must be a JSON object."]);
                return Err(errors);
            }
            Err(_) => {
                errors.insert("$", vec!["The request body is not valid JSON."]);
                return Err(errors);
            }
        };
        // Field names match case-insensitively, as System.Text.Json does in ASP.NET.
        let field = |name: &str| {
            value.as_object().and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone()))
        };
        let id = match field("id") {
            None | Some(Value::Null) => Err("The Id field is required."),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(id) if (1..=i64::from(i32::MAX)).contains(&id) => Ok(id as i32),
                Some(_) => Err("The field Id must be between 1 and 2147483647."),
                None if n.is_f64() => Err("The Id field must be an integer."),
                None => Err("The field Id must be between 1 and 2147483647."),
            },
            Some(_) => Err("The Id field must be an integer."),
        };
        let email = match field("email") {
            None | Some(Value::Null) => Err("The Email field is required."),
            Some(Value::String(s)) if s.trim().is_empty() => Err("The Email field is required."),
            Some(Value::String(s)) => EmailAddress::parse(&s).map_err(|_| "Invalid email address"),
            Some(_) => Err("The Email field must be a string."),
        };
        match (id, email) {
            (Ok(id), Ok(email)) => Ok(Self { id, email }),
            (id, email) => {
                if let Err(message) = id {
                    errors.insert("Id", vec![message]);
                }
                if let Err(message) = email {
                    errors.insert("Email", vec![message]);
                }
                Err(errors)
            }
        }
    }
}

/// The W3C trace id of a request (`00-<trace>-<span>-00`, what ASP.NET reports as `traceId`):
/// the X-Ray trace of API Gateway when present, else the API Gateway request id.
pub fn trace_id_of(request: &Request) -> String {
    let xray = header(request, "x-amzn-trace-id")
        .and_then(|h| h.split(';').find_map(|part| part.trim().strip_prefix("Root=1-")))
        .map(|root| root.replace('-', ""))
        .filter(|hex| hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit()));
    let request_id = match request.request_context_ref() {
        Some(lambda_http::request::RequestContext::ApiGatewayV2(context)) => {
            context.request_id.clone().unwrap_or_default()
        }
        #[allow(unreachable_patterns)]
        _ => String::new(),
    };
    let digest: [u8; 32] = Sha256::digest(request_id.as_bytes()).into();
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let trace = xray.unwrap_or_else(|| hex(&digest[..16]));
    format!("00-{trace}-{}-00", hex(&digest[16..24]))
}

/// Every answer of this contract: 204 whenever the request was valid, problem details else.
#[derive(Debug)]
pub enum Outcome {
    /// The mail went out.
    Sent,
    Unauthenticated(AccessTokenError),
    /// The identity provider's keys (`ACCESS_TOKEN_JWKS_URL`) could not be fetched.
    KeysUnavailable,
    UnsupportedMediaType,
    Invalid(FieldErrors),
    /// A user's token asked for another user.
    Forbidden,
    /// A valid request that the use case answered; the contract's 204 for most of them.
    Resend(AddressedResendError),
}

/// The one place this contract turns an outcome into its response; a failure of ours is
/// reported here and nowhere else. The log says which 204 it was.
pub fn respond(outcome: &Outcome, trace_id: &str) -> Response<Body> {
    match outcome {
        Outcome::Sent => {
            tracing::info!("resend accepted");
            no_content(None)
        }
        Outcome::Unauthenticated(err) => {
            tracing::info!(reason = %err, "unauthenticated");
            unauthorized(*err)
        }
        Outcome::KeysUnavailable => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable",
            "https://tools.ietf.org/html/rfc7231#section-6.6.4",
            trace_id,
            json!({ "detail": "The keys that verify access tokens cannot be fetched; nothing was sent. Retry." }),
        ),
        Outcome::UnsupportedMediaType => problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported Media Type",
            "https://tools.ietf.org/html/rfc7231#section-6.5.13",
            trace_id,
            json!({}),
        ),
        Outcome::Invalid(errors) => {
            tracing::info!(fields = ?errors.keys().collect::<Vec<_>>(), "invalid request");
            problem(
                StatusCode::BAD_REQUEST,
                "One or more validation errors occurred.",
                "https://tools.ietf.org/html/rfc7231#section-6.5.1",
                trace_id,
                json!({ "errors": errors }),
            )
        }
        Outcome::Forbidden => {
            tracing::info!("a user token asked for another user");
            problem(
                StatusCode::FORBIDDEN,
                "Forbidden",
                "https://tools.ietf.org/html/rfc7231#section-6.5.3",
                trace_id,
                json!({ "detail": "This token may only request confirmation mail for its own user." }),
            )
        }
        // The contract answers 204 whenever no mail was needed or allowed.
        Outcome::Resend(AddressedResendError::AlreadyConfirmed) => {
            tracing::info!("already verified; nothing sent");
            no_content(None)
        }
        Outcome::Resend(AddressedResendError::UserNotFound | AddressedResendError::AddressMismatch) => {
            tracing::info!("not a pending address of this user; nothing sent");
            no_content(None)
        }
        Outcome::Resend(AddressedResendError::Undeliverable) => {
            tracing::info!("the address bounced or complained; nothing sent");
            no_content(None)
        }
        Outcome::Resend(AddressedResendError::CooldownActive { remaining_seconds }) => {
            tracing::info!("cooldown active; nothing sent");
            no_content(Some(*remaining_seconds))
        }
        Outcome::Resend(AddressedResendError::MailDisabled) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable",
            "https://tools.ietf.org/html/rfc7231#section-6.6.4",
            trace_id,
            json!({ "detail": "E-mail is disabled." }),
        ),
        Outcome::Resend(AddressedResendError::Failed(failure)) => {
            failure.report();
            problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "An error occurred while processing your request.",
                "https://tools.ietf.org/html/rfc7231#section-6.6.1",
                trace_id,
                json!({ "detail": "A transient failure; nothing was sent and nothing was lost. Retry." }),
            )
        }
    }
}

fn problem(status: StatusCode, title: &str, type_uri: &str, trace_id: &str, extra: Value) -> Response<Body> {
    let mut body = json!({ "type": type_uri, "title": title, "status": status.as_u16(), "traceId": trace_id });
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    let mut response = Response::new(Body::Text(body.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/problem+json"));
    response
}

fn no_content(retry_after: Option<u64>) -> Response<Body> {
    let mut response = Response::new(Body::Empty);
    *response.status_mut() = http::StatusCode::NO_CONTENT;
    if let Some(seconds) = retry_after {
        response.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from(seconds));
    }
    response
}

fn unauthorized(err: AccessTokenError) -> Response<Body> {
    // As ASP.NET's JWT bearer handler: no body, the reason in WWW-Authenticate.
    let challenge = match err {
        AccessTokenError::Missing => "Bearer",
        // KeysUnavailable has its own outcome; were it here, the token was not judged.
        AccessTokenError::Invalid | AccessTokenError::KeysUnavailable => "Bearer error=\"invalid_token\"",
        AccessTokenError::Expired => "Bearer error=\"invalid_token\", error_description=\"The token expired\"",
    };
    let mut response = Response::new(Body::Empty);
    *response.status_mut() = http::StatusCode::UNAUTHORIZED;
    response.headers_mut().insert(http::header::WWW_AUTHENTICATE, http::HeaderValue::from_static(challenge));
    response
}

pub struct SendConfirmation {
    access: AccessTokenVerifier,
    resend: AddressedResend,
    /// `TENNPAY_SERVICE_SCOPE`: a scope that may act for any user.
    service_scope: String,
    clock: Arc<dyn Clock>,
}

impl SendConfirmation {
    pub fn from_config(w: &Wiring<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            access: AccessTokenVerifier::from_config(w.config, w.clock.clone())?,
            resend: AddressedResend::from_config(w)?,
            service_scope: config::optional(w.config, "TENNPAY_SERVICE_SCOPE")
                .unwrap_or_else(|| "mailconfirm:send-confirmation".to_owned()),
            clock: w.clock.clone(),
        })
    }

    async fn send(&self, request: &Request) -> Outcome {
        // Only the Bearer header counts here: the document names no cookie.
        let verified = match bearer_token(request.headers()) {
            Some(token) => self.access.verify(token).await,
            None => Err(AccessTokenError::Missing),
        };
        let principal = match verified {
            Ok(principal) => principal,
            Err(AccessTokenError::KeysUnavailable) => return Outcome::KeysUnavailable,
            Err(err) => return Outcome::Unauthenticated(err),
        };
        if header(request, "content-type").is_some_and(|ct| !ct.to_ascii_lowercase().contains("json")) {
            return Outcome::UnsupportedMediaType;
        }
        let parsed = match SendConfirmationRequest::parse(request.body().as_ref()) {
            Ok(parsed) => parsed,
            Err(errors) => return Outcome::Invalid(errors),
        };
        // A positive integer is always a valid user id.
        let Ok(user_id) = UserId::parse(&parsed.id.to_string()) else {
            return Outcome::Resend(AddressedResendError::UserNotFound);
        };
        if principal.user_id != user_id && !principal.scopes.contains(&self.service_scope) {
            return Outcome::Forbidden;
        }
        match self.resend.resend(&user_id, &parsed.email, self.clock.now()).await {
            Ok(()) => Outcome::Sent,
            Err(err) => Outcome::Resend(err),
        }
    }
}

#[async_trait]
impl HttpHandler for SendConfirmation {
    async fn handle(&self, request: Request) -> Response<Body> {
        let trace_id = trace_id_of(&request);
        let span = tracing::info_span!("10npay send-confirmation", trace_id = %trace_id);
        let outcome = tracing::Instrument::instrument(self.send(&request), span.clone()).await;
        span.in_scope(|| respond(&outcome, &trace_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(body: &str) -> FieldErrors {
        SendConfirmationRequest::parse(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn a_valid_body_parses_and_extra_fields_are_ignored() {
        let parsed =
            SendConfirmationRequest::parse(br#"{"id": 1234, "email": "user.name@example.org", "extra": true}"#)
                .unwrap();
        assert_eq!(parsed.id, 1234);
        assert_eq!(parsed.email.as_typed(), "user.name@example.org");
        assert!(SendConfirmationRequest::parse(br#"{"Id": 2147483647, "Email": "a@example.org"}"#).is_ok());
    }

    #[test]
    fn every_invalid_field_is_reported_under_its_name() {
        assert_eq!(
            errors_of("{}"),
            FieldErrors::from([
                ("Id", vec!["The Id field is required."]),
                ("Email", vec!["The Email field is required."])
            ])
        );
        assert_eq!(errors_of(r#"{"id": 0, "email": "x"}"#)["Id"], ["The field Id must be between 1 and 2147483647."]);
        assert_eq!(
            errors_of(r#"{"id": 2147483648, "email": "a@example.org"}"#)["Id"],
            ["The field Id must be between 1 and 2147483647."]
        );
        assert_eq!(errors_of(r#"{"id": "12", "email": "a@example.org"}"#)["Id"], ["The Id field must be an integer."]);
        assert_eq!(errors_of(r#"{"id": 1.5, "email": "a@example.org"}"#)["Id"], ["The Id field must be an integer."]);
        assert_eq!(errors_of(r#"{"id": 1, "email": "not-an-address"}"#)["Email"], ["Invalid email address"]);
        assert_eq!(errors_of(r#"{"id": 1, "email": "  "}"#)["Email"], ["The Email field is required."]);
        assert_eq!(errors_of(r#"{"id": 1, "email": 5}"#)["Email"], ["The Email field must be a string."]);
    }

    #[test]
    fn a_body_that_is_not_a_json_object_is_reported_as_a_whole() {
        assert!(errors_of("{ nope").contains_key("$"));
        assert!(errors_of("[1]").contains_key("$"));
        assert!(errors_of("").contains_key("$"));
    }
}
