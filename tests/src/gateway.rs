//! An API Gateway (HTTP API, payload 2.0) in miniature: matches a request to a route of the
//! template, turns it into the event API Gateway would send, and runs the function's handler
//! through `lambda_http`'s own adapter, the same conversion `lambda_http::run` does.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use base64::Engine as _;
use lambda_http::request::LambdaRequest;
use lambda_http::{Adapter, Context as LambdaContext, LambdaEvent, Request, Service, service_fn};
use mailconfirm::HttpHandler;
use serde_json::{Value, json};

use crate::template::RouteSpec;

/// A function's HTTP handler, as its binary runs it.
pub type HttpFunction = Arc<dyn HttpHandler>;

/// A request as it reaches the gateway.
#[derive(Debug, Clone, Default)]
pub struct GatewayRequest {
    pub method: String,
    pub path: String,
    pub raw_query: String,
    /// Header names lower-cased; repeated headers joined by commas, as API Gateway does.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    pub source_ip: String,
    pub host: String,
}

/// What API Gateway would send back.
#[derive(Debug, Clone)]
pub struct GatewayResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

struct Route {
    spec: RouteSpec,
    function: HttpFunction,
}

pub struct Gateway {
    routes: Vec<Route>,
}

impl Gateway {
    /// Every route of the template, each bound to its binary's handler. A route whose binary
    /// has no handler here is an error: the local stack must serve what AWS would.
    pub fn new(routes: Vec<RouteSpec>, functions: &BTreeMap<String, HttpFunction>) -> anyhow::Result<Self> {
        let routes = routes
            .into_iter()
            .map(|spec| {
                let function = functions.get(&spec.binary).cloned().with_context(|| {
                    format!("no local handler for {} (route {} {})", spec.binary, spec.method, spec.path)
                })?;
                Ok(Route { spec, function })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { routes })
    }

    pub fn function(&self, binary: &str) -> Option<HttpFunction> {
        self.routes.iter().find(|route| route.spec.binary == binary).map(|route| route.function.clone())
    }

    pub fn route_specs(&self) -> impl Iterator<Item = &RouteSpec> {
        self.routes.iter().map(|route| &route.spec)
    }

    pub async fn dispatch(&self, request: GatewayRequest) -> anyhow::Result<GatewayResponse> {
        let matched = self.routes.iter().find_map(|route| {
            (route.spec.method == request.method || route.spec.method == "ANY")
                .then(|| match_path(&route.spec.path, &request.path).map(|params| (route, params)))
                .flatten()
        });
        let Some((route, path_parameters)) = matched else {
            return Ok(GatewayResponse {
                status: 404,
                headers: vec![("content-type".into(), "application/json".into())],
                body: br#"{"message":"Not Found"}"#.to_vec(),
            });
        };
        let event = api_gateway_event(&request, &route.spec, &path_parameters);
        let response = invoke(&route.function, event).await?;
        Ok(gateway_response(&response))
    }
}

/// Runs a handler on an API Gateway v2 event, as `lambda_http::run` would, and returns the
/// response event (statusCode, headers, cookies, body, isBase64Encoded).
pub async fn invoke(function: &HttpFunction, event: Value) -> anyhow::Result<Value> {
    let payload: LambdaRequest = serde_json::from_value(event).context("not an API Gateway v2 event")?;
    let function = function.clone();
    let mut adapter = Adapter::from(service_fn(move |request: Request| {
        let function = function.clone();
        async move { Ok::<_, lambda_http::Error>(function.handle(request).await) }
    }));
    let mut context = LambdaContext::default();
    context.request_id = format!("local-{}", uuid_like());
    let response = adapter.call(LambdaEvent::new(payload, context)).await.map_err(|err| anyhow!(err))?;
    serde_json::to_value(response).context("serialising the Lambda response")
}

/// Matches `/a/{name}/b` (and a final `{name+}`) against a path; returns the decoded parameters.
fn match_path(pattern: &str, path: &str) -> Option<BTreeMap<String, String>> {
    let pattern_segments: Vec<&str> = pattern.trim_start_matches('/').split('/').collect();
    let path_segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut params = BTreeMap::new();
    for (index, segment) in pattern_segments.iter().enumerate() {
        if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            if let Some(greedy) = name.strip_suffix('+') {
                let rest = path_segments.get(index..)?.join("/");
                params.insert(greedy.to_owned(), percent_decode(&rest));
                return Some(params);
            }
            let value = path_segments.get(index).filter(|v| !v.is_empty())?;
            params.insert(name.to_owned(), percent_decode(value));
        } else if path_segments.get(index) != Some(segment) {
            return None;
        }
    }
    (pattern_segments.len() == path_segments.len()).then_some(params)
}

/// `%XX` escapes decoded, as API Gateway decodes path parameters (`+` stays a plus).
pub fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text).decode_utf8_lossy().into_owned()
}

