//! The API contracts mailconfirm speaks: each module turns HTTP into use-case calls and
//! use-case outcomes into that contract's responses, with its error mapping in one place.

pub mod backendless;
pub mod mastodon;
pub mod singularity;
pub mod tennpay;

use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;

use crate::domain::{UnixTime, User};

/// A JSON response; serialising our own types cannot fail, and if it ever did the body is empty.
pub fn json_response(status: u16, body: &impl Serialize) -> Response<Body> {
    let body = serde_json::to_string(body).unwrap_or_default();
    let mut response = Response::new(Body::Text(body));
    *response.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    response
}

/// Logs a failure of ours with its whole chain of causes; the caller only sees a code.
pub fn log_failure(err: &dyn std::error::Error) {
    tracing::error!(error = %error_chain(err), "request failed");
}

/// `outer: cause: root cause`, so a log line says what failed and why.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut chain = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    chain
}

/// A query parameter, `None` when absent.
pub fn query_param(request: &Request, name: &str) -> Option<String> {
    request.query_string_parameters_ref().and_then(|params| params.first(name)).map(str::to_owned)
}

/// A path parameter of the route (`{identity}`), as API Gateway decodes it.
pub fn path_param(request: &Request, name: &str) -> Option<String> {
    request.path_parameters_ref().and_then(|params| params.first(name)).map(str::to_owned)
}

/// The client's address as API Gateway saw it.
pub fn source_ip(request: &Request) -> Option<std::net::IpAddr> {
    match request.request_context_ref()? {
        lambda_http::request::RequestContext::ApiGatewayV2(context) => context.http.source_ip.as_deref()?.parse().ok(),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// A field of an `application/x-www-form-urlencoded` body, decoded; the first if repeated.
pub fn form_field(body: &[u8], name: &str) -> Option<String> {
    std::str::from_utf8(body)
        .ok()?
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(key, _)| form_decode(key) == name)
        .map(|(_, value)| form_decode(value))
}

/// `+` is a space and `%XX` a byte, as forms encode them.
fn form_decode(value: &str) -> String {
    percent_decode(&value.replace('+', " "))
}

/// `%XX` escapes decoded to bytes, read as UTF-8; malformed escapes are kept as they are.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A header's value as text.
pub fn header<'r>(request: &'r Request, name: &str) -> Option<&'r str> {
    request.headers().get(name).and_then(|value| value.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}

/// RFC 3339 in UTC with a `Z`, the form Java's `Instant.toString()` gives.
pub fn rfc3339(time: UnixTime) -> String {
    time::OffsetDateTime::from_unix_timestamp(time.0)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// How a user is shown as JSON in every contract.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    pub id: String,
    pub email: String,
    pub email_verified: bool,
    pub user_status: &'static str,
    pub locale: Option<String>,
    pub created_at: String,
    pub confirmed_at: Option<String>,
}

impl From<&User> for UserView {
    fn from(user: &User) -> Self {
        Self {
            id: user.id.as_str().to_owned(),
            email: user.email.as_typed().to_owned(),
            email_verified: user.status == crate::domain::UserStatus::Enabled,
            user_status: user.status.as_str(),
            locale: user.locale.as_ref().map(|l| l.as_str().to_owned()),
            created_at: rfc3339(user.created_at),
            confirmed_at: user.confirmed_at.map(rfc3339),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_are_decoded() {
        let body = b"email=ada%2Bnews%40example.com&name=a+b&flag&token=x.y.z&token=second";
        assert_eq!(form_field(body, "email").as_deref(), Some("ada+news@example.com"));
        assert_eq!(form_field(body, "name").as_deref(), Some("a b"));
        assert_eq!(form_field(body, "flag").as_deref(), Some(""));
        assert_eq!(form_field(body, "token").as_deref(), Some("x.y.z"));
        assert_eq!(form_field(body, "missing"), None);
        assert_eq!(form_field(b"broken=%zz%4", "broken").as_deref(), Some("%zz%4"));
        assert_eq!(form_field(&[0xff, b'='], "x"), None);
    }
}
