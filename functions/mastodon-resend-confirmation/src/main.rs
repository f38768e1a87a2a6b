//! POST /api/v1/emails/confirmations: resends the confirmation mail, optionally to a new address (Mastodon contract).

use std::sync::Arc;

use lambda_http::{Error, run, service_fn};
use mailconfirm::aws::AwsClients;
use mailconfirm::contracts::mastodon::ResendConfirmation;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    mailconfirm::init_telemetry();
    let handler = mailconfirm::configure(|env| ResendConfirmation::from_config(env, Arc::new(AwsClients::new())));
    let handler: &'static _ = Box::leak(Box::new(handler));
    run(service_fn(move |request| async move { Ok::<_, Error>(handler.handle(request).await) })).await
}
