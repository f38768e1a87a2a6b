//! The 10npay contract through HTTP: 204 whenever the request is valid, problem details for
//! bad input, 401 without a valid Bearer token, and no personal data or token in the logs.

use std::io::Write;
use std::sync::{Arc, Mutex};

use mailconfirm_local::harness::TestStack;
use mailconfirm_local::server::mint_access_token;
use reqwest::StatusCode;
use serde_json::{Value, json};

const SEND: &str = "/User/email/send-confirmation";

async fn send(stack: &TestStack, token: Option<&str>, body: &str) -> reqwest::Response {
    let mut request = stack.http.post(stack.url(SEND)).header("content-type", "application/json").body(body.to_owned());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

/// A user signed up with a numeric id while mail was off, and a stack on the same table.
async fn unmailed_user(id: u32) -> (TestStack, TestStack, String) {
    let quiet = TestStack::start_with(|env| {
        env.insert("EMAIL_ENABLED".into(), "false".into());
    })
    .await;
    let email = quiet.unique_email("payer");
    assert!(quiet.sign_up(json!({ "user_id": id, "email": email })).await.batch_item_failures.is_empty());
    let table = quiet.table.clone();
    let stack = TestStack::start_with(|env| {
        env.insert("TABLE_NAME".into(), table);
    })
    .await;
    (quiet, stack, email)
}

async fn assert_validation_problem(response: reqwest::Response, field: &str) -> Value {
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "https://tools.ietf.org/html/rfc7231#section-6.5.1");
    assert_eq!(body["title"], "One or more validation errors occurred.");
    assert_eq!(body["status"], 400);
    assert!(body["errors"][field].as_array().is_some_and(|m| !m.is_empty()), "{body}");
    let trace_id = body["traceId"].as_str().unwrap();
    let parts: Vec<&str> = trace_id.split('-').collect();
    assert_eq!(
        (parts.len(), parts[0], parts[1].len(), parts[2].len(), parts[3]),
        (4, "00", 32, 16, "00"),
        "{trace_id}"
    );
    body
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_asking_for_its_own_pending_address_gets_204_and_a_mail() {
    let (_quiet, stack, email) = unmailed_user(1234).await;
    let response =
        send(&stack, Some(&stack.access_token("1234")), &json!({ "id": 1234, "email": email }).to_string()).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(response.text().await.unwrap(), "");
    assert_eq!(stack.mails_to(&email).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_mail_but_204_when_verified_unknown_another_address_or_in_cooldown() {
    let (_quiet, stack, email) = unmailed_user(77).await;
    let token = stack.access_token("77");
    let other = stack.unique_email("someone-else");

    let wrong_address = send(&stack, Some(&token), &json!({ "id": 77, "email": other }).to_string()).await;
    assert_eq!(wrong_address.status(), StatusCode::NO_CONTENT);
    let service = mint_access_token(json!({ "sub": "billing", "scope": "mailconfirm:send-confirmation" }));
    let unknown = send(&stack, Some(&service), &json!({ "id": 999, "email": other }).to_string()).await;
    assert_eq!(unknown.status(), StatusCode::NO_CONTENT);
    assert!(stack.mails_to(&other).await.is_empty());

    assert_eq!(
        send(&stack, Some(&token), &json!({ "id": 77, "email": email.to_uppercase() }).to_string()).await.status(),
        204
    );
    let cooling = send(&stack, Some(&token), &json!({ "id": 77, "email": email }).to_string()).await;
    assert_eq!(cooling.status(), StatusCode::NO_CONTENT);
    let retry_after: u64 = cooling.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after));
    assert_eq!(stack.mails_to(&email).await.len(), 1);

    let token_link = stack.latest_link_token(&email).await;
    stack.http.post(stack.url(&format!("/api/auth/email/verification?token={token_link}"))).send().await.unwrap();
    let verified = send(&stack, Some(&service), &json!({ "id": 77, "email": email }).to_string()).await;
    assert_eq!(verified.status(), StatusCode::NO_CONTENT);
    assert_eq!(stack.mails_to(&email).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_token_may_act_for_any_user_and_a_user_token_only_for_itself() {
    let (_quiet, stack, email) = unmailed_user(5).await;
    let body = json!({ "id": 5, "email": email }).to_string();

    let other_user = send(&stack, Some(&stack.access_token("6")), &body).await;
    assert_eq!(other_user.status(), StatusCode::FORBIDDEN);
    assert_eq!(other_user.headers()["content-type"], "application/problem+json");
    assert_eq!(other_user.json::<Value>().await.unwrap()["status"], 403);
    assert!(stack.mails_to(&email).await.is_empty());

    let service = mint_access_token(json!({ "sub": "billing", "scope": "mailconfirm:send-confirmation" }));
    assert_eq!(send(&stack, Some(&service), &body).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(stack.mails_to(&email).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_valid_bearer_token_the_answer_is_401() {
    let stack = TestStack::start().await;
    let body = json!({ "id": 1, "email": "a@example.com" }).to_string();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let expired = mint_access_token(json!({ "sub": "1", "iat": now - 7200, "exp": now - 3600 }));
    for (token, challenge) in
        [(None, "Bearer"), (Some("garbage"), "Bearer error=\"invalid_token\""), (Some(expired.as_str()), "expired")]
    {
        let response = send(&stack, token, &body).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(response.headers()["www-authenticate"].to_str().unwrap().contains(challenge));
    }
    let cookie_only = stack
        .http
        .post(stack.url(SEND))
        .header("cookie", format!("access_token={}", stack.access_token("1")))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(cookie_only.status(), StatusCode::UNAUTHORIZED, "the contract takes only the Bearer header");
}

#[tokio::test(flavor = "multi_thread")]
async fn each_kind_of_bad_input_gets_400_problem_details_keyed_by_field() {
    let stack = TestStack::start().await;
    let token = stack.access_token("1");
    assert_validation_problem(send(&stack, Some(&token), "{ not json").await, "$").await;
    assert_validation_problem(send(&stack, Some(&token), "").await, "$").await;
    assert_validation_problem(send(&stack, Some(&token), r#"{"email": "a@example.com"}"#).await, "Id").await;
    assert_validation_problem(send(&stack, Some(&token), r#"{"id": "1", "email": "a@example.com"}"#).await, "Id").await;
    assert_validation_problem(send(&stack, Some(&token), r#"{"id": 0, "email": "a@example.com"}"#).await, "Id").await;
    assert_validation_problem(
        send(&stack, Some(&token), r#"{"id": 2147483648, "email": "a@example.com"}"#).await,
        "Id",
    )
    .await;
    let body =
        assert_validation_problem(send(&stack, Some(&token), r#"{"id": 1, "email": "nope"}"#).await, "Email").await;
    assert_eq!(body["errors"]["Email"], json!(["Invalid email address"]));
    assert_validation_problem(send(&stack, Some(&token), r#"{"id": 1}"#).await, "Email").await;
    let both = assert_validation_problem(send(&stack, Some(&token), "{}").await, "Id").await;
    assert!(both["errors"]["Email"].is_array());

    let form = stack
        .http
        .post(stack.url(SEND))
        .bearer_auth(&token)
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[derive(Clone, Default)]
struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_trace_id_of_a_problem_is_the_one_in_the_logs_which_hold_no_address_or_token() {
    let logs = CapturedLogs::default();
    let writer = logs.clone();
    tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).init();
    let (_quiet, stack, email) = unmailed_user(42).await;
    let token = stack.access_token("42");

    let problem: Value = stack
        .http
        .post(stack.url(SEND))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .header("x-amzn-trace-id", "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1")
        .body(json!({ "id": 0, "email": email }).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(send(&stack, Some(&token), &json!({ "id": 42, "email": email }).to_string()).await.status(), 204);

    let trace_id = problem["traceId"].as_str().unwrap();
    assert!(trace_id.starts_with("00-5759e988bd862e3fe1be46a994272793-"), "{trace_id}");
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains(trace_id), "the problem's traceId is in the logs:\n{logs}");
    assert!(logs.contains("resend accepted"), "{logs}");
    let local_part = email.split('@').next().unwrap();
    assert!(!logs.contains(local_part), "an address leaked into the logs:\n{logs}");
    assert!(!logs.contains(&token), "a token leaked into the logs");
    assert_eq!(stack.mails_to(&email).await.len(), 1);
}
