//! The local API: every route of the template on loopback, plus the developer's tools under
//! `/_local/`: publish a sign-up, mint an access token, read the mail that was sent, and the
//! routes' OpenAPI description.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::{EncodingKey, Header};
use mailconfirm::SqsHandler;
use mailconfirm::ports::UserReader;
use mailconfirm::store::DynamoStore;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use std::collections::HashMap;

use anyhow::Context;

use crate::gateway::{Gateway, GatewayRequest, GatewayResponse, uuid_like};
use crate::stack::Functions;
use crate::stack::{LOCAL_ACCESS_TOKEN_SECRET, LOCAL_AUDIENCE, LOCAL_ISSUER};
use crate::stream::{StreamPoller, create_event_bus, published_events};
use crate::template::Template;

pub struct LocalApi {
    pub gateway: Gateway,
    pub sign_up: Arc<dyn SqsHandler>,
    /// The table, for the tools that show a user as stored.
    pub store: Arc<DynamoStore>,
    pub moto_url: String,
    pub http: reqwest::Client,
    /// The table's change stream, delivered to the change-events function.
    pub stream: Arc<StreamPoller>,
    /// The bus the change-events function publishes to.
    pub event_bus: String,
    /// The subscriber of SES's feedback topic.
    pub mail_feedback: Arc<dyn mailconfirm::SnsHandler>,
}

impl LocalApi {
    /// The local API over `functions`, with the routes of `template`, reading `table`'s stream.
    pub async fn new(
        functions: &Functions,
        template: &Template,
        env: &HashMap<String, String>,
        clock: Arc<dyn mailconfirm::ports::Clock>,
    ) -> anyhow::Result<Self> {
        let moto_url = crate::stack::moto_url()?;
        let http = reqwest::Client::new();
        let table = env.get("TABLE_NAME").context("TABLE_NAME")?.clone();
        let event_bus = env.get("EVENT_BUS_NAME").cloned().unwrap_or_else(|| "default".to_owned());
        create_event_bus(&http, &moto_url, &event_bus).await?;
        let stream =
            Arc::new(StreamPoller::new(http.clone(), moto_url.clone(), table, functions.change_events.clone(), clock));
        Ok(Self {
            gateway: functions.gateway(template)?,
            sign_up: functions.sign_up.clone(),
            store: functions.store.clone(),
            moto_url,
            http,
            stream,
            event_bus,
            mail_feedback: functions.mail_feedback.clone(),
        })
    }

    /// A DynamoDB client of the local tools (not a function's).
    async fn store_client(&self) -> aws_sdk_dynamodb::Client {
        mailconfirm::aws::AwsClients::new().dynamodb().await.clone()
    }

    /// Delivers an SES notification (the JSON SES publishes) as SNS would: as the `Message`
    /// of one record, to the feedback function.
    pub async fn post_ses_feedback(&self, notification: &[u8]) -> anyhow::Result<()> {
        let message = String::from_utf8_lossy(notification).into_owned();
        let event = json!({ "Records": [{
            "EventSource": "aws:sns",
            "EventVersion": "1.0",
            "Sns": { "Type": "Notification", "MessageId": uuid_like(), "TopicArn": "arn:aws:sns:us-east-1:123456789012:MailFeedbackTopic", "Message": message }
        }] });
        self.mail_feedback.handle(serde_json::from_value(event)?).await
    }

    /// Delivers the table's stream so far, then answers what reached the bus, in publish order.
    pub async fn events(&self) -> anyhow::Result<Vec<Value>> {
        self.stream.deliver().await?;
        published_events(&self.http, &self.moto_url, &self.event_bus).await
    }
}

/// Serves until the listener fails; each connection on its own task.
pub async fn serve(listener: TcpListener, api: Arc<LocalApi>) -> anyhow::Result<()> {
    loop {
        let (stream, peer) = listener.accept().await?;
        let api = api.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let api = api.clone();
                async move { Ok::<_, Infallible>(api.handle(request, peer).await) }
            });
            if let Err(err) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                tracing::debug!(error = %err, "connection closed with an error");
            }
        });
    }
}

/// The OpenAPI description of every route, served at `/_local/openapi.json`.
pub const OPENAPI_PATH: &str = "infra/openapi.json";

type HyperResponse = hyper::Response<Full<Bytes>>;

