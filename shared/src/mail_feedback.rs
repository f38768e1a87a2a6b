//! SES's feedback on the mail sent, as the configuration set publishes it to SNS: a hard bounce
//! or a complaint for a user's current address marks the user undeliverable, which stops every
//! confirmation mail to it (each contract refuses in its own form) until the address changes.
//! A soft bounce, a delivery or a reject changes nothing.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use crate::config::ConfigError;
use crate::domain::{DeliveryState, EmailAddress};
use crate::metrics::{self, Metric};
use crate::ports::{Clock, DeliveryFeedback, DeliveryReport, UserReader};
use crate::usecases::error_chain;
use crate::wiring::{SnsHandler, Wiring};

/// An SNS delivery to Lambda.
#[derive(Debug, Deserialize)]
pub struct SnsEvent {
    #[serde(rename = "Records", default)]
    pub records: Vec<SnsRecord>,
}

#[derive(Debug, Deserialize)]
pub struct SnsRecord {
    #[serde(rename = "Sns")]
    pub sns: SnsMessage,
}

#[derive(Debug, Deserialize)]
pub struct SnsMessage {
    /// The SES notification, as JSON text.
    #[serde(rename = "Message")]
    pub message: String,
}

/// An SES notification: event publishing names its kind `eventType`, identity notifications
/// `notificationType`; both are read.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SesNotification {
    event_type: Option<String>,
    notification_type: Option<String>,
    bounce: Option<Bounce>,
    complaint: Option<Complaint>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bounce {
    bounce_type: String,
    bounce_sub_type: Option<String>,
    #[serde(default)]
    bounced_recipients: Vec<Recipient>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Complaint {
    complaint_feedback_type: Option<String>,
    #[serde(default)]
    complained_recipients: Vec<Recipient>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Recipient {
    email_address: String,
}

/// The recipients a notification makes undeliverable, with what SES said of each.
pub fn reports_of(message: &str) -> Result<Vec<(EmailAddress, DeliveryReport)>, serde_json::Error> {
    let notification: SesNotification = serde_json::from_str(message)?;
    let kind = notification.event_type.or(notification.notification_type).unwrap_or_default();
    let (state, kind, sub_kind, recipients) = match (kind.as_str(), notification.bounce, notification.complaint) {
        // Only a permanent bounce says the address will never take mail; a transient one
        // (mailbox full, greylisting) or an undetermined one may pass on a later try.
        ("Bounce", Some(bounce), _) if bounce.bounce_type == "Permanent" => {
            (DeliveryState::Bounced, Some(bounce.bounce_type), bounce.bounce_sub_type, bounce.bounced_recipients)
        }
        ("Complaint", _, Some(complaint)) => {
            (DeliveryState::Complained, None, complaint.complaint_feedback_type, complaint.complained_recipients)
        }
        _ => return Ok(Vec::new()),
    };
    let report = DeliveryReport { state, kind, sub_kind };
    Ok(recipients
        .iter()
        // SES may write `Name <address>`.
        .filter_map(|r| {
            let address = r.email_address.rsplit('<').next().unwrap_or_default().trim_end_matches('>').trim();
            EmailAddress::parse(address).ok()
        })
        .map(|address| (address, report.clone()))
        .collect())
}

/// Records bounces and complaints: one read (whose address it is) and one conditional write
/// per recipient.
pub struct MailFeedbackConsumer {
    users: Arc<dyn UserReader>,
    feedback: Arc<dyn DeliveryFeedback>,
    clock: Arc<dyn Clock>,
}

impl MailFeedbackConsumer {
    pub fn from_config(w: &Wiring<'_>) -> Result<Self, ConfigError> {
        let store = w.store()?;
        Ok(Self::new(store.clone(), store, w.clock.clone()))
    }

    pub fn new(users: Arc<dyn UserReader>, feedback: Arc<dyn DeliveryFeedback>, clock: Arc<dyn Clock>) -> Self {
        Self { users, feedback, clock }
    }

    /// Records every report of the event. An unreadable message is dropped (SNS would only give
    /// it again); a storage failure fails the invocation, so Lambda tries it again and then
    /// parks it in the function's dead-letter queue. A report recorded twice changes nothing.
    pub async fn record(&self, event: SnsEvent) -> anyhow::Result<usize> {
        let now = self.clock.now();
        let mut recorded = 0;
        for record in &event.records {
            let reports = match reports_of(&record.sns.message) {
                Ok(reports) => reports,
                Err(err) => {
                    // serde_json's message may quote the input, which holds addresses.
                    tracing::warn!(line = err.line(), column = err.column(), "not an SES notification; dropped");
                    continue;
                }
            };
            for (address, report) in reports {
                let Some(user_id) = self.users.find_user_id_by_email(&address).await? else {
                    tracing::info!(state = report.state.as_str(), "feedback for an address no user has");
                    continue;
                };
                if self.feedback.mark_undeliverable(&user_id, &address, &report, now).await? {
                    recorded += 1;
                    metrics::count(match report.state {
                        DeliveryState::Complained => Metric::MailsComplained,
                        _ => Metric::MailsBounced,
                    });
                    tracing::info!(user_id = %user_id, state = report.state.as_str(), "address marked undeliverable");
                }
            }
        }
        Ok(recorded)
    }
}

#[async_trait]
impl SnsHandler for MailFeedbackConsumer {
    async fn handle(&self, event: SnsEvent) -> anyhow::Result<()> {
        self.record(event).await.map(|_| ()).inspect_err(|err| {
            tracing::error!(error = %error_chain(err.as_ref()), "feedback could not be recorded; retried");
            metrics::count(Metric::StorageFailures);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_permanent_bounce_and_a_complaint_mark_their_recipients_and_nothing_else_does() {
        let hard = r#"{"eventType":"Bounce","bounce":{"bounceType":"Permanent","bounceSubType":"General",
            "bouncedRecipients":[{"emailAddress":"ada@example.org"},{"emailAddress":"Grace <grace@example.org>"}]},"mail":{}}"#;
        let reports = reports_of(hard).unwrap();
        let addresses: Vec<&str> = reports.iter().map(|(a, _)| a.normalized()).collect();
        assert_eq!(addresses, ["ada@example.org", "grace@example.org"]);
        assert_eq!(reports[0].1.state, DeliveryState::Bounced);
        assert_eq!(reports[0].1.sub_kind.as_deref(), Some("General"));
        let soft = hard.replace("Permanent", "Transient");
        assert!(reports_of(&soft).unwrap().is_empty());
        let complaint = r#"{"notificationType":"Complaint","complaint":{"complaintFeedbackType":"abuse",
            "complainedRecipients":[{"emailAddress":"ada@example.org"}]}}"#;
        let reports = reports_of(complaint).unwrap();
        assert_eq!((reports[0].1.state, reports[0].1.sub_kind.as_deref()), (DeliveryState::Complained, Some("abuse")));
        assert!(reports_of(r#"{"eventType":"Delivery","delivery":{}}"#).unwrap().is_empty());
        assert!(reports_of("not json").is_err());
    }
}
