//! DynamoDB adapter. One table, partition key `pk`:
//! - `USER#<id>`: a user, with its cooldown end (`cooldown_until`) on the same item so that
//!   deciding and claiming a send is one conditional write that also returns the address;
//! - `EMAIL#<normalised address>`: which user owns an address (at most one);
//! - items with an `expires_at` attribute, which TTL removes (lazily, so reads check it too).

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, Put, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};

use async_trait::async_trait;

use crate::aws::AwsClients;
use crate::aws_error::redacted;
use crate::domain::{
    AddressTag, ClientId, CodeRecord, CodeState, ConfirmedBy, DeliveryState, EmailAddress, Locale, SendRequirements,
    SignUp, StoredCode, Throttle, ThrottleRule, Throttled, UnixTime, User, UserId, UserStatus,
};
use crate::ports::{
    AddressChangeRefusal, AddressRelease, Claim, ClaimCondition, ClaimId, Confirmations, CountedAttempt, CreateOutcome,
    DeliveryFeedback, DeliveryReport, RequestCounters, SendClaims, UserEraser, UserReader, UserRegistry,
};

type Item = HashMap<String, AttributeValue>;

const DYNAMODB: &str = "DynamoDB";

/// The attribute that the table's TTL setting reads.
pub const TTL_ATTRIBUTE: &str = "expires_at";

/// The table, behind every storage port.
pub struct DynamoStore {
    aws: Arc<AwsClients>,
    table: String,
    /// How long a pending user lives unconfirmed (its `expires_at`, which TTL reads).
    pending_ttl: std::time::Duration,
}

impl DynamoStore {
    pub fn new(aws: Arc<AwsClients>, table: String) -> Self {
        Self { aws, table, pending_ttl: std::time::Duration::from_secs(7 * 24 * 60 * 60) }
    }

    /// The same store, with pending users living `ttl` unconfirmed.
    pub fn with_pending_ttl(self, ttl: std::time::Duration) -> Self {
        Self { pending_ttl: ttl, ..self }
    }

    /// One item, read consistently: decisions never act on a stale copy.
    async fn read(&self, key: AttributeValue) -> anyhow::Result<Option<Item>> {
        let output = self
            .aws
            .dynamodb()
            .await
            .get_item()
            .table_name(&self.table)
            .key("pk", key)
            .consistent_read(true)
            .send()
            .await
            .map_err(|err| redacted(DYNAMODB, &err))?;
        Ok(output.item)
    }
}

#[async_trait]
impl UserReader for DynamoStore {
    async fn get_user(&self, user_id: &UserId) -> anyhow::Result<Option<User>> {
        let item = self.read(user_key(user_id)).await.context("reading a user")?;
        item.as_ref().map(user_from_item).transpose()
    }

    /// The user that owns an address, if any (one read).
    async fn find_user_id_by_email(&self, email: &EmailAddress) -> anyhow::Result<Option<UserId>> {
        let item = self.read(email_key(email)).await.context("looking up an address")?;
        let user_id = item.as_ref().and_then(|item| item.get("user_id")).and_then(|id| id.as_s().ok());
        user_id.map(|id| UserId::parse(id).context("stored user_id of an address")).transpose()
    }
}

