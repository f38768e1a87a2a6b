//! In-memory fakes of the ports, for unit tests of the use cases. The fake store applies the
//! same pure rule (`SendRefusal::decide`) that the DynamoDB condition is tested against.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::anyhow;
use async_trait::async_trait;

use crate::domain::DeliveryState;
use crate::domain::user::SendRefusal;
use crate::domain::{
    AddressTag, EmailAddress, RequestLog, SendRequirements, SignUp, Throttle, Throttled, UnixTime, User, UserId,
    UserStatus,
};
use crate::link_token::LinkIssuer;
use crate::mail::{ConfirmationMail, MailSendError, MailSettings};
use crate::ports::{
    AddressChangeRefusal, Claim, ClaimCondition, ClaimId, Confirmations, CreateOutcome, Mailer, RequestCounters,
    SendClaims, UserReader, UserRegistry,
};
use crate::usecases::delivery::Delivery;

pub fn pending_user(id: &str, email: &str) -> User {
    User::pending(UserId::parse(id).unwrap(), EmailAddress::parse(email).unwrap(), UnixTime(0))
}

#[derive(Default)]
pub struct MemoryStore {
    users: Mutex<HashMap<String, User>>,
    counters: Mutex<HashMap<String, RequestLog>>,
    fail_next: AtomicBool,
}

impl MemoryStore {
    pub fn insert(&self, user: User) {
        self.users.lock().unwrap().insert(user.id.as_str().to_owned(), user);
    }

    pub fn user(&self, id: &str) -> Option<User> {
        self.users.lock().unwrap().get(id).cloned()
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
        let claim = first_mail_until.map(|until| Claim {
            user: User { cooldown_until: None, ..user.clone() },
            until,
            id: ClaimId::random(),
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
        Ok(Ok(Claim { user: before, until, id: ClaimId::random() }))
    }

    async fn release_send(&self, claim: &Claim) -> anyhow::Result<()> {
        self.check()?;
        let mut users = self.users.lock().unwrap();
        if let Some(user) = users.get_mut(claim.user.id.as_str())
            && user.cooldown_until == Some(claim.until)
        {
            user.cooldown_until = claim.user.cooldown_until;
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
        Ok(Ok(user.clone()))
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
        Delivery::new(
            self.store.clone(),
            mailer,
            MailSettings::from_config(&env).unwrap(),
            LinkIssuer::from_config(&env).unwrap(),
        )
    }
}
