//! One-time codes beside the link: drawn uniformly with the system's randomness, mailed in
//! plaintext, stored only as a keyed digest (HMAC-SHA256 over the user and the code, under a
//! domain-separation prefix), and checked in constant time.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use sha2::Sha256;

use crate::config::{self, ConfigError, Source};
use crate::domain::{OneTimeCode, StoredCode, UnixTime, UserId};

type HmacSha256 = Hmac<Sha256>;

/// Prefixes every digested message, so that no digest of ours is ever a link signature (whose
/// input is base64url, without a NUL) nor a digest of another version of this scheme.
const DOMAIN: &[u8] = b"mailconfirm/code/v1\0";

/// The digits a code has unless `CONFIRMATION_CODE_LENGTH` says otherwise.
pub const DEFAULT_CODE_DIGITS: usize = 6;

/// The shortest `CONFIRMATION_CODE_KEY` taken.
const MIN_KEY_LEN: usize = 32;

/// The key of the code digests. Without `Debug`: it is a secret.
#[derive(Clone)]
pub struct CodeKey {
    mac: HmacSha256,
}

impl CodeKey {
    /// `CONFIRMATION_CODE_KEY` (at least 32 characters) if set, else a key derived from
    /// `CONFIRMATION_SIGNING_KEY`, so there is no second secret to deploy.
    pub fn from_config(source: &dyn Source) -> Result<Self, ConfigError> {
        if let Some(own) = config::secret(source, "CONFIRMATION_CODE_KEY") {
            if own.expose_secret().len() < MIN_KEY_LEN {
                return Err(ConfigError::invalid("CONFIRMATION_CODE_KEY", "must be at least 32 characters"));
            }
            return Ok(Self::from_secret(own.expose_secret().as_bytes()));
        }
        let signing = config::secret(source, "CONFIRMATION_SIGNING_KEY").ok_or(ConfigError::Missing {
            name: "CONFIRMATION_SIGNING_KEY",
            meaning: "the secret that signs confirmation links (and, unless CONFIRMATION_CODE_KEY is set, keys the codes' digests)",
        })?;
        if signing.expose_secret().len() < MIN_KEY_LEN {
            return Err(ConfigError::invalid("CONFIRMATION_SIGNING_KEY", "must be at least 32 characters"));
        }
        // The derived key is the signing key's MAC of the domain string: a key of its own,
        // from which the signing key cannot be told.
        let mut derive = Self::from_secret(signing.expose_secret().as_bytes()).mac;
        derive.update(DOMAIN);
        Ok(Self::from_secret(&derive.finalize().into_bytes()))
    }

    // HMAC's key setup cannot fail: it takes keys of every length.
    #[allow(clippy::expect_used)]
    fn from_secret(secret: &[u8]) -> Self {
        Self { mac: HmacSha256::new_from_slice(secret).expect("HMAC accepts every key length") }
    }

    fn mac_of(&self, user_id: &UserId, code: &OneTimeCode) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(DOMAIN);
        mac.update(user_id.as_str().as_bytes());
        mac.update(b"\0");
        mac.update(code.as_str().as_bytes());
        mac
    }

    /// base64url(HMAC-SHA256(key, "mailconfirm/code/v1\0" || user_id || "\0" || code)).
    pub fn digest(&self, user_id: &UserId, code: &OneTimeCode) -> String {
        URL_SAFE_NO_PAD.encode(self.mac_of(user_id, code).finalize().into_bytes())
    }

    /// Whether `code` is the one whose digest is `stored`, compared in constant time.
    pub fn matches(&self, user_id: &UserId, code: &OneTimeCode, stored: &str) -> bool {
        match URL_SAFE_NO_PAD.decode(stored) {
            Ok(stored) => self.mac_of(user_id, code).verify_slice(&stored).is_ok(),
            Err(_) => false,
        }
    }
}

/// A code just drawn: its plaintext, for the mail only, and what the claim stores. Without
/// `Debug`, so that it cannot reach a log line by accident.
pub struct NewCode {
    plaintext: OneTimeCode,
    stored: StoredCode,
}

impl NewCode {
    pub fn plaintext(&self) -> &OneTimeCode {
        &self.plaintext
    }

    pub fn stored(&self) -> &StoredCode {
        &self.stored
    }
}

/// Draws the codes of the mails; owned by `Delivery`.
#[derive(Clone)]
pub struct CodeIssuer {
    /// `None` when `CONFIRMATION_CODES=false`: mails carry the link only.
    key: Option<CodeKey>,
    digits: usize,
    /// The link's lifetime: a code works exactly as long as the link of its mail.
    pub lifetime: Duration,
}

impl CodeIssuer {
    pub fn new(key: Option<CodeKey>, digits: usize, lifetime: Duration) -> Self {
        Self { key, digits: digits.clamp(OneTimeCode::MIN_DIGITS, OneTimeCode::MAX_DIGITS), lifetime }
    }