#[async_trait]
impl UserRegistry for DynamoStore {
    /// Creates the user and its address look-up in one transaction; when `first_mail_until`
    /// is given, the sign-up mail's cooldown (and its code's digest) is claimed in the same write.
    async fn create_pending_user(
        &self,
        sign_up: &SignUp,
        now: UnixTime,
        first_mail_until: Option<UnixTime>,
        code: Option<&StoredCode>,
    ) -> anyhow::Result<CreateOutcome> {
        let user = User {
            id: sign_up.user_id.clone(),
            email: sign_up.email.clone(),
            status: UserStatus::EmailConfirmationPending,
            locale: sign_up.locale.clone(),
            client_id: sign_up.client_id.clone(),
            created_at: now,
            confirmed_at: None,
            cooldown_until: first_mail_until,
            last_mail_sent_at: None,
            delivery: DeliveryState::Ok,
        };
        let claim_id = first_mail_until.map(|_| ClaimId::random());
        let mut item = user_item(&user, now);
        // TTL removes a sign-up never confirmed; confirming removes the attribute.
        item.insert(TTL_ATTRIBUTE.into(), number(now.plus(self.pending_ttl).0));
        if let Some(id) = &claim_id {
            item.insert("claim_id".into(), AttributeValue::S(id.as_str().into()));
            if let Some(code) = code {
                item.insert(CODE_DIGEST.into(), AttributeValue::S(code.digest.clone()));
                item.insert(CODE_EXPIRES_AT.into(), number(code.expires_at.0));
            }
        }
        let put_user = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item.clone()))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .context("building the user put")?;
        let put_address = self
            .address_put(&user.email, &user.id)
            .condition_expression("attribute_not_exists(pk) OR user_id = :user_id")
            .expression_attribute_values(":user_id", AttributeValue::S(user.id.as_str().into()))
            .build()
            .context("building the address put")?;
        let result = self
            .aws
            .dynamodb()
            .await
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put_user).build())
            .transact_items(TransactWriteItem::builder().put(put_address).build())
            .send()
            .await;
        let created = |user: User| {
            let claim = first_mail_until.zip(claim_id.clone()).map(|(until, id)| Claim {
                // The claim was written with the user; before it, no cooldown existed.
                user: User { cooldown_until: None, ..user.clone() },
                until,
                id,
                previous_code: None,
            });
            CreateOutcome::Created { user, claim }
        };
        let (failure, err) = match result {
            Ok(_) => return Ok(created(user)),
            Err(err) => (redacted(DYNAMODB, &err), err.into_service_error()),
        };
        let TransactWriteItemsError::TransactionCanceledException(canceled) = &err else {
            return Err(failure.context("creating a pending user"));
        };
        let reasons = canceled.cancellation_reasons();
        let failed = |index: usize| reasons.get(index).and_then(|r| r.code()) == Some("ConditionalCheckFailed");
        if failed(0) {
            // ALL_OLD on condition failure: the reason carries the user that was there.
            let existing =
                reasons.first().and_then(|reason| reason.item()).context("the cancellation reason holds no user")?;
            // Our own transaction, applied once already and retried after its answer was lost.
            if claim_id.is_some() && claim_id_of(existing) == claim_id {
                return Ok(created(user_from_item(existing)?));
            }
            return Ok(CreateOutcome::Existing(user_from_item(existing)?));
        }
        if failed(1) {
            // TTL is lazy: an owner past its time to live may still be there. It does not hold
            // the address against a new sign-up.
            return match self.take_over_expired_address(&user, item, now).await? {
                true => Ok(created(user)),
                false => Ok(CreateOutcome::AddressTaken),
            };
        }
        Err(failure.context(format!("creating a pending user (cancelled: {})", reason_codes(canceled))))
    }

    /// Replaces a pending user's address, in one transaction with its look-ups: the new
    /// address must be free, links to the old one stop working (its tag changes), and the
    /// cooldown is reset, since the new address has not been sent anything yet.
    async fn change_pending_address(
        &self,
        user: &User,
        new: &EmailAddress,
        now: UnixTime,
    ) -> anyhow::Result<Result<(), AddressChangeRefusal>> {
        let user_id = AttributeValue::S(user.id.as_str().into());
        let update_user = Update::builder()
            .table_name(&self.table)
            .key("pk", user_key(&user.id))
            .update_expression(
                // A new address has bounced nothing yet.
                "SET email = :typed, email_normalized = :normalized, address_tag = :tag, updated_at = :now REMOVE cooldown_until, claim_id, previous_cooldown_until, delivery, delivery_type, delivery_sub_type, code_digest, code_expires_at, code_attempts",
            )
            .condition_expression("#status = :pending AND email_normalized = :old")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":pending", status_value(UserStatus::EmailConfirmationPending))
            .expression_attribute_values(":old", AttributeValue::S(user.email.normalized().into()))
            .expression_attribute_values(":typed", AttributeValue::S(new.as_typed().into()))
            .expression_attribute_values(":normalized", AttributeValue::S(new.normalized().into()))
            .expression_attribute_values(":tag", AttributeValue::S(new.tag().as_str().into()))
            .expression_attribute_values(":now", number(now.0))
            .build()
            .context("building the user update")?;
        let claim_new = self
            .address_put(new, &user.id)
            .condition_expression("attribute_not_exists(pk) OR user_id = :user_id")
            .expression_attribute_values(":user_id", user_id.clone())
            .build()
            .context("building the new address put")?;
        let release_old = Delete::builder()
            .table_name(&self.table)
            .key("pk", email_key(&user.email))
            .condition_expression("attribute_not_exists(pk) OR user_id = :user_id")
            .expression_attribute_values(":user_id", user_id)
            .build()
            .context("building the old address delete")?;
        let result = self
            .aws
            .dynamodb()
            .await
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(update_user).build())
            .transact_items(TransactWriteItem::builder().put(claim_new).build())
            .transact_items(TransactWriteItem::builder().delete(release_old).build())
            .send()
            .await;
        let (failure, err) = match result {
            Ok(_) => return Ok(Ok(())),
            Err(err) => (redacted(DYNAMODB, &err), err.into_service_error()),
        };
        let TransactWriteItemsError::TransactionCanceledException(canceled) = &err else {
            return Err(failure.context("changing a pending address"));
        };
        let failed = |index: usize| {
            canceled.cancellation_reasons().get(index).and_then(|r| r.code()) == Some("ConditionalCheckFailed")
        };
        if failed(1) {
            Ok(Err(AddressChangeRefusal::AddressTaken))
        } else if failed(0) || failed(2) {
            Ok(Err(AddressChangeRefusal::UserChanged))
        } else {
            Err(failure.context(format!("changing a pending address (cancelled: {})", reason_codes(canceled))))
        }
    }
}

