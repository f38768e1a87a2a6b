//! The Mastodon contract through HTTP, and through Mastodon.py.

use std::process::Command;

use mailconfirm_local::gateway::{GatewayRequest, api_gateway_event, invoke};
use mailconfirm_local::harness::TestStack;
use mailconfirm_local::server::mint_access_token;
use mailconfirm_local::template::{RouteSpec, project_root};
use reqwest::StatusCode;
use serde_json::{Value, json};

const CONFIRMATIONS: &str = "/api/v1/emails/confirmations";

fn app_token(user_id: &str, client: &str, scope: &str) -> String {
    mint_access_token(json!({ "sub": user_id, "client_id": client, "scope": scope }))
}

/// A user created by OAuth client `app-1` while mail was off, and a stack on the same table.
async fn unmailed_app_user(
    adjust: impl FnOnce(&mut std::collections::HashMap<String, String>),
) -> (TestStack, TestStack, String, String) {
    let quiet = TestStack::start_with(|env| {
        env.insert("EMAIL_ENABLED".into(), "false".into());
    })
    .await;
    let user_id = format!("m-{}", mailconfirm_local::gateway::uuid_like());
    let email = quiet.unique_email("toot");
    let event = json!({ "user_id": user_id, "email": email, "client_id": "app-1" });
    assert!(quiet.sign_up(event).await.batch_item_failures.is_empty());
    let table = quiet.table.clone();
    let stack = TestStack::start_with(|env| {
        env.insert("TABLE_NAME".into(), table);
        adjust(env);
    })
    .await;
    (quiet, stack, user_id, email)
}

