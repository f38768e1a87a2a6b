//! Throttles on unauthenticated or abusable routes, counted in the table before anything
//! else is looked at, so they behave the same whether or not the addressed user exists.

use crate::config::{self, ConfigError, Source};
use crate::domain::{ThrottleDecision, ThrottleRule, UnixTime};
use crate::ports::RequestCounters;
use crate::usecases::Failure;

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
    #[error(transparent)]
    Failed(#[from] Failure),
}

/// The throttles of every unauthenticated way to ask for a mail (Backendless's resend, the
/// confirm page's "send me a new link"): they share their counters, so one client cannot
/// double its allowance by switching routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResendThrottles {
    pub per_ip: ThrottleRule,
    pub per_identity: ThrottleRule,
}

impl ResendThrottles {
    /// `RESEND_IP_LIMIT`/`_WINDOW_SECONDS` (20 per hour) and `RESEND_IDENTITY_LIMIT`/`_WINDOW_SECONDS` (5 per hour).
    pub fn from_config(source: &dyn Source) -> Result<Self, ConfigError> {
        Ok(Self {
            per_ip: ThrottleRule {
                name: "resend-ip",
                limit: config::count(source, "RESEND_IP_LIMIT", 20)?,
                window: config::seconds(source, "RESEND_IP_WINDOW_SECONDS", 3600)?,
            },
            per_identity: ThrottleRule {
                name: "resend-identity",
                limit: config::count(source, "RESEND_IDENTITY_LIMIT", 5)?,
                window: config::seconds(source, "RESEND_IDENTITY_WINDOW_SECONDS", 3600)?,
            },
        })
    }

    /// The counters one request goes into: its client's and its identity's.
    pub fn rules(&self, client: String, identity: String) -> [(ThrottleRule, String); 2] {
        [(self.per_ip, client), (self.per_identity, identity)]
    }
}

/// Counts the request against each rule in turn; the first limit exceeded refuses it.
pub async fn count_request(
    counters: &dyn RequestCounters,
    rules: &[(ThrottleRule, String)],
    now: UnixTime,
) -> Result<(), ThrottleError> {
    for (rule, subject) in rules {
        match counters.count_request(rule, subject, now).await.map_err(Failure::Storage)? {
            ThrottleDecision::Allowed { .. } => {}
            ThrottleDecision::Refused { resets_at } => {
                tracing::info!(rule = rule.name, "request throttled");
                return Err(ThrottleError::Throttled(Throttled { rule: *rule, resets_at }));
            }
        }
    }
    Ok(())
}
