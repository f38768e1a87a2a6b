//! Events for the app, derived from the table's change stream: one per state change of a user,
//! published to EventBridge. Deriving them from the stream, not from the request handlers, is
//! what makes them exact: a record exists only for a write that happened, and a record stays in
//! the stream (retried, then parked in the on-failure queue) until its events are published.
//! Delivery is at least once; `event_id` is the same on every redelivery of a record.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::aws::AwsClients;
use crate::aws_error::redacted;
use crate::config::{self, ConfigError};
use crate::domain::{ConfirmMethod, UnixTime, User, UserStatus};
use crate::metrics::{self, Metric};
use crate::ports::{AddressRelease, Clock};
use crate::usecases::error_chain;
use crate::wiring::{StreamHandler, Wiring};

/// The version of [`EventDetail`]'s shape; a change that removes or renames a field raises it.
pub const DETAIL_VERSION: u32 = 1;

/// The `source` of every event unless `EVENT_SOURCE` says otherwise.
pub const DEFAULT_EVENT_SOURCE: &str = "mailconfirm";

/// What happened, as the event's `detail-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    ConfirmationMailSent,
    EmailConfirmed,
    EmailAddressChanged,
    ConfirmationMailBounced,
    ConfirmationMailComplained,
    PendingSignUpExpired,
    UserDeleted,
}

impl EventType {
    pub fn detail_type(self) -> &'static str {
        match self {
            EventType::ConfirmationMailSent => "ConfirmationMailSent",
            EventType::EmailConfirmed => "EmailConfirmed",
            EventType::EmailAddressChanged => "EmailAddressChanged",
            EventType::ConfirmationMailBounced => "ConfirmationMailBounced",
            EventType::ConfirmationMailComplained => "ConfirmationMailComplained",
            EventType::PendingSignUpExpired => "PendingSignUpExpired",
            EventType::UserDeleted => "UserDeleted",
        }
    }
}

/// The event's `detail`, version [`DETAIL_VERSION`] (README, "Events").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventDetail {
    /// The same for every delivery of this change: consumers drop duplicates by it.
    pub event_id: String,
    pub version: u32,
    pub user_id: String,
    /// The address as the person typed it (for `EmailAddressChanged`, the new one).
    pub email: String,
    pub client_id: Option<String>,
    pub locale: Option<String>,
    /// RFC 3339, UTC.
    pub occurred_at: String,
    /// `EmailConfirmed`: `link`, `verify_api` or `admin`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<ConfirmMethod>,
    /// `EmailAddressChanged`: the address before the change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_email: Option<String>,
    /// `ConfirmationMailBounced`: SES's `bounceType` and `bounceSubType`;
    /// `ConfirmationMailComplained`: SES's `complaintFeedbackType` as `sub_type`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bounce_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_type: Option<String>,
}

/// One event for the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppEvent {
    pub kind: EventType,
    pub detail: EventDetail,
}

/// Hands events to the bus.
#[async_trait]
pub trait EventPublisher: Send + Sync {
    /// Publishes up to [`MAX_EVENTS_PER_PUBLISH`] events; answers, per event in order, whether
    /// the bus took it. `Err`: the call failed and none can be counted as taken.
    async fn publish(&self, events: &[AppEvent]) -> anyhow::Result<Vec<bool>>;
}

/// EventBridge's `PutEvents` limit.
pub const MAX_EVENTS_PER_PUBLISH: usize = 10;

// ---------------------------------------------------------------------------------------------
// The stream's records, as Lambda delivers them.

/// A batch of the table's change records.
#[derive(Debug, Deserialize)]
pub struct StreamEvent {
    #[serde(rename = "Records", default)]
    pub records: Vec<StreamRecord>,
}

#[derive(Debug, Deserialize)]
pub struct StreamRecord {
    /// Unique per change and the same on every redelivery.
    #[serde(rename = "eventID")]
    pub event_id: String,
    #[serde(rename = "eventName")]
    pub event_name: String,
    pub dynamodb: StreamChange,
    /// Set on a removal by TTL: `{"type": "Service", "principalId": "dynamodb.amazonaws.com"}`.
    #[serde(rename = "userIdentity", default)]
    pub user_identity: Option<UserIdentity>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StreamChange {
    #[serde(default)]
    pub approximate_creation_date_time: Option<serde_json::Value>,
    /// What the partial batch response names to have the stream retried from here.
    pub sequence_number: String,
    #[serde(default)]
    pub keys: HashMap<String, serde_json::Value>,
    #[serde(default)]
    pub new_image: Option<HashMap<String, serde_json::Value>>,
    #[serde(default)]
    pub old_image: Option<HashMap<String, serde_json::Value>>,
}

#[derive(Debug, Deserialize)]
pub struct UserIdentity {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(rename = "principalId")]
    pub principal_id: String,
}

