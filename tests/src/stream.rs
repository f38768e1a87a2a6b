//! The table's change stream and the event bus, locally: the stack reads the stream from moto
//! as Lambda's event source mapping does (in order, from the first record a batch names as
//! failed) and hands each batch to the change-events function in-process; what EventBridge
//! accepted is read back from moto's tap (`scripts/moto_server.py`).

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::{Context, bail};
use mailconfirm::StreamHandler;
use mailconfirm::app_events::StreamEvent;
use serde_json::{Value, json};
use tokio::sync::Mutex;

/// One call of an AWS JSON API on moto. moto reads the service from the credential scope and
/// does not check the signature, so none is computed.
pub async fn moto_call(
    http: &reqwest::Client,
    moto_url: &str,
    service: &str,
    target: &str,
    body: &Value,
) -> anyhow::Result<Value> {
    let response = http
        .post(format!("{moto_url}/"))
        .header("x-amz-target", target)
        .header("content-type", "application/x-amz-json-1.0")
        .header(
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0"
            ),
        )
        .body(body.to_string())
        .send()
        .await
        .with_context(|| format!("calling {target} on moto"))?;
    let status = response.status();
    let text = response.text().await?;
    if !status.is_success() {
        bail!("{target} answered {status}: {text}");
    }
    Ok(if text.trim().is_empty() { json!({}) } else { serde_json::from_str(&text)? })
}

/// Creates the event bus the stack's functions publish to (idempotent).
pub async fn create_event_bus(http: &reqwest::Client, moto_url: &str, name: &str) -> anyhow::Result<()> {
    if name == "default" {
        return Ok(());
    }
    match moto_call(http, moto_url, "events", "AWSEvents.CreateEventBus", &json!({ "Name": name })).await {
        Ok(_) => Ok(()),
        Err(err) if err.to_string().contains("ResourceAlreadyExists") => Ok(()),
        Err(err) => Err(err),
    }
}

/// The events EventBridge accepted on `bus`, in publish order, as
/// `{"source", "detail-type", "detail"}`.
pub async fn published_events(http: &reqwest::Client, moto_url: &str, bus: &str) -> anyhow::Result<Vec<Value>> {
    let tap: Value = http.get(format!("{moto_url}/_mailconfirm/events")).send().await?.json().await?;
    Ok(tap["events"]
        .as_array()
        .context("the tap's events")?
        .iter()
        .filter(|event| event["event-bus-name"] == bus)
        .map(|event| json!({ "source": event["source"], "detail-type": event["detail-type"], "detail": event["detail"] }))
        .collect())
}

/// Reads one table's stream and delivers it, in order, to the change-events function.
pub struct StreamPoller {
    http: reqwest::Client,
    moto_url: String,
    table: String,
    consumer: Arc<dyn StreamHandler>,
    /// The functions' clock, which dates the records (moto dates them by the real clock).
    clock: Arc<dyn mailconfirm::ports::Clock>,
    /// The last record delivered and answered as done; one delivery at a time, as Lambda
    /// runs one batch per shard at a time.
    position: Mutex<Option<String>>,
    /// Keys the local TTL sweep removed: their REMOVE records carry DynamoDB's service identity.
    removed_by_ttl: std::sync::Mutex<HashSet<String>>,
}

/// Records per batch, as the template's `BatchSize`.
const BATCH_SIZE: usize = 100;

impl StreamPoller {
    pub fn new(
        http: reqwest::Client,
        moto_url: String,
        table: String,
        consumer: Arc<dyn StreamHandler>,
        clock: Arc<dyn mailconfirm::ports::Clock>,
    ) -> Self {
        Self { http, moto_url, table, consumer, clock, position: Mutex::new(None), removed_by_ttl: Default::default() }
    }

    /// The function the stream is delivered to.
    pub fn consumer(&self) -> Arc<dyn StreamHandler> {
        self.consumer.clone()
    }

    /// Does what DynamoDB's TTL does, at once: deletes every item whose `expires_at` is past
    /// `now` (each conditioned on it still being past), as the TTL service, so the stream
    /// shows the removal with DynamoDB's identity. Returns how many it deleted.
    pub async fn expire(
        &self,
        dynamodb: &aws_sdk_dynamodb::Client,
        now: mailconfirm::domain::UnixTime,
    ) -> anyhow::Result<usize> {
        use aws_sdk_dynamodb::types::AttributeValue;
        let attribute = mailconfirm::store::TTL_ATTRIBUTE;
        let scanned = dynamodb
            .scan()
            .table_name(&self.table)
            .filter_expression(format!("{attribute} < :now"))
            .expression_attribute_values(":now", AttributeValue::N(now.0.to_string()))
            .send()
            .await
            .map_err(|err| anyhow::anyhow!(err.into_service_error()))
            .context("scanning for expired items")?;
        let mut deleted = 0;
        for item in scanned.items() {
            let Some(key) = item.get("pk").cloned() else { continue };
            let pk = key.as_s().cloned().unwrap_or_default();
            self.mark_removed_by_ttl(&pk);
            let result = dynamodb
                .delete_item()
                .table_name(&self.table)
                .key("pk", key)
                .condition_expression(format!("{attribute} < :now"))
                .expression_attribute_values(":now", AttributeValue::N(now.0.to_string()))
                .send()
                .await;
            match result {
                Ok(_) => deleted += 1,
                Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {}
                Err(err) => return Err(anyhow::anyhow!(err.into_service_error()).context("deleting an expired item")),
            }
        }
        Ok(deleted)
    }