impl DynamoStore {
    /// Creates `user` (its `item`) on an address whose owner is a pending sign-up past its time
    /// to live, or gone with its look-up left behind: one read of the look-up, one of the owner,
    /// and one transaction that removes the expired owner, moves the look-up and creates the
    /// user, each conditioned on what was read. `false`: the owner holds the address.
    async fn take_over_expired_address(&self, user: &User, item: Item, now: UnixTime) -> anyhow::Result<bool> {
        let lookup = self.read(email_key(&user.email)).await.context("reading the address look-up")?;
        let owner_id = lookup.as_ref().and_then(|l| l.get("user_id")).and_then(|id| id.as_s().ok()).cloned();
        let Some(owner_id) = owner_id else { return Ok(false) };
        let owner_key = AttributeValue::S(format!("{USER_KEY_PREFIX}{owner_id}"));
        let owner = self.read(owner_key.clone()).await.context("reading the address's owner")?;
        let expired = match &owner {
            None => true,
            Some(owner) => {
                let pending = owner.get("status").and_then(|s| s.as_s().ok()).map(String::as_str)
                    == Some(UserStatus::EmailConfirmationPending.as_str());
                let expires_at = stored_time(owner, TTL_ATTRIBUTE)?;
                pending && expires_at.is_some_and(|at| at <= now)
            }
        };
        if !expired {
            return Ok(false);
        }
        let owner_id = AttributeValue::S(owner_id);
        let mut transaction = self
            .aws
            .dynamodb()
            .await
            .transact_write_items()
            .transact_items(
                TransactWriteItem::builder()
                    .put(
                        Put::builder()
                            .table_name(&self.table)
                            .set_item(Some(item))
                            .condition_expression("attribute_not_exists(pk)")
                            .build()
                            .context("building the user put")?,
                    )
                    .build(),
            )
            .transact_items(
                TransactWriteItem::builder()
                    .put(
                        self.address_put(&user.email, &user.id)
                            .condition_expression("user_id = :owner")
                            .expression_attribute_values(":owner", owner_id)
                            .build()
                            .context("building the address put")?,
                    )
                    .build(),
            );
        if owner.is_some() {
            transaction = transaction.transact_items(
                TransactWriteItem::builder()
                    .delete(
                        Delete::builder()
                            .table_name(&self.table)
                            .key("pk", owner_key)
                            .condition_expression(format!("#status = :pending AND {TTL_ATTRIBUTE} <= :now"))
                            .expression_attribute_names("#status", "status")
                            .expression_attribute_values(":pending", status_value(UserStatus::EmailConfirmationPending))
                            .expression_attribute_values(":now", number(now.0))
                            .build()
                            .context("building the expired owner's delete")?,
                    )
                    .build(),
            );
        }
        match transaction.send().await {
            Ok(_) => Ok(true),
            Err(err) => {
                let failure = redacted(DYNAMODB, &err);
                match err.into_service_error() {
                    // Someone confirmed, took or freed the address meanwhile: it is not ours.
                    TransactWriteItemsError::TransactionCanceledException(_) => Ok(false),
                    _ => Err(failure.context("taking over an expired sign-up's address")),
                }
            }
        }
    }

    /// The look-up that says `user_id` owns `email`; the caller adds its condition.
    fn address_put(&self, email: &EmailAddress, user_id: &UserId) -> aws_sdk_dynamodb::types::builders::PutBuilder {
        Put::builder()
            .table_name(&self.table)
            .item("pk", email_key(email))
            .item("kind", AttributeValue::S("email".into()))
            .item("user_id", AttributeValue::S(user_id.as_str().into()))
    }
}

#[async_trait]
impl AddressRelease for DynamoStore {
    /// Removes the address look-up a removed user left behind, unless another user owns it now.
    async fn release_address(&self, user: &User) -> anyhow::Result<()> {
        let result = self
            .aws
            .dynamodb()
            .await
            .delete_item()
            .table_name(&self.table)
            .key("pk", email_key(&user.email))
            .condition_expression("user_id = :user_id")
            .expression_attribute_values(":user_id", AttributeValue::S(user.id.as_str().into()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(()),
            Err(err) => Err(redacted(DYNAMODB, &err).context("releasing an expired sign-up's address")),
        }
    }
}

#[async_trait]
impl SendClaims for DynamoStore {
    /// Decides and claims a send in one conditional write. `Err` carries the item the
    /// condition saw (`None`: no such user), for the caller to explain the refusal.
    async fn claim_send(
        &self,
        user_id: &UserId,
        now: UnixTime,
        until: UnixTime,
        condition: ClaimCondition,
        requirements: &SendRequirements<'_>,
        code: Option<&StoredCode>,
    ) -> anyhow::Result<Result<Claim, Option<User>>> {
        let cooldown_condition = match condition {
            ClaimCondition::CooldownOver => "(attribute_not_exists(cooldown_until) OR cooldown_until <= :now)",
            ClaimCondition::FirstMailNotAccepted => {
                "attribute_not_exists(last_mail_sent_at) AND (attribute_not_exists(cooldown_until) OR cooldown_until <= :now)"
            }
        };
        let id = ClaimId::random();
        // Deliverability before the cooldown, as `SendRefusal::decide` orders them.
        let mut conditions = format!(
            "attribute_exists(pk) AND #status = :pending AND (attribute_not_exists(delivery) OR delivery = :deliverable) AND {cooldown_condition}"
        );
        let mut request = self.aws.dynamodb().await.update_item();
        if let Some(client) = requirements.client {
            conditions.push_str(" AND client_id = :client");
            request = request.expression_attribute_values(":client", AttributeValue::S(client.as_str().into()));
        }
        if let Some(address) = requirements.address {
            conditions.push_str(" AND email_normalized = :address");
            request = request.expression_attribute_values(":address", AttributeValue::S(address.normalized().into()));
        }
        let mut handled = String::new();
        if let Some(command) = requirements.command {
            // A redelivered command whose mail was accepted sends nothing, whenever it comes:
            // the last claim was this command's and SES accepted it.
            conditions.push_str(
                " AND (attribute_not_exists(handled_command) OR handled_command <> :command \
                 OR attribute_not_exists(claim_id) OR attribute_not_exists(accepted_claim_id) \
                 OR accepted_claim_id <> claim_id)",
            );
            handled.push_str(", handled_command = :command");
            request = request.expression_attribute_values(":command", AttributeValue::S(command.into()));
        }
        // The new mail's code replaces the last one, whose attempts no longer count; a mail
        // without a code leaves none working.
        let code_update = match code {
            Some(code) => {
                request = request
                    .expression_attribute_values(":code_digest", AttributeValue::S(code.digest.clone()))
                    .expression_attribute_values(":code_expires_at", number(code.expires_at.0));
                format!(", {CODE_DIGEST} = :code_digest, {CODE_EXPIRES_AT} = :code_expires_at REMOVE {CODE_ATTEMPTS}")
            }
            None => format!(" REMOVE {CODE_DIGEST}, {CODE_EXPIRES_AT}, {CODE_ATTEMPTS}"),
        };
        let result = request
            .table_name(&self.table)
            .key("pk", user_key(user_id))
            // The cooldown it replaces is kept beside it, for a retry that meets its own claim.
            .update_expression(format!(
                "SET previous_cooldown_until = if_not_exists(cooldown_until, :none), cooldown_until = :until, \
                 claim_id = :claim, updated_at = :now{handled}{code_update}"
            ))
            .condition_expression(conditions)
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":pending", status_value(UserStatus::EmailConfirmationPending))
            .expression_attribute_values(":now", number(now.0))
            .expression_attribute_values(":until", number(until.0))
            .expression_attribute_values(":none", number(NO_COOLDOWN))
            .expression_attribute_values(":deliverable", AttributeValue::S(DeliveryState::Ok.as_str().into()))
            .expression_attribute_values(":claim", AttributeValue::S(id.as_str().into()))
            .return_values(ReturnValue::AllOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(output) => {
                let item = output.attributes().context("the claimed user came back empty")?;
                Ok(Ok(Claim { user: user_from_item(item)?, until, id, previous_code: stored_code_of(item)? }))
            }
            Err(err) => match refused_item(err, "claiming a send")? {
                // The SDK retried a write that had been applied: the claim is ours.
                Some(item) if claim_id_of(&item).as_ref() == Some(&id) => {
                    let mut user = user_from_item(&item)?;
                    user.cooldown_until = stored_time(&item, "previous_cooldown_until")?.filter(|t| t.0 != NO_COOLDOWN);
                    // The code it replaced is lost with the first answer: a release removes ours.
                    Ok(Ok(Claim { user, until, id, previous_code: None }))
                }
                seen => Ok(Err(seen.as_ref().map(user_from_item).transpose()?)),
            },
        }
    }