fn respond(status: u16, content_type: &str, body: impl Into<Bytes>) -> HyperResponse {
    hyper::Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(body.into()))
        .unwrap_or_default()
}

fn json_reply(status: u16, value: &Value) -> HyperResponse {
    respond(status, "application/json", value.to_string())
}

impl LocalApi {
    async fn handle(&self, request: hyper::Request<hyper::body::Incoming>, peer: SocketAddr) -> HyperResponse {
        let (parts, body) = request.into_parts();
        let body = match body.collect().await {
            Ok(collected) => collected.to_bytes().to_vec(),
            Err(_) => {
                return json_reply(400, &json!({"message": "could not read the request body"}));
            }
        };
        let mut headers: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in &parts.headers {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            let separator = if name == http::header::COOKIE { "; " } else { "," };
            headers
                .entry(name.as_str().to_owned())
                .and_modify(|existing| {
                    existing.push_str(separator);
                    existing.push_str(&value);
                })
                .or_insert(value);
        }
        let request = GatewayRequest {
            method: parts.method.as_str().to_owned(),
            path: parts.uri.path().to_owned(),
            raw_query: parts.uri.query().unwrap_or_default().to_owned(),
            host: headers.get("host").cloned().unwrap_or_default(),
            headers,
            body,
            source_ip: peer.ip().to_string(),
        };
        if request.path == "/" || request.path.starts_with("/_local/") {
            return self.local_tool(&request).await;
        }
        match self.gateway.dispatch(request).await {
            Ok(GatewayResponse { status, headers, body }) => {
                let mut builder = hyper::Response::builder().status(status);
                for (name, value) in headers {
                    builder = builder.header(name, value);
                }
                builder.body(Full::new(Bytes::from(body))).unwrap_or_default()
            }
            Err(err) => {
                // API Gateway answers 500 when the integration itself fails.
                tracing::error!(error = format!("{err:#}"), "the function failed");
                json_reply(500, &json!({"message": "Internal Server Error"}))
            }
        }
    }

