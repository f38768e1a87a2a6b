//! In-memory fakes of the ports, for unit tests of the use cases. The fake store applies the
//! same pure rule (`SendRefusal::decide`) that the DynamoDB condition is tested against.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::anyhow;
use async_trait::async_trait;

use crate::confirmation_code::{CodeIssuer, CodeKey};
use crate::domain::DeliveryState;
use crate::domain::user::SendRefusal;
use crate::domain::{
    AddressTag, CodeRecord, CodeRefusal, CodeState, EmailAddress, RequestLog, SendRequirements, SignUp, StoredCode,
    Throttle, Throttled, UnixTime, User, UserId, UserStatus,
};
use crate::link_token::LinkIssuer;
use crate::mail::{ConfirmationMail, MailSendError, MailSettings};
use crate::ports::{
    AddressChangeRefusal, Claim, ClaimCondition, ClaimId, Confirmations, CountedAttempt, CreateOutcome, Mailer,
    RequestCounters, SendClaims, UserReader, UserRegistry,
};
use crate::usecases::delivery::Delivery;

pub fn pending_user(id: &str, email: &str) -> User {
    User::pending(UserId::parse(id).unwrap(), EmailAddress::parse(email).unwrap(), UnixTime(0))
}

#[derive(Default)]
pub struct MemoryStore {
    users: Mutex<HashMap<String, User>>,
    counters: Mutex<HashMap<String, RequestLog>>,
    /// Each user's code digest and the attempts counted on it, as the user item holds them.
    codes: Mutex<HashMap<String, (StoredCode, u32)>>,
    fail_next: AtomicBool,
}

impl MemoryStore {
    pub fn insert(&self, user: User) {
        self.users.lock().unwrap().insert(user.id.as_str().to_owned(), user);
    }

    pub fn user(&self, id: &str) -> Option<User> {
        self.users.lock().unwrap().get(id).cloned()
    }

    /// The attempts counted on the user's current code; `None` when it has no code.
    pub fn code_attempts(&self, id: &str) -> Option<u32> {
        self.codes.lock().unwrap().get(id).map(|(_, attempts)| *attempts)
    }

    fn set_code(&self, id: &UserId, code: Option<&StoredCode>) {
        let mut codes = self.codes.lock().unwrap();
        match code {
            Some(code) => codes.insert(id.as_str().to_owned(), (code.clone(), 0)),
            None => codes.remove(id.as_str()),
        };
    }

    /// The next call fails as an unreachable table would.
    pub fn fail_next(&self) {
        self.fail_next.store(true, Ordering::SeqCst);
    }

    fn check(&self) -> anyhow::Result<()> {
        if self.fail_next.swap(false, Ordering::SeqCst) { Err(anyhow!("the table is unreachable")) } else { Ok(()) }
    }
}

#[async_trait]
impl UserReader for MemoryStore {
    async fn get_user(&self, user_id: &UserId) -> anyhow::Result<Option<User>> {
        self.check()?;
        Ok(self.user(user_id.as_str()))
    }

    async fn find_user_id_by_email(&self, email: &EmailAddress) -> anyhow::Result<Option<UserId>> {
        self.check()?;
        let users = self.users.lock().unwrap();
        Ok(users.values().find(|user| user.email.normalized() == email.normalized()).map(|user| user.id.clone()))
    }
}

#[async_trait]
impl UserRegistry for MemoryStore {
    async fn create_pending_user(
        &self,
        sign_up: &SignUp,
        now: UnixTime,
        first_mail_until: Option<UnixTime>,
        code: Option<&StoredCode>,
    ) -> anyhow::Result<CreateOutcome> {
        self.check()?;
        let mut users = self.users.lock().unwrap();
        if let Some(existing) = users.get(sign_up.user_id.as_str()) {
            return Ok(CreateOutcome::Existing(existing.clone()));
        }
        if users.values().any(|user| user.email.normalized() == sign_up.email.normalized()) {
            return Ok(CreateOutcome::AddressTaken);
        }
        let user = User {
            id: sign_up.user_id.clone(),
            email: sign_up.email.clone(),
            status: UserStatus::EmailConfirmationPending,
            locale: sign_up.locale.clone(),
            client_id: sign_up.client_id.clone(),
            created_at: now,
            confirmed_at: None,
            cooldown_until: first_mail_until,
            last_mail_sent_at: None,
            delivery: DeliveryState::Ok,
        };
        users.insert(user.id.as_str().to_owned(), user.clone());
        self.set_code(&user.id, first_mail_until.and(code));
        let claim = first_mail_until.map(|until| Claim {
            user: User { cooldown_until: None, ..user.clone() },
            until,
            id: ClaimId::random(),
            previous_code: None,
        });
        Ok(CreateOutcome::Created { user, claim })
    }

