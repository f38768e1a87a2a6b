//! The sign-up consumer: SQS messages whose body is a sign-up event, plain or inside an
//! EventBridge envelope. Each message succeeds or fails on its own (partial batch response).
//!
//! Under a burst it sends at its share of SES's rate ([`crate::pacing`]). A mail SES refuses for
//! its rate is "later", not a failure: the pacer pauses and the message is tried again in the
//! same invocation, so it costs no receive; only when the invocation has no time left to begin
//! it does it go back to the queue, to come back after the visibility timeout.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use tracing::Instrument;

use crate::aws_policy;
use crate::config::{self, ConfigError};
use crate::domain::SignUp;
use crate::domain::user::{InvalidSignUp, SignUpEvent};
use crate::pacing::{PacedMailer, Pacer, RuntimeClock, SendPace};
use crate::ports::Clock;
use crate::usecases::error_chain;
use crate::usecases::signup::{SignUpError, SignUpOutcome, SignUps};
use crate::wiring::{SqsHandler, Wiring};

#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("the message body is not a JSON sign-up event: {0}")]
    NotJson(String),
    #[error("the sign-up event is invalid: {0}")]
    Invalid(#[from] InvalidSignUp),
}

/// Reads a message body: the event itself, or an EventBridge event whose `detail` it is.
pub fn parse_message(body: &str) -> Result<SignUp, MessageError> {
    let mut value: serde_json::Value =
        serde_json::from_str(body).map_err(|err| MessageError::NotJson(err.classify_name()))?;
    if let Some(detail) = value.get_mut("detail").filter(|d| d.is_object()).map(serde_json::Value::take) {
        value = detail;
    }
    let event: SignUpEvent = serde_json::from_value(value)
        .map_err(|_| MessageError::NotJson("not an object of the expected shape".into()))?;
    Ok(SignUp::try_from(event)?)
}

trait ClassifyName {
    fn classify_name(&self) -> String;
}

impl ClassifyName for serde_json::Error {
    // Never the message's text: serde_json quotes the offending input, which may hold an address.
    fn classify_name(&self) -> String {
        format!("{:?} error at line {} column {}", self.classify(), self.line(), self.column())
    }
}

/// How often one invocation tries a message that SES refused for its rate (pausing between).
const TRIES_PER_INVOCATION: u32 = 3;

/// What became of one message in this invocation.
enum MessageOutcome {
    Done,
    /// To be delivered again: it failed, or it waits for another delivery's claim.
    Redeliver,
    /// SES refused its mail for the account's rate; nothing was sent.
    RefusedForRate,
}

/// The sign-up queue's consumer.
pub struct SignUpConsumer {
    sign_ups: SignUps,
    clock: Arc<dyn Clock>,
    pacer: Arc<Pacer>,
    /// How long into an invocation a message may still be begun (see [`aws_policy::begin_window`]).
    begin_window: Duration,
}

impl SignUpConsumer {
    /// Paced to `SES_MAX_SEND_RATE / SIGNUP_MAXIMUM_CONCURRENCY`; refuses to start when a batch of
    /// `SIGNUP_BATCH_SIZE` cannot be sent at that pace within the begin window.
    pub fn from_config(w: &Wiring<'_>) -> Result<Self, ConfigError> {
        let pace = SendPace::from_config(w.config)?;
        let batch_size = config::count(w.config, "SIGNUP_BATCH_SIZE", 10)?;
        let begin_window = aws_policy::begin_window(config::function_timeout(w.config)?);
        check_batch_fits(pace, batch_size, begin_window)?;
        let pacer = Arc::new(Pacer::new(pace, Arc::new(RuntimeClock::default())));
        let mailer = Arc::new(PacedMailer::new(w.mailer()?, pacer.clone()));
        Ok(Self::new(SignUps::from_config(w, mailer)?, w.clock.clone(), pacer, begin_window))
    }

    /// `sign_ups` should mail through a [`PacedMailer`] on the same `pacer`.
    pub fn new(sign_ups: SignUps, clock: Arc<dyn Clock>, pacer: Arc<Pacer>, begin_window: Duration) -> Self {
        Self { sign_ups, clock, pacer, begin_window }
    }