    /// Gives a claimed cooldown back after the mail could not be sent, restoring the end of
    /// the previous cooldown. Does nothing if another claim has replaced ours meanwhile.
    async fn release_send(&self, claim: &Claim) -> anyhow::Result<()> {
        let mut request = self.update_claimed(claim).await;
        let mut set = Vec::new();
        let mut remove = vec!["claim_id", "previous_cooldown_until"];
        match claim.user.cooldown_until {
            Some(previous) => {
                set.push("cooldown_until = :previous");
                request = request.expression_attribute_values(":previous", number(previous.0));
            }
            None => remove.push("cooldown_until"),
        }
        match &claim.previous_code {
            Some((code, attempts)) => {
                set.push(
                    "code_digest = :code_digest, code_expires_at = :code_expires_at, code_attempts = :code_attempts",
                );
                request = request
                    .expression_attribute_values(":code_digest", AttributeValue::S(code.digest.clone()))
                    .expression_attribute_values(":code_expires_at", number(code.expires_at.0))
                    .expression_attribute_values(":code_attempts", number(i64::from(*attempts)));
            }
            None => remove.extend([CODE_DIGEST, CODE_EXPIRES_AT, CODE_ATTEMPTS]),
        }
        let set = if set.is_empty() { String::new() } else { format!("SET {} ", set.join(", ")) };
        let request = request.update_expression(format!("{set}REMOVE {}", remove.join(", ")));
        unless_replaced(request.send().await).context("releasing a send claim")
    }

    async fn record_accepted(&self, claim: &Claim, now: UnixTime) -> anyhow::Result<()> {
        let request = self
            .update_claimed(claim)
            .await
            // Which claim's mail was accepted: the change stream tells two mails of one second apart.
            .update_expression("SET last_mail_sent_at = :now, accepted_claim_id = :claim")
            .expression_attribute_values(":now", number(now.0));
        unless_replaced(request.send().await).context("recording an accepted mail")
    }
}

impl DynamoStore {
    /// An update of the user that holds `claim`, applied only while the claim is still theirs.
    async fn update_claimed(&self, claim: &Claim) -> UpdateItemFluentBuilder {
        self.aws
            .dynamodb()
            .await
            .update_item()
            .table_name(&self.table)
            .key("pk", user_key(&claim.user.id))
            .condition_expression("claim_id = :claim")
            .expression_attribute_values(":claim", AttributeValue::S(claim.id.as_str().into()))
    }
}

/// A claim-conditioned write that found a newer claim (or an address change) in its place did
/// nothing, and that is right: the newer claim releases or records its own mail.
fn unless_replaced<T>(result: Result<T, SdkError<UpdateItemError, HttpResponse>>) -> anyhow::Result<()> {
    match result {
        Ok(_) => Ok(()),
        Err(err) if is_condition_failure(&err) => Ok(()),
        Err(err) => Err(redacted(DYNAMODB, &err)),
    }
}

#[async_trait]
impl Confirmations for DynamoStore {
    /// Confirms a pending user whose current address the link was sent to, in one
    /// conditional write. `Err` carries the item the condition saw.
    async fn confirm(
        &self,
        user_id: &UserId,
        address: &AddressTag,
        now: UnixTime,
        by: &ConfirmedBy,
    ) -> anyhow::Result<Result<User, Option<User>>> {
        let request = self
            .confirm_request(user_id, now, by)
            .await
            .condition_expression("attribute_exists(pk) AND #status = :pending AND address_tag = :tag")
            .expression_attribute_values(":tag", AttributeValue::S(address.as_str().into()));
        confirmed(request.send().await)
    }

    async fn confirm_without_link(
        &self,
        user_id: &UserId,
        now: UnixTime,
        by: &ConfirmedBy,
    ) -> anyhow::Result<Result<User, Option<User>>> {
        let request = self
            .confirm_request(user_id, now, by)
            .await
            .condition_expression("attribute_exists(pk) AND #status = :pending");
        confirmed(request.send().await)
    }