impl StreamRecord {
    fn removed_by_ttl(&self) -> bool {
        self.user_identity
            .as_ref()
            .is_some_and(|who| who.kind == "Service" && who.principal_id == "dynamodb.amazonaws.com")
    }

    /// When the change was written, if the record says (epoch seconds in Lambda's events).
    fn written_at(&self) -> Option<UnixTime> {
        let value = self.dynamodb.approximate_creation_date_time.as_ref()?;
        value.as_f64().map(|seconds| UnixTime(seconds as i64))
    }

    fn is_user(&self) -> bool {
        self.dynamodb
            .keys
            .get("pk")
            .and_then(|pk| pk.get("S"))
            .and_then(|pk| pk.as_str())
            .is_some_and(|pk| pk.starts_with(crate::store::USER_KEY_PREFIX))
    }
}

/// The events one change record stands for, in the order they happened; none for items that
/// are not users (address look-ups, throttle logs). `now` dates a removal the record does not date.
pub fn events_of(record: &StreamRecord, now: UnixTime) -> anyhow::Result<Vec<AppEvent>> {
    if !record.is_user() {
        return Ok(Vec::new());
    }
    let old = record.dynamodb.old_image.as_ref().map(image).transpose()?;
    let new = record.dynamodb.new_image.as_ref().map(image).transpose()?;
    let old_user = old.as_ref().map(crate::store::user_from_item).transpose().context("the old image")?;
    let new_user = new.as_ref().map(crate::store::user_from_item).transpose().context("the new image")?;
    let mut events = Vec::new();
    match (&old_user, &new_user) {
        (Some(old_user), None) => {
            let at = record.written_at().unwrap_or(now);
            // Removed by TTL, or by a new sign-up that took over the address of a pending user
            // past its time to live (TTL is lazy): either way, the sign-up expired.
            let expires_at = old
                .as_ref()
                .and_then(|item| crate::store::stored_time(item, crate::store::TTL_ATTRIBUTE).ok().flatten());
            let expired = record.removed_by_ttl() || expires_at.is_some_and(|expiry| expiry <= at);
            let kind = if expired && old_user.status == UserStatus::EmailConfirmationPending {
                EventType::PendingSignUpExpired
            } else {
                EventType::UserDeleted
            };
            events.push((kind, detail_of(record, kind, old_user, at)));
        }
        (old_user, Some(user)) => {
            let updated_at = new.as_ref().and_then(|item| crate::store::stored_time(item, "updated_at").ok().flatten());
            let at = updated_at.or(record.written_at()).unwrap_or(now);
            if let Some(old_user) = old_user
                && old_user.email.as_typed() != user.email.as_typed()
            {
                let mut detail = detail_of(record, EventType::EmailAddressChanged, user, at);
                detail.previous_email = Some(old_user.email.as_typed().to_owned());
                events.push((EventType::EmailAddressChanged, detail));
            }
            if let Some(sent_at) = user.last_mail_sent_at
                && newly_accepted(old.as_ref(), new.as_ref())
            {
                events.push((
                    EventType::ConfirmationMailSent,
                    detail_of(record, EventType::ConfirmationMailSent, user, sent_at),
                ));
            }
            let was_pending = old_user.as_ref().is_none_or(|u| u.status == UserStatus::EmailConfirmationPending);
            if was_pending && user.status == UserStatus::Enabled {
                let mut detail = detail_of(record, EventType::EmailConfirmed, user, user.confirmed_at.unwrap_or(at));
                let via = new.as_ref().and_then(|item| item.get("confirmed_via")).and_then(|v| v.as_s().ok());
                detail.method = Some(via.and_then(|via| ConfirmMethod::parse(via)).unwrap_or(ConfirmMethod::Link));
                events.push((EventType::EmailConfirmed, detail));
            }
            if let (Some(delivery), Some(item)) = (user_delivery_change(old.as_ref(), new.as_ref()), new.as_ref()) {
                let kind = match delivery {
                    DeliveryChange::Bounced => EventType::ConfirmationMailBounced,
                    DeliveryChange::Complained => EventType::ConfirmationMailComplained,
                };
                let mut detail = detail_of(record, kind, user, at);
                let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
                detail.bounce_type = text("delivery_type");
                detail.sub_type = text("delivery_sub_type");
                events.push((kind, detail));
            }
        }
        (None, None) => bail!("a change record without an image"),
    }
    Ok(events.into_iter().map(|(kind, detail)| AppEvent { kind, detail }).collect())
}

