//! The app's brand and per-client settings through the HTTP layer and the mail: a sign-up's
//! `client_id` picks its brand, sender, language, link base and redirect targets; everyone
//! else gets the global ones; and pressing Confirm always answers `303` (post/redirect/get).

use mailconfirm_local::harness::TestStack;
use reqwest::StatusCode;
use serde_json::json;

const PAGE: &str = "/confirm-email";

const CLIENTS: &str = r##"{
    "ios": {
        "app_name": "Acme for iPhone",
        "logo_url": "https://cdn.acme.example/logo.png",
        "accent_color": "#0f766e",
        "sender_name": "Acme for iPhone",
        "default_locale": "de",
        "redirect_url": "acme://confirmed",
        "redirect_allowed": ["acme://confirmed"],
        "link_base_url": "https://auth.acme.example"
    }
}"##;

async fn branded_stack() -> TestStack {
    TestStack::start_with(|env| {
        env.insert("APP_NAME".into(), "Acme".into());
        env.insert("APP_URL".into(), "https://app.acme.example/home".into());
        env.insert("BRAND_SUPPORT".into(), "https://acme.example/help".into());
        env.insert("BRAND_FOOTER".into(), "Acme Ltd · 1 Main Street".into());
        env.insert("CLIENT_SETTINGS".into(), CLIENTS.into());
    })
    .await
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

async fn press_confirm(stack: &TestStack, token: &str) -> reqwest::Response {
    no_redirects().post(stack.url(PAGE)).form(&[("token", token), ("action", "confirm")]).send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clients_sign_up_gets_its_brand_sender_language_link_base_and_deep_link() {
    let stack = branded_stack().await;
    let email = stack.unique_email("ios");
    let response = stack.sign_up(json!({ "user_id": "ios-user", "email": email, "client_id": "ios" })).await;
    assert!(response.batch_item_failures.is_empty());

    let mails = stack.mails_to(&email).await;
    let mail = mails.last().unwrap();
    assert_eq!(mail["subject"], "Bestätigen Sie Ihre E-Mail-Adresse für Acme for iPhone", "the client's language");
    assert!(mail["from"].as_str().unwrap().starts_with("\"Acme for iPhone\" <"), "{}", mail["from"]);
    let link = mail["link"].as_str().unwrap();
    assert!(link.starts_with("https://auth.acme.example/confirm-email?token="), "the client's link base: {link}");
    let html = mail["html"].as_str().unwrap();
    assert!(html.contains("cdn.acme.example") && html.contains("background:#0f766e"), "the client's logo and colour");
    assert!(mail["text"].as_str().unwrap().contains("— Ihr Acme for iPhone-Team"));

    // The same token opens the page on this stack, in the client's brand and policy.
    let token = mailconfirm::link_token::token_of(link).unwrap();
    let opened = stack.http.get(stack.url(&format!("{PAGE}?token={token}"))).send().await.unwrap();
    let csp = opened.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("img-src https://cdn.acme.example;"), "{csp}");
    assert!(csp.contains("form-action 'self' acme:;"), "{csp}");
    let page = opened.text().await.unwrap();
    assert!(page.contains(r#"alt="Acme for iPhone""#) && page.contains("--accent:#0f766e"), "{page}");
    assert!(page.contains("<html lang=\"de\">"));
    assert!(page.contains("Acme Ltd · 1 Main Street"), "the global footer is inherited");

    let pressed = press_confirm(&stack, token).await;
    assert_eq!(pressed.status(), StatusCode::SEE_OTHER);
    let location = pressed.headers()["location"].to_str().unwrap();
    assert!(location.starts_with("acme://confirmed"), "back into the app: {location}");
    assert_eq!(stack.stored_status("ios-user").await.as_deref(), Some("ENABLED"));
}

#[tokio::test(flavor = "multi_thread")]
async fn confirm_answers_303_to_a_result_page_that_offers_to_continue_to_the_app() {
    let stack = branded_stack().await;
    let (user_id, email) = stack.signed_up_user(None).await;
    let token = stack.latest_link_token(&email).await;
    let mail = stack.mails_to(&email).await.pop().unwrap();
    assert!(mail["text"].as_str().unwrap().contains("Need help? https://acme.example/help"));

    let pressed = press_confirm(&stack, &token).await;
    assert_eq!(pressed.status(), StatusCode::SEE_OTHER, "post/redirect/get");
    let location = pressed.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("confirm-email?token=") && location.ends_with("&done=confirmed"), "{location}");
    assert!(pressed.text().await.unwrap().is_empty());
    assert_eq!(stack.stored_status(&user_id).await.as_deref(), Some("ENABLED"));

    // The browser follows with a GET: reloading it posts nothing again.
    for _ in 0..2 {
        let result = stack.http.get(stack.url(&format!("/{location}"))).send().await.unwrap();
        assert_eq!(result.status(), StatusCode::OK);
        let html = result.text().await.unwrap();
        assert!(html.contains("data-page=\"confirmed\""), "{html}");
        assert!(
            html.contains(
                r#"<a class="button" href="https:&#x2f;&#x2f;app.acme.example&#x2f;home">Continue to Acme</a>"#
            ),
            "{html}"
        );
        assert!(html.contains("Need help?"));
    }

    // A second press is a success too, and says so; opening the link again as well.
    let again = press_confirm(&stack, &token).await;
    let location = again.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.ends_with("&done=already_confirmed"), "{location}");
    let html = stack.http.get(stack.url(&format!("/{location}"))).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("data-page=\"already_confirmed\""));

    // A result page's word is taken only where the stored state agrees with it.
    let (_, pending_email) = stack.signed_up_user(None).await;
    let pending = stack.latest_link_token(&pending_email).await;
    let forged = stack.http.get(stack.url(&format!("{PAGE}?token={pending}&done=confirmed"))).send().await.unwrap();
    assert!(forged.text().await.unwrap().contains("data-page=\"ask\""), "a pending user is not shown as confirmed");
}

