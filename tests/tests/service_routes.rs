//! mailconfirm's own routes for the app's backend, and Mastodon's check_confirmation, through
//! the HTTP layer of the local stack.

use mailconfirm_local::harness::TestStack;
use mailconfirm_local::server::mint_access_token;
use serde_json::{Value, json};

fn admin_token() -> String {
    mint_access_token(json!({ "sub": "backend", "roles": ["mailconfirm-admin"] }))
}

async fn call(stack: &TestStack, method: reqwest::Method, path: &str, token: Option<&str>) -> (u16, String, Value) {
    let mut request = stack.http.request(method, stack.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type =
        response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let text = response.text().await.unwrap();
    (status, content_type, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_backend_reads_confirms_and_erases_a_user() {
    let stack = TestStack::start().await;
    let (user_id, email) = stack.signed_up_user(Some("fr")).await;
    let admin = admin_token();
    let path = format!("/v1/users/{user_id}");

    let (status, _, user) = call(&stack, reqwest::Method::GET, &path, Some(&admin)).await;
    assert_eq!(status, 200);
    assert_eq!((user["status"].as_str(), user["email"].as_str()), (Some("pending"), Some(email.as_str())));
    assert_eq!((user["locale"].as_str(), user["delivery"].as_str()), (Some("fr"), Some("ok")));
    assert!(user["cooldown_remaining_seconds"].as_u64().unwrap() > 0, "{user}");
    assert!(user["last_mail_sent_at"].is_string() && user["confirmed_at"].is_null(), "{user}");

    let (status, _, confirmed) = call(&stack, reqwest::Method::POST, &format!("{path}/confirm"), Some(&admin)).await;
    assert_eq!((status, confirmed["status"].as_str()), (200, Some("confirmed")));
    let (status, _, again) = call(&stack, reqwest::Method::POST, &format!("{path}/confirm"), Some(&admin)).await;
    assert_eq!((status, &again["confirmed_at"]), (200, &confirmed["confirmed_at"]), "a second confirm changes nothing");
    let events = stack.events_of(&user_id).await;
    let confirmations: Vec<&Value> =
        events.iter().filter(|(kind, _)| kind == "EmailConfirmed").map(|(_, detail)| detail).collect();
    assert_eq!(confirmations.len(), 1);
    assert_eq!(confirmations[0]["method"], "admin");

    let token = stack.latest_link_token(&email).await;
    let (status, _, _) = call(&stack, reqwest::Method::DELETE, &path, Some(&admin)).await;
    assert_eq!(status, 204);
    let (status, content_type, problem) = call(&stack, reqwest::Method::GET, &path, Some(&admin)).await;
    assert_eq!(
        (status, content_type.as_str(), problem["status"].as_u64()),
        (404, "application/problem+json", Some(404))
    );
    let (status, _, _) = call(&stack, reqwest::Method::DELETE, &path, Some(&admin)).await;
    assert_eq!(status, 404);
    // Nothing with the address is left: the look-up is gone, so the address is free again...
    let newcomer = stack.sign_up(json!({ "user_id": "newcomer", "email": email })).await;
    assert!(newcomer.batch_item_failures.is_empty());
    assert_eq!(stack.stored_status("newcomer").await.as_deref(), Some("EMAIL_CONFIRMATION_PENDING"));
    // ...and the erased user's link confirms nothing.
    let opened = stack.http.post(stack.url("/confirm-email")).form(&[("token", token.as_str())]).send().await.unwrap();
    assert!(!opened.status().is_server_error(), "{}", opened.status());
    assert!(stack.stored_user(&user_id).await.is_none());
    let deleted: Vec<String> = stack.events_of(&user_id).await.into_iter().map(|(kind, _)| kind).collect();
    assert_eq!(deleted.last().map(String::as_str), Some("UserDeleted"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_service_routes_refuse_in_problem_details() {
    let stack = TestStack::start().await;
    let (user_id, _) = stack.signed_up_user(None).await;
    let path = format!("/v1/users/{user_id}");
    let user_token = stack.access_token(&user_id);
    for (token, expected) in [(None, 401), (Some("not-a-token"), 401), (Some(user_token.as_str()), 403)] {
        for (method, path) in [
            (reqwest::Method::GET, path.clone()),
            (reqwest::Method::POST, format!("{path}/confirm")),
            (reqwest::Method::DELETE, path.clone()),
        ] {
            let (status, content_type, problem) = call(&stack, method.clone(), &path, token).await;
            assert_eq!((status, content_type.as_str()), (expected, "application/problem+json"), "{method} {path}");
            assert_eq!(problem["status"].as_u64(), Some(u64::from(expected)));
            assert!(problem["detail"].is_string() && problem["title"].is_string(), "{problem}");
        }
    }
    assert_eq!(stack.stored_status(&user_id).await.as_deref(), Some("EMAIL_CONFIRMATION_PENDING"), "nothing changed");
    let scoped = mint_access_token(json!({ "sub": "backend", "scope": "mailconfirm:admin" }));
    let (status, _, _) = call(&stack, reqwest::Method::GET, &path, Some(&scoped)).await;
    assert_eq!(status, 200, "the admin scope is enough");
    let (status, _, _) = call(&stack, reqwest::Method::GET, "/v1/users/nobody-here", Some(&scoped)).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn mastodon_check_confirmation_answers_true_or_false_for_the_tokens_user() {
    let stack = TestStack::start().await;
    let (user_id, email) = stack.signed_up_user(None).await;
    let read = mint_access_token(json!({ "sub": user_id, "scope": "read" }));
    let path = "/api/v1/emails/check_confirmation";
    assert_eq!(call(&stack, reqwest::Method::GET, path, Some(&read)).await.2, Value::Bool(false));
    let token = stack.latest_link_token(&email).await;
    stack.http.post(stack.url("/confirm-email")).form(&[("token", token.as_str())]).send().await.unwrap();
    let read_accounts = mint_access_token(json!({ "sub": user_id, "scope": "read:accounts" }));
    let (status, _, body) = call(&stack, reqwest::Method::GET, path, Some(&read_accounts)).await;
    assert_eq!((status, body), (200, Value::Bool(true)));
    // The same refusals, in the same words, as the resend route.
    let write = mint_access_token(json!({ "sub": user_id, "scope": "write" }));
    let (status, _, body) = call(&stack, reqwest::Method::GET, path, Some(&write)).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("This action is outside the authorized scopes")));
    let (status, _, body) = call(&stack, reqwest::Method::GET, path, None).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("The access token is invalid")));
    let gone = mint_access_token(json!({ "sub": "nobody-here", "scope": "read" }));
    assert_eq!(call(&stack, reqwest::Method::GET, path, Some(&gone)).await.0, 401);
}
