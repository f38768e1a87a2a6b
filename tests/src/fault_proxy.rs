//! A fault-injecting proxy between the AWS SDK and moto. Each rule names an operation
//! (DynamoDB's `X-Amz-Target` action, or SES v2's `SendEmail`) and a fault for its next
//! requests: answer an error without forwarding, hang, drop the connection before or after
//! forwarding, or forward (so the call is applied) and then answer an error anyway. A rate
//! limit answers an operation's requests above N a second with a fault, as SES answers sends
//! above the account's maximum send rate.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// What the proxy does to a matching request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer this, without forwarding: nothing is applied.
    Answer { status: u16, headers: Vec<(String, String)>, body: String },
    /// Hold the request this long without forwarding, then drop it.
    Hang(Duration),
    /// Close the connection without forwarding or answering.
    DropBeforeForwarding,
    /// Forward (the call is applied), then close the connection without answering.
    DropAfterForwarding,
    /// Forward (the call is applied), then answer this instead of moto's answer.
    ApplyThenAnswer { status: u16, body: String },
}

impl Fault {
    /// DynamoDB's throttling answer.
    pub fn dynamodb_throttled() -> Self {
        Self::Answer {
            status: 400,
            headers: vec![("content-type".into(), "application/x-amz-json-1.0".into())],
            body: r#"{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"Rate of requests exceeds the allowed throughput."}"#.into(),
        }
    }

    /// A 500 from DynamoDB.
    pub fn dynamodb_internal() -> Self {
        Self::Answer {
            status: 500,
            headers: vec![("content-type".into(), "application/x-amz-json-1.0".into())],
            body:
                r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"Internal server error"}"#
                    .into(),
        }
    }

    /// SES v2's answer for an unverified recipient in the sandbox, which names the recipient.
    pub fn ses_message_rejected(recipient: &str) -> Self {
        Self::Answer {
            status: 400,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("x-amzn-errortype".into(), "MessageRejected".into()),
            ],
            body: format!(
                r#"{{"message":"Email address is not verified. The following identities failed the check in region US-EAST-1: {recipient}"}}"#
            ),
        }
    }

    /// SES v2 throttling (the account's send rate).
    pub fn ses_throttled() -> Self {
        Self::Answer {
            status: 429,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("x-amzn-errortype".into(), "TooManyRequestsException".into()),
            ],
            body: r#"{"message":"Maximum sending rate exceeded."}"#.into(),
        }
    }
}

#[derive(Debug, Clone)]
struct Rule {
    operation: String,
    fault: Fault,
    remaining: usize,
}

/// At most `per_second` requests of `operation` in any second; the others get `refusal`.
#[derive(Debug, Clone)]
struct RateLimit {
    operation: String,
    per_second: usize,
    refusal: Fault,
    /// When the requests let through in the last second arrived.
    recent: VecDeque<Instant>,
}

impl RateLimit {
    /// Lets the request through (and counts it) unless `per_second` went through in the last second.
    fn admit(&mut self, now: Instant) -> bool {
        while self.recent.front().is_some_and(|at| now.duration_since(*at) >= Duration::from_secs(1)) {
            self.recent.pop_front();
        }
        if self.recent.len() < self.per_second {
            self.recent.push_back(now);
            true
        } else {
            false
        }
    }
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    rate_limits: Vec<RateLimit>,
    /// Every request seen, by operation, in order.
    seen: Vec<String>,
    /// The requests a rate limit refused, by operation.
    refused: Vec<String>,
}

/// A running proxy; its `url` goes where the SDK's endpoint would.
#[derive(Clone)]
pub struct FaultProxy {
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl FaultProxy {
    /// Starts a proxy in front of `upstream` (moto's address).
    pub async fn start(upstream: String) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let state = Arc::new(Mutex::new(State::default()));
        let proxy = Self { url, state: state.clone() };
        let client = reqwest::Client::builder().no_proxy().build()?;
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let state = state.clone();
                let client = client.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let (state, client, upstream) = (state.clone(), client.clone(), upstream.clone());
                        async move { handle(state, client, upstream, request).await }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Ok(proxy)
    }

    /// The next `times` requests of `operation` (e.g. `UpdateItem`, `SendEmail`) get `fault`.
    pub fn inject(&self, operation: &str, fault: Fault, times: usize) {
        if let Ok(mut state) = self.state.lock() {
            state.rules.push(Rule { operation: operation.to_owned(), fault, remaining: times });
        }
    }

