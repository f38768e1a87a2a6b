//! The local stack: the AWS side (moto, with the table built from the template and a verified
//! sender) and every function's handler, configured as a deployment would configure them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use aws_sdk_dynamodb::config::RuntimeComponents;
use aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsInput;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, StreamSpecification, StreamViewType, TimeToLiveSpecification,
};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_types::config_bag::ConfigBag;
use mailconfirm::aws::{AwsClients, Intercept, SharedInterceptor};
use mailconfirm::config::ConfigError;
use mailconfirm::domain::UnixTime;
use mailconfirm::ports::Clock;
use mailconfirm::store::DynamoStore;
use mailconfirm::{HttpHandler, SnsHandler, SqsHandler, StreamHandler, Wiring};
use serde_json::Value;

use crate::gateway::Gateway;
use crate::template::Template;

/// Local-only secrets and settings. Never use these values in a deployment.
pub const LOCAL_ACCESS_TOKEN_SECRET: &str = "local-access-token-secret-0123456789abcdef";
pub const LOCAL_CONFIRMATION_SIGNING_KEY: &str = "local-confirmation-signing-key-0123456789abcdef";
pub const LOCAL_ISSUER: &str = "https://auth.local.test";
pub const LOCAL_AUDIENCE: &str = "mailconfirm";
pub const LOCAL_SENDER: &str = "no-reply@mailconfirm.example.com";

