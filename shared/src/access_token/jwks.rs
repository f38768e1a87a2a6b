//! The signing keys an identity provider publishes at a JWKS URL (`ACCESS_TOKEN_JWKS_URL`) and
//! rotates: fetched on first use, kept for the life of the execution environment, and fetched
//! again when a token names a key the set lacks, at most once a minute.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use tokio::sync::Mutex;

use super::{AccessTokenError, VerificationKey};
use crate::aws::{HttpsPool, http1_client, tls_config};
use crate::domain::UnixTime;
use crate::ports::Clock;
use crate::usecases::error_chain;

/// A token naming an unknown key refetches the set no sooner than this after the last fetch,
/// so tokens with made-up `kid`s cannot make us hammer the identity provider.
pub const REFETCH_INTERVAL_SECONDS: i64 = 60;

/// A JWK set larger than this is refused: real ones hold a few keys, a few KiB.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;

pub(super) struct RemoteKeySet {
    url: http::Uri,
    timeout: Duration,
    /// `SSL_CERT_FILE`, trusted besides the compiled-in roots, as the AWS clients do.
    extra_roots: Option<String>,
    clock: Arc<dyn Clock>,
    /// Built at the first fetch, so a function that never sees a token pays nothing.
    client: OnceLock<HttpsPool<Empty<Bytes>>>,
    /// One fetch at a time; requests that wait for it then use its keys.
    cache: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    keys: Option<Arc<Vec<VerificationKey>>>,
    fetched_at: Option<UnixTime>,
    last_fetch_failed: bool,
}

impl Cache {
    fn may_refetch(&self, now: UnixTime) -> bool {
        self.fetched_at.is_none_or(|at| now.0 >= at.0 + REFETCH_INTERVAL_SECONDS || now.0 < at.0)
    }
}

#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    #[error("the request failed")]
    Request(#[source] hyper_util::client::legacy::Error),
    #[error("the server answered {0}")]
    Status(http::StatusCode),
    #[error("the body could not be read, or exceeds {MAX_JWKS_BYTES} bytes")]
    Body(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("not a JWK set")]
    NotAJwkSet(#[source] serde_json::Error),
    #[error("the set holds no RS256 or ES256 signing key")]
    NoUsableKey,
}

impl RemoteKeySet {
    pub(super) fn new(url: http::Uri, timeout: Duration, extra_roots: Option<String>, clock: Arc<dyn Clock>) -> Self {
        Self { url, timeout, extra_roots, clock, client: OnceLock::new(), cache: Mutex::default() }
    }

    /// The keys to verify a token naming `kid` with: the cached set when it has that key (or the
    /// token names none), else a fresh one if the last fetch is a minute old. An unknown `kid`
    /// that may not refetch gets the cached set, in which it then finds no key: invalid.
    pub(super) async fn keys_for(&self, kid: Option<&str>) -> Result<Arc<Vec<VerificationKey>>, AccessTokenError> {
        let mut cache = self.cache.lock().await;
        let now = self.clock.now();
        if let Some(keys) = &cache.keys {
            let known = kid.is_none_or(|kid| keys.iter().any(|key| key.kid.as_deref() == Some(kid)));
            if known {
                return Ok(keys.clone());
            }
            if !cache.may_refetch(now) {
                // A failed refetch is not an answer about the key: it stays unavailable till
                // the next attempt.
                return if cache.last_fetch_failed { Err(AccessTokenError::KeysUnavailable) } else { Ok(keys.clone()) };
            }
        }
        cache.fetched_at = Some(now);
        match self.fetch().await {
            Ok(keys) => {
                tracing::info!(url = %self.url, keys = keys.len(), "fetched the access tokens' signing keys");
                let keys = Arc::new(keys);
                cache.keys = Some(keys.clone());
                cache.last_fetch_failed = false;
                Ok(keys)
            }
            Err(err) => {
                tracing::warn!(url = %self.url, error = %error_chain(&err), "cannot fetch the access tokens' signing keys");
                cache.last_fetch_failed = true;
                Err(AccessTokenError::KeysUnavailable)
            }
        }
    }

    async fn fetch(&self) -> Result<Vec<VerificationKey>, FetchError> {
        let client =
            self.client.get_or_init(|| http1_client(tls_config(self.extra_roots.as_deref()), Some(self.timeout)));
        let mut request = http::Request::new(Empty::new());
        *request.uri_mut() = self.url.clone();
        request.headers_mut().insert(http::header::ACCEPT, http::HeaderValue::from_static("application/json"));
        // Fetches are a minute apart at least, and a kept connection would go stale while Lambda
        // freezes the environment: one connection per fetch.
        request.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
        let body = tokio::time::timeout(self.timeout, async {
            let response = client.request(request).await.map_err(FetchError::Request)?;
            if !response.status().is_success() {
                return Err(FetchError::Status(response.status()));
            }
            let body = Limited::new(response.into_body(), MAX_JWKS_BYTES).collect().await.map_err(FetchError::Body)?;
            Ok(body.to_bytes())
        })
        .await
        .map_err(|_| FetchError::TimedOut(self.timeout))??;
        published_keys(&body)
    }
}

/// The RS256 and ES256 signing keys of a published set. Other keys are skipped rather than
/// refused: providers publish encryption keys (Keycloak's `RSA-OAEP`) and other algorithms in
/// the same set. A key without `alg` takes its type's (RSA: RS256, EC P-256: ES256).
fn published_keys(body: &[u8]) -> Result<Vec<VerificationKey>, FetchError> {
    #[derive(Deserialize)]
    struct RawSet {
        keys: Vec<serde_json::Value>,
    }
    let set: RawSet = serde_json::from_slice(body).map_err(FetchError::NotAJwkSet)?;
    let keys: Vec<VerificationKey> = set
        .keys
        .into_iter()
        .filter_map(|value| serde_json::from_value::<Jwk>(value).ok())
        .filter_map(signing_key)
        .collect();
    if keys.is_empty() { Err(FetchError::NoUsableKey) } else { Ok(keys) }
}

fn signing_key(jwk: Jwk) -> Option<VerificationKey> {
    if jwk.common.public_key_use.as_ref().is_some_and(|usage| *usage != PublicKeyUse::Signature) {
        return None;
    }
    let algorithm = match (&jwk.common.key_algorithm, &jwk.algorithm) {
        (Some(alg), _) => alg.to_string().parse::<Algorithm>().ok()?,
        (None, AlgorithmParameters::RSA(_)) => Algorithm::RS256,
        (None, AlgorithmParameters::EllipticCurve(ec)) if ec.curve == EllipticCurve::P256 => Algorithm::ES256,
        (None, _) => return None,
    };
    if !matches!(algorithm, Algorithm::RS256 | Algorithm::ES256) {
        return None;
    }
    let key = DecodingKey::from_jwk(&jwk).ok()?;
    Some(VerificationKey { kid: jwk.common.key_id, key, algorithm })
}