/// Whether this change records a mail accepted by SES: a new `accepted_claim_id` (one per mail,
/// where `last_mail_sent_at` alone may repeat within a second), or, on items written before it
/// existed, a new `last_mail_sent_at`.
fn newly_accepted(
    old: Option<&HashMap<String, AttributeValue>>,
    new: Option<&HashMap<String, AttributeValue>>,
) -> bool {
    let of = |item: Option<&HashMap<String, AttributeValue>>, name: &str| item.and_then(|item| item.get(name)).cloned();
    match of(new, "accepted_claim_id") {
        Some(accepted) => of(old, "accepted_claim_id").as_ref() != Some(&accepted),
        None => of(new, "last_mail_sent_at").is_some() && of(old, "last_mail_sent_at") != of(new, "last_mail_sent_at"),
    }
}

/// The user an expiry removed (a deletion removes its look-up in the same transaction).
fn removed_user(events: &[AppEvent], record: &StreamRecord) -> Option<User> {
    if !events.iter().any(|event| event.kind == EventType::PendingSignUpExpired) {
        return None;
    }
    let old = record.dynamodb.old_image.as_ref().and_then(|json| image(json).ok())?;
    crate::store::user_from_item(&old).ok()
}

enum DeliveryChange {
    Bounced,
    Complained,
}

/// A user's `delivery` state that turned bad with this change.
fn user_delivery_change(
    old: Option<&HashMap<String, AttributeValue>>,
    new: Option<&HashMap<String, AttributeValue>>,
) -> Option<DeliveryChange> {
    let state = |item: Option<&HashMap<String, AttributeValue>>| {
        item.and_then(|item| item.get("delivery")).and_then(|v| v.as_s().ok()).cloned()
    };
    let (before, after) = (state(old), state(new));
    if before == after {
        return None;
    }
    match after.as_deref() {
        Some("bounced") => Some(DeliveryChange::Bounced),
        Some("complained") => Some(DeliveryChange::Complained),
        _ => None,
    }
}

fn detail_of(record: &StreamRecord, kind: EventType, user: &User, at: UnixTime) -> EventDetail {
    EventDetail {
        event_id: event_id(&record.event_id, kind),
        version: DETAIL_VERSION,
        user_id: user.id.as_str().to_owned(),
        email: user.email.as_typed().to_owned(),
        client_id: user.client_id.as_ref().map(|id| id.as_str().to_owned()),
        locale: user.locale.as_ref().map(|locale| locale.as_str().to_owned()),
        occurred_at: crate::contracts::rfc3339(at),
        method: None,
        previous_email: None,
        bounce_type: None,
        sub_type: None,
    }
}

