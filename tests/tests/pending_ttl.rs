//! The life of a pending sign-up: `PENDING_SIGNUP_TTL_SECONDS` after it, a sign-up never
//! confirmed is removed by DynamoDB's TTL (simulated at the functions' clock), its address is
//! freed and `PendingSignUpExpired` goes out; no decision waits for TTL, which is lazy.

use mailconfirm_local::harness::TestStack;
use serde_json::json;

fn one_minute(env: &mut std::collections::HashMap<String, String>) {
    env.insert("PENDING_SIGNUP_TTL_SECONDS".into(), "60".into());
}

fn expires_at(item: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>) -> Option<i64> {
    item.get("expires_at").and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_sign_up_does_not_hold_its_address_even_before_ttl_removes_it() {
    let stack = TestStack::start_with(one_minute).await;
    let (first, email) = stack.signed_up_user(None).await;
    let stored = stack.stored_user(&first).await.unwrap();
    let now = stack.clock_now().0;
    assert!(expires_at(&stored).is_some_and(|at| (now + 59..=now + 61).contains(&at)), "{stored:?}");

    // Within its time the address is taken...
    let early = stack.sign_up(json!({ "user_id": "too-early", "email": email })).await;
    assert!(stack.stored_user("too-early").await.is_none(), "{early:?}");
    // ...after it, a new sign-up takes it over, though TTL has not removed the first yet.
    stack.clock.advance(120);
    let late = stack.sign_up(json!({ "user_id": "newcomer", "email": email })).await;
    assert!(late.batch_item_failures.is_empty(), "{late:?}");
    assert_eq!(stack.stored_status("newcomer").await.as_deref(), Some("EMAIL_CONFIRMATION_PENDING"));
    assert!(stack.stored_user(&first).await.is_none(), "the expired owner is gone");
    assert_eq!(stack.mails_to(&email).await.len(), 2, "the newcomer got its mail");
    let expired: Vec<String> = stack.events_of(&first).await.into_iter().map(|(kind, _)| kind).collect();
    assert_eq!(expired.last().map(String::as_str), Some("PendingSignUpExpired"), "{expired:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ttl_removes_the_sign_up_its_address_is_freed_and_the_app_is_told() {
    let stack = TestStack::start_with(one_minute).await;
    let (pending, email) = stack.signed_up_user(Some("de")).await;
    let (confirmed, confirmed_email) = stack.signed_up_user(None).await;
    let token = stack.latest_link_token(&confirmed_email).await;
    stack.http.post(stack.url("/confirm-email")).form(&[("token", token.as_str())]).send().await.unwrap();
    assert!(expires_at(&stack.stored_user(&confirmed).await.unwrap()).is_none(), "confirming clears the TTL");

    stack.clock.advance(120);
    assert!(stack.expire_ttl().await >= 1);
    assert!(stack.stored_user(&pending).await.is_none());
    assert_eq!(stack.stored_status(&confirmed).await.as_deref(), Some("ENABLED"), "a confirmed user stays");
    let events = stack.events_of(&pending).await;
    let (kind, detail) = events.last().unwrap();
    assert_eq!((kind.as_str(), detail["locale"].as_str()), ("PendingSignUpExpired", Some("de")));
    // The stream consumer released the look-up, so the address is plainly free.
    let lookup = stack
        .aws
        .dynamodb()
        .await
        .get_item()
        .table_name(&stack.table)
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(format!("EMAIL#{}", email.to_lowercase())))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    assert!(lookup.item().is_none(), "{lookup:?}");
    let again = stack.sign_up(json!({ "user_id": "second-try", "email": email })).await;
    assert!(again.batch_item_failures.is_empty());
    assert_eq!(stack.stored_status("second-try").await.as_deref(), Some("EMAIL_CONFIRMATION_PENDING"));
    // A confirmed owner holds its address whatever the clock says.
    stack.sign_up(json!({ "user_id": "thief", "email": confirmed_email })).await;
    assert!(stack.stored_user("thief").await.is_none());
}