    /// From now on, requests of `operation` above `per_second` in any second (a sliding
    /// window, stricter than a per-second bucket) get `refusal` and are not forwarded.
    pub fn limit_rate(&self, operation: &str, per_second: usize, refusal: Fault) {
        if let Ok(mut state) = self.state.lock() {
            state.rate_limits.push(RateLimit {
                operation: operation.to_owned(),
                per_second,
                refusal,
                recent: VecDeque::new(),
            });
        }
    }

    /// Removes every rule and rate limit: from now on everything is forwarded.
    pub fn clear(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.rules.clear();
            state.rate_limits.clear();
        }
    }

    /// How many requests of `operation` a rate limit refused.
    pub fn refused(&self, operation: &str) -> usize {
        self.state.lock().map(|state| state.refused.iter().filter(|refused| *refused == operation).count()).unwrap_or(0)
    }

    /// How many requests of `operation` reached the proxy (faulted or not).
    pub fn count(&self, operation: &str) -> usize {
        self.state.lock().map(|state| state.seen.iter().filter(|seen| *seen == operation).count()).unwrap_or(0)
    }
}

/// The operation a request calls: DynamoDB names it in `X-Amz-Target`, SES v2 by its path.
fn operation_of<B>(request: &hyper::Request<B>) -> String {
    if let Some(target) = request.headers().get("x-amz-target").and_then(|v| v.to_str().ok()) {
        return target.rsplit('.').next().unwrap_or(target).to_owned();
    }
    let path = request.uri().path();
    if path.starts_with("/v2/email/outbound-emails") {
        return "SendEmail".to_owned();
    }
    format!("{} {path}", request.method())
}

type ProxyResponse = hyper::Response<Full<Bytes>>;

/// An error from the service makes hyper close the connection without an answer.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by the fault proxy")
    }
}

impl std::error::Error for Dropped {}

async fn handle(
    state: Arc<Mutex<State>>,
    client: reqwest::Client,
    upstream: String,
    request: hyper::Request<hyper::body::Incoming>,
) -> Result<ProxyResponse, Dropped> {
    let operation = operation_of(&request);
    let fault = {
        let mut state = state.lock().map_err(|_| Dropped)?;
        state.seen.push(operation.clone());
        let rule = state.rules.iter_mut().find(|rule| rule.operation == operation && rule.remaining > 0);
        let ruled = rule.map(|rule| {
            rule.remaining -= 1;
            rule.fault.clone()
        });
        let now = Instant::now();
        let over_rate = match ruled {
            Some(_) => None,
            None => state
                .rate_limits
                .iter_mut()
                .find(|limit| limit.operation == operation)
                .and_then(|limit| if limit.admit(now) { None } else { Some(limit.refusal.clone()) }),
        };
        if over_rate.is_some() {
            state.refused.push(operation.clone());
        }
        ruled.or(over_rate)
    };
    let (parts, body) = request.into_parts();
    let body = body.collect().await.map_err(|_| Dropped)?.to_bytes();
    match &fault {
        Some(Fault::Answer { status, headers, body }) => {
            let mut response = hyper::Response::builder().status(*status);
            for (name, value) in headers {
                response = response.header(name, value);
            }
            return response.body(Full::new(Bytes::from(body.clone()))).map_err(|_| Dropped);
        }
        Some(Fault::Hang(duration)) => {
            tokio::time::sleep(*duration).await;
            return Err(Dropped);
        }
        Some(Fault::DropBeforeForwarding) => return Err(Dropped),
        _ => {}
    }
    let url = format!("{upstream}{}", parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
    let mut forward = client.request(parts.method.clone(), url).body(body);
    for (name, value) in &parts.headers {
        if name != http::header::HOST {
            forward = forward.header(name, value);
        }
    }
    let answer = forward.send().await.map_err(|_| Dropped)?;
    let status = answer.status();
    let headers = answer.headers().clone();
    let answer_body = answer.bytes().await.map_err(|_| Dropped)?;
    match fault {
        Some(Fault::DropAfterForwarding) => Err(Dropped),
        Some(Fault::ApplyThenAnswer { status, body }) => hyper::Response::builder()
            .status(status)
            .header("content-type", "application/x-amz-json-1.0")
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| Dropped),
        _ => {
            let mut response = hyper::Response::builder().status(status.as_u16());
            for (name, value) in &headers {
                if name != http::header::TRANSFER_ENCODING && name != http::header::CONTENT_LENGTH {
                    response = response.header(name, value);
                }
            }
            response.body(Full::new(answer_body)).map_err(|_| Dropped)
        }
    }
}