    async fn change_pending_address(
        &self,
        user: &User,
        new: &EmailAddress,
        _now: UnixTime,
    ) -> anyhow::Result<Result<(), AddressChangeRefusal>> {
        self.check()?;
        let mut users = self.users.lock().unwrap();
        if users.values().any(|other| other.id != user.id && other.email.normalized() == new.normalized()) {
            return Ok(Err(AddressChangeRefusal::AddressTaken));
        }
        match users.get_mut(user.id.as_str()) {
            Some(stored) if stored.status == UserStatus::EmailConfirmationPending && stored.email == user.email => {
                stored.email = new.clone();
                stored.cooldown_until = None;
                self.set_code(&user.id, None);
                Ok(Ok(()))
            }
            _ => Ok(Err(AddressChangeRefusal::UserChanged)),
        }
    }
}

#[async_trait]
impl SendClaims for MemoryStore {
    async fn claim_send(
        &self,
        user_id: &UserId,
        now: UnixTime,
        until: UnixTime,
        condition: ClaimCondition,
        requirements: &SendRequirements<'_>,
        code: Option<&StoredCode>,
    ) -> anyhow::Result<Result<Claim, Option<User>>> {
        self.check()?;
        let mut users = self.users.lock().unwrap();
        let Some(user) = users.get_mut(user_id.as_str()) else { return Ok(Err(None)) };
        let allowed = match condition {
            ClaimCondition::CooldownOver => SendRefusal::decide(Some(user), requirements, now).is_ok(),
            ClaimCondition::FirstMailNotAccepted => {
                user.last_mail_sent_at.is_none() && SendRefusal::decide(Some(user), requirements, now).is_ok()
            }
        };
        if !allowed {
            return Ok(Err(Some(user.clone())));
        }
        let before = user.clone();
        user.cooldown_until = Some(until);
        let previous_code = self.codes.lock().unwrap().get(user_id.as_str()).cloned();
        self.set_code(user_id, code);
        Ok(Ok(Claim { user: before, until, id: ClaimId::random(), previous_code }))
    }

    async fn release_send(&self, claim: &Claim) -> anyhow::Result<()> {
        self.check()?;
        let mut users = self.users.lock().unwrap();
        if let Some(user) = users.get_mut(claim.user.id.as_str())
            && user.cooldown_until == Some(claim.until)
        {
            user.cooldown_until = claim.user.cooldown_until;
            let mut codes = self.codes.lock().unwrap();
            match &claim.previous_code {
                Some(previous) => codes.insert(user.id.as_str().to_owned(), previous.clone()),
                None => codes.remove(user.id.as_str()),
            };
        }
        Ok(())
    }

    async fn record_accepted(&self, claim: &Claim, now: UnixTime) -> anyhow::Result<()> {
        self.check()?;
        let mut users = self.users.lock().unwrap();
        if let Some(user) = users.get_mut(claim.user.id.as_str())
            && user.cooldown_until == Some(claim.until)
        {
            user.last_mail_sent_at = Some(now);
        }
        Ok(())
    }
}

#[async_trait]
impl Confirmations for MemoryStore {
    async fn confirm(
        &self,
        user_id: &UserId,
        address: &AddressTag,
        now: UnixTime,
        _by: &crate::domain::ConfirmedBy,
    ) -> anyhow::Result<Result<User, Option<User>>> {
        self.check()?;
        let mut users = self.users.lock().unwrap();
        let Some(user) = users.get_mut(user_id.as_str()) else { return Ok(Err(None)) };
        if user.status != UserStatus::EmailConfirmationPending || user.email.tag() != *address {
            return Ok(Err(Some(user.clone())));
        }
        user.status = UserStatus::Enabled;
        user.confirmed_at = Some(now);
        self.set_code(user_id, None);
        Ok(Ok(user.clone()))
    }

    async fn confirm_without_link(
        &self,
        user_id: &UserId,
        now: UnixTime,
        _by: &crate::domain::ConfirmedBy,
    ) -> anyhow::Result<Result<User, Option<User>>> {
        self.check()?;
        let mut users = self.users.lock().unwrap();
        let Some(user) = users.get_mut(user_id.as_str()) else { return Ok(Err(None)) };
        if user.status != UserStatus::EmailConfirmationPending {
            return Ok(Err(Some(user.clone())));
        }
        user.status = UserStatus::Enabled;
        user.confirmed_at = Some(now);
        self.set_code(user_id, None);
        Ok(Ok(user.clone()))
    }

    async fn count_code_attempt(
        &self,
        user_id: &UserId,
        now: UnixTime,
        max_attempts: u32,
    ) -> anyhow::Result<Result<CountedAttempt, Option<CodeState>>> {
        self.check()?;
        // Both locks held, users first as everywhere: the check and the count are one step.
        let users = self.users.lock().unwrap();
        let Some(user) = users.get(user_id.as_str()) else { return Ok(Err(None)) };
        let mut codes = self.codes.lock().unwrap();
        let entry = codes.get_mut(user_id.as_str());
        let record =
            entry.as_ref().map(|(code, attempts)| CodeRecord { expires_at: code.expires_at, attempts: *attempts });
        let state = CodeState { status: user.status, code: record };
        let Some((code, attempts)) = entry.filter(|_| CodeRefusal::allows(&state, now, max_attempts)) else {
            return Ok(Err(Some(state)));
        };
        *attempts += 1;
        Ok(Ok(CountedAttempt { digest: code.digest.clone(), attempts: *attempts }))
    }

