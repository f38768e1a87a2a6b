//! SQS consumer of sign-up events: creates the pending user and sends the first confirmation mail.

use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_http::lambda_runtime::{self, Error, LambdaEvent, service_fn};
use mailconfirm::aws::AwsClients;
use mailconfirm::usecases::send::ConfirmationSender;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    mailconfirm::init_telemetry();
    let sender = mailconfirm::configure(|env| ConfirmationSender::from_config(env, Arc::new(AwsClients::new())));
    let sender: &'static _ = Box::leak(Box::new(sender));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(mailconfirm::signup_events::handle_batch(sender, event.payload).await)
    }))
    .await
}
