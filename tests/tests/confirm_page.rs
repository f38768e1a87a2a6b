//! The hosted confirm page through the HTTP layer: opening a link changes nothing, only the
//! button confirms, and every outcome has its own page, status and safety headers.

use mailconfirm_local::harness::TestStack;
use reqwest::{Response, StatusCode};

const PAGE: &str = "/confirm-email";
const TWO_DAYS: i64 = 2 * 24 * 3600;

fn now() -> i64 {
    mailconfirm::domain::UnixTime::now().0
}

async fn open(stack: &TestStack, token: &str) -> Response {
    stack.http.get(stack.url(&format!("{PAGE}?token={token}"))).send().await.unwrap()
}

async fn press(stack: &TestStack, token: &str, action: &str) -> Response {
    stack.http.post(stack.url(PAGE)).form(&[("token", token), ("action", action)]).send().await.unwrap()
}

/// The claims of a signed result, checked with the key the app holds (here the link key, as
/// no `CONFIRMED_RESULT_SIGNING_KEY` is set) by an ordinary JWT library.
fn verified_result(result: &str) -> serde_json::Value {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_audience(&["mailconfirm:confirmed"]);
    let key = DecodingKey::from_secret(mailconfirm_local::stack::LOCAL_CONFIRMATION_SIGNING_KEY.as_bytes());
    decode::<serde_json::Value>(result, &key, &validation).expect("a result signed with the key").claims
}

/// `a•••@example.com`, as the page shows an address.
fn masked(email: &str) -> String {
    let (local, domain) = email.split_once('@').unwrap();
    format!("{}•••@{domain}", local.chars().next().unwrap())
}

/// The page's name (`data-page`) and its HTML, after checking the headers every page carries.
async fn page_of(response: Response) -> (StatusCode, String, String) {
    let status = response.status();
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["referrer-policy"], "no-referrer", "the token in the URL must not leak");
    assert_eq!(headers["cache-control"], "no-store");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    let html = response.text().await.unwrap();
    let page = html.split("data-page=\"").nth(1).and_then(|rest| rest.split('"').next()).unwrap_or_default().to_owned();
    (status, page, html)
}

