//! Least privilege, checked against behaviour: each function's IAM policy in the template
//! names exactly the AWS actions its code was seen calling.

use std::collections::{BTreeMap, BTreeSet};

use mailconfirm_local::harness::TestStack;
use mailconfirm_local::template::Template;
use serde_json::{Value, json};

/// The IAM action behind an SDK operation; a transaction is authorised per item it writes.
fn iam_action(operation: &str) -> String {
    match operation.split_once(':') {
        Some((_, "TransactWriteItems.Put")) => "dynamodb:PutItem".to_owned(),
        Some((_, "TransactWriteItems.Update")) => "dynamodb:UpdateItem".to_owned(),
        Some((_, "TransactWriteItems.Delete")) => "dynamodb:DeleteItem".to_owned(),
        Some((_, "TransactWriteItems.ConditionCheck")) => "dynamodb:ConditionCheckItem".to_owned(),
        Some(("DynamoDB", name)) => format!("dynamodb:{name}"),
        Some(("SESv2", name)) => format!("ses:{name}"),
        Some(("EventBridge", name)) => format!("events:{name}"),
        _ => panic!("an operation of an unexpected service: {operation}"),
    }
}

fn actions_of(statement: &Value) -> Vec<String> {
    match &statement["Action"] {
        Value::String(action) => vec![action.clone()],
        Value::Array(actions) => actions.iter().filter_map(|a| a.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    }
}

fn granted_actions() -> BTreeMap<String, BTreeSet<String>> {
    Template::load()
        .unwrap()
        .functions()
        .into_iter()
        .map(|function| {
            let actions = function.properties["Policies"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|policy| policy["Statement"].as_array().cloned().unwrap_or_default())
                .flat_map(|statement| actions_of(&statement))
                .collect();
            (function.binary, actions)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_policy_grants_exactly_the_aws_actions_its_function_calls() {
    // Users with no mail yet, so that every send path runs.
    let quiet = TestStack::start_with(|env| {
        env.insert("EMAIL_ENABLED".into(), "false".into());
    })
    .await;
    let (unmailed_a, email_a) = quiet.signed_up_user(None).await;
    let (unmailed_b, _) = quiet.signed_up_user(None).await;
    let (_, unmailed_c) = quiet.signed_up_user(None).await;
    let (unmailed_d, email_d) = quiet.signed_up_user(None).await;
    let (unmailed_e, email_e) = quiet.signed_up_user(None).await;
    let numeric_email = quiet.unique_email("numeric");
    assert!(quiet.sign_up(json!({ "user_id": 4321, "email": numeric_email })).await.batch_item_failures.is_empty());
    let app_email = quiet.unique_email("app");
    let app_user = json!({ "user_id": "app-user", "email": app_email, "client_id": "app-1" });
    assert!(quiet.sign_up(app_user).await.batch_item_failures.is_empty());
    let stack = TestStack::start_with(|env| {
        env.insert("TABLE_NAME".into(), quiet.table.clone());
    })
    .await;

    // signup-events: a new sign-up, and a redelivery of a sign-up whose mail never went out.
    let (fresh, email) = stack.signed_up_user(None).await;
    assert!(stack.sign_up(json!({ "user_id": unmailed_a, "email": email_a })).await.batch_item_failures.is_empty());
    // ...and its commands: a resend by address (a look-up and the claim), an address change (a
    // read and a transaction).
    let resend = json!({ "action": "resend", "email": email_e });
    assert!(stack.sign_up(resend).await.batch_item_failures.is_empty());
    assert_eq!(stack.mails_to(&email_e).await.len(), 1);
    let moved_by_queue = stack.unique_email("queue-moved");
    let change = json!({ "action": "change_email", "user_id": unmailed_e, "email": moved_by_queue });
    assert!(stack.sign_up(change).await.batch_item_failures.is_empty());
    assert_eq!(stack.mails_to(&moved_by_queue).await.len(), 1);
    // singularity-send-verification, -verification-cooldown and -verify-email.
    let token = stack.access_token(&unmailed_b);
    let sent =
        stack.http.post(stack.url("/api/auth/email/verification/send")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(sent.status(), 200);
    let cooldown =
        stack.http.get(stack.url("/api/auth/email/verification/cooldown")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(cooldown.status(), 200);
    let link_token = stack.latest_link_token(&email).await;
    let verified =
        stack.http.post(stack.url(&format!("/api/auth/email/verification?token={link_token}"))).send().await.unwrap();
    assert_eq!(verified.status(), 200, "{fresh}");

    // confirm-code: the throttles, the counted attempt and the confirmation.
    let (coded, coded_email) = stack.signed_up_user(None).await;
    let code = stack.latest_code(&coded_email).await;
    assert_eq!(stack.post_code(&coded, &code).await.0, 200);

    // backendless-resend-confirmation and -create-confirmation-url.
    let resent =
        stack.http.post(stack.url(&format!("/api/users/resendconfirmation/{unmailed_c}"))).send().await.unwrap();
    assert_eq!(resent.status(), 200);
    let admin = mailconfirm_local::server::mint_access_token(json!({ "sub": "svc", "roles": ["mailconfirm-admin"] }));
    let created = stack
        .http
        .post(stack.url(&format!("/api/users/createEmailConfirmationURL/{email_a}")))
        .header("user-token", admin)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200);

    // tennpay-send-confirmation.
    let sent = stack
        .http
        .post(stack.url("/User/email/send-confirmation"))
        .bearer_auth(stack.access_token("4321"))
        .json(&json!({ "id": 4321, "email": numeric_email }))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 204);
    // mastodon-resend-confirmation, changing the address (a read and a transaction) and resending.
    let app_token = mailconfirm_local::server::mint_access_token(
        json!({ "sub": "app-user", "client_id": "app-1", "scope": "write" }),
    );
    let new_address = stack.unique_email("moved");
    let moved = stack
        .http
        .post(stack.url("/api/v1/emails/confirmations"))
        .bearer_auth(app_token)
        .json(&json!({ "email": new_address }))
        .send()
        .await
        .unwrap();
    assert_eq!(moved.status(), 200);

    // confirm-page: a new link for an expired one (throttles, claim, mail), then open and confirm it.
    let expired = stack.link_token_issued_at(&unmailed_d, &email_d, "en", 1_700_000_000);
    let asked = stack
        .http
        .post(stack.url("/confirm-email"))
        .form(&[("token", expired.as_str()), ("action", "send-new-link")])
        .send()
        .await
        .unwrap();
    assert_eq!(asked.status(), 200);
    let fresh = stack.latest_link_token(&email_d).await;
    let opened = stack.http.get(stack.url(&format!("/confirm-email?token={fresh}"))).send().await.unwrap();
    assert_eq!(opened.status(), 200);
    let confirmed =
        stack.http.post(stack.url("/confirm-email")).form(&[("token", fresh.as_str())]).send().await.unwrap();
    assert_eq!(confirmed.status(), 200);
    assert_eq!(stack.stored_status(&unmailed_d).await.as_deref(), Some("ENABLED"));

    // mastodon-check-confirmation, and the service routes: status, confirm, delete.
    let reader = mailconfirm_local::server::mint_access_token(json!({ "sub": unmailed_d, "scope": "read" }));
    let checked =
        stack.http.get(stack.url("/api/v1/emails/check_confirmation")).bearer_auth(reader).send().await.unwrap();
    assert_eq!(checked.status(), 200);
    let admin = mailconfirm_local::server::mint_access_token(json!({ "sub": "svc", "roles": ["mailconfirm-admin"] }));
    let user = stack.url(&format!("/v1/users/{unmailed_b}"));
    assert_eq!(stack.http.get(&user).bearer_auth(&admin).send().await.unwrap().status(), 200);
    let confirm = stack.http.post(format!("{user}/confirm")).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(confirm.status(), 200);
    assert_eq!(stack.http.delete(&user).bearer_auth(&admin).send().await.unwrap().status(), 204);

    // mail-feedback: a bounce for a user's address (a look-up and a write).
    stack.ses_feedback(&email_d, Some("Permanent")).await;

    // change-events: the stream of everything above, published; a week on, TTL removes the
    // pending sign-ups and the consumer releases their addresses.
    stack.clock.advance(8 * 24 * 3600);
    assert!(stack.expire_ttl().await > 0);
    assert!(!stack.events().await.is_empty());

    let called: BTreeMap<String, BTreeSet<String>> = stack
        .operations
        .iter()
        .map(|(binary, recorder)| (binary.clone(), recorder.operations().iter().map(|op| iam_action(op)).collect()))
        .collect();
    assert_eq!(granted_actions(), called);
}
