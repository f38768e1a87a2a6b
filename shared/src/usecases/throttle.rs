//! Throttles on unauthenticated or abusable routes. Every throttle write of a request and its
//! send claim go out together, so "throttled? cooldown? claim" takes one DynamoDB round trip;
//! the throttles count a request whatever the user's state, so they behave the same whether or
//! not the addressed user exists.

use crate::config::{self, ConfigError, Source};
use crate::domain::{Throttle, ThrottleRule, Throttled, UnixTime};
use crate::ports::{Claim, RequestCounters, SendClaims};
use crate::usecases::Failure;

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
            per_ip: config::throttle(source, "resend-ip", ["RESEND_IP_LIMIT", "RESEND_IP_WINDOW_SECONDS"], 20, 3600)?,
            per_identity: config::throttle(
                source,
                "resend-identity",
                ["RESEND_IDENTITY_LIMIT", "RESEND_IDENTITY_WINDOW_SECONDS"],
                5,
                3600,
            )?,
        })
    }

    /// The counters one request goes into: its client's and its identity's.
    pub fn counting(&self, client: String, identity: String) -> [Throttle; 2] {
        [self.per_ip.counting(client), self.per_identity.counting(identity)]
    }
}

/// Counts the request against every throttle at once; a refused request is refused by the
/// first of them (in the order given) that is over its limit.
pub async fn count_request(
    counters: &dyn RequestCounters,
    throttles: &[Throttle],
    now: UnixTime,
) -> Result<(), ThrottleError> {
    let decisions =
        futures_util::future::join_all(throttles.iter().map(|throttle| counters.count_request(throttle, now))).await;
    let mut failure = None;
    for decision in decisions {
        match decision {
            Ok(Ok(())) => {}
            Ok(Err(throttled)) => {
                tracing::info!(rule = throttled.rule.name, "request throttled");
                crate::metrics::count(crate::metrics::Metric::Throttled);
                return Err(ThrottleError::Throttled(throttled));
            }
            Err(err) => failure = failure.or(Some(err)),
        }
    }
    match failure {
        Some(err) => Err(Failure::Storage(err).into()),
        None => Ok(()),
    }
}

/// The outcome of a use case counted by throttles: over a limit, or the use case's own refusal.
#[derive(Debug)]
pub enum Limited<E> {
    Throttled(Throttled),
    Refused(E),
}

impl<E: From<Failure>> From<ThrottleError> for Limited<E> {
    fn from(err: ThrottleError) -> Self {
        match err {
            ThrottleError::Throttled(throttled) => Limited::Throttled(throttled),
            ThrottleError::Failed(failure) => Limited::Refused(failure.into()),
        }
    }
}

/// Counts the request and makes the claim together, in one round trip. A claim made by a
/// request that turns out throttled (or whose counting failed) is given back at once: no mail.
pub async fn claim_counted<E: From<Failure>>(
    counters: &dyn RequestCounters,
    claims: &dyn SendClaims,
    throttles: &[Throttle],
    now: UnixTime,
    claim: impl Future<Output = Result<Claim, E>>,
) -> Result<Claim, Limited<E>> {
    let (counted, claimed) = tokio::join!(count_request(counters, throttles, now), claim);
    match counted {
        Ok(()) => claimed.map_err(Limited::Refused),
        Err(refused) => {
            if let Ok(claim) = &claimed
                && let Err(err) = claims.release_send(claim).await
            {
                // The cooldown stays claimed without a mail until it ends: say so, once.
                Failure::Storage(err.context("giving back the claim of a throttled request")).report();
            }
            Err(refused.into())
        }
    }
}
