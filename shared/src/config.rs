//! Configuration, read and checked once at start-up. A missing or malformed variable stops
//! the start with a message that names it.

use std::time::Duration;

use crate::domain::throttle::MAX_THROTTLE_LIMIT;
use crate::domain::{CooldownPolicy, EmailAddress, ThrottleRule};

/// Where configuration comes from: the process environment in a function, a map in tests.
pub trait Source {
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Source for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Source for std::collections::HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        std::collections::HashMap::get(self, name).cloned()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration variable {name} is required: {meaning}")]
    Missing { name: &'static str, meaning: &'static str },
    #[error("configuration variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

impl ConfigError {
    pub fn invalid(name: &'static str, reason: impl ToString) -> Self {
        ConfigError::Invalid { name, reason: reason.to_string() }
    }
}

/// A set, non-blank variable.
pub fn optional(source: &dyn Source, name: &'static str) -> Option<String> {
    source.get(name).filter(|value| !value.trim().is_empty())
}

/// A secret (a signing key): held as a `SecretString`, which never prints its value and is
/// zeroed when dropped. Blank means unset.
pub fn secret(source: &dyn Source, name: &'static str) -> Option<secrecy::SecretString> {
    optional(source, name).map(secrecy::SecretString::from)
}

pub fn required(source: &dyn Source, name: &'static str, meaning: &'static str) -> Result<String, ConfigError> {
    optional(source, name).ok_or(ConfigError::Missing { name, meaning })
}

/// The longest duration any `*_SECONDS` setting takes: 366 days. Longer ones are mistakes, and
/// unbounded ones would overflow the arithmetic on stored times.
pub const MAX_SECONDS: u64 = 366 * 24 * 60 * 60;

/// A duration in whole seconds, from 1 to [`MAX_SECONDS`].
pub fn seconds(source: &dyn Source, name: &'static str, default: u64) -> Result<Duration, ConfigError> {
    match optional(source, name) {
        None => Ok(Duration::from_secs(default)),
        Some(value) => match value.trim().parse::<u64>() {
            Ok(secs) if (1..=MAX_SECONDS).contains(&secs) => Ok(Duration::from_secs(secs)),
            _ => Err(ConfigError::invalid(name, format!("expected a whole number of seconds from 1 to {MAX_SECONDS}"))),
        },
    }
}

/// `FUNCTION_TIMEOUT_SECONDS`: the function's `Timeout` (1 to 900 s, Lambda's range; the template
/// sets it equal), from which the AWS calls' timeouts are cut. Unset: 10 s.
pub fn function_timeout(source: &dyn Source) -> Result<Duration, ConfigError> {
    const NAME: &str = "FUNCTION_TIMEOUT_SECONDS";
    let timeout = seconds(source, NAME, 10)?;
    if timeout.as_secs() > 900 {
        return Err(ConfigError::invalid(NAME, "expected a whole number of seconds from 1 to 900, Lambda's range"));
    }
    Ok(timeout)
}

/// A duration in whole milliseconds, from 0 to 60,000.
pub fn milliseconds(source: &dyn Source, name: &'static str, default: u64) -> Result<Duration, ConfigError> {
    match optional(source, name) {
        None => Ok(Duration::from_millis(default)),
        Some(value) => match value.trim().parse::<u64>() {
            Ok(millis) if millis <= 60_000 => Ok(Duration::from_millis(millis)),
            _ => Err(ConfigError::invalid(name, "expected a whole number of milliseconds from 0 to 60000")),
        },
    }
}

/// A whole number above 0, such as a throttle's limit.
pub fn count(source: &dyn Source, name: &'static str, default: u32) -> Result<u32, ConfigError> {
    match optional(source, name) {
        None => Ok(default),
        Some(value) => value
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| ConfigError::invalid(name, "expected a whole number above 0")),
    }
}

/// A throttle: `limit_name` requests (1 to [`MAX_THROTTLE_LIMIT`]) per `window_name` seconds.
pub fn throttle(
    source: &dyn Source,
    rule: &'static str,
    [limit_name, window_name]: [&'static str; 2],
    default_limit: u32,
    default_window_seconds: u64,
) -> Result<ThrottleRule, ConfigError> {
    let limit = count(source, limit_name, default_limit)?;
    if limit > MAX_THROTTLE_LIMIT {
        return Err(ConfigError::invalid(
            limit_name,
            format!("expected a whole number from 1 to {MAX_THROTTLE_LIMIT}"),
        ));
    }
    Ok(ThrottleRule { name: rule, limit, window: seconds(source, window_name, default_window_seconds)? })
}

pub fn flag(source: &dyn Source, name: &'static str, default: bool) -> Result<bool, ConfigError> {
    match optional(source, name).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if ["true", "1", "yes", "on"].contains(&v.as_str()) => Ok(true),
        Some(v) if ["false", "0", "no", "off"].contains(&v.as_str()) => Ok(false),
        Some(_) => Err(ConfigError::invalid(name, "expected true or false")),
    }
}