#[tokio::test(flavor = "multi_thread")]
async fn opening_a_link_shows_the_confirm_button_and_changes_nothing() {
    let stack = TestStack::start().await;
    let (user_id, email) = stack.signed_up_user(None).await;
    let token = stack.latest_link_token(&email).await;

    // A mail scanner fetches the link, maybe more than once, maybe with HEAD.
    for _ in 0..3 {
        let (status, page, html) = page_of(open(&stack, &token).await).await;
        assert_eq!((status, page.as_str()), (StatusCode::OK, "ask"));
        assert!(html.contains("<form method=\"post\" action=\"confirm-email\""), "{html}");
        assert!(html.contains(&format!("name=\"token\" value=\"{token}\"")));
        assert!(html.contains("<button type=\"submit\">Confirm</button>"));
        assert!(html.contains(&format!("<strong>{}</strong>", masked(&email))), "the address, masked: {html}");
        assert!(!html.contains(&email), "never the address itself");
    }
    let head = stack.http.head(stack.url(&format!("{PAGE}?token={token}"))).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["referrer-policy"], "no-referrer");
    assert!(head.bytes().await.unwrap().is_empty());

    assert_eq!(stack.stored_status(&user_id).await.as_deref(), Some("EMAIL_CONFIRMATION_PENDING"));
    assert_eq!(stack.mails_to(&email).await.len(), 1, "nothing was sent either");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_button_confirms_and_the_link_then_says_already_confirmed() {
    let stack = TestStack::start().await;
    let (user_id, email) = stack.signed_up_user(None).await;
    let token = stack.latest_link_token(&email).await;

    let (status, page, html) = page_of(press(&stack, &token, "confirm").await).await;

    assert_eq!((status, page.as_str()), (StatusCode::OK, "confirmed"));
    assert!(html.contains("Your e-mail address is confirmed"));
    assert!(html.contains(&format!("E-mail address: <strong>{}</strong>", masked(&email))), "{html}");
    assert!(!html.contains(&email));
    assert_eq!(stack.stored_status(&user_id).await.as_deref(), Some("ENABLED"));
    let (status, page, _) = page_of(press(&stack, &token, "confirm").await).await;
    assert_eq!((status, page.as_str()), (StatusCode::OK, "already_confirmed"), "a second press is a success too");
    let (status, page, html) = page_of(open(&stack, &token).await).await;
    assert_eq!((status, page.as_str()), (StatusCode::OK, "already_confirmed"));
    assert!(!html.contains("<form"), "nothing left to press");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_link_sends_a_new_one_in_the_users_language_within_the_cooldown() {
    // A user whose sign-up mail never went out, so no cooldown is running yet.
    let quiet = TestStack::start_with(|env| {
        env.insert("EMAIL_ENABLED".into(), "false".into());
    })
    .await;
    let (user_id, email) = quiet.signed_up_user(Some("de")).await;
    let stack = TestStack::start_with(|env| {
        env.insert("TABLE_NAME".into(), quiet.table.clone());
    })
    .await;
    let expired = stack.link_token_issued_at(&user_id, &email, "de", now() - TWO_DAYS);

    let (status, page, html) = page_of(open(&stack, &expired).await).await;
    assert_eq!((status, page.as_str()), (StatusCode::GONE, "expired"));
    assert!(html.contains("<html lang=\"de\">") && html.contains("name=\"action\" value=\"send-new-link\""));
    let (status, page, _) = page_of(press(&stack, &expired, "confirm").await).await;
    assert_eq!((status, page.as_str()), (StatusCode::GONE, "expired"), "an expired link confirms nothing");
    assert_eq!(stack.stored_status(&user_id).await.as_deref(), Some("EMAIL_CONFIRMATION_PENDING"));

    let (status, page, _) = page_of(press(&stack, &expired, "send-new-link").await).await;
    assert_eq!((status, page.as_str()), (StatusCode::OK, "new_link_requested"));
    let mails = stack.mails_to(&email).await;
    assert_eq!(mails.len(), 1);
    assert!(mails[0]["subject"].as_str().unwrap().starts_with("Bestätigen"), "{}", mails[0]["subject"]);

    // Within the cooldown the page answers the same, and nothing more is sent.
    let (status, page, _) = page_of(press(&stack, &expired, "send-new-link").await).await;
    assert_eq!((status, page.as_str()), (StatusCode::OK, "new_link_requested"));
    assert_eq!(stack.mails_to(&email).await.len(), 1);

    let fresh = stack.latest_link_token(&email).await;
    let (_, page, _) = page_of(press(&stack, &fresh, "confirm").await).await;
    assert_eq!(page, "confirmed");
}

#[tokio::test(flavor = "multi_thread")]
async fn asking_for_a_new_link_reveals_nothing_about_the_account() {
    let stack = TestStack::start().await;
    let (confirmed_id, confirmed_email) = stack.signed_up_user(None).await;
    let token = stack.latest_link_token(&confirmed_email).await;
    assert_eq!(page_of(press(&stack, &token, "confirm").await).await.1, "confirmed");
    let ghost_email = stack.unique_email("ghost");
    let accounts = [(confirmed_id.as_str(), confirmed_email.as_str()), ("nobody-here", ghost_email.as_str())];

    let mut answers = Vec::new();
    for (user_id, email) in accounts {
        let expired = stack.link_token_issued_at(user_id, email, "en", now() - TWO_DAYS);
        let (status, page, html) = page_of(press(&stack, &expired, "send-new-link").await).await;
        answers.push((status, page, html.replace(&expired, "TOKEN")));
    }

    assert_eq!(answers[0], answers[1], "a confirmed account and no account look the same");
    assert_eq!(answers[0].1, "new_link_requested");
    assert_eq!(stack.mails_to(&confirmed_email).await.len(), 1, "only the sign-up mail");
    assert!(stack.mails_to(&ghost_email).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn new_link_requests_share_the_resend_throttles_and_say_when_to_retry() {
    let stack = TestStack::start_with(|env| {
        env.insert("RESEND_IP_LIMIT".into(), "2".into());
    })
    .await;
    let (user_id, email) = stack.signed_up_user(None).await;
    let expired = stack.link_token_issued_at(&user_id, &email, "en", now() - TWO_DAYS);
    // One Backendless resend and one page request use up this client's allowance of two.
    let resent = stack.http.post(stack.url(&format!("/api/users/resendconfirmation/{email}"))).send().await.unwrap();
    assert_eq!(resent.status(), StatusCode::TOO_MANY_REQUESTS, "the sign-up mail's cooldown");
    assert_eq!(page_of(press(&stack, &expired, "send-new-link").await).await.1, "new_link_requested");

    let response = press(&stack, &expired, "send-new-link").await;

    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=3600).contains(&retry_after));
    let (status, page, html) = page_of(response).await;
    assert_eq!((status, page.as_str()), (StatusCode::TOO_MANY_REQUESTS, "too_many_requests"));
    let when = mailconfirm::durations::retry_in("en", retry_after).unwrap();
    assert!(html.contains(&format!("You can ask for a new link again {when}.")), "{retry_after} s: {html}");
    assert!(html.contains("the last link we sent you still works"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_follows_a_dark_system_scheme_under_its_strict_policy() {
    let stack = TestStack::start().await;
    let (_, email) = stack.signed_up_user(None).await;
    let response = open(&stack, &stack.latest_link_token(&email).await).await;
    let csp = response.headers()["content-security-policy"].to_str().unwrap().to_owned();

    let (_, _, html) = page_of(response).await;

    assert!(html.contains(r#"<meta name="color-scheme" content="light dark">"#));
    let style = html.split("<style>").nth(1).and_then(|rest| rest.split("</style>").next()).unwrap();
    assert!(style.contains("@media (prefers-color-scheme:dark)"), "{style}");
    assert!(csp.contains("style-src 'sha256-") && !csp.contains("unsafe-inline"), "{csp}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_forged_or_tampered_token_is_an_invalid_link() {
    let stack = TestStack::start().await;
    let (_, email) = stack.signed_up_user(None).await;
    let token = stack.latest_link_token(&email).await;
    // The link's MAC ends the token: two other characters there make it another MAC.
    let (head, _) = token.split_at(token.len() - 2);
    let tampered = format!("{head}{}", if token.ends_with("AA") { "BB" } else { "AA" });

    for response in [
        stack.http.get(stack.url(PAGE)).send().await.unwrap(),
        open(&stack, "not-a-token").await,
        open(&stack, &tampered).await,
        press(&stack, &tampered, "confirm").await,
        press(&stack, &tampered, "send-new-link").await,
        press(&stack, &token, "delete-everything").await,
        stack.http.post(stack.url(PAGE)).body("\u{0}garbage").send().await.unwrap(),
    ] {
        let (status, page, html) = page_of(response).await;
        assert_eq!((status, page.as_str()), (StatusCode::BAD_REQUEST, "invalid"));
        assert!(!html.contains("<form"), "an invalid link offers no button");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_link_to_an_address_the_account_no_longer_has_says_so() {
    let stack = TestStack::start().await;
    let old_link = stack.user_whose_address_changed("mover").await;

    let (status, page, _) = page_of(open(&stack, &old_link).await).await;
    assert_eq!((status, page.as_str()), (StatusCode::CONFLICT, "address_changed"));
    let (status, page, _) = page_of(press(&stack, &old_link, "confirm").await).await;
    assert_eq!((status, page.as_str()), (StatusCode::CONFLICT, "address_changed"));
    assert_eq!(stack.stored_status("mover").await.as_deref(), Some("EMAIL_CONFIRMATION_PENDING"));
}

#[tokio::test(flavor = "multi_thread")]
async fn with_mail_switched_off_the_page_says_confirmation_is_unavailable() {
    let stack = TestStack::start_with(|env| {
        env.insert("EMAIL_ENABLED".into(), "false".into());
    })
    .await;
    let (user_id, email) = stack.signed_up_user(None).await;
    let token = stack.link_token_issued_at(&user_id, &email, "en", now());

    for response in [open(&stack, &token).await, press(&stack, &token, "confirm").await] {
        let (status, page, _) = page_of(response).await;
        assert_eq!((status, page.as_str()), (StatusCode::SERVICE_UNAVAILABLE, "mail_disabled"));
    }
    assert_eq!(stack.stored_status(&user_id).await.as_deref(), Some("EMAIL_CONFIRMATION_PENDING"));
}

#[tokio::test(flavor = "multi_thread")]
async fn when_storage_fails_the_page_offers_a_retry_and_nothing_is_lost() {
    let healthy = TestStack::start().await;
    let (user_id, email) = healthy.signed_up_user(None).await;
    let token = healthy.latest_link_token(&email).await;
    let broken = TestStack::start_with(|env| {
        env.insert("TABLE_NAME".into(), "no-such-table".into());
    })
    .await;

    // Opening still shows the button: the failed read only decided which page to show.
    let (status, page, _) = page_of(open(&broken, &token).await).await;
    assert_eq!((status, page.as_str()), (StatusCode::OK, "ask"));
    let (status, page, html) = page_of(press(&broken, &token, "confirm").await).await;

    assert_eq!((status, page.as_str()), (StatusCode::SERVICE_UNAVAILABLE, "temporary_failure"));
    assert!(html.contains(&format!("name=\"token\" value=\"{token}\"")) && html.contains("value=\"confirm\""));
    assert_eq!(healthy.stored_status(&user_id).await.as_deref(), Some("EMAIL_CONFIRMATION_PENDING"));
    // The same button, once storage answers again, confirms.
    assert_eq!(page_of(press(&healthy, &token, "confirm").await).await.1, "confirmed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_confirmed_person_goes_on_to_the_app_and_only_to_allowed_origins() {
    let stack = TestStack::start_with(|env| {
        env.insert("CONFIRMED_REDIRECT_URL".into(), "https://app.example.com/welcome".into());
        env.insert("CONFIRMED_REDIRECT_ALLOWED_ORIGINS".into(), "https://beta.example.com".into());
    })
    .await;
    let no_follow = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let mut locations = Vec::new();
    for redirect_to in ["", "https://beta.example.com/hello", "https://evil.example/phish", "//evil.example/"] {
        let (_, email) = stack.signed_up_user(None).await;
        let token = stack.latest_link_token(&email).await;
        let opened = stack.http.get(stack.url(&format!("{PAGE}?token={token}&redirect_to={redirect_to}")));
        let (_, _, html) = page_of(opened.send().await.unwrap()).await;
        if !redirect_to.is_empty() {
            assert!(html.contains("name=\"redirect_to\""), "the form carries the request's redirect_to");
        }
        let response = no_follow
            .post(stack.url(PAGE))
            .form(&[("token", token.as_str()), ("action", "confirm"), ("redirect_to", redirect_to)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(response.headers()["referrer-policy"], "no-referrer");
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        // Each redirect carries the signed result the app verifies instead of calling back.
        let (target, result) = location.split_once("?result=").expect("a signed result");
        let claims = verified_result(result);
        assert_eq!(
            (claims["status"].as_str(), claims["aud"].as_str()),
            (Some("confirmed"), Some("mailconfirm:confirmed"))
        );
        locations.push(target.to_owned());
    }
    assert_eq!(
        locations,
        [
            "https://app.example.com/welcome",
            "https://beta.example.com/hello",
            "https://app.example.com/welcome",
            "https://app.example.com/welcome"
        ]
    );
    let csp = stack.http.get(stack.url(PAGE)).send().await.unwrap().headers()["content-security-policy"].clone();
    assert!(csp.to_str().unwrap().contains("form-action 'self' https://app.example.com https://beta.example.com"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_speaks_the_links_language_else_the_browsers_else_the_default() {
    let stack = TestStack::start().await;
    let (_, email) = stack.signed_up_user(Some("it")).await;
    let token = stack.latest_link_token(&email).await;
    let italian = stack
        .http
        .get(stack.url(&format!("{PAGE}?token={token}")))
        .header("accept-language", "es-ES,es;q=0.9")
        .send()
        .await
        .unwrap();
    assert_eq!(italian.headers()["content-language"], "it");
    assert!(page_of(italian).await.2.contains("<button type=\"submit\">Conferma</button>"));

    let languages = [
        ("es-MX,es;q=0.9,en;q=0.5", "es"),
        ("fr-CA", "fr"),
        ("de-AT", "de"),
        ("ja", "ja"),
        ("pt-BR", "pt"),
        ("zh-CN,zh;q=0.9", "zh-Hans"),
        ("zh-TW,ko;q=0.5", "en"),
        ("ko", "en"),
        ("", "en"),
    ];
    for (accept_language, expected) in languages {
        let response =
            stack.http.get(stack.url(&format!("{PAGE}?token=bad"))).header("accept-language", accept_language);
        let response = response.send().await.unwrap();
        assert_eq!(response.headers()["content-language"], expected, "{accept_language:?}");
        let (_, _, html) = page_of(response).await;
        assert!(html.contains(&format!("<html lang=\"{expected}\">")), "{accept_language:?} → {expected}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn other_methods_are_not_routed_to_the_page() {
    let stack = TestStack::start().await;
    let response = stack.http.put(stack.url(PAGE)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND, "API Gateway has no PUT route");

    // Should a route ever send it one, the function itself refuses other methods too.
    let page = stack.api.gateway_function("confirm-page").unwrap();
    let put = http::Request::builder().method("PUT").uri(PAGE).body(lambda_http::Body::Empty).unwrap();
    let response = page.handle(put).await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "GET, HEAD, POST");
    assert_eq!(response.headers()["referrer-policy"], "no-referrer");
}
