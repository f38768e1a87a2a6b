//! SES's feedback: a hard bounce or a complaint for a user's current address stops every
//! confirmation mail to it, each contract saying so in its own form, until the address changes.

use mailconfirm_local::harness::TestStack;
use mailconfirm_local::server::mint_access_token;
use serde_json::{Value, json};

async fn body_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn fast(env: &mut std::collections::HashMap<String, String>) {
    env.insert("COOLDOWN_SECONDS".into(), "1".into());
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_hard_bounce_every_contract_refuses_in_its_own_form() {
    let stack = TestStack::start_with(fast).await;
    let (user_id, email) = stack.signed_up_user(None).await;
    stack.ses_feedback(&email, Some("Permanent")).await;
    stack.clock.advance(5);
    let mails_before = stack.mails_to(&email).await.len();

    // Singularity.
    let token = stack.access_token(&user_id);
    let sent = stack.http.post(stack.url("/api/auth/email/verification/send")).bearer_auth(&token).send().await;
    let (status, body) = body_of(sent.unwrap()).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("EMAIL_UNDELIVERABLE")), "{body}");
    // Backendless.
    let resent = stack.http.post(stack.url(&format!("/api/users/resendconfirmation/{email}"))).send().await;
    let (status, body) = body_of(resent.unwrap()).await;
    assert_eq!((status, body["code"].as_u64()), (400, Some(3130)), "{body}");
    // The confirm page's "send me a new link" keeps its uniform answer.
    let expired = stack.link_token_issued_at(&user_id, &email, "en", 1_700_000_000);
    let asked = stack
        .http
        .post(stack.url("/confirm-email"))
        .form(&[("token", expired.as_str()), ("action", "send-new-link")])
        .send()
        .await
        .unwrap();
    assert_eq!(asked.status(), 200);
    assert_eq!(stack.mails_to(&email).await.len(), mails_before, "nothing was sent to the bounced address");

    let user = stack.stored_user(&user_id).await.unwrap();
    assert_eq!(user["delivery"].as_s().unwrap(), "bounced");
    let events = stack.events_of(&user_id).await;
    let bounced: Vec<&Value> =
        events.iter().filter(|(kind, _)| kind == "ConfirmationMailBounced").map(|(_, d)| d).collect();
    assert_eq!(bounced.len(), 1, "{events:?}");
    assert_eq!(
        (bounced[0]["bounce_type"].as_str(), bounced[0]["sub_type"].as_str()),
        (Some("Permanent"), Some("General"))
    );
    // The status route tells the app.
    let admin = mint_access_token(json!({ "sub": "svc", "roles": ["mailconfirm-admin"] }));
    let status = stack.http.get(stack.url(&format!("/v1/users/{user_id}"))).bearer_auth(admin).send().await.unwrap();
    assert_eq!(body_of(status).await.1["delivery"], "bounced");
}

#[tokio::test(flavor = "multi_thread")]
async fn tennpay_answers_204_with_nothing_sent_and_mastodon_422_until_the_address_changes() {
    let stack = TestStack::start_with(fast).await;
    let payer = stack.unique_email("payer");
    assert!(stack.sign_up(json!({ "user_id": "4711", "email": payer })).await.batch_item_failures.is_empty());
    stack.ses_feedback(&payer, None).await;
    stack.clock.advance(5);
    let sent = stack
        .http
        .post(stack.url("/User/email/send-confirmation"))
        .bearer_auth(stack.access_token("4711"))
        .json(&json!({ "id": 4711, "email": payer }))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 204);
    assert_eq!(stack.mails_to(&payer).await.len(), 1, "only the sign-up mail");
    let kinds: Vec<String> = stack.events_of("4711").await.into_iter().map(|(kind, _)| kind).collect();
    assert!(kinds.contains(&"ConfirmationMailComplained".to_owned()), "{kinds:?}");

    let email = stack.unique_email("app");
    stack.sign_up(json!({ "user_id": "app-u", "email": email, "client_id": "app-1" })).await;
    stack.ses_feedback(&email, Some("Permanent")).await;
    stack.clock.advance(5);
    let token = mint_access_token(json!({ "sub": "app-u", "client_id": "app-1", "scope": "write" }));
    let resend =
        |body: Value| stack.http.post(stack.url("/api/v1/emails/confirmations")).bearer_auth(&token).json(&body).send();
    let (status, body) = body_of(resend(json!({})).await.unwrap()).await;
    assert_eq!(status, 422);
    assert!(body["error"].as_str().unwrap().starts_with("Validation failed: Email"), "{body}");
    // A new address clears the state: it is mailed at once.
    let moved = stack.unique_email("moved");
    let (status, _) = body_of(resend(json!({ "email": moved })).await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(stack.mails_to(&moved).await.len(), 1);
    assert!(!stack.stored_user("app-u").await.unwrap().contains_key("delivery"));
    // A bounce for the old address, arriving late, does not touch the new one.
    stack.ses_feedback(&email, Some("Permanent")).await;
    assert!(!stack.stored_user("app-u").await.unwrap().contains_key("delivery"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_soft_bounce_or_an_unknown_address_changes_nothing() {
    let stack = TestStack::start_with(fast).await;
    let (user_id, email) = stack.signed_up_user(None).await;
    stack.ses_feedback(&email, Some("Transient")).await;
    stack.ses_feedback(&stack.unique_email("nobody"), Some("Permanent")).await;
    stack.clock.advance(5);
    let token = stack.access_token(&user_id);
    let sent = stack.http.post(stack.url("/api/auth/email/verification/send")).bearer_auth(&token).send().await;
    assert_eq!(sent.unwrap().status(), 200);
    assert_eq!(stack.mails_to(&email).await.len(), 2);
    // The same hard bounce twice is recorded once.
    stack.ses_feedback(&email, Some("Permanent")).await;
    stack.ses_feedback(&email, Some("Permanent")).await;
    let bounced = stack.events_of(&user_id).await.into_iter().filter(|(k, _)| k == "ConfirmationMailBounced").count();
    assert_eq!(bounced, 1);
}