    /// Counts first, compares after: the attempt is added to `code_attempts` in the write that
    /// checks it is allowed, so concurrent guesses are counted one by one and at most
    /// `max_attempts` of them ever reach a comparison. A write that was applied but whose
    /// answer was lost is counted again by the SDK's retry: the safe direction.
    async fn count_code_attempt(
        &self,
        user_id: &UserId,
        now: UnixTime,
        max_attempts: u32,
    ) -> anyhow::Result<Result<CountedAttempt, Option<CodeState>>> {
        let result = self
            .aws
            .dynamodb()
            .await
            .update_item()
            .table_name(&self.table)
            .key("pk", user_key(user_id))
            .update_expression(format!("ADD {CODE_ATTEMPTS} :one"))
            .condition_expression(format!(
                "attribute_exists(pk) AND #status = :pending AND attribute_exists({CODE_DIGEST}) \
                 AND {CODE_EXPIRES_AT} >= :now \
                 AND (attribute_not_exists({CODE_ATTEMPTS}) OR {CODE_ATTEMPTS} < :max)"
            ))
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":pending", status_value(UserStatus::EmailConfirmationPending))
            .expression_attribute_values(":now", number(now.0))
            .expression_attribute_values(":one", number(1))
            .expression_attribute_values(":max", number(i64::from(max_attempts)))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(output) => {
                let item = output.attributes().context("the counted attempt came back empty")?;
                let digest = item
                    .get(CODE_DIGEST)
                    .and_then(|digest| digest.as_s().ok())
                    .context("the counted attempt has no code digest")?;
                let attempts = stored_count(item, CODE_ATTEMPTS)?.context("the counted attempt has no count")?;
                Ok(Ok(CountedAttempt { digest: digest.clone(), attempts }))
            }
            Err(err) => match refused_item(err, "counting a code attempt")? {
                None => Ok(Err(None)),
                Some(item) => Ok(Err(Some(code_state_of(&item)?))),
            },
        }
    }

    async fn confirm_with_code(
        &self,
        user_id: &UserId,
        digest: &str,
        now: UnixTime,
        by: &ConfirmedBy,
    ) -> anyhow::Result<Result<User, Option<User>>> {
        let request = self
            .confirm_request(user_id, now, by)
            .await
            .condition_expression(format!("attribute_exists(pk) AND #status = :pending AND {CODE_DIGEST} = :digest"))
            .expression_attribute_values(":digest", AttributeValue::S(digest.to_owned()));
        confirmed(request.send().await)
    }
}

impl DynamoStore {
    /// The write that confirms a user, recording how and from where; the caller adds its condition.
    async fn confirm_request(&self, user_id: &UserId, now: UnixTime, by: &ConfirmedBy) -> UpdateItemFluentBuilder {
        let mut set = "SET #status = :enabled, confirmed_at = :now, updated_at = :now, confirmed_via = :via".to_owned();
        let mut request = self.aws.dynamodb().await.update_item();
        if let Some(ip) = &by.source_ip {
            set.push_str(", confirmed_from_ip = :ip");
            request = request.expression_attribute_values(":ip", AttributeValue::S(ip.clone()));
        }
        if let Some(agent) = &by.user_agent {
            set.push_str(", confirmed_user_agent = :agent");
            request = request.expression_attribute_values(":agent", AttributeValue::S(agent.clone()));
        }
        request
            .table_name(&self.table)
            .key("pk", user_key(user_id))
            // A confirmed user is no pending sign-up: TTL must not remove it; nor has it a code.
            .update_expression(format!(
                "{set} REMOVE {TTL_ATTRIBUTE}, {CODE_DIGEST}, {CODE_EXPIRES_AT}, {CODE_ATTEMPTS}"
            ))
            .expression_attribute_values(":via", AttributeValue::S(by.method.as_str().into()))
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":pending", status_value(UserStatus::EmailConfirmationPending))
            .expression_attribute_values(":enabled", status_value(UserStatus::Enabled))
            .expression_attribute_values(":now", number(now.0))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
    }
}

/// The confirmed user, or the one the condition saw.
fn confirmed(
    result: Result<aws_sdk_dynamodb::operation::update_item::UpdateItemOutput, SdkError<UpdateItemError, HttpResponse>>,
) -> anyhow::Result<Result<User, Option<User>>> {
    match result {
        Ok(output) => {
            let item = output.attributes().context("the confirmed user came back empty")?;
            Ok(Ok(user_from_item(item)?))
        }
        Err(err) => Ok(Err(seen_on_refusal(err, "confirming a user")?)),
    }
}

#[async_trait]
impl DeliveryFeedback for DynamoStore {
    async fn mark_undeliverable(
        &self,
        user_id: &UserId,
        address: &EmailAddress,
        report: &DeliveryReport,
        now: UnixTime,
    ) -> anyhow::Result<bool> {
        let mut set = "SET delivery = :state, updated_at = :now".to_owned();
        let mut request = self.aws.dynamodb().await.update_item();
        for (attribute, value) in [("delivery_type", &report.kind), ("delivery_sub_type", &report.sub_kind)] {
            if let Some(value) = value {
                set.push_str(&format!(", {attribute} = :{attribute}"));
                request =
                    request.expression_attribute_values(format!(":{attribute}"), AttributeValue::S(value.clone()));
            }
        }
        let result = request
            .table_name(&self.table)
            .key("pk", user_key(user_id))
            .update_expression(set)
            // Only the address it was sent to, and only once: a later report changes nothing.
            .condition_expression(
                "email_normalized = :address AND (attribute_not_exists(delivery) OR delivery = :deliverable)",
            )
            .expression_attribute_values(":state", AttributeValue::S(report.state.as_str().into()))
            .expression_attribute_values(":address", AttributeValue::S(address.normalized().into()))
            .expression_attribute_values(":deliverable", AttributeValue::S(DeliveryState::Ok.as_str().into()))
            .expression_attribute_values(":now", number(now.0))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err) if is_condition_failure(&err) => Ok(false),
            Err(err) => Err(redacted(DYNAMODB, &err).context("recording a bounce or complaint")),
        }
    }
}

