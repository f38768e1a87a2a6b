//! The sign-up consumer: SQS messages whose body is a sign-up event, plain or inside an
//! EventBridge envelope. Each message succeeds or fails on its own (partial batch response).

use std::sync::Arc;

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use tracing::Instrument;

use crate::config::ConfigError;
use crate::domain::SignUp;
use crate::domain::user::{InvalidSignUp, SignUpEvent};
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

/// The sign-up queue's consumer.
pub struct SignUpConsumer {
    sign_ups: SignUps,
    clock: Arc<dyn Clock>,
}

impl SignUpConsumer {
    pub fn from_config(w: &Wiring<'_>) -> Result<Self, ConfigError> {
        Ok(Self { sign_ups: SignUps::from_config(w)?, clock: w.clock.clone() })
    }

    /// Processes one message; false when it is to be delivered again.
    async fn process_message(&self, body: &str) -> bool {
        let sign_up = match parse_message(body) {
            Ok(sign_up) => sign_up,
            Err(err) => {
                tracing::error!(error = %err, "sign-up message failed");
                return false;
            }
        };
        // Boxed: the nested SDK futures are otherwise too deep for the compiler's layout query.
        match Box::pin(self.sign_ups.process(&sign_up, self.clock.now())).await {
            Ok(SignUpOutcome::MailSent) => tracing::info!("sign-up processed; first mail sent"),
            Ok(SignUpOutcome::CreatedWithoutMail) => tracing::info!("sign-up processed; mail is disabled"),
            Ok(SignUpOutcome::AlreadyHandled) => tracing::info!("sign-up already handled; nothing sent again"),
            Err(SignUpError::FirstMailInFlight { retry_after_seconds }) => {
                tracing::info!(retry_after_seconds, "the first mail's claim is still held; delivering again later");
                return false;
            }
            Err(err) => {
                tracing::error!(error = %error_chain(&err), "sign-up message failed");
                return false;
            }
        }
        true
    }
}

#[async_trait]
impl SqsHandler for SignUpConsumer {
    /// Processes a batch; the response lists the messages to deliver again.
    async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        for message in event.records {
            let message_id = message.message_id.unwrap_or_default();
            let body = message.body.unwrap_or_default();
            let span = tracing::info_span!("sign-up message", message_id = %message_id);
            if !self.process_message(&body).instrument(span).await {
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
    use super::*;

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
