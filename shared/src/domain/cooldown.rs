//! Time and the resend cooldown: pure arithmetic, so every decision is testable without a clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch: the unit DynamoDB stores and TTL expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct UnixTime(pub i64);

impl UnixTime {
    pub fn now() -> Self {
        let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        Self(i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX))
    }

    pub fn plus(self, duration: Duration) -> Self {
        Self(self.0.saturating_add(i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)))
    }

    /// Whole seconds from `self` until `later`, zero once `later` has passed.
    pub fn seconds_until(self, later: UnixTime) -> u64 {
        u64::try_from(later.0.saturating_sub(self.0)).unwrap_or(0)
    }
}

/// How long a user must wait between two confirmation mails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CooldownPolicy {
    pub period: Duration,
}

impl CooldownPolicy {
    /// The end of the cooldown that a mail sent at `now` starts.
    pub fn claim_until(&self, now: UnixTime) -> UnixTime {
        now.plus(self.period)
    }

    /// Seconds left before the next mail may go, given the stored end of the last cooldown.
    /// An end in the past counts as no cooldown: expired items may linger for days.
    pub fn remaining(&self, cooldown_until: Option<UnixTime>, now: UnixTime) -> u64 {
        cooldown_until.map_or(0, |until| now.seconds_until(until))
    }

    pub fn allows_send(&self, cooldown_until: Option<UnixTime>, now: UnixTime) -> bool {
        self.remaining(cooldown_until, now) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: CooldownPolicy = CooldownPolicy { period: Duration::from_secs(60) };

    #[test]
    fn a_user_who_never_received_a_mail_may_get_one() {
        assert!(MINUTE.allows_send(None, UnixTime(1_000)));
        assert_eq!(MINUTE.remaining(None, UnixTime(1_000)), 0);
    }

    #[test]
    fn a_mail_starts_a_cooldown_of_the_configured_length() {
        assert_eq!(MINUTE.claim_until(UnixTime(1_000)), UnixTime(1_060));
    }

    #[test]
    fn within_the_cooldown_the_remaining_seconds_are_counted_down() {
        let until = Some(UnixTime(1_060));
        assert!(!MINUTE.allows_send(until, UnixTime(1_000)));
        assert_eq!(MINUTE.remaining(until, UnixTime(1_000)), 60);
        assert_eq!(MINUTE.remaining(until, UnixTime(1_059)), 1);
    }

    #[test]
    fn the_cooldown_ends_exactly_at_its_end_and_stays_ended() {
        let until = Some(UnixTime(1_060));
        assert!(MINUTE.allows_send(until, UnixTime(1_060)));
        assert!(MINUTE.allows_send(until, UnixTime(1_060 + 86_400 * 3)));
    }
}