#[async_trait]
impl UserEraser for DynamoStore {
    async fn erase(&self, user: &User) -> anyhow::Result<bool> {
        let delete_user = Delete::builder()
            .table_name(&self.table)
            .key("pk", user_key(&user.id))
            .condition_expression("attribute_exists(pk) AND email_normalized = :address")
            .expression_attribute_values(":address", AttributeValue::S(user.email.normalized().into()))
            .build()
            .context("building the user delete")?;
        let delete_address = Delete::builder()
            .table_name(&self.table)
            .key("pk", email_key(&user.email))
            .condition_expression("attribute_not_exists(pk) OR user_id = :user_id")
            .expression_attribute_values(":user_id", AttributeValue::S(user.id.as_str().into()))
            .build()
            .context("building the address delete")?;
        let result = self
            .aws
            .dynamodb()
            .await
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().delete(delete_user).build())
            .transact_items(TransactWriteItem::builder().delete(delete_address).build())
            .send()
            .await;
        let (failure, err) = match result {
            Ok(_) => return Ok(true),
            Err(err) => (redacted(DYNAMODB, &err), err.into_service_error()),
        };
        let TransactWriteItemsError::TransactionCanceledException(canceled) = &err else {
            return Err(failure.context("erasing a user"));
        };
        let conditions_only = canceled
            .cancellation_reasons()
            .iter()
            .all(|r| matches!(r.code(), Some("ConditionalCheckFailed") | Some("None") | None));
        if conditions_only {
            Ok(false)
        } else {
            Err(failure.context(format!("erasing a user (cancelled: {})", reason_codes(canceled))))
        }
    }
}

#[async_trait]
impl RequestCounters for DynamoStore {
    /// Counts one request in a sliding log, in one conditional write: the times of the last
    /// `limit` counted requests are kept newest first in `t0`, `t1`, ..., each write shifts
    /// them by one, and the request is allowed while the oldest kept one is outside the window.
    /// A refused request is not counted, so a flood cannot push its wait further out.
    async fn count_request(&self, throttle: &Throttle, now: UnixTime) -> anyhow::Result<Result<(), Throttled>> {
        let rule = &throttle.rule;
        let log = SlidingLog::of(rule);
        let mut request = self.aws.dynamodb().await.update_item();
        if rule.log_length() > 1 {
            // DynamoDB refuses a value that no expression uses.
            request = request.expression_attribute_values(":never", number(0));
        }
        let result = request
            .table_name(&self.table)
            .key("pk", AttributeValue::S(throttle.key()))
            .update_expression(&log.update)
            .condition_expression(&log.condition)
            .expression_attribute_values(":now", number(now.0))
            .expression_attribute_values(":window_start", number(rule.window_start(now).0))
            .expression_attribute_values(":expires_at", number(now.plus(rule.window).0))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Ok(())),
            Err(err) => {
                let item = refused_item(err, "counting a throttled request")?;
                let oldest_kept = item.as_ref().map(|item| stored_time(item, &log.oldest)).transpose()?.flatten();
                match rule.decide(oldest_kept, now) {
                    Err(throttled) => Ok(Err(throttled)),
                    // The condition failed on an item the rule allows: only a clock that went
                    // back does that; refuse until the oldest leaves the window by our clock.
                    Ok(()) => Ok(Err(Throttled { rule: *rule, resets_at: now.plus(rule.window) })),
                }
            }
        }
    }
}

/// The expressions of a throttle's sliding log (see [`DynamoStore::count_request`]).
struct SlidingLog {
    update: String,
    condition: String,
    /// The attribute of the oldest kept time.
    oldest: String,
}

impl SlidingLog {
    fn of(rule: &ThrottleRule) -> Self {
        let length = rule.log_length();
        // Every operand of an update reads the item as it was, so this shifts the log by one.
        let mut update = String::from("SET t0 = :now, expires_at = :expires_at");
        for slot in 1..length {
            update.push_str(&format!(", t{slot} = if_not_exists(t{}, :never)", slot - 1));
        }
        let oldest = format!("t{}", length - 1);
        let condition = format!("attribute_not_exists({oldest}) OR {oldest} <= :window_start");
        Self { update, condition, oldest }
    }
}

/// A stored `previous_cooldown_until` that stands for "there was no cooldown".
const NO_COOLDOWN: i64 = 0;

/// The user item's one-time code: its keyed digest (never the code), its end, and the attempts
/// counted on it. Each claim of a mail writes the first two and removes the count.
const CODE_DIGEST: &str = "code_digest";
const CODE_EXPIRES_AT: &str = "code_expires_at";
const CODE_ATTEMPTS: &str = "code_attempts";

/// A user's code as a refused attempt saw it.
fn code_state_of(item: &Item) -> anyhow::Result<CodeState> {
    let status = item.get("status").and_then(|s| s.as_s().ok()).context("attribute status is missing")?;
    let status = UserStatus::parse(status).context("stored status is unknown")?;
    let code = match (item.get(CODE_DIGEST), stored_time(item, CODE_EXPIRES_AT)?) {
        (Some(_), Some(expires_at)) => {
            Some(CodeRecord { expires_at, attempts: stored_count(item, CODE_ATTEMPTS)?.unwrap_or(0) })
        }
        _ => None,
    };
    Ok(CodeState { status, code })
}