    /// Processes one message, tried again after a pause while SES refuses it for its rate and
    /// the invocation has time; false when it is to be delivered again.
    async fn process_in_time(&self, body: &str, begin_by: Duration) -> bool {
        for _ in 0..TRIES_PER_INVOCATION {
            if self.pacer.next_slot() > begin_by {
                tracing::info!("no time left in this invocation to send at the paced rate; back to the queue");
                return false;
            }
            match self.process_message(body).await {
                MessageOutcome::Done => return true,
                MessageOutcome::Redeliver => return false,
                MessageOutcome::RefusedForRate => {
                    tracing::info!("SES refused the mail for its sending rate; trying again after a pause");
                }
            }
        }
        tracing::info!("SES kept refusing the mail for its sending rate; back to the queue");
        false
    }

    async fn process_message(&self, body: &str) -> MessageOutcome {
        let sign_up = match parse_message(body) {
            Ok(sign_up) => sign_up,
            Err(err) => {
                tracing::error!(error = %err, "sign-up message failed");
                return MessageOutcome::Redeliver;
            }
        };
        // Boxed: the nested SDK futures are otherwise too deep for the compiler's layout query.
        match Box::pin(self.sign_ups.process(&sign_up, self.clock.now())).await {
            Ok(SignUpOutcome::MailSent) => tracing::info!("sign-up processed; first mail sent"),
            Ok(SignUpOutcome::CreatedWithoutMail) => tracing::info!("sign-up processed; mail is disabled"),
            Ok(SignUpOutcome::AlreadyHandled) => tracing::info!("sign-up already handled; nothing sent again"),
            Err(SignUpError::MailRefusedForRate) => return MessageOutcome::RefusedForRate,
            Err(SignUpError::FirstMailInFlight { retry_after_seconds }) => {
                tracing::info!(retry_after_seconds, "the first mail's claim is still held; delivering again later");
                return MessageOutcome::Redeliver;
            }
            Err(err) => {
                tracing::error!(error = %error_chain(&err), "sign-up message failed");
                return MessageOutcome::Redeliver;
            }
        }
        MessageOutcome::Done
    }
}

/// A whole batch must fit in the begin window at the pace; otherwise its tail would go back to
/// the queue untried on every delivery, and after `maxReceiveCount` into the dead-letter queue.
pub fn check_batch_fits(pace: SendPace, batch_size: u32, begin_window: Duration) -> Result<(), ConfigError> {
    let needed = pace.batch_time(batch_size);
    if needed <= begin_window {
        return Ok(());
    }
    Err(ConfigError::invalid(
        "SIGNUP_MAXIMUM_CONCURRENCY",
        format!(
            "a batch of {batch_size} (SIGNUP_BATCH_SIZE) at SES_MAX_SEND_RATE / SIGNUP_MAXIMUM_CONCURRENCY per \
             environment takes {:.2} s, more than the {:.2} s an invocation may spend pacing; lower the \
             concurrency, raise the rate or shrink the batch",
            needed.as_secs_f64(),
            begin_window.as_secs_f64()
        ),
    ))
}

