//! One-time codes beside the link: the code a person types, what the store keeps of it (a keyed
//! digest, its end and the attempts counted), and the pure decision on a refused attempt.

use super::{UnixTime, UserStatus};

/// The most attempts one code allows; the attempt that would be one more is refused unread.
pub const MAX_CODE_ATTEMPTS: u32 = 5;

/// The digits of a one-time code, 4 to 10 of them. Deliberately without `Debug` or `Display`:
/// the plaintext is only ever put into a mail, never into a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct OneTimeCode(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a code is 4 to 10 digits")]
pub struct InvalidCode;

impl OneTimeCode {
    pub const MIN_DIGITS: usize = 4;
    pub const MAX_DIGITS: usize = 10;

    /// `^[0-9]{4,10}$`, nothing around it.
    pub fn parse(input: &str) -> Result<Self, InvalidCode> {
        let digits =
            (Self::MIN_DIGITS..=Self::MAX_DIGITS).contains(&input.len()) && input.bytes().all(|b| b.is_ascii_digit());
        if digits { Ok(Self(input.to_owned())) } else { Err(InvalidCode) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What the store writes with a claim: the code's keyed digest and when it stops working.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCode {
    /// base64url of the HMAC (see `confirmation_code`), never the code itself.
    pub digest: String,
    pub expires_at: UnixTime,
}

/// A user's code as an attempt's condition saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeState {
    pub status: UserStatus,
    /// `None`: no code is stored (mail without codes, or used up by a confirmation).
    pub code: Option<CodeRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRecord {
    pub expires_at: UnixTime,
    /// Attempts counted so far, this one included when it was counted.
    pub attempts: u32,
}

/// Why an attempt was not even counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeRefusal {
    UserNotFound,
    AlreadyConfirmed,
    NoCode,
    Expired,
    TooManyAttempts,
}

impl CodeRefusal {
    /// The reason an attempt's condition failed, from the user it saw (`None`: no user). The
    /// same order as the condition's terms: user, status, code, time, attempts.
    pub fn explain(seen: Option<&CodeState>, now: UnixTime, max_attempts: u32) -> Self {
        let Some(seen) = seen else { return CodeRefusal::UserNotFound };
        if seen.status != UserStatus::EmailConfirmationPending {
            return CodeRefusal::AlreadyConfirmed;
        }
        match &seen.code {
            None => CodeRefusal::NoCode,
            Some(code) if code.expires_at < now => CodeRefusal::Expired,
            Some(code) if code.attempts >= max_attempts => CodeRefusal::TooManyAttempts,
            // The condition failed on a state that allows the attempt: only a code replaced or
            // removed in between does that; this one is no longer the mail's.
            Some(_) => CodeRefusal::NoCode,
        }
    }

    /// Whether the condition allows an attempt on `state` (the fakes use it as the store's rule).
    pub fn allows(state: &CodeState, now: UnixTime, max_attempts: u32) -> bool {
        state.status == UserStatus::EmailConfirmationPending
            && state.code.as_ref().is_some_and(|code| code.expires_at >= now && code.attempts < max_attempts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_is_four_to_ten_ascii_digits_and_nothing_else() {
        for good in ["0000", "123456", "0123456789"] {
            assert_eq!(OneTimeCode::parse(good).unwrap().as_str(), good);
        }
        for bad in ["", "123", "12345678901", " 123456", "123456 ", "12a456", "١٢٣٤٥٦", "+12345", "12.456"] {
            assert!(OneTimeCode::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_refusal_is_explained_in_the_conditions_order() {
        let now = UnixTime(100);
        let pending = |code: Option<CodeRecord>| CodeState { status: UserStatus::EmailConfirmationPending, code };
        let record = |expires_at, attempts| Some(CodeRecord { expires_at: UnixTime(expires_at), attempts });
        assert_eq!(CodeRefusal::explain(None, now, 5), CodeRefusal::UserNotFound);
        let confirmed = CodeState { status: UserStatus::Enabled, code: record(200, 0) };
        assert_eq!(CodeRefusal::explain(Some(&confirmed), now, 5), CodeRefusal::AlreadyConfirmed);
        assert_eq!(CodeRefusal::explain(Some(&pending(None)), now, 5), CodeRefusal::NoCode);
        assert_eq!(CodeRefusal::explain(Some(&pending(record(99, 5))), now, 5), CodeRefusal::Expired);
        assert_eq!(CodeRefusal::explain(Some(&pending(record(100, 5))), now, 5), CodeRefusal::TooManyAttempts);
        assert!(CodeRefusal::allows(&pending(record(100, 4)), now, 5), "valid through its last second");
        assert!(!CodeRefusal::allows(&pending(record(100, 5)), now, 5));
        assert!(!CodeRefusal::allows(&pending(record(99, 0)), now, 5));
    }
}
