//! Confirming an address with the one-time code of its mail, which the app posts for its
//! signed-in user: the throttles, then one write that counts the attempt before the code is
//! compared (so however many guesses come at once, at most `MAX_CODE_ATTEMPTS` are compared),
//! then, for the right code, one write that confirms and removes the code.

use std::sync::Arc;

use crate::config::{self, ConfigError, Source};
use crate::confirmation_code::CodeKey;
use crate::domain::{
    CodeRefusal, ConfirmedBy, MAX_CODE_ATTEMPTS, OneTimeCode, Throttle, ThrottleRule, Throttled, UnixTime, User,
    UserId, UserStatus,
};
use crate::ports::{Confirmations, RequestCounters};
use crate::usecases::Failure;
use crate::usecases::throttle::{self, ThrottleError};
use crate::wiring::Wiring;

#[derive(Debug, thiserror::Error)]
pub enum ConfirmCodeError {
    #[error("the code is not the mail's")]
    WrongCode { attempts_left: u32 },
    /// The code had all its attempts: only a new mail (a new code) helps.
    #[error("the code has had all its attempts")]
    TooManyAttempts,
    #[error("the code has expired")]
    Expired,
    /// No code is stored: mail without codes, or one replaced or used meanwhile.
    #[error("the user has no code")]
    NoCode,
    #[error("the address is already confirmed")]
    AlreadyConfirmed,
    #[error("no such user")]
    UserNotFound,
    #[error("the request is over a limit")]
    Throttled(Throttled),
    #[error(transparent)]
    Failed(#[from] Failure),
}

impl From<ThrottleError> for ConfirmCodeError {
    fn from(err: ThrottleError) -> Self {
        match err {
            ThrottleError::Throttled(throttled) => ConfirmCodeError::Throttled(throttled),
            ThrottleError::Failed(failure) => ConfirmCodeError::Failed(failure),
        }
    }
}

impl From<CodeRefusal> for ConfirmCodeError {
    fn from(refusal: CodeRefusal) -> Self {
        match refusal {
            CodeRefusal::UserNotFound => ConfirmCodeError::UserNotFound,
            CodeRefusal::AlreadyConfirmed => ConfirmCodeError::AlreadyConfirmed,
            CodeRefusal::NoCode => ConfirmCodeError::NoCode,
            CodeRefusal::Expired => ConfirmCodeError::Expired,
            CodeRefusal::TooManyAttempts => ConfirmCodeError::TooManyAttempts,
        }
    }
}

/// The throttles of the code route, counters of their own (a typo must not cost the user a
/// resend): per client address and per user, sliding logs as every throttle here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeThrottles {
    pub per_ip: ThrottleRule,
    pub per_user: ThrottleRule,
}

impl CodeThrottles {
    /// `CONFIRMATION_CODE_IP_LIMIT`/`_WINDOW_SECONDS` (30 per hour) and
    /// `CONFIRMATION_CODE_USER_LIMIT`/`_WINDOW_SECONDS` (10 per hour).
    pub fn from_config(source: &dyn Source) -> Result<Self, ConfigError> {
        Ok(Self {
            per_ip: config::throttle(
                source,
                "code-ip",
                ["CONFIRMATION_CODE_IP_LIMIT", "CONFIRMATION_CODE_IP_WINDOW_SECONDS"],
                30,
                3600,
            )?,
            per_user: config::throttle(
                source,
                "code-user",
                ["CONFIRMATION_CODE_USER_LIMIT", "CONFIRMATION_CODE_USER_WINDOW_SECONDS"],
                10,
                3600,
            )?,
        })
    }

    /// The counters one request goes into: its client's and its user's.
    pub fn counting(&self, client: String, user_id: &UserId) -> [Throttle; 2] {
        [self.per_ip.counting(client), self.per_user.counting(user_id.as_str())]
    }
}

impl CodeConfirmer {
    pub fn from_config(w: &Wiring<'_>) -> Result<Self, ConfigError> {
        let store = w.store()?;
        Ok(Self::new(store.clone(), store, CodeKey::from_config(w.config)?))
    }
}

pub struct CodeConfirmer {
    confirmations: Arc<dyn Confirmations>,
    counters: Arc<dyn RequestCounters>,
    key: CodeKey,
    max_attempts: u32,
}

impl CodeConfirmer {
    pub fn new(confirmations: Arc<dyn Confirmations>, counters: Arc<dyn RequestCounters>, key: CodeKey) -> Self {
        Self { confirmations, counters, key, max_attempts: MAX_CODE_ATTEMPTS }
    }

    /// Counts the request against `throttles` (a refused request counts no attempt), then
    /// tries `code` for `user_id`.
    #[tracing::instrument(name = "confirm address with a code", skip_all, fields(user_id = %user_id))]
    pub async fn confirm(
        &self,
        user_id: &UserId,
        code: &OneTimeCode,
        now: UnixTime,
        by: &ConfirmedBy,
        throttles: &[Throttle],
    ) -> Result<User, ConfirmCodeError> {
        throttle::count_request(self.counters.as_ref(), throttles, now).await?;
        self.attempt(user_id, code, now, by).await
    }