/// `TABLE_NAME`: the DynamoDB table that holds users, address look-ups and throttles.
pub fn table_name(source: &dyn Source) -> Result<String, ConfigError> {
    required(source, "TABLE_NAME", "the DynamoDB table of users and cooldowns")
}

/// `COOLDOWN_SECONDS`: the least time between two confirmation mails to one user.
pub fn cooldown(source: &dyn Source) -> Result<CooldownPolicy, ConfigError> {
    Ok(CooldownPolicy { period: seconds(source, "COOLDOWN_SECONDS", 60)? })
}

/// `PENDING_SIGNUP_TTL_SECONDS`: how long a sign-up may stay unconfirmed before DynamoDB's TTL
/// removes it and frees its address (default 7 days).
pub fn pending_signup_ttl(source: &dyn Source) -> Result<Duration, ConfigError> {
    seconds(source, "PENDING_SIGNUP_TTL_SECONDS", 7 * 24 * 60 * 60)
}

/// `EMAIL_ENABLED`: whether mail goes out at all; the contracts answer "e-mail disabled" when not.
pub fn email_enabled(source: &dyn Source) -> Result<bool, ConfigError> {
    flag(source, "EMAIL_ENABLED", true)
}

/// `PUBLIC_BASE_URL`: the origin (and optional base path) that links in mails point to.
pub fn public_base_url(source: &dyn Source) -> Result<String, ConfigError> {
    const NAME: &str = "PUBLIC_BASE_URL";
    let url = required(source, NAME, "the public address of the API, e.g. https://confirm.example.com")?;
    parse_base_url(&url).map_err(|reason| ConfigError::invalid(NAME, reason))
}

/// An origin with an optional base path, without the trailing slash.
pub fn parse_base_url(url: &str) -> Result<String, String> {
    let url = url.trim().trim_end_matches('/').to_owned();
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("must start with https:// (or http:// for local use)")?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || rest.contains(['?', '#', ' ', '"', '\'', '<', '>', '&', '\\']) {
        return Err("must be an origin with an optional path, without query or fragment".to_owned());
    }
    Ok(url)
}

/// `SENDER_ADDRESS`: the verified SES identity that confirmation mails come from.
pub fn sender_address(source: &dyn Source) -> Result<EmailAddress, ConfigError> {
    const NAME: &str = "SENDER_ADDRESS";
    let address = required(source, NAME, "the verified SES address confirmation mails are sent from")?;
    EmailAddress::parse(&address).map_err(|err| ConfigError::invalid(NAME, err))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_function_timeout_outside_lambdas_range_stops_the_start() {
        assert_eq!(function_timeout(&env(&[])).unwrap().as_secs(), 10);
        assert_eq!(function_timeout(&env(&[("FUNCTION_TIMEOUT_SECONDS", "30")])).unwrap().as_secs(), 30);
        for bad in ["0", "901", "ten", "-1"] {
            assert!(function_timeout(&env(&[("FUNCTION_TIMEOUT_SECONDS", bad)])).is_err(), "{bad}");
        }
    }

    #[test]
    fn missing_and_malformed_values_name_their_variable() {
        let err = table_name(&env(&[])).unwrap_err().to_string();
        assert!(err.contains("TABLE_NAME"), "{err}");
        let err = cooldown(&env(&[("COOLDOWN_SECONDS", "soon")])).unwrap_err().to_string();
        assert!(err.contains("COOLDOWN_SECONDS"), "{err}");
        let err = email_enabled(&env(&[("EMAIL_ENABLED", "maybe")])).unwrap_err().to_string();
        assert!(err.contains("EMAIL_ENABLED"), "{err}");
    }

    #[test]
    fn durations_are_bounded_so_stored_times_cannot_overflow() {
        for bad in ["0", "-5", "31622401", "18446744073709551615", "1e3"] {
            let err = cooldown(&env(&[("COOLDOWN_SECONDS", bad)])).unwrap_err().to_string();
            assert!(err.contains("COOLDOWN_SECONDS"), "{bad}: {err}");
        }
        assert_eq!(cooldown(&env(&[("COOLDOWN_SECONDS", "31622400")])).unwrap().period.as_secs(), MAX_SECONDS);
    }

    #[test]
    fn defaults_apply_when_a_variable_is_unset_or_blank() {
        assert_eq!(cooldown(&env(&[("COOLDOWN_SECONDS", " ")])).unwrap().period, Duration::from_secs(60));
        assert!(email_enabled(&env(&[])).unwrap());
    }

    #[test]
    fn the_public_base_url_must_be_an_http_origin() {
        assert_eq!(
            public_base_url(&env(&[("PUBLIC_BASE_URL", "https://auth.example.com/prod/")])).unwrap(),
            "https://auth.example.com/prod"
        );
        for bad in ["auth.example.com", "ftp://x", "https://", "https://a.com/?x=1"] {
            assert!(public_base_url(&env(&[("PUBLIC_BASE_URL", bad)])).is_err(), "{bad}");
        }
    }
}