/// Derived from the record's id, which DynamoDB keeps across redeliveries, and the event's type
/// (one record can stand for two events): the same change always gives the same id.
fn event_id(record_id: &str, kind: EventType) -> String {
    let digest = Sha256::digest(format!("{record_id}/{}", kind.detail_type()).as_bytes());
    let hex: String = digest.iter().take(16).map(|byte| format!("{byte:02x}")).collect();
    // UUID-shaped (8-4-4-4-12), which consumers' schemas often expect of an id.
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

/// An image in DynamoDB's JSON (`{"S": "…"}`, `{"N": "…"}`, …) as the SDK's attribute values.
fn image(json: &HashMap<String, serde_json::Value>) -> anyhow::Result<HashMap<String, AttributeValue>> {
    json.iter()
        .map(|(name, value)| Ok((name.clone(), attribute(value).with_context(|| format!("attribute {name}"))?)))
        .collect()
}

fn attribute(value: &serde_json::Value) -> anyhow::Result<AttributeValue> {
    let object = value.as_object().filter(|o| o.len() == 1).context("not a typed attribute value")?;
    let (kind, inner) = object.iter().next().context("an empty attribute value")?;
    let text = || inner.as_str().map(str::to_owned).context("not a string");
    let texts = || -> anyhow::Result<Vec<String>> {
        inner
            .as_array()
            .context("not a list")?
            .iter()
            .map(|v| v.as_str().map(str::to_owned).context("not a string"))
            .collect()
    };
    let bytes = |text: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map(aws_sdk_dynamodb::primitives::Blob::new)
            .context("not base64")
    };
    Ok(match kind.as_str() {
        "S" => AttributeValue::S(text()?),
        "N" => AttributeValue::N(text()?),
        "BOOL" => AttributeValue::Bool(inner.as_bool().context("not a boolean")?),
        "NULL" => AttributeValue::Null(true),
        "B" => AttributeValue::B(bytes(&text()?)?),
        "SS" => AttributeValue::Ss(texts()?),
        "NS" => AttributeValue::Ns(texts()?),
        "BS" => AttributeValue::Bs(texts()?.iter().map(|t| bytes(t)).collect::<anyhow::Result<_>>()?),
        "L" => AttributeValue::L(
            inner.as_array().context("not a list")?.iter().map(attribute).collect::<anyhow::Result<_>>()?,
        ),
        "M" => {
            let map = inner.as_object().context("not a map")?;
            AttributeValue::M(map.iter().map(|(k, v)| Ok((k.clone(), attribute(v)?))).collect::<anyhow::Result<_>>()?)
        }
        other => return Err(anyhow!("unknown attribute type {other}")),
    })
}

// ---------------------------------------------------------------------------------------------
// The consumer.

/// The partial batch response of a stream consumer: Lambda retries the shard from the first
/// record named (stream records are ordered, so only the first failure counts).
#[derive(Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct StreamBatchResponse {
    #[serde(rename = "batchItemFailures")]
    pub batch_item_failures: Vec<StreamItemFailure>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct StreamItemFailure {
    #[serde(rename = "itemIdentifier")]
    pub item_identifier: String,
}

/// Publishes the events of the table's change stream.
pub struct ChangeStreamConsumer {
    publisher: Arc<dyn EventPublisher>,
    addresses: Arc<dyn AddressRelease>,
    clock: Arc<dyn Clock>,
}

impl ChangeStreamConsumer {
    pub fn from_config(w: &Wiring<'_>) -> Result<Self, ConfigError> {
        Ok(Self::new(Arc::new(EventBridgePublisher::from_config(w)?), w.store()?, w.clock.clone()))
    }

    pub fn new(publisher: Arc<dyn EventPublisher>, addresses: Arc<dyn AddressRelease>, clock: Arc<dyn Clock>) -> Self {
        Self { publisher, addresses, clock }
    }

    /// Publishes every record's events in order, ten to a call; at the first record that could
    /// not be read or whose events were not all taken, stops and names it, so the stream gives
    /// it (and what follows) again. Events of that record already taken go out again then, with
    /// the same `event_id`.
    pub async fn consume(&self, event: StreamEvent) -> StreamBatchResponse {
        let now = self.clock.now();
        let mut pending: Vec<(usize, AppEvent)> = Vec::new();
        let mut unreadable = None;
        for (index, record) in event.records.iter().enumerate() {
            match events_of(record, now) {
                Ok(events) => {
                    // A removed user's address look-up goes with it (conditioned on still being
                    // its own), before the event says the address is free.
                    if let Some(user) = removed_user(&events, record)
                        && let Err(err) = self.addresses.release_address(&user).await
                    {
                        tracing::error!(error = %error_chain(err.as_ref()), "an address could not be released");
                        unreadable = Some(index);
                        break;
                    }
                    pending.extend(events.into_iter().map(|event| (index, event)));
                }
                Err(err) => {
                    tracing::error!(error = %error_chain(err.as_ref()), sequence_number = %record.dynamodb.sequence_number, "a change record could not be read");
                    unreadable = Some(index);
                    break;
                }
            }
        }
        let mut first_failed = unreadable;
        for chunk in pending.chunks(MAX_EVENTS_PER_PUBLISH) {
            let events: Vec<AppEvent> = chunk.iter().map(|(_, event)| event.clone()).collect();
            let taken = match self.publisher.publish(&events).await {
                Ok(taken) => taken,
                Err(err) => {
                    tracing::error!(error = %error_chain(err.as_ref()), "events could not be published");
                    vec![false; events.len()]
                }
            };
            let failed = chunk.iter().zip(taken.iter().chain(std::iter::repeat(&false))).find(|(_, taken)| !**taken);
            for ((_, event), taken) in chunk.iter().zip(taken.iter()) {
                if *taken {
                    metrics::count(Metric::EventsPublished);
                    tracing::info!(detail_type = event.kind.detail_type(), event_id = %event.detail.event_id, "event published");
                }
            }
            if let Some(((index, _), _)) = failed {
                metrics::count(Metric::EventsFailed);
                first_failed = Some(first_failed.map_or(*index, |earlier| earlier.min(*index)));
                break;
            }
        }
        let batch_item_failures = first_failed
            .and_then(|index| event.records.get(index))
            .map(|record| StreamItemFailure { item_identifier: record.dynamodb.sequence_number.clone() })
            .into_iter()
            .collect();
        StreamBatchResponse { batch_item_failures }
    }
}

