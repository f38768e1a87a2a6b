//! AWS misbehaving, through a fault-injecting proxy between the functions' SDK clients and
//! moto: what each contract answers, how long it takes, how many mails go out, what state is
//! left, and that a retry after the fault clears succeeds.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mailconfirm::domain::{EmailAddress, SignUp, UnixTime, UserId};
use mailconfirm::ports::{CreateOutcome, UserRegistry};
use mailconfirm::store::DynamoStore;
use mailconfirm_local::fault_proxy::{Fault, FaultProxy};
use mailconfirm_local::harness::TestStack;
use mailconfirm_local::server::mint_access_token;
use reqwest::StatusCode;
use serde_json::{Value, json};

const SEND: &str = "/api/auth/email/verification/send";

async fn singularity_send(stack: &TestStack, user_id: &str) -> (StatusCode, Value) {
    let response =
        stack.http.post(stack.url(SEND)).bearer_auth(stack.access_token(user_id)).send().await.expect("an answer");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A stack behind a proxy with one user signed up (its sign-up mail sent), and a cooldown of
/// one second so a resend may follow at once.
async fn faulty_stack() -> (TestStack, FaultProxy, String, String) {
    let (stack, proxy) = TestStack::start_with_faults(|env| {
        env.insert("COOLDOWN_SECONDS".into(), "1".into());
    })
    .await;
    let (user_id, email) = stack.signed_up_user(None).await;
    stack.clock.advance(2);
    (stack, proxy, user_id, email)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claim_applied_but_answered_500_is_recognised_by_its_retry_and_the_mail_goes_out() {
    let (stack, proxy, user_id, email) = faulty_stack().await;
    proxy.inject("UpdateItem", Fault::ApplyThenAnswer { status: 500, body: "{}".into() }, 1);

    let (status, body) = singularity_send(&stack, &user_id).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(stack.mails_to(&email).await.len(), 2, "the sign-up mail and this one");
    assert!(proxy.count("UpdateItem") >= 2, "the SDK retried the claim");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mail_that_ses_may_have_accepted_is_not_sent_twice() {
    let (stack, proxy, user_id, email) = faulty_stack().await;
    proxy.inject("SendEmail", Fault::ApplyThenAnswer { status: 500, body: "{}".into() }, 1);

    let (status, body) = singularity_send(&stack, &user_id).await;

    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_eq!(body["code"], "EMAIL_SEND_FAILURE");
    assert_eq!(proxy.count("SendEmail"), 2, "the sign-up's send and one attempt of this one: no SDK retry");
    assert_eq!(stack.mails_to(&email).await.len(), 2, "SES got it once; it is not sent a second time");
    // The claim was given back: asking again sends at once.
    let (status, _) = singularity_send(&stack, &user_id).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_throttled_send_is_retried_by_the_sdk_and_goes_out_once() {
    let (stack, proxy, user_id, email) = faulty_stack().await;
    proxy.inject("SendEmail", Fault::ses_throttled(), 1);

    let (status, body) = singularity_send(&stack, &user_id).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(stack.mails_to(&email).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_ses_ends_in_the_contracts_5xx_within_the_budget_with_the_claim_released() {
    let (stack, proxy, user_id, email) = faulty_stack().await;
    proxy.inject("SendEmail", Fault::Hang(Duration::from_secs(30)), 1);

    let started = Instant::now();
    let (status, body) = singularity_send(&stack, &user_id).await;
    let took = started.elapsed();

    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_eq!(body["code"], "EMAIL_SEND_FAILURE");
    assert!(took < Duration::from_secs(7), "answered after {took:?}, past 70 % of the 10 s timeout");
    assert_eq!(stack.mails_to(&email).await.len(), 1, "only the sign-up mail");
    let (status, _) = singularity_send(&stack, &user_id).await;
    assert_eq!(status, StatusCode::OK, "the claim was given back");
    assert_eq!(stack.mails_to(&email).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_dynamodb_ends_in_the_contracts_5xx_within_the_budget() {
    let (stack, proxy, user_id, _) = faulty_stack().await;
    proxy.inject("UpdateItem", Fault::Hang(Duration::from_secs(30)), 10);

    let started = Instant::now();
    let (status, body) = singularity_send(&stack, &user_id).await;
    let took = started.elapsed();

    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_eq!(body["code"], "DATABASE_FAILURE");
    assert!(took < Duration::from_secs(4), "answered after {took:?}, past the 2 s operation timeout");
    proxy.clear();
    let (status, _) = singularity_send(&stack, &user_id).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sign_up_whose_invocation_died_mid_send_is_mailed_once_on_redelivery() {
    let stack = TestStack::start().await;
    let store = DynamoStore::new(stack.aws.clone(), stack.table.clone());
    let user_id = format!("died-{}", mailconfirm_local::gateway::uuid_like());
    let email = stack.unique_email("died");
    let event = json!({ "user_id": user_id, "email": email });
    // What a sign-up invocation leaves when it dies after its transaction, before SES answers.
    let sign_up = SignUp {
        user_id: UserId::parse(&user_id).unwrap(),
        email: EmailAddress::parse(&email).unwrap(),
        locale: None,
        client_id: None,
        redirect_to: None,
    };
    let now = stack.clock_now();
    let created = store.create_pending_user(&sign_up, now, Some(UnixTime(now.0 + 60)), None).await.unwrap();
    assert!(matches!(created, CreateOutcome::Created { .. }));

    let early = stack.sign_up(event.clone()).await;
    assert_eq!(early.batch_item_failures.len(), 1, "redelivered while the claim is held: back to the queue");
    assert!(stack.mails_to(&email).await.is_empty());

    stack.clock.advance(61);
    assert!(stack.sign_up(event.clone()).await.batch_item_failures.is_empty());
    assert_eq!(stack.mails_to(&email).await.len(), 1, "sent once the claim lapsed");
    stack.clock.advance(120);
    assert!(stack.sign_up(event).await.batch_item_failures.is_empty());
    assert_eq!(stack.mails_to(&email).await.len(), 1, "an accepted first mail is not sent again");
}

/// Log lines written while a test runs, captured in memory.
#[derive(Clone, Default)]
struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut logs) = self.0.lock() {
            logs.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLogs {
    fn text(&self) -> String {
        self.0.lock().map(|logs| String::from_utf8_lossy(&logs).into_owned()).unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_address_or_token_reaches_a_log_line_whatever_aws_answers() {
    let logs = CapturedLogs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        // The level the template deploys (ApplicationLogLevel: INFO); below it the SDK itself
        // logs whole bodies, which is why telemetry keeps its targets at WARN whatever the level.
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber of this test process");

    let (stack, proxy) = TestStack::start_with_faults(|env| {
        env.insert("COOLDOWN_SECONDS".into(), "1".into());
    })
    .await;
    let (user_id, email) = stack.signed_up_user(None).await;
    let tennpay_id = "4242".to_owned();
    let tennpay_email = stack.unique_email("tennpay");
    assert!(
        stack.sign_up(json!({ "user_id": tennpay_id, "email": tennpay_email })).await.batch_item_failures.is_empty()
    );
    let app_user = format!("app-{}", mailconfirm_local::gateway::uuid_like());
    let app_email = stack.unique_email("app");
    let app_event = json!({ "user_id": app_user, "email": app_email, "client_id": "app-1" });
    assert!(stack.sign_up(app_event).await.batch_item_failures.is_empty());
    stack.clock.advance(2);
    let late_email = stack.unique_email("late");
    let expired_link = stack.link_token_issued_at(&user_id, &email, "en", UnixTime::now().0 - 10 * 86_400);
    let user_token = stack.access_token(&user_id);
    let app_token = mint_access_token(json!({ "sub": app_user, "client_id": "app-1", "scope": "write" }));
    let tennpay_token = stack.access_token(&tennpay_id);
    let mut secrets = vec![
        email.clone(),
        tennpay_email.clone(),
        app_email.clone(),
        late_email.clone(),
        expired_link.clone(),
        user_token.clone(),
        app_token.clone(),
        tennpay_token.clone(),
    ];
    for mail in [&email, &tennpay_email, &app_email] {
        secrets.push(stack.latest_link_token(mail).await);
    }

    // Every route that sends, with SES refusing in the words that name the recipient, then
    // with DynamoDB failing in words that quote the address.
    let faults = [
        ("SendEmail", Fault::ses_message_rejected(&format!("{email}, {tennpay_email}, {app_email}, {late_email}"))),
        (
            "UpdateItem",
            Fault::Answer {
                status: 400,
                headers: vec![("content-type".into(), "application/x-amz-json-1.0".into())],
                body: format!(
                    r#"{{"__type":"com.amazon.coral.validate#ValidationException","message":"Invalid item: {email} {app_email} {tennpay_email}"}}"#
                ),
            },
        ),
    ];
    for (operation, fault) in faults {
        proxy.clear();
        proxy.inject(operation, fault, 1_000);
        let answers = [
            stack.http.post(stack.url(SEND)).bearer_auth(&user_token).send().await.unwrap().status(),
            stack
                .http
                .post(stack.url(&format!("/api/users/resendconfirmation/{email}")))
                .send()
                .await
                .unwrap()
                .status(),
            stack
                .http
                .post(stack.url("/User/email/send-confirmation"))
                .bearer_auth(&tennpay_token)
                .json(&json!({ "id": tennpay_id.parse::<i64>().unwrap(), "email": tennpay_email }))
                .send()
                .await
                .unwrap()
                .status(),
            stack
                .http
                .post(stack.url("/api/v1/emails/confirmations"))
                .bearer_auth(&app_token)
                .send()
                .await
                .unwrap()
                .status(),
            stack
                .http
                .post(stack.url("/confirm-email"))
                .form(&[("token", expired_link.as_str()), ("action", "send-new-link")])
                .send()
                .await
                .unwrap()
                .status(),
        ];
        for status in answers {
            assert!(status.is_server_error(), "{operation}: every route answers its 5xx, not {status}");
        }
        let late = json!({ "user_id": format!("late-{operation}"), "email": late_email });
        assert_eq!(stack.sign_up(late).await.batch_item_failures.len(), 1, "{operation}: the sign-up is redelivered");
        stack.clock.advance(2);
    }

    let text = logs.text();
    assert!(text.contains("MessageRejected"), "SES's refusal is logged by its code");
    assert!(text.contains("ValidationException"), "DynamoDB's too");
    for secret in &secrets {
        let leaking: Vec<&str> = text.lines().filter(|line| line.contains(secret.as_str())).collect();
        assert!(leaking.is_empty(), "log lines hold {secret}: {leaking:#?}");
    }
}

/// One request to a sending route, for a user made for that route.
#[derive(Debug, Clone, Copy)]
enum Route {
    Singularity,
    Backendless,
    Tennpay,
    Mastodon,
    ConfirmPageNewLink,
}

struct RouteUser {
    email: String,
    request: Box<dyn Fn(&TestStack) -> reqwest::RequestBuilder>,
}

async fn user_for(stack: &TestStack, route: Route) -> RouteUser {
    let id = match route {
        Route::Tennpay => "7301".to_owned(),
        _ => format!("r-{}", mailconfirm_local::gateway::uuid_like()),
    };
    let email = stack.unique_email("route");
    let client = matches!(route, Route::Mastodon).then_some("app-1");
    let event = json!({ "user_id": id, "email": email, "client_id": client });
    assert!(stack.sign_up(event).await.batch_item_failures.is_empty(), "sign-up for {route:?}");
    let (token, email_for) = (stack.access_token(&id), email.clone());
    let request: Box<dyn Fn(&TestStack) -> reqwest::RequestBuilder> = match route {
        Route::Singularity => Box::new(move |stack| stack.http.post(stack.url(SEND)).bearer_auth(&token)),
        Route::Backendless => {
            Box::new(move |stack| stack.http.post(stack.url(&format!("/api/users/resendconfirmation/{email_for}"))))
        }
        Route::Tennpay => Box::new(move |stack| {
            let body = json!({ "id": 7301, "email": email_for });
            stack.http.post(stack.url("/User/email/send-confirmation")).bearer_auth(&token).json(&body)
        }),
        Route::Mastodon => {
            let app_token = mint_access_token(json!({ "sub": id, "client_id": "app-1", "scope": "write" }));
            Box::new(move |stack| stack.http.post(stack.url("/api/v1/emails/confirmations")).bearer_auth(&app_token))
        }
        Route::ConfirmPageNewLink => {
            let expired = stack.link_token_issued_at(&id, &email, "en", UnixTime::now().0 - 10 * 86_400);
            Box::new(move |stack| {
                stack
                    .http
                    .post(stack.url("/confirm-email"))
                    .form(&[("token", expired.as_str()), ("action", "send-new-link")])
            })
        }
    };
    RouteUser { email, request }
}

/// An operation, the fault its requests get, and for how many requests.
type FaultCase = (&'static str, fn() -> Fault, usize);

#[tokio::test(flavor = "multi_thread")]
async fn every_sending_route_answers_each_aws_fault_with_its_5xx_in_bounded_time_and_recovers() {
    let faults: [FaultCase; 4] = [
        ("UpdateItem", Fault::dynamodb_throttled, 1_000),
        ("UpdateItem", Fault::dynamodb_internal, 1_000),
        ("SendEmail", || Fault::ApplyThenAnswer { status: 500, body: "{}".into() }, 1),
        ("SendEmail", || Fault::Hang(Duration::from_secs(30)), 1),
    ];
    let routes = [Route::Singularity, Route::Backendless, Route::Tennpay, Route::Mastodon, Route::ConfirmPageNewLink];
    let mut table = Vec::new();
    for (operation, fault, times) in faults {
        for route in routes {
            let faulted = request_under_fault(route, operation, fault(), times).await;
            let Faulted { case, status, took, mails, .. } = &faulted;
            assert!(status.is_server_error(), "{case}: {status}");
            assert!(*took < Duration::from_secs(7), "{case}: answered after {took:?}");
            assert!(*mails <= 1, "{case}: {mails} mails");
            faulted.retry_mails_once().await;
            table.push(format!("{case} | {status} in {took:.1?} | {mails} mails | retry mailed once"));
        }
    }
    println!("{}", table.join("\n"));
}

/// A request to a sending route, for a user made for it, while `operation` gets `fault`
/// `times`; the fault is cleared when the answer is in.
struct Faulted {
    stack: TestStack,
    user: RouteUser,
    mails_before: usize,
    case: String,
    status: StatusCode,
    took: Duration,
    /// Mails the faulted request sent.
    mails: usize,
}

async fn request_under_fault(route: Route, operation: &str, fault: Fault, times: usize) -> Faulted {
    let (stack, proxy) = TestStack::start_with_faults(|env| {
        env.insert("COOLDOWN_SECONDS".into(), "1".into());
    })
    .await;
    let user = user_for(&stack, route).await;
    stack.clock.advance(2);
    let mails_before = stack.mails_to(&user.email).await.len();
    let case = format!("{route:?} with {operation} {fault:?}");
    proxy.inject(operation, fault, times);
    let started = Instant::now();
    let status = (user.request)(&stack).send().await.unwrap().status();
    let took = started.elapsed();
    proxy.clear();
    let mails = stack.mails_to(&user.email).await.len() - mails_before;
    Faulted { stack, user, mails_before, case, status, took, mails }
}

impl Faulted {
    /// Once the cooldown is over, the same request succeeds and mails exactly once more.
    async fn retry_mails_once(&self) {
        let Faulted { stack, user, case, .. } = self;
        stack.clock.advance(2);
        let retry = (user.request)(stack).send().await.unwrap().status();
        assert!(retry.is_success(), "{case}: the retry after the fault answered {retry}");
        let after = stack.mails_to(&user.email).await.len() - self.mails_before;
        assert_eq!(after, self.mails + 1, "{case}: the retry mailed once");
    }
}

/// The reads and transactions of the routes that make them: Backendless's address look-up
/// (`GetItem`), Mastodon's address change and the sign-up consumer (`TransactWriteItems`).
#[tokio::test(flavor = "multi_thread")]
async fn reads_and_transactions_fail_cleanly_in_bounded_time_and_recover() {
    let faults: [FaultCase; 5] = [
        ("", Fault::dynamodb_throttled, 1_000),
        ("", Fault::dynamodb_internal, 1_000),
        ("", || Fault::Hang(Duration::from_secs(30)), 1_000),
        ("", || Fault::DropBeforeForwarding, 1_000),
        ("", || Fault::ApplyThenAnswer { status: 500, body: "{}".into() }, 1),
    ];
    let mut table = Vec::new();
    for (_, fault, times) in faults {
        // Backendless resend by address: the look-up fails.
        let (stack, proxy) = TestStack::start_with_faults(|env| {
            env.insert("COOLDOWN_SECONDS".into(), "1".into());
        })
        .await;
        let user = user_for(&stack, Route::Backendless).await;
        stack.clock.advance(2);
        let case = format!("Backendless with GetItem {:?}", fault());
        proxy.inject("GetItem", fault(), times);
        let started = Instant::now();
        let status = (user.request)(&stack).send().await.unwrap().status();
        let took = started.elapsed();
        proxy.clear();
        assert!(took < Duration::from_secs(7), "{case}: {took:?}");
        if times == 1 {
            // A read answered 500 once is retried by the SDK (a read changes nothing): it goes on.
            assert!(status.is_success(), "{case}: {status}");
            assert_eq!(stack.mails_to(&user.email).await.len(), 2, "{case}: mailed once");
        } else {
            assert!(status.is_server_error(), "{case}: {status}");
            assert_eq!(stack.mails_to(&user.email).await.len(), 1, "{case}: only the sign-up mail");
            stack.clock.advance(2);
            assert!((user.request)(&stack).send().await.unwrap().status().is_success(), "{case}: retry");
            assert_eq!(stack.mails_to(&user.email).await.len(), 2, "{case}: the retry mailed once");
        }
        table.push(format!("{case} | {status} in {took:.1?} | mailed once (now or on retry)"));

        // Mastodon resend to a new address: the address-change transaction fails.
        let id = format!("m-{}", mailconfirm_local::gateway::uuid_like());
        let old = stack.unique_email("old");
        let event = json!({ "user_id": id, "email": old, "client_id": "app-1" });
        assert!(stack.sign_up(event).await.batch_item_failures.is_empty());
        let new = stack.unique_email("new");
        let token = mint_access_token(json!({ "sub": id, "client_id": "app-1", "scope": "write" }));
        let change = || {
            stack
                .http
                .post(stack.url("/api/v1/emails/confirmations"))
                .bearer_auth(&token)
                .form(&[("email", new.as_str())])
                .send()
        };
        let case = format!("Mastodon new address with TransactWriteItems {:?}", fault());
        proxy.inject("TransactWriteItems", fault(), times);
        let started = Instant::now();
        let status = change().await.unwrap().status();
        let took = started.elapsed();
        proxy.clear();
        assert!(status.is_server_error(), "{case}: {status}");
        assert!(took < Duration::from_secs(7), "{case}: {took:?}");
        assert!(stack.mails_to(&new).await.is_empty(), "{case}: nothing sent to the new address yet");
        assert!(change().await.unwrap().status().is_success(), "{case}: retry");
        assert_eq!(stack.mails_to(&new).await.len(), 1, "{case}: the retry mailed the new address once");
        table.push(format!("{case} | {status} in {took:.1?} | 0 mails | retry mailed once"));

        // The sign-up consumer: the user+claim transaction fails; the message is redelivered.
        let email = stack.unique_email("signup");
        let event = json!({ "user_id": format!("s-{}", mailconfirm_local::gateway::uuid_like()), "email": email });
        let case = format!("sign-up with TransactWriteItems {:?}", fault());
        proxy.inject("TransactWriteItems", fault(), times);
        let started = Instant::now();
        let failures = stack.sign_up(event.clone()).await.batch_item_failures.len();
        let took = started.elapsed();
        proxy.clear();
        assert!(took < Duration::from_secs(7), "{case}: {took:?}");
        let mails = stack.mails_to(&email).await.len();
        // Applied then 500: the retried transaction meets its own claim and mails at once.
        assert_eq!((failures, mails), if times == 1 { (0, 1) } else { (1, 0) }, "{case}");
        assert!(stack.sign_up(event).await.batch_item_failures.is_empty(), "{case}: redelivery");
        assert_eq!(stack.mails_to(&email).await.len(), 1, "{case}: mailed exactly once");
        table.push(format!("{case} | {failures} batch failures in {took:.1?} | {mails} mails | redelivery: 1 mail"));
    }
    println!("{}", table.join("\n"));
}

/// Connections that drop: before the call reached AWS (nothing applied) or after (applied,
/// answer lost). A dropped claim is retried by the SDK and recognises itself; a dropped send is
/// not retried (SES may have taken it), so at most one mail, and the retry mails once.
#[tokio::test(flavor = "multi_thread")]
async fn dropped_connections_lose_no_mail_and_send_none_twice() {
    let faults: [FaultCase; 4] = [
        ("UpdateItem", || Fault::DropBeforeForwarding, 1),
        ("UpdateItem", || Fault::DropAfterForwarding, 1),
        ("SendEmail", || Fault::DropBeforeForwarding, 1),
        ("SendEmail", || Fault::DropAfterForwarding, 1),
    ];
    let routes = [Route::Singularity, Route::Backendless, Route::Tennpay, Route::Mastodon, Route::ConfirmPageNewLink];
    let mut table = Vec::new();
    for (operation, fault, times) in faults {
        for route in routes {
            let faulted = request_under_fault(route, operation, fault(), times).await;
            let Faulted { case, status, took, mails, .. } = &faulted;
            assert!(*took < Duration::from_secs(7), "{case}: answered after {took:?}");
            if operation == "UpdateItem" {
                assert!(status.is_success(), "{case}: {status}");
                assert_eq!(*mails, 1, "{case}");
            } else {
                assert!(status.is_server_error(), "{case}: {status}");
                assert!(*mails <= 1, "{case}: {mails} mails");
                faulted.retry_mails_once().await;
            }
            table.push(format!("{case} | {status} in {took:.1?} | {mails} mails"));
        }
    }
    println!("{}", table.join("\n"));
}
