//! The sign-up queue's consumer: SQS messages whose body is a command, plain or inside an
//! EventBridge envelope whose `detail` it is. The `action` field names the command: `sign_up`
//! (the default, so plain sign-up events keep working), `resend` or `change_email`; in an
//! envelope without one, the `detail-type` may name it. Each message succeeds or fails on its own
//! (partial batch response).
//!
//! Under a burst it sends at its share of SES's rate ([`crate::pacing`]), resends and new
//! addresses through the same pacer as first mails. A mail SES refuses for its rate is "later",
//! not a failure: the pacer pauses and the message is tried again in the same invocation, so it
//! costs no receive; only when the invocation has no time left to begin it does it go back to
//! the queue, to come back after the visibility timeout.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use serde::Deserialize;
use tracing::Instrument;

use crate::aws_policy;
use crate::config::{self, ConfigError, Source};
use crate::domain::user::{InvalidSignUp, SignUpEvent, locale_field, user_id_field};
use crate::domain::{EmailAddress, Identity, Locale, SignUp, UserId};
use crate::metrics::{self, Metric};
use crate::pacing::{PacedMailer, Pacer, RuntimeClock, SendPace};
use crate::ports::Clock;
use crate::usecases::change_address::{AddressChange, ChangeEmail, ChangeEmailError};
use crate::usecases::delivery::{Delivery, DeliveryError};
use crate::usecases::resend::{Resend, ResendError};
use crate::usecases::signup::{SignUpError, SignUpOutcome, SignUps};
use crate::usecases::{Failure, error_chain};
use crate::wiring::{SqsHandler, Wiring};

#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("the message body is not a JSON command: {0}")]
    NotJson(String),
    /// A field of a sign-up or a command is missing or invalid.
    #[error("the message is invalid: {0}")]
    Invalid(#[from] InvalidSignUp),
    #[error("the action is none of sign_up, resend and change_email")]
    UnknownAction,
    #[error("a resend names its user by user_id or by email, and only one of them")]
    ResendNamesNoOneUser,
}

/// What a message on the sign-up queue asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A new sign-up: create the pending user and send the first mail, once.
    SignUp(SignUp),
    /// The confirmation mail again, at most once per cooldown.
    Resend { user: Identity, locale: Option<Locale> },
    /// Moves a pending user to a new address (old links die) and mails the new one.
    ChangeEmail { user_id: UserId, email: EmailAddress, locale: Option<Locale> },
}

impl Command {
    pub fn action(&self) -> &'static str {
        match self {
            Command::SignUp(_) => "sign_up",
            Command::Resend { .. } => "resend",
            Command::ChangeEmail { .. } => "change_email",
        }
    }
}

/// The EventBridge `detail-type`s that name a command when the detail has no `action`; any
/// other detail-type is a sign-up, as before there were commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetailTypes {
    pub resend: String,
    pub change_email: String,
}

impl Default for DetailTypes {
    fn default() -> Self {
        Self { resend: "ConfirmationResendRequested".into(), change_email: "EmailChangeRequested".into() }
    }
}

impl DetailTypes {
    /// `SIGNUP_RESEND_DETAIL_TYPE` and `SIGNUP_CHANGE_EMAIL_DETAIL_TYPE`, as the template's rule forwards them.
    pub fn from_config(source: &dyn Source) -> Self {
        let default = Self::default();
        Self {
            resend: config::optional(source, "SIGNUP_RESEND_DETAIL_TYPE").unwrap_or(default.resend),
            change_email: config::optional(source, "SIGNUP_CHANGE_EMAIL_DETAIL_TYPE").unwrap_or(default.change_email),
        }
    }

    fn action_of(&self, detail_type: &str) -> &'static str {
        match detail_type {
            t if t == self.resend => "resend",
            t if t == self.change_email => "change_email",
            _ => "sign_up",
        }
    }
}

/// The fields any command may carry; which are required depends on the action.
#[derive(Debug, Deserialize)]
struct CommandFields {
    action: Option<String>,
    user_id: Option<serde_json::Value>,
    email: Option<String>,
    locale: Option<String>,
    client_id: Option<String>,
    redirect_to: Option<String>,
}

