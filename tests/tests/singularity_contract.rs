//! The Singularity contract through HTTP: every status and code of the three routes.

use mailconfirm::domain::{EmailAddress, UnixTime, User, UserId};
use mailconfirm::link_token::{LinkIssuer, token_of};
use mailconfirm_local::harness::TestStack;
use mailconfirm_local::server::mint_access_token;
use reqwest::StatusCode;
use serde_json::{Value, json};

const SEND: &str = "/api/auth/email/verification/send";
const COOLDOWN: &str = "/api/auth/email/verification/cooldown";
const VERIFY: &str = "/api/auth/email/verification";

async fn post_send(stack: &TestStack, token: Option<&str>, query: &str) -> reqwest::Response {
    let mut request = stack.http.post(stack.url(&format!("{SEND}{query}")));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

async fn verify(stack: &TestStack, query: &str) -> reqwest::Response {
    stack.http.post(stack.url(&format!("{VERIFY}{query}"))).send().await.unwrap()
}

/// Asserts Singularity's error body and returns it.
async fn assert_error(response: reqwest::Response, status: u16, code: &str, path: &str) -> Value {
    assert_eq!(response.status().as_u16(), status, "status for {code}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status);
    assert_eq!(body["path"], path);
    assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    let timestamp = body["timestamp"].as_str().unwrap();
    assert!(
        time::OffsetDateTime::parse(timestamp, &time::format_description::well_known::Rfc3339).is_ok()
            && timestamp.ends_with('Z'),
        "{timestamp}"
    );
    body
}

// ---------- POST /api/auth/email/verification/send ----------

#[tokio::test(flavor = "multi_thread")]
async fn a_resend_after_the_cooldown_mails_a_fresh_link_in_the_users_language() {
    let stack = TestStack::start_with(|env| {
        env.insert("COOLDOWN_SECONDS".into(), "1".into());
    })
    .await;
    let (user_id, email) = stack.signed_up_user(Some("de")).await;
    stack.clock.advance(2);

    let response = post_send(&stack, Some(&stack.access_token(&user_id)), "").await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap(), json!({ "cooldown": 1 }));
    let mails = stack.mails_to(&email).await;
    assert_eq!(mails.len(), 2, "the sign-up mail and the resend");
    assert!(mails[1]["subject"].as_str().unwrap().starts_with("Bestätigen"), "{}", mails[1]["subject"]);
    assert!(mails[1]["text"].as_str().unwrap().contains("/confirm-email?token="));
    assert!(mails[1]["html"].as_str().unwrap().contains("/confirm-email?token="));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_locale_parameter_chooses_the_language_of_that_mail() {
    let stack = TestStack::start_with(|env| {
        env.insert("EMAIL_ENABLED".into(), "false".into());
    })
    .await;
    let (user_id, email) = stack.signed_up_user(Some("de")).await;
    let sender = TestStack::start_with(|env| {
        env.insert("TABLE_NAME".into(), stack.table.clone());
    })
    .await;

    let response = post_send(&sender, Some(&sender.access_token(&user_id)), "?locale=fr-CA").await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap(), json!({ "cooldown": 60 }));
    let mails = sender.mails_to(&email).await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0]["subject"], "Confirmez votre adresse e-mail pour mailconfirm local");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_send_within_the_cooldown_is_refused_with_retry_after() {
    let stack = TestStack::start().await;
    let (user_id, email) = stack.signed_up_user(None).await;

    let response = post_send(&stack, Some(&stack.access_token(&user_id)), "").await;

    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_error(response, 429, "EMAIL_COOLDOWN_ACTIVE", SEND).await;
    assert_eq!(stack.mails_to(&email).await.len(), 1, "only the sign-up mail");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_confirmed_user_is_told_the_address_is_already_verified() {
    let stack = TestStack::start_with(|env| {
        env.insert("COOLDOWN_SECONDS".into(), "1".into());
    })
    .await;
    let (user_id, email) = stack.signed_up_user(None).await;
    let token = stack.latest_link_token(&email).await;
    assert_eq!(verify(&stack, &format!("?token={token}")).await.status(), StatusCode::OK);

    let response = post_send(&stack, Some(&stack.access_token(&user_id)), "").await;

    assert_eq!(response.status().as_u16(), 304);
    assert_eq!(stack.mails_to(&email).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn sending_needs_a_valid_unexpired_access_token_from_the_configured_issuer() {
    let stack = TestStack::start().await;
    let (user_id, _) = stack.signed_up_user(None).await;
    let now = UnixTime::now().0;

    assert_error(post_send(&stack, None, "").await, 401, "AUTHENTICATION_REQUIRED", SEND).await;
    assert_error(post_send(&stack, Some("not-a-jwt"), "").await, 401, "ACCESS_TOKEN_INVALID", SEND).await;
    let expired = mint_access_token(json!({ "sub": user_id, "iat": now - 7200, "exp": now - 3600 }));
    assert_error(post_send(&stack, Some(&expired), "").await, 401, "ACCESS_TOKEN_EXPIRED", SEND).await;
    let foreign_issuer = mint_access_token(json!({ "sub": user_id, "iss": "https://evil.example" }));
    assert_error(post_send(&stack, Some(&foreign_issuer), "").await, 401, "ACCESS_TOKEN_INVALID", SEND).await;
    let foreign_audience = mint_access_token(json!({ "sub": user_id, "aud": "another-api" }));
    assert_error(post_send(&stack, Some(&foreign_audience), "").await, 401, "ACCESS_TOKEN_INVALID", SEND).await;
    let wrong_key = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({ "sub": user_id, "iss": "https://auth.local.test", "aud": "mailconfirm", "exp": now + 600 }),
        &jsonwebtoken::EncodingKey::from_secret(b"some-other-secret-0123456789abcdef"),
    )
    .unwrap();
    assert_error(post_send(&stack, Some(&wrong_key), "").await, 401, "ACCESS_TOKEN_INVALID", SEND).await;
    let response = stack.http.post(stack.url(SEND)).header("authorization", "Basic dXNlcjpwYXNz").send().await.unwrap();
    assert_error(response, 401, "AUTHENTICATION_REQUIRED", SEND).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_that_is_not_valid_yet_is_refused_as_invalid() {
    let stack = TestStack::start().await;
    let (user_id, _) = stack.signed_up_user(None).await;
    let now = UnixTime::now().0;
    // Beyond the 30 s leeway for clock skew between the auth server and Lambda.
    let not_yet_valid = mint_access_token(json!({ "sub": user_id, "iat": now, "nbf": now + 120 }));

    let response = post_send(&stack, Some(&not_yet_valid), "").await;

    assert_error(response, 401, "ACCESS_TOKEN_INVALID", SEND).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_access_token_may_come_in_the_access_token_cookie() {
    let stack = TestStack::start().await;
    let (user_id, _) = stack.signed_up_user(None).await;

    let response = stack
        .http
        .post(stack.url(SEND))
        .header("cookie", format!("theme=dark; access_token={}", stack.access_token(&user_id)))
        .send()
        .await
        .unwrap();

    // Authenticated: the cooldown of the sign-up mail answers, not a 401.
    assert_error(response, 429, "EMAIL_COOLDOWN_ACTIVE", SEND).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_for_an_unknown_user_gets_user_not_found() {
    let stack = TestStack::start().await;
    let response = post_send(&stack, Some(&stack.access_token("nobody")), "").await;
    assert_error(response, 404, "USER_NOT_FOUND", SEND).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_locale_is_a_bad_request() {
    let stack = TestStack::start().await;
    let (user_id, _) = stack.signed_up_user(None).await;
    let response = post_send(&stack, Some(&stack.access_token(&user_id)), "?locale=%3Cscript%3E").await;
    assert_error(response, 400, "INVALID_REQUEST", SEND).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn when_ses_rejects_the_mail_the_cooldown_stays_unclaimed_and_nothing_is_lost() {
    let broken = TestStack::start_with(|env| {
        env.insert("SENDER_ADDRESS".into(), "unverified-sender@example.com".into());
    })
    .await;
    let user_id = "user-ses-failure";
    let email = broken.unique_email("grace");
    let sign_up = broken.sign_up(json!({ "user_id": user_id, "email": email })).await;
    assert_eq!(sign_up.batch_item_failures.len(), 1, "the sign-up message is retried");
    let token = broken.access_token(user_id);

    let response = post_send(&broken, Some(&token), "").await;

    assert_error(response, 500, "EMAIL_SEND_FAILURE", SEND).await;
    let stored = broken.stored_user(user_id).await.expect("the pending user");
    assert!(!stored.contains_key("cooldown_until"), "the claim was released");
    let cooldown = broken.http.get(broken.url(COOLDOWN)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(cooldown.json::<Value>().await.unwrap(), json!({ "remaining": 0 }));
    assert!(broken.mails_to(&email).await.is_empty());

    // Once SES works again, the very next attempt goes through.
    let healthy = TestStack::start_with(|env| {
        env.insert("TABLE_NAME".into(), broken.table.clone());
    })
    .await;
    let response = post_send(&healthy, Some(&token), "").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(healthy.mails_to(&email).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_storage_failure_is_a_database_failure() {
    let stack = TestStack::start_with(|env| {
        env.insert("TABLE_NAME".into(), "no-such-table".into());
    })
    .await;
    let token = stack.access_token("someone");
    assert_error(post_send(&stack, Some(&token), "").await, 500, "DATABASE_FAILURE", SEND).await;
    let cooldown = stack.http.get(stack.url(COOLDOWN)).bearer_auth(&token).send().await.unwrap();
    assert_error(cooldown, 500, "DATABASE_FAILURE", COOLDOWN).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_custom_template_is_an_email_template_failure_and_releases_the_claim() {
    let templates = tempdir_with_template("en/subject.txt", "Confirm {{ undefined_variable }}");
    let stack = TestStack::start_with(|env| {
        env.insert("MAIL_TEMPLATES_DIR".into(), templates.clone());
    })
    .await;
    let user_id = "user-template-failure";
    let email = stack.unique_email("tpl");
    let sign_up = stack.sign_up(json!({ "user_id": user_id, "email": email })).await;
    assert_eq!(sign_up.batch_item_failures.len(), 1);

    let response = post_send(&stack, Some(&stack.access_token(user_id)), "").await;

    assert_error(response, 500, "EMAIL_TEMPLATE_FAILURE", SEND).await;
    assert!(!stack.stored_user(user_id).await.unwrap().contains_key("cooldown_until"));
    assert!(stack.mails_to(&email).await.is_empty());
}

fn tempdir_with_template(relative: &str, content: &str) -> String {
    let dir = std::env::temp_dir().join(format!("mailconfirm-templates-{}", mailconfirm_local::gateway::uuid_like()));
    let file = dir.join(relative);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(file, content).unwrap();
    dir.to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_answers_email_disabled_when_mail_is_switched_off() {
    let stack = TestStack::start_with(|env| {
        env.insert("EMAIL_ENABLED".into(), "false".into());
    })
    .await;
    let (user_id, email) = stack.signed_up_user(None).await;
    let token = stack.access_token(&user_id);

    assert_error(post_send(&stack, Some(&token), "").await, 503, "EMAIL_DISABLED", SEND).await;
    let cooldown = stack.http.get(stack.url(COOLDOWN)).bearer_auth(&token).send().await.unwrap();
    assert_error(cooldown, 503, "EMAIL_DISABLED", COOLDOWN).await;
    assert_error(verify(&stack, "?token=x").await, 503, "EMAIL_DISABLED", VERIFY).await;
    assert!(stack.mails_to(&email).await.is_empty());
    assert_eq!(stack.stored_status(&user_id).await.as_deref(), Some("EMAIL_CONFIRMATION_PENDING"));
}

// ---------- GET /api/auth/email/verification/cooldown ----------

#[tokio::test(flavor = "multi_thread")]
async fn the_cooldown_route_counts_down_from_the_last_mail_and_is_zero_without_one() {
    let stack = TestStack::start().await;
    let (user_id, _) = stack.signed_up_user(None).await;
    let response = stack.http.get(stack.url(COOLDOWN)).bearer_auth(stack.access_token(&user_id)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let remaining = response.json::<Value>().await.unwrap()["remaining"].as_u64().unwrap();
    assert!((58..=60).contains(&remaining), "{remaining}");

    let quiet = TestStack::start_with(|env| {
        env.insert("TABLE_NAME".into(), stack.table.clone());
        env.insert("EMAIL_ENABLED".into(), "false".into());
    })
    .await;
    let (unmailed, _) = quiet.signed_up_user(None).await;
    let response = stack.http.get(stack.url(COOLDOWN)).bearer_auth(stack.access_token(&unmailed)).send().await.unwrap();
    assert_eq!(response.json::<Value>().await.unwrap(), json!({ "remaining": 0 }));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cooldown_route_needs_authentication_and_a_known_user() {
    let stack = TestStack::start().await;
    let response = stack.http.get(stack.url(COOLDOWN)).send().await.unwrap();
    assert_error(response, 401, "AUTHENTICATION_REQUIRED", COOLDOWN).await;
    let response = stack.http.get(stack.url(COOLDOWN)).bearer_auth(stack.access_token("ghost")).send().await.unwrap();
    assert_error(response, 404, "USER_NOT_FOUND", COOLDOWN).await;
}

// ---------- POST /api/auth/email/verification ----------

#[tokio::test(flavor = "multi_thread")]
async fn the_token_from_the_mail_confirms_the_user_and_a_second_use_is_harmless() {
    let stack = TestStack::start().await;
    let (user_id, email) = stack.signed_up_user(Some("fr")).await;
    let token = stack.latest_link_token(&email).await;
    assert_eq!(stack.stored_status(&user_id).await.as_deref(), Some("EMAIL_CONFIRMATION_PENDING"));

    let response = verify(&stack, &format!("?token={token}&locale=fr")).await;

    assert_eq!(response.status(), StatusCode::OK);
    let user: Value = response.json().await.unwrap();
    assert_eq!(user["id"], user_id.as_str());
    assert_eq!(user["email"], email.as_str());
    assert_eq!(user["emailVerified"], true);
    assert_eq!(user["userStatus"], "ENABLED");
    assert_eq!(stack.stored_status(&user_id).await.as_deref(), Some("ENABLED"));

    let again = verify(&stack, &format!("?token={token}")).await;
    assert_eq!(again.status().as_u16(), 304);
    assert_eq!(stack.stored_status(&user_id).await.as_deref(), Some("ENABLED"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_or_empty_token_is_reported_missing() {
    let stack = TestStack::start().await;
    assert_error(verify(&stack, "").await, 401, "EMAIL_VERIFICATION_TOKEN_MISSING", VERIFY).await;
    assert_error(verify(&stack, "?token=").await, 401, "EMAIL_VERIFICATION_TOKEN_MISSING", VERIFY).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_or_tampered_token_is_invalid_and_changes_nothing() {
    let stack = TestStack::start().await;
    let (user_id, email) = stack.signed_up_user(None).await;
    let token = stack.latest_link_token(&email).await;
    // The link's MAC ends the token: two other characters there make it another MAC.
    let (head, _) = token.split_at(token.len() - 2);
    let tampered = format!("{head}{}", if token.ends_with("AA") { "BB" } else { "AA" });

    assert_error(verify(&stack, "?token=garbage").await, 401, "EMAIL_VERIFICATION_TOKEN_INVALID", VERIFY).await;
    assert_error(verify(&stack, &format!("?token={tampered}")).await, 401, "EMAIL_VERIFICATION_TOKEN_INVALID", VERIFY)
        .await;
    assert_eq!(stack.stored_status(&user_id).await.as_deref(), Some("EMAIL_CONFIRMATION_PENDING"));
}

fn local_link_issuer(stack: &TestStack, ttl_seconds: u64) -> LinkIssuer {
    let env = mailconfirm_local::stack::local_env(&stack.table, &stack.base_url);
    let mut env = env;
    env.insert("CONFIRMATION_LINK_TTL_SECONDS".into(), ttl_seconds.to_string());
    LinkIssuer::from_config(&env).unwrap()
}

fn pending_user(id: &str, email: &str) -> User {
    User::pending(UserId::parse(id).unwrap(), EmailAddress::parse(email).unwrap(), UnixTime(0))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_link_is_reported_expired() {
    let stack = TestStack::start().await;
    let (user_id, email) = stack.signed_up_user(None).await;
    let two_hours_ago = UnixTime(UnixTime::now().0 - 7200);
    let link =
        local_link_issuer(&stack, 3600).issue(&pending_user(&user_id, &email), "en", None, two_hours_ago).unwrap();

    let response = verify(&stack, &format!("?token={}", token_of(&link.url).unwrap())).await;

    assert_error(response, 401, "EMAIL_VERIFICATION_TOKEN_EXPIRED", VERIFY).await;
    assert_eq!(stack.stored_status(&user_id).await.as_deref(), Some("EMAIL_CONFIRMATION_PENDING"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_link_sent_to_another_address_cannot_confirm_the_user() {
    let stack = TestStack::start().await;
    let (user_id, _) = stack.signed_up_user(None).await;
    let link = local_link_issuer(&stack, 3600)
        .issue(&pending_user(&user_id, "old-address@example.com"), "en", None, UnixTime::now())
        .unwrap();

    let response = verify(&stack, &format!("?token={}", token_of(&link.url).unwrap())).await;

    assert_error(response, 401, "EMAIL_VERIFICATION_TOKEN_INVALID", VERIFY).await;
    assert_eq!(stack.stored_status(&user_id).await.as_deref(), Some("EMAIL_CONFIRMATION_PENDING"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_valid_link_for_a_user_that_does_not_exist_is_user_not_found() {
    let stack = TestStack::start().await;
    let link = local_link_issuer(&stack, 3600)
        .issue(&pending_user("ghost", "ghost@example.com"), "en", None, UnixTime::now())
        .unwrap();
    let response = verify(&stack, &format!("?token={}", token_of(&link.url).unwrap())).await;
    assert_error(response, 404, "USER_NOT_FOUND", VERIFY).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_locale_on_verify_is_a_bad_request() {
    let stack = TestStack::start().await;
    assert_error(verify(&stack, "?token=x&locale=!!").await, 400, "INVALID_REQUEST", VERIFY).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn routes_the_template_does_not_define_are_not_found_as_api_gateway_says() {
    let stack = TestStack::start().await;
    let wrong_method = stack.http.get(stack.url(SEND)).send().await.unwrap();
    assert_eq!(wrong_method.status(), StatusCode::NOT_FOUND);
    assert_eq!(wrong_method.json::<Value>().await.unwrap(), json!({ "message": "Not Found" }));
}