    /// Counts first, compares after: see [`Confirmations::count_code_attempt`].
    pub async fn attempt(
        &self,
        user_id: &UserId,
        code: &OneTimeCode,
        now: UnixTime,
        by: &ConfirmedBy,
    ) -> Result<User, ConfirmCodeError> {
        let counted = self
            .confirmations
            .count_code_attempt(user_id, now, self.max_attempts)
            .await
            .map_err(Failure::Storage)?
            .map_err(|seen| CodeRefusal::explain(seen.as_ref(), now, self.max_attempts))?;
        if !self.key.matches(user_id, code, &counted.digest) {
            tracing::info!(attempts = counted.attempts, "wrong one-time code");
            return Err(ConfirmCodeError::WrongCode {
                attempts_left: self.max_attempts.saturating_sub(counted.attempts),
            });
        }
        let confirmed =
            self.confirmations.confirm_with_code(user_id, &counted.digest, now, by).await.map_err(Failure::Storage)?;
        match confirmed {
            Ok(user) => {
                crate::metrics::count(crate::metrics::Metric::Confirmations);
                Ok(user)
            }
            // Between the two writes the user was confirmed (by its link, say), or a new mail
            // replaced the code: this code no longer confirms anything.
            Err(Some(seen)) if seen.status == UserStatus::Enabled => Err(ConfirmCodeError::AlreadyConfirmed),
            Err(Some(_)) => Err(ConfirmCodeError::Expired),
            Err(None) => Err(ConfirmCodeError::UserNotFound),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::ConfirmMethod;
    use crate::usecases::fakes::{Fakes, pending_user};
    use crate::usecases::resend::{Resend, ResendError};

    const LINK_LIFETIME: i64 = 24 * 3600;

    struct Scene {
        fakes: Fakes,
        resend: Resend,
        confirmer: CodeConfirmer,
        user: UserId,
    }

    /// A pending user mailed once at time 0 (with a code valid for the link's day).
    async fn mailed_user() -> Scene {
        let fakes = Fakes::new();
        fakes.store.insert(pending_user("u-1", "ada@example.org"));
        let cooldown = crate::domain::CooldownPolicy { period: Duration::from_secs(60) };
        let store = fakes.store.clone();
        let resend = Resend::new(store.clone(), store.clone(), store.clone(), fakes.delivery(), cooldown);
        let confirmer = CodeConfirmer::new(store.clone(), store, Fakes::code_key());
        let user = UserId::parse("u-1").unwrap();
        resend.resend(&user, None, UnixTime(0)).await.unwrap();
        Scene { fakes, resend, confirmer, user }
    }

    fn by() -> ConfirmedBy {
        ConfirmedBy::new(ConfirmMethod::Code, None, None)
    }

    fn code(digits: &str) -> OneTimeCode {
        OneTimeCode::parse(digits).unwrap()
    }

    fn wrong(right: &str) -> OneTimeCode {
        // The same length, another value.
        let mut digits = right.as_bytes().to_vec();
        digits[0] = b'0' + (digits[0] - b'0' + 1) % 10;
        code(std::str::from_utf8(&digits).unwrap())
    }

    impl Scene {
        fn mailed_code(&self) -> String {
            self.fakes.mailer.latest_code().expect("a code in the mail")
        }

        async fn attempt(&self, code: &OneTimeCode, now: i64) -> Result<User, ConfirmCodeError> {
            self.confirmer.attempt(&self.user, code, UnixTime(now), &by()).await
        }
    }

    #[tokio::test]
    async fn the_mails_code_confirms_the_user_once_and_is_gone_after() {
        let scene = mailed_user().await;
        let right = code(&scene.mailed_code());
        assert_eq!(right.as_str().len(), 6);
        let user = scene.attempt(&right, 10).await.unwrap();
        assert_eq!(user.status, UserStatus::Enabled);
        assert_eq!(scene.fakes.store.code_attempts("u-1"), None, "the code is removed");
        let again = scene.attempt(&right, 11).await.unwrap_err();
        assert!(matches!(again, ConfirmCodeError::AlreadyConfirmed), "{again:?}");
    }

    #[tokio::test]
    async fn five_wrong_codes_use_the_code_up_and_the_right_one_then_is_refused() {
        let scene = mailed_user().await;
        let right = scene.mailed_code();
        for left in (0..5).rev() {
            let refused = scene.attempt(&wrong(&right), 10).await.unwrap_err();
            assert!(
                matches!(refused, ConfirmCodeError::WrongCode { attempts_left } if attempts_left == left),
                "{refused:?}"
            );
        }
        let dead = scene.attempt(&code(&right), 10).await.unwrap_err();
        assert!(matches!(dead, ConfirmCodeError::TooManyAttempts), "{dead:?}");
        assert_eq!(scene.fakes.store.user("u-1").unwrap().status, UserStatus::EmailConfirmationPending);
        assert_eq!(scene.fakes.store.code_attempts("u-1"), Some(5), "a refused attempt is not counted");
    }

    #[tokio::test]
    async fn a_new_mail_replaces_the_code_and_its_attempts() {
        let scene = mailed_user().await;
        let old = scene.mailed_code();
        for _ in 0..5 {
            scene.attempt(&wrong(&old), 10).await.unwrap_err();
        }
        scene.resend.resend(&scene.user, None, UnixTime(60)).await.unwrap();
        let new = scene.mailed_code();
        assert_eq!(scene.fakes.store.code_attempts("u-1"), Some(0));
        if new != old {
            let stale = scene.attempt(&code(&old), 61).await.unwrap_err();
            assert!(matches!(stale, ConfirmCodeError::WrongCode { attempts_left: 4 }), "{stale:?}");
        }
        scene.attempt(&code(&new), 62).await.unwrap();
    }

    #[tokio::test]
    async fn a_code_works_as_long_as_its_link_and_not_a_second_longer() {
        let scene = mailed_user().await;
        let right = code(&scene.mailed_code());
        let late = scene.attempt(&right, LINK_LIFETIME + 1).await.unwrap_err();
        assert!(matches!(late, ConfirmCodeError::Expired), "{late:?}");
        scene.attempt(&right, LINK_LIFETIME).await.unwrap();
    }

    #[tokio::test]
    async fn users_without_a_code_or_at_all_are_told_apart() {
        let scene = mailed_user().await;
        scene.fakes.store.insert(pending_user("u-2", "grace@example.org"));
        let none = scene.confirmer.attempt(&UserId::parse("u-2").unwrap(), &code("123456"), UnixTime(1), &by()).await;
        assert!(matches!(none, Err(ConfirmCodeError::NoCode)), "{none:?}");
        let nobody = scene.confirmer.attempt(&UserId::parse("u-9").unwrap(), &code("123456"), UnixTime(1), &by()).await;
        assert!(matches!(nobody, Err(ConfirmCodeError::UserNotFound)), "{nobody:?}");
    }

    #[tokio::test]
    async fn a_mail_that_did_not_go_out_leaves_the_code_of_the_last_one_that_did() {
        let scene = mailed_user().await;
        let delivered = scene.mailed_code();
        scene.attempt(&wrong(&delivered), 10).await.unwrap_err();
        scene.fakes.mailer.fail_next();
        let failed = scene.resend.resend(&scene.user, None, UnixTime(60)).await;
        assert!(matches!(failed, Err(ResendError::Failed(_))), "{failed:?}");
        assert_eq!(scene.fakes.store.code_attempts("u-1"), Some(1), "its attempts kept too");
        scene.attempt(&code(&delivered), 62).await.unwrap();
    }

    #[tokio::test]
    async fn concurrent_guesses_are_counted_one_by_one_and_at_most_five_compared() {
        let scene = Arc::new(mailed_user().await);
        let right = scene.mailed_code();
        let guesses = (0..100).map(|_| {
            let scene = scene.clone();
            let guess = wrong(&right);
            tokio::spawn(async move { scene.attempt(&guess, 10).await })
        });
        let answers = futures_util::future::join_all(guesses).await;
        let compared = answers.iter().filter(|a| matches!(a, Ok(Err(ConfirmCodeError::WrongCode { .. })))).count();
        let refused = answers.iter().filter(|a| matches!(a, Ok(Err(ConfirmCodeError::TooManyAttempts)))).count();
        assert_eq!((compared, refused), (5, 95));
    }

    #[tokio::test]
    async fn every_six_digit_guess_from_zero_up_confirms_nothing_past_the_fifth() {
        let scene = mailed_user().await;
        let right = scene.mailed_code();
        let mut confirmed = 0;
        let mut compared = 0;
        for guess in 0..10_000 {
            match scene.attempt(&code(&format!("{guess:06}")), 10).await {
                Ok(_) => confirmed += 1,
                Err(ConfirmCodeError::WrongCode { .. }) => compared += 1,
                Err(_) => {}
            }
        }
        // Only a mailed code among 000000–000004 (a chance of 5 in a million) could confirm.
        let lucky = right.parse::<u32>().unwrap() < 5;
        assert_eq!(confirmed, usize::from(lucky), "{right}");
        assert_eq!(compared + confirmed, 5);
        assert_eq!(scene.fakes.store.user("u-1").unwrap().status == UserStatus::Enabled, lucky);
    }

    #[tokio::test]
    async fn a_throttled_request_counts_no_attempt() {
        let scene = mailed_user().await;
        let rule = ThrottleRule { name: "code-user", limit: 1, window: Duration::from_secs(3600) };
        let throttles = [rule.counting("u-1")];
        let right = scene.mailed_code();
        let first = scene.confirmer.confirm(&scene.user, &wrong(&right), UnixTime(1), &by(), &throttles).await;
        assert!(matches!(first, Err(ConfirmCodeError::WrongCode { attempts_left: 4 })), "{first:?}");
        let second = scene.confirmer.confirm(&scene.user, &code(&right), UnixTime(2), &by(), &throttles).await;
        let Err(ConfirmCodeError::Throttled(throttled)) = second else { panic!("{second:?}") };
        assert_eq!(throttled.retry_after_seconds(UnixTime(2)), 3599);
        assert_eq!(scene.fakes.store.code_attempts("u-1"), Some(1));
    }
}
