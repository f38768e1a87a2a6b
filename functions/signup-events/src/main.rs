//! SQS consumer of sign-up events: creates the pending user and sends the first confirmation mail.

use mailconfirm::signup_events::SignUpConsumer;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    mailconfirm::run_sqs(SignUpConsumer::from_config).await
}
