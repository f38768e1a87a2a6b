//! `infra/openapi.json` describes the API that is deployed: exactly the template's routes, and
//! for real requests through the local stack, every status is documented for its operation and
//! every JSON body validates against the documented schema.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use mailconfirm_local::harness::TestStack;
use mailconfirm_local::server::{OPENAPI_PATH, mint_access_token};
use mailconfirm_local::template::{Template, project_root};
use serde_json::{Value, json};

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

fn document() -> Value {
    let text = std::fs::read_to_string(project_root().join(OPENAPI_PATH)).expect("infra/openapi.json");
    serde_json::from_str(&text).expect("infra/openapi.json is JSON")
}

/// Every (METHOD, path) the document describes.
fn documented_operations(document: &Value) -> BTreeSet<(String, String)> {
    document["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter(|method| item.get(**method).is_some())
                .map(move |method| (method.to_ascii_uppercase(), path.clone()))
        })
        .collect()
}

/// `~` and `/` escaped as a JSON pointer segment needs them.
fn pointer_segment(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// Follows a local `$ref` (`#/components/...`) once, or returns the value itself.
fn resolve<'d>(document: &'d Value, value: &'d Value) -> &'d Value {
    match value.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix('#')) {
        Some(pointer) => document.pointer(pointer).unwrap_or_else(|| panic!("dangling $ref #{pointer}")),
        None => value,
    }
}

/// Validates instances against schemas of the document, `$ref`s resolved within it.
struct Checker {
    document: Value,
    /// Which statuses were seen, per operation, to print what the requests covered.
    seen: Mutex<BTreeMap<(String, String), BTreeSet<u16>>>,
}

impl Checker {
    fn new() -> Self {
        Self { document: document(), seen: Mutex::default() }
    }

    /// The documented path template a concrete path belongs to.
    fn path_template(&self, path: &str) -> Option<String> {
        let segments: Vec<&str> = path.split('/').collect();
        self.document["paths"].as_object()?.keys().find_map(|template| {
            let pattern: Vec<&str> = template.split('/').collect();
            let matches = pattern.len() == segments.len()
                && pattern.iter().zip(&segments).all(|(p, s)| (p.starts_with('{') && !s.is_empty()) || p == s);
            matches.then(|| template.clone())
        })
    }

    /// The schema at `pointer` of the document, as a validator (formats asserted).
    fn validator(&self, pointer: &str) -> jsonschema::Validator {
        let mut root = self.document.clone();
        // A JSON pointer in a URI fragment: `{`, `}`, `+` and the like percent-encoded.
        let fragment: String = pointer
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        root["$ref"] = json!(format!("#{fragment}"));
        jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&root)
            .unwrap_or_else(|err| panic!("the schema at #{pointer} does not compile: {err}"))
    }

    /// Checks one response against the operation `method path` of the document.
    async fn check(&self, method: &str, response: reqwest::Response) -> (u16, Value) {
        let path = response.url().path().to_owned();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(|ct| ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase());
        let headers = response.headers().clone();
        let body = response.bytes().await.expect("a body");

        let template = self.path_template(&path).unwrap_or_else(|| panic!("{path} is not in the document"));
        let operation_pointer = format!("/paths/{}/{}", pointer_segment(&template), method.to_ascii_lowercase());
        let operation = self
            .document
            .pointer(&operation_pointer)
            .unwrap_or_else(|| panic!("{method} {template} is not in the document"));
        let documented = operation["responses"]
            .get(status.to_string())
            .unwrap_or_else(|| panic!("{method} {template} answered {status}, which is not documented"));
        assert!(documented.get("$ref").is_none(), "responses are written out, not referenced");
        self.seen.lock().unwrap().entry((method.to_owned(), template.clone())).or_default().insert(status);

        for (name, header) in documented["headers"].as_object().into_iter().flatten() {
            if resolve(&self.document, header)["required"] == true {
                assert!(headers.contains_key(name.as_str()), "{method} {template} {status}: no {name} header");
            }
        }
        let Some(content) = documented["content"].as_object() else {
            assert!(body.is_empty(), "{method} {template} {status}: documented without a body, but has one");
            return (status, Value::Null);
        };
        if method == "HEAD" {
            return (status, Value::Null);
        }
        let content_type =
            content_type.unwrap_or_else(|| panic!("{method} {template} {status}: a body without a content type"));
        assert!(
            content.contains_key(&content_type),
            "{method} {template} {status}: {content_type} is not among the documented {:?}",
            content.keys().collect::<Vec<_>>()
        );
        if !content_type.ends_with("json") {
            return (status, Value::Null);
        }
        let instance: Value = serde_json::from_slice(&body)
            .unwrap_or_else(|err| panic!("{method} {template} {status}: the body is not JSON ({err})"));
        let schema_pointer =
            format!("{operation_pointer}/responses/{status}/content/{}/schema", pointer_segment(&content_type));
        let validator = self.validator(&schema_pointer);
        let errors: Vec<String> =
            validator.iter_errors(&instance).map(|e| format!("{e} at {}", e.instance_path())).collect();
        assert!(errors.is_empty(), "{method} {template} {status}: {instance} does not match its schema: {errors:?}");
        (status, instance)
    }
}