/// The code an item holds, with its attempts.
fn stored_code_of(item: &Item) -> anyhow::Result<Option<(StoredCode, u32)>> {
    let digest = item.get(CODE_DIGEST).and_then(|d| d.as_s().ok());
    match (digest, stored_time(item, CODE_EXPIRES_AT)?) {
        (Some(digest), Some(expires_at)) => {
            let attempts = stored_count(item, CODE_ATTEMPTS)?.unwrap_or(0);
            Ok(Some((StoredCode { digest: digest.clone(), expires_at }, attempts)))
        }
        _ => Ok(None),
    }
}

fn stored_count(item: &Item, name: &str) -> anyhow::Result<Option<u32>> {
    item.get(name)
        .map(|value| {
            let n = value.as_n().map_err(|_| anyhow!("attribute {name} is not a number"))?;
            n.parse().with_context(|| format!("attribute {name} is not a count"))
        })
        .transpose()
}

fn claim_id_of(item: &Item) -> Option<ClaimId> {
    item.get("claim_id").and_then(|id| id.as_s().ok()).map(|id| ClaimId::from_stored(id.clone()))
}

pub(crate) fn stored_time(item: &Item, name: &str) -> anyhow::Result<Option<UnixTime>> {
    item.get(name)
        .map(|value| {
            let n = value.as_n().map_err(|_| anyhow!("attribute {name} is not a number"))?;
            n.parse().map(UnixTime).with_context(|| format!("attribute {name} is not an integer"))
        })
        .transpose()
}

/// The item a failed condition saw (`None`: no item), or the error if the write failed for
/// another reason.
fn refused_item(err: SdkError<UpdateItemError, HttpResponse>, doing: &'static str) -> anyhow::Result<Option<Item>> {
    let failure = redacted(DYNAMODB, &err);
    match err.into_service_error() {
        UpdateItemError::ConditionalCheckFailedException(refusal) => Ok(refusal.item().cloned()),
        _ => Err(failure.context(doing)),
    }
}

/// The codes of a cancelled transaction's reasons (never their messages, which may quote items).
fn reason_codes(canceled: &aws_sdk_dynamodb::types::error::TransactionCanceledException) -> String {
    let codes: Vec<&str> = canceled.cancellation_reasons().iter().map(|r| r.code().unwrap_or("?")).collect();
    codes.join(", ")
}

/// The user a failed condition saw, or the error if the write failed for another reason.
fn seen_on_refusal(err: SdkError<UpdateItemError, HttpResponse>, doing: &'static str) -> anyhow::Result<Option<User>> {
    refused_item(err, doing)?.as_ref().map(user_from_item).transpose()
}

fn is_condition_failure(err: &SdkError<UpdateItemError, HttpResponse>) -> bool {
    err.as_service_error().is_some_and(UpdateItemError::is_conditional_check_failed_exception)
}

/// The key prefix of user items, which the change-stream consumer (and its event filter in the
/// template) tells apart from address look-ups and throttle logs.
pub const USER_KEY_PREFIX: &str = "USER#";

fn user_key(id: &UserId) -> AttributeValue {
    AttributeValue::S(format!("{USER_KEY_PREFIX}{}", id.as_str()))
}

fn email_key(email: &EmailAddress) -> AttributeValue {
    AttributeValue::S(format!("EMAIL#{}", email.normalized()))
}

fn number(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn status_value(status: UserStatus) -> AttributeValue {
    AttributeValue::S(status.as_str().into())
}

fn user_item(user: &User, now: UnixTime) -> Item {
    let mut item = Item::from([
        ("pk".to_owned(), user_key(&user.id)),
        ("kind".to_owned(), AttributeValue::S("user".into())),
        ("user_id".to_owned(), AttributeValue::S(user.id.as_str().into())),
        ("email".to_owned(), AttributeValue::S(user.email.as_typed().into())),
        ("email_normalized".to_owned(), AttributeValue::S(user.email.normalized().into())),
        ("address_tag".to_owned(), AttributeValue::S(user.email.tag().as_str().into())),
        ("status".to_owned(), status_value(user.status)),
        ("created_at".to_owned(), number(user.created_at.0)),
        ("updated_at".to_owned(), number(now.0)),
    ]);
    if let Some(locale) = &user.locale {
        item.insert("locale".into(), AttributeValue::S(locale.as_str().into()));
    }
    if let Some(client_id) = &user.client_id {
        item.insert("client_id".into(), AttributeValue::S(client_id.as_str().into()));
    }
    if let Some(until) = user.cooldown_until {
        item.insert("cooldown_until".into(), number(until.0));
    }
    item
}

fn required<'a>(name: &str, value: Option<&'a str>) -> anyhow::Result<&'a str> {
    value.with_context(|| format!("attribute {name} is missing"))
}

