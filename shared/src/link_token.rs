//! Confirmation links: a signed, expiring JWT bound to one user and one address.
//! Nothing about a link is stored, so a leaked table holds no usable secret.
//!
//! The JWT (HS256, compact form) is signed and checked here with `hmac` and `sha2` rather than
//! `jsonwebtoken`: a `jsonwebtoken::decode` links every algorithm it can dispatch to (RSA, EC,
//! Ed25519, about 230 KiB), and the functions that only handle links need none of them.

use secrecy::ExposeSecret;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{self, ConfigError, Source};
use crate::domain::{AddressTag, Locale, UnixTime, User, UserId};

/// The path of the hosted confirm page that every link opens.
pub const CONFIRM_PAGE_PATH: &str = "/confirm-email";
const AUDIENCE: &str = "mailconfirm:confirm-email";

#[derive(Debug, Serialize, Deserialize)]
struct LinkClaims {
    sub: String,
    /// Tag of the address the link was sent to.
    adr: String,
    /// Language of the mail, so the page can answer in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lc: Option<String>,
    aud: Audience,
    iat: i64,
    exp: i64,
}

/// `aud` is one string or a list of them (RFC 7519 §4.1.3); we issue the string.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, audience: &str) -> bool {
        match self {
            Audience::One(one) => one == audience,
            Audience::Many(many) => many.iter().any(|one| one == audience),
        }
    }
}

/// The JOSE header of a link: HS256 and the `kid` of the key that signed it.
#[derive(Debug, Serialize, Deserialize)]
struct LinkHeader {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
}

const HS256: &str = "HS256";

type HmacSha256 = Hmac<Sha256>;

/// A signing key and the id (`kid`) that lets a verifier find it after a key roll.
struct LinkKey {
    id: String,
    mac: HmacSha256,
}

impl LinkKey {
    // HMAC's key setup cannot fail: it takes keys of every length.
    #[allow(clippy::expect_used)]
    fn from_secret(secret: &str) -> Self {
        let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        let id = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        // HMAC takes a key of any length; the length rule is checked by the caller.
        let mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC accepts every key length");
        Self { id, mac }
    }