/// The claims of a signed result, checked as the app would, with the key it holds.
fn verified_result(result: &str) -> serde_json::Value {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_audience(&["mailconfirm:confirmed"]);
    let key = DecodingKey::from_secret(mailconfirm_local::stack::LOCAL_CONFIRMATION_SIGNING_KEY.as_bytes());
    decode::<serde_json::Value>(result, &key, &validation).expect("a result signed with the key").claims
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sign_ups_redirect_to_is_sealed_in_the_link_and_the_app_gets_a_signed_result() {
    let stack = branded_stack().await;
    let email = stack.unique_email("deep");
    let event = json!({
        "user_id": "deep-user", "email": email, "client_id": "ios", "redirect_to": "acme://confirmed/welcome?from=mail"
    });
    assert!(stack.sign_up(event).await.batch_item_failures.is_empty());
    let link = stack.mails_to(&email).await.pop().unwrap()["link"].as_str().unwrap().to_owned();
    assert!(link.len() <= 250, "sealed target and all, the link stays short: {} characters", link.len());
    let token = mailconfirm::link_token::token_of(&link).unwrap().to_owned();

    // A redirect_to added to the URL cannot replace the sealed one.
    let pressed = no_redirects()
        .post(stack.url(&format!("{PAGE}?redirect_to=acme://confirmed/evil")))
        .form(&[("token", token.as_str()), ("action", "confirm"), ("redirect_to", "acme://confirmed/evil")])
        .send()
        .await
        .unwrap();
    assert_eq!(pressed.status(), StatusCode::SEE_OTHER);
    let location = pressed.headers()["location"].to_str().unwrap().to_owned();
    let (target, result) = location.split_once("&result=").expect("the target's query, then the result");
    assert_eq!(target, "acme://confirmed/welcome?from=mail");
    let claims = verified_result(result);
    assert_eq!(claims["status"], "confirmed");
    assert_eq!(claims["sub"], "deep-user");
    assert_eq!(claims["client_id"], "ios");
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert!((1..=300).contains(&lifetime), "a short-lived result: {lifetime} s");
    let forged = result.replace('.', ".x");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_audience(&["mailconfirm:confirmed"]);
    let other_key = jsonwebtoken::DecodingKey::from_secret(b"another-key-the-app-does-not-trust-0123456789");
    assert!(jsonwebtoken::decode::<serde_json::Value>(result, &other_key, &validation).is_err());
    assert!(jsonwebtoken::decode::<serde_json::Value>(&forged, &other_key, &validation).is_err());

    // Opened again, the confirmed page's Continue leads to the sealed target, with a result.
    let html = stack.http.get(stack.url(&format!("{PAGE}?token={token}"))).send().await.unwrap().text().await.unwrap();
    assert!(html.contains(r#"href="acme:&#x2f;&#x2f;confirmed&#x2f;welcome?from=mail&amp;result="#), "{html}");

    // A target off the client's allow-list is not sealed: the mail goes out without it.
    let other = stack.unique_email("elsewhere");
    let event = json!({ "user_id": "elsewhere-user", "email": other, "client_id": "ios", "redirect_to": "https://evil.example/" });
    assert!(stack.sign_up(event).await.batch_item_failures.is_empty());
    let token = stack.latest_link_token(&other).await;
    let location = press_confirm(&stack, &token).await.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("acme://confirmed?result="), "the client's default target: {location}");
}
