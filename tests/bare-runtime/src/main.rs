//! The baseline of `scripts/bench`: a bare `lambda_runtime` binary that answers every
//! invocation with its own JSON payload, on the same single-threaded Tokio runtime as the
//! functions, and with no AWS clients, configuration or telemetry.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move { Ok::<_, Error>(event.payload) })).await
}