/// Query parameters as API Gateway v2 gives them: decoded, repeated keys joined by commas.
fn query_parameters(raw_query: &str) -> BTreeMap<String, String> {
    let mut params: BTreeMap<String, String> = BTreeMap::new();
    for (key, value) in form_urlencoded::parse(raw_query.as_bytes()) {
        params
            .entry(key.into_owned())
            .and_modify(|existing| {
                existing.push(',');
                existing.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    params
}

fn is_text(content_type: Option<&String>) -> bool {
    content_type.is_none_or(|ct| {
        let ct = ct.to_ascii_lowercase();
        ct.starts_with("text/")
            || ct.contains("json")
            || ct.contains("xml")
            || ct.contains("x-www-form-urlencoded")
            || ct.contains("javascript")
    })
}

/// The API Gateway HTTP API (payload format 2.0) event for a request.
pub fn api_gateway_event(
    request: &GatewayRequest,
    route: &RouteSpec,
    path_parameters: &BTreeMap<String, String>,
) -> Value {
    let mut headers = request.headers.clone();
    let cookies: Vec<String> = headers
        .remove("cookie")
        .map(|c| c.split(';').map(|part| part.trim().to_owned()).filter(|p| !p.is_empty()).collect())
        .unwrap_or_default();
    let route_key = format!("{} {}", route.method, route.path);
    let now = time::OffsetDateTime::now_utc();
    let (body, is_base64) = if request.body.is_empty() {
        (Value::Null, false)
    } else if is_text(headers.get("content-type")) && std::str::from_utf8(&request.body).is_ok() {
        (Value::String(String::from_utf8_lossy(&request.body).into_owned()), false)
    } else {
        (Value::String(base64::engine::general_purpose::STANDARD.encode(&request.body)), true)
    };
    let query = query_parameters(&request.raw_query);
    let mut event = json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": request.path,
        "rawQueryString": request.raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": request.host,
            "domainPrefix": request.host.split('.').next().unwrap_or_default(),
            "http": {
                "method": request.method,
                "path": request.path,
                "protocol": "HTTP/1.1",
                "sourceIp": request.source_ip,
                "userAgent": request.headers.get("user-agent").cloned().unwrap_or_default(),
            },
            "requestId": uuid_like(),
            "routeKey": route_key,
            "stage": "$default",
            "time": now.format(&time::format_description::well_known::Rfc2822).unwrap_or_default(),
            "timeEpoch": now.unix_timestamp() * 1000,
        },
        "isBase64Encoded": is_base64,
    });
    if !cookies.is_empty() {
        event["cookies"] = json!(cookies);
    }
    if !query.is_empty() {
        event["queryStringParameters"] = json!(query);
    }
    if !path_parameters.is_empty() {
        event["pathParameters"] = json!(path_parameters);
    }
    if !body.is_null() {
        event["body"] = body;
    }
    event
}

fn gateway_response(response: &Value) -> GatewayResponse {
    let status = response["statusCode"].as_u64().unwrap_or(500) as u16;
    let mut headers: Vec<(String, String)> = response["headers"]
        .as_object()
        .map(|h| h.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect())
        .unwrap_or_default();
    if let Some(multi) = response["multiValueHeaders"].as_object() {
        for (name, values) in multi {
            for value in values.as_array().into_iter().flatten() {
                headers.push((name.clone(), value.as_str().unwrap_or_default().to_owned()));
            }
        }
    }
    for cookie in response["cookies"].as_array().into_iter().flatten() {
        headers.push(("set-cookie".into(), cookie.as_str().unwrap_or_default().to_owned()));
    }
    let body = match response["body"].as_str() {
        None => Vec::new(),
        Some(text) if response["isBase64Encoded"] == true => {
            base64::engine::general_purpose::STANDARD.decode(text).unwrap_or_default()
        }
        Some(text) => text.as_bytes().to_vec(),
    };
    GatewayResponse { status, headers, body }
}

/// A unique enough request id for local use.
pub fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{:x}-{:x}-{:x}", std::process::id(), nanos, COUNTER.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_literal_segments_and_decode_parameters() {
        assert_eq!(match_path("/api/auth/email/verification", "/api/auth/email/verification"), Some(BTreeMap::new()));
        assert_eq!(match_path("/api/auth/email/verification", "/api/auth/email/verification/send"), None);
        let params =
            match_path("/api/users/resendconfirmation/{identity}", "/api/users/resendconfirmation/a%40b.com").unwrap();
        assert_eq!(params["identity"], "a@b.com");
        assert_eq!(match_path("/api/users/resendconfirmation/{identity}", "/api/users/resendconfirmation/"), None);
    }

    #[test]
    fn query_parameters_are_decoded_and_repeated_keys_joined() {
        let params = query_parameters("token=a.b.c&locale=fr%2DCA&x=1&x=2");
        assert_eq!(params["token"], "a.b.c");
        assert_eq!(params["locale"], "fr-CA");
        assert_eq!(params["x"], "1,2");
    }
}
