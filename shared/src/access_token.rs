//! Access tokens issued by the app's own auth server: verified here with its key, never trusted
//! on sight. HS256 with a shared secret, RS256/ES256 with a public key, a JWKS from config, or
//! the JWKS the identity provider publishes at a URL (fetched, cached, refetched on rotation).

mod jwks;

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind, jwk::JwkSet};
use secrecy::ExposeSecret;
use serde::Deserialize;

use self::jwks::RemoteKeySet;
pub use self::jwks::{MAX_JWKS_BYTES, REFETCH_INTERVAL_SECONDS};
use crate::config::{self, ConfigError, Source};
use crate::domain::{ClientId, UserId};
use crate::ports::Clock;

/// How far the auth server's clock may be from ours when `exp` and `nbf` are checked.
pub const CLOCK_LEEWAY_SECONDS: u64 = 30;

/// The cookie Singularity keeps its access token in.
pub const DEFAULT_ACCESS_TOKEN_COOKIE: &str = "access_token";

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AccessTokenError {
    #[error("no access token was presented")]
    Missing,
    #[error("the access token is invalid")]
    Invalid,
    #[error("the access token has expired")]
    Expired,
    /// `ACCESS_TOKEN_JWKS_URL` could not be fetched (down, slow, or not a JWK set): the token
    /// was not judged, and a retry may succeed. Each contract answers it with its 503.
    #[error("the keys that verify access tokens are unavailable")]
    KeysUnavailable,
}

/// How long a JWKS fetch may take, connection included, unless `ACCESS_TOKEN_JWKS_TIMEOUT_MS`.
pub const DEFAULT_JWKS_TIMEOUT_MS: u64 = 2000;

/// Who a verified token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: UserId,
    /// The OAuth client the token was issued to (`client_id`, else `azp`).
    pub client_id: Option<ClientId>,
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct AccessClaims {
    sub: String,
    client_id: Option<String>,
    azp: Option<String>,
    #[serde(default)]
    scope: Option<ScopeClaim>,
    #[serde(default)]
    scp: Option<ScopeClaim>,
    #[serde(default)]
    roles: Vec<String>,
}

/// Scopes come space-separated (`scope`, RFC 8693) or as a list (`scp`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ScopeClaim {
    Text(String),
    List(Vec<String>),
}

impl ScopeClaim {
    fn into_vec(self) -> Vec<String> {
        match self {
            ScopeClaim::Text(text) => text.split_whitespace().map(str::to_owned).collect(),
            ScopeClaim::List(list) => list,
        }
    }
}

struct VerificationKey {
    kid: Option<String>,
    key: DecodingKey,
    algorithm: Algorithm,
}

/// Where the verification keys come from: fixed at start (no I/O), or fetched.
enum Keys {
    Fixed(Vec<VerificationKey>),
    Published(Box<RemoteKeySet>),
}

pub struct AccessTokenVerifier {
    keys: Keys,
    issuer: String,
    audience: String,
    pub cookie_name: String,
}

