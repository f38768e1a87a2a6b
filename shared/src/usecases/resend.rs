//! Resending the confirmation mail to a user named by id or address: at most once per
//! cooldown, decided and claimed in one conditional write.

use std::sync::Arc;

use crate::config::{self, ConfigError};
use crate::confirmation_code::NewCode;
use crate::wiring::Wiring;

use crate::domain::user::SendRefusal;
use crate::domain::{CooldownPolicy, Identity, Locale, SendRequirements, Throttle, UnixTime, UserId};
use crate::ports::{Claim, ClaimCondition, RequestCounters, SendClaims, UserReader};
use crate::usecases::delivery::Delivery;
use crate::usecases::throttle::{self, Limited};
use crate::usecases::{Failure, user_id_of};

/// A mail that went out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// Seconds until the next mail may be sent.
    pub cooldown_seconds: u64,
    pub locale: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum ResendError {
    #[error("e-mail is disabled")]
    MailDisabled,
    #[error("no such user")]
    UserNotFound,
    #[error("the address is already confirmed")]
    AlreadyConfirmed,
    #[error("a confirmation mail was sent less than a cooldown ago")]
    CooldownActive { remaining_seconds: u64 },
    #[error("mail to the address bounced or was reported as spam")]
    Undeliverable,
    #[error(transparent)]
    Failed(#[from] Failure),
}

impl Resend {
    /// `TABLE_NAME`, the mail settings and `COOLDOWN_SECONDS`.
    pub fn from_config(w: &Wiring<'_>) -> Result<Self, ConfigError> {
        let store = w.store()?;
        let delivery = Delivery::from_config(w.config, store.clone(), w.mailer()?)?;
        Ok(Self::new(store.clone(), store.clone(), store, delivery, config::cooldown(w.config)?))
    }
}

pub struct Resend {
    users: Arc<dyn UserReader>,
    claims: Arc<dyn SendClaims>,
    counters: Arc<dyn RequestCounters>,
    delivery: Delivery,
    cooldown: CooldownPolicy,
}

impl Resend {
    pub fn new(
        users: Arc<dyn UserReader>,
        claims: Arc<dyn SendClaims>,
        counters: Arc<dyn RequestCounters>,
        delivery: Delivery,
        cooldown: CooldownPolicy,
    ) -> Self {
        Self { users, claims, counters, delivery, cooldown }
    }

    pub fn mail_enabled(&self) -> bool {
        self.delivery.settings().enabled
    }

    /// Resends the confirmation mail, at most once per cooldown: one write, no read.
    #[tracing::instrument(name = "send confirmation mail", skip_all, fields(user_id = %user_id))]
    pub async fn resend(
        &self,
        user_id: &UserId,
        requested_locale: Option<&Locale>,
        now: UnixTime,
    ) -> Result<Sent, ResendError> {
        self.resend_command(user_id, requested_locale, now, None).await
    }

    /// [`Self::resend`] for a queue command with its idempotency key: refused (as a spent
    /// cooldown) when this command's mail was already accepted, however late it comes again.
    pub async fn resend_command(
        &self,
        user_id: &UserId,
        requested_locale: Option<&Locale>,
        now: UnixTime,
        command: Option<&str>,
    ) -> Result<Sent, ResendError> {
        if !self.mail_enabled() {
            return Err(ResendError::MailDisabled);
        }
        let requirements = SendRequirements { command, ..SendRequirements::default() };
        let code = self.delivery.new_code(user_id, now);
        let claim = self.claim(user_id, now, &requirements, code.as_ref()).await?;
        self.deliver(&claim, requested_locale, now, code.as_ref()).await
    }

    /// [`Self::resend`] for a request counted by `throttles`: the throttle writes and the claim
    /// go out together, one round trip.
    #[tracing::instrument(name = "send confirmation mail", skip_all, fields(user_id = %user_id))]
    pub async fn resend_counted(
        &self,
        user_id: &UserId,
        requested_locale: Option<&Locale>,
        now: UnixTime,
        throttles: &[Throttle],
    ) -> Result<Sent, Limited<ResendError>> {
        if !self.mail_enabled() {
            return Err(Limited::Refused(ResendError::MailDisabled));
        }
        let none = SendRequirements::default();
        let code = self.delivery.new_code(user_id, now);
        let claim = self.claim(user_id, now, &none, code.as_ref());
        let claim =
            throttle::claim_counted(self.counters.as_ref(), self.claims.as_ref(), throttles, now, claim).await?;
        self.deliver(&claim, requested_locale, now, code.as_ref()).await.map_err(Limited::Refused)
    }

    /// Resends to a user named by address or id: one read to find the user when named by
    /// address, then the same round trip as [`Self::resend_counted`]. An unknown user's request
    /// is counted by the same throttles.
    pub async fn resend_to(
        &self,
        identity: &Identity,
        requested_locale: Option<&Locale>,
        now: UnixTime,
        throttles: &[Throttle],
    ) -> Result<Sent, Limited<ResendError>> {
        if !self.mail_enabled() {
            return Err(Limited::Refused(ResendError::MailDisabled));
        }
        match user_id_of(self.users.as_ref(), identity).await.map_err(|failure| Limited::Refused(failure.into()))? {
            Some(user_id) => self.resend_counted(&user_id, requested_locale, now, throttles).await,
            None => {
                self.count_only(throttles, now).await?;
                Err(Limited::Refused(ResendError::UserNotFound))
            }
        }
    }

    /// [`Self::resend`] to a user named by id or address, for a trusted caller (the sign-up
    /// queue's command) that no throttle counts: one read when named by address, then the claim.
    pub async fn resend_to_unthrottled(
        &self,
        identity: &Identity,
        requested_locale: Option<&Locale>,
        now: UnixTime,
        command: Option<&str>,
    ) -> Result<Sent, ResendError> {
        if !self.mail_enabled() {
            return Err(ResendError::MailDisabled);
        }
        match user_id_of(self.users.as_ref(), identity).await? {
            Some(user_id) => self.resend_command(&user_id, requested_locale, now, command).await,
            None => Err(ResendError::UserNotFound),
        }
    }

    /// Counts a request that is refused before any claim, so that it is throttled as one that
    /// reached the claim would be.
    pub async fn count_only(&self, throttles: &[Throttle], now: UnixTime) -> Result<(), Limited<ResendError>> {
        Ok(throttle::count_request(self.counters.as_ref(), throttles, now).await?)
    }

    async fn claim(
        &self,
        user_id: &UserId,
        now: UnixTime,
        requirements: &SendRequirements<'_>,
        code: Option<&NewCode>,
    ) -> Result<Claim, ResendError> {
        let until = self.cooldown.claim_until(now);
        self.claims
            .claim_send(user_id, now, until, ClaimCondition::CooldownOver, requirements, code.map(NewCode::stored))
            .await
            .map_err(Failure::Storage)?
            .map_err(|seen| match crate::usecases::explain_refusal(seen.as_ref(), requirements, now) {
                SendRefusal::UserNotFound => ResendError::UserNotFound,
                SendRefusal::AlreadyConfirmed => ResendError::AlreadyConfirmed,
                SendRefusal::CooldownActive { remaining_seconds } => ResendError::CooldownActive { remaining_seconds },
                SendRefusal::Undeliverable => ResendError::Undeliverable,
                // Only asked of sends with requirements, which this one has none of.
                SendRefusal::ClientMismatch | SendRefusal::AddressMismatch => ResendError::UserNotFound,
            })
    }

    async fn deliver(
        &self,
        claim: &Claim,
        requested_locale: Option<&Locale>,
        now: UnixTime,
        code: Option<&NewCode>,
    ) -> Result<Sent, ResendError> {
        let locale = self.delivery.deliver(claim, requested_locale, now, code, None).await.map_err(Failure::from)?;
        Ok(Sent { cooldown_seconds: self.cooldown.period.as_secs(), locale })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::{EmailAddress, UserStatus};
    use crate::usecases::fakes::{Fakes, pending_user};

    const MINUTE: CooldownPolicy = CooldownPolicy { period: Duration::from_secs(60) };

    fn resend(fakes: &Fakes) -> Resend {
        Resend::new(fakes.store.clone(), fakes.store.clone(), fakes.store.clone(), fakes.delivery(), MINUTE)
    }

    #[tokio::test]
    async fn a_resend_mails_once_per_cooldown_by_the_clock_it_is_given() {
        let fakes = Fakes::new();
        fakes.store.insert(pending_user("u-1", "ada@example.org"));
        let resend = resend(&fakes);
        let user = UserId::parse("u-1").unwrap();
        let sent = resend.resend(&user, None, UnixTime(1_000)).await.unwrap();
        assert_eq!(sent.cooldown_seconds, 60);
        let refused = resend.resend(&user, None, UnixTime(1_059)).await.unwrap_err();
        assert!(matches!(refused, ResendError::CooldownActive { remaining_seconds: 1 }), "{refused:?}");
        resend.resend(&user, None, UnixTime(1_060)).await.unwrap();
        assert_eq!(fakes.mailer.sent_to(), ["ada@example.org", "ada@example.org"]);
    }

    #[tokio::test]
    async fn a_mail_that_fails_gives_the_claim_back() {
        let fakes = Fakes::new();
        fakes.store.insert(pending_user("u-1", "ada@example.org"));
        fakes.mailer.fail_next();
        let resend = resend(&fakes);
        let user = UserId::parse("u-1").unwrap();
        let failed = resend.resend(&user, None, UnixTime(1_000)).await.unwrap_err();
        assert!(matches!(failed, ResendError::Failed(Failure::Delivery(_))), "{failed:?}");
        assert_eq!(fakes.store.user("u-1").unwrap().cooldown_until, None);
        resend.resend(&user, None, UnixTime(1_001)).await.unwrap();
        assert_eq!(fakes.mailer.sent_to(), ["ada@example.org"]);
    }

    #[tokio::test]
    async fn unknown_and_confirmed_users_are_refused_without_mail() {
        let fakes = Fakes::new();
        let mut confirmed = pending_user("u-2", "grace@example.org");
        confirmed.status = UserStatus::Enabled;
        fakes.store.insert(confirmed);
        let resend = resend(&fakes);
        let unknown = Identity::Email(EmailAddress::parse("nobody@example.org").unwrap());
        assert!(matches!(
            resend.resend_to(&unknown, None, UnixTime(0), &[]).await,
            Err(Limited::Refused(ResendError::UserNotFound))
        ));
        let by_address = Identity::Email(EmailAddress::parse("GRACE@example.org").unwrap());
        assert!(matches!(
            resend.resend_to(&by_address, None, UnixTime(0), &[]).await,
            Err(Limited::Refused(ResendError::AlreadyConfirmed))
        ));
        assert!(fakes.mailer.sent_to().is_empty());
    }

    fn per_identity(identity: &str) -> [Throttle; 1] {
        let rule = crate::domain::ThrottleRule { name: "identity", limit: 2, window: Duration::from_secs(3600) };
        [rule.counting(identity)]
    }

    #[tokio::test]
    async fn a_throttled_request_gives_its_claim_back_and_sends_nothing() {
        let fakes = Fakes::new();
        fakes.store.insert(pending_user("u-1", "ada@example.org"));
        let resend = resend(&fakes);
        let user = UserId::parse("u-1").unwrap();
        resend.resend_counted(&user, None, UnixTime(0), &per_identity("u-1")).await.unwrap();
        // The cooldown refuses the second request, yet the throttle counted it.
        let cooled = resend.resend_counted(&user, None, UnixTime(10), &per_identity("u-1")).await.unwrap_err();
        assert!(matches!(cooled, Limited::Refused(ResendError::CooldownActive { .. })), "{cooled:?}");
        let throttled = resend.resend_counted(&user, None, UnixTime(100), &per_identity("u-1")).await.unwrap_err();
        let Limited::Throttled(throttled) = throttled else { panic!("{throttled:?}") };
        assert_eq!(throttled.retry_after_seconds(UnixTime(100)), 3500);
        assert_eq!(fakes.mailer.sent_to(), ["ada@example.org"]);
        assert_eq!(fakes.store.user("u-1").unwrap().cooldown_until, Some(UnixTime(60)), "the claim was given back");
    }

    #[tokio::test]
    async fn unknown_and_known_identities_are_counted_alike() {
        let fakes = Fakes::new();
        fakes.store.insert(pending_user("u-1", "ada@example.org"));
        let resend = resend(&fakes);
        for identity in ["ada@example.org", "nobody@example.org"] {
            let named = Identity::Email(EmailAddress::parse(identity).unwrap());
            let mut answers = Vec::new();
            for t in 0..3 {
                let result = resend.resend_to(&named, None, UnixTime(t), &per_identity(identity)).await;
                answers.push(matches!(result, Err(Limited::Throttled(_))));
            }
            assert_eq!(answers, [false, false, true], "{identity}");
        }
    }

    #[tokio::test]
    async fn a_storage_failure_is_ours_and_sends_nothing() {
        let fakes = Fakes::new();
        fakes.store.insert(pending_user("u-1", "ada@example.org"));
        fakes.store.fail_next();
        let failed = resend(&fakes).resend(&UserId::parse("u-1").unwrap(), None, UnixTime(0)).await.unwrap_err();
        assert!(matches!(failed, ResendError::Failed(Failure::Storage(_))), "{failed:?}");
        assert!(fakes.mailer.sent_to().is_empty());
    }
}
