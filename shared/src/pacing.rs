//! Pacing the sign-up consumer's mails to SES's sending rate, so a burst of sign-ups drains at
//! the rate SES accepts instead of being refused (and retried, and dead-lettered).
//!
//! The account's rate `SES_MAX_SEND_RATE` (R) is shared by at most `SIGNUP_MAXIMUM_CONCURRENCY`
//! (C, the event source mapping's `MaximumConcurrency`) execution environments, which cannot see
//! each other; so each paces itself to R / C, one send every C / R seconds. That never exceeds R
//! in total, at the price of running below R while fewer than C environments are busy (the start
//! and the tail of a burst), which costs seconds, never mails.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::config::{self, ConfigError, Source};
use crate::domain::EmailAddress;
use crate::mail::{ConfirmationMail, MailSendError};
use crate::ports::Mailer;

/// How long the pacer holds back every send after SES refused one for its rate: SES counts its
/// rate per second, so a second lets its count fall back.
pub const RATE_REFUSAL_PAUSE: Duration = Duration::from_secs(1);

/// Monotonic time and sleeping: the runtime's in a function, a hand-moved one in unit tests.
#[async_trait]
pub trait PaceClock: Send + Sync {
    /// Time since a fixed origin; never goes back.
    fn elapsed(&self) -> Duration;
    async fn sleep(&self, duration: Duration);
}

/// Tokio's monotonic clock and timer.
#[derive(Debug, Clone, Copy)]
pub struct RuntimeClock {
    origin: tokio::time::Instant,
}

impl Default for RuntimeClock {
    fn default() -> Self {
        Self { origin: tokio::time::Instant::now() }
    }
}

#[async_trait]
impl PaceClock for RuntimeClock {
    fn elapsed(&self) -> Duration {
        self.origin.elapsed()
    }

    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

/// One environment's share of the account's sending rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SendPace {
    /// The least time between two sends of this environment.
    pub interval: Duration,
}

impl SendPace {
    /// Each of `concurrency` environments gets `account_rate / concurrency` sends per second.
    pub fn per_environment(account_rate: u32, concurrency: u32) -> Self {
        let interval = f64::from(concurrency.max(1)) / f64::from(account_rate.max(1));
        Self { interval: Duration::from_secs_f64(interval) }
    }

    /// `SES_MAX_SEND_RATE` (default 14, a new account's) over `SIGNUP_MAXIMUM_CONCURRENCY`
    /// (default 2, the least an event source mapping allows).
    pub fn from_config(source: &dyn Source) -> Result<Self, ConfigError> {
        let rate = config::count(source, "SES_MAX_SEND_RATE", 14)?;
        let concurrency = config::count(source, "SIGNUP_MAXIMUM_CONCURRENCY", 2)?;
        Ok(Self::per_environment(rate, concurrency))
    }

    /// The time a batch of `batch_size` sends takes at this pace.
    pub fn batch_time(&self, batch_size: u32) -> Duration {
        self.interval * batch_size
    }
}

/// Hands out send slots at most one per interval.
pub struct Pacer {
    interval: Duration,
    clock: Arc<dyn PaceClock>,
    /// The earliest time the next send may start.
    next_slot: Mutex<Duration>,
}

impl Pacer {
    pub fn new(pace: SendPace, clock: Arc<dyn PaceClock>) -> Self {
        Self { interval: pace.interval, clock, next_slot: Mutex::new(Duration::ZERO) }
    }

    pub fn now(&self) -> Duration {
        self.clock.elapsed()
    }

    /// When a send asked for now would start.
    pub fn next_slot(&self) -> Duration {
        let booked = *self.next_slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        booked.max(self.clock.elapsed())
    }

    /// Waits for the next slot, and books the one after it.
    pub async fn take_slot(&self) {
        let now = self.clock.elapsed();
        let slot = {
            let mut next = self.next_slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let slot = (*next).max(now);
            *next = slot + self.interval;
            slot
        };
        if slot > now {
            self.clock.sleep(slot - now).await;
        }
    }

