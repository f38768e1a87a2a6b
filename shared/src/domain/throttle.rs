//! Request throttles as sliding logs: a request is allowed while fewer than `limit` requests
//! of its subject were counted in the `window` before it. The log keeps the times of the last
//! `limit` counted requests, newest first, so the decision needs only the oldest of them and
//! the store can make it in the same conditional write that records the request.

use std::net::IpAddr;
use std::time::Duration;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::UnixTime;

/// The most requests a throttle can allow per window: the store keeps one time per allowed
/// request in the log, and DynamoDB's expressions (4 KB) must hold the shift of all of them.
pub const MAX_THROTTLE_LIMIT: u32 = 100;

/// At most `limit` requests per `window` for one subject (an IP, an address, a user).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleRule {
    /// Names the counter; two rules with the same name share counters.
    pub name: &'static str,
    /// From 1 to [`MAX_THROTTLE_LIMIT`] (the configuration refuses others).
    pub limit: u32,
    pub window: Duration,
}

/// One request to count against one rule: the rule and whom it counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Throttle {
    pub rule: ThrottleRule,
    pub subject: String,
}

/// A request over one of its limits, and when it would be allowed again.
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

impl ThrottleRule {
    pub fn counting(self, subject: impl Into<String>) -> Throttle {
        Throttle { rule: self, subject: subject.into() }
    }

    /// The log's length: one time per request the window may hold.
    pub fn log_length(&self) -> usize {
        usize::try_from(self.limit.clamp(1, MAX_THROTTLE_LIMIT)).unwrap_or(1)
    }

    /// Requests counted at or before this time no longer count against a request at `now`.
    pub fn window_start(&self, now: UnixTime) -> UnixTime {
        UnixTime(now.0.saturating_sub(i64::try_from(self.window.as_secs()).unwrap_or(i64::MAX)))
    }

    /// The decision for a request at `now`, given the log's oldest kept time (the `limit`-th
    /// newest counted request; `None` while fewer were ever counted).
    pub fn decide(&self, oldest_kept: Option<UnixTime>, now: UnixTime) -> Result<(), Throttled> {
        match oldest_kept {
            Some(oldest) if oldest > self.window_start(now) => {
                Err(Throttled { rule: *self, resets_at: oldest.plus(self.window) })
            }
            _ => Ok(()),
        }
    }
}

impl Throttle {
    /// Storage key: the rule and a digest of the subject (no personal data in keys).
    pub fn key(&self) -> String {
        let digest: [u8; 32] = Sha256::digest(self.subject.as_bytes()).into();
        let subject = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..12]);
        format!("THROTTLE#{}#{subject}", self.rule.name)
    }
}

/// The subject a client address is counted under: IPv4 as is, IPv6 by its /64 prefix,
/// since one host usually holds a whole /64.
pub fn client_subject(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// A sliding log in memory, the same rule as the store's conditional write: for the fakes of
/// the use-case tests and the rule's own tests.
#[cfg(test)]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestLog {
    /// Newest first, at most the rule's `log_length`.
    times: Vec<UnixTime>,
}

#[cfg(test)]
impl RequestLog {
    /// Counts a request at `now` unless the rule refuses it; a refused request is not logged.
    pub fn count(&mut self, rule: &ThrottleRule, now: UnixTime) -> Result<(), Throttled> {
        let length = rule.log_length();
        let oldest_kept = if self.times.len() >= length { self.times.get(length - 1).copied() } else { None };
        rule.decide(oldest_kept, now)?;
        self.times.insert(0, now);
        self.times.truncate(length);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const THREE_PER_MINUTE: ThrottleRule = ThrottleRule { name: "ip", limit: 3, window: Duration::from_secs(60) };

    #[test]
    fn a_window_slides_with_the_requests_instead_of_the_clock() {
        let mut log = RequestLog::default();
        // Three requests just before what a fixed window would call its boundary (t = 60)...
        for t in [50, 55, 59] {
            log.count(&THREE_PER_MINUTE, UnixTime(t)).unwrap();
        }
        // ...do not let three more through just after it.
        let refused = log.count(&THREE_PER_MINUTE, UnixTime(61)).unwrap_err();
        assert_eq!(refused.resets_at, UnixTime(110), "allowed again when the oldest leaves the window");
        assert_eq!(refused.retry_after_seconds(UnixTime(61)), 49);
        log.count(&THREE_PER_MINUTE, UnixTime(110)).unwrap();
        assert!(log.count(&THREE_PER_MINUTE, UnixTime(114)).is_err(), "55 and 59 still count until 115 and 119");
        log.count(&THREE_PER_MINUTE, UnixTime(115)).unwrap();
    }

    #[test]
    fn the_limit_is_inclusive_and_refused_requests_are_not_counted() {
        let mut log = RequestLog::default();
        for _ in 0..3 {
            log.count(&THREE_PER_MINUTE, UnixTime(0)).unwrap();
        }
        for t in 1..60 {
            assert!(log.count(&THREE_PER_MINUTE, UnixTime(t)).is_err());
        }
        // A flood of refusals did not push the wait further out.
        log.count(&THREE_PER_MINUTE, UnixTime(60)).unwrap();
    }

    #[test]
    fn a_person_waits_for_the_oldest_request_to_leave_not_for_the_window_to_end() {
        let five_per_hour = ThrottleRule { name: "identity", limit: 5, window: Duration::from_secs(3600) };
        let mut log = RequestLog::default();
        for t in [0, 600, 1200, 1800, 2400] {
            log.count(&five_per_hour, UnixTime(t)).unwrap();
        }
        let refused = log.count(&five_per_hour, UnixTime(3000)).unwrap_err();
        assert_eq!(refused.retry_after_seconds(UnixTime(3000)), 600);
    }

    #[test]
    fn subjects_are_kept_apart_and_never_appear_in_the_key() {
        let a = THREE_PER_MINUTE.counting("ada@example.com").key();
        let b = THREE_PER_MINUTE.counting("grace@example.com").key();
        assert_ne!(a, b);
        assert!(!a.contains("ada"));
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64_prefix() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_subject(a), client_subject(b));
        assert_ne!(client_subject(a), client_subject(c));
        assert_eq!(client_subject("::ffff:198.51.100.4".parse().unwrap()), "198.51.100.4");
        assert_eq!(client_subject("198.51.100.4".parse().unwrap()), "198.51.100.4");
    }
}
