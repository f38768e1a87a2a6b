//! The capabilities the use cases depend on, one trait each, so a use case is given only what
//! it uses: the DynamoDB store implements the storage ports, SES the mailer, the system the
//! clock; the unit tests give in-memory fakes instead.

use async_trait::async_trait;

use crate::domain::{
    AddressTag, CodeState, ConfirmedBy, EmailAddress, SendRequirements, SignUp, StoredCode, Throttle, Throttled,
    UnixTime,
};
use crate::domain::{User, UserId};
use crate::mail::{ConfirmationMail, MailSendError};

/// Where the time comes from: the system's in a function, one the test sets in tests.
pub trait Clock: Send + Sync {
    fn now(&self) -> UnixTime;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixTime {
        UnixTime::now()
    }
}

/// Reads users, by id or by the address they own.
#[async_trait]
pub trait UserReader: Send + Sync {
    async fn get_user(&self, user_id: &UserId) -> anyhow::Result<Option<User>>;
    /// The user that owns an address, if any (one read).
    async fn find_user_id_by_email(&self, email: &EmailAddress) -> anyhow::Result<Option<UserId>>;
}

/// What creating a pending user found.
#[derive(Debug)]
// Built once per sign-up and matched at once: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum CreateOutcome {
    /// Created now (or by this same request, whose first answer was lost); with the claim of
    /// the sign-up mail when one was asked for.
    Created { user: User, claim: Option<Claim> },
    /// A user with this id was already there (a redelivered event, or a conflicting one).
    Existing(User),
    /// Another user owns the address.
    AddressTaken,
}

/// Why an address change was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressChangeRefusal {
    /// Another user owns the new address.
    AddressTaken,
    /// The user was confirmed or changed meanwhile.
    UserChanged,
}

/// Creates users and moves them to another address, together with the address look-ups.
#[async_trait]
pub trait UserRegistry: Send + Sync {
    /// Creates the user and its address look-up in one transaction; when `first_mail_until`
    /// is given, the sign-up mail's cooldown is claimed in the same write, with the digest of
    /// its one-time code when it has one.
    async fn create_pending_user(
        &self,
        sign_up: &SignUp,
        now: UnixTime,
        first_mail_until: Option<UnixTime>,
        code: Option<&StoredCode>,
    ) -> anyhow::Result<CreateOutcome>;

    /// Replaces a pending user's address in one transaction with its look-ups; links to the
    /// old address stop working and the cooldown starts afresh.
    async fn change_pending_address(
        &self,
        user: &User,
        new: &EmailAddress,
        now: UnixTime,
    ) -> anyhow::Result<Result<(), AddressChangeRefusal>>;
}

/// Which earlier sends a claim tolerates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimCondition {
    /// A resend: allowed once the previous cooldown is over.
    CooldownOver,
    /// The sign-up mail again: allowed only if no mail was ever accepted by the mail service and
    /// the earlier claim has lapsed, so a redelivered event sends nothing twice.
    FirstMailNotAccepted,
}

/// A claimed send: the user as it was just before, whose address and language the mail uses.
#[derive(Debug, Clone)]
pub struct Claim {
    pub user: User,
    pub until: UnixTime,
    /// Written with the claim: a retried write that meets it knows it is its own, and the
    /// release and the acceptance record touch only this claim.
    pub id: ClaimId,
    /// The code the claim replaced, with its attempts: a release puts it back, so a mail that
    /// did not go out leaves the code of the last one that did working.
    pub previous_code: Option<(StoredCode, u32)>,
}

/// A random id per claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimId(String);

