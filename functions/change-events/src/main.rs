//! DynamoDB stream consumer: publishes one event per state change of a user to EventBridge.

use mailconfirm::app_events::ChangeStreamConsumer;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    mailconfirm::run_stream(ChangeStreamConsumer::from_config).await
}