#[async_trait]
impl StreamHandler for ChangeStreamConsumer {
    async fn handle(&self, event: StreamEvent) -> StreamBatchResponse {
        self.consume(event).await
    }
}

/// EventBridge, on the bus `EVENT_BUS_NAME` (default: the account's `default` bus), with
/// `source` `EVENT_SOURCE` (default `mailconfirm`).
pub struct EventBridgePublisher {
    aws: Arc<AwsClients>,
    bus: String,
    source: String,
}

impl EventBridgePublisher {
    pub fn from_config(w: &Wiring<'_>) -> Result<Self, ConfigError> {
        let bus = config::optional(w.config, "EVENT_BUS_NAME").unwrap_or_else(|| "default".to_owned());
        let source = config::optional(w.config, "EVENT_SOURCE").unwrap_or_else(|| DEFAULT_EVENT_SOURCE.to_owned());
        if source.starts_with("aws.") {
            return Err(ConfigError::invalid("EVENT_SOURCE", "a source starting with \"aws.\" is reserved for AWS"));
        }
        Ok(Self { aws: w.aws.clone(), bus, source })
    }
}

#[async_trait]
impl EventPublisher for EventBridgePublisher {
    async fn publish(&self, events: &[AppEvent]) -> anyhow::Result<Vec<bool>> {
        use aws_sdk_eventbridge::types::PutEventsRequestEntry;
        let mut request = self.aws.eventbridge().await.put_events();
        for event in events {
            request = request.entries(
                PutEventsRequestEntry::builder()
                    .event_bus_name(&self.bus)
                    .source(&self.source)
                    .detail_type(event.kind.detail_type())
                    .detail(serde_json::to_string(&event.detail).context("serialising an event")?)
                    .build(),
            );
        }
        let output = request.send().await.map_err(|err| redacted("EventBridge", &err)).context("publishing events")?;
        let entries = output.entries();
        if entries.len() != events.len() {
            bail!("EventBridge answered {} entries for {} events", entries.len(), events.len());
        }
        Ok(entries.iter().map(|entry| entry.error_code().is_none()).collect())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn user_image(extra: serde_json::Value) -> serde_json::Value {
        let mut image = json!({
            "pk": {"S": "USER#u-1"}, "kind": {"S": "user"}, "user_id": {"S": "u-1"},
            "email": {"S": "Ada@Example.org"}, "email_normalized": {"S": "ada@example.org"},
            "address_tag": {"S": "t"}, "status": {"S": "EMAIL_CONFIRMATION_PENDING"},
            "created_at": {"N": "1000"}, "updated_at": {"N": "1000"}, "locale": {"S": "de"},
            "client_id": {"S": "web"}
        });
        for (key, value) in extra.as_object().unwrap() {
            image[key] = value.clone();
        }
        image
    }

    fn record(name: &str, old: Option<serde_json::Value>, new: Option<serde_json::Value>) -> StreamRecord {
        let mut change =
            json!({"SequenceNumber": "42", "Keys": {"pk": {"S": "USER#u-1"}}, "ApproximateCreationDateTime": 2000.0});
        if let Some(old) = old {
            change["OldImage"] = old;
        }
        if let Some(new) = new {
            change["NewImage"] = new;
        }
        serde_json::from_value(json!({"eventID": "rec-1", "eventName": name, "dynamodb": change})).unwrap()
    }

    fn kinds(events: &[AppEvent]) -> Vec<&'static str> {
        events.iter().map(|e| e.kind.detail_type()).collect()
    }