    /// The signature of `header.claims` (both base64url), as JWS computes it.
    fn sign(&self, signing_input: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(signing_input.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// Compares in constant time.
    fn verifies(&self, signing_input: &str, signature: &[u8]) -> bool {
        let mut mac = self.mac.clone();
        mac.update(signing_input.as_bytes());
        mac.verify_slice(signature).is_ok()
    }
}

/// Verifies links: the current key and any previous keys still accepted during a roll.
pub struct LinkVerifier {
    keys: Vec<LinkKey>,
}

/// Issues links with the current key, and knows where they point.
pub struct LinkIssuer {
    verifier: LinkVerifier,
    public_base_url: String,
    pub lifetime: Duration,
}

/// A link just issued.
pub struct IssuedLink {
    pub url: String,
    pub expires_at: UnixTime,
}

/// What a valid link says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedLink {
    pub user_id: UserId,
    pub address: AddressTag,
    pub locale: Option<Locale>,
}

/// A link we signed, fresh or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticLink {
    pub link: VerifiedLink,
    pub expired: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkTokenError {
    #[error("the confirmation token is missing")]
    Missing,
    #[error("the confirmation token is invalid")]
    Invalid,
    #[error("the confirmation token has expired")]
    Expired,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenCreationError {
    #[error("could not sign the confirmation token")]
    Encoding(#[from] serde_json::Error),
    #[error("no signing key is configured")]
    NoKey,
}

const MIN_SECRET_LEN: usize = 32;

impl LinkVerifier {
    /// `CONFIRMATION_SIGNING_KEY` (current) and `CONFIRMATION_PREVIOUS_SIGNING_KEYS`
    /// (comma-separated, still accepted).
    pub fn from_config(source: &dyn Source) -> Result<Self, ConfigError> {
        let current = config::secret(source, "CONFIRMATION_SIGNING_KEY").ok_or(ConfigError::Missing {
            name: "CONFIRMATION_SIGNING_KEY",
            meaning: "a random secret of at least 32 characters that signs confirmation links",
        })?;
        let previous = config::secret(source, "CONFIRMATION_PREVIOUS_SIGNING_KEYS");
        let (current, previous) =
            (current.expose_secret(), previous.as_ref().map(ExposeSecret::expose_secret).unwrap_or_default());
        if current.len() < MIN_SECRET_LEN {
            return Err(ConfigError::invalid("CONFIRMATION_SIGNING_KEY", "must be at least 32 characters"));
        }
        let previous: Vec<&str> = previous.split(',').map(str::trim).filter(|k| !k.is_empty()).collect();
        if previous.iter().any(|k| k.len() < MIN_SECRET_LEN) {
            return Err(ConfigError::invalid(
                "CONFIRMATION_PREVIOUS_SIGNING_KEYS",
                "each key must be at least 32 characters",
            ));
        }
        let keys = std::iter::once(current).chain(previous).map(LinkKey::from_secret).collect();
        Ok(Self { keys })
    }

    pub fn verify(&self, token: &str) -> Result<VerifiedLink, LinkTokenError> {
        match self.authenticate(token, UnixTime::now())? {
            AuthenticLink { expired: true, .. } => Err(LinkTokenError::Expired),
            AuthenticLink { link, .. } => Ok(link),
        }
    }

    /// Checks that we signed the link, but not that it is still fresh: an expired link still
    /// proves which user it was mailed to, which is enough to ask for a new one.
    pub fn authenticate(&self, token: &str, now: UnixTime) -> Result<AuthenticLink, LinkTokenError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(LinkTokenError::Missing);
        }
        let (signing_input, signature) = token.rsplit_once('.').ok_or(LinkTokenError::Invalid)?;
        let (header, claims) = signing_input.split_once('.').ok_or(LinkTokenError::Invalid)?;
        let header: LinkHeader = decode_segment(header)?;
        if header.alg != HS256 {
            return Err(LinkTokenError::Invalid);
        }
        let key = self
            .keys
            .iter()
            .find(|key| header.kid.as_deref() == Some(key.id.as_str()))
            .ok_or(LinkTokenError::Invalid)?;
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| LinkTokenError::Invalid)?;
        if !key.verifies(signing_input, &signature) {
            return Err(LinkTokenError::Invalid);
        }
        // `sub`, `aud` and `exp` are required: the claims do not parse without them.
        let claims: LinkClaims = decode_segment(claims)?;
        if !claims.aud.contains(AUDIENCE) {
            return Err(LinkTokenError::Invalid);
        }
        let link = VerifiedLink {
            user_id: UserId::parse(&claims.sub).map_err(|_| LinkTokenError::Invalid)?,
            address: AddressTag::from_stored(claims.adr),
            locale: claims.lc.as_deref().and_then(|tag| Locale::parse(tag).ok()),
        };
        // Valid up to and including `exp` (the rule of jsonwebtoken, which signed links before).
        Ok(AuthenticLink { link, expired: claims.exp < now.0 })
    }
}

impl LinkIssuer {
    /// The verifier's keys plus `PUBLIC_BASE_URL` and `CONFIRMATION_LINK_TTL_SECONDS` (default 24 h).
    pub fn from_config(source: &dyn Source) -> Result<Self, ConfigError> {
        Ok(Self {
            verifier: LinkVerifier::from_config(source)?,
            public_base_url: config::public_base_url(source)?,
            lifetime: config::seconds(source, "CONFIRMATION_LINK_TTL_SECONDS", 24 * 60 * 60)?,
        })
    }

    /// A link issued here, pointing at another base (an app's own confirm-page domain).
    pub fn rebased(&self, url: &str, base: Option<&str>) -> String {
        match (base, url.strip_prefix(self.public_base_url.as_str())) {
            (Some(base), Some(path)) => format!("{base}{path}"),
            _ => url.to_owned(),
        }
    }

    pub fn verifier(&self) -> &LinkVerifier {
        &self.verifier
    }

