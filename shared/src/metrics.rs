//! CloudWatch metrics in the Embedded Metric Format (EMF): one JSON line per counted event on
//! stdout, which Lambda ships to CloudWatch Logs and CloudWatch turns into metrics. No client,
//! no API call, nothing that can fail or slow a request. Namespace `mailconfirm`; each metric
//! is published per service (`Service` = `mailconfirm`, what the template's alarms watch) and per
//! function (`Service`, `Function` = `AWS_LAMBDA_FUNCTION_NAME`, so per contract route).
//!
//! A small writer rather than a crate: the EMF crates on crates.io pull in a JSON builder or a
//! logging framework of their own; this is one `format!` of a fixed shape.

use std::sync::{Mutex, OnceLock};

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// SES accepted a confirmation mail.
    MailsSent,
    /// A confirmation mail could not be composed or sent (a failure of ours).
    MailsFailed,
    /// DynamoDB did not answer or answered an error (a failure of ours).
    StorageFailures,
    /// A request refused by a throttle.
    Throttled,
    /// A send refused because the user's cooldown runs.
    CooldownRefusals,
    /// An address confirmed.
    Confirmations,
    /// A hard bounce recorded on a user.
    MailsBounced,
    /// A complaint recorded on a user.
    MailsComplained,
    /// An event the bus took.
    EventsPublished,
    /// A batch of the change stream left to be retried because an event was not taken.
    EventsFailed,
    /// A command on the sign-up queue (resend, change_email) refused as its request deserved
    /// (cooldown, confirmed or unknown user, taken or undeliverable address, mail disabled):
    /// done, not delivered again.
    CommandsRefused,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::MailsSent => "MailsSent",
            Metric::MailsFailed => "MailsFailed",
            Metric::StorageFailures => "StorageFailures",
            Metric::Throttled => "Throttled",
            Metric::CooldownRefusals => "CooldownRefusals",
            Metric::Confirmations => "Confirmations",
            Metric::MailsBounced => "MailsBounced",
            Metric::MailsComplained => "MailsComplained",
            Metric::EventsPublished => "EventsPublished",
            Metric::EventsFailed => "EventsFailed",
            Metric::CommandsRefused => "CommandsRefused",
        }
    }
}

/// Counts one event.
pub fn count(metric: Metric) {
    let line = emf_line(metric, function_name(), now_millis());
    if let Ok(mut captured) = captured().lock()
        && let Some(lines) = captured.as_mut()
    {
        lines.push(line);
        return;
    }
    // One `println!` is one locked write: the line never interleaves with a log line.
    println!("{line}");
}

/// The EMF document of one count.
pub fn emf_line(metric: Metric, function: &str, timestamp_millis: u128) -> String {
    let name = metric.name();
    let function = serde_json::Value::String(function.to_owned());
    format!(
        "{{\"_aws\":{{\"Timestamp\":{timestamp_millis},\"CloudWatchMetrics\":[{{\"Namespace\":\"mailconfirm\",\
         \"Dimensions\":[[\"Service\"],[\"Service\",\"Function\"]],\"Metrics\":[{{\"Name\":\"{name}\",\"Unit\":\"Count\"}}]}}]}},\
         \"Service\":\"mailconfirm\",\"Function\":{function},\"{name}\":1}}"
    )
}

fn function_name() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "local".to_owned()))
}

fn now_millis() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or_default()
}

fn captured() -> &'static Mutex<Option<Vec<String>>> {
    static CAPTURED: Mutex<Option<Vec<String>>> = Mutex::new(None);
    &CAPTURED
}

/// From now on, counts in this process are kept for [`take_captured`] instead of printed: for
/// tests (each runs in its own process under nextest) and the local stack.
pub fn capture() {
    if let Ok(mut captured) = captured().lock() {
        captured.get_or_insert_with(Vec::new);
    }
}

/// The counts kept since [`capture`], by metric name, and forgets them.
pub fn take_captured() -> Vec<String> {
    captured().lock().ok().and_then(|mut captured| captured.as_mut().map(std::mem::take)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_is_one_valid_emf_document() {
        let line = emf_line(Metric::StorageFailures, "fn\"name", 1_700_000_000_000);
        let doc: serde_json::Value = serde_json::from_str(&line).unwrap();
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(doc["_aws"]["Timestamp"], 1_700_000_000_000u64);
        assert_eq!(directive["Namespace"], "mailconfirm");
        assert_eq!(directive["Metrics"][0]["Name"], "StorageFailures");
        assert_eq!(directive["Dimensions"], serde_json::json!([["Service"], ["Service", "Function"]]));
        assert_eq!(doc["StorageFailures"], 1);
        assert_eq!(doc["Service"], "mailconfirm");
        assert_eq!(doc["Function"], "fn\"name");
    }
}