impl AccessTokenVerifier {
    /// Exactly one of `ACCESS_TOKEN_HS256_SECRET`, `ACCESS_TOKEN_PUBLIC_KEY` (PEM, with
    /// `ACCESS_TOKEN_ALGORITHM` RS256 or ES256), `ACCESS_TOKEN_JWKS` (a JWK set as JSON) or
    /// `ACCESS_TOKEN_JWKS_URL` (with `ACCESS_TOKEN_JWKS_TIMEOUT_MS`); plus
    /// `ACCESS_TOKEN_ISSUER`, `ACCESS_TOKEN_AUDIENCE` and `ACCESS_TOKEN_COOKIE`. The clock
    /// spaces the refetches of a JWKS URL.
    pub fn from_config(source: &dyn Source, clock: Arc<dyn Clock>) -> Result<Self, ConfigError> {
        let secret = config::secret(source, "ACCESS_TOKEN_HS256_SECRET");
        let pem = config::optional(source, "ACCESS_TOKEN_PUBLIC_KEY");
        let jwks = config::optional(source, "ACCESS_TOKEN_JWKS");
        let jwks_url = config::optional(source, "ACCESS_TOKEN_JWKS_URL");
        let keys = match (secret, pem, jwks, jwks_url) {
            (Some(secret), None, None, None) => Keys::Fixed(vec![VerificationKey {
                kid: None,
                key: DecodingKey::from_secret(secret.expose_secret().as_bytes()),
                algorithm: Algorithm::HS256,
            }]),
            (None, Some(pem), None, None) => Keys::Fixed(vec![public_key(&pem, source)?]),
            (None, None, Some(jwks), None) => Keys::Fixed(jwk_set(&jwks)?),
            (None, None, None, Some(url)) => Keys::Published(Box::new(RemoteKeySet::new(
                parse_jwks_url(&url)?,
                jwks_timeout(source)?,
                config::optional(source, "SSL_CERT_FILE"),
                clock,
            ))),
            (None, None, None, None) => {
                return Err(ConfigError::Missing {
                    name: "ACCESS_TOKEN_HS256_SECRET",
                    meaning: "the key that verifies access tokens: set it, ACCESS_TOKEN_PUBLIC_KEY, ACCESS_TOKEN_JWKS or ACCESS_TOKEN_JWKS_URL",
                });
            }
            _ => {
                return Err(ConfigError::invalid(
                    "ACCESS_TOKEN_HS256_SECRET",
                    "set only one of ACCESS_TOKEN_HS256_SECRET, ACCESS_TOKEN_PUBLIC_KEY, ACCESS_TOKEN_JWKS and ACCESS_TOKEN_JWKS_URL",
                ));
            }
        };
        Ok(Self {
            keys,
            issuer: config::required(source, "ACCESS_TOKEN_ISSUER", "the `iss` that access tokens must carry")?,
            audience: config::required(source, "ACCESS_TOKEN_AUDIENCE", "the `aud` that access tokens must carry")?,
            cookie_name: config::optional(source, "ACCESS_TOKEN_COOKIE")
                .unwrap_or_else(|| DEFAULT_ACCESS_TOKEN_COOKIE.to_owned()),
        })
    }

    /// The token of a request: the `Authorization: Bearer` header first, then the cookie,
    /// which is Singularity's order.
    pub fn token_of<'r>(&self, headers: &'r http::HeaderMap) -> Option<&'r str> {
        bearer_token(headers).or_else(|| cookie(headers, &self.cookie_name))
    }

    /// Checks the token's signature, issuer, audience and times. Only a JWKS URL does I/O here,
    /// and only when its keys are not cached or the token names a key they lack.
    pub async fn verify(&self, token: &str) -> Result<Principal, AccessTokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AccessTokenError::Invalid)?;
        match &self.keys {
            Keys::Fixed(keys) => self.verify_with(keys, &header, token),
            Keys::Published(set) => self.verify_with(&set.keys_for(header.kid.as_deref()).await?, &header, token),
        }
    }

    fn verify_with(
        &self,
        keys: &[VerificationKey],
        header: &jsonwebtoken::Header,
        token: &str,
    ) -> Result<Principal, AccessTokenError> {
        let key = keys
            .iter()
            .find(|key| key.algorithm == header.alg && (key.kid.is_none() || key.kid == header.kid))
            .ok_or(AccessTokenError::Invalid)?;
        let mut validation = Validation::new(key.algorithm);
        // Clocks of the auth server and of Lambda may differ a little: `exp` and `nbf` are
        // checked with this much slack. A token not yet valid (`nbf` further ahead) is invalid.
        validation.leeway = CLOCK_LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        let claims = jsonwebtoken::decode::<AccessClaims>(token, &key.key, &validation)
            .map_err(|err| match err.kind() {
                ErrorKind::ExpiredSignature => AccessTokenError::Expired,
                _ => AccessTokenError::Invalid,
            })?
            .claims;
        let client_id = claims.client_id.or(claims.azp).map(|id| ClientId::parse(&id)).transpose();
        Ok(Principal {
            user_id: UserId::parse(&claims.sub).map_err(|_| AccessTokenError::Invalid)?,
            client_id: client_id.map_err(|_| AccessTokenError::Invalid)?,
            scopes: claims.scope.or(claims.scp).map(ScopeClaim::into_vec).unwrap_or_default(),
            roles: claims.roles,
        })
    }

    /// Finds and verifies the request's token.
    pub async fn authenticate(&self, headers: &http::HeaderMap) -> Result<Principal, AccessTokenError> {
        self.verify(self.token_of(headers).ok_or(AccessTokenError::Missing)?).await
    }
}

