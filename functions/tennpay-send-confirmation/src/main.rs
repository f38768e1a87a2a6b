//! POST /User/email/send-confirmation: resends the confirmation mail (10npay contract).

use std::sync::Arc;

use lambda_http::{Error, run, service_fn};
use mailconfirm::aws::AwsClients;
use mailconfirm::contracts::tennpay::SendConfirmation;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    mailconfirm::init_telemetry();
    let handler = mailconfirm::configure(|env| SendConfirmation::from_config(env, Arc::new(AwsClients::new())));
    let handler: &'static _ = Box::leak(Box::new(handler));
    run(service_fn(move |request| async move { Ok::<_, Error>(handler.handle(request).await) })).await
}
