//! The files `sam local invoke -e` uses (infra/events/*.json), replayed through each
//! function's handler exactly as the Lambda runtime would hand them over.

use aws_lambda_events::event::sqs::SqsEvent;
use mailconfirm_local::gateway::invoke;
use mailconfirm_local::harness::TestStack;
use mailconfirm_local::template::{Template, project_root};
use serde_json::Value;

fn event(name: &str) -> Value {
    let path = project_root().join("infra/events").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

async fn replay(stack: &TestStack, binary: &str, name: &str) -> (u16, Value) {
    let function = stack.api.gateway_function(binary).unwrap_or_else(|| panic!("no handler for {binary}"));
    let response = invoke(&function, event(name)).await.expect("the handler ran");
    let status = response["statusCode"].as_u64().unwrap() as u16;
    let body = response["body"]
        .as_str()
        .filter(|b| !b.is_empty())
        .map(|b| serde_json::from_str(b).unwrap())
        .unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sam_local_events_replay_the_whole_flow() {
    let stack = TestStack::start().await;

    // signup-events.json: user-123 <ada@example.com> signs up.
    let sqs: SqsEvent = serde_json::from_value(event("signup-events.json")).unwrap();
    let batch = stack.api.sign_up.handle(sqs).await;
    assert!(batch.batch_item_failures.is_empty());
    assert_eq!(stack.stored_status("user-123").await.as_deref(), Some("EMAIL_CONFIRMATION_PENDING"));

    // singularity-verification-cooldown.json: the sign-up mail started the cooldown.
    let (status, body) =
        replay(&stack, "singularity-verification-cooldown", "singularity-verification-cooldown.json").await;
    assert_eq!(status, 200);
    assert!(body["remaining"].as_u64().unwrap() > 0, "{body}");

    // singularity-send-verification.json: refused while the cooldown runs.
    let (status, body) = replay(&stack, "singularity-send-verification", "singularity-send-verification.json").await;
    assert_eq!((status, body["code"].as_str()), (429, Some("EMAIL_COOLDOWN_ACTIVE")));

    // backendless-resend-confirmation.json: the same cooldown, in Backendless's words.
    let (status, body) =
        replay(&stack, "backendless-resend-confirmation", "backendless-resend-confirmation.json").await;
    assert_eq!((status, body["code"].as_u64()), (429, Some(999)));

    // mastodon-resend-confirmation.json: the creating application, still within the cooldown.
    let (status, body) = replay(&stack, "mastodon-resend-confirmation", "mastodon-resend-confirmation.json").await;
    assert_eq!((status, body["error"].as_str()), (429, Some("Too many requests")));

    // tennpay-send-confirmation.json: user 123 has no pending address here: 204, nothing sent.
    let (status, body) = replay(&stack, "tennpay-send-confirmation", "tennpay-send-confirmation.json").await;
    assert_eq!((status, body), (204, Value::Null));
    assert!(stack.mails_to("user.name@example.org").await.is_empty());

    // backendless-create-confirmation-url.json: a trusted backend gets a link without mail.
    let (status, body) =
        replay(&stack, "backendless-create-confirmation-url", "backendless-create-confirmation-url.json").await;
    assert_eq!(status, 200, "{body}");
    assert!(body["confirmationURL"].as_str().unwrap().contains("/confirm-email?token="));

    // backendless-app-info.json: the SDK's start, with a logged-in user's token.
    let (status, body) = replay(&stack, "backendless-app-info", "backendless-app-info.json").await;
    assert_eq!((status, body), (200, serde_json::json!({ "loggers": [] })));

    // confirm-page.json: opening the link shows the Confirm button and confirms nothing. The
    // page speaks the language of the mail (the link's `en`), not the browser's French.
    let function = stack.api.gateway_function("confirm-page").unwrap();
    let response = invoke(&function, event("confirm-page.json")).await.expect("the handler ran");
    assert_eq!(response["statusCode"], 200);
    let page = response["body"].as_str().unwrap();
    assert!(page.contains("<html lang=\"en\">") && page.contains("<button type=\"submit\">Confirm</button>"));
    assert_eq!(stack.stored_status("user-123").await.as_deref(), Some("EMAIL_CONFIRMATION_PENDING"));

    // singularity-verify-email.json: its link token confirms user-123.
    let (status, body) = replay(&stack, "singularity-verify-email", "singularity-verify-email.json").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["userStatus"], "ENABLED");
    assert_eq!(stack.stored_status("user-123").await.as_deref(), Some("ENABLED"));

    // confirm-code.json: its code is not the mail's, but the user is confirmed already: a success.
    let (status, body) = replay(&stack, "confirm-code", "confirm-code.json").await;
    assert_eq!((status, body), (200, serde_json::json!({ "confirmed": true })));
    let (status, _) = replay(&stack, "singularity-send-verification", "singularity-send-verification.json").await;
    assert_eq!(status, 304);
    let (status, body) =
        replay(&stack, "backendless-resend-confirmation", "backendless-resend-confirmation.json").await;
    assert_eq!((status, body["code"].as_u64()), (400, Some(3102)));
    let (status, body) = replay(&stack, "mastodon-resend-confirmation", "mastodon-resend-confirmation.json").await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = replay(&stack, "mastodon-check-confirmation", "mastodon-check-confirmation.json").await;
    assert_eq!((status, body), (200, Value::Bool(true)));

    // The app's backend: status, a confirmation that changes nothing, then erasure.
    let (status, body) = replay(&stack, "service-get-user", "service-get-user.json").await;
    assert_eq!((status, body["status"].as_str(), body["delivery"].as_str()), (200, Some("confirmed"), Some("ok")));
    let (status, again) = replay(&stack, "service-confirm-user", "service-confirm-user.json").await;
    assert_eq!((status, &again["confirmed_at"]), (200, &body["confirmed_at"]));
    let (status, _) = replay(&stack, "service-delete-user", "service-delete-user.json").await;
    assert_eq!(status, 204);
    let (status, body) = replay(&stack, "service-get-user", "service-get-user.json").await;
    assert_eq!((status, body["status"].as_u64()), (404, Some(404)));
}

/// `<binary>.json` for each function, and further events of a function as `<binary>-<what>.json`.
#[test]
fn every_function_has_an_event_file_and_every_event_file_a_function() {
    let template = Template::load().unwrap();
    let mut binaries: Vec<String> = template.functions().into_iter().map(|f| f.binary).collect();
    binaries.sort();
    let names: Vec<String> = std::fs::read_dir(project_root().join("infra/events"))
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".json") && name != "env.json")
        .map(|name| name.trim_end_matches(".json").to_owned())
        .collect();
    let mut events: Vec<String> = names.iter().filter(|name| binaries.contains(name)).cloned().collect();
    events.sort();
    assert_eq!(binaries, events);
    for name in names.iter().filter(|name| !binaries.contains(name)) {
        let of_a_function =
            binaries.iter().any(|binary| name.strip_prefix(binary.as_str()).is_some_and(|rest| rest.starts_with('-')));
        assert!(of_a_function, "{name}.json names no function");
    }
}