async fn post(stack: &TestStack, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = stack.http.post(stack.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

async fn assert_error(response: reqwest::Response, status: u16, error: &str) -> reqwest::header::HeaderMap {
    assert_eq!(response.status().as_u16(), status);
    let headers = response.headers().clone();
    assert_eq!(response.json::<Value>().await.unwrap(), json!({ "error": error }));
    headers
}

#[tokio::test(flavor = "multi_thread")]
async fn the_creating_application_gets_an_empty_object_and_the_user_a_mail_on_either_path() {
    let (_quiet, stack, user_id, email) = unmailed_app_user(|env| {
        env.insert("COOLDOWN_SECONDS".into(), "1".into());
    })
    .await;
    let response = post(&stack, CONFIRMATIONS, Some(&app_token(&user_id, "app-1", "write"))).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap(), json!({}));
    stack.clock.advance(2);
    let singular =
        post(&stack, "/api/v1/emails/confirmation", Some(&app_token(&user_id, "app-1", "read write:accounts"))).await;
    assert_eq!(singular.status(), StatusCode::OK);
    assert_eq!(stack.mails_to(&email).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_scopes_and_the_creating_application_are_checked_in_mastodons_order() {
    let (_quiet, stack, user_id, email) = unmailed_app_user(|_| {}).await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();

    assert_error(post(&stack, CONFIRMATIONS, None).await, 401, "The access token is invalid").await;
    assert_error(post(&stack, CONFIRMATIONS, Some("garbage")).await, 401, "The access token is invalid").await;
    let expired = mint_access_token(
        json!({ "sub": user_id, "client_id": "app-1", "scope": "write", "exp": now - 3600, "iat": now - 7200 }),
    );
    assert_error(post(&stack, CONFIRMATIONS, Some(&expired)).await, 401, "The access token expired").await;
    assert_error(
        post(&stack, CONFIRMATIONS, Some(&app_token(&user_id, "app-1", "read"))).await,
        403,
        "This action is outside the authorized scopes",
    )
    .await;
    let not_owner = "This method is only available to the application the user originally signed-up with";
    assert_error(post(&stack, CONFIRMATIONS, Some(&app_token(&user_id, "app-2", "write"))).await, 403, not_owner).await;
    let no_client = mint_access_token(json!({ "sub": user_id, "scope": "write" }));
    assert_error(post(&stack, CONFIRMATIONS, Some(&no_client)).await, 403, not_owner).await;
    assert_error(post(&stack, CONFIRMATIONS, Some(&app_token("nobody", "app-1", "write"))).await, 403, not_owner).await;
    assert!(stack.mails_to(&email).await.is_empty());

    assert_eq!(post(&stack, CONFIRMATIONS, Some(&app_token(&user_id, "app-1", "write"))).await.status(), 200);
    let link = stack.latest_link_token(&email).await;
    stack.http.post(stack.url(&format!("/api/auth/email/verification?token={link}"))).send().await.unwrap();
    assert_error(
        post(&stack, CONFIRMATIONS, Some(&app_token(&user_id, "app-1", "write"))).await,
        403,
        "This method is only available while the e-mail is awaiting confirmation",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_email_parameter_replaces_the_pending_address_from_form_json_or_query() {
    let (_quiet, stack, user_id, old) = unmailed_app_user(|_| {}).await;
    let token = app_token(&user_id, "app-1", "write");
    // A link to the old address, mailed before the change.
    assert_eq!(post(&stack, CONFIRMATIONS, Some(&token)).await.status(), 200);
    let old_link = stack.latest_link_token(&old).await;

    let by_form = stack.unique_email("form");
    let response = stack
        .http
        .post(stack.url(CONFIRMATIONS))
        .bearer_auth(&token)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("email={}", by_form.replace('@', "%40")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "a new address is mailed at once, whatever the old cooldown");
    assert_eq!(stack.mails_to(&by_form).await.len(), 1);

    let by_json = stack.unique_email("json");
    let response = stack
        .http
        .post(stack.url(CONFIRMATIONS))
        .bearer_auth(&token)
        .json(&json!({ "email": by_json }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let by_query = stack.unique_email("query");
    assert_eq!(post(&stack, &format!("{CONFIRMATIONS}?email={by_query}"), Some(&token)).await.status(), 200);
    assert_eq!(stack.mails_to(&by_json).await.len(), 1);
    assert_eq!(stack.mails_to(&by_query).await.len(), 1);
    assert_eq!(stack.mails_to(&old).await.len(), 1, "nothing more to the old address");

    let stale =
        stack.http.post(stack.url(&format!("/api/auth/email/verification?token={old_link}"))).send().await.unwrap();
    assert_eq!(stale.status(), StatusCode::UNAUTHORIZED, "links to a replaced address stop working");
    let current = stack.latest_link_token(&by_query).await;
    let confirmed =
        stack.http.post(stack.url(&format!("/api/auth/email/verification?token={current}"))).send().await.unwrap();
    assert_eq!(confirmed.json::<Value>().await.unwrap()["email"], by_query.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_or_taken_address_fails_validation_and_changes_nothing() {
    let (quiet, stack, user_id, email) = unmailed_app_user(|_| {}).await;
    let (_, taken) = quiet.signed_up_user(None).await;
    let token = app_token(&user_id, "app-1", "write");

    let invalid = stack
        .http
        .post(stack.url(CONFIRMATIONS))
        .bearer_auth(&token)
        .json(&json!({ "email": "not-an-address" }))
        .send()
        .await
        .unwrap();
    assert_error(invalid, 422, "Validation failed: Email is invalid").await;
    let taken_response = stack
        .http
        .post(stack.url(CONFIRMATIONS))
        .bearer_auth(&token)
        .json(&json!({ "email": taken.to_uppercase() }))
        .send()
        .await
        .unwrap();
    assert_error(taken_response, 422, "Validation failed: Email has already been taken").await;

    let stored = stack.stored_user(&user_id).await.unwrap();
    assert_eq!(stored["email"].as_s().unwrap(), &email);
    assert!(stack.mails_to(&taken).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_five_requests_per_five_minutes_per_address_then_429_with_rate_limit_headers() {
    let stack = TestStack::start().await;
    for _ in 0..25 {
        assert_eq!(post(&stack, CONFIRMATIONS, None).await.status(), StatusCode::UNAUTHORIZED);
    }
    let headers = assert_error(post(&stack, CONFIRMATIONS, None).await, 429, "Too many requests").await;
    assert_eq!(headers["x-ratelimit-limit"], "25");
    assert_eq!(headers["x-ratelimit-remaining"], "0");
    let reset = headers["x-ratelimit-reset"].to_str().unwrap();
    let reset_at = time::OffsetDateTime::parse(reset, &time::format_description::well_known::Iso8601::DEFAULT).unwrap();
    let until_reset = reset_at - time::OffsetDateTime::now_utc();
    assert!(until_reset.whole_seconds() >= 0 && until_reset.whole_seconds() <= 300, "{reset}");
    assert!(reset.ends_with(".000000Z"), "{reset}");
}

#[tokio::test(flavor = "multi_thread")]
async fn five_requests_per_thirty_minutes_per_user() {
    let (_quiet, stack, user_id, email) = unmailed_app_user(|_| {}).await;
    let token = app_token(&user_id, "app-1", "write");
    assert_eq!(post(&stack, CONFIRMATIONS, Some(&token)).await.status(), 200);
    for _ in 0..4 {
        // Within the cooldown: refused, and counted.
        let headers = assert_error(post(&stack, CONFIRMATIONS, Some(&token)).await, 429, "Too many requests").await;
        assert_eq!(headers["x-ratelimit-limit"], "1", "the cooldown");
    }
    let headers = assert_error(post(&stack, CONFIRMATIONS, Some(&token)).await, 429, "Too many requests").await;
    assert_eq!(headers["x-ratelimit-limit"], "5", "the per-user throttle");
    assert_eq!(stack.mails_to(&email).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn ipv6_clients_of_one_64_share_a_counter() {
    let stack = TestStack::start().await;
    let function = stack.api.gateway_function("mastodon-resend-confirmation").unwrap();
    let route =
        RouteSpec { method: "POST".into(), path: CONFIRMATIONS.into(), binary: "mastodon-resend-confirmation".into() };
    let mut statuses = Vec::new();
    for host in 1..=26 {
        let request = GatewayRequest {
            method: "POST".into(),
            path: CONFIRMATIONS.into(),
            source_ip: format!("2001:db8:aa:bb::{host:x}"),
            ..Default::default()
        };
        let response = invoke(&function, api_gateway_event(&request, &route, &Default::default())).await.unwrap();
        statuses.push(response["statusCode"].as_u64().unwrap());
    }
    assert!(statuses[..25].iter().all(|s| *s == 401), "{statuses:?}");
    assert_eq!(statuses[25], 429);
    let elsewhere = GatewayRequest {
        method: "POST".into(),
        path: CONFIRMATIONS.into(),
        source_ip: "2001:db8:aa:cc::1".into(),
        ..Default::default()
    };
    let response = invoke(&function, api_gateway_event(&elsewhere, &route, &Default::default())).await.unwrap();
    assert_eq!(response["statusCode"], 401, "another /64 has its own counter");
}

/// Runs tests/clients/mastodon_client.py: Mastodon.py against the local API.
fn mastodon_py(stack: &TestStack, token: &str) -> Value {
    let python = project_root().join(".venv/bin/python");
    assert!(python.is_file(), "run scripts/test, which installs Mastodon.py into .venv");
    let output = Command::new(python)
        .arg(project_root().join("tests/clients/mastodon_client.py"))
        .arg(&stack.base_url)
        .arg(token)
        .output()
        .expect("python runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("the script prints JSON")
}

#[tokio::test(flavor = "multi_thread")]
async fn mastodon_py_resends_the_confirmation() {
    let (_quiet, stack, user_id, email) = unmailed_app_user(|_| {}).await;
    let token = app_token(&user_id, "app-1", "read write follow");

    let resent = mastodon_py(&stack, &token);
    assert_eq!(resent["ok"], true, "{resent}");
    let mails = stack.mails_to(&email).await;
    assert_eq!(mails.len(), 1);
    assert!(mails[0]["link"].as_str().unwrap().contains("/confirm-email?token="));

    let too_soon = mastodon_py(&stack, &token);
    assert_eq!(too_soon["error"], "MastodonRatelimitError", "{too_soon}");
    let stranger = mastodon_py(&stack, &app_token(&user_id, "app-2", "write"));
    assert_eq!(
        (stranger["error"].as_str(), stranger["status"].as_u64()),
        (Some("MastodonAPIError"), Some(403)),
        "{stranger}"
    );
    let invalid = mastodon_py(&stack, "garbage");
    assert_eq!(invalid["error"], "MastodonUnauthorizedError", "{invalid}");
}
