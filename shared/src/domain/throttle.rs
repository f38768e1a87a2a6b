//! Request throttles: fixed windows counted in the table. A window's counter lives under a
//! key that names the window, so an expired counter that TTL has not removed yet is never read.

use std::net::IpAddr;
use std::time::Duration;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::UnixTime;

/// At most `limit` requests per `window` for one subject (an IP, an address, a user).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleRule {
    /// Names the counter; two rules with the same name share counters.
    pub name: &'static str,
    pub limit: u32,
    pub window: Duration,
}

/// The counter a request falls into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottleWindow {
    /// Storage key: rule, a digest of the subject (no personal data in keys), window number.
    pub key: String,
    pub resets_at: UnixTime,
}

/// What a counted request learnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleDecision {
    Allowed { remaining: u32, resets_at: UnixTime },
    Refused { resets_at: UnixTime },
}

impl ThrottleDecision {
    pub fn resets_at(&self) -> UnixTime {
        match self {
            ThrottleDecision::Allowed { resets_at, .. } | ThrottleDecision::Refused { resets_at } => *resets_at,
        }
    }
}

impl ThrottleRule {
    pub fn window_for(&self, subject: &str, now: UnixTime) -> ThrottleWindow {
        let length = i64::try_from(self.window.as_secs().max(1)).unwrap_or(i64::MAX);
        let index = now.0.div_euclid(length);
        let digest: [u8; 32] = Sha256::digest(subject.as_bytes()).into();
        let subject = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..12]);
        ThrottleWindow {
            key: format!("THROTTLE#{}#{subject}#{index}", self.name),
            resets_at: UnixTime((index + 1) * length),
        }
    }

    /// The decision after the counter reached `hits` (the count including this request).
    pub fn decide(&self, hits: u32, resets_at: UnixTime) -> ThrottleDecision {
        if hits <= self.limit {
            ThrottleDecision::Allowed { remaining: self.limit - hits, resets_at }
        } else {
            ThrottleDecision::Refused { resets_at }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    const FIVE_MINUTES: ThrottleRule = ThrottleRule { name: "ip", limit: 25, window: Duration::from_secs(300) };

    #[test]
    fn requests_in_one_window_share_a_counter_and_the_next_window_starts_afresh() {
        let a = FIVE_MINUTES.window_for("203.0.113.7", UnixTime(600));
        let b = FIVE_MINUTES.window_for("203.0.113.7", UnixTime(899));
        let c = FIVE_MINUTES.window_for("203.0.113.7", UnixTime(900));
        assert_eq!(a, b);
        assert_ne!(a.key, c.key);
        assert_eq!(a.resets_at, UnixTime(900));
        assert_eq!(c.resets_at, UnixTime(1200));
    }

    #[test]
    fn subjects_are_kept_apart_and_never_appear_in_the_key() {
        let a = FIVE_MINUTES.window_for("ada@example.com", UnixTime(0));
        let b = FIVE_MINUTES.window_for("grace@example.com", UnixTime(0));
        assert_ne!(a.key, b.key);
        assert!(!a.key.contains("ada"));
    }

    #[test]
    fn the_limit_is_inclusive() {
        let reset = UnixTime(300);
        assert_eq!(FIVE_MINUTES.decide(1, reset), ThrottleDecision::Allowed { remaining: 24, resets_at: reset });
        assert_eq!(FIVE_MINUTES.decide(25, reset), ThrottleDecision::Allowed { remaining: 0, resets_at: reset });
        assert_eq!(FIVE_MINUTES.decide(26, reset), ThrottleDecision::Refused { resets_at: reset });
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