pub(crate) fn user_from_item(item: &Item) -> anyhow::Result<User> {
    let text = |name: &str| -> anyhow::Result<Option<&str>> {
        item.get(name)
            .map(|value| value.as_s().map(String::as_str).map_err(|_| anyhow!("attribute {name} is not a string")))
            .transpose()
    };
    let time = |name: &str| stored_time(item, name);
    let id = UserId::parse(required("user_id", text("user_id")?)?).context("stored user_id")?;
    let email = EmailAddress::parse(required("email", text("email")?)?).context("stored email")?;
    let status = UserStatus::parse(required("status", text("status")?)?).context("stored status is unknown")?;
    Ok(User {
        id,
        email,
        status,
        locale: text("locale")?.and_then(|tag| Locale::parse(tag).ok()),
        client_id: text("client_id")?.and_then(|id| ClientId::parse(id).ok()),
        created_at: time("created_at")?.context("attribute created_at is missing")?,
        confirmed_at: time("confirmed_at")?,
        cooldown_until: time("cooldown_until")?,
        last_mail_sent_at: time("last_mail_sent_at")?,
        delivery: text("delivery")?.and_then(DeliveryState::parse).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    //! The rare answers of DynamoDB that moto does not give on demand, through the SDK's mocks.

    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
    use aws_sdk_dynamodb::operation::update_item::{UpdateItemError, UpdateItemOutput};
    use aws_sdk_dynamodb::types::CancellationReason;
    use aws_sdk_dynamodb::types::error::{ConditionalCheckFailedException, TransactionCanceledException};
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    use super::*;

    fn store_answering(rules: &[&Rule]) -> DynamoStore {
        let dynamodb = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, rules);
        let sesv2 = aws_sdk_sesv2::Client::from_conf(
            aws_sdk_sesv2::Config::builder().behavior_version(aws_sdk_sesv2::config::BehaviorVersion::latest()).build(),
        );
        DynamoStore::new(Arc::new(AwsClients::from_clients(dynamodb, sesv2)), "table".into())
    }

    fn sign_up() -> SignUp {
        SignUp {
            user_id: UserId::parse("u-1").unwrap(),
            email: EmailAddress::parse("ada@example.org").unwrap(),
            locale: None,
            client_id: None,
            redirect_to: None,
        }
    }

    fn cancelled(codes: &[&str]) -> TransactWriteItemsError {
        let reasons = codes.iter().map(|code| CancellationReason::builder().code(*code).build()).collect();
        TransactWriteItemsError::TransactionCanceledException(
            TransactionCanceledException::builder().set_cancellation_reasons(Some(reasons)).build(),
        )
    }

    #[test]
    fn the_longest_sliding_log_fits_dynamodbs_expression_limit() {
        let rule = ThrottleRule {
            name: "ip",
            limit: crate::domain::throttle::MAX_THROTTLE_LIMIT,
            window: std::time::Duration::from_secs(60),
        };
        let log = SlidingLog::of(&rule);
        assert!(log.update.len() < 4096, "{} bytes", log.update.len());
        assert!(log.update.ends_with("t99 = if_not_exists(t98, :never)"), "{}", log.update);
        assert_eq!(log.oldest, "t99");
    }

    #[tokio::test]
    async fn a_transaction_cancelled_for_another_reason_than_a_condition_is_a_failure() {
        let rule = mock!(aws_sdk_dynamodb::Client::transact_write_items)
            .then_error(|| cancelled(&["ThrottlingError", "None"]));
        let store = store_answering(&[&rule]);
        let result = store.create_pending_user(&sign_up(), UnixTime(0), None, None).await;
        assert!(result.is_err(), "{result:?}");
    }

    #[tokio::test]
    async fn an_address_owned_by_another_user_is_told_apart_from_an_existing_user() {
        use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
        let rule = mock!(aws_sdk_dynamodb::Client::transact_write_items)
            .then_error(|| cancelled(&["None", "ConditionalCheckFailed"]));
        // The owner the look-up names is confirmed: it keeps the address.
        let lookup = mock!(aws_sdk_dynamodb::Client::get_item)
            .then_output(|| GetItemOutput::builder().item("user_id", AttributeValue::S("owner".into())).build());
        let owner = mock!(aws_sdk_dynamodb::Client::get_item)
            .then_output(|| GetItemOutput::builder().item("status", AttributeValue::S("ENABLED".into())).build());
        let store = store_answering(&[&rule, &lookup, &owner]);
        let result = store.create_pending_user(&sign_up(), UnixTime(0), None, None).await.unwrap();
        assert!(matches!(result, CreateOutcome::AddressTaken), "{result:?}");
    }

    #[tokio::test]
    async fn a_user_that_changed_between_read_and_write_is_reported_as_changed() {
        let rule = mock!(aws_sdk_dynamodb::Client::transact_write_items)
            .then_error(|| cancelled(&["ConditionalCheckFailed", "None", "None"]));
        let store = store_answering(&[&rule]);
        let user =
            User::pending(UserId::parse("u-1").unwrap(), EmailAddress::parse("ada@example.org").unwrap(), UnixTime(0));
        let new = EmailAddress::parse("new@example.org").unwrap();
        let result = store.change_pending_address(&user, &new, UnixTime(0)).await.unwrap();
        assert_eq!(result, Err(AddressChangeRefusal::UserChanged));
        let other = mock!(aws_sdk_dynamodb::Client::transact_write_items)
            .then_error(|| cancelled(&["None", "ValidationError", "None"]));
        let result = store_answering(&[&other]).change_pending_address(&user, &new, UnixTime(0)).await;
        assert!(result.is_err(), "a validation error is a failure, not a refusal: {result:?}");
    }

    #[tokio::test]
    async fn a_claim_refused_without_an_item_means_no_such_user_and_a_lost_item_is_a_failure() {
        let refused = mock!(aws_sdk_dynamodb::Client::update_item).then_error(|| {
            UpdateItemError::ConditionalCheckFailedException(ConditionalCheckFailedException::builder().build())
        });
        let empty = mock!(aws_sdk_dynamodb::Client::update_item).then_output(|| UpdateItemOutput::builder().build());
        let store = store_answering(&[&refused, &empty]);
        let user = UserId::parse("u-1").unwrap();
        let none = SendRequirements::default();
        let claimed = store
            .claim_send(&user, UnixTime(0), UnixTime(60), ClaimCondition::CooldownOver, &none, None)
            .await
            .unwrap();
        assert!(matches!(claimed, Err(None)), "{claimed:?}");
        let lost = store.claim_send(&user, UnixTime(0), UnixTime(60), ClaimCondition::CooldownOver, &none, None).await;
        assert!(lost.is_err(), "a claim that answers no item is not a claim: {lost:?}");
    }
}