    #[test]
    fn a_sign_up_is_no_event_and_its_accepted_mail_is_one() {
        let created = record("INSERT", None, Some(user_image(json!({"cooldown_until": {"N": "1060"}}))));
        assert!(events_of(&created, UnixTime(0)).unwrap().is_empty());
        let sent = record(
            "MODIFY",
            Some(user_image(json!({}))),
            Some(user_image(json!({"last_mail_sent_at": {"N": "1001"}}))),
        );
        let events = events_of(&sent, UnixTime(0)).unwrap();
        assert_eq!(kinds(&events), ["ConfirmationMailSent"]);
        let detail = &events[0].detail;
        assert_eq!(
            (detail.user_id.as_str(), detail.email.as_str(), detail.client_id.as_deref(), detail.locale.as_deref()),
            ("u-1", "Ada@Example.org", Some("web"), Some("de"))
        );
        assert_eq!(detail.occurred_at, "1970-01-01T00:16:41Z");
        assert_eq!(detail.version, DETAIL_VERSION);
        // A claim that changes only the cooldown is no event.
        let claimed =
            record("MODIFY", Some(user_image(json!({}))), Some(user_image(json!({"cooldown_until": {"N": "5"}}))));
        assert!(events_of(&claimed, UnixTime(0)).unwrap().is_empty());
    }

    #[test]
    fn a_confirmation_names_its_method_and_an_address_change_its_previous_address() {
        let confirmed = record(
            "MODIFY",
            Some(user_image(json!({}))),
            Some(user_image(
                json!({"status": {"S": "ENABLED"}, "confirmed_at": {"N": "1500"}, "confirmed_via": {"S": "verify_api"}}),
            )),
        );
        let events = events_of(&confirmed, UnixTime(0)).unwrap();
        assert_eq!(kinds(&events), ["EmailConfirmed"]);
        assert_eq!(events[0].detail.method, Some(ConfirmMethod::VerifyApi));
        let json = serde_json::to_value(&events[0].detail).unwrap();
        assert_eq!(json["method"], "verify_api");
        assert!(json.get("previous_email").is_none(), "fields of other types are left out: {json}");
        let changed = record(
            "MODIFY",
            Some(user_image(json!({}))),
            Some(user_image(json!({"email": {"S": "new@example.org"}, "email_normalized": {"S": "new@example.org"}}))),
        );
        let events = events_of(&changed, UnixTime(0)).unwrap();
        assert_eq!(kinds(&events), ["EmailAddressChanged"]);
        assert_eq!(events[0].detail.email, "new@example.org");
        assert_eq!(events[0].detail.previous_email.as_deref(), Some("Ada@Example.org"));
    }

    #[test]
    fn a_removal_by_ttl_is_an_expiry_and_any_other_removal_a_deletion() {
        let mut expired = record("REMOVE", Some(user_image(json!({}))), None);
        assert_eq!(kinds(&events_of(&expired, UnixTime(0)).unwrap()), ["UserDeleted"]);
        expired.user_identity =
            Some(UserIdentity { kind: "Service".into(), principal_id: "dynamodb.amazonaws.com".into() });
        let events = events_of(&expired, UnixTime(0)).unwrap();
        assert_eq!(kinds(&events), ["PendingSignUpExpired"]);
        assert_eq!(events[0].detail.occurred_at, "1970-01-01T00:33:20Z", "dated by the record");
    }

