//! The app's events: derived from the table's change stream (delivered by the local stack as
//! Lambda's event source mapping would) and published to EventBridge on moto.

use mailconfirm_local::fault_proxy::Fault;
use mailconfirm_local::harness::TestStack;
use mailconfirm_local::stream::{StreamPoller, published_events};
use serde_json::{Value, json};

fn kinds(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(kind, _)| kind.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_state_change_is_one_event_with_the_documented_detail() {
    let stack = TestStack::start().await;
    let email = stack.unique_email("Ada");
    let signed_up = json!({ "user_id": "ev-1", "email": email, "locale": "de", "client_id": "web" });
    assert!(stack.sign_up(signed_up).await.batch_item_failures.is_empty());
    let events = stack.events_of("ev-1").await;
    assert_eq!(kinds(&events), ["ConfirmationMailSent"]);
    let detail = &events[0].1;
    assert_eq!(detail["version"], 1);
    assert_eq!(detail["email"], email.as_str(), "the address as typed");
    assert_eq!((detail["client_id"].as_str(), detail["locale"].as_str()), (Some("web"), Some("de")));
    assert_eq!(detail["event_id"].as_str().map(str::len), Some(36));
    assert!(detail["occurred_at"].as_str().is_some_and(|at| at.ends_with('Z')), "{detail}");
    let all = stack.events().await;
    assert_eq!(all[0]["source"], "mailconfirm");

    // Confirmed by the page's button: `method` = link.
    let token = stack.latest_link_token(&email).await;
    let confirmed = stack
        .http
        .post(stack.url("/confirm-email"))
        .header("user-agent", "test-browser/1.0")
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(confirmed.status(), 200);
    let events = stack.events_of("ev-1").await;
    assert_eq!(kinds(&events), ["ConfirmationMailSent", "EmailConfirmed"]);
    assert_eq!(events[1].1["method"], "link");
    // Pressing Confirm again changes nothing, so nothing is published.
    let again = stack.http.post(stack.url("/confirm-email")).form(&[("token", token.as_str())]).send().await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(stack.events_of("ev-1").await.len(), 2);
    // The audit trail is on the user, not in any event.
    let stored = stack.stored_user("ev-1").await.unwrap();
    assert_eq!(stored["confirmed_user_agent"].as_s().unwrap(), "test-browser/1.0");
    assert_eq!(stored["confirmed_from_ip"].as_s().unwrap(), "127.0.0.1");
    assert!(!stored.contains_key("expires_at"));
    assert!(!events[1].1.to_string().contains("test-browser"));
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_api_confirmations_and_address_changes_say_how_and_from_what() {
    let stack = TestStack::start().await;
    let (user_id, email) = stack.signed_up_user(None).await;
    let token = stack.latest_link_token(&email).await;
    let verified =
        stack.http.post(stack.url(&format!("/api/auth/email/verification?token={token}"))).send().await.unwrap();
    assert_eq!(verified.status(), 200);
    let events = stack.events_of(&user_id).await;
    assert_eq!(kinds(&events), ["ConfirmationMailSent", "EmailConfirmed"]);
    assert_eq!(events[1].1["method"], "verify_api");

    // Mastodon's `email` parameter: the address changes and the new one is mailed.
    let (moved, old_email) = ("ev-moved", stack.unique_email("before"));
    let app_user = json!({ "user_id": moved, "email": old_email, "client_id": "app-1" });
    assert!(stack.sign_up(app_user).await.batch_item_failures.is_empty());
    let new_email = stack.unique_email("moved");
    let app_token =
        mailconfirm_local::server::mint_access_token(json!({ "sub": moved, "client_id": "app-1", "scope": "write" }));
    let changed = stack
        .http
        .post(stack.url("/api/v1/emails/confirmations"))
        .bearer_auth(app_token)
        .json(&json!({ "email": new_email }))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    let events = stack.events_of(moved).await;
    assert_eq!(kinds(&events), ["ConfirmationMailSent", "EmailAddressChanged", "ConfirmationMailSent"]);
    assert_eq!(events[1].1["previous_email"], old_email.as_str());
    assert_eq!(events[1].1["email"], new_email.as_str());
    assert_eq!(events[2].1["email"], new_email.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_that_did_not_happen_publish_nothing() {
    let stack = TestStack::start().await;
    let (user_id, email) = stack.signed_up_user(None).await;
    // The same address for another user: the transaction is cancelled.
    stack.sign_up(json!({ "user_id": "someone-else", "email": email })).await;
    // A resend inside the cooldown: the claim is refused.
    let token = stack.access_token(&user_id);
    let refused =
        stack.http.post(stack.url("/api/auth/email/verification/send")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(refused.status(), 429);
    let events = stack.events().await;
    let types: Vec<&str> = events.iter().filter_map(|e| e["detail-type"].as_str()).collect();
    assert_eq!(types, ["ConfirmationMailSent"], "{events:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_consumer_that_dies_after_publishing_publishes_the_same_event_ids_again() {
    let stack = TestStack::start().await;
    let (user_id, _) = stack.signed_up_user(None).await;
    let first = stack.events_of(&user_id).await;
    // Another environment that never recorded its progress: Lambda redelivers from the start.
    let replay = StreamPoller::new(
        reqwest::Client::new(),
        mailconfirm_local::stack::moto_url().unwrap(),
        stack.table.clone(),
        stack.api.stream.consumer(),
        stack.clock.clone(),
    );
    assert!(replay.deliver().await.unwrap() > 0);
    let again = stack.events_of(&user_id).await;
    assert_eq!(again.len(), 2 * first.len());
    assert_eq!(again[0].1["event_id"], again[first.len()].1["event_id"], "the duplicate carries the same id");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_publish_is_reported_for_retry_and_retried_without_changing_state() {
    let (stack, proxy) = TestStack::start_with_faults(|_| {}).await;
    let (user_id, _) = stack.signed_up_user(None).await;
    let stored_before = stack.stored_user(&user_id).await;
    let moto = mailconfirm_local::stack::moto_url().unwrap();
    let published = || published_events(&stack.http, &moto, &stack.api.event_bus);
    // The user's two inserts (no events), then the accepted mail's update (one event).
    let mut delivered = Vec::new();
    for fault in [Fault::dynamodb_internal(), Fault::dynamodb_throttled(), Fault::DropAfterForwarding] {
        proxy.inject("PutEvents", fault.clone(), 10);
        delivered.push(stack.api.stream.deliver().await.unwrap());
        proxy.clear();
        let taken = published().await.unwrap();
        match fault {
            // Applied, answer lost: taken, but the record is retried, so it goes out again.
            Fault::DropAfterForwarding => assert!(!taken.is_empty(), "{fault:?}"),
            _ => assert!(taken.is_empty(), "{fault:?}: nothing taken, {taken:?}"),
        }
    }
    delivered.push(stack.api.stream.deliver().await.unwrap());
    assert_eq!(delivered, [2, 0, 0, 1], "the record whose event was not taken is retried until it is");
    let events = stack.events_of(&user_id).await;
    let ids: Vec<&Value> = events.iter().map(|(_, detail)| &detail["event_id"]).collect();
    assert!(ids.windows(2).all(|pair| pair[0] == pair[1]), "one change, one id: {ids:?}");
    assert_eq!(stack.stored_user(&user_id).await, stored_before, "publishing writes nothing");
    assert!(proxy.count("PutEvents") >= 3);
}
