//! The CloudWatch metrics (EMF) each outcome counts, through the HTTP layer: a failure of ours
//! must be counted, since the handlers answer it themselves and Lambda sees no error.

use std::collections::HashMap;

use mailconfirm_local::fault_proxy::Fault;
use mailconfirm_local::harness::TestStack;
use reqwest::StatusCode;
use serde_json::Value;

/// How often each metric was counted since the last call, from the captured EMF lines.
fn counted() -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for line in mailconfirm::metrics::take_captured() {
        let doc: Value = serde_json::from_str(&line).expect("an EMF document");
        let name = doc["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"].as_str().expect("a metric").to_owned();
        assert_eq!(doc[&name], 1, "{line}");
        *counts.entry(name).or_default() += 1;
    }
    counts
}

fn only(name: &str) -> HashMap<String, usize> {
    HashMap::from([(name.to_owned(), 1)])
}

#[tokio::test(flavor = "multi_thread")]
async fn every_outcome_that_matters_in_production_is_counted_once() {
    mailconfirm::metrics::capture();
    let (stack, proxy) = TestStack::start_with_faults(|env| {
        env.insert("COOLDOWN_SECONDS".into(), "60".into());
        env.insert("RESEND_IP_LIMIT".into(), "1".into());
    })
    .await;
    let send = |user_id: &str| {
        stack.http.post(stack.url("/api/auth/email/verification/send")).bearer_auth(stack.access_token(user_id)).send()
    };
    let (user_id, email) = stack.signed_up_user(None).await;
    assert_eq!(counted(), only("MailsSent"), "the sign-up mail");

    assert_eq!(send(&user_id).await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(counted(), only("CooldownRefusals"));

    stack.clock.advance(61);
    proxy.inject("UpdateItem", Fault::dynamodb_internal(), 10);
    assert_eq!(send(&user_id).await.unwrap().status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(counted(), only("StorageFailures"));
    proxy.clear();

    proxy.inject("SendEmail", Fault::ses_message_rejected(&email), 1);
    assert_eq!(send(&user_id).await.unwrap().status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(counted(), only("MailsFailed"));
    proxy.clear();

    let token = stack.latest_link_token(&email).await;
    let confirmed = stack.http.post(stack.url(&format!("/api/auth/email/verification?token={token}"))).send().await;
    assert_eq!(confirmed.unwrap().status(), StatusCode::OK);
    assert_eq!(counted(), only("Confirmations"));

    for expected in [StatusCode::BAD_REQUEST, StatusCode::TOO_MANY_REQUESTS] {
        let resend = stack.http.post(stack.url("/api/users/resendconfirmation/nobody%40example.com")).send().await;
        assert_eq!(resend.unwrap().status(), expected);
    }
    assert_eq!(counted(), only("Throttled"));
}