/// Reads a message body: the command itself, or an EventBridge event whose `detail` it is.
pub fn parse_message(body: &str, detail_types: &DetailTypes) -> Result<Command, MessageError> {
    let mut value: serde_json::Value =
        serde_json::from_str(body).map_err(|err| MessageError::NotJson(err.classify_name()))?;
    let mut envelope_action = None;
    if let Some(detail) = value.get_mut("detail").filter(|d| d.is_object()).map(serde_json::Value::take) {
        envelope_action =
            value.get("detail-type").and_then(serde_json::Value::as_str).map(|t| detail_types.action_of(t));
        value = detail;
    }
    let fields: CommandFields = serde_json::from_value(value)
        .map_err(|_| MessageError::NotJson("not an object of the expected shape".into()))?;
    // An `action` in the command wins over the envelope's detail-type.
    match fields.action.as_deref().or(envelope_action).unwrap_or("sign_up") {
        "sign_up" => {
            let event = SignUpEvent {
                user_id: fields.user_id,
                email: fields.email,
                locale: fields.locale,
                client_id: fields.client_id,
                redirect_to: fields.redirect_to,
            };
            Ok(Command::SignUp(SignUp::try_from(event)?))
        }
        "resend" => {
            let user = match (fields.user_id, fields.email) {
                (Some(user_id), None) => Identity::UserId(user_id_field(user_id)?),
                (None, Some(email)) => Identity::Email(EmailAddress::parse(&email).map_err(InvalidSignUp::from)?),
                _ => return Err(MessageError::ResendNamesNoOneUser),
            };
            Ok(Command::Resend { user, locale: locale_field(fields.locale)? })
        }
        "change_email" => {
            let user_id = user_id_field(fields.user_id.ok_or(InvalidSignUp::MissingUserId)?)?;
            let email =
                EmailAddress::parse(&fields.email.ok_or(InvalidSignUp::MissingEmail)?).map_err(InvalidSignUp::from)?;
            Ok(Command::ChangeEmail { user_id, email, locale: locale_field(fields.locale)? })
        }
        _ => Err(MessageError::UnknownAction),
    }
}

