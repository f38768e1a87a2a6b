//! How every function is put together: configuration, AWS clients and a clock go in, a
//! handler comes out, and the Lambda runtime lends it each request for the life of the
//! execution environment. Every `main.rs` is one call to [`run_http`] or [`run_sqs`], and the
//! local stack builds the same handlers through the same constructors.

use std::sync::Arc;

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_http::{Body, Request, Response};

use crate::aws::AwsClients;
use crate::config::{self, ConfigError, ProcessEnv, Source};
use crate::mail::SesMailer;
use crate::ports::{Clock, SystemClock};
use crate::store::DynamoStore;

/// What a handler is built from.
pub struct Wiring<'a> {
    pub config: &'a dyn Source,
    pub aws: Arc<AwsClients>,
    pub clock: Arc<dyn Clock>,
}

impl<'a> Wiring<'a> {
    pub fn new(config: &'a dyn Source, aws: Arc<AwsClients>, clock: Arc<dyn Clock>) -> Self {
        Self { config, aws, clock }
    }

    /// A deployed function's: the process environment, clients built on first use, the system clock.
    pub fn from_environment() -> Wiring<'static> {
        Wiring { config: &ProcessEnv, aws: Arc::new(AwsClients::new()), clock: Arc::new(SystemClock) }
    }

    /// The table (`TABLE_NAME`), behind every storage port.
    pub fn store(&self) -> Result<Arc<DynamoStore>, ConfigError> {
        let store = DynamoStore::new(self.aws.clone(), config::table_name(self.config)?);
        Ok(Arc::new(store.with_pending_ttl(config::pending_signup_ttl(self.config)?)))
    }

    /// SES, sending as `SENDER_ADDRESS`.
    pub fn mailer(&self) -> Result<Arc<SesMailer>, ConfigError> {
        Ok(Arc::new(SesMailer::from_config(self.config, self.aws.clone())?))
    }
}

/// A function behind an API Gateway route. It answers every request, bad ones included, and
/// never fails: a failure of ours is a 5xx in the contract's own form.
#[async_trait]
pub trait HttpHandler: Send + Sync {
    async fn handle(&self, request: Request) -> Response<Body>;
}

/// A function fed by an SQS event source mapping; the response lists the messages to redeliver.
#[async_trait]
pub trait SqsHandler: Send + Sync {
    async fn handle(&self, event: SqsEvent) -> SqsBatchResponse;
}

/// A function fed by the table's change stream; the response names the record to retry from.
#[async_trait]
pub trait StreamHandler: Send + Sync {
    async fn handle(&self, event: crate::app_events::StreamEvent) -> crate::app_events::StreamBatchResponse;
}

/// A function SNS invokes (asynchronously): an error has Lambda try the event again, twice,
/// then park it in the function's dead-letter queue.
#[async_trait]
pub trait SnsHandler: Send + Sync {
    async fn handle(&self, event: crate::mail_feedback::SnsEvent) -> anyhow::Result<()>;
}

/// Builds a handler from the environment, after the settings every function reads outside its
/// own configuration (the AWS clients' time budget).
fn build_checked<H>(build: impl FnOnce(&Wiring<'_>) -> Result<H, ConfigError>) -> Result<H, ConfigError> {
    config::function_timeout(&ProcessEnv)?;
    build(&Wiring::from_environment())
}

/// Runs an HTTP function: telemetry, configuration (a bad value stops the start), then each
/// request handed to the handler, which the runtime borrows for the environment's life.
pub async fn run_http<H: HttpHandler>(
    build: impl FnOnce(&Wiring<'_>) -> Result<H, ConfigError>,
) -> Result<(), lambda_http::Error> {
    crate::init_telemetry();
    let handler = crate::configure(|| build_checked(build));
    let handler = &handler;
    lambda_http::run(lambda_http::service_fn(move |request| async move {
        Ok::<_, lambda_http::Error>(handler.handle(request).await)
    }))
    .await
}

/// A runner for an event source: the same start as [`run_http`], then each event handed to the
/// handler, with `$answer` as what the runtime is told.
macro_rules! event_runner {
    ($(#[$doc:meta])* $name:ident, $handler_trait:ident, $event:ty, |$handler:ident, $payload:ident| $answer:expr) => {
        $(#[$doc])*
        pub async fn $name<H: $handler_trait>(
            build: impl FnOnce(&Wiring<'_>) -> Result<H, ConfigError>,
        ) -> Result<(), lambda_http::Error> {
            use lambda_http::lambda_runtime::{self, LambdaEvent};
            crate::init_telemetry();
            let handler = crate::configure(|| build_checked(build));
            let $handler = &handler;
            lambda_runtime::run(lambda_runtime::service_fn(move |event: LambdaEvent<$event>| async move {
                let $payload = event.payload;
                $answer
            }))
            .await
        }
    };
}

event_runner!(
    /// Runs an SQS consumer, as [`run_http`] runs an HTTP function.
    run_sqs, SqsHandler, SqsEvent,
    |handler, batch| Ok::<_, lambda_http::Error>(handler.handle(batch).await)
);

event_runner!(
    /// Runs a DynamoDB stream consumer. A batch that is not a stream event is an invocation
    /// error: Lambda retries it, then parks it in the on-failure queue.
    run_stream, StreamHandler, crate::app_events::StreamEvent,
    |handler, batch| Ok::<_, lambda_http::Error>(handler.handle(batch).await)
);

event_runner!(
    /// Runs an SNS subscriber; a failure has Lambda try the event again.
    run_sns, SnsHandler, crate::mail_feedback::SnsEvent,
    |handler, event| handler
        .handle(event)
        .await
        .map_err(|_| lambda_http::Error::from("feedback not recorded; see the log"))
);