/// signup-events-resend.json and signup-events-change-email.json: commands on the sign-up queue.
#[tokio::test(flavor = "multi_thread")]
async fn the_command_events_resend_to_and_move_the_signed_up_user() {
    let stack = TestStack::start().await;
    let sqs: SqsEvent = serde_json::from_value(event("signup-events.json")).unwrap();
    assert!(stack.api.sign_up.handle(sqs).await.batch_item_failures.is_empty());
    let cooldown_until = |user: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>| {
        user["cooldown_until"].as_n().unwrap().clone()
    };
    let signed_up = cooldown_until(&stack.stored_user("user-123").await.unwrap());

    // The resend: refused by the sign-up mail's cooldown (done, nothing sent), then sent.
    let resend: SqsEvent = serde_json::from_value(event("signup-events-resend.json")).unwrap();
    assert!(stack.api.sign_up.handle(resend.clone()).await.batch_item_failures.is_empty());
    assert_eq!(cooldown_until(&stack.stored_user("user-123").await.unwrap()), signed_up);
    stack.clock.advance(61);
    assert!(stack.api.sign_up.handle(resend).await.batch_item_failures.is_empty());
    assert_ne!(cooldown_until(&stack.stored_user("user-123").await.unwrap()), signed_up, "a new claim");

    // The address change, named by the envelope's detail-type.
    let change: SqsEvent = serde_json::from_value(event("signup-events-change-email.json")).unwrap();
    assert!(stack.api.sign_up.handle(change).await.batch_item_failures.is_empty());
    let user = stack.stored_user("user-123").await.unwrap();
    assert_eq!(user["email"].as_s().unwrap(), "ada.lovelace@example.com");
    assert!(!stack.mails_to("ada.lovelace@example.com").await.is_empty(), "the new address mailed");
}

/// mail-feedback.json: SES's hard bounce for user-123's address, as SNS delivers it.
#[tokio::test(flavor = "multi_thread")]
async fn the_feedback_event_marks_the_address_undeliverable() {
    let stack = TestStack::start().await;
    let sqs: SqsEvent = serde_json::from_value(event("signup-events.json")).unwrap();
    assert!(stack.api.sign_up.handle(sqs).await.batch_item_failures.is_empty());
    let feedback = serde_json::from_value(event("mail-feedback.json")).unwrap();
    stack.api.mail_feedback.handle(feedback).await.unwrap();
    let user = stack.stored_user("user-123").await.unwrap();
    assert_eq!(user["delivery"].as_s().unwrap(), "bounced");
    assert_eq!(user["delivery_type"].as_s().unwrap(), "Permanent");
}

/// change-events.json: a confirmation and a TTL removal, as the stream delivers them.
#[tokio::test(flavor = "multi_thread")]
async fn the_change_stream_event_publishes_its_events() {
    let stack = TestStack::start().await;
    let batch = serde_json::from_value(event("change-events.json")).unwrap();
    let response = stack.api.stream.consumer().handle(batch).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    let moto = mailconfirm_local::stack::moto_url().unwrap();
    let events = mailconfirm_local::stream::published_events(&stack.http, &moto, &stack.api.event_bus).await.unwrap();
    let types: Vec<&str> = events.iter().filter_map(|e| e["detail-type"].as_str()).collect();
    assert_eq!(types, ["EmailConfirmed", "PendingSignUpExpired"]);
    assert_eq!(events[0]["detail"]["method"], "link");
    assert_eq!(events[1]["detail"]["occurred_at"], "2026-01-01T00:01:00Z");
}