    async fn local_tool(&self, request: &GatewayRequest) -> HyperResponse {
        let query: BTreeMap<String, String> = request
            .raw_query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.to_owned(), crate::gateway::percent_decode(v)))
            .collect();
        match (request.method.as_str(), request.path.as_str()) {
            ("GET", "/") => respond(200, "text/html; charset=utf-8", self.index_page()),
            ("POST", "/_local/signup") => match serde_json::from_slice::<Value>(&request.body) {
                Ok(event) => {
                    let response = self.publish_sign_up(&event).await;
                    json_reply(200, &serde_json::to_value(response).unwrap_or_default())
                }
                Err(_) => json_reply(400, &json!({"message": "the body must be a JSON sign-up event"})),
            },
            ("POST", "/_local/token") => match serde_json::from_slice::<Value>(&request.body) {
                Ok(claims) if claims.get("sub").is_some_and(Value::is_string) => {
                    json_reply(200, &json!({ "access_token": mint_access_token(claims) }))
                }
                _ => json_reply(
                    400,
                    &json!({"message": "the body must be a JSON object of claims with a string \"sub\""}),
                ),
            },
            ("GET", path) if path.starts_with("/_local/users/") => {
                let id = crate::gateway::percent_decode(path.trim_start_matches("/_local/users/"));
                match self.stored_user(&id).await {
                    Ok(Some(user)) => json_reply(200, &user),
                    Ok(None) => json_reply(404, &json!({"message": "no such user"})),
                    Err(err) => json_reply(502, &json!({"message": format!("could not read the user: {err:#}")})),
                }
            }
            ("GET", "/_local/inbox.json") => match self.inbox(query.get("to").map(String::as_str)).await {
                Ok(messages) => json_reply(200, &json!({ "messages": messages })),
                Err(err) => json_reply(502, &json!({"message": format!("could not read moto's outbox: {err:#}")})),
            },
            ("GET", "/_local/openapi.json") => {
                match std::fs::read(crate::template::project_root().join(OPENAPI_PATH)) {
                    Ok(document) => respond(200, "application/json", document),
                    Err(err) => json_reply(500, &json!({"message": format!("could not read {OPENAPI_PATH}: {err}")})),
                }
            }
            ("POST", "/_local/ttl-sweep") => {
                let dynamodb = self.store_client().await;
                match self.stream.expire(&dynamodb, mailconfirm::domain::UnixTime::now()).await {
                    Ok(deleted) => json_reply(200, &json!({ "deleted": deleted })),
                    Err(err) => json_reply(502, &json!({ "message": format!("the TTL sweep failed: {err:#}") })),
                }
            }
            ("POST", "/_local/ses-feedback") => match self.post_ses_feedback(&request.body).await {
                Ok(()) => json_reply(200, &json!({ "recorded": true })),
                Err(err) => json_reply(500, &json!({ "message": format!("the feedback function failed: {err:#}") })),
            },
            ("GET", "/_local/events.json") => match self.events().await {
                Ok(events) => json_reply(200, &json!({ "events": events })),
                Err(err) => json_reply(502, &json!({"message": format!("could not read the events: {err:#}")})),
            },
            ("GET", "/_local/inbox") => {
                let to = query.get("to").map(String::as_str);
                match (self.inbox(to).await, self.events().await) {
                    (Ok(messages), Ok(events)) => {
                        respond(200, "text/html; charset=utf-8", inbox_page(&messages, &events))
                    }
                    (Err(err), _) | (_, Err(err)) => {
                        respond(502, "text/plain", format!("could not read moto's outbox or events: {err:#}"))
                    }
                }
            }
            _ => json_reply(404, &json!({"message": "Not Found"})),
        }
    }

    /// The handler the gateway runs for a binary.
    pub fn gateway_function(&self, binary: &str) -> Option<crate::gateway::HttpFunction> {
        self.gateway.function(binary)
    }

    /// Delivers a sign-up event as SQS would: one message in an `SqsEvent`.
    pub async fn publish_sign_up(&self, event: &Value) -> SqsBatchResponse {
        let sqs_event: SqsEvent = serde_json::from_value(sqs_event_for(event)).unwrap_or_default();
        self.sign_up.handle(sqs_event).await
    }

    /// A user as the contracts show it (`userStatus`, `emailVerified`, …), read from the table.
    pub async fn stored_user(&self, id: &str) -> anyhow::Result<Option<Value>> {
        let Ok(id) = mailconfirm::domain::UserId::parse(id) else { return Ok(None) };
        let user = self.store.get_user(&id).await?;
        Ok(user.map(|user| serde_json::to_value(mailconfirm::contracts::UserView::from(&user)).unwrap_or_default()))
    }

    /// The mail moto accepted, newest last, with the confirmation link of each.
    pub async fn inbox(&self, to: Option<&str>) -> anyhow::Result<Vec<Value>> {
        let outbox: Value = self
            .http
            .get(format!("{}/_mailconfirm/outbox", self.moto_url))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let messages = outbox["messages"].as_array().cloned().unwrap_or_default();
        Ok(messages
            .into_iter()
            .filter(|message| {
                to.is_none_or(|to| {
                    message["to"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|r| r.as_str().is_some_and(|r| r.eq_ignore_ascii_case(to)))
                })
            })
            .map(|mut message| {
                let link = message["text"].as_str().and_then(confirmation_link);
                message["link"] = json!(link);
                let code = message["text"].as_str().and_then(confirmation_code);
                message["code"] = json!(code);
                message
            })
            .collect())
    }

    fn index_page(&self) -> String {
        let routes: String = self
            .gateway
            .route_specs()
            .map(|r| format!("<li><code>{} {}</code> → {}</li>", r.method, r.path, r.binary))
            .collect();
        format!(
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>mailconfirm local</title></head><body>\
             <h1>mailconfirm, local</h1><h2>Routes</h2><ul>{routes}</ul><h2>Tools</h2><ul>\
             <li><code>POST /_local/signup</code> — publish a sign-up event</li>\
             <li><code>POST /_local/token</code> — mint an access token for the posted claims</li>\
             <li><code>GET /_local/users/&lt;id&gt;</code> — a user as stored (status, address, language)</li>\
             <li><a href=\"/_local/openapi.json\">/_local/openapi.json</a> — the OpenAPI description of the routes</li>\
             <li><a href=\"/_local/inbox\">/_local/inbox</a> and <a href=\"/_local/inbox.json\">/_local/inbox.json</a> — the mail sent</li>\
             <li><code>POST /_local/ttl-sweep</code> — remove what DynamoDB's TTL would remove now (expired sign-ups)</li>\
             <li><code>POST /_local/ses-feedback</code> — post an SES bounce or complaint notification through the feedback function</li>\
             <li><a href=\"/_local/events.json\">/_local/events.json</a> — the events published to EventBridge</li>\
             </ul></body></html>"
        )
    }
}