/// What makes two deliveries one command: its `idempotency_key` if it has one, else the
/// EventBridge event's `id` (EventBridge may deliver one event to the queue twice, as two
/// messages), else the SQS message id; stored as a digest, so no sender's text is kept.
pub fn command_key(body: &str, message_id: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let text = |v: Option<&serde_json::Value>| v.and_then(serde_json::Value::as_str).map(str::to_owned);
    let key = text(value.get("detail").and_then(|d| d.get("idempotency_key")))
        .or_else(|| text(value.get("idempotency_key")))
        .map(|key| format!("key:{key}"))
        .or_else(|| text(value.get("detail").and(value.get("id"))).map(|id| format!("event:{id}")))
        .unwrap_or_else(|| format!("message:{message_id}"));
    use sha2::Digest;
    sha2::Sha256::digest(key.as_bytes()).iter().take(16).map(|b| format!("{b:02x}")).collect()
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

/// What the consumer does with each command; every mail goes through one paced mailer.
pub struct QueueCommands {
    pub sign_ups: SignUps,
    pub resends: Arc<Resend>,
    pub email_changes: ChangeEmail,
    pub detail_types: DetailTypes,
}

impl QueueCommands {
    /// The use cases on the table of `TABLE_NAME`, mailing through `mailer`.
    pub fn from_config(w: &Wiring<'_>, mailer: Arc<dyn crate::ports::Mailer>) -> Result<Self, ConfigError> {
        let store = w.store()?;
        let delivery = Delivery::from_config(w.config, store.clone(), mailer.clone())?;
        let resends =
            Arc::new(Resend::new(store.clone(), store.clone(), store.clone(), delivery, config::cooldown(w.config)?));
        Ok(Self {
            sign_ups: SignUps::from_config(w, mailer)?,
            email_changes: ChangeEmail::new(AddressChange::new(store.clone(), store), resends.clone()),
            resends,
            detail_types: DetailTypes::from_config(w.config),
        })
    }
}

/// The sign-up queue's consumer.
pub struct SignUpConsumer {
    commands: QueueCommands,
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
        Ok(Self::new(QueueCommands::from_config(w, mailer)?, w.clock.clone(), pacer, begin_window))
    }

    /// The use cases in `commands` should mail through a [`PacedMailer`] on the same `pacer`.
    pub fn new(commands: QueueCommands, clock: Arc<dyn Clock>, pacer: Arc<Pacer>, begin_window: Duration) -> Self {
        Self { commands, clock, pacer, begin_window }
    }

    /// Processes one message, tried again after a pause while SES refuses it for its rate and
    /// the invocation has time; false when it is to be delivered again.
    async fn process_in_time(&self, body: &str, message_id: &str, begin_by: Duration) -> bool {
        for _ in 0..TRIES_PER_INVOCATION {
            if self.pacer.next_slot() > begin_by {
                tracing::info!("no time left in this invocation to send at the paced rate; back to the queue");
                return false;
            }
            match self.process_message(body, message_id).await {
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

    async fn process_message(&self, body: &str, message_id: &str) -> MessageOutcome {
        let command = match parse_message(body, &self.commands.detail_types) {
            Ok(command) => command,
            Err(err) => {
                // As a malformed sign-up always was: redelivered, then kept in the dead-letter queue.
                tracing::error!(error = %err, "sign-up queue message failed");
                return MessageOutcome::Redeliver;
            }
        };
        let now = self.clock.now();
        // Boxed: the nested SDK futures are otherwise too deep for the compiler's layout query.
        match command {
            Command::SignUp(sign_up) => Box::pin(self.sign_up(&sign_up)).await,
            Command::Resend { user, locale } => {
                let key = command_key(body, message_id);
                let resend = self.commands.resends.resend_to_unthrottled(&user, locale.as_ref(), now, Some(&key));
                let result = Box::pin(resend).await;
                command_outcome("resend", result.map_err(CommandError::Resend))
            }
            Command::ChangeEmail { user_id, email, locale } => {
                let key = command_key(body, message_id);
                let change = self.commands.email_changes.change(&user_id, &email, locale.as_ref(), now, Some(&key));
                let result = Box::pin(change).await;
                command_outcome("change_email", result.map_err(CommandError::ChangeEmail))
            }
        }
    }

    async fn sign_up(&self, sign_up: &SignUp) -> MessageOutcome {
        match self.commands.sign_ups.process(sign_up, self.clock.now()).await {
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

/// Why a command sent no mail: a refusal it deserved, or a failure of ours.
enum CommandError {
    Resend(ResendError),
    ChangeEmail(ChangeEmailError),
}

impl CommandError {
    fn failure(&self) -> Option<&Failure> {
        match self {
            CommandError::Resend(ResendError::Failed(failure))
            | CommandError::ChangeEmail(ChangeEmailError::Failed(failure)) => Some(failure),
            _ => None,
        }
    }

    /// The refusal's name for the log line; never an address.
    fn refusal(&self) -> String {
        match self {
            CommandError::Resend(err) => err.to_string(),
            CommandError::ChangeEmail(err) => err.to_string(),
        }
    }
}

/// A refusal is an outcome (done, counted), since delivering the command again cannot change
/// it; only a failure of ours is delivered again, and a mail SES refused for its rate tried later.
fn command_outcome<T>(action: &'static str, result: Result<T, CommandError>) -> MessageOutcome {
    let err = match result {
        Ok(_) => {
            tracing::info!(action, "command processed; mail sent");
            return MessageOutcome::Done;
        }
        Err(err) => err,
    };
    match err.failure() {
        Some(Failure::Delivery(DeliveryError::MailSend(refusal))) if refusal.is_refused_for_rate() => {
            MessageOutcome::RefusedForRate
        }
        Some(failure) => {
            failure.report();
            MessageOutcome::Redeliver
        }
        None => {
            tracing::info!(action, outcome = %err.refusal(), "command refused; nothing to deliver again");
            metrics::count(Metric::CommandsRefused);
            MessageOutcome::Done
        }
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
            let span = tracing::info_span!("sign-up queue message", message_id = %message_id);
            if !self.process_in_time(&body, &message_id, begin_by).instrument(span).await {
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

    #[test]
    fn a_commands_key_is_its_idempotency_key_else_the_events_id_else_the_message_id() {
        let keyed = r#"{"action":"resend","user_id":"u","idempotency_key":"k-1"}"#;
        assert_eq!(command_key(keyed, "m-1"), command_key(keyed, "m-2"), "the key wins over the message");
        let in_envelope = r#"{"id":"ev-1","detail-type":"ConfirmationResendRequested","detail":{"user_id":"u"}}"#;
        assert_eq!(command_key(in_envelope, "m-1"), command_key(in_envelope, "m-2"), "then the event id");
        let plain = r#"{"action":"resend","user_id":"u"}"#;
        assert_ne!(command_key(plain, "m-1"), command_key(plain, "m-2"), "then the message id");
        assert_eq!(command_key(plain, "m-1").len(), 32);
        assert_ne!(command_key(keyed, "m-1"), command_key(r#"{"idempotency_key":"k-2"}"#, "m-1"));
    }
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
        let cooldown = CooldownPolicy { period: Duration::from_secs(60) };
        let store = fakes.store.clone();
        let sign_ups = SignUps::new(store.clone(), store.clone(), fakes.delivery_through(mailer.clone()), cooldown);
        let resends = Arc::new(Resend::new(
            store.clone(),
            store.clone(),
            store.clone(),
            fakes.delivery_through(mailer),
            cooldown,
        ));
        let email_changes = ChangeEmail::new(AddressChange::new(store.clone(), store), resends.clone());
        let commands = QueueCommands { sign_ups, resends, email_changes, detail_types: DetailTypes::default() };
        (SignUpConsumer::new(commands, Arc::new(SystemClock), pacer, begin_window), clock)
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

    fn parse(body: &str) -> Result<Command, MessageError> {
        parse_message(body, &DetailTypes::default())
    }

    #[test]
    fn a_plain_body_and_an_eventbridge_envelope_give_the_same_sign_up() {
        let plain = parse(r#"{"user_id":"u1","email":"a@example.org","locale":"fr"}"#).unwrap();
        let wrapped = parse(
            r#"{"version":"0","id":"e1","detail-type":"UserSignedUp","source":"app.signup","detail":{"user_id":"u1","email":"a@example.org","locale":"fr"}}"#,
        )
        .unwrap();
        assert!(matches!(&plain, Command::SignUp(sign_up) if sign_up.locale.as_ref().unwrap().as_str() == "fr"));
        assert_eq!(plain, wrapped);
        let named = parse(r#"{"action":"sign_up","user_id":"u1","email":"a@example.org","locale":"fr"}"#).unwrap();
        assert_eq!(plain, named, "sign_up is the default action");
    }

    #[test]
    fn a_resend_names_its_user_by_id_or_by_address() {
        let by_id = parse(r#"{"action":"resend","user_id":42,"locale":"de"}"#).unwrap();
        let Command::Resend { user: Identity::UserId(user_id), locale: Some(locale) } = by_id else {
            panic!("{by_id:?}")
        };
        assert_eq!((user_id.as_str(), locale.as_str()), ("42", "de"));
        let by_address = parse(r#"{"action":"resend","email":"Ada@Example.org"}"#).unwrap();
        let Command::Resend { user: Identity::Email(email), locale: None } = by_address else {
            panic!("{by_address:?}")
        };
        assert_eq!(email.normalized(), "ada@example.org");
    }

    #[test]
    fn a_change_email_needs_the_user_and_the_new_address() {
        let change = parse(r#"{"action":"change_email","user_id":"u1","email":"new@example.org","locale":"it"}"#);
        let Ok(Command::ChangeEmail { user_id, email, locale: Some(locale) }) = change else { panic!("{change:?}") };
        assert_eq!((user_id.as_str(), email.normalized(), locale.as_str()), ("u1", "new@example.org", "it"));
        assert!(matches!(
            parse(r#"{"action":"change_email","email":"new@example.org"}"#),
            Err(MessageError::Invalid(InvalidSignUp::MissingUserId))
        ));
        assert!(matches!(
            parse(r#"{"action":"change_email","user_id":"u1"}"#),
            Err(MessageError::Invalid(InvalidSignUp::MissingEmail))
        ));
    }

    #[test]
    fn an_envelopes_detail_type_names_the_action_unless_the_detail_does() {
        let envelope = |detail_type: &str, detail: &str| {
            format!(r#"{{"version":"0","detail-type":"{detail_type}","source":"app","detail":{detail}}}"#)
        };
        let resend = parse(&envelope("ConfirmationResendRequested", r#"{"user_id":"u1"}"#)).unwrap();
        assert_eq!(resend.action(), "resend");
        let change = parse(&envelope("EmailChangeRequested", r#"{"user_id":"u1","email":"new@example.org"}"#)).unwrap();
        assert_eq!(change.action(), "change_email");
        let explicit = parse(&envelope("EmailChangeRequested", r#"{"action":"resend","user_id":"u1"}"#)).unwrap();
        assert_eq!(explicit.action(), "resend", "the detail's action wins");
        let renamed = DetailTypes { resend: "AgainPlease".into(), change_email: "Moved".into() };
        let body = envelope("AgainPlease", r#"{"email":"a@example.org"}"#);
        assert_eq!(parse_message(&body, &renamed).unwrap().action(), "resend");
        let as_sign_up = parse(&body);
        assert!(matches!(as_sign_up, Err(MessageError::Invalid(InvalidSignUp::MissingUserId))), "{as_sign_up:?}");
    }

    #[test]
    fn malformed_bodies_are_errors_whose_text_never_quotes_the_input() {
        let err = parse("{\"email\": \"secret@example.org\"").unwrap_err().to_string();
        assert!(!err.contains("secret"), "{err}");
        assert!(matches!(parse("[1,2]"), Err(MessageError::NotJson(_))));
        assert!(matches!(parse(r#"{"user_id":"u1","email":"nope"}"#), Err(MessageError::Invalid(_))));
        assert!(matches!(parse(r#"{"action":"delete","user_id":"u1"}"#), Err(MessageError::UnknownAction)));
        assert!(matches!(parse(r#"{"action":7,"user_id":"u1"}"#), Err(MessageError::NotJson(_))));
        assert!(matches!(parse(r#"{"action":"resend"}"#), Err(MessageError::ResendNamesNoOneUser)));
        assert!(matches!(
            parse(r#"{"action":"resend","user_id":"u1","email":"a@example.org"}"#),
            Err(MessageError::ResendNamesNoOneUser)
        ));
        let err = parse(r#"{"action":"resend","email":"secret@nope"}"#).unwrap_err().to_string();
        assert!(!err.contains("secret"), "{err}");
    }

    /// A resend and an address change on fakes: refusals are done, not delivered again.
    #[tokio::test]
    async fn refused_commands_are_done_and_mail_nothing() {
        let fakes = Fakes::new();
        let (consumer, _) = consumer(&fakes, 10, Duration::from_secs(3));
        let mut event = batch(1);
        event.records[0].body = Some(r#"{"action":"resend","user_id":"nobody"}"#.into());
        assert!(failed(&consumer.handle(event.clone()).await).is_empty());
        event.records[0].body = Some(r#"{"action":"change_email","user_id":"nobody","email":"n@example.org"}"#.into());
        assert!(failed(&consumer.handle(event).await).is_empty());
        assert!(fakes.mailer.sent_to().is_empty());
    }

    #[tokio::test]
    async fn a_resend_refused_for_the_rate_is_sent_in_the_same_invocation() {
        let fakes = Fakes::new();
        let (consumer, clock) = consumer(&fakes, 10, Duration::from_secs(3));
        fakes.store.insert(crate::usecases::fakes::pending_user("u-1", "ada@example.org"));
        fakes.mailer.refuse_for_rate(1);
        let mut event = batch(1);
        event.records[0].body = Some(r#"{"action":"resend","email":"ada@example.org"}"#.into());
        assert!(failed(&consumer.handle(event).await).is_empty());
        assert_eq!(fakes.mailer.sent_to(), ["ada@example.org"]);
        assert_eq!(clock.sleeps.lock().unwrap()[0], RATE_REFUSAL_PAUSE);
    }

    #[tokio::test]
    async fn a_failure_of_ours_delivers_a_command_again() {
        let fakes = Fakes::new();
        let (consumer, _) = consumer(&fakes, 10, Duration::from_secs(3));
        fakes.store.insert(crate::usecases::fakes::pending_user("u-1", "ada@example.org"));
        fakes.mailer.fail_next();
        let mut event = batch(1);
        event.records[0].body = Some(r#"{"action":"resend","user_id":"u-1"}"#.into());
        assert_eq!(failed(&consumer.handle(event.clone()).await), ["m-0"]);
        assert!(failed(&consumer.handle(event).await).is_empty());
        assert_eq!(fakes.mailer.sent_to(), ["ada@example.org"]);
    }
}