/// The configuration every function gets locally, as the template gives it in AWS.
pub fn local_env(table_name: &str, public_base_url: &str) -> HashMap<String, String> {
    [
        ("TABLE_NAME", table_name),
        ("PUBLIC_BASE_URL", public_base_url),
        ("SENDER_ADDRESS", LOCAL_SENDER),
        ("SENDER_NAME", "mailconfirm (local)"),
        ("APP_NAME", "mailconfirm local"),
        ("CONFIRMATION_SIGNING_KEY", LOCAL_CONFIRMATION_SIGNING_KEY),
        ("ACCESS_TOKEN_HS256_SECRET", LOCAL_ACCESS_TOKEN_SECRET),
        ("ACCESS_TOKEN_ISSUER", LOCAL_ISSUER),
        ("ACCESS_TOKEN_AUDIENCE", LOCAL_AUDIENCE),
        // One bus per table, so that stacks sharing one moto see only their own events.
        ("EVENT_BUS_NAME", table_name),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The variables of the README's configuration table that the local API takes from its own
/// environment (`COOLDOWN_SECONDS=5 scripts/run`); the rest are the local ones above.
pub const OVERRIDABLE: &[&str] = &[
    "APP_NAME",
    "SENDER_NAME",
    "SES_CONFIGURATION_SET",
    "COOLDOWN_SECONDS",
    "CONFIRMATION_LINK_TTL_SECONDS",
    "EMAIL_ENABLED",
    "DEFAULT_LOCALE",
    "MAIL_TEMPLATES_DIR",
    "CONFIRMED_REDIRECT_URL",
    "CONFIRMED_REDIRECT_ALLOWED_ORIGINS",
    "APP_URL",
    "BRAND_LOGO_URL",
    "BRAND_ACCENT_COLOR",
    "BRAND_SUPPORT",
    "BRAND_FOOTER",
    "CLIENT_SETTINGS",
    "CLIENT_SETTINGS_FILE",
    "BACKENDLESS_IDENTITY",
    "BACKENDLESS_PARANOID",
    "RESEND_IP_LIMIT",
    "RESEND_IP_WINDOW_SECONDS",
    "RESEND_IDENTITY_LIMIT",
    "RESEND_IDENTITY_WINDOW_SECONDS",
    "TENNPAY_SERVICE_SCOPE",
    "MASTODON_IP_LIMIT",
    "MASTODON_IP_WINDOW_SECONDS",
    "MASTODON_USER_LIMIT",
    "MASTODON_USER_WINDOW_SECONDS",
    "ADMIN_ROLE",
    "ADMIN_SCOPE",
    "SES_MAX_SEND_RATE",
    "SIGNUP_MAXIMUM_CONCURRENCY",
    "SIGNUP_BATCH_SIZE",
    "PENDING_SIGNUP_TTL_SECONDS",
    "CONFIRMATION_CODES",
    "CONFIRMATION_CODE_LENGTH",
    "CONFIRMATION_CODE_IP_LIMIT",
    "CONFIRMATION_CODE_IP_WINDOW_SECONDS",
    "CONFIRMATION_CODE_USER_LIMIT",
    "CONFIRMATION_CODE_USER_WINDOW_SECONDS",
];

/// Records which AWS operations a function makes, as `Service:Operation`.
#[derive(Debug, Default, Clone)]
pub struct OperationRecorder(Arc<Mutex<BTreeSet<String>>>);

impl OperationRecorder {
    pub fn operations(&self) -> BTreeSet<String> {
        self.0.lock().map(|set| set.clone()).unwrap_or_default()
    }
}

impl Intercept for OperationRecorder {
    fn name(&self) -> &'static str {
        "OperationRecorder"
    }

    // The operation's metadata is in the bag from serialisation on, not before execution.
    fn read_before_serialization(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let (Some(metadata), Ok(mut operations)) = (cfg.load::<Metadata>(), self.0.lock()) {
            let operation = format!("{}:{}", metadata.service(), metadata.name());
            // A transaction is authorised per item: record what each item does.
            match context.input().downcast_ref::<TransactWriteItemsInput>() {
                Some(input) => {
                    for item in input.transact_items() {
                        let kind = if item.put().is_some() {
                            "Put"
                        } else if item.update().is_some() {
                            "Update"
                        } else if item.delete().is_some() {
                            "Delete"
                        } else {
                            "ConditionCheck"
                        };
                        operations.insert(format!("{operation}.{kind}"));
                    }
                }
                None => {
                    operations.insert(operation);
                }
            }
        }
        Ok(())
    }
}

/// How a function's binary builds its handler: the constructor its `main.rs` hands to
/// `mailconfirm::run_http` or `run_sqs`, so the local stack runs what AWS runs.
#[derive(Clone, Copy)]
pub enum Constructor {
    Http(fn(&Wiring<'_>) -> Result<Arc<dyn HttpHandler>, ConfigError>),
    Sqs(fn(&Wiring<'_>) -> Result<Arc<dyn SqsHandler>, ConfigError>),
    Stream(fn(&Wiring<'_>) -> Result<Arc<dyn StreamHandler>, ConfigError>),
    Sns(fn(&Wiring<'_>) -> Result<Arc<dyn SnsHandler>, ConfigError>),
}

/// One function of the project.
#[derive(Clone, Copy)]
pub struct FunctionSpec {
    /// The binary (and crate) name under `functions/`.
    pub binary: &'static str,
    /// The handler type its `main.rs` imports and builds, by path.
    pub handler: &'static str,
    pub constructor: Constructor,
}

macro_rules! function {
    ($binary:literal, $run:ident, $kind:ident, $($handler:ident)::+) => {
        FunctionSpec {
            binary: $binary,
            handler: stringify!($($handler)::+),
            constructor: Constructor::$kind(|w| Ok(Arc::new($($handler)::+::from_config(w)?))),
        }
    };
}

/// Every function, as its `main.rs` builds it (`template_consistency` holds the two together).
pub const FUNCTIONS: &[FunctionSpec] = &[
    function!("singularity-send-verification", run_http, Http, mailconfirm::contracts::singularity::SendVerification),
    function!(
        "singularity-verification-cooldown",
        run_http,
        Http,
        mailconfirm::contracts::singularity::VerificationCooldown
    ),
    function!("singularity-verify-email", run_http, Http, mailconfirm::contracts::singularity::VerifyEmail),
    function!(
        "backendless-resend-confirmation",
        run_http,
        Http,
        mailconfirm::contracts::backendless::ResendConfirmation
    ),
    function!(
        "backendless-create-confirmation-url",
        run_http,
        Http,
        mailconfirm::contracts::backendless::CreateConfirmationUrl
    ),
    function!("backendless-app-info", run_http, Http, mailconfirm::contracts::backendless_info::AppInfo),
    function!("tennpay-send-confirmation", run_http, Http, mailconfirm::contracts::tennpay::SendConfirmation),
    function!("mastodon-resend-confirmation", run_http, Http, mailconfirm::contracts::mastodon::ResendConfirmation),
    function!("mastodon-check-confirmation", run_http, Http, mailconfirm::contracts::mastodon::CheckConfirmation),
    function!("confirm-page", run_http, Http, mailconfirm::confirm_page::ConfirmPage),
    function!("confirm-code", run_http, Http, mailconfirm::contracts::codes::ConfirmCode),
    function!("service-get-user", run_http, Http, mailconfirm::contracts::service::GetUser),
    function!("service-confirm-user", run_http, Http, mailconfirm::contracts::service::ConfirmUser),
    function!("service-delete-user", run_http, Http, mailconfirm::contracts::service::DeleteUser),
    function!("signup-events", run_sqs, Sqs, mailconfirm::signup_events::SignUpConsumer),
    function!("change-events", run_stream, Stream, mailconfirm::app_events::ChangeStreamConsumer),
    function!("mail-feedback", run_sns, Sns, mailconfirm::mail_feedback::MailFeedbackConsumer),
];

/// A clock the tests move instead of sleeping: the system's time plus an offset.
#[derive(Debug, Default)]
pub struct TestClock {
    offset_seconds: AtomicI64,
}

impl TestClock {
    pub fn advance(&self, seconds: i64) {
        self.offset_seconds.fetch_add(seconds, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now(&self) -> UnixTime {
        UnixTime(UnixTime::now().0 + self.offset_seconds.load(Ordering::SeqCst))
    }
}

/// Every function of the project, built from one configuration, each with its own AWS
/// clients as in AWS, and a record of the operations it made.
pub struct Functions {
    pub http: BTreeMap<String, Arc<dyn HttpHandler>>,
    pub sign_up: Arc<dyn SqsHandler>,
    /// The consumer of the table's change stream.
    pub change_events: Arc<dyn StreamHandler>,
    /// The subscriber of SES's feedback topic.
    pub mail_feedback: Arc<dyn SnsHandler>,
    /// The table as the functions see it, for the local tools that read users.
    pub store: Arc<DynamoStore>,
    pub operations: BTreeMap<String, OperationRecorder>,
}

impl Functions {
    pub fn build(env: &HashMap<String, String>, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        Self::build_calling(env, clock, None)
    }

    /// [`Self::build`], with every function's AWS calls sent to `endpoint` (a fault proxy).
    pub fn build_calling(
        env: &HashMap<String, String>,
        clock: Arc<dyn Clock>,
        endpoint: Option<&str>,
    ) -> anyhow::Result<Self> {
        let mut operations = BTreeMap::new();
        let mut http = BTreeMap::new();
        let mut sqs = BTreeMap::new();
        let mut streams = BTreeMap::new();
        let mut topics = BTreeMap::new();
        for function in FUNCTIONS {
            let recorder = OperationRecorder::default();
            operations.insert(function.binary.to_owned(), recorder.clone());
            let mut aws = AwsClients::with_interceptor(SharedInterceptor::new(recorder));
            if let Some(url) = endpoint {
                aws = aws.with_endpoint(url);
            }
            let aws = Arc::new(aws);
            let wiring = Wiring::new(env, aws, clock.clone());
            match function.constructor {
                Constructor::Http(build) => {
                    http.insert(function.binary.to_owned(), build(&wiring)?);
                }
                Constructor::Sqs(build) => {
                    sqs.insert(function.binary.to_owned(), build(&wiring)?);
                }
                Constructor::Stream(build) => {
                    streams.insert(function.binary.to_owned(), build(&wiring)?);
                }
                Constructor::Sns(build) => {
                    topics.insert(function.binary.to_owned(), build(&wiring)?);
                }
            }
        }
        let sign_up = sqs.remove("signup-events").context("no sign-up consumer")?;
        let change_events = streams.remove("change-events").context("no change-stream consumer")?;
        let store = Wiring::new(env, Arc::new(AwsClients::new()), clock).store()?;
        let mail_feedback = topics.remove("mail-feedback").context("no feedback subscriber")?;
        Ok(Self { http, sign_up, change_events, mail_feedback, store, operations })
    }

    pub fn gateway(&self, template: &Template) -> anyhow::Result<Gateway> {
        Gateway::new(template.http_routes(), &self.http)
    }
}

/// Creates the table as the template defines it (idempotent) and turns on its TTL.
pub async fn create_table(aws: &AwsClients, template: &Template, table_name: &str) -> anyhow::Result<()> {
    let props = template.table_properties()?;
    let dynamodb = aws.dynamodb().await;
    let key_schema = |value: &Value| -> anyhow::Result<Vec<KeySchemaElement>> {
        value
            .as_array()
            .context("KeySchema is not a list")?
            .iter()
            .map(|key| {
                Ok(KeySchemaElement::builder()
                    .attribute_name(key["AttributeName"].as_str().context("AttributeName")?)
                    .key_type(KeyType::from(key["KeyType"].as_str().context("KeyType")?))
                    .build()?)
            })
            .collect()
    };
    let mut request = dynamodb
        .create_table()
        .table_name(table_name)
        .billing_mode(BillingMode::from(props["BillingMode"].as_str().unwrap_or("PAY_PER_REQUEST")))
        .set_key_schema(Some(key_schema(&props["KeySchema"])?));
    for attribute in props["AttributeDefinitions"].as_array().context("AttributeDefinitions")? {
        request = request.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(attribute["AttributeName"].as_str().context("AttributeName")?)
                .attribute_type(ScalarAttributeType::from(
                    attribute["AttributeType"].as_str().context("AttributeType")?,
                ))
                .build()?,
        );
    }
    for index in props["GlobalSecondaryIndexes"].as_array().into_iter().flatten() {
        request = request.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(index["IndexName"].as_str().context("IndexName")?)
                .set_key_schema(Some(key_schema(&index["KeySchema"])?))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::from(
                            index["Projection"]["ProjectionType"].as_str().unwrap_or("ALL"),
                        ))
                        .build(),
                )
                .build()?,
        );
    }
    if let Some(stream) = props.get("StreamSpecification") {
        request = request.stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::from(stream["StreamViewType"].as_str().context("StreamViewType")?))
                .build()?,
        );
    }
    match request.send().await {
        Ok(_) => {}
        Err(err) if err.as_service_error().is_some_and(|e| e.is_resource_in_use_exception()) => {}
        Err(err) => {
            return Err(anyhow::anyhow!(err.into_service_error()).context("creating the table"));
        }
    }
    if let Some(ttl) = props.get("TimeToLiveSpecification") {
        dynamodb
            .update_time_to_live()
            .table_name(table_name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(ttl["AttributeName"].as_str().context("TTL AttributeName")?)
                    .enabled(ttl["Enabled"] == true)
                    .build()?,
            )
            .send()
            .await
            .map_err(|err| anyhow::anyhow!(err.into_service_error()))
            .context("turning on TTL")?;
    }
    Ok(())
}

/// Verifies the sender identity, which SES requires before it sends anything.
pub async fn verify_sender(aws: &AwsClients, sender: &str) -> anyhow::Result<()> {
    match aws.sesv2().await.create_email_identity().email_identity(sender).send().await {
        Ok(_) => Ok(()),
        Err(err) if err.as_service_error().is_some_and(|e| e.is_already_exists_exception()) => Ok(()),
        Err(err) => Err(anyhow::anyhow!(err.into_service_error()).context("verifying the sender identity")),
    }
}

/// moto's address, from the variable the SDK reads too.
pub fn moto_url() -> anyhow::Result<String> {
    match std::env::var("AWS_ENDPOINT_URL") {
        Ok(url) if !url.is_empty() => Ok(url.trim_end_matches('/').to_owned()),
        _ => {
            bail!("AWS_ENDPOINT_URL is not set: start the local stack with scripts/run or the tests with scripts/test")
        }
    }
}