/// The SQS event that carries one sign-up event, as in `infra/events/signup-events.json`.
pub fn sqs_event_for(event: &Value) -> Value {
    json!({
        "Records": [{
            "messageId": uuid_like(),
            "receiptHandle": "local",
            "body": event.to_string(),
            "attributes": {
                "ApproximateReceiveCount": "1",
                "SentTimestamp": (time::OffsetDateTime::now_utc().unix_timestamp() * 1000).to_string(),
                "SenderId": "local",
                "ApproximateFirstReceiveTimestamp": (time::OffsetDateTime::now_utc().unix_timestamp() * 1000).to_string()
            },
            "messageAttributes": {},
            "md5OfBody": "",
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:SignUpQueue",
            "awsRegion": "us-east-1"
        }]
    })
}

/// An access token for the local issuer and audience, valid for an hour unless the claims say otherwise.
pub fn mint_access_token(mut claims: Value) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let defaults =
        [("iss", json!(LOCAL_ISSUER)), ("aud", json!(LOCAL_AUDIENCE)), ("iat", json!(now)), ("exp", json!(now + 3600))];
    for (name, value) in defaults {
        if claims.get(name).is_none() {
            claims[name] = value;
        }
    }
    jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(LOCAL_ACCESS_TOKEN_SECRET.as_bytes()))
        .unwrap_or_default()
}

/// The first confirmation link in a mail's text.
pub fn confirmation_link(text: &str) -> Option<String> {
    text.split_whitespace().find(|word| word.contains("/confirm-email?token=")).map(str::to_owned)
}

/// The one-time code of a mail's text: the digits that end the line after the link, as a
/// person reads them (`… in Acme: 123456`).
pub fn confirmation_code(text: &str) -> Option<String> {
    let mut lines = text.lines().skip_while(|line| confirmation_link(line).is_none()).skip(1);
    let line = lines.find(|line| !line.trim().is_empty())?;
    let code = line.trim().rsplit(' ').next()?;
    (code.len() >= 4 && code.bytes().all(|b| b.is_ascii_digit())).then(|| code.to_owned())
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn inbox_page(messages: &[Value], events: &[Value]) -> String {
    let items: String = messages
        .iter()
        .rev()
        .map(|m| {
            let to = m["to"].as_array().into_iter().flatten().filter_map(Value::as_str).collect::<Vec<_>>().join(", ");
            let link = m["link"].as_str().unwrap_or_default();
            format!(
                "<article><h2>{subject}</h2><p><b>To:</b> {to} · <b>From:</b> {from} · <b>Sent:</b> {sent}</p>\
                 <p><a href=\"{link}\">Open the confirmation link</a></p>\
                 <details><summary>Text part</summary><pre>{text}</pre></details>\
                 <details><summary>HTML part</summary><iframe sandbox srcdoc=\"{html}\" style=\"width:100%;height:420px;border:1px solid #ccc\"></iframe></details></article><hr>",
                subject = escape(m["subject"].as_str().unwrap_or_default()),
                to = escape(&to),
                from = escape(m["from"].as_str().unwrap_or_default()),
                sent = escape(m["sent_at"].as_str().unwrap_or_default()),
                link = escape(link),
                text = escape(m["text"].as_str().unwrap_or_default()),
                html = escape(m["html"].as_str().unwrap_or_default()),
            )
        })
        .collect();
    let body = if items.is_empty() {
        "<p>No mail yet. Publish a sign-up with <code>POST /_local/signup</code>.</p>".to_owned()
    } else {
        items
    };
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>mailconfirm local inbox</title></head><body style=\"font-family:sans-serif;max-width:900px;margin:auto;padding:1rem\">\
         <h1>Local inbox ({count})</h1>{body}<h1>Events ({event_count})</h1><ol>{event_items}</ol></body></html>",
        count = messages.len(),
        event_count = events.len(),
        event_items = events
            .iter()
            .map(|e| format!(
                "<li><b>{}</b> <pre>{}</pre></li>",
                escape(e["detail-type"].as_str().unwrap_or_default()),
                escape(&serde_json::to_string_pretty(&e["detail"]).unwrap_or_default())
            ))
            .collect::<String>(),
    )
}
