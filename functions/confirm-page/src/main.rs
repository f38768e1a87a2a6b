//! GET/HEAD/POST /confirm-email: the hosted page behind every confirmation link; only its button confirms.

use std::sync::Arc;

use lambda_http::{Error, run, service_fn};
use mailconfirm::aws::AwsClients;
use mailconfirm::confirm_page::ConfirmPage;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    mailconfirm::init_telemetry();
    let handler = mailconfirm::configure(|env| ConfirmPage::from_config(env, Arc::new(AwsClients::new())));
    let handler: &'static _ = Box::leak(Box::new(handler));
    run(service_fn(move |request| async move { Ok::<_, Error>(handler.handle(request).await) })).await
}