#[test]
fn the_document_has_exactly_the_routes_of_the_template() {
    let documented = documented_operations(&document());
    let deployed: BTreeSet<(String, String)> =
        Template::load().unwrap().http_routes().into_iter().map(|route| (route.method, route.path)).collect();
    assert_eq!(documented, deployed, "infra/openapi.json and infra/template.yaml disagree");
}

#[test]
fn the_document_is_openapi_3_1_and_every_schema_compiles() {
    let checker = Checker::new();
    assert_eq!(checker.document["openapi"], "3.1.0");
    let mut schemas = 0;
    fn walk(value: &Value, pointer: &str, found: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    let child_pointer = format!("{pointer}/{}", pointer_segment(key));
                    if key == "schema" {
                        found.push(child_pointer.clone());
                    }
                    walk(child, &child_pointer, found);
                }
            }
            Value::Array(items) => {
                for (index, child) in items.iter().enumerate() {
                    walk(child, &format!("{pointer}/{index}"), found);
                }
            }
            _ => {}
        }
    }
    let mut pointers = Vec::new();
    walk(&checker.document, "", &mut pointers);
    for name in checker.document["components"]["schemas"].as_object().unwrap().keys() {
        pointers.push(format!("/components/schemas/{name}"));
    }
    for pointer in pointers {
        checker.validator(&pointer);
        schemas += 1;
    }
    assert!(schemas > 20, "{schemas} schemas");
    // Every security requirement names a declared scheme.
    let schemes = checker.document["components"]["securitySchemes"].as_object().unwrap();
    for (method, path) in documented_operations(&checker.document) {
        let operation = &checker.document["paths"][&path][method.to_ascii_lowercase()];
        let requirements = operation["security"].as_array().unwrap_or_else(|| panic!("{method} {path}: no security"));
        for name in requirements.iter().flat_map(|r| r.as_object().unwrap().keys()) {
            assert!(schemes.contains_key(name), "{method} {path}: unknown scheme {name}");
        }
        assert!(operation["responses"].as_object().is_some_and(|r| !r.is_empty()), "{method} {path}");
    }
}

