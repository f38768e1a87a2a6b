//! The Backendless contract through HTTP, and through Backendless's own JavaScript SDK.

use std::process::Command;

use mailconfirm_local::harness::TestStack;
use mailconfirm_local::server::mint_access_token;
use mailconfirm_local::template::project_root;
use reqwest::StatusCode;
use serde_json::{Value, json};

const RESEND: &str = "/api/users/resendconfirmation/";
const CREATE_URL: &str = "/api/users/createEmailConfirmationURL/";

/// A stack whose users were signed up while mail was off: no cooldown runs for them yet.
async fn stack_with_unmailed_users(
    adjust: impl FnOnce(&mut std::collections::HashMap<String, String>),
) -> (TestStack, TestStack) {
    let quiet = TestStack::start_with(|env| {
        env.insert("EMAIL_ENABLED".into(), "false".into());
    })
    .await;
    let table = quiet.table.clone();
    let stack = TestStack::start_with(|env| {
        env.insert("TABLE_NAME".into(), table);
        adjust(env);
    })
    .await;
    (quiet, stack)
}

async fn resend(stack: &TestStack, encoded_identity: &str) -> reqwest::Response {
    stack.http.post(stack.url(&format!("{RESEND}{encoded_identity}"))).send().await.unwrap()
}

async fn assert_error(response: reqwest::Response, status: u16, code: u64) -> reqwest::header::HeaderMap {
    assert_eq!(response.status().as_u16(), status);
    let headers = response.headers().clone();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert_eq!(body.as_object().unwrap().len(), 2, "only message and code: {body}");
    headers
}

