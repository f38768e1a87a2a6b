//! The signed result the app receives after a confirmation: a standard HS256 JWT, so the app
//! checks it with any JWT library.

use secrecy::ExposeSecret;

use crate::config::{self, ConfigError, Source};
use crate::domain::{ClientId, UnixTime, UserId};
use crate::link_token::LinkKey;

pub const CONFIRMED_AUDIENCE: &str = "mailconfirm:confirmed";
/// Long enough for a redirect and the app's check, short enough that a leaked URL soon dies.
const RESULT_LIFETIME_SECONDS: i64 = 300;
const MIN_SECRET_LEN: usize = 32;

/// Signs "this user confirmed" for the app.
pub struct ResultSigner {
    key: LinkKey,
}

impl ResultSigner {
    /// `CONFIRMED_RESULT_SIGNING_KEY`, else `CONFIRMATION_SIGNING_KEY`: the fallback leaves one
    /// secret fewer to deploy; set a separate key to give the app a secret that cannot mint links.
    pub fn from_config(source: &dyn Source) -> Result<Self, ConfigError> {
        let (name, secret) = match config::secret(source, "CONFIRMED_RESULT_SIGNING_KEY") {
            Some(secret) => ("CONFIRMED_RESULT_SIGNING_KEY", secret),
            None => (
                "CONFIRMATION_SIGNING_KEY",
                config::secret(source, "CONFIRMATION_SIGNING_KEY").ok_or(ConfigError::Missing {
                    name: "CONFIRMED_RESULT_SIGNING_KEY",
                    meaning: "a secret of at least 32 characters that signs confirmation results \
                              (or CONFIRMATION_SIGNING_KEY)",
                })?,
            ),
        };
        if secret.expose_secret().len() < MIN_SECRET_LEN {
            return Err(ConfigError::invalid(name, "must be at least 32 characters"));
        }
        Ok(Self { key: LinkKey::from_secret(secret.expose_secret()) })
    }

    /// A JWT valid for five minutes that says `user_id` (of `client_id`, when known) confirmed.
    pub fn sign_confirmed(&self, user_id: &UserId, client_id: Option<&ClientId>, now: UnixTime) -> String {
        let mut claims = serde_json::json!({
            "status": "confirmed",
            "sub": user_id.as_str(),
            "aud": CONFIRMED_AUDIENCE,
            "iat": now.0,
            "exp": now.0.saturating_add(RESULT_LIFETIME_SECONDS),
        });
        if let (Some(client_id), Some(map)) = (client_id, claims.as_object_mut()) {
            map.insert("client_id".to_owned(), client_id.as_str().into());
        }
        self.key.sign_jwt(&claims)
    }
}

/// `target` with `result=<result>` in its query, before any fragment. Any `result` the target
/// already carries is dropped, so the app reads only ours. A target that is not an absolute URL
/// (the allow-list admits none) comes back unchanged.
pub fn with_result(target: &str, result: &str) -> String {
    let Ok(mut url) = url::Url::parse(target) else {
        return target.to_owned();
    };
    if url.query_pairs().any(|(name, _)| name == "result") {
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(name, _)| name != "result")
            .map(|(n, v)| (n.into_owned(), v.into_owned()))
            .collect();
        url.query_pairs_mut().clear().extend_pairs(kept);
    }
    url.query_pairs_mut().append_pair("result", result);
    url.into()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use jsonwebtoken::{Algorithm, DecodingKey, Validation};

    use super::*;

    const LINK_KEY: &str = "link-key-0123456789abcdef0123456789abcdef";
    const RESULT_KEY: &str = "result-key-0123456789abcdef0123456789abcdef";

    fn signer(env: &[(&str, &str)]) -> Result<ResultSigner, ConfigError> {
        let env: HashMap<String, String> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        ResultSigner::from_config(&env)
    }

    fn decode(token: &str, key: &str) -> jsonwebtoken::errors::Result<serde_json::Value> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[CONFIRMED_AUDIENCE]);
        jsonwebtoken::decode::<serde_json::Value>(token, &DecodingKey::from_secret(key.as_bytes()), &validation)
            .map(|data| data.claims)
    }

    #[test]
    fn any_jwt_library_reads_the_result_with_the_key() {
        let signer = signer(&[("CONFIRMATION_SIGNING_KEY", LINK_KEY), ("CONFIRMED_RESULT_SIGNING_KEY", RESULT_KEY)]);
        let now = UnixTime::now();
        let client = ClientId::parse("web").unwrap();
        let token = signer.unwrap().sign_confirmed(&UserId::parse("user-7").unwrap(), Some(&client), now);
        let claims = decode(&token, RESULT_KEY).unwrap();
        assert_eq!(claims["status"], "confirmed");
        assert_eq!(claims["sub"], "user-7");
        assert_eq!(claims["client_id"], "web");
        assert_eq!(claims["exp"], now.0 + 300);
        assert!(decode(&token, LINK_KEY).is_err(), "another key refuses it");
    }

    #[test]
    fn without_its_own_key_the_result_is_signed_with_the_link_key() {
        let fallback = signer(&[("CONFIRMATION_SIGNING_KEY", LINK_KEY)]).unwrap();
        let token = fallback.sign_confirmed(&UserId::parse("user-7").unwrap(), None, UnixTime::now());
        let claims = decode(&token, LINK_KEY).unwrap();
        assert!(claims.get("client_id").is_none());
        assert!(signer(&[("CONFIRMED_RESULT_SIGNING_KEY", "short")]).is_err());
        assert!(signer(&[]).is_err());
    }

    #[test]
    fn the_result_joins_the_targets_query_before_its_fragment() {
        assert_eq!(
            with_result("https://app.example.com/welcome?x=1", "a.b.c"),
            "https://app.example.com/welcome?x=1&result=a.b.c"
        );
        assert_eq!(with_result("myapp://confirmed", "a.b.c"), "myapp://confirmed?result=a.b.c");
        assert_eq!(
            with_result("https://app.example.com/w?x=1#done", "a.b.c"),
            "https://app.example.com/w?x=1&result=a.b.c#done"
        );
        assert_eq!(
            with_result("https://app.example.com/w?result=forged&x=1", "a.b.c"),
            "https://app.example.com/w?x=1&result=a.b.c"
        );
    }
}