#[test]
fn the_schemas_tell_one_contracts_errors_from_another() {
    let checker = Checker::new();
    let singularity_401 = checker
        .validator("/paths/~1api~1auth~1email~1verification~1send/post/responses/401/content/application~1json/schema");
    let good = json!({"timestamp": "2026-12-01T18:00:00Z", "status": 401, "code": "AUTHENTICATION_REQUIRED",
        "error": "AuthenticationRequired", "message": "Authentication is required.", "path": "/api/auth/email/verification/send"});
    assert!(singularity_401.is_valid(&good));
    let mut wrong_status = good.clone();
    wrong_status["status"] = json!(404);
    let mut wrong_code = good.clone();
    wrong_code["code"] = json!("USER_NOT_FOUND");
    let mut bad_time = good.clone();
    bad_time["timestamp"] = json!("yesterday");
    for body in
        [wrong_status, wrong_code, bad_time, json!({"error": "Unauthorized"}), json!({"message": "x", "code": 3064})]
    {
        assert!(!singularity_401.is_valid(&body), "{body}");
    }
    let backendless_403 = checker.validator(
        "/paths/~1api~1users~1createEmailConfirmationURL~1{identity}/post/responses/403/content/application~1json/schema",
    );
    assert!(backendless_403.is_valid(&json!({"message": "Permission denied", "code": 3066})));
    assert!(!backendless_403.is_valid(&json!({"message": "Permission denied", "code": 3064})));
    assert!(!backendless_403.is_valid(&json!({"message": "Permission denied", "code": 3066, "extra": 1})));
    let tennpay_400 = checker.validator(
        "/paths/~1User~1email~1send-confirmation/post/responses/400/content/application~1problem+json/schema",
    );
    let problem = json!({"type": "https://tools.ietf.org/html/rfc7231#section-6.5.1", "title": "One or more validation errors occurred.",
        "status": 400, "traceId": format!("00-{}-{}-00", "a".repeat(32), "b".repeat(16)), "errors": {"Id": ["The Id field is required."]}});
    assert!(tennpay_400.is_valid(&problem));
    let mut without_errors = problem.clone();
    without_errors.as_object_mut().unwrap().remove("errors");
    assert!(!tennpay_400.is_valid(&without_errors));
    let mastodon_422 = checker
        .validator("/paths/~1api~1v1~1emails~1confirmations/post/responses/422/content/application~1json/schema");
    assert!(mastodon_422.is_valid(&json!({"error": "Validation failed: Email is invalid"})));
    assert!(!mastodon_422.is_valid(&json!({"error": "x", "error_description": "y"})));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_local_api_serves_the_document() {
    let stack = TestStack::start().await;
    let response = stack.http.get(stack.url("/_local/openapi.json")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.json::<Value>().await.unwrap(), document());
}

fn app_token(user_id: &str, client: &str, scope: &str) -> String {
    mint_access_token(json!({ "sub": user_id, "client_id": client, "scope": scope }))
}

fn expired_token(user_id: &str) -> String {
    let past = time::OffsetDateTime::now_utc().unix_timestamp() - 7200;
    mint_access_token(json!({ "sub": user_id, "iat": past - 3600, "exp": past }))
}

/// An address nothing listens on: a port that was free a moment ago.
fn unused_local_address() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// 30 per second: the throttles are tested elsewhere; these few requests must reach the handlers
/// (moto parses every slot of a sliding log, so not the highest limit, 100).
fn unthrottled(env: &mut std::collections::HashMap<String, String>) {
    for name in [
        "RESEND_IP",
        "RESEND_IDENTITY",
        "MASTODON_IP",
        "MASTODON_USER",
        "CONFIRMATION_CODE_IP",
        "CONFIRMATION_CODE_USER",
    ] {
        env.insert(format!("{name}_LIMIT"), "30".into());
        env.insert(format!("{name}_WINDOW_SECONDS"), "1".into());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn real_responses_have_documented_statuses_and_bodies_that_match_their_schemas() {
    let checker = Checker::new();
    // Users signed up while mail was off: no cooldown runs for them on the stack that mails.
    let quiet = TestStack::start_with(|env| {
        env.insert("EMAIL_ENABLED".into(), "false".into());
        unthrottled(env);
    })
    .await;
    let stack = TestStack::start_with(|env| {
        env.insert("TABLE_NAME".into(), quiet.table.clone());
        unthrottled(env);
    })
    .await;
    let redirecting = TestStack::start_with(|env| {
        env.insert("TABLE_NAME".into(), quiet.table.clone());
        env.insert("CONFIRMED_REDIRECT_URL".into(), "https://app.example.com/welcome".into());
    })
    .await;
    let throttled = TestStack::start_with(|env| {
        env.insert("TABLE_NAME".into(), quiet.table.clone());
        env.insert("RESEND_IP_LIMIT".into(), "1".into());
        env.insert("CONFIRMATION_CODE_USER_LIMIT".into(), "1".into());
    })
    .await;
    // Redirects are checked, not followed.
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let http = &client;
    let statuses = |list: &mut Vec<(String, u16)>, label: &str, status: u16| list.push((label.to_owned(), status));
    let mut answered: Vec<(String, u16)> = Vec::new();

    // ---------- Singularity ----------
    const SEND: &str = "/api/auth/email/verification/send";
    const COOLDOWN: &str = "/api/auth/email/verification/cooldown";
    const VERIFY: &str = "/api/auth/email/verification";
    let (unmailed, unmailed_email) = quiet.signed_up_user(Some("fr")).await;
    let (mailed, mailed_email) = stack.signed_up_user(None).await;
    let send = |token: Option<String>, query: &str| {
        let mut request = http.post(stack.url(&format!("{SEND}{query}")));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    for (token, query, label) in [
        (None, "", "send without a token"),
        (Some("not-a-jwt".to_owned()), "", "send with a broken token"),
        (Some(expired_token(&mailed)), "", "send with an expired token"),
        (Some(stack.access_token("nobody")), "", "send for no user"),
        (Some(stack.access_token(&mailed)), "?locale=not_a-locale!", "send with a malformed locale"),
        (Some(stack.access_token(&unmailed)), "?locale=de", "send"),
        (Some(stack.access_token(&mailed)), "", "send within the cooldown"),
    ] {
        let (status, _) = checker.check("POST", send(token, query).await.unwrap()).await;
        statuses(&mut answered, label, status);
    }
    let cookie = http
        .get(stack.url(COOLDOWN))
        .header("cookie", format!("access_token={}", stack.access_token(&mailed)))
        .send()
        .await
        .unwrap();
    let (status, body) = checker.check("GET", cookie).await;
    assert_eq!(status, 200, "{body}");
    for (token, label) in [
        (None, "cooldown without a token"),
        (Some(stack.access_token("nobody")), "cooldown for no user"),
        (Some(stack.access_token(&unmailed)), "cooldown"),
    ] {
        let mut request = http.get(stack.url(COOLDOWN));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let (status, _) = checker.check("GET", request.send().await.unwrap()).await;
        statuses(&mut answered, label, status);
    }
    let link = stack.latest_link_token(&mailed_email).await;
    for (query, label) in [
        (String::new(), "verify without a token"),
        ("?token=forged.token.here".to_owned(), "verify with a forged token"),
        (format!("?token={link}&locale=%%%"), "verify with a malformed locale"),
        (
            format!("?token={}", stack.link_token_issued_at(&mailed, &mailed_email, "en", now() - 3 * 86_400)),
            "verify expired",
        ),
        (
            format!("?token={}", stack.link_token_issued_at("nobody", "nobody@example.com", "en", now())),
            "verify for no user",
        ),
        (format!("?token={link}"), "verify"),
        (format!("?token={link}"), "verify again"),
    ] {
        let response = http.post(stack.url(&format!("{VERIFY}{query}"))).send().await.unwrap();
        let (status, _) = checker.check("POST", response).await;
        statuses(&mut answered, label, status);
    }
    let already = http.post(stack.url(SEND)).bearer_auth(stack.access_token(&mailed)).send().await.unwrap();
    statuses(&mut answered, "send for a confirmed user", checker.check("POST", already).await.0);
    for (method, path) in [("POST", SEND), ("GET", COOLDOWN), ("POST", VERIFY)] {
        let request = http.request(method.parse().unwrap(), quiet.url(path));
        let response = request.bearer_auth(quiet.access_token(&unmailed)).send().await.unwrap();
        statuses(&mut answered, &format!("{path} with mail off"), checker.check(method, response).await.0);
    }

    // ---------- Backendless ----------
    let (_, backendless_email) = quiet.signed_up_user(None).await;
    let admin = mint_access_token(json!({ "sub": "backend", "roles": ["mailconfirm-admin"] }));
    for (path, label) in [
        (format!("/api/users/resendconfirmation/{}", backendless_email.replace('@', "%40")), "resend"),
        (format!("/api/users/resendconfirmation/{backendless_email}"), "resend within the cooldown"),
        ("/api/users/resendconfirmation/nobody%40example.com".to_owned(), "resend to no user"),
        (format!("/api/users/resendconfirmation/{mailed_email}"), "resend to a confirmed user"),
    ] {
        let (status, _) = checker.check("POST", http.post(stack.url(&path)).send().await.unwrap()).await;
        statuses(&mut answered, label, status);
    }
    let off = http.post(quiet.url(&format!("/api/users/resendconfirmation/{backendless_email}"))).send();
    statuses(&mut answered, "resend with mail off", checker.check("POST", off.await.unwrap()).await.0);
    let create = |identity: &str| format!("/api/users/createEmailConfirmationURL/{identity}");
    for (token, header, identity, label) in [
        (None, "user-token", unmailed_email.clone(), "create URL without a token"),
        (Some(stack.access_token("someone")), "user-token", unmailed_email.clone(), "create URL without admin"),
        (Some(admin.clone()), "user-token", "nobody@example.com".to_owned(), "create URL for no user"),
        (Some(admin.clone()), "authorization", unmailed_email.clone(), "create URL"),
    ] {
        let mut request = http.post(stack.url(&create(&identity)));
        if let Some(token) = token {
            let value = if header == "authorization" { format!("Bearer {token}") } else { token };
            request = request.header(header, value);
        }
        let (status, body) = checker.check("POST", request.send().await.unwrap()).await;
        statuses(&mut answered, label, status);
        if status == 200 {
            assert!(body["confirmationURL"].as_str().unwrap().contains("/confirm-email?token="), "{body}");
        }
    }

    for (token, label) in [
        (None, "app info"),
        (Some(stack.access_token("someone")), "app info with a user's token"),
        (Some(expired_token("someone")), "app info with a stale token"),
        (Some("not-a-jwt".to_owned()), "app info with a broken token"),
    ] {
        let mut request = http.get(stack.url("/api/info"));
        if let Some(token) = token {
            request = request.header("user-token", token);
        }
        let (status, _) = checker.check("GET", request.send().await.unwrap()).await;
        statuses(&mut answered, label, status);
    }

    // ---------- 10npay ----------
    const TENNPAY: &str = "/User/email/send-confirmation";
    let payer_email = quiet.unique_email("payer");
    quiet.sign_up(json!({ "user_id": "4242", "email": payer_email })).await;
    let payer = stack.access_token("4242");
    for (token, content_type, body, label) in [
        (None, "application/json", r#"{"id": 4242, "email": "a@example.org"}"#, "10npay without a token"),
        (
            Some(expired_token("4242")),
            "application/json",
            r#"{"id": 4242, "email": "a@example.org"}"#,
            "10npay expired",
        ),
        (Some(payer.clone()), "text/plain", "id=4242", "10npay as text"),
        (Some(payer.clone()), "application/json", "{ nope", "10npay with broken JSON"),
        (Some(payer.clone()), "application/json", r#"{"id": 0, "email": 5}"#, "10npay with bad fields"),
        (Some(payer.clone()), "application/json", r#"{"id": 7, "email": "a@example.org"}"#, "10npay for another user"),
        (Some(payer.clone()), "application/json", r#"{"id": 4242, "email": "other@example.org"}"#, "10npay"),
    ] {
        let mut request = http.post(stack.url(TENNPAY)).header("content-type", content_type).body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let (status, _) = checker.check("POST", request.send().await.unwrap()).await;
        statuses(&mut answered, label, status);
    }
    let off =
        quiet.http.post(quiet.url(TENNPAY)).bearer_auth(&payer).json(&json!({"id": 4242, "email": payer_email})).send();
    statuses(&mut answered, "10npay with mail off", checker.check("POST", off.await.unwrap()).await.0);

    // ---------- Mastodon ----------
    let masto_user = format!("masto-{}", mailconfirm_local::gateway::uuid_like());
    quiet.sign_up(json!({ "user_id": masto_user, "email": quiet.unique_email("toot"), "client_id": "app-1" })).await;
    let taken = quiet.unique_email("taken");
    quiet.sign_up(json!({ "user_id": format!("{masto_user}-2"), "email": taken })).await;
    for path in ["/api/v1/emails/confirmations", "/api/v1/emails/confirmation"] {
        for (token, body, label) in [
            (None, None, "mastodon without a token"),
            (Some(expired_token(&masto_user)), None, "mastodon expired"),
            (Some(app_token(&masto_user, "app-1", "read")), None, "mastodon outside the scopes"),
            (Some(app_token(&masto_user, "app-2", "write")), None, "mastodon for another application"),
            (
                Some(app_token(&masto_user, "app-1", "write")),
                Some(json!({"email": "not an address"})),
                "mastodon invalid",
            ),
            (Some(app_token(&masto_user, "app-1", "write")), Some(json!({"email": &taken})), "mastodon taken"),
            (Some(app_token(&masto_user, "app-1", "write:accounts")), None, "mastodon"),
        ] {
            let mut request = http.post(stack.url(path));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            if let Some(body) = body {
                request = request.json(&body);
            }
            let (status, _) = checker.check("POST", request.send().await.unwrap()).await;
            statuses(&mut answered, &format!("{label} ({path})"), status);
        }
    }
    let off = http.post(quiet.url("/api/v1/emails/confirmations"));
    let off = off.bearer_auth(app_token(&masto_user, "app-1", "write")).send().await.unwrap();
    statuses(&mut answered, "mastodon with mail off", checker.check("POST", off).await.0);

    // ---------- The confirm page ----------
    const PAGE: &str = "/confirm-email";
    let (page_user, page_email) = quiet.signed_up_user(Some("fr")).await;
    let (_, redirect_email) = quiet.signed_up_user(None).await;
    let _ = http.post(stack.url(&format!("/api/users/resendconfirmation/{page_email}"))).send().await.unwrap();
    let _ = http.post(stack.url(&format!("/api/users/resendconfirmation/{redirect_email}"))).send().await.unwrap();
    let page_link = stack.latest_link_token(&page_email).await;
    let redirect_link = stack.latest_link_token(&redirect_email).await;
    let expired = stack.link_token_issued_at(&page_user, &page_email, "fr", now() - 3 * 86_400);
    let earlier = stack.user_whose_address_changed(&format!("moved-{}", mailconfirm_local::gateway::uuid_like())).await;
    for (method, query, label) in [
        ("GET", String::new(), "page without a token"),
        ("GET", format!("?token={page_link}"), "page"),
        ("HEAD", format!("?token={page_link}"), "page, HEAD"),
        ("GET", format!("?token={expired}"), "page for an expired link"),
        ("HEAD", "?token=forged".to_owned(), "page for a forged link, HEAD"),
        ("GET", format!("?token={earlier}"), "page for an earlier address"),
    ] {
        let response = http.request(method.parse().unwrap(), stack.url(&format!("{PAGE}{query}"))).send().await;
        let (status, _) = checker.check(method, response.unwrap()).await;
        statuses(&mut answered, label, status);
    }
    let press = |stack: &TestStack, form: Vec<(&str, String)>| http.post(stack.url(PAGE)).form(&form).send();
    for (form, label) in [
        (vec![("token", page_link.clone()), ("action", "confirm".to_owned())], "press Confirm"),
        (vec![("token", page_link.clone())], "press Confirm again"),
        (vec![("token", page_link.clone()), ("action", "dance".to_owned())], "press an unknown button"),
        (vec![("token", expired.clone()), ("action", "confirm".to_owned())], "press Confirm on an expired link"),
        (vec![("token", expired.clone()), ("action", "send-new-link".to_owned())], "ask for a new link"),
        (vec![("token", earlier.clone()), ("action", "confirm".to_owned())], "press Confirm for an earlier address"),
    ] {
        let (status, _) = checker.check("POST", press(&stack, form).await.unwrap()).await;
        statuses(&mut answered, label, status);
    }
    for (method, label) in [("GET", "code form"), ("HEAD", "code form, HEAD")] {
        let response = http.request(method.parse().unwrap(), stack.url("/confirm-email/code")).send().await;
        statuses(&mut answered, label, checker.check(method, response.unwrap()).await.0);
    }
    let wrong_code =
        http.post(stack.url("/confirm-email/code")).form(&[("email", "nobody@example.com"), ("code", "123456")]);
    statuses(&mut answered, "code form, wrong code", checker.check("POST", wrong_code.send().await.unwrap()).await.0);
    let redirected = press(&redirecting, vec![("token", redirect_link)]).await.unwrap();
    statuses(&mut answered, "press Confirm with a redirect", checker.check("POST", redirected).await.0);
    for label in ["ask for a new link, throttled (1)", "ask for a new link, throttled (2)"] {
        let form = vec![("token", expired.clone()), ("action", "send-new-link".to_owned())];
        let (status, _) = checker.check("POST", press(&throttled, form).await.unwrap()).await;
        statuses(&mut answered, label, status);
    }
    let off = http.get(quiet.url(&format!("{PAGE}?token={page_link}"))).send().await.unwrap();
    statuses(&mut answered, "page with mail off", checker.check("GET", off).await.0);
    let off = press(&quiet, vec![("token", expired.clone()), ("action", "send-new-link".to_owned())]).await.unwrap();
    statuses(&mut answered, "ask for a new link with mail off", checker.check("POST", off).await.0);

    // ---------- mailconfirm's service routes and Mastodon's check_confirmation ----------
    let (served, _) = quiet.signed_up_user(None).await;
    let admin = mailconfirm_local::server::mint_access_token(json!({ "sub": "svc", "roles": ["mailconfirm-admin"] }));
    let reader = mailconfirm_local::server::mint_access_token(json!({ "sub": served, "scope": "read" }));
    for (method, path, token, label) in [
        ("GET", format!("/v1/users/{served}"), admin.clone(), "service status"),
        ("GET", "/v1/users/nobody-here".to_owned(), admin.clone(), "service status of no user"),
        ("GET", format!("/v1/users/{served}"), reader.clone(), "service status without admin"),
        ("GET", "/api/v1/emails/check_confirmation".to_owned(), reader.clone(), "check confirmation"),
        ("GET", "/api/v1/emails/check_confirmation".to_owned(), admin.clone(), "check confirmation without read"),
        ("POST", format!("/v1/users/{served}/confirm"), admin.clone(), "service confirm"),
        ("POST", format!("/v1/users/{served}/confirm"), "broken".to_owned(), "service confirm without a token"),
        ("DELETE", format!("/v1/users/{served}"), admin.clone(), "service delete"),
        ("DELETE", format!("/v1/users/{served}"), admin.clone(), "service delete again"),
    ] {
        let request = http.request(method.parse().unwrap(), stack.url(&path)).bearer_auth(token);
        let (status, _) = checker.check(method, request.send().await.unwrap()).await;
        statuses(&mut answered, label, status);
    }

    // ---------- One-time codes ----------
    const CODE: &str = "/v1/confirmations/code";
    let (coded, coded_email) = stack.signed_up_user(None).await;
    let code = stack.latest_code(&coded_email).await;
    let other = format!("{:0width$}", (code.parse::<u64>().unwrap() + 1) % 1_000_000, width = code.len());
    let (spent, spent_email) = stack.signed_up_user(None).await;
    let spent_code = stack.latest_code(&spent_email).await;
    let (no_code, _) = quiet.signed_up_user(None).await;
    for (user, body, label) in [
        (None, json!({ "code": code }), "code without a token"),
        (Some(coded.clone()), json!({ "code": 123456 }), "code malformed"),
        (Some("nobody-here".to_owned()), json!({ "code": "123456" }), "code for no user"),
        (Some(no_code.clone()), json!({ "code": "123456" }), "code for a user without one"),
        (Some(coded.clone()), json!({ "code": other }), "code wrong"),
        (Some(coded.clone()), json!({ "code": code }), "code"),
        (Some(coded.clone()), json!({ "code": code }), "code again"),
    ] {
        let mut request = http.post(stack.url(CODE)).json(&body);
        if let Some(user) = user {
            request = request.bearer_auth(stack.access_token(&user));
        }
        let (status, _) = checker.check("POST", request.send().await.unwrap()).await;
        statuses(&mut answered, label, status);
    }
    for label in ["code, throttled (1)", "code, throttled (2)"] {
        let request = http.post(throttled.url(CODE)).bearer_auth(throttled.access_token(&spent));
        let (status, _) =
            checker.check("POST", request.json(&json!({ "code": spent_code })).send().await.unwrap()).await;
        statuses(&mut answered, label, status);
    }

    // ---------- Keys that cannot be fetched ----------
    // The identity provider is down: every route that reads an access token answers its 503.
    let keyless = TestStack::start_with(|env| {
        env.remove("ACCESS_TOKEN_HS256_SECRET");
        env.insert("ACCESS_TOKEN_JWKS_URL".into(), format!("http://{}/jwks", unused_local_address()));
        env.insert("TABLE_NAME".into(), quiet.table.clone());
    })
    .await;
    let token = keyless.access_token(&unmailed);
    let tennpay_body = json!({"id": 4242, "email": payer_email}).to_string();
    for (method, path, header, body, label) in [
        ("POST", SEND.to_owned(), "authorization", "", "send without keys"),
        ("GET", COOLDOWN.to_owned(), "authorization", "", "cooldown without keys"),
        ("POST", create(&unmailed_email), "user-token", "", "create URL without keys"),
        ("GET", "/api/info".to_owned(), "user-token", "", "app info without keys"),
        ("POST", TENNPAY.to_owned(), "authorization", tennpay_body.as_str(), "10npay without keys"),
        ("POST", "/api/v1/emails/confirmations".to_owned(), "authorization", "", "mastodon without keys"),
        ("POST", "/v1/confirmations/code".to_owned(), "authorization", r#"{"code":"123456"}"#, "code without keys"),
    ] {
        let value = if header == "authorization" { format!("Bearer {token}") } else { token.clone() };
        let request = http.request(method.parse().unwrap(), keyless.url(&path)).header(header, value);
        let request = request.header("content-type", "application/json").body(body.to_owned());
        let (status, _) = checker.check(method, request.send().await.unwrap()).await;
        statuses(&mut answered, label, status);
    }

    // The requests reached every operation, and the answers the scenarios aim at.
    let seen = checker.seen.lock().unwrap().clone();
    let operations: BTreeSet<(String, String)> = seen.keys().cloned().collect();
    assert_eq!(operations, documented_operations(&checker.document), "operations without a checked request");
    for ((method, path), statuses) in &seen {
        println!("{method:<4} {path:<48} {statuses:?}");
    }
    let expected: BTreeMap<&str, u16> = [
        ("send without a token", 401),
        ("send for no user", 404),
        ("send with a malformed locale", 400),
        ("send", 200),
        ("send within the cooldown", 429),
        ("verify", 200),
        ("verify again", 304),
        ("verify expired", 401),
        ("resend", 200),
        ("resend within the cooldown", 429),
        ("resend to no user", 400),
        ("create URL without admin", 403),
        ("create URL", 200),
        ("app info", 200),
        ("app info with a user's token", 200),
        ("app info with a stale token", 401),
        ("10npay", 204),
        ("10npay as text", 415),
        ("10npay for another user", 403),
        ("10npay with mail off", 503),
        ("mastodon invalid (/api/v1/emails/confirmations)", 422),
        ("mastodon (/api/v1/emails/confirmations)", 200),
        ("mastodon (/api/v1/emails/confirmation)", 429),
        ("page", 200),
        ("page for an expired link", 410),
        ("page for an earlier address", 409),
        ("press Confirm", 303),
        ("code form", 200),
        ("code form, wrong code", 422),
        ("press Confirm with a redirect", 303),
        ("ask for a new link, throttled (2)", 429),
        ("page with mail off", 503),
        ("mastodon with mail off", 503),
        ("resend with mail off", 400),
        ("send without keys", 503),
        ("cooldown without keys", 503),
        ("create URL without keys", 503),
        ("app info without keys", 503),
        ("10npay without keys", 503),
        ("mastodon without keys", 503),
        ("service status", 200),
        ("service status of no user", 404),
        ("service status without admin", 403),
        ("check confirmation", 200),
        ("check confirmation without read", 403),
        ("service confirm", 200),
        ("service confirm without a token", 401),
        ("service delete", 204),
        ("service delete again", 404),
        ("code without a token", 401),
        ("code malformed", 400),
        ("code for no user", 404),
        ("code for a user without one", 410),
        ("code wrong", 422),
        ("code", 200),
        ("code again", 200),
        ("code, throttled (1)", 200),
        ("code, throttled (2)", 429),
        ("code without keys", 503),
    ]
    .into_iter()
    .collect();
    let answered: BTreeMap<&str, u16> = answered.iter().map(|(label, status)| (label.as_str(), *status)).collect();
    for (label, status) in expected {
        assert_eq!(answered.get(label), Some(&status), "{label}: {answered:#?}");
    }
}