    /// A link for the user's current address, written in `locale`.
    pub fn issue(&self, user: &User, locale: &str, now: UnixTime) -> Result<IssuedLink, TokenCreationError> {
        let expires_at = now.plus(self.lifetime);
        let claims = LinkClaims {
            sub: user.id.as_str().to_owned(),
            adr: user.email.tag().as_str().to_owned(),
            lc: Some(locale.to_owned()),
            aud: Audience::One(AUDIENCE.to_owned()),
            iat: now.0,
            exp: expires_at.0,
        };
        // The verifier is never built without its current key, which comes first.
        let key = self.verifier.keys.first().ok_or(TokenCreationError::NoKey)?;
        let header = LinkHeader { typ: Some("JWT".to_owned()), alg: HS256.to_owned(), kid: Some(key.id.clone()) };
        let signing_input = format!("{}.{}", encode_segment(&header)?, encode_segment(&claims)?);
        let signature = key.sign(&signing_input);
        let token = format!("{signing_input}.{signature}");
        Ok(IssuedLink { url: format!("{}{CONFIRM_PAGE_PATH}?token={token}", self.public_base_url), expires_at })
    }
}

fn encode_segment(value: &impl Serialize) -> Result<String, TokenCreationError> {
    let json = serde_json::to_vec(value).map_err(TokenCreationError::Encoding)?;
    Ok(URL_SAFE_NO_PAD.encode(json))
}

fn decode_segment<T: serde::de::DeserializeOwned>(segment: &str) -> Result<T, LinkTokenError> {
    let json = URL_SAFE_NO_PAD.decode(segment).map_err(|_| LinkTokenError::Invalid)?;
    serde_json::from_slice(&json).map_err(|_| LinkTokenError::Invalid)
}