impl ClaimId {
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        if getrandom::getrandom(&mut bytes).is_err() {
            // No randomness source: the time and a counter are unique enough within one user.
            static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            bytes = (nanos.as_nanos() ^ (u128::from(count) << 64)).to_le_bytes();
        }
        Self(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    pub fn from_stored(id: String) -> Self {
        Self(id)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Claims the right to send one mail, and gives it back when the mail did not go out.
#[async_trait]
pub trait SendClaims: Send + Sync {
    /// Decides and claims in one conditional write, which also stores the new mail's code
    /// (replacing any earlier one, its attempts counted afresh). `Err` carries the user the
    /// condition saw (`None`: no such user), for the caller to explain the refusal.
    async fn claim_send(
        &self,
        user_id: &UserId,
        now: UnixTime,
        until: UnixTime,
        condition: ClaimCondition,
        requirements: &SendRequirements<'_>,
        code: Option<&StoredCode>,
    ) -> anyhow::Result<Result<Claim, Option<User>>>;

    /// Restores the cooldown that was there before `claim`, unless another claim replaced it.
    async fn release_send(&self, claim: &Claim) -> anyhow::Result<()>;

    /// Records that the mail service accepted the claimed mail (`last_mail_sent_at`), so a
    /// redelivered sign-up knows its first mail went out.
    async fn record_accepted(&self, claim: &Claim, now: UnixTime) -> anyhow::Result<()>;
}

/// Confirms addresses.
#[async_trait]
pub trait Confirmations: Send + Sync {
    /// Confirms a pending user whose current address the link was sent to, in one conditional
    /// write that records how and from where (and ends the pending sign-up's time to live).
    /// `Err` carries the user the condition saw.
    async fn confirm(
        &self,
        user_id: &UserId,
        address: &AddressTag,
        now: UnixTime,
        by: &ConfirmedBy,
    ) -> anyhow::Result<Result<User, Option<User>>>;

    /// Confirms a pending user whatever address it has, without a link (the app's backend
    /// vouches for it), in one conditional write. `Err` carries the user the condition saw.
    async fn confirm_without_link(
        &self,
        user_id: &UserId,
        now: UnixTime,
        by: &ConfirmedBy,
    ) -> anyhow::Result<Result<User, Option<User>>>;

    /// Counts one attempt at a pending user's code in one conditional write, before the code
    /// is looked at: allowed while the code is there, unexpired and has had fewer than
    /// `max_attempts`. `Ok` carries the stored digest to compare; `Err` the state the
    /// condition saw (`None`: no such user).
    async fn count_code_attempt(
        &self,
        user_id: &UserId,
        now: UnixTime,
        max_attempts: u32,
    ) -> anyhow::Result<Result<CountedAttempt, Option<CodeState>>>;

    /// Confirms a pending user whose stored code digest is still `digest`, removing the code,
    /// in one conditional write. `Err` carries the user the condition saw.
    async fn confirm_with_code(
        &self,
        user_id: &UserId,
        digest: &str,
        now: UnixTime,
        by: &ConfirmedBy,
    ) -> anyhow::Result<Result<User, Option<User>>>;
}

/// An attempt at a code, counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountedAttempt {
    /// The stored digest of the mail's code.
    pub digest: String,
    /// Attempts counted on this code, this one included.
    pub attempts: u32,
}

/// What SES reported of one recipient that makes the address undeliverable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    /// `Bounced` or `Complained`.
    pub state: crate::domain::DeliveryState,
    /// SES's `bounceType` (`Permanent`), or none for a complaint.
    pub kind: Option<String>,
    /// SES's `bounceSubType`, or the complaint's `complaintFeedbackType`.
    pub sub_kind: Option<String>,
}

/// Records SES's feedback on users.
#[async_trait]
pub trait DeliveryFeedback: Send + Sync {
    /// Marks the user undeliverable in one conditional write, if `address` is still its address
    /// and nothing was recorded before; `false` when the write changed nothing.
    async fn mark_undeliverable(
        &self,
        user_id: &UserId,
        address: &EmailAddress,
        report: &DeliveryReport,
        now: UnixTime,
    ) -> anyhow::Result<bool>;
}

/// Frees the address look-up a removed user leaves behind (TTL removes the user item only).
#[async_trait]
pub trait AddressRelease: Send + Sync {
    /// Deletes the look-up unless another user owns the address now.
    async fn release_address(&self, user: &User) -> anyhow::Result<()>;
}

/// Erases users.
#[async_trait]
pub trait UserEraser: Send + Sync {
    /// Deletes the user and its address look-up in one transaction, while the user still has
    /// the address it had when read; `false` if it changed or went meanwhile (nothing deleted).
    async fn erase(&self, user: &User) -> anyhow::Result<bool>;
}

/// Counts requests against throttles.
#[async_trait]
pub trait RequestCounters: Send + Sync {
    /// Counts one request against one throttle in one conditional write; a refused request is
    /// not counted.
    async fn count_request(&self, throttle: &Throttle, now: UnixTime) -> anyhow::Result<Result<(), Throttled>>;
}

/// Hands a rendered mail to the mail service.
#[async_trait]
pub trait Mailer: Send + Sync {
    async fn send(&self, to: &EmailAddress, mail: &ConfirmationMail) -> Result<(), MailSendError>;
}
