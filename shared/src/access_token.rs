//! Access tokens issued by the app's own auth server: verified here with its key, never trusted
//! on sight. HS256 with a shared secret, RS256/ES256 with a public key, or a JWKS, all from config.

use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind, jwk::JwkSet};
use secrecy::ExposeSecret;
use serde::Deserialize;

use crate::config::{self, ConfigError, Source};
use crate::domain::{ClientId, UserId};

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
}

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

pub struct AccessTokenVerifier {
    keys: Vec<VerificationKey>,
    issuer: String,
    audience: String,
    pub cookie_name: String,
}

impl AccessTokenVerifier {
    /// Exactly one of `ACCESS_TOKEN_HS256_SECRET`, `ACCESS_TOKEN_PUBLIC_KEY` (PEM, with
    /// `ACCESS_TOKEN_ALGORITHM` RS256 or ES256) or `ACCESS_TOKEN_JWKS` (a JWK set as JSON);
    /// plus `ACCESS_TOKEN_ISSUER`, `ACCESS_TOKEN_AUDIENCE` and `ACCESS_TOKEN_COOKIE`.
    pub fn from_config(source: &dyn Source) -> Result<Self, ConfigError> {
        let secret = config::secret(source, "ACCESS_TOKEN_HS256_SECRET");
        let pem = config::optional(source, "ACCESS_TOKEN_PUBLIC_KEY");
        let jwks = config::optional(source, "ACCESS_TOKEN_JWKS");
        let keys = match (secret, pem, jwks) {
            (Some(secret), None, None) => vec![VerificationKey {
                kid: None,
                key: DecodingKey::from_secret(secret.expose_secret().as_bytes()),
                algorithm: Algorithm::HS256,
            }],
            (None, Some(pem), None) => vec![public_key(&pem, source)?],
            (None, None, Some(jwks)) => jwk_set(&jwks)?,
            (None, None, None) => {
                return Err(ConfigError::Missing {
                    name: "ACCESS_TOKEN_HS256_SECRET",
                    meaning: "the key that verifies access tokens: set it, ACCESS_TOKEN_PUBLIC_KEY or ACCESS_TOKEN_JWKS",
                });
            }
            _ => {
                return Err(ConfigError::invalid(
                    "ACCESS_TOKEN_HS256_SECRET",
                    "set only one of ACCESS_TOKEN_HS256_SECRET, ACCESS_TOKEN_PUBLIC_KEY and ACCESS_TOKEN_JWKS",
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

    pub fn verify(&self, token: &str) -> Result<Principal, AccessTokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AccessTokenError::Invalid)?;
        let key = self
            .keys
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
    pub fn authenticate(&self, headers: &http::HeaderMap) -> Result<Principal, AccessTokenError> {
        self.verify(self.token_of(headers).ok_or(AccessTokenError::Missing)?)
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

    use jsonwebtoken::{EncodingKey, Header, jwk::Jwk};
    use serde_json::json;

    use super::*;

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
        AccessTokenVerifier::from_config(&env)
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

    #[test]
    fn hs256_tokens_carry_user_client_scopes_and_roles() {
        let verifier = verifier(&[("ACCESS_TOKEN_HS256_SECRET", SECRET)]).unwrap();
        let token = sign(
            Header::default(),
            &claims(json!({ "azp": "web-app", "scope": "read write:accounts", "roles": ["admin"] })),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        );
        let principal = verifier.verify(&token).unwrap();
        assert_eq!(principal.user_id.as_str(), "user-1");
        assert_eq!(principal.client_id.unwrap().as_str(), "web-app");
        assert_eq!(principal.scopes, ["read", "write:accounts"]);
        assert_eq!(principal.roles, ["admin"]);
    }

    #[test]
    fn issuer_audience_expiry_and_algorithm_are_checked() {
        let verifier = verifier(&[("ACCESS_TOKEN_HS256_SECRET", SECRET)]).unwrap();
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        let now = jsonwebtoken::get_current_timestamp() as i64;
        let check = |extra| verifier.verify(&sign(Header::default(), &claims(extra), &key));
        assert_eq!(check(json!({ "iss": "https://other.example.com" })), Err(AccessTokenError::Invalid));
        assert_eq!(check(json!({ "aud": "other" })), Err(AccessTokenError::Invalid));
        assert_eq!(check(json!({ "exp": now - 3600 })), Err(AccessTokenError::Expired));
        assert_eq!(check(json!({ "sub": "" })), Err(AccessTokenError::Invalid));
        // An RS256 token never verifies against an HS256 configuration.
        let rs = sign(
            Header::new(Algorithm::RS256),
            &claims(json!({})),
            &EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
        );
        assert_eq!(verifier.verify(&rs), Err(AccessTokenError::Invalid));
    }

    #[test]
    fn a_token_not_yet_valid_is_refused_beyond_the_leeway() {
        let verifier = verifier(&[("ACCESS_TOKEN_HS256_SECRET", SECRET)]).unwrap();
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        let now = jsonwebtoken::get_current_timestamp() as i64;
        let check = |extra| verifier.verify(&sign(Header::default(), &claims(extra), &key)).map(|p| p.user_id);
        assert_eq!(check(json!({ "nbf": now + 3600 })), Err(AccessTokenError::Invalid));
        assert_eq!(check(json!({ "nbf": now + CLOCK_LEEWAY_SECONDS as i64 + 60 })), Err(AccessTokenError::Invalid));
        // Within the leeway, or already valid, the token is good.
        assert!(check(json!({ "nbf": now + 10 })).is_ok());
        assert!(check(json!({ "nbf": now - 60 })).is_ok());
        assert!(check(json!({})).is_ok(), "nbf is optional");
    }

    #[test]
    fn rs256_and_es256_tokens_verify_with_a_public_key() {
        let rsa = verifier(&[("ACCESS_TOKEN_PUBLIC_KEY", RSA_PUBLIC), ("ACCESS_TOKEN_ALGORITHM", "RS256")]).unwrap();
        let token = sign(
            Header::new(Algorithm::RS256),
            &claims(json!({})),
            &EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
        );
        assert_eq!(rsa.verify(&token).unwrap().user_id.as_str(), "user-1");

        let ec = verifier(&[("ACCESS_TOKEN_PUBLIC_KEY", EC_PUBLIC), ("ACCESS_TOKEN_ALGORITHM", "ES256")]).unwrap();
        let token = sign(
            Header::new(Algorithm::ES256),
            &claims(json!({})),
            &EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap(),
        );
        assert_eq!(ec.verify(&token).unwrap().user_id.as_str(), "user-1");
        assert_eq!(rsa.verify(&token), Err(AccessTokenError::Invalid));
    }

    #[test]
    fn a_jwks_key_is_chosen_by_kid() {
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
        assert!(verifier.verify(&sign(header, &claims(json!({})), &ec_key)).is_ok());
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("unknown".into());
        assert_eq!(verifier.verify(&sign(header, &claims(json!({})), &rsa_key)), Err(AccessTokenError::Invalid));
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
}
