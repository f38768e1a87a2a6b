//! Sign-up events through the sign-up function, on moto: one mail per sign-up, whatever
//! SQS redelivers, and a failure of one message never redelivers the others.

use aws_lambda_events::event::sqs::SqsEvent;
use mailconfirm_local::harness::TestStack;
use mailconfirm_local::server::sqs_event_for;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread")]
async fn a_sign_up_yields_exactly_one_mail_whose_link_confirms_the_user() {
    let stack = TestStack::start().await;
    let email = stack.unique_email("Ada.Lovelace");

    let response = stack.sign_up(json!({ "user_id": "u-42", "email": email, "locale": "en" })).await;

    assert!(response.batch_item_failures.is_empty());
    let mails = stack.mails_to(&email).await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0]["to"], json!([email]), "sent to the address as typed");
    assert_eq!(mails[0]["from"], "\"mailconfirm (local)\" <no-reply@mailconfirm.example.com>");
    assert_eq!(mails[0]["subject"], "Confirm your e-mail address for mailconfirm local");
    let link = mails[0]["link"].as_str().unwrap();
    assert!(link.starts_with(&format!("{}/confirm-email?token=", stack.base_url)), "{link}");
    assert!(mails[0]["html"].as_str().unwrap().contains(link));
    assert_eq!(stack.stored_status("u-42").await.as_deref(), Some("EMAIL_CONFIRMATION_PENDING"));

    let token = stack.latest_link_token(&email).await;
    let confirmed =
        stack.http.post(stack.url(&format!("/api/auth/email/verification?token={token}"))).send().await.unwrap();

    assert_eq!(confirmed.status(), StatusCode::OK);
    assert_eq!(stack.stored_status("u-42").await.as_deref(), Some("ENABLED"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redelivered_sign_up_sends_nothing_a_second_time() {
    let stack = TestStack::start().await;
    let email = stack.unique_email("twice");
    let event = json!({ "user_id": "u-1", "email": email });

    for _ in 0..3 {
        let response = stack.sign_up(event.clone()).await;
        assert!(response.batch_item_failures.is_empty());
    }

    assert_eq!(stack.mails_to(&email).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sign_up_inside_an_eventbridge_envelope_is_handled_like_a_plain_one() {
    let stack = TestStack::start().await;
    let email = stack.unique_email("bridge");
    let envelope = json!({
        "version": "0", "id": "6a7e8feb", "detail-type": "UserSignedUp", "source": "app.signup",
        "account": "123456789012", "time": "2026-11-21T10:00:00Z", "region": "us-east-1", "resources": [],
        "detail": { "user_id": "u-eb", "email": email, "locale": "es" }
    });

    let response = stack.sign_up(envelope).await;

    assert!(response.batch_item_failures.is_empty());
    let mails = stack.mails_to(&email).await;
    assert_eq!(mails.len(), 1);
    assert!(mails[0]["subject"].as_str().unwrap().starts_with("Confirma"), "{}", mails[0]["subject"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_bad_messages_of_a_batch_are_reported_failed() {
    let stack = TestStack::start().await;
    let good_a = stack.unique_email("good-a");
    let good_b = stack.unique_email("good-b");
    let bodies = [
        json!({ "user_id": "a", "email": good_a }).to_string(),
        "{ not json".to_owned(),
        json!({ "user_id": "b", "email": "not-an-address" }).to_string(),
        json!({ "email": stack.unique_email("no-id") }).to_string(),
        json!({ "user_id": "c", "email": good_b }).to_string(),
    ];
    let mut records = Vec::new();
    for (index, body) in bodies.iter().enumerate() {
        let mut record = sqs_event_for(&Value::Null)["Records"][0].clone();
        record["messageId"] = json!(format!("m-{index}"));
        record["body"] = json!(body);
        records.push(record);
    }
    let event: SqsEvent = serde_json::from_value(json!({ "Records": records })).unwrap();

    let response = stack.api.sign_up.handle(event).await;

    let failed: Vec<&str> = response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
    assert_eq!(failed, ["m-1", "m-2", "m-3"]);
    assert_eq!(stack.mails_to(&good_a).await.len(), 1);
    assert_eq!(stack.mails_to(&good_b).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_address_owned_by_another_user_is_refused_in_any_case() {
    let stack = TestStack::start().await;
    let email = stack.unique_email("shared");
    assert!(stack.sign_up(json!({ "user_id": "first", "email": email })).await.batch_item_failures.is_empty());

    let response = stack.sign_up(json!({ "user_id": "second", "email": email.to_uppercase() })).await;

    assert_eq!(response.batch_item_failures.len(), 1);
    assert!(stack.stored_user("second").await.is_none(), "the transaction wrote nothing");
    assert_eq!(stack.mails_to(&email).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sign_up_whose_mail_failed_is_mailed_when_the_message_comes_back() {
    let broken = TestStack::start_with(|env| {
        env.insert("SENDER_ADDRESS".into(), "unverified-sender@example.com".into());
    })
    .await;
    let email = broken.unique_email("retry");
    let event = json!({ "user_id": "u-retry", "email": email, "locale": "it" });
    assert_eq!(broken.sign_up(event.clone()).await.batch_item_failures.len(), 1);
    assert!(broken.mails_to(&email).await.is_empty());

    let healthy = TestStack::start_with(|env| {
        env.insert("TABLE_NAME".into(), broken.table.clone());
    })
    .await;
    assert!(healthy.sign_up(event.clone()).await.batch_item_failures.is_empty());
    assert!(healthy.sign_up(event).await.batch_item_failures.is_empty());

    let mails = healthy.mails_to(&email).await;
    assert_eq!(mails.len(), 1, "sent once, after the failure, and not again");
    assert!(mails[0]["subject"].as_str().unwrap().starts_with("Conferma"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_local_signup_tool_publishes_through_the_same_function() {
    let stack = TestStack::start().await;
    let email = stack.unique_email("tool");

    let response = stack
        .http
        .post(stack.url("/_local/signup"))
        .json(&json!({ "user_id": "t-1", "email": email }))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap(), json!({ "batchItemFailures": [] }));
    let inbox: Value = stack
        .http
        .get(stack.url(&format!("/_local/inbox.json?to={email}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(inbox["messages"].as_array().unwrap().len(), 1);
    for field in ["to", "subject", "text", "html", "link"] {
        assert!(!inbox["messages"][0][field].is_null(), "{field}");
    }
    let page = stack.http.get(stack.url("/_local/inbox")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Confirm your e-mail address for mailconfirm local"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_mail_says_how_long_the_link_works_in_the_unit_and_language_that_fit() {
    let half_hour = TestStack::start_with(|env| {
        env.insert("CONFIRMATION_LINK_TTL_SECONDS".into(), "1800".into());
    })
    .await;
    let english = half_hour.unique_email("ada");
    let german = half_hour.unique_email("grete");

    half_hour.sign_up(json!({ "user_id": "ttl-en", "email": english, "locale": "en" })).await;
    half_hour.sign_up(json!({ "user_id": "ttl-de", "email": german, "locale": "de" })).await;

    let english_mail = &half_hour.mails_to(&english).await[0];
    assert!(english_mail["html"].as_str().unwrap().contains("The link is valid for 30 minutes."), "{english_mail}");
    assert!(!english_mail["html"].as_str().unwrap().contains("hours"));
    let german_mail = &half_hour.mails_to(&german).await[0];
    assert!(german_mail["html"].as_str().unwrap().contains("Der Link ist 30 Minuten gültig."), "{german_mail}");
}

// Commands on the same queue: resends and address changes.

/// The `CommandsRefused` counts since the last call (each test runs in its own process).
fn refusals_counted() -> usize {
    mailconfirm::metrics::take_captured().iter().filter(|line| line.contains("\"CommandsRefused\":1")).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resend_by_id_or_by_address_mails_once_however_often_sqs_delivers_it() {
    let stack = TestStack::start().await;
    let (user_id, email) = stack.signed_up_user(Some("fr")).await;
    stack.clock.advance(61);
    let by_id = stack.queue_message(&json!({ "action": "resend", "user_id": user_id, "locale": "de" }));

    for _ in 0..3 {
        assert!(stack.deliver(&by_id).await.batch_item_failures.is_empty(), "reported done every time");
    }

    let mails = stack.mails_to(&email).await;
    assert_eq!(mails.len(), 2, "the sign-up mail and one resend");
    assert!(mails[1]["subject"].as_str().unwrap().starts_with("Bestätige"), "{}", mails[1]["subject"]);

    // Its key was written with the claim (README "Redelivery"): after the cooldown too, the
    // same message sends nothing, since SES accepted its mail.
    stack.clock.advance(61);
    assert!(stack.deliver(&by_id).await.batch_item_failures.is_empty());
    assert_eq!(stack.mails_to(&email).await.len(), 2, "a late redelivery sends nothing");

    let by_address = stack.queue_message(&json!({ "action": "resend", "email": email.to_uppercase() }));
    for _ in 0..2 {
        assert!(stack.deliver(&by_address).await.batch_item_failures.is_empty());
    }
    assert_eq!(stack.mails_to(&email).await.len(), 3, "another command is another resend");
    // The same idempotency key in two messages is one command.
    stack.clock.advance(61);
    let keyed = json!({ "action": "resend", "user_id": user_id, "idempotency_key": "order-7" });
    assert!(stack.deliver(&stack.queue_message(&keyed)).await.batch_item_failures.is_empty());
    stack.clock.advance(61);
    assert!(stack.deliver(&stack.queue_message(&keyed)).await.batch_item_failures.is_empty());
    assert_eq!(stack.mails_to(&email).await.len(), 4, "one mail for the key");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resend_refused_by_the_cooldown_a_confirmed_or_an_unknown_user_is_done_without_mail() {
    mailconfirm::metrics::capture();
    let stack = TestStack::start().await;
    let (cooling, cooling_email) = stack.signed_up_user(None).await;
    let (confirmed, confirmed_email) = stack.signed_up_user(None).await;
    let token = stack.latest_link_token(&confirmed_email).await;
    let verified = stack.http.post(stack.url(&format!("/api/auth/email/verification?token={token}"))).send().await;
    assert_eq!(verified.unwrap().status(), StatusCode::OK);
    refusals_counted();

    let commands = [
        json!({ "action": "resend", "user_id": cooling }),
        json!({ "action": "resend", "user_id": confirmed }),
        json!({ "action": "resend", "email": confirmed_email }),
        json!({ "action": "resend", "user_id": "nobody-here" }),
        json!({ "action": "resend", "email": stack.unique_email("nobody") }),
        json!({ "action": "change_email", "user_id": "nobody-here", "email": stack.unique_email("new") }),
        json!({ "action": "change_email", "user_id": confirmed, "email": stack.unique_email("new") }),
    ];
    for command in &commands {
        let response = stack.sign_up(command.clone()).await;
        assert!(response.batch_item_failures.is_empty(), "{command}");
    }

    assert_eq!(refusals_counted(), commands.len());
    assert_eq!(stack.mails_to(&cooling_email).await.len(), 1, "only the sign-up mail");
    assert_eq!(stack.mails_to(&confirmed_email).await.len(), 1);
    assert_eq!(stack.stored_user(&confirmed).await.unwrap()["email"].as_s().unwrap(), &confirmed_email);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_email_mails_the_new_address_at_once_and_kills_the_old_link() {
    let stack = TestStack::start().await;
    let (user_id, old_email) = stack.signed_up_user(None).await;
    let old_token = stack.latest_link_token(&old_email).await;
    let new_email = stack.unique_email("moved");
    let change = stack.queue_message(&json!({ "action": "change_email", "user_id": user_id, "email": new_email }));

    for _ in 0..3 {
        assert!(stack.deliver(&change).await.batch_item_failures.is_empty(), "reported done every time");
    }

    assert_eq!(stack.mails_to(&new_email).await.len(), 1, "within the old address's cooldown, and once");
    assert_eq!(stack.mails_to(&old_email).await.len(), 1, "only the sign-up mail");
    let old = stack
        .http
        .post(stack.url("/confirm-email"))
        .form(&[("token", old_token.as_str()), ("action", "confirm")])
        .send()
        .await;
    assert_eq!(old.unwrap().status(), StatusCode::CONFLICT);
    assert_eq!(stack.stored_status(&user_id).await.as_deref(), Some("EMAIL_CONFIRMATION_PENDING"));
    let events: Vec<String> = stack.events_of(&user_id).await.into_iter().map(|(kind, _)| kind).collect();
    assert!(events.contains(&"EmailAddressChanged".to_owned()), "{events:?}");

    let new_token = stack.latest_link_token(&new_email).await;
    let confirmed = stack
        .http
        .post(stack.url("/confirm-email"))
        .form(&[("token", new_token.as_str()), ("action", "confirm")])
        .send()
        .await;
    assert_eq!(confirmed.unwrap().status(), StatusCode::OK);
    assert_eq!(stack.stored_status(&user_id).await.as_deref(), Some("ENABLED"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_to_an_address_another_user_owns_is_done_without_a_move() {
    let stack = TestStack::start().await;
    let (user_id, email) = stack.signed_up_user(None).await;
    let (_, taken) = stack.signed_up_user(None).await;

    let response = stack.sign_up(json!({ "action": "change_email", "user_id": user_id, "email": taken })).await;

    assert!(response.batch_item_failures.is_empty());
    assert_eq!(stack.stored_user(&user_id).await.unwrap()["email"].as_s().unwrap(), &email);
    assert_eq!(stack.mails_to(&taken).await.len(), 1, "only its owner's sign-up mail");
}

#[tokio::test(flavor = "multi_thread")]
async fn commands_forwarded_by_eventbridge_are_named_by_their_detail_type() {
    let stack = TestStack::start().await;
    let (user_id, email) = stack.signed_up_user(None).await;
    let envelope = |detail_type: &str, detail: Value| {
        json!({
            "version": "0", "id": "7b1c0a2e", "detail-type": detail_type, "source": "app.accounts",
            "account": "123456789012", "time": "2026-11-21T10:00:00Z", "region": "us-east-1", "resources": [],
            "detail": detail
        })
    };
    stack.clock.advance(61);

    let resent = stack.sign_up(envelope("ConfirmationResendRequested", json!({ "user_id": user_id }))).await;
    assert!(resent.batch_item_failures.is_empty());
    assert_eq!(stack.mails_to(&email).await.len(), 2);

    let new_email = stack.unique_email("bridge-moved");
    let detail = json!({ "user_id": user_id, "email": new_email, "locale": "it" });
    let moved = stack.sign_up(envelope("EmailChangeRequested", detail)).await;
    assert!(moved.batch_item_failures.is_empty());
    let mails = stack.mails_to(&new_email).await;
    assert_eq!(mails.len(), 1);
    assert!(mails[0]["subject"].as_str().unwrap().starts_with("Conferma"), "{}", mails[0]["subject"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_command_is_reported_failed_like_a_malformed_sign_up() {
    let stack = TestStack::start().await;
    let (user_id, email) = stack.signed_up_user(None).await;
    stack.clock.advance(61);

    for command in [
        json!({ "action": "unsubscribe", "user_id": user_id }),
        json!({ "action": "resend" }),
        json!({ "action": "resend", "user_id": user_id, "email": email }),
        json!({ "action": "change_email", "user_id": user_id, "email": "not-an-address" }),
        json!({ "action": "change_email", "email": stack.unique_email("no-id") }),
    ] {
        assert_eq!(stack.sign_up(command.clone()).await.batch_item_failures.len(), 1, "{command}");
    }
    assert_eq!(stack.mails_to(&email).await.len(), 1);
}
