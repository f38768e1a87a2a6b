//! One-time codes beside links, against moto: the code a sign-up's mail carries confirms
//! through `POST /v1/confirmations/code`; five wrong codes use a code up; a new mail replaces
//! it; it ends with its link; concurrent and brute-force guessing is bounded by the count that
//! goes first.

use std::sync::Arc;

use mailconfirm::confirmation_code::CodeKey;
use mailconfirm::domain::{ConfirmMethod, ConfirmedBy, OneTimeCode, UserId};
use mailconfirm::store::DynamoStore;
use mailconfirm::usecases::confirm_code::{CodeConfirmer, ConfirmCodeError};
use mailconfirm_local::harness::TestStack;
use mailconfirm_local::stack::local_env;
use serde_json::{Value, json};

/// The same length, another value.
fn wrong(code: &str) -> String {
    let mut digits = code.as_bytes().to_vec();
    digits[0] = b'0' + (digits[0] - b'0' + 1) % 10;
    String::from_utf8(digits).unwrap()
}

/// The use case over the stack's table, as the function builds it, for the guessing tests that
/// would otherwise meet the route's throttles.
fn confirmer(stack: &TestStack) -> Arc<CodeConfirmer> {
    let store = Arc::new(DynamoStore::new(stack.aws.clone(), stack.table.clone()));
    let key = CodeKey::from_config(&local_env(&stack.table, &stack.base_url)).unwrap();
    Arc::new(CodeConfirmer::new(store.clone(), store, key))
}

