//! Access tokens verified with the keys an identity provider publishes at `ACCESS_TOKEN_JWKS_URL`,
//! through HTTP: a local provider rotates its key from A to B, and the Singularity cooldown route
//! follows it, asking the provider again only when a token names a key it has not seen, at most
//! once a minute.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mailconfirm_local::harness::TestStack;
use mailconfirm_local::stack::{LOCAL_AUDIENCE, LOCAL_ISSUER};
use serde_json::{Value, json};

const COOLDOWN: &str = "/api/auth/email/verification/cooldown";

// The shared crate's test-only keys; they protect nothing.
const RSA_PRIVATE: &str = include_str!("../../shared/tests/fixtures/rsa-private.pem");
const EC_PRIVATE: &str = include_str!("../../shared/tests/fixtures/ec-private.pem");

/// A local identity provider's JWKS endpoint, whose published set the test replaces.
struct IdentityProvider {
    url: String,
    published: Arc<Mutex<String>>,
    fetches: Arc<AtomicUsize>,
}

impl IdentityProvider {
    async fn start(keys: &[&Jwk]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/.well-known/jwks.json", listener.local_addr().unwrap());
        let provider =
            Self { url, published: Arc::new(Mutex::new(String::new())), fetches: Arc::new(AtomicUsize::new(0)) };
        provider.publish(keys);
        let (published, fetches) = (provider.published.clone(), provider.fetches.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let (published, fetches) = (published.clone(), fetches.clone());
                let service = hyper::service::service_fn(move |_request| {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    let body = published.lock().unwrap().clone();
                    async move {
                        let mut response = http::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
                        response.headers_mut().insert("content-type", "application/json".parse().unwrap());
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                );
            }
        });
        provider
    }

    fn publish(&self, keys: &[&Jwk]) {
        *self.published.lock().unwrap() = json!({ "keys": keys }).to_string();
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

struct SigningKey {
    key: EncodingKey,
    jwk: Jwk,
    algorithm: Algorithm,
    kid: &'static str,
}

impl SigningKey {
    fn new(key: EncodingKey, algorithm: Algorithm, kid: &'static str) -> Self {
        let mut jwk = Jwk::from_encoding_key(&key, algorithm).unwrap();
        jwk.common.key_id = Some(kid.to_owned());
        Self { key, jwk, algorithm, kid }
    }

    fn token_for(&self, user_id: &str) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims =
            json!({ "sub": user_id, "iss": LOCAL_ISSUER, "aud": LOCAL_AUDIENCE, "iat": now, "exp": now + 600 });
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.to_owned());
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap()
    }
}

async fn cooldown(stack: &TestStack, token: &str) -> (u16, Value) {
    let response = stack.http.get(stack.url(COOLDOWN)).bearer_auth(token).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_follow_the_identity_providers_key_rotation() {
    let key_a = SigningKey::new(EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(), Algorithm::RS256, "a");
    let key_b = SigningKey::new(EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap(), Algorithm::ES256, "b");
    let provider = IdentityProvider::start(&[&key_a.jwk]).await;
    let stack = TestStack::start_with(|env| {
        env.remove("ACCESS_TOKEN_HS256_SECRET");
        env.insert("ACCESS_TOKEN_JWKS_URL".into(), provider.url.clone());
    })
    .await;
    let (user_id, _) = stack.signed_up_user(None).await;

    // Key A verifies; the set is fetched once and kept.
    for _ in 0..2 {
        let (status, body) = cooldown(&stack, &key_a.token_for(&user_id)).await;
        assert_eq!(status, 200, "{body}");
        assert!(body["remaining"].as_u64().is_some_and(|remaining| remaining > 0), "{body}");
    }
    assert_eq!(provider.fetches(), 1);

    // The provider rotates to key B. Within the minute after the fetch, B is not asked for.
    provider.publish(&[&key_b.jwk]);
    let (status, body) = cooldown(&stack, &key_b.token_for(&user_id)).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("ACCESS_TOKEN_INVALID")), "{body}");
    assert_eq!(provider.fetches(), 1);

    // A minute on, the first token signed with B fetches the set again, and verifies.
    stack.clock.advance(60);
    let (status, body) = cooldown(&stack, &key_b.token_for(&user_id)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(provider.fetches(), 2);
    // Key A is gone from the set: its tokens are invalid now, without another fetch.
    let (status, body) = cooldown(&stack, &key_a.token_for(&user_id)).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("ACCESS_TOKEN_INVALID")), "{body}");
    assert_eq!(provider.fetches(), 2);
}