    /// `CONFIRMATION_CODES` (default true), `CONFIRMATION_CODE_LENGTH` (4–10, default 6) and the
    /// key ([`CodeKey::from_config`]); `lifetime` is the link's.
    pub fn from_config(source: &dyn Source, lifetime: Duration) -> Result<Self, ConfigError> {
        let enabled = config::flag(source, "CONFIRMATION_CODES", true)?;
        let digits = match config::optional(source, "CONFIRMATION_CODE_LENGTH") {
            None => DEFAULT_CODE_DIGITS,
            Some(value) => value
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| (OneTimeCode::MIN_DIGITS..=OneTimeCode::MAX_DIGITS).contains(n))
                .ok_or_else(|| ConfigError::invalid("CONFIRMATION_CODE_LENGTH", "expected 4 to 10 digits"))?,
        };
        let key = if enabled { Some(CodeKey::from_config(source)?) } else { None };
        Ok(Self::new(key, digits, lifetime))
    }

    pub fn enabled(&self) -> bool {
        self.key.is_some()
    }

    /// A fresh code for `user_id`'s next mail, valid for the link's lifetime from `now`; `None`
    /// when codes are off, or when the system has no randomness to give (the mail then goes
    /// with its link alone rather than with a guessable code).
    pub fn new_code(&self, user_id: &UserId, now: UnixTime) -> Option<NewCode> {
        let key = self.key.as_ref()?;
        let digits = match uniform_digits(self.digits) {
            Ok(digits) => digits,
            Err(err) => {
                tracing::warn!(error = %err, "no randomness for a one-time code; the mail carries its link only");
                return None;
            }
        };
        let plaintext = OneTimeCode::parse(&digits).ok()?;
        let stored = StoredCode { digest: key.digest(user_id, &plaintext), expires_at: now.plus(self.lifetime) };
        Some(NewCode { plaintext, stored })
    }
}

/// `digits` decimal digits, every one of the 10^digits values equally likely: 64 random bits
/// are drawn again while they fall in the incomplete last block of 10^digits (rejection
/// sampling), since taking them modulo 10^digits would favour the small values.
fn uniform_digits(digits: usize) -> Result<String, getrandom::Error> {
    let exponent = u32::try_from(digits).unwrap_or(u32::MAX).min(OneTimeCode::MAX_DIGITS as u32);
    let range = 10u64.pow(exponent);
    // The largest multiple of `range` that fits: values at or above it are drawn again.
    let zone = u64::MAX - (u64::MAX % range);
    loop {
        let mut bytes = [0u8; 8];
        getrandom::getrandom(&mut bytes)?;
        let value = u64::from_le_bytes(bytes);
        if value < zone {
            return Ok(format!("{:0width$}", value % range, width = exponent as usize));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    const SIGNING: &str = "unit-test-signing-key-0123456789abcdef";

    #[test]
    fn codes_have_the_configured_digits_and_are_stored_only_as_a_digest() {
        let issuer = CodeIssuer::from_config(
            &env(&[("CONFIRMATION_SIGNING_KEY", SIGNING), ("CONFIRMATION_CODE_LENGTH", "8")]),
            Duration::from_secs(600),
        )
        .unwrap();
        let user = UserId::parse("u-1").unwrap();
        let code = issuer.new_code(&user, UnixTime(1_000)).unwrap();
        assert_eq!(code.plaintext().as_str().len(), 8);
        assert_eq!(code.stored().expires_at, UnixTime(1_600));
        assert!(!code.stored().digest.contains(code.plaintext().as_str()));
        let key = CodeKey::from_config(&env(&[("CONFIRMATION_SIGNING_KEY", SIGNING)])).unwrap();
        assert!(key.matches(&user, code.plaintext(), &code.stored().digest));
        let other_user = UserId::parse("u-2").unwrap();
        assert!(!key.matches(&other_user, code.plaintext(), &code.stored().digest), "bound to its user");
        assert!(!key.matches(&user, code.plaintext(), "not base64url!"));
    }

    #[test]
    fn the_digest_is_the_documented_hmac_and_the_derived_key_is_not_the_signing_key() {
        let user = UserId::parse("u-1").unwrap();
        let code = OneTimeCode::parse("123456").unwrap();
        let own = "an-operators-own-code-key-0123456789abcdef";
        let key = CodeKey::from_config(&env(&[("CONFIRMATION_CODE_KEY", own)])).unwrap();
        let mut expected = HmacSha256::new_from_slice(own.as_bytes()).unwrap();
        expected.update(b"mailconfirm/code/v1\x00u-1\x00123456");
        assert_eq!(key.digest(&user, &code), URL_SAFE_NO_PAD.encode(expected.finalize().into_bytes()));
        let derived = CodeKey::from_config(&env(&[("CONFIRMATION_SIGNING_KEY", SIGNING)])).unwrap();
        let plain = CodeKey::from_secret(SIGNING.as_bytes());
        assert_ne!(derived.digest(&user, &code), plain.digest(&user, &code));
        assert!(CodeKey::from_config(&env(&[("CONFIRMATION_CODE_KEY", "short")])).is_err());
    }

    #[test]
    fn the_settings_are_checked_and_codes_can_be_switched_off() {
        for length in ["3", "11", "six", "0"] {
            let source = env(&[("CONFIRMATION_SIGNING_KEY", SIGNING), ("CONFIRMATION_CODE_LENGTH", length)]);
            let err = CodeIssuer::from_config(&source, Duration::from_secs(60)).err().unwrap();
            assert!(err.to_string().contains("CONFIRMATION_CODE_LENGTH"), "{length}: {err}");
        }
        let off = env(&[("CONFIRMATION_CODES", "false")]);
        let issuer = CodeIssuer::from_config(&off, Duration::from_secs(60)).unwrap();
        assert!(!issuer.enabled());
        assert!(issuer.new_code(&UserId::parse("u").unwrap(), UnixTime(0)).is_none());
    }

    #[test]
    fn every_digit_is_drawn_about_equally_often_with_leading_zeros_kept() {
        let mut counts = [0u32; 10];
        for _ in 0..2_000 {
            let code = uniform_digits(4).unwrap();
            assert_eq!(code.len(), 4);
            for b in code.bytes() {
                counts[usize::from(b - b'0')] += 1;
            }
        }
        // 8,000 digits: 800 expected each; 5 standard deviations is about ±135.
        assert!(counts.iter().all(|n| (650..=950).contains(n)), "{counts:?}");
        assert_eq!(uniform_digits(10).unwrap().len(), 10);
    }
}
