//! Fresh state for each test: its own table in moto, its own local API on a free port, and
//! unique addresses, so tests run in parallel against one moto without seeing each other.

use std::collections::HashMap;
use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_dynamodb::types::AttributeValue;
use mailconfirm::aws::AwsClients;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::fault_proxy::FaultProxy;
use crate::gateway::uuid_like;
use crate::server::{LocalApi, mint_access_token, serve};
use crate::stack::{Functions, LOCAL_SENDER, TestClock, create_table, local_env, moto_url, verify_sender};
use crate::template::Template;

pub struct TestStack {
    pub base_url: String,
    pub api: Arc<LocalApi>,
    pub table: String,
    pub aws: Arc<AwsClients>,
    pub http: reqwest::Client,
    /// The time every function reads; tests move it instead of sleeping.
    pub clock: Arc<TestClock>,
    /// The AWS operations each function has made so far.
    pub operations: std::collections::BTreeMap<String, crate::stack::OperationRecorder>,
    /// The functions' configuration, and where their AWS calls go (a fault proxy, or moto).
    env: HashMap<String, String>,
    endpoint: Option<String>,
}

impl TestStack {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts with the local configuration, changed by `adjust` (e.g. to break SES). A fresh
    /// table is always created; `adjust` may point `TABLE_NAME` elsewhere (another stack's
    /// table, or one that does not exist).
    pub async fn start_with(adjust: impl FnOnce(&mut HashMap<String, String>)) -> Self {
        Self::start_behind(None, adjust).await
    }

    /// A stack whose functions reach AWS (moto) through a fault-injecting proxy.
    pub async fn start_with_faults(adjust: impl FnOnce(&mut HashMap<String, String>)) -> (Self, FaultProxy) {
        let proxy = FaultProxy::start(moto_url().expect("moto's address")).await.expect("the fault proxy");
        (Self::start_behind(Some(&proxy.url), adjust).await, proxy)
    }

    async fn start_behind(endpoint: Option<&str>, adjust: impl FnOnce(&mut HashMap<String, String>)) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free loopback port");
        let base_url = format!("http://{}", listener.local_addr().expect("a bound address"));
        let table = format!("test-{}", uuid_like());
        let mut env = local_env(&table, &base_url);
        adjust(&mut env);
        let functions_table = env["TABLE_NAME"].clone();

