//! POST /api/users/createEmailConfirmationURL/{identity}: a confirmation link for a trusted backend (Backendless contract).

use std::sync::Arc;

use lambda_http::{Error, run, service_fn};
use mailconfirm::aws::AwsClients;
use mailconfirm::contracts::backendless::CreateConfirmationUrl;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    mailconfirm::init_telemetry();
    let handler = mailconfirm::configure(|env| CreateConfirmationUrl::from_config(env, Arc::new(AwsClients::new())));
    let handler: &'static _ = Box::leak(Box::new(handler));
    run(service_fn(move |request| async move { Ok::<_, Error>(handler.handle(request).await) })).await
}