    /// Holds every send back for `pause` from now (SES refused one for its rate).
    pub fn pause(&self, pause: Duration) {
        let resume = self.clock.elapsed() + pause;
        let mut next = self.next_slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *next = (*next).max(resume);
    }
}

/// A mailer that sends at the pacer's rate, and pauses it when SES refuses a send for its rate.
pub struct PacedMailer {
    inner: Arc<dyn Mailer>,
    pacer: Arc<Pacer>,
}

impl PacedMailer {
    pub fn new(inner: Arc<dyn Mailer>, pacer: Arc<Pacer>) -> Self {
        Self { inner, pacer }
    }
}

#[async_trait]
impl Mailer for PacedMailer {
    async fn send(&self, to: &EmailAddress, mail: &ConfirmationMail) -> Result<(), MailSendError> {
        self.pacer.take_slot().await;
        let result = self.inner.send(to, mail).await;
        if result.as_ref().is_err_and(MailSendError::is_refused_for_rate) {
            self.pacer.pause(RATE_REFUSAL_PAUSE);
        }
        result
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    /// A clock that moves only when slept on: sleeping advances it at once and is recorded.
    #[derive(Default)]
    pub struct SteppedClock {
        micros: AtomicU64,
        pub sleeps: Mutex<Vec<Duration>>,
    }

    impl SteppedClock {
        pub fn advance(&self, by: Duration) {
            self.micros.fetch_add(by.as_micros() as u64, Ordering::SeqCst);
        }
    }

    #[async_trait]
    impl PaceClock for SteppedClock {
        fn elapsed(&self) -> Duration {
            Duration::from_micros(self.micros.load(Ordering::SeqCst))
        }

        async fn sleep(&self, duration: Duration) {
            self.sleeps.lock().unwrap().push(duration);
            self.advance(duration);
        }
    }

    fn env(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn each_environment_gets_its_share_of_the_account_rate() {
        assert_eq!(SendPace::per_environment(14, 2).interval, Duration::from_secs_f64(2.0 / 14.0));
        assert_eq!(SendPace::per_environment(200, 20).interval, Duration::from_millis(100));
        assert_eq!(SendPace::from_config(&env(&[])).unwrap(), SendPace::per_environment(14, 2));
        let err = SendPace::from_config(&env(&[("SES_MAX_SEND_RATE", "0")])).unwrap_err().to_string();
        assert!(err.contains("SES_MAX_SEND_RATE"), "{err}");
    }

    #[tokio::test]
    async fn sends_are_spaced_by_the_interval_and_the_first_goes_at_once() {
        let clock = Arc::new(SteppedClock::default());
        let pacer = Pacer::new(SendPace::per_environment(10, 2), clock.clone());
        for _ in 0..4 {
            pacer.take_slot().await;
        }
        assert_eq!(*clock.sleeps.lock().unwrap(), [Duration::from_millis(200); 3]);
        assert_eq!(clock.elapsed(), Duration::from_millis(600), "4 sends in 3 intervals");
    }

    #[tokio::test]
    async fn time_spent_elsewhere_counts_toward_the_interval() {
        let clock = Arc::new(SteppedClock::default());
        let pacer = Pacer::new(SendPace::per_environment(10, 2), clock.clone());
        pacer.take_slot().await;
        clock.advance(Duration::from_millis(150));
        pacer.take_slot().await;
        clock.advance(Duration::from_secs(5));
        assert_eq!(pacer.next_slot(), clock.elapsed(), "an idle pacer owes no wait");
        pacer.take_slot().await;
        assert_eq!(*clock.sleeps.lock().unwrap(), [Duration::from_millis(50)]);
    }

    #[tokio::test]
    async fn a_pause_holds_back_the_next_send() {
        let clock = Arc::new(SteppedClock::default());
        let pacer = Pacer::new(SendPace::per_environment(100, 1), clock.clone());
        pacer.take_slot().await;
        pacer.pause(RATE_REFUSAL_PAUSE);
        assert_eq!(pacer.next_slot(), RATE_REFUSAL_PAUSE);
        pacer.take_slot().await;
        assert_eq!(clock.elapsed(), RATE_REFUSAL_PAUSE);
    }
}