fn public_key(pem: &str, source: &dyn Source) -> Result<VerificationKey, ConfigError> {
    const NAME: &str = "ACCESS_TOKEN_PUBLIC_KEY";
    let algorithm = config::optional(source, "ACCESS_TOKEN_ALGORITHM").unwrap_or_else(|| "RS256".to_owned());
    let (algorithm, key) = match algorithm.trim() {
        "RS256" => (Algorithm::RS256, DecodingKey::from_rsa_pem(pem.as_bytes())),
        "ES256" => (Algorithm::ES256, DecodingKey::from_ec_pem(pem.as_bytes())),
        _ => {
            return Err(ConfigError::invalid("ACCESS_TOKEN_ALGORITHM", "expected RS256 or ES256"));
        }
    };
    let key = key.map_err(|err| ConfigError::invalid(NAME, format!("not a PEM public key: {err}")))?;
    Ok(VerificationKey { kid: None, key, algorithm })
}

/// `ACCESS_TOKEN_JWKS_URL`: https, or http to a loopback host only (a local identity provider), since
/// whoever can change the keys in transit can sign any token.
fn parse_jwks_url(value: &str) -> Result<http::Uri, ConfigError> {
    const NAME: &str = "ACCESS_TOKEN_JWKS_URL";
    let url = url::Url::parse(value.trim()).map_err(|err| ConfigError::invalid(NAME, format!("not a URL: {err}")))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => return Err(ConfigError::invalid(NAME, "expected an https URL (http only to localhost)")),
    }
    url.as_str().parse().map_err(|err| ConfigError::invalid(NAME, err))
}

/// `ACCESS_TOKEN_JWKS_TIMEOUT_MS`: the whole fetch, connection included; 1 to 10,000 ms.
fn jwks_timeout(source: &dyn Source) -> Result<Duration, ConfigError> {
    const NAME: &str = "ACCESS_TOKEN_JWKS_TIMEOUT_MS";
    let timeout = config::milliseconds(source, NAME, DEFAULT_JWKS_TIMEOUT_MS)?;
    if timeout.is_zero() || timeout > Duration::from_secs(10) {
        return Err(ConfigError::invalid(NAME, "expected a whole number of milliseconds from 1 to 10000"));
    }
    Ok(timeout)
}