        let template = Template::load().expect("the SAM template");
        let aws = Arc::new(AwsClients::new());
        create_table(&aws, &template, &table).await.expect("the table in moto");
        verify_sender(&aws, LOCAL_SENDER).await.expect("the sender identity in moto");
        let clock = Arc::new(TestClock::default());
        let functions = Functions::build_calling(&env, clock.clone(), endpoint).expect("every function configured");
        let api = Arc::new(LocalApi::new(&functions, &template, &env, clock.clone()).await.expect("the local API"));
        tokio::spawn(serve(listener, api.clone()));
        Self {
            base_url,
            api,
            table: functions_table,
            aws,
            http: reqwest::Client::new(),
            operations: functions.operations,
            clock,
            env,
            endpoint: endpoint.map(str::to_owned),
        }
    }

    /// `count` execution environments of the sign-up function, each built as its `main.rs`
    /// builds it, with its own AWS clients and pacer, as Lambda runs them side by side.
    pub fn sign_up_environments(&self, count: usize) -> Vec<Arc<dyn mailconfirm::SqsHandler>> {
        let spec = crate::stack::FUNCTIONS
            .iter()
            .find(|function| function.binary == "signup-events")
            .expect("the sign-up function in FUNCTIONS");
        let crate::stack::Constructor::Sqs(build) = spec.constructor else {
            panic!("signup-events is an SQS function")
        };
        (0..count)
            .map(|_| {
                let mut aws = AwsClients::new();
                if let Some(url) = &self.endpoint {
                    aws = aws.with_endpoint(url.clone());
                }
                let wiring = mailconfirm::Wiring::new(&self.env, Arc::new(aws), self.clock.clone());
                build(&wiring).expect("the sign-up function configured")
            })
            .collect()
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.base_url)
    }

    /// The time the functions see now.
    pub fn clock_now(&self) -> mailconfirm::domain::UnixTime {
        mailconfirm::ports::Clock::now(self.clock.as_ref())
    }

    /// An address no other test uses.
    pub fn unique_email(&self, name: &str) -> String {
        format!("{name}.{}@example.com", uuid_like().replace('-', "."))
    }

    /// Delivers the table's change stream to the change-events function (as Lambda's event
    /// source mapping would) and answers what reached this stack's bus, in publish order.
    pub async fn events(&self) -> Vec<Value> {
        self.api.events().await.expect("the stream delivered and the events read")
    }

    /// DynamoDB's TTL, now, at the functions' time: every item past its `expires_at` goes.
    pub async fn expire_ttl(&self) -> usize {
        let dynamodb = self.aws.dynamodb().await;
        self.api.stream.expire(dynamodb, self.clock_now()).await.expect("the TTL sweep")
    }

    /// [`Self::events`] of one user: `(detail-type, detail)`.
    pub async fn events_of(&self, user_id: &str) -> Vec<(String, Value)> {
        self.events()
            .await
            .into_iter()
            .filter(|event| event["detail"]["user_id"] == user_id)
            .map(|event| (event["detail-type"].as_str().unwrap_or_default().to_owned(), event["detail"].clone()))
            .collect()
    }

    /// SES's notification of a bounce (`Permanent` or `Transient`) or, with `None`, a complaint
    /// for `email`, delivered through the feedback function as SNS would.
    pub async fn ses_feedback(&self, email: &str, bounce_type: Option<&str>) {
        let notification = match bounce_type {
            Some(kind) => json!({ "eventType": "Bounce", "bounce": { "bounceType": kind, "bounceSubType": "General",
                "bouncedRecipients": [{ "emailAddress": email }] }, "mail": { "destination": [email] } }),
            None => json!({ "eventType": "Complaint", "complaint": { "complaintFeedbackType": "abuse",
                "complainedRecipients": [{ "emailAddress": email }] }, "mail": { "destination": [email] } }),
        };
        self.api.post_ses_feedback(notification.to_string().as_bytes()).await.expect("the feedback recorded");
    }

    /// Publishes a sign-up event through the sign-up function.
    pub async fn sign_up(&self, event: Value) -> SqsBatchResponse {
        self.api.publish_sign_up(&event).await
    }

    /// One SQS message whose body is `body` (a sign-up or a command, plain or in an EventBridge
    /// envelope), with its own message id: [`Self::deliver`] it as often as SQS might.
    pub fn queue_message(&self, body: &Value) -> SqsEvent {
        serde_json::from_value(crate::server::sqs_event_for(body)).expect("an SQS event")
    }

    /// Delivers `event` to the sign-up function, as SQS does on each (re)delivery.
    pub async fn deliver(&self, event: &SqsEvent) -> SqsBatchResponse {
        self.api.sign_up.handle(event.clone()).await
    }

    /// Signs up a new user with a unique address; returns (user id, address).
    pub async fn signed_up_user(&self, locale: Option<&str>) -> (String, String) {
        let user_id = format!("user-{}", uuid_like());
        let email = self.unique_email("ada");
        let response = self.sign_up(json!({ "user_id": user_id, "email": email, "locale": locale })).await;
        assert!(response.batch_item_failures.is_empty(), "sign-up failed");
        (user_id, email)
    }

    pub fn access_token(&self, user_id: &str) -> String {
        mint_access_token(json!({ "sub": user_id }))
    }

    pub async fn mails_to(&self, email: &str) -> Vec<Value> {
        self.api.inbox(Some(email)).await.expect("moto's outbox")
    }

    /// The token of the newest confirmation link mailed to `email`.
    pub async fn latest_link_token(&self, email: &str) -> String {
        let mails = self.mails_to(email).await;
        let link = mails.last().and_then(|m| m["link"].as_str()).expect("a mail with a link").to_owned();
        mailconfirm::link_token::token_of(&link).expect("a token in the link").to_owned()
    }

    /// The one-time code of the newest mail to `email`, read from its text.
    pub async fn latest_code(&self, email: &str) -> String {
        let mails = self.mails_to(email).await;
        mails.last().and_then(|m| m["code"].as_str()).expect("a mail with a code").to_owned()
    }

    /// Posts `code` to `POST /v1/confirmations/code` as `user_id`'s app: the status and JSON body.
    pub async fn post_code(&self, user_id: &str, code: &str) -> (u16, Value) {
        let response = self
            .http
            .post(self.url("/v1/confirmations/code"))
            .bearer_auth(self.access_token(user_id))
            .json(&json!({ "code": code }))
            .send()
            .await
            .expect("the code route answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The user's stored item, read straight from the table.
    pub async fn stored_user(&self, user_id: &str) -> Option<HashMap<String, AttributeValue>> {
        self.aws
            .dynamodb()
            .await
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(format!("USER#{user_id}")))
            .consistent_read(true)
            .send()
            .await
            .expect("reading the user")
            .item
    }

    /// Signs up `user_id` through application `app-1`, then has that application move the
    /// pending address (Mastodon's `email` parameter). Returns the link mailed to the old address.
    pub async fn user_whose_address_changed(&self, user_id: &str) -> String {
        let old_email = self.unique_email("old");
        let sign_up = json!({ "user_id": user_id, "email": old_email, "client_id": "app-1" });
        assert!(self.sign_up(sign_up).await.batch_item_failures.is_empty(), "sign-up failed");
        let old_link = self.latest_link_token(&old_email).await;
        let app_token = mint_access_token(json!({ "sub": user_id, "client_id": "app-1", "scope": "write" }));
        let moved = self
            .http
            .post(self.url("/api/v1/emails/confirmations"))
            .bearer_auth(app_token)
            .form(&[("email", self.unique_email("new"))])
            .send()
            .await
            .expect("the Mastodon route answers");
        assert_eq!(moved.status(), 200, "the address change failed");
        old_link
    }

    /// A link token for a user as `issued_at` would have signed it, with the local key: for
    /// links older than their lifetime, or for users this stack never mailed.
    pub fn link_token_issued_at(&self, user_id: &str, email: &str, locale: &str, issued_at: i64) -> String {
        use mailconfirm::domain::{EmailAddress, UnixTime, User, UserId};
        let issuer = mailconfirm::link_token::LinkIssuer::from_config(&local_env(&self.table, &self.base_url))
            .expect("the local link settings");
        let user = User::pending(
            UserId::parse(user_id).expect("a user id"),
            EmailAddress::parse(email).expect("an address"),
            UnixTime(issued_at),
        );
        let link = issuer.issue(&user, locale, None, UnixTime(issued_at)).expect("a signed link");
        mailconfirm::link_token::token_of(&link.url).expect("a token in the link").to_owned()
    }

    pub async fn stored_status(&self, user_id: &str) -> Option<String> {
        self.stored_user(user_id).await.and_then(|item| item.get("status").and_then(|s| s.as_s().ok()).cloned())
    }
}