/// The token in a link URL issued by [`LinkIssuer::issue`].
pub fn token_of(url: &str) -> Option<&str> {
    url.split_once("?token=").map(|(_, token)| token)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::domain::EmailAddress;

    const KEY_A: &str = "key-a-0123456789abcdef0123456789abcdef";
    const KEY_B: &str = "key-b-0123456789abcdef0123456789abcdef";

    fn issuer(current: &str, previous: &str, ttl: &str) -> LinkIssuer {
        let env: HashMap<String, String> = [
            ("CONFIRMATION_SIGNING_KEY", current),
            ("CONFIRMATION_PREVIOUS_SIGNING_KEYS", previous),
            ("PUBLIC_BASE_URL", "https://auth.example.com/"),
            ("CONFIRMATION_LINK_TTL_SECONDS", ttl),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        LinkIssuer::from_config(&env).unwrap()
    }

    fn user(email: &str) -> User {
        User::pending(UserId::parse("user-7").unwrap(), EmailAddress::parse(email).unwrap(), UnixTime(0))
    }

    #[test]
    fn a_link_names_its_user_address_and_language() {
        let issuer = issuer(KEY_A, "", "");
        let link = issuer.issue(&user("Ada@example.org"), "fr", UnixTime::now()).unwrap();
        assert!(link.url.starts_with("https://auth.example.com/confirm-email?token="));
        assert!(!link.url.to_lowercase().contains("ada"), "the address must not appear in the URL");
        let verified = issuer.verifier().verify(token_of(&link.url).unwrap()).unwrap();
        assert_eq!(verified.user_id.as_str(), "user-7");
        assert_eq!(verified.address, EmailAddress::parse("ada@EXAMPLE.org").unwrap().tag());
        assert_eq!(verified.locale.unwrap().as_str(), "fr");
    }

    #[test]
    fn an_expired_link_is_told_apart_from_a_forged_one() {
        let issuer = issuer(KEY_A, "", "60");
        let long_ago = UnixTime(UnixTime::now().0 - 3_600);
        let expired = issuer.issue(&user("a@example.org"), "en", long_ago).unwrap();
        assert_eq!(issuer.verifier().verify(token_of(&expired.url).unwrap()), Err(LinkTokenError::Expired));

        let authentic = issuer.verifier().authenticate(token_of(&expired.url).unwrap(), UnixTime::now()).unwrap();
        assert!(authentic.expired, "an expired link still names its user, to ask for a new one");
        assert_eq!(authentic.link.user_id.as_str(), "user-7");

        let other = self::issuer(KEY_B, "", "");
        let forged = other.issue(&user("a@example.org"), "en", UnixTime::now()).unwrap();
        assert_eq!(issuer.verifier().verify(token_of(&forged.url).unwrap()), Err(LinkTokenError::Invalid));
        let forged = token_of(&forged.url).unwrap();
        assert_eq!(issuer.verifier().authenticate(forged, UnixTime::now()), Err(LinkTokenError::Invalid));
    }

    #[test]
    fn a_tampered_or_empty_token_is_refused() {
        let issuer = issuer(KEY_A, "", "");
        let link = issuer.issue(&user("a@example.org"), "en", UnixTime::now()).unwrap();
        let token = token_of(&link.url).unwrap();
        let (head, sig) = token.rsplit_once('.').unwrap();
        let tampered = format!("{head}.{}", sig.chars().rev().collect::<String>());
        assert_eq!(issuer.verifier().verify(&tampered), Err(LinkTokenError::Invalid));
        assert_eq!(issuer.verifier().verify("not-a-jwt"), Err(LinkTokenError::Invalid));
        assert_eq!(issuer.verifier().verify("  "), Err(LinkTokenError::Missing));
    }

    #[test]
    fn links_signed_before_a_key_roll_stay_valid_while_the_old_key_is_listed() {
        let before = issuer(KEY_A, "", "");
        let link = before.issue(&user("a@example.org"), "en", UnixTime::now()).unwrap();
        let token = token_of(&link.url).unwrap();
        assert!(issuer(KEY_B, KEY_A, "").verifier().verify(token).is_ok());
        assert_eq!(issuer(KEY_B, "", "").verifier().verify(token), Err(LinkTokenError::Invalid));
    }

    #[test]
    fn links_are_the_same_jwts_that_jsonwebtoken_signs_and_checks() {
        use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};

        // A link mailed before the signer moved to `hmac` still opens...
        let issuer = issuer(KEY_A, "", "");
        let now = UnixTime::now();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(issuer.verifier().keys[0].id.clone());
        let claims = serde_json::json!({
            "sub": "user-7", "adr": "tag", "lc": "de", "aud": [AUDIENCE], "iat": now.0, "exp": now.0 + 60,
        });
        let old = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(KEY_A.as_bytes())).unwrap();
        let verified = issuer.verifier().verify(&old).unwrap();
        assert_eq!((verified.user_id.as_str(), verified.locale.unwrap().as_str()), ("user-7", "de"));

        // ...and a new link is a JWT any HS256 library accepts.
        let link = issuer.issue(&user("a@example.org"), "en", now).unwrap();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[AUDIENCE]);
        let decoded = jsonwebtoken::decode::<serde_json::Value>(
            token_of(&link.url).unwrap(),
            &DecodingKey::from_secret(KEY_A.as_bytes()),
            &validation,
        )
        .unwrap();
        assert_eq!(decoded.claims["sub"], "user-7");
        assert_eq!(decoded.header.kid.as_deref(), Some(issuer.verifier().keys[0].id.as_str()));

        // A link for another audience, or signed with another algorithm, is refused.
        let other =
            serde_json::json!({ "sub": "user-7", "adr": "tag", "aud": "other", "iat": now.0, "exp": now.0 + 60 });
        let other = jsonwebtoken::encode(&header, &other, &EncodingKey::from_secret(KEY_A.as_bytes())).unwrap();
        assert_eq!(issuer.verifier().verify(&other), Err(LinkTokenError::Invalid));
        header.alg = Algorithm::HS512;
        let hs512 = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(KEY_A.as_bytes())).unwrap();
        assert_eq!(issuer.verifier().verify(&hs512), Err(LinkTokenError::Invalid));
    }

    #[test]
    fn short_signing_keys_are_refused_at_start_up() {
        let env: HashMap<String, String> =
            [("CONFIRMATION_SIGNING_KEY".to_owned(), "short".to_owned())].into_iter().collect();
        let err = LinkVerifier::from_config(&env).err().unwrap().to_string();
        assert!(err.contains("CONFIRMATION_SIGNING_KEY"), "{err}");
    }
}