fn jwk_set(json: &str) -> Result<Vec<VerificationKey>, ConfigError> {
    const NAME: &str = "ACCESS_TOKEN_JWKS";
    let set: JwkSet =
        serde_json::from_str(json).map_err(|err| ConfigError::invalid(NAME, format!("not a JWK set: {err}")))?;
    let keys = set
        .keys
        .iter()
        .map(|jwk| {
            let algorithm = jwk
                .common
                .key_algorithm
                .and_then(|alg| alg.to_string().parse::<Algorithm>().ok())
                .filter(|alg| matches!(alg, Algorithm::RS256 | Algorithm::ES256))
                .ok_or_else(|| ConfigError::invalid(NAME, "every key needs \"alg\": RS256 or ES256"))?;
            let key = DecodingKey::from_jwk(jwk).map_err(|err| ConfigError::invalid(NAME, err))?;
            Ok(VerificationKey { kid: jwk.common.key_id.clone(), key, algorithm })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if keys.is_empty() {
        return Err(ConfigError::invalid(NAME, "the set holds no key"));
    }
    Ok(keys)
}

/// Who counts as the app's backend: a token with `ADMIN_ROLE` in its `roles` (default
/// `mailconfirm-admin`) or `ADMIN_SCOPE` in its scopes (default `mailconfirm:admin`).
pub struct AdminPolicy {
    role: String,
    scope: String,
}

impl AdminPolicy {
    pub fn from_config(source: &dyn Source) -> Self {
        Self {
            role: config::optional(source, "ADMIN_ROLE").unwrap_or_else(|| "mailconfirm-admin".to_owned()),
            scope: config::optional(source, "ADMIN_SCOPE").unwrap_or_else(|| "mailconfirm:admin".to_owned()),
        }
    }

    pub fn allows(&self, principal: &Principal) -> bool {
        principal.roles.contains(&self.role) || principal.scopes.contains(&self.scope)
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme matched in any case).
pub fn bearer_token(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// A cookie's value from the `Cookie` headers (API Gateway v2 passes cookies through them).
pub fn cookie<'r>(headers: &'r http::HeaderMap, name: &str) -> Option<&'r str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, value)| *key == name && !value.is_empty())
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
    use std::time::Instant;

    use jsonwebtoken::{EncodingKey, Header, jwk::Jwk};
    use serde_json::json;

    use super::*;
    use crate::domain::UnixTime;
    use crate::ports::SystemClock;

    // Test-only keys, generated for these tests with openssl; they protect nothing.
    const RSA_PRIVATE: &str = include_str!("../tests/fixtures/rsa-private.pem");
    const RSA_PUBLIC: &str = include_str!("../tests/fixtures/rsa-public.pem");
    const EC_PRIVATE: &str = include_str!("../tests/fixtures/ec-private.pem");
    const EC_PUBLIC: &str = include_str!("../tests/fixtures/ec-public.pem");
    const SECRET: &str = "hs256-secret-for-tests-0123456789abcdef";

    fn verifier(pairs: &[(&str, &str)]) -> Result<AccessTokenVerifier, ConfigError> {
        let mut env: HashMap<String, String> =
            [("ACCESS_TOKEN_ISSUER", "https://auth.example.com"), ("ACCESS_TOKEN_AUDIENCE", "mailconfirm")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        env.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        AccessTokenVerifier::from_config(&env, Arc::new(SystemClock))
    }

    fn claims(extra: serde_json::Value) -> serde_json::Value {
        let now = jsonwebtoken::get_current_timestamp() as i64;
        let mut claims =
            json!({ "sub": "user-1", "iss": "https://auth.example.com", "aud": "mailconfirm", "exp": now + 600 });
        claims.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        claims
    }

    fn sign(header: Header, claims: &serde_json::Value, key: &EncodingKey) -> String {
        jsonwebtoken::encode(&header, claims, key).unwrap()
    }

    #[tokio::test]
    async fn hs256_tokens_carry_user_client_scopes_and_roles() {
        let verifier = verifier(&[("ACCESS_TOKEN_HS256_SECRET", SECRET)]).unwrap();
        let token = sign(
            Header::default(),
            &claims(json!({ "azp": "web-app", "scope": "read write:accounts", "roles": ["admin"] })),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        );
        let principal = verifier.verify(&token).await.unwrap();
        assert_eq!(principal.user_id.as_str(), "user-1");
        assert_eq!(principal.client_id.unwrap().as_str(), "web-app");
        assert_eq!(principal.scopes, ["read", "write:accounts"]);
        assert_eq!(principal.roles, ["admin"]);
    }

    #[tokio::test]
    async fn issuer_audience_expiry_and_algorithm_are_checked() {
        let verifier = verifier(&[("ACCESS_TOKEN_HS256_SECRET", SECRET)]).unwrap();
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        let now = jsonwebtoken::get_current_timestamp() as i64;
        let check = async |extra| verifier.verify(&sign(Header::default(), &claims(extra), &key)).await;
        assert_eq!(check(json!({ "iss": "https://other.example.com" })).await, Err(AccessTokenError::Invalid));
        assert_eq!(check(json!({ "aud": "other" })).await, Err(AccessTokenError::Invalid));
        assert_eq!(check(json!({ "exp": now - 3600 })).await, Err(AccessTokenError::Expired));
        assert_eq!(check(json!({ "sub": "" })).await, Err(AccessTokenError::Invalid));
        // An RS256 token never verifies against an HS256 configuration.
        let rs = sign(
            Header::new(Algorithm::RS256),
            &claims(json!({})),
            &EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
        );
        assert_eq!(verifier.verify(&rs).await, Err(AccessTokenError::Invalid));
    }

    #[tokio::test]
    async fn a_token_not_yet_valid_is_refused_beyond_the_leeway() {
        let verifier = verifier(&[("ACCESS_TOKEN_HS256_SECRET", SECRET)]).unwrap();
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        let now = jsonwebtoken::get_current_timestamp() as i64;
        let check =
            async |extra| verifier.verify(&sign(Header::default(), &claims(extra), &key)).await.map(|p| p.user_id);
        assert_eq!(check(json!({ "nbf": now + 3600 })).await, Err(AccessTokenError::Invalid));
        assert_eq!(
            check(json!({ "nbf": now + CLOCK_LEEWAY_SECONDS as i64 + 60 })).await,
            Err(AccessTokenError::Invalid)
        );
        // Within the leeway, or already valid, the token is good.
        assert!(check(json!({ "nbf": now + 10 })).await.is_ok());
        assert!(check(json!({ "nbf": now - 60 })).await.is_ok());
        assert!(check(json!({})).await.is_ok(), "nbf is optional");
    }

    #[tokio::test]
    async fn rs256_and_es256_tokens_verify_with_a_public_key() {
        let rsa = verifier(&[("ACCESS_TOKEN_PUBLIC_KEY", RSA_PUBLIC), ("ACCESS_TOKEN_ALGORITHM", "RS256")]).unwrap();
        let token = sign(
            Header::new(Algorithm::RS256),
            &claims(json!({})),
            &EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
        );
        assert_eq!(rsa.verify(&token).await.unwrap().user_id.as_str(), "user-1");

        let ec = verifier(&[("ACCESS_TOKEN_PUBLIC_KEY", EC_PUBLIC), ("ACCESS_TOKEN_ALGORITHM", "ES256")]).unwrap();
        let token = sign(
            Header::new(Algorithm::ES256),
            &claims(json!({})),
            &EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap(),
        );
        assert_eq!(ec.verify(&token).await.unwrap().user_id.as_str(), "user-1");
        assert_eq!(rsa.verify(&token).await, Err(AccessTokenError::Invalid));
    }

    #[tokio::test]
    async fn a_jwks_key_is_chosen_by_kid() {
        let rsa_key = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
        let ec_key = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
        let mut rsa_jwk = Jwk::from_encoding_key(&rsa_key, Algorithm::RS256).unwrap();
        rsa_jwk.common.key_id = Some("rsa-1".into());
        let mut ec_jwk = Jwk::from_encoding_key(&ec_key, Algorithm::ES256).unwrap();
        ec_jwk.common.key_id = Some("ec-1".into());
        let jwks = json!({ "keys": [rsa_jwk, ec_jwk] }).to_string();
        let verifier = verifier(&[("ACCESS_TOKEN_JWKS", &jwks)]).unwrap();

        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("ec-1".into());
        assert!(verifier.verify(&sign(header, &claims(json!({})), &ec_key)).await.is_ok());
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("unknown".into());
        assert_eq!(verifier.verify(&sign(header, &claims(json!({})), &rsa_key)).await, Err(AccessTokenError::Invalid));
    }

    #[test]
    fn the_key_configuration_must_name_exactly_one_key() {
        let err = verifier(&[]).err().unwrap().to_string();
        assert!(err.contains("ACCESS_TOKEN_HS256_SECRET"), "{err}");
        let both = verifier(&[("ACCESS_TOKEN_HS256_SECRET", SECRET), ("ACCESS_TOKEN_PUBLIC_KEY", RSA_PUBLIC)]);
        assert!(both.is_err());
        let bad_pem = verifier(&[("ACCESS_TOKEN_PUBLIC_KEY", "not a pem")]).err().unwrap().to_string();
        assert!(bad_pem.contains("ACCESS_TOKEN_PUBLIC_KEY"), "{bad_pem}");
        let bad_jwks = verifier(&[("ACCESS_TOKEN_JWKS", "{}")]).err().unwrap().to_string();
        assert!(bad_jwks.contains("ACCESS_TOKEN_JWKS"), "{bad_jwks}");
        let url = "https://auth.example.com/.well-known/jwks.json";
        let jwks_and_url = verifier(&[("ACCESS_TOKEN_JWKS", "{}"), ("ACCESS_TOKEN_JWKS_URL", url)]);
        assert!(jwks_and_url.err().unwrap().to_string().contains("ACCESS_TOKEN_JWKS_URL"));
        assert!(verifier(&[("ACCESS_TOKEN_JWKS_URL", url)]).is_ok());
        assert!(verifier(&[("ACCESS_TOKEN_JWKS_URL", "http://127.0.0.1:8080/jwks")]).is_ok());
        assert!(verifier(&[("ACCESS_TOKEN_JWKS_URL", "http://localhost/jwks")]).is_ok());
        for bad in ["http://auth.example.com/jwks", "ftp://auth.example.com/jwks", "not a url"] {
            let err = verifier(&[("ACCESS_TOKEN_JWKS_URL", bad)]).err().unwrap().to_string();
            assert!(err.contains("ACCESS_TOKEN_JWKS_URL"), "{bad}: {err}");
        }
        for bad in ["0", "10001", "soon"] {
            let err = verifier(&[("ACCESS_TOKEN_JWKS_URL", url), ("ACCESS_TOKEN_JWKS_TIMEOUT_MS", bad)]);
            assert!(err.err().unwrap().to_string().contains("ACCESS_TOKEN_JWKS_TIMEOUT_MS"), "{bad}");
        }
    }

    #[test]
    fn the_bearer_header_wins_over_the_cookie() {
        let verifier = verifier(&[("ACCESS_TOKEN_HS256_SECRET", SECRET)]).unwrap();
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::COOKIE, "a=1; access_token=from-cookie".parse().unwrap());
        assert_eq!(verifier.token_of(&headers), Some("from-cookie"));
        headers.insert(http::header::AUTHORIZATION, "bearer from-header".parse().unwrap());
        assert_eq!(verifier.token_of(&headers), Some("from-header"));
        headers.insert(http::header::AUTHORIZATION, "Bearer ".parse().unwrap());
        assert_eq!(verifier.token_of(&headers), Some("from-cookie"));
    }

    /// A clock the JWKS tests move by hand, so the refetch interval needs no sleep.
    struct ManualClock(AtomicI64);

    impl Clock for ManualClock {
        fn now(&self) -> UnixTime {
            UnixTime(self.0.load(Ordering::SeqCst))
        }
    }

    impl ManualClock {
        fn advance(&self, seconds: i64) {
            self.0.fetch_add(seconds, Ordering::SeqCst);
        }
    }

    /// What the local identity provider answers at its JWKS URL.
    #[derive(Clone)]
    enum Published {
        Set(String),
        Garbage,
        /// Accepts the request and never answers.
        Silence,
    }

    /// A local JWKS endpoint that counts its requests and whose answer the test swaps.
    struct KeyServer {
        url: String,
        published: Arc<std::sync::Mutex<Published>>,
        fetches: Arc<AtomicUsize>,
    }

    impl KeyServer {
        async fn start(published: Published) -> Self {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}/.well-known/jwks.json", listener.local_addr().unwrap());
            let server = Self { url, published: Arc::new(std::sync::Mutex::new(published)), fetches: Arc::default() };
            let (published, fetches) = (server.published.clone(), server.fetches.clone());
            tokio::spawn(async move {
                loop {
                    let (stream, _) = listener.accept().await.unwrap();
                    let (published, fetches) = (published.clone(), fetches.clone());
                    let service = hyper::service::service_fn(move |_request| {
                        let (published, fetches) = (published.clone(), fetches.clone());
                        async move {
                            fetches.fetch_add(1, Ordering::SeqCst);
                            let answer = published.lock().unwrap().clone();
                            let body = match answer {
                                Published::Set(json) => json,
                                Published::Garbage => "<html>Bad gateway</html>".to_owned(),
                                Published::Silence => std::future::pending().await,
                            };
                            Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                                bytes::Bytes::from(body),
                            )))
                        }
                    });
                    tokio::spawn(
                        hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                    );
                }
            });
            server
        }

        fn publish(&self, published: Published) {
            *self.published.lock().unwrap() = published;
        }

        fn fetches(&self) -> usize {
            self.fetches.load(Ordering::SeqCst)
        }
    }

    /// Key A is the RSA fixture, key B the EC one: a rotation from A to B.
    fn key_a() -> (EncodingKey, Jwk) {
        let key = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
        jwk.common.key_id = Some("key-a".into());
        (key, jwk)
    }

    fn key_b() -> (EncodingKey, Jwk) {
        let key = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap();
        jwk.common.key_id = Some("key-b".into());
        (key, jwk)
    }

    fn set_of(jwks: &[&Jwk]) -> Published {
        Published::Set(json!({ "keys": jwks }).to_string())
    }

    fn token_with(key: &EncodingKey, algorithm: Algorithm, kid: &str) -> String {
        let mut header = Header::new(algorithm);
        header.kid = Some(kid.into());
        sign(header, &claims(json!({})), key)
    }

    fn published_verifier(url: &str, clock: Arc<ManualClock>, timeout_ms: &str) -> AccessTokenVerifier {
        let env: HashMap<String, String> = [
            ("ACCESS_TOKEN_ISSUER", "https://auth.example.com"),
            ("ACCESS_TOKEN_AUDIENCE", "mailconfirm"),
            ("ACCESS_TOKEN_JWKS_URL", url),
            ("ACCESS_TOKEN_JWKS_TIMEOUT_MS", timeout_ms),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        AccessTokenVerifier::from_config(&env, clock).unwrap()
    }

    #[tokio::test]
    async fn published_keys_are_fetched_once_then_again_when_a_token_names_a_rotated_key() {
        let ((a, jwk_a), (b, jwk_b)) = (key_a(), key_b());
        let server = KeyServer::start(set_of(&[&jwk_a])).await;
        let clock = Arc::new(ManualClock(AtomicI64::new(1_000_000)));
        let verifier = published_verifier(&server.url, clock.clone(), "2000");
        assert_eq!(server.fetches(), 0, "nothing is fetched before the first token");

        let token_a = token_with(&a, Algorithm::RS256, "key-a");
        assert_eq!(verifier.verify(&token_a).await.unwrap().user_id.as_str(), "user-1");
        assert_eq!(verifier.verify(&token_a).await.unwrap().user_id.as_str(), "user-1");
        assert_eq!(server.fetches(), 1, "the set is cached");

        // The provider rotates to key B: the first token signed with it makes us look again.
        server.publish(set_of(&[&jwk_b]));
        clock.advance(REFETCH_INTERVAL_SECONDS);
        let token_b = token_with(&b, Algorithm::ES256, "key-b");
        assert_eq!(verifier.verify(&token_b).await.unwrap().user_id.as_str(), "user-1");
        assert_eq!(server.fetches(), 2);
        // Key A left the set, so its tokens no longer verify (nor refetch: it was just fetched).
        assert_eq!(verifier.verify(&token_a).await, Err(AccessTokenError::Invalid));
        assert_eq!(server.fetches(), 2);
    }

    #[tokio::test]
    async fn an_unknown_key_refetches_at_most_once_a_minute() {
        let ((a, jwk_a), (b, jwk_b)) = (key_a(), key_b());
        let server = KeyServer::start(set_of(&[&jwk_a])).await;
        let clock = Arc::new(ManualClock(AtomicI64::new(1_000_000)));
        let verifier = published_verifier(&server.url, clock.clone(), "2000");
        let token_a = token_with(&a, Algorithm::RS256, "key-a");
        assert!(verifier.verify(&token_a).await.is_ok());
        assert_eq!(server.fetches(), 1);

        // Within the minute after a fetch, unknown keys are invalid without asking.
        clock.advance(REFETCH_INTERVAL_SECONDS - 1);
        let token_b = token_with(&b, Algorithm::ES256, "key-b");
        assert_eq!(verifier.verify(&token_b).await, Err(AccessTokenError::Invalid));
        let made_up = token_with(&a, Algorithm::RS256, "made-up");
        assert_eq!(verifier.verify(&made_up).await, Err(AccessTokenError::Invalid));
        assert_eq!(server.fetches(), 1);

        // A minute on, the next unknown key asks again, and finds key B now published.
        server.publish(set_of(&[&jwk_a, &jwk_b]));
        clock.advance(1);
        assert!(verifier.verify(&token_b).await.is_ok());
        assert_eq!(server.fetches(), 2);
        assert!(verifier.verify(&token_a).await.is_ok(), "key A is still published");
        assert_eq!(verifier.verify(&made_up).await, Err(AccessTokenError::Invalid));
        assert_eq!(server.fetches(), 2);
    }

    #[tokio::test]
    async fn a_provider_that_is_down_makes_the_keys_unavailable() {
        let (a, _) = key_a();
        // A port that was just free: nothing listens there.
        let url = {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            format!("http://{}/jwks", listener.local_addr().unwrap())
        };
        let verifier = published_verifier(&url, Arc::new(ManualClock(AtomicI64::new(0))), "2000");
        let started = Instant::now();
        assert_eq!(
            verifier.verify(&token_with(&a, Algorithm::RS256, "key-a")).await,
            Err(AccessTokenError::KeysUnavailable)
        );
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        // A malformed token is invalid without any fetch.
        assert_eq!(verifier.verify("not-a-jwt").await, Err(AccessTokenError::Invalid));
    }

    #[tokio::test]
    async fn a_provider_that_never_answers_times_out_into_unavailable_keys() {
        let ((a, jwk_a), _) = (key_a(), key_b());
        let server = KeyServer::start(Published::Silence).await;
        let clock = Arc::new(ManualClock(AtomicI64::new(0)));
        let verifier = published_verifier(&server.url, clock.clone(), "300");
        let token_a = token_with(&a, Algorithm::RS256, "key-a");
        let started = Instant::now();
        assert_eq!(verifier.verify(&token_a).await, Err(AccessTokenError::KeysUnavailable));
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(300) && waited < Duration::from_millis(1500), "{waited:?}");
        assert_eq!(server.fetches(), 1);

        // With no keys held, the next token tries again at once, and the provider is back.
        server.publish(set_of(&[&jwk_a]));
        assert!(verifier.verify(&token_a).await.is_ok());
        assert_eq!(server.fetches(), 2);
    }

    #[tokio::test]
    async fn garbage_for_a_key_set_makes_the_keys_unavailable_and_keeps_the_old_ones() {
        let ((a, jwk_a), (b, _)) = (key_a(), key_b());
        let server = KeyServer::start(Published::Garbage).await;
        let clock = Arc::new(ManualClock(AtomicI64::new(0)));
        let verifier = published_verifier(&server.url, clock.clone(), "2000");
        let token_a = token_with(&a, Algorithm::RS256, "key-a");
        assert_eq!(verifier.verify(&token_a).await, Err(AccessTokenError::KeysUnavailable));

        // A set without a usable key is as bad: an encryption key and an HS256 secret.
        server.publish(Published::Set(
            json!({ "keys": [
                { "kty": "RSA", "use": "enc", "alg": "RSA-OAEP", "kid": "enc-1", "n": "sXch", "e": "AQAB" },
                { "kty": "oct", "alg": "HS256", "kid": "hmac-1", "k": "c2VjcmV0" },
            ] })
            .to_string(),
        ));
        assert_eq!(verifier.verify(&token_a).await, Err(AccessTokenError::KeysUnavailable));
        assert_eq!(server.fetches(), 2);

        // Once fetched, a set is kept when a refetch brings garbage: key A still verifies, and
        // the unknown key that asked stays unavailable (not invalid) until the next attempt.
        let mut with_extras = serde_json::to_value(&jwk_a).unwrap();
        with_extras.as_object_mut().unwrap().insert("use".into(), json!("sig"));
        server.publish(Published::Set(
            json!({ "keys": [{ "kty": "OKP", "crv": "X25519", "x": "abc" }, with_extras] }).to_string(),
        ));
        assert!(verifier.verify(&token_a).await.is_ok(), "unusable keys are skipped, not fatal");
        assert_eq!(server.fetches(), 3);
        server.publish(Published::Garbage);
        clock.advance(REFETCH_INTERVAL_SECONDS);
        let token_b = token_with(&b, Algorithm::ES256, "key-b");
        assert_eq!(verifier.verify(&token_b).await, Err(AccessTokenError::KeysUnavailable));
        assert_eq!(verifier.verify(&token_b).await, Err(AccessTokenError::KeysUnavailable));
        assert!(verifier.verify(&token_a).await.is_ok());
        assert_eq!(server.fetches(), 4);
    }

    #[tokio::test]
    async fn a_set_larger_than_the_bound_is_refused() {
        let ((a, jwk_a), _) = (key_a(), key_b());
        let mut huge = serde_json::to_value(&jwk_a).unwrap();
        huge.as_object_mut().unwrap().insert("padding".into(), json!("x".repeat(MAX_JWKS_BYTES)));
        let server = KeyServer::start(Published::Set(json!({ "keys": [huge] }).to_string())).await;
        let verifier = published_verifier(&server.url, Arc::new(ManualClock(AtomicI64::new(0))), "2000");
        let token_a = token_with(&a, Algorithm::RS256, "key-a");
        assert_eq!(verifier.verify(&token_a).await, Err(AccessTokenError::KeysUnavailable));
    }
}