fn stored_number(
    item: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
    name: &str,
) -> Option<i64> {
    item.get(name).and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_code_in_the_sign_up_mail_confirms_the_user_through_the_route() {
    let stack = TestStack::start().await;
    let (user_id, email) = stack.signed_up_user(Some("de")).await;
    let code = stack.latest_code(&email).await;
    assert_eq!(code.len(), 6, "six digits by default");
    let mail = stack.mails_to(&email).await.pop().unwrap();
    assert!(mail["html"].as_str().unwrap().contains(&format!(">{code}</span>")), "the HTML shows it too");

    // Only a keyed digest is stored, never the code.
    let item = stack.stored_user(&user_id).await.unwrap();
    assert!(item.contains_key("code_digest") && item.contains_key("code_expires_at"));
    assert!(item.values().all(|value| value.as_s().map_or(true, |s| !s.contains(&code))), "{item:?}");

    let (status, body) = stack.post_code(&user_id, &code).await;
    assert_eq!((status, body), (200, json!({ "confirmed": true })));
    assert_eq!(stack.stored_status(&user_id).await.as_deref(), Some("ENABLED"));
    let item = stack.stored_user(&user_id).await.unwrap();
    assert!(!item.contains_key("code_digest") && !item.contains_key("code_attempts"), "the code is used up");
    assert_eq!(item["confirmed_via"].as_s().unwrap(), "code");
    // Asking again is still a success: the app wanted a confirmed user.
    assert_eq!(stack.post_code(&user_id, &code).await, (200, json!({ "confirmed": true })));
    let events = stack.events_of(&user_id).await;
    let confirmed: Vec<&Value> = events.iter().filter(|(kind, _)| kind == "EmailConfirmed").map(|(_, d)| d).collect();
    assert_eq!(confirmed.len(), 1);
    assert_eq!(confirmed[0]["method"], "code");
}

#[tokio::test(flavor = "multi_thread")]
async fn five_wrong_codes_use_the_code_up_and_the_right_one_is_refused_after() {
    let stack = TestStack::start().await;
    let (user_id, email) = stack.signed_up_user(None).await;
    let code = stack.latest_code(&email).await;
    for left in (0..5).rev() {
        let (status, body) = stack.post_code(&user_id, &wrong(&code)).await;
        assert_eq!(
            (status, &body["error"], &body["attempts_left"]),
            (422, &json!("wrong_code"), &json!(left)),
            "{body}"
        );
    }
    let (status, body) = stack.post_code(&user_id, &code).await;
    assert_eq!((status, &body["error"]), (410, &json!("too_many_attempts")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("new confirmation mail"));
    assert_eq!(stack.stored_status(&user_id).await.as_deref(), Some("EMAIL_CONFIRMATION_PENDING"));
    assert_eq!(stored_number(&stack.stored_user(&user_id).await.unwrap(), "code_attempts"), Some(5));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_mail_replaces_the_code_and_its_attempts() {
    let stack = TestStack::start().await;
    let (user_id, email) = stack.signed_up_user(None).await;
    let old = stack.latest_code(&email).await;
    for _ in 0..5 {
        assert_eq!(stack.post_code(&user_id, &wrong(&old)).await.0, 422);
    }
    stack.clock.advance(61);
    let resent = stack
        .http
        .post(stack.url("/api/auth/email/verification/send"))
        .bearer_auth(stack.access_token(&user_id))
        .send()
        .await
        .unwrap();
    assert_eq!(resent.status(), 200);
    assert_eq!(stack.mails_to(&email).await.len(), 2);
    let new = stack.latest_code(&email).await;
    assert!(!stack.stored_user(&user_id).await.unwrap().contains_key("code_attempts"), "attempts start afresh");
    if new != old {
        let (status, body) = stack.post_code(&user_id, &old).await;
        assert_eq!((status, &body["attempts_left"]), (422, &json!(4)), "the old code no longer works: {body}");
    }
    assert_eq!(stack.post_code(&user_id, &new).await, (200, json!({ "confirmed": true })));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_code_ends_with_its_link() {
    let stack = TestStack::start_with(|env| {
        env.insert("CONFIRMATION_LINK_TTL_SECONDS".into(), "600".into());
    })
    .await;
    let (user_id, email) = stack.signed_up_user(None).await;
    let code = stack.latest_code(&email).await;
    stack.clock.advance(601);
    let (status, body) = stack.post_code(&user_id, &code).await;
    assert_eq!((status, &body["error"]), (410, &json!("code_expired")), "{body}");
    assert_eq!(stack.stored_status(&user_id).await.as_deref(), Some("EMAIL_CONFIRMATION_PENDING"));
}

#[tokio::test(flavor = "multi_thread")]
async fn codes_can_be_switched_off_and_their_length_set() {
    let off = TestStack::start_with(|env| {
        env.insert("CONFIRMATION_CODES".into(), "false".into());
    })
    .await;
    let (user_id, email) = off.signed_up_user(None).await;
    let mail = off.mails_to(&email).await.pop().unwrap();
    assert_eq!(mail["code"], Value::Null, "{}", mail["text"]);
    let (status, body) = off.post_code(&user_id, "123456").await;
    assert_eq!((status, &body["error"]), (410, &json!("no_code")), "{body}");
    let long = TestStack::start_with(|env| {
        env.insert("CONFIRMATION_CODE_LENGTH".into(), "10".into());
    })
    .await;
    let (_, email) = long.signed_up_user(None).await;
    assert_eq!(long.latest_code(&email).await.len(), 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_route_checks_the_token_the_body_and_its_throttles() {
    let stack = TestStack::start_with(|env| {
        env.insert("CONFIRMATION_CODE_USER_LIMIT".into(), "2".into());
    })
    .await;
    let (user_id, email) = stack.signed_up_user(None).await;
    let code = stack.latest_code(&email).await;
    let route = stack.url("/v1/confirmations/code");
    let anonymous = stack.http.post(&route).json(&json!({ "code": code })).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    for body in [r#"{"code": 123456}"#, r#"{"code": "12345a"}"#, r#"{"code": "123"}"#, "not json", "{}"] {
        let response =
            stack.http.post(&route).bearer_auth(stack.access_token(&user_id)).body(body).send().await.unwrap();
        assert_eq!(response.status(), 400, "{body}");
    }
    assert_eq!(stack.post_code("nobody-here", "123456").await.0, 404);
    assert_eq!(stack.post_code(&user_id, &wrong(&code)).await.0, 422);
    assert_eq!(stack.post_code(&user_id, &wrong(&code)).await.0, 422);
    let throttled = stack
        .http
        .post(&route)
        .bearer_auth(stack.access_token(&user_id))
        .json(&json!({ "code": code }))
        .send()
        .await
        .unwrap();
    assert_eq!(throttled.status(), 429);
    let retry_after: u64 = throttled.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((3590..=3600).contains(&retry_after), "{retry_after}");
    assert_eq!(
        stored_number(&stack.stored_user(&user_id).await.unwrap(), "code_attempts"),
        Some(2),
        "a throttled request counts no attempt"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_concurrent_wrong_guesses_count_exactly_five() {
    let stack = TestStack::start().await;
    let (user_id, email) = stack.signed_up_user(None).await;
    let code = stack.latest_code(&email).await;
    let confirmer = confirmer(&stack);
    let user = UserId::parse(&user_id).unwrap();
    let now = stack.clock_now();
    let mut guesses = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let (confirmer, user, guess) = (confirmer.clone(), user.clone(), OneTimeCode::parse(&wrong(&code)).unwrap());
        guesses.spawn(async move {
            confirmer.attempt(&user, &guess, now, &ConfirmedBy::new(ConfirmMethod::Code, None, None)).await
        });
    }
    let (mut compared, mut refused) = (0, 0);
    while let Some(answer) = guesses.join_next().await {
        match answer.unwrap() {
            Err(ConfirmCodeError::WrongCode { .. }) => compared += 1,
            Err(ConfirmCodeError::TooManyAttempts) => refused += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((compared, refused), (5, 95));
    assert_eq!(stored_number(&stack.stored_user(&user_id).await.unwrap(), "code_attempts"), Some(5));
    assert_eq!(stack.post_code(&user_id, &code).await.0, 410, "the right code comes too late");
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_guesses_from_000000_up_confirm_nothing() {
    let stack = TestStack::start().await;
    let (user_id, email) = stack.signed_up_user(None).await;
    let code = stack.latest_code(&email).await;
    let confirmer = confirmer(&stack);
    let user = UserId::parse(&user_id).unwrap();
    let now = stack.clock_now();
    let (mut confirmed, mut compared) = (0, 0);
    // In order, twenty at a time.
    for chunk in (0..10_000u32).collect::<Vec<_>>().chunks(20) {
        let mut guesses = tokio::task::JoinSet::new();
        for guess in chunk {
            let (confirmer, user) = (confirmer.clone(), user.clone());
            let guess = OneTimeCode::parse(&format!("{guess:06}")).unwrap();
            guesses.spawn(async move {
                confirmer.attempt(&user, &guess, now, &ConfirmedBy::new(ConfirmMethod::Code, None, None)).await
            });
        }
        while let Some(answer) = guesses.join_next().await {
            match answer.unwrap() {
                Ok(_) => confirmed += 1,
                Err(ConfirmCodeError::WrongCode { .. }) => compared += 1,
                Err(ConfirmCodeError::TooManyAttempts) => {}
                Err(other) => panic!("{other:?}"),
            }
        }
    }
    // Only a mailed code among the first twenty guesses could have been compared at all
    // (a chance of 20 in a million); any other is never reached.
    let reachable = code.parse::<u32>().unwrap() < 20;
    if !reachable {
        assert_eq!((confirmed, compared), (0, 5), "{code}");
        assert_eq!(stack.stored_status(&user_id).await.as_deref(), Some("EMAIL_CONFIRMATION_PENDING"));
    }
    assert!(confirmed + compared <= 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_throttled_resend_leaves_the_code_of_the_mail_that_went_out() {
    let stack = TestStack::start_with(|env| {
        env.insert("RESEND_IDENTITY_LIMIT".into(), "1".into());
    })
    .await;
    let (user_id, email) = stack.signed_up_user(None).await;
    let resend = || stack.http.post(stack.url(&format!("/api/users/resendconfirmation/{email}"))).send();
    stack.clock.advance(61);
    assert_eq!(resend().await.unwrap().status(), 200);
    let delivered = stack.latest_code(&email).await;
    assert_eq!(stack.post_code(&user_id, &wrong(&delivered)).await.0, 422);
    // Past the cooldown, so the claim is made, but over the identity throttle: it is given back.
    stack.clock.advance(61);
    assert_eq!(resend().await.unwrap().status(), 429);
    assert_eq!(stack.mails_to(&email).await.len(), 2);
    assert_eq!(stored_number(&stack.stored_user(&user_id).await.unwrap(), "code_attempts"), Some(1));
    assert_eq!(stack.post_code(&user_id, &delivered).await, (200, json!({ "confirmed": true })));
}

async fn post_code_form(stack: &TestStack, email: &str, code: &str) -> reqwest::Response {
    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    no_redirects.post(stack.url("/confirm-email/code")).form(&[("email", email), ("code", code)]).send().await.unwrap()
}

fn page_key(html: &str) -> &str {
    html.split("data-page=\"").nth(1).and_then(|rest| rest.split('"').next()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hosted_form_confirms_with_address_and_code_and_tells_nobody_which_addresses_exist() {
    let stack = TestStack::start().await;
    let (user_id, email) = stack.signed_up_user(None).await;
    let code = stack.latest_code(&email).await;

    let form = stack.http.get(stack.url("/confirm-email/code")).send().await.unwrap();
    assert_eq!(form.status(), 200);
    assert!(form.headers()["content-security-policy"].to_str().unwrap().contains("form-action 'self'"));
    let html = form.text().await.unwrap();
    assert_eq!(page_key(&html), "enter_code");
    assert!(html.contains(r#"autocomplete="one-time-code""#) && html.contains(r#"action="code""#));

    // A wrong code and an unknown address read the same; the typed address is kept.
    let wrong_code = post_code_form(&stack, &email, &wrong(&code)).await;
    assert_eq!(wrong_code.status(), 422);
    let wrong_html = wrong_code.text().await.unwrap();
    assert_eq!(page_key(&wrong_html), "wrong_code");
    assert!(wrong_html.contains(&format!("value=\"{email}\"")) || wrong_html.contains("value=\""), "{wrong_html}");
    let unknown = post_code_form(&stack, &stack.unique_email("nobody"), &code).await;
    assert_eq!(unknown.status(), 422);
    assert_eq!(page_key(&unknown.text().await.unwrap()), "wrong_code");
    for (bad_email, bad_code) in [("not an address", code.as_str()), (email.as_str(), "12"), ("", "")] {
        assert_eq!(post_code_form(&stack, bad_email, bad_code).await.status(), 422, "{bad_email:?} {bad_code:?}");
    }
    let item = stack.stored_user(&user_id).await.unwrap();
    assert_eq!(stored_number(&item, "code_attempts"), Some(1), "only the attempt on the real address counted");

    // The right code: 303 to the result page (post/redirect/get), and the user is confirmed.
    let right = post_code_form(&stack, &email.to_uppercase(), &code).await;
    assert_eq!(right.status(), 303);
    let location = right.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(location, "code?done=confirmed");
    assert_eq!(stack.stored_status(&user_id).await.as_deref(), Some("ENABLED"));
    let result = stack.http.get(stack.url(&format!("/confirm-email/{location}"))).send().await.unwrap();
    assert_eq!(page_key(&result.text().await.unwrap()), "confirmed");
}

#[tokio::test(flavor = "multi_thread")]
async fn five_wrong_codes_on_the_hosted_form_use_the_code_up() {
    let stack = TestStack::start().await;
    let (user_id, email) = stack.signed_up_user(None).await;
    let code = stack.latest_code(&email).await;
    for _ in 0..5 {
        assert_eq!(post_code_form(&stack, &email, &wrong(&code)).await.status(), 422);
    }
    let dead = post_code_form(&stack, &email, &code).await;
    assert_eq!(dead.status(), 410);
    assert_eq!(page_key(&dead.text().await.unwrap()), "code_used_up");
    assert_eq!(stack.stored_status(&user_id).await.as_deref(), Some("EMAIL_CONFIRMATION_PENDING"));
}