    #[test]
    fn the_event_id_is_stable_per_record_and_type_and_other_items_give_no_events() {
        let sent = |id: &str| {
            let mut r = record(
                "MODIFY",
                Some(user_image(json!({}))),
                Some(user_image(json!({"last_mail_sent_at": {"N": "1001"}}))),
            );
            r.event_id = id.into();
            events_of(&r, UnixTime(0)).unwrap().remove(0).detail.event_id
        };
        assert_eq!(sent("a"), sent("a"));
        assert_ne!(sent("a"), sent("b"));
        assert_eq!(sent("a").len(), 36);
        let mut address =
            record("INSERT", None, Some(json!({"pk": {"S": "EMAIL#ada@example.org"}, "user_id": {"S": "u-1"}})));
        address.dynamodb.keys = HashMap::from([("pk".to_owned(), json!({"S": "EMAIL#ada@example.org"}))]);
        assert!(events_of(&address, UnixTime(0)).unwrap().is_empty());
        let broken = record("MODIFY", Some(json!({"pk": {"S": "USER#u-1"}})), Some(json!({"pk": {"Q": 1}})));
        assert!(events_of(&broken, UnixTime(0)).is_err());
    }

    /// A bus that takes what its script says, recording what it was given.
    struct ScriptedBus {
        answers: std::sync::Mutex<Vec<anyhow::Result<Vec<bool>>>>,
        given: std::sync::Mutex<Vec<Vec<String>>>,
    }

    #[async_trait]
    impl EventPublisher for ScriptedBus {
        async fn publish(&self, events: &[AppEvent]) -> anyhow::Result<Vec<bool>> {
            self.given.lock().unwrap().push(events.iter().map(|e| e.detail.event_id.clone()).collect());
            let mut answers = self.answers.lock().unwrap();
            if answers.is_empty() { Ok(vec![true; events.len()]) } else { answers.remove(0) }
        }
    }

    fn sent_record(seq: &str, at: u32) -> serde_json::Value {
        json!({"eventID": format!("r{seq}"), "eventName": "MODIFY", "dynamodb": {
            "SequenceNumber": seq, "Keys": {"pk": {"S": "USER#u-1"}},
            "OldImage": user_image(json!({})), "NewImage": user_image(json!({"last_mail_sent_at": {"N": at.to_string()}}))}})
    }

    struct NoAddresses;

    #[async_trait]
    impl AddressRelease for NoAddresses {
        async fn release_address(&self, _user: &User) -> anyhow::Result<()> {
            Ok(())
        }
    }

    fn consumer(answers: Vec<anyhow::Result<Vec<bool>>>) -> (ChangeStreamConsumer, Arc<ScriptedBus>) {
        let bus = Arc::new(ScriptedBus { answers: answers.into(), given: Default::default() });
        (ChangeStreamConsumer::new(bus.clone(), Arc::new(NoAddresses), Arc::new(crate::ports::SystemClock)), bus)
    }

    #[tokio::test]
    async fn the_first_record_whose_event_was_not_taken_is_named_for_retry() {
        let records: Vec<_> = (1..=12).map(|n| sent_record(&n.to_string(), 1000 + n)).collect();
        let batch = || serde_json::from_value::<StreamEvent>(json!({"Records": records})).unwrap();
        let (all_taken, bus) = consumer(vec![]);
        assert_eq!(all_taken.consume(batch()).await, StreamBatchResponse::default());
        assert_eq!(bus.given.lock().unwrap().iter().map(Vec::len).collect::<Vec<_>>(), [10, 2], "ten to a call");
        // The 4th event of the second call refused: records 1-10 are done, 11 is retried.
        let (refused, _) = consumer(vec![Ok(vec![true; 10]), Ok(vec![false, true])]);
        let failures = refused.consume(batch()).await.batch_item_failures;
        assert_eq!(failures, [StreamItemFailure { item_identifier: "11".into() }]);
        let (down, bus) = consumer(vec![Err(anyhow!("timed out"))]);
        let failures = down.consume(batch()).await.batch_item_failures;
        assert_eq!(failures, [StreamItemFailure { item_identifier: "1".into() }]);
        assert_eq!(bus.given.lock().unwrap().len(), 1, "nothing after the first failure");
    }

    #[tokio::test]
    async fn an_unreadable_record_is_retried_and_those_before_it_published() {
        let mut records = vec![sent_record("1", 1001), sent_record("2", 1002)];
        records[1]["dynamodb"]["NewImage"] = json!({"pk": {"S": "USER#u-1"}, "status": {"S": "?"}});
        let (consumer, bus) = consumer(vec![]);
        let failures = consumer.consume(serde_json::from_value(json!({"Records": records})).unwrap()).await;
        assert_eq!(failures.batch_item_failures, [StreamItemFailure { item_identifier: "2".into() }]);
        assert_eq!(bus.given.lock().unwrap().concat().len(), 1);
    }
}
