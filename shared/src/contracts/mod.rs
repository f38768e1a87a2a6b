//! The API contracts mailconfirm speaks: each module turns HTTP into use-case calls and
//! use-case outcomes into that contract's responses, with its error mapping in one place.

pub mod backendless;
pub mod backendless_info;
pub mod codes;
pub mod mastodon;
pub mod service;
pub mod singularity;
pub mod tennpay;

use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;

use crate::domain::{UnixTime, User};

/// A JSON response; serialising our own types cannot fail, and if it ever did the body is empty.
pub fn json_response(status: http::StatusCode, body: &impl Serialize) -> Response<Body> {
    let body = serde_json::to_string(body).unwrap_or_default();
    let mut response = Response::new(Body::Text(body));
    *response.status_mut() = status;
    response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    response
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

/// How the request confirms an address, with what an audit keeps of where it came from.
pub fn confirmed_by(request: &Request, method: crate::domain::ConfirmMethod) -> crate::domain::ConfirmedBy {
    crate::domain::ConfirmedBy::new(
        method,
        source_ip(request).map(|ip| ip.to_string()),
        header(request, http::header::USER_AGENT.as_str()),
    )
}

/// A field of an `application/x-www-form-urlencoded` body, decoded; the first if repeated.
pub fn form_field(body: &[u8], name: &str) -> Option<String> {
    form_urlencoded::parse(body).find(|(key, _)| key == name).map(|(_, value)| value.into_owned())
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
