//! Throttles on unauthenticated or abusable routes, counted in the table before anything
//! else is looked at, so they behave the same whether or not the addressed user exists.

use crate::domain::{ThrottleDecision, ThrottleRule, UnixTime};
use crate::store::UserStore;

/// A request over one of its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub rule: ThrottleRule,
    pub resets_at: UnixTime,
}

impl Throttled {
    pub fn retry_after_seconds(&self, now: UnixTime) -> u64 {
        now.seconds_until(self.resets_at).max(1)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ThrottleError {
    #[error("the request is over a limit")]
    Throttled(Throttled),
    #[error("the user store failed")]
    Storage(#[source] anyhow::Error),
}

/// Counts the request against each rule in turn; the first limit exceeded refuses it.
pub async fn count_request(
    store: &UserStore,
    rules: &[(ThrottleRule, String)],
    now: UnixTime,
) -> Result<(), ThrottleError> {
    for (rule, subject) in rules {
        match store.count_request(rule, subject, now).await.map_err(ThrottleError::Storage)? {
            ThrottleDecision::Allowed { .. } => {}
            ThrottleDecision::Refused { resets_at } => {
                tracing::info!(rule = rule.name, "request throttled");
                return Err(ThrottleError::Throttled(Throttled { rule: *rule, resets_at }));
            }
        }
    }
    Ok(())
}