#[async_trait]
impl SqsHandler for SignUpConsumer {
    /// Processes a batch at the paced rate; the response lists the messages to deliver again.
    async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        let begin_by = self.pacer.now() + self.begin_window;
        let mut response = SqsBatchResponse::default();
        for message in event.records {
            let message_id = message.message_id.unwrap_or_default();
            let body = message.body.unwrap_or_default();
            let span = tracing::info_span!("sign-up message", message_id = %message_id);
            if !self.process_in_time(&body, begin_by).instrument(span).await {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = message_id;
                response.batch_item_failures.push(failure);
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use aws_lambda_events::event::sqs::SqsMessage;

    use super::*;
    use crate::domain::CooldownPolicy;
    use crate::pacing::RATE_REFUSAL_PAUSE;
    use crate::pacing::tests::SteppedClock;
    use crate::ports::SystemClock;
    use crate::usecases::fakes::Fakes;

    /// A consumer on fakes, paced to `per_second` in one environment, with a stepped clock.
    fn consumer(fakes: &Fakes, per_second: u32, begin_window: Duration) -> (SignUpConsumer, Arc<SteppedClock>) {
        let clock = Arc::new(SteppedClock::default());
        let pacer = Arc::new(Pacer::new(SendPace::per_environment(per_second, 1), clock.clone()));
        let mailer = Arc::new(PacedMailer::new(fakes.mailer.clone(), pacer.clone()));
        let delivery = fakes.delivery_through(mailer);
        let store = fakes.store.clone();
        let sign_ups = SignUps::new(store.clone(), store, delivery, CooldownPolicy { period: Duration::from_secs(60) });
        (SignUpConsumer::new(sign_ups, Arc::new(SystemClock), pacer, begin_window), clock)
    }

    fn batch(count: usize) -> SqsEvent {
        let mut event = SqsEvent::default();
        for index in 0..count {
            let mut message = SqsMessage::default();
            message.message_id = Some(format!("m-{index}"));
            message.body = Some(format!(r#"{{"user_id":"u-{index}","email":"user{index}@example.org"}}"#));
            event.records.push(message);
        }
        event
    }

    fn failed(response: &SqsBatchResponse) -> Vec<&str> {
        response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect()
    }

    #[tokio::test]
    async fn a_batch_is_sent_at_the_paced_rate() {
        let fakes = Fakes::new();
        let (consumer, clock) = consumer(&fakes, 10, Duration::from_secs(3));
        let response = consumer.handle(batch(10)).await;
        assert!(failed(&response).is_empty());
        assert_eq!(fakes.mailer.sent_to().len(), 10);
        assert_eq!(*clock.sleeps.lock().unwrap(), [Duration::from_millis(100); 9]);
    }

    #[tokio::test]
    async fn a_mail_refused_for_the_rate_pauses_the_pacer_and_is_sent_in_the_same_invocation() {
        let fakes = Fakes::new();
        let (consumer, clock) = consumer(&fakes, 10, Duration::from_secs(3));
        fakes.mailer.refuse_for_rate(1);
        let response = consumer.handle(batch(3)).await;
        assert!(failed(&response).is_empty(), "no receive spent on the refusal");
        assert_eq!(fakes.mailer.sent_to(), ["user0@example.org", "user1@example.org", "user2@example.org"]);
        assert_eq!(clock.sleeps.lock().unwrap()[0], RATE_REFUSAL_PAUSE);
    }

    #[tokio::test]
    async fn messages_that_cannot_begin_in_time_go_back_untried() {
        let fakes = Fakes::new();
        let (consumer, _) = consumer(&fakes, 10, Duration::from_millis(250));
        let response = consumer.handle(batch(5)).await;
        assert_eq!(failed(&response), ["m-3", "m-4"], "slots at 0, 100 and 200 ms fit; 300 ms does not");
        assert_eq!(fakes.mailer.sent_to().len(), 3);
        assert!(fakes.store.user("u-3").is_none(), "nothing of an untried message was written");
    }

    #[tokio::test]
    async fn a_mail_that_ses_keeps_refusing_goes_back_to_the_queue_and_is_sent_on_redelivery() {
        let fakes = Fakes::new();
        let (consumer, _) = consumer(&fakes, 10, Duration::from_secs(3));
        fakes.mailer.refuse_for_rate(100);
        let response = consumer.handle(batch(2)).await;
        assert_eq!(failed(&response), ["m-0", "m-1"]);
        assert!(fakes.mailer.sent_to().is_empty());
        fakes.mailer.refuse_for_rate(0);
        assert!(failed(&consumer.handle(batch(2)).await).is_empty());
        assert_eq!(fakes.mailer.sent_to(), ["user0@example.org", "user1@example.org"]);
    }

    #[test]
    fn a_pace_too_slow_for_a_batch_is_refused_at_start_naming_the_concurrency() {
        let window = aws_policy::begin_window(Duration::from_secs(10));
        assert!(check_batch_fits(SendPace::per_environment(14, 2), 10, window).is_ok());
        assert!(check_batch_fits(SendPace::per_environment(200, 20), 10, window).is_ok());
        let err = check_batch_fits(SendPace::per_environment(14, 10), 10, window).unwrap_err().to_string();
        assert!(err.contains("SIGNUP_MAXIMUM_CONCURRENCY"), "{err}");
    }

    #[test]
    fn a_plain_body_and_an_eventbridge_envelope_give_the_same_sign_up() {
        let plain = parse_message(r#"{"user_id":"u1","email":"a@example.org","locale":"fr"}"#).unwrap();
        let wrapped = parse_message(
            r#"{"version":"0","id":"e1","detail-type":"UserSignedUp","source":"app.signup","detail":{"user_id":"u1","email":"a@example.org","locale":"fr"}}"#,
        )
        .unwrap();
        assert_eq!(plain, wrapped);
    }

    #[test]
    fn malformed_bodies_are_errors_whose_text_never_quotes_the_input() {
        let err = parse_message("{\"email\": \"secret@example.org\"").unwrap_err().to_string();
        assert!(!err.contains("secret"), "{err}");
        assert!(matches!(parse_message("[1,2]"), Err(MessageError::NotJson(_))));
        assert!(matches!(parse_message(r#"{"user_id":"u1","email":"nope"}"#), Err(MessageError::Invalid(_))));
    }
}