    async fn confirm_with_code(
        &self,
        user_id: &UserId,
        digest: &str,
        now: UnixTime,
        by: &crate::domain::ConfirmedBy,
    ) -> anyhow::Result<Result<User, Option<User>>> {
        let current = self.codes.lock().unwrap().get(user_id.as_str()).map(|(code, _)| code.digest.clone());
        if current.as_deref() != Some(digest) {
            self.check()?;
            return Ok(Err(self.user(user_id.as_str())));
        }
        self.confirm_without_link(user_id, now, by).await
    }
}

#[async_trait]
impl crate::ports::UserEraser for MemoryStore {
    async fn erase(&self, user: &User) -> anyhow::Result<bool> {
        self.check()?;
        let mut users = self.users.lock().unwrap();
        match users.get(user.id.as_str()) {
            Some(stored) if stored.email.normalized() == user.email.normalized() => {
                users.remove(user.id.as_str());
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

#[async_trait]
impl RequestCounters for MemoryStore {
    async fn count_request(&self, throttle: &Throttle, now: UnixTime) -> anyhow::Result<Result<(), Throttled>> {
        self.check()?;
        let mut logs = self.counters.lock().unwrap();
        Ok(logs.entry(throttle.key()).or_default().count(&throttle.rule, now))
    }
}

#[derive(Default)]
pub struct MemoryMailer {
    sent: Mutex<Vec<(String, ConfirmationMail)>>,
    fail_next: AtomicBool,
    refusals_for_rate: AtomicUsize,
}

impl MemoryMailer {
    /// The next `times` sends are refused as SES refuses them over the account's rate.
    pub fn refuse_for_rate(&self, times: usize) {
        self.refusals_for_rate.store(times, Ordering::SeqCst);
    }

    /// The text part of every mail sent, oldest first.
    pub fn texts(&self) -> Vec<String> {
        self.sent.lock().unwrap().iter().map(|(_, mail)| mail.text.clone()).collect()
    }

    /// The one-time code of the newest mail, read from its text as a person reads it.
    pub fn latest_code(&self) -> Option<String> {
        let text = self.texts().pop()?;
        let line = text.lines().find(|line| line.starts_with("Or enter this code"))?;
        Some(line.rsplit(' ').next()?.to_owned())
    }

    pub fn sent_to(&self) -> Vec<String> {
        self.sent.lock().unwrap().iter().map(|(to, _)| to.clone()).collect()
    }

    pub fn fail_next(&self) {
        self.fail_next.store(true, Ordering::SeqCst);
    }
}

#[async_trait]
impl Mailer for MemoryMailer {
    async fn send(&self, to: &EmailAddress, mail: &ConfirmationMail) -> Result<(), MailSendError> {
        if self.fail_next.swap(false, Ordering::SeqCst) {
            return Err(MailSendError::from(anyhow!("SES refused the mail")));
        }
        let refusals = self.refusals_for_rate.load(Ordering::SeqCst);
        if refusals > 0 {
            self.refusals_for_rate.store(refusals - 1, Ordering::SeqCst);
            return Err(MailSendError::refused_for_rate(anyhow!("Maximum sending rate exceeded.")));
        }
        self.sent.lock().unwrap().push((to.normalized().to_owned(), mail.clone()));
        Ok(())
    }
}

pub struct Fakes {
    pub store: Arc<MemoryStore>,
    pub mailer: Arc<MemoryMailer>,
}

impl Fakes {
    pub fn new() -> Self {
        Self { store: Arc::default(), mailer: Arc::default() }
    }

    pub fn env() -> HashMap<String, String> {
        [
            ("PUBLIC_BASE_URL", "https://confirm.example.com"),
            ("SENDER_ADDRESS", "no-reply@example.com"),
            ("CONFIRMATION_SIGNING_KEY", "unit-test-signing-key-0123456789abcdef"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    pub fn delivery(&self) -> Delivery {
        self.delivery_through(self.mailer.clone())
    }

    /// A delivery whose mails go through `mailer` (e.g. a paced one around [`Self::mailer`]).
    pub fn delivery_through(&self, mailer: Arc<dyn Mailer>) -> Delivery {
        let env = Self::env();
        let links = LinkIssuer::from_config(&env).unwrap();
        let codes = CodeIssuer::from_config(&env, links.lifetime).unwrap();
        Delivery::new(self.store.clone(), mailer, MailSettings::from_config(&env).unwrap(), links, codes)
    }

    /// The key the fakes' codes are digested with.
    pub fn code_key() -> CodeKey {
        CodeKey::from_config(&Self::env()).unwrap()
    }
}
