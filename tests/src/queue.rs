//! The sign-up queue and Lambda's SQS event source mapping, simulated in process for the burst
//! tests: what a message goes through in AWS, with the template's numbers.
//!
//! - A received message is invisible for the visibility timeout; if it is not deleted by then
//!   it is received again, its receive count one higher.
//! - A message already received `maxReceiveCount` times goes to the dead-letter queue instead
//!   of being received again (the queue's `RedrivePolicy`).
//! - At most `MaximumConcurrency` invocations run at once, each in its own execution environment
//!   (its own handler, clients and pacer), each given up to `BatchSize` messages; the messages
//!   it does not list in `batchItemFailures` are deleted (`ReportBatchItemFailures`).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use aws_lambda_events::event::sqs::SqsEvent;
use mailconfirm::SqsHandler;
use serde_json::json;

use crate::template::Template;

/// How the queue and its event source mapping are set up.
#[derive(Debug, Clone, Copy)]
pub struct QueueSettings {
    pub visibility_timeout: Duration,
    pub max_receive_count: u32,
    pub batch_size: usize,
    pub maximum_concurrency: usize,
}

impl QueueSettings {
    /// As the template deploys them: the queue's `VisibilityTimeout` and `RedrivePolicy`, the
    /// event's `BatchSize`, and the `SignUpMaximumConcurrency` parameter's default.
    pub fn from_template(template: &Template) -> anyhow::Result<Self> {
        let queue = &template.resources()["SignUpQueue"]["Properties"];
        let function = template
            .functions()
            .into_iter()
            .find(|function| function.binary == "signup-events")
            .context("no sign-up function")?;
        let event = &function.properties["Events"]["SignUpQueue"]["Properties"];
        let concurrency = &template.document()["Parameters"]["SignUpMaximumConcurrency"]["Default"];
        Ok(Self {
            visibility_timeout: Duration::from_secs(queue["VisibilityTimeout"].as_u64().context("VisibilityTimeout")?),
            max_receive_count: queue["RedrivePolicy"]["maxReceiveCount"]
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .context("maxReceiveCount")?,
            batch_size: event["BatchSize"].as_u64().and_then(|n| usize::try_from(n).ok()).context("BatchSize")?,
            maximum_concurrency: concurrency
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .context("SignUpMaximumConcurrency's default")?,
        })
    }
}

#[derive(Debug, Clone)]
struct Message {
    id: String,
    body: String,
    receive_count: u32,
    visible_at: Instant,
}

#[derive(Default)]
struct State {
    /// Every message neither deleted nor dead-lettered.
    messages: Vec<Message>,
    dead_letters: Vec<Message>,
    sent: usize,
    receives: usize,
    invocations: usize,
    highest_receive_count: u32,
}

/// What draining the queue took.
#[derive(Debug, Clone)]
pub struct DrainReport {
    pub elapsed: Duration,
    pub invocations: usize,
    /// Message receives, redeliveries included.
    pub receives: usize,
    pub highest_receive_count: u32,
    /// The bodies that ended in the dead-letter queue.
    pub dead_letters: Vec<String>,
    /// Messages still in the queue when the drain gave up.
    pub left: usize,
}

pub struct LocalQueue {
    settings: QueueSettings,
    state: Mutex<State>,
}

impl LocalQueue {
    pub fn new(settings: QueueSettings) -> Arc<Self> {
        Arc::new(Self { settings, state: Mutex::new(State::default()) })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn send(&self, body: String) {
        let mut state = self.state();
        state.sent += 1;
        let id = format!("msg-{}", state.sent);
        state.messages.push(Message { id, body, receive_count: 0, visible_at: Instant::now() });
    }

    /// Up to a batch of visible messages, each now invisible for the visibility timeout.
    fn receive(&self) -> Vec<Message> {
        let now = Instant::now();
        let mut state = self.state();
        let mut batch = Vec::new();
        let mut index = 0;
        while index < state.messages.len() && batch.len() < self.settings.batch_size {
            if state.messages[index].visible_at > now {
                index += 1;
                continue;
            }
            if state.messages[index].receive_count >= self.settings.max_receive_count {
                let dead = state.messages.remove(index);
                state.dead_letters.push(dead);
                continue;
            }
            let message = &mut state.messages[index];
            message.receive_count += 1;
            message.visible_at = now + self.settings.visibility_timeout;
            let received = message.clone();
            state.highest_receive_count = state.highest_receive_count.max(received.receive_count);
            state.receives += 1;
            batch.push(received);
            index += 1;
        }
        if !batch.is_empty() {
            state.invocations += 1;
        }
        batch
    }

    fn delete(&self, ids: &HashSet<String>) {
        self.state().messages.retain(|message| !ids.contains(&message.id));
    }

    fn is_empty(&self) -> bool {
        self.state().messages.is_empty()
    }

    /// Runs one poller per execution environment (as many as `MaximumConcurrency`) until the
    /// queue is empty or `give_up_after` has passed.
    pub async fn drain(
        self: &Arc<Self>,
        environments: Vec<Arc<dyn SqsHandler>>,
        give_up_after: Duration,
    ) -> DrainReport {
        let started = Instant::now();
        let deadline = started + give_up_after;
        let pollers: Vec<_> = environments
            .into_iter()
            .take(self.settings.maximum_concurrency)
            .map(|handler| {
                let queue = self.clone();
                tokio::spawn(async move { queue.poll(handler, deadline).await })
            })
            .collect();
        for poller in pollers {
            let _ = poller.await;
        }
        let elapsed = started.elapsed();
        let state = self.state();
        DrainReport {
            elapsed,
            invocations: state.invocations,
            receives: state.receives,
            highest_receive_count: state.highest_receive_count,
            dead_letters: state.dead_letters.iter().map(|m| m.body.clone()).collect(),
            left: state.messages.len(),
        }
    }

    async fn poll(&self, handler: Arc<dyn SqsHandler>, deadline: Instant) {
        while Instant::now() < deadline && !self.is_empty() {
            let batch = self.receive();
            if batch.is_empty() {
                // Everything left is invisible (in flight or given back); poll again shortly.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            let response = handler.handle(sqs_event(&batch)).await;
            let failed: HashSet<&str> =
                response.batch_item_failures.iter().map(|failure| failure.item_identifier.as_str()).collect();
            let done: HashSet<String> =
                batch.iter().filter(|m| !failed.contains(m.id.as_str())).map(|m| m.id.clone()).collect();
            self.delete(&done);
        }
    }
}

/// The event Lambda hands the function for a batch, as in `infra/events/signup-events.json`.
fn sqs_event(batch: &[Message]) -> SqsEvent {
    let now_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).to_string();
    let records: Vec<_> = batch
        .iter()
        .map(|message| {
            json!({
                "messageId": message.id,
                "receiptHandle": format!("{}-{}", message.id, message.receive_count),
                "body": message.body,
                "attributes": {
                    "ApproximateReceiveCount": message.receive_count.to_string(),
                    "SentTimestamp": now_ms,
                    "SenderId": "local",
                    "ApproximateFirstReceiveTimestamp": now_ms
                },
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:SignUpQueue",
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap_or_default()
}
