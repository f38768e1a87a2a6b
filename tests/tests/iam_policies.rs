//! Least privilege, checked against behaviour: each function's IAM policy in the template
//! names exactly the AWS actions its code was seen calling.

use std::collections::{BTreeMap, BTreeSet};

use mailconfirm_local::harness::TestStack;
use mailconfirm_local::template::Template;
use serde_json::{Value, json};

/// The IAM action behind an SDK operation. A transaction is authorised per item it writes,
/// and ours only put items.
fn iam_action(operation: &str) -> String {
    match operation.split_once(':') {
        Some((_, "TransactWriteItems")) => "dynamodb:PutItem".to_owned(),
        Some(("DynamoDB", name)) => format!("dynamodb:{name}"),
        Some(("SESv2", name)) => format!("ses:{name}"),
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
    let stack = TestStack::start_with(|env| {
        env.insert("TABLE_NAME".into(), quiet.table.clone());
    })
    .await;

    // signup-events: a new sign-up, and a redelivery of a sign-up whose mail never went out.
    let (fresh, email) = stack.signed_up_user(None).await;
    assert!(stack.sign_up(json!({ "user_id": unmailed_a, "email": email_a })).await.batch_item_failures.is_empty());
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

    let called: BTreeMap<String, BTreeSet<String>> = stack
        .operations
        .iter()
        .map(|(binary, recorder)| (binary.clone(), recorder.operations().iter().map(|op| iam_action(op)).collect()))
        .collect();
    assert_eq!(granted_actions(), called);
}
