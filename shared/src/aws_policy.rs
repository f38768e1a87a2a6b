//! How long an AWS call may take and when the SDK may try it again, decided per service.
//!
//! - **Time.** Every attempt and every operation has a bound well inside the function's
//!   `Timeout` (`FUNCTION_TIMEOUT_SECONDS`, 10 s by default): a claim, a mail and a release
//!   together take at most 70 % of it, so a hung call ends in the contract's own 5xx with the
//!   claim given back, never in API Gateway's timeout.
//! - **DynamoDB** keeps the SDK's standard retries (3 attempts with backoff). Its writes are
//!   conditional and carry a claim id, so a retry after an applied-but-lost write recognises it.
//! - **SES** sends at most once per request: the SDK retries only answers that prove SES did
//!   not accept the mail (throttling, `TooManyRequestsException`). After a 5xx, a timeout or a
//!   dropped connection SES may have sent it, so the request fails instead of sending twice.
//! - **SES's sending rate** refuses a send with `TooManyRequestsException` (HTTP 429, "Maximum
//!   sending rate exceeded.", what SES v2 answers) or, as the SES guide words it, a
//!   `ThrottlingException`: [`ses_refused_for_rate`] tells those apart, so the sign-up consumer
//!   can treat them as "later" rather than as a failure.

use std::time::Duration;

use aws_sdk_sesv2::config::retry::{ClassifyRetry, RetryAction};
use aws_smithy_runtime_api::client::interceptors::context::InterceptorContext;
use aws_smithy_runtime_api::client::retries::classifiers::RetryClassifierPriority;
use aws_smithy_types::timeout::TimeoutConfig;

/// The function's `Timeout`, as [`crate::config::function_timeout`] reads it from the
/// environment (which stops the start on a bad value, so the fallback is never used in a function).
pub fn function_timeout() -> Duration {
    crate::config::function_timeout(&crate::config::ProcessEnv).unwrap_or(Duration::from_secs(10))
}

/// DynamoDB: 20 % of the budget per operation (all its attempts), 10 % per attempt, so a
/// slow attempt is tried once more (its claim id makes that safe) within the operation's time.
pub fn dynamodb_timeouts(budget: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(budget.mul_f32(0.05).max(Duration::from_millis(200)))
        .operation_attempt_timeout(budget.mul_f32(0.10).max(Duration::from_millis(300)))
        .operation_timeout(budget.mul_f32(0.20))
        .build()
}

/// SES: 30 % of the budget for the send, one attempt unless SES says it refused.
pub fn ses_timeouts(budget: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(budget.mul_f32(0.05).max(Duration::from_millis(200)))
        .operation_attempt_timeout(budget.mul_f32(0.15))
        .operation_timeout(budget.mul_f32(0.30))
        .build()
}

/// How long into an invocation a sign-up may still be begun: its AWS calls (the transaction, the
/// send, and the acceptance record or the claim's release) can take up to their operation
/// timeouts, and all of that must end inside the function's `Timeout`.
pub fn begin_window(budget: Duration) -> Duration {
    let dynamodb = dynamodb_timeouts(budget).operation_timeout().unwrap_or(budget);
    let ses = ses_timeouts(budget).operation_timeout().unwrap_or(budget);
    budget.saturating_sub(dynamodb * 2 + ses)
}

/// Retries a send only when SES's answer says the mail was not accepted.
#[derive(Debug, Default)]
pub struct SendAtMostOnce;

impl ClassifyRetry for SendAtMostOnce {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        match ctx.response().map(|response| response.status().as_u16()) {
            // Throttled: SES refused it; the SDK's own classifiers retry it with backoff.
            Some(429) => RetryAction::NoActionIndicated,
            // Any other answer is final, and no answer (timeout, dropped connection) is ambiguous.
            _ => RetryAction::RetryForbidden,
        }
    }

    fn name(&self) -> &'static str {
        "SendAtMostOnce"
    }

    fn priority(&self) -> RetryClassifierPriority {
        RetryClassifierPriority::default()
    }
}

/// SES's codes for "not now": the account's sending rate (or daily quota) is used up. The mail
/// was refused, not taken, so sending it later sends it once.
const SES_RATE_CODES: &[&str] = &["TooManyRequestsException", "ThrottlingException", "Throttling"];

/// Whether an SES answer (its HTTP status and error code) refused a send for the account's rate.
pub fn ses_refused_for_rate(status: Option<u16>, code: Option<&str>) -> bool {
    status == Some(429) || code.is_some_and(|code| SES_RATE_CODES.contains(&code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sign_up_begun_inside_the_window_ends_inside_the_timeout() {
        let window = begin_window(Duration::from_secs(10));
        assert!((window.as_secs_f64() - 3.0).abs() < 0.01, "{window:?}");
    }

    #[test]
    fn only_ses_rate_answers_count_as_refused_for_rate() {
        assert!(ses_refused_for_rate(Some(429), Some("TooManyRequestsException")));
        assert!(ses_refused_for_rate(Some(400), Some("ThrottlingException")));
        assert!(ses_refused_for_rate(Some(429), None));
        assert!(!ses_refused_for_rate(Some(400), Some("MessageRejected")));
        assert!(!ses_refused_for_rate(Some(500), None), "a 5xx may have sent the mail");
        assert!(!ses_refused_for_rate(None, None), "no answer may have sent the mail");
    }

    #[test]
    fn a_claim_a_mail_and_a_release_fit_well_inside_the_function_timeout() {
        let budget = Duration::from_secs(10);
        let dynamodb = dynamodb_timeouts(budget).operation_timeout().unwrap();
        let ses = ses_timeouts(budget).operation_timeout().unwrap();
        assert!(dynamodb * 2 + ses <= budget.mul_f32(0.7) + Duration::from_millis(1), "{dynamodb:?} {ses:?}");
    }
}