fn admin_token() -> String {
    mint_access_token(json!({ "sub": "backend-service", "roles": ["mailconfirm-admin"] }))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resend_answers_200_with_no_body_and_mails_the_user_whatever_the_encoding_of_the_address() {
    let (quiet, stack) = stack_with_unmailed_users(|_| {}).await;
    let plus_address = quiet.unique_email("ada+news");
    assert!(quiet.sign_up(json!({ "user_id": "plus", "email": plus_address })).await.batch_item_failures.is_empty());
    let (_, mixed) = quiet.signed_up_user(None).await;
    let (_, encoded) = quiet.signed_up_user(None).await;

    for identity in [plus_address.clone(), mixed.to_uppercase(), encoded.replace('@', "%40")] {
        let response = resend(&stack, &identity).await;
        assert_eq!(response.status(), StatusCode::OK, "{identity}");
        assert_eq!(response.text().await.unwrap(), "");
    }

    for address in [&plus_address, &mixed, &encoded] {
        let mails = stack.mails_to(address).await;
        assert_eq!(mails.len(), 1, "{address}");
        assert_eq!(mails[0]["to"], json!([address]));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_resend_within_the_cooldown_is_refused_with_retry_after() {
    let stack = TestStack::start().await;
    let (_, email) = stack.signed_up_user(None).await;
    let headers = assert_error(resend(&stack, &email).await, 429, 999).await;
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after));
    assert_eq!(stack.mails_to(&email).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_three_documented_errors() {
    let stack = TestStack::start().await;
    let (user_id, email) = stack.signed_up_user(None).await;
    let token = stack.latest_link_token(&email).await;
    stack.http.post(stack.url(&format!("/api/auth/email/verification?token={token}"))).send().await.unwrap();
    assert_eq!(stack.stored_status(&user_id).await.as_deref(), Some("ENABLED"));

    assert_error(resend(&stack, &email).await, 400, 3102).await;
    assert_error(resend(&stack, "nobody%40example.com").await, 400, 3104).await;
    assert_error(resend(&stack, "not-an-address").await, 400, 3104).await;

    let off = TestStack::start_with(|env| {
        env.insert("EMAIL_ENABLED".into(), "false".into());
    })
    .await;
    let (_, pending) = off.signed_up_user(None).await;
    assert_error(resend(&off, &pending).await, 400, 3103).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_per_address_throttle_counts_unknown_identities_too() {
    let stack = TestStack::start_with(|env| {
        env.insert("RESEND_IP_LIMIT".into(), "3".into());
    })
    .await;
    assert_error(resend(&stack, "a%40example.com").await, 400, 3104).await;
    assert_error(resend(&stack, "b%40example.com").await, 400, 3104).await;
    assert_error(resend(&stack, "c%40example.com").await, 400, 3104).await;
    let headers = assert_error(resend(&stack, "d%40example.com").await, 429, 999).await;
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=3600).contains(&retry_after));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_per_identity_throttle_counts_an_address_in_any_case() {
    let (quiet, stack) = stack_with_unmailed_users(|env| {
        env.insert("RESEND_IDENTITY_LIMIT".into(), "2".into());
    })
    .await;
    let (_, email) = quiet.signed_up_user(None).await;
    assert_eq!(resend(&stack, &email).await.status(), StatusCode::OK);
    assert_error(resend(&stack, &email.to_uppercase()).await, 429, 999).await; // the cooldown
    assert_error(resend(&stack, &email).await, 429, 999).await; // the identity throttle
    assert_error(resend(&stack, "ghost%40example.com").await, 400, 3104).await;
    assert_error(resend(&stack, "GHOST%40example.com").await, 400, 3104).await;
    assert_error(resend(&stack, "ghost%40example.com").await, 429, 999).await;
    assert_eq!(stack.mails_to(&email).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn paranoid_mode_answers_unknown_identities_as_known_ones() {
    let (quiet, stack) = stack_with_unmailed_users(|env| {
        env.insert("BACKENDLESS_PARANOID".into(), "true".into());
    })
    .await;
    let (_, known) = quiet.signed_up_user(None).await;

    let unknown = resend(&stack, "nobody%40example.com").await;
    let known_response = resend(&stack, &known).await;

    assert_eq!(unknown.status(), known_response.status());
    assert_eq!(unknown.status(), StatusCode::OK);
    assert_eq!(unknown.text().await.unwrap(), known_response.text().await.unwrap());
    assert_eq!(stack.mails_to("nobody@example.com").await.len(), 0);
    assert_eq!(stack.mails_to(&known).await.len(), 1);
}

/// What an answer shows of the account: status, body, header names, and Retry-After.
async fn seen(response: reqwest::Response) -> (u16, String, Vec<String>, Option<u64>) {
    let status = response.status().as_u16();
    let mut names: Vec<String> = response.headers().keys().map(|name| name.as_str().to_owned()).collect();
    names.sort();
    let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().parse().unwrap());
    (status, response.text().await.unwrap(), names, retry_after)
}

fn median(mut samples: Vec<std::time::Duration>) -> std::time::Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::test(flavor = "multi_thread")]
async fn paranoid_mode_tells_no_account_apart_by_answer_throttle_or_time() {
    // Answers first, without the time floor (it is measured below, on its own stack).
    let (quiet, stack) = stack_with_unmailed_users(|env| {
        env.insert("BACKENDLESS_PARANOID".into(), "true".into());
        env.insert("BACKENDLESS_PARANOID_MIN_RESPONSE_MS".into(), "0".into());
        env.insert("RESEND_IP_LIMIT".into(), "100".into());
    })
    .await;
    let (_, pending) = quiet.signed_up_user(None).await;
    let (_, cooling) = stack.signed_up_user(None).await; // mailed at sign-up: its cooldown runs
    let (confirmed_id, confirmed) = quiet.signed_up_user(None).await;
    let link = quiet.link_token_issued_at(&confirmed_id, &confirmed, "en", quiet.clock_now().0);
    stack.http.post(stack.url(&format!("/api/auth/email/verification?token={link}"))).send().await.unwrap();
    assert_eq!(stack.stored_status(&confirmed_id).await.as_deref(), Some("ENABLED"));
    let unknown = stack.unique_email("nobody");

    // Six requests for each kind of account, interleaved: the same five 200s, then the same
    // 429 from the identity throttle (5 per hour), whatever the account.
    let kinds = [&unknown, &pending, &cooling, &confirmed];
    let mut answers = vec![Vec::new(); kinds.len()];
    for _ in 0..6 {
        for (kind, identity) in kinds.iter().enumerate() {
            answers[kind].push(seen(resend(&stack, identity).await).await);
        }
    }
    for (kind, seen) in answers.iter().enumerate() {
        let statuses: Vec<u16> = seen.iter().map(|answer| answer.0).collect();
        assert_eq!(statuses, [200, 200, 200, 200, 200, 429], "{}", kinds[kind]);
        for (request, answer) in seen.iter().enumerate() {
            let unknowns = &answers[0][request];
            assert_eq!((answer.0, &answer.1, &answer.2), (unknowns.0, &unknowns.1, &unknowns.2), "{}", kinds[kind]);
            let (a, b) = (answer.3.unwrap_or(0), unknowns.3.unwrap_or(0));
            assert!(a.abs_diff(b) <= 2, "Retry-After {a} vs {b} for {}", kinds[kind]);
        }
    }
    assert_eq!(stack.mails_to(&pending).await.len(), 1, "the pending user was mailed once");

    // Time: a known pending address (mailed each time) against an unknown one, interleaved,
    // with a floor well above what a mail takes on a loaded test machine (the default is 400 ms).
    let timed = TestStack::start_with(|env| {
        env.insert("TABLE_NAME".into(), quiet.table.clone());
        env.insert("BACKENDLESS_PARANOID".into(), "true".into());
        env.insert("BACKENDLESS_PARANOID_MIN_RESPONSE_MS".into(), "700".into());
        env.insert("RESEND_IP_LIMIT".into(), "100".into());
    })
    .await;
    let stack = timed;
    let (mut known_times, mut unknown_times) = (Vec::new(), Vec::new());
    for _ in 0..9 {
        let (_, fresh) = quiet.signed_up_user(None).await;
        let started = std::time::Instant::now();
        assert_eq!(resend(&stack, &fresh).await.status(), StatusCode::OK);
        known_times.push(started.elapsed());
        let started = std::time::Instant::now();
        assert_eq!(resend(&stack, &stack.unique_email("nobody")).await.status(), StatusCode::OK);
        unknown_times.push(started.elapsed());
    }
    let (known, unknown) = (median(known_times), median(unknown_times));
    assert!(known >= std::time::Duration::from_millis(700), "the floor holds: {known:?}");
    let gap = known.abs_diff(unknown);
    assert!(gap <= std::time::Duration::from_millis(10), "medians {known:?} and {unknown:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_throttle_window_slides_with_the_requests_not_with_the_clock() {
    let stack = TestStack::start_with(|env| {
        env.insert("RESEND_IP_LIMIT".into(), "3".into());
        env.insert("RESEND_IP_WINDOW_SECONDS".into(), "3600".into());
    })
    .await;
    for _ in 0..3 {
        assert_error(resend(&stack, &stack.unique_email("a").replace('@', "%40")).await, 400, 3104).await;
        stack.clock.advance(1000);
    }
    // 3000 s after the first of three requests: it leaves the window in 600 s, not at an hour boundary.
    let headers = assert_error(resend(&stack, "d%40example.com").await, 429, 999).await;
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((599..=600).contains(&retry_after), "{retry_after}");
    stack.clock.advance(600);
    assert_error(resend(&stack, "d%40example.com").await, 400, 3104).await;
    // The second request (at 1000 s) still counts for another 400 s.
    assert_error(resend(&stack, "e%40example.com").await, 429, 999).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_gets_a_confirmation_url_that_confirms_without_mail_or_cooldown() {
    let (quiet, stack) = stack_with_unmailed_users(|_| {}).await;
    let (user_id, email) = quiet.signed_up_user(None).await;

    let response = stack
        .http
        .post(stack.url(&format!("{CREATE_URL}{email}")))
        .header("user-token", admin_token())
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    let url = response.json::<Value>().await.unwrap()["confirmationURL"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&format!("{}/confirm-email?token=", stack.base_url)), "{url}");
    assert!(stack.mails_to(&email).await.is_empty(), "no mail");
    assert!(!stack.stored_user(&user_id).await.unwrap().contains_key("cooldown_until"), "no cooldown");
    // The confirm page accepts the URL as it is: opening it asks, its button confirms.
    let opened = stack.http.get(&url).send().await.unwrap();
    assert_eq!(opened.status(), StatusCode::OK);
    assert!(opened.text().await.unwrap().contains("data-page=\"ask\""));
    let token = url.split_once("token=").unwrap().1;
    let confirmed = stack.http.post(stack.url("/confirm-email")).form(&[("token", token)]).send().await.unwrap();
    assert_eq!(confirmed.status(), StatusCode::OK);
    assert!(confirmed.text().await.unwrap().contains("data-page=\"confirmed\""));
    assert_eq!(stack.stored_status(&user_id).await.as_deref(), Some("ENABLED"));

    let again =
        stack.http.post(stack.url(&format!("{CREATE_URL}{email}"))).bearer_auth(admin_token()).send().await.unwrap();
    assert_error(again, 400, 3102).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn only_an_admin_token_may_create_confirmation_urls() {
    let stack = TestStack::start().await;
    let (user_id, email) = stack.signed_up_user(None).await;
    let create = |token: Option<String>| {
        let mut request = stack.http.post(stack.url(&format!("{CREATE_URL}{email}")));
        if let Some(token) = token {
            request = request.header("user-token", token);
        }
        request.send()
    };

    assert_error(create(None).await.unwrap(), 401, 3064).await;
    assert_error(create(Some("garbage".into())).await.unwrap(), 401, 3064).await;
    assert_error(create(Some(stack.access_token(&user_id))).await.unwrap(), 403, 3066).await;
    let by_scope = mint_access_token(json!({ "sub": "svc", "scope": "openid mailconfirm:admin" }));
    assert_eq!(create(Some(by_scope)).await.unwrap().status(), StatusCode::OK);
    let unknown = stack
        .http
        .post(stack.url(&format!("{CREATE_URL}nobody%40example.com")))
        .header("user-token", admin_token())
        .send()
        .await
        .unwrap();
    assert_error(unknown, 400, 3104).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_app_information_answers_anyone_and_refuses_a_user_token_that_does_not_verify() {
    let stack = TestStack::start().await;
    let info = |token: Option<String>| {
        let mut request = stack.http.get(stack.url("/api/info"));
        if let Some(token) = token {
            request = request.header("user-token", token);
        }
        request.send()
    };

    for token in [None, Some(stack.access_token("someone")), Some(admin_token())] {
        let answer = info(token).await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        assert_eq!(answer.headers()["content-type"], "application/json");
        assert_eq!(answer.json::<Value>().await.unwrap(), json!({ "loggers": [] }));
    }
    let now = jsonwebtoken::get_current_timestamp() as i64;
    let expired = mint_access_token(json!({ "sub": "someone", "exp": now - 3600 }));
    let tampered = stack.access_token("someone").replace('.', "x.");
    for stale in [expired, "garbage".to_owned(), tampered] {
        assert_error(info(Some(stale)).await.unwrap(), 401, 3064).await;
    }
}

/// Runs tests/clients/backendless.mjs: Backendless's SDK against the local API.
fn backendless_sdk(stack: &TestStack, call: &str, identity: &str, user_token: Option<&str>) -> Value {
    let clients = project_root().join("tests/clients");
    assert!(
        clients.join("node_modules/backendless").is_dir(),
        "run scripts/test, which installs the npm package backendless"
    );
    let mut command = Command::new("node");
    command.current_dir(&clients).arg("backendless.mjs").arg(&stack.base_url).arg(call).arg(identity);
    if let Some(token) = user_token {
        command.arg(token);
    }
    let output = command.output().expect("node runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    // The SDK's start (initApp loads /api/info, and the logging levels from it) went through.
    for complaint in ["could not load backendless app info", "Could not load logging levels"] {
        assert!(!stderr.contains(complaint), "the SDK logged {complaint:?}: {stderr}");
    }
    serde_json::from_slice(&output.stdout).expect("the script prints JSON")
}

#[tokio::test(flavor = "multi_thread")]
async fn backendless_own_javascript_sdk_resends_and_creates_urls() {
    let (quiet, stack) = stack_with_unmailed_users(|_| {}).await;
    let (user_id, email) = quiet.signed_up_user(None).await;

    let anonymous = backendless_sdk(&stack, "create-url", &email, None);
    assert_eq!(
        (anonymous["ok"].as_bool(), anonymous["code"].as_u64(), anonymous["status"].as_u64()),
        (Some(false), Some(3064), Some(401))
    );

    let created = backendless_sdk(&stack, "create-url", &email, Some(&admin_token()));
    assert_eq!(created["ok"], true, "{created}");
    let url = created["value"]["confirmationURL"].as_str().unwrap().to_owned();
    assert!(url.contains("/confirm-email?token="));

    let resent = backendless_sdk(&stack, "resend", &email, None);
    assert_eq!(resent["ok"], true, "{resent}");
    assert_eq!(stack.mails_to(&email).await.len(), 1);

    let too_soon = backendless_sdk(&stack, "resend", &email, None);
    assert_eq!((too_soon["code"].as_u64(), too_soon["status"].as_u64()), (Some(999), Some(429)), "{too_soon}");

    let unknown = backendless_sdk(&stack, "resend", "nobody@example.com", None);
    assert_eq!((unknown["code"].as_u64(), unknown["status"].as_u64()), (Some(3104), Some(400)), "{unknown}");
    assert!(unknown["message"].as_str().unwrap().contains("cannot be found"));

    // The SDK's link confirms the user; after that the SDK gets 3102.
    let token = url.split_once("token=").unwrap().1;
    let confirmed =
        stack.http.post(stack.url(&format!("/api/auth/email/verification?token={token}"))).send().await.unwrap();
    assert_eq!(confirmed.status(), StatusCode::OK);
    assert_eq!(stack.stored_status(&user_id).await.as_deref(), Some("ENABLED"));
    let confirmed_already = backendless_sdk(&stack, "resend", &email, None);
    assert_eq!((confirmed_already["code"].as_u64(), confirmed_already["status"].as_u64()), (Some(3102), Some(400)));
}

#[tokio::test(flavor = "multi_thread")]
async fn backendless_own_javascript_sdk_starts_cleanly_and_drops_a_stale_user_token() {
    let stack = TestStack::start().await;
    let info = json!({ "loggers": [] });
    let anonymous = json!({ "url": "/api/info", "userToken": null, "status": 200, "body": info });

    // initApp's own request, whose answer the SDK then keeps.
    let started = backendless_sdk(&stack, "app-info", "-", None);
    assert_eq!(started["value"]["requests"], json!([anonymous]), "{started}");
    assert_eq!(started["value"]["settled"], true, "{started}");

    let valid = stack.access_token("someone");
    let logged_in = backendless_sdk(&stack, "app-info", "-", Some(&valid));
    let with_token = json!({ "url": "/api/info", "userToken": valid, "status": 200, "body": info });
    assert_eq!(logged_in["value"]["requests"], json!([anonymous, with_token]), "{logged_in}");
    assert_eq!((&logged_in["value"]["settled"], &logged_in["value"]["userTokenAfter"]), (&json!(true), &json!(valid)));

    // On 3064 the SDK forgets the token and asks again without it, which is answered. SDK 8.0.0
    // never hands that second answer to its promise (`appInfoPromise` returns it from a `catch`
    // after `then(resolve)`), so the promise stays pending: nothing is logged, and the SDK's
    // logging levels keep those initApp loaded.
    let now = jsonwebtoken::get_current_timestamp() as i64;
    let stale = mint_access_token(json!({ "sub": "someone", "exp": now - 3600 }));
    let recovered = backendless_sdk(&stack, "app-info", "-", Some(&stale));
    let refused = json!({ "url": "/api/info", "userToken": stale, "status": 401, "code": 3064 });
    assert_eq!(recovered["value"]["requests"], json!([anonymous, refused, anonymous]), "{recovered}");
    assert_eq!((&recovered["value"]["settled"], &recovered["value"]["userTokenAfter"]), (&json!(false), &Value::Null));
}