    /// Marks a key whose removal is DynamoDB's TTL at work.
    pub fn mark_removed_by_ttl(&self, pk: &str) {
        if let Ok(mut keys) = self.removed_by_ttl.lock() {
            keys.insert(pk.to_owned());
        }
    }

    /// Delivers every record written so far; stops at a batch the function answers with a
    /// failure (that record comes first in the next delivery). Returns the records done.
    pub async fn deliver(&self) -> anyhow::Result<usize> {
        let mut position = self.position.lock().await;
        let stream_arn = self.stream_arn().await?;
        let mut done = 0;
        loop {
            let records = self.records_after(&stream_arn, position.as_deref()).await?;
            if records.is_empty() {
                return Ok(done);
            }
            let records: Vec<Value> =
                records.into_iter().take(BATCH_SIZE).map(|r| self.as_lambda_record(r, &stream_arn)).collect();
            let event: StreamEvent = serde_json::from_value(json!({ "Records": records })).context("a stream batch")?;
            let response = self.consumer.handle(event).await;
            let sequence = |record: &Value| record["dynamodb"]["SequenceNumber"].as_str().map(str::to_owned);
            match response.batch_item_failures.first() {
                None => {
                    done += records.len();
                    *position = records.last().and_then(sequence);
                }
                Some(failure) => {
                    // Retried from the named record: everything before it is done.
                    let index = records
                        .iter()
                        .position(|r| sequence(r).as_deref() == Some(failure.item_identifier.as_str()))
                        .context("the failure names a record of the batch")?;
                    done += index;
                    if index > 0 {
                        *position = records.get(index - 1).and_then(sequence);
                    }
                    return Ok(done);
                }
            }
        }
    }

    async fn stream_arn(&self) -> anyhow::Result<String> {
        let table = moto_call(
            &self.http,
            &self.moto_url,
            "dynamodb",
            "DynamoDB_20120810.DescribeTable",
            &json!({ "TableName": self.table }),
        )
        .await?;
        table["Table"]["LatestStreamArn"].as_str().map(str::to_owned).context("the table has no stream")
    }

    async fn records_after(&self, stream_arn: &str, after: Option<&str>) -> anyhow::Result<Vec<Value>> {
        let streams = "DynamoDBStreams_20120810";
        let stream = moto_call(
            &self.http,
            &self.moto_url,
            "dynamodb",
            &format!("{streams}.DescribeStream"),
            &json!({ "StreamArn": stream_arn }),
        )
        .await?;
        let shard =
            stream["StreamDescription"]["Shards"][0]["ShardId"].as_str().context("the stream's shard")?.to_owned();
        let mut request = json!({ "StreamArn": stream_arn, "ShardId": shard, "ShardIteratorType": "TRIM_HORIZON" });
        if let Some(sequence) = after {
            request["ShardIteratorType"] = json!("AFTER_SEQUENCE_NUMBER");
            request["SequenceNumber"] = json!(sequence);
        }
        let iterator =
            moto_call(&self.http, &self.moto_url, "dynamodb", &format!("{streams}.GetShardIterator"), &request).await?;
        let iterator = iterator["ShardIterator"].as_str().context("a shard iterator")?;
        let records = moto_call(
            &self.http,
            &self.moto_url,
            "dynamodb",
            &format!("{streams}.GetRecords"),
            &json!({ "ShardIterator": iterator, "Limit": BATCH_SIZE }),
        )
        .await?;
        Ok(records["Records"].as_array().cloned().unwrap_or_default())
    }

    /// A record as Lambda's event source mapping delivers it: with the stream's ARN, and on a
    /// TTL removal the service identity.
    fn as_lambda_record(&self, mut record: Value, stream_arn: &str) -> Value {
        record["eventSourceARN"] = json!(stream_arn);
        // Epoch seconds, as Lambda's records carry them, at the time the functions see.
        record["dynamodb"]["ApproximateCreationDateTime"] = json!(self.clock.now().0);
        let pk = record["dynamodb"]["Keys"]["pk"]["S"].as_str().unwrap_or_default().to_owned();
        let by_ttl = record["eventName"] == "REMOVE" && self.removed_by_ttl.lock().is_ok_and(|keys| keys.contains(&pk));
        if by_ttl {
            record["userIdentity"] = json!({ "type": "Service", "principalId": "dynamodb.amazonaws.com" });
        }
        record
    }
}
