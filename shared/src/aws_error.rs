//! AWS errors as they may be logged. The SDK's messages can quote what the request carried:
//! SES's `MessageRejected` names the recipient ("… failed the check in region …: <address>").
//! So a failure keeps only what went wrong (timeout, connection, the service's error code and
//! HTTP status), never a message.

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::result::DispatchFailure;
use aws_smithy_runtime_api::http::Response;

/// What an AWS call's failure was, without anything the request or the answer carried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{service} {what}{}{}", code.as_ref().map(|c| format!(" ({c})")).unwrap_or_default(), status.map(|s| format!(" [HTTP {s}]")).unwrap_or_default())]
pub struct AwsFailure {
    pub service: &'static str,
    pub what: &'static str,
    /// The service's error code, such as `ThrottlingException` or `MessageRejected`.
    pub code: Option<String>,
    pub status: Option<u16>,
}

impl AwsFailure {
    pub fn of<E: ProvideErrorMetadata>(service: &'static str, err: &SdkError<E, Response>) -> Self {
        let what = match err {
            SdkError::ConstructionFailure(_) => "could not build the request",
            SdkError::TimeoutError(_) => "timed out",
            SdkError::DispatchFailure(failure) => dispatch(failure),
            SdkError::ResponseError(_) => "gave an answer that could not be read",
            SdkError::ServiceError(_) => "refused the request",
            _ => "failed",
        };
        Self {
            service,
            what,
            code: err.code().map(str::to_owned),
            status: err.raw_response().map(|response| response.status().as_u16()),
        }
    }
}

fn dispatch(failure: &DispatchFailure) -> &'static str {
    if failure.is_timeout() {
        "timed out"
    } else if failure.is_io() {
        "could not be reached"
    } else {
        "could not be sent the request"
    }
}

/// An SDK error as an `anyhow::Error` safe to log.
pub fn redacted<E: ProvideErrorMetadata>(service: &'static str, err: &SdkError<E, Response>) -> anyhow::Error {
    anyhow::Error::new(AwsFailure::of(service, err))
}
