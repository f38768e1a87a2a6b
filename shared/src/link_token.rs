//! Confirmation links: a signed, expiring token bound to one user and one address.
//! New links carry a compact binary token (version 1, about half the length of a JWT, so the
//! URL fits a phone screen); JWTs mailed before it still verify.
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
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::{self, ConfigError, Source};
use crate::domain::{AddressTag, ClientId, Locale, UnixTime, User, UserId};

/// The path of the hosted confirm page that every link opens.
pub const CONFIRM_PAGE_PATH: &str = "/confirm-email";
const AUDIENCE: &str = "mailconfirm:confirm-email";

#[derive(Debug, Deserialize)]
struct LinkClaims {
    sub: String,
    /// Tag of the address the link was sent to.
    adr: String,
    /// Language of the mail, so the page can answer in it.
    #[serde(default)]
    lc: Option<String>,
    aud: Audience,
    exp: i64,
}

/// `aud` is one string or a list of them (RFC 7519 §4.1.3); we issue the string.
#[derive(Debug, Deserialize)]
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
#[derive(Debug, Deserialize)]
struct LinkHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

const HS256: &str = "HS256";

type HmacSha256 = Hmac<Sha256>;

/// A signing key and the id (`kid`) that lets a verifier find it after a key roll.
pub(crate) struct LinkKey {
    id: String,
    /// The compact form's key id: the first 4 bytes of SHA-256 over the secret.
    short_id: [u8; 4],
    mac: HmacSha256,
}

impl LinkKey {
    // HMAC's key setup cannot fail: it takes keys of every length.
    #[allow(clippy::expect_used)]
    pub(crate) fn from_secret(secret: &str) -> Self {
        let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        let id = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        let short_id = [digest[0], digest[1], digest[2], digest[3]];
        // HMAC takes a key of any length; the length rule is checked by the caller.
        let mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC accepts every key length");
        Self { id, short_id, mac }
    }

    /// A compact HS256 JWT of `claims`, its header naming this key.
    pub(crate) fn sign_jwt(&self, claims: &serde_json::Value) -> String {
        let header = serde_json::json!({ "alg": HS256, "typ": "JWT", "kid": self.id });
        let signing_input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let mut mac = self.mac.clone();
        mac.update(signing_input.as_bytes());
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    }

    fn compact_mac(&self, body: &[u8]) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(COMPACT_MAC_CONTEXT);
        mac.update(body);
        mac
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
    /// The client that created the user, when the link names it (legacy JWTs do not).
    pub client_id: Option<ClientId>,
    /// Where to send the person after confirming, sealed into the link when it was issued.
    pub redirect_to: Option<String>,
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
    #[error("the {field} does not fit in a confirmation link")]
    Unencodable { field: &'static str },
    #[error("no signing key is configured")]
    NoKey,
}

const COMPACT_VERSION: u8 = 0x01;
/// Domain separation: a compact MAC can never be mistaken for any other use of the key.
const COMPACT_MAC_CONTEXT: &[u8] = b"mailconfirm/link/v1\0";
const COMPACT_MAC_LEN: usize = 16;
/// The longest redirect target a link seals.
pub const MAX_REDIRECT_LEN: usize = 2_000;

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
        // Base64url has no '.', a JWT has two.
        if token.contains('.') { self.authenticate_jwt(token, now) } else { self.authenticate_compact(token, now) }
    }

    fn authenticate_compact(&self, token: &str, now: UnixTime) -> Result<AuthenticLink, LinkTokenError> {
        use LinkTokenError::Invalid;
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| Invalid)?;
        let body_len = bytes.len().checked_sub(COMPACT_MAC_LEN).ok_or(Invalid)?;
        let (body, tag) = bytes.split_at_checked(body_len).ok_or(Invalid)?;
        let mut reader = Reader(body);
        if reader.byte()? != COMPACT_VERSION {
            return Err(Invalid);
        }
        let key_id: [u8; 4] = reader.array()?;
        // Two keys may share a 4-byte id: try each that does.
        let signed = self
            .keys
            .iter()
            .filter(|key| key.short_id == key_id)
            .any(|key| key.compact_mac(body).verify_truncated_left(tag).is_ok());
        if !signed {
            return Err(Invalid);
        }
        let exp = u32::from_be_bytes(reader.array()?);
        let address = AddressTag::from_bytes(reader.array()?);
        let locale = reader.short_field()?;
        let user_id = reader.long_field()?;
        let client_id = reader.long_field()?;
        let redirect_to = reader.long_field()?;
        if !reader.0.is_empty() {
            return Err(Invalid);
        }
        let text = |bytes: &[u8]| std::str::from_utf8(bytes).map(str::to_owned).map_err(|_| Invalid);
        let optional = |bytes: &[u8]| if bytes.is_empty() { Ok(None) } else { text(bytes).map(Some) };
        let link = VerifiedLink {
            user_id: UserId::parse(&text(user_id)?).map_err(|_| Invalid)?,
            address,
            locale: optional(locale)?.and_then(|tag| Locale::parse(&tag).ok()),
            client_id: optional(client_id)?.map(|id| ClientId::parse(&id)).transpose().map_err(|_| Invalid)?,
            redirect_to: optional(redirect_to)?,
        };
        Ok(AuthenticLink { link, expired: i64::from(exp) < now.0 })
    }

    fn authenticate_jwt(&self, token: &str, now: UnixTime) -> Result<AuthenticLink, LinkTokenError> {
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
            client_id: None,
            redirect_to: None,
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

    /// A link for the user's current address, written in `locale`, that sends the person on to
    /// `redirect_to` (already checked against the allow-list) after confirming.
    pub fn issue(
        &self,
        user: &User,
        locale: &str,
        redirect_to: Option<&str>,
        now: UnixTime,
    ) -> Result<IssuedLink, TokenCreationError> {
        let expires_at = now.plus(self.lifetime);
        // The verifier is never built without its current key, which comes first.
        let key = self.verifier.keys.first().ok_or(TokenCreationError::NoKey)?;
        let unencodable = |field| TokenCreationError::Unencodable { field };
        let exp = u32::try_from(expires_at.0).map_err(|_| unencodable("expiry"))?;
        let address = user.email.tag().to_bytes().ok_or(unencodable("address tag"))?;
        if !locale.is_ascii() {
            return Err(unencodable("locale"));
        }
        let redirect_to = redirect_to.unwrap_or_default();
        if redirect_to.len() > MAX_REDIRECT_LEN {
            return Err(unencodable("redirect target"));
        }
        let mut body = vec![COMPACT_VERSION];
        body.extend_from_slice(&key.short_id);
        body.extend_from_slice(&exp.to_be_bytes());
        body.extend_from_slice(&address);
        put_short_field(&mut body, locale.as_bytes()).ok_or(unencodable("locale"))?;
        // A user or client id is up to 128 characters, up to 512 bytes of UTF-8: a u16 length.
        put_long_field(&mut body, user.id.as_str().as_bytes()).ok_or(unencodable("user id"))?;
        let client_id = user.client_id.as_ref().map(ClientId::as_str).unwrap_or_default();
        put_long_field(&mut body, client_id.as_bytes()).ok_or(unencodable("client id"))?;
        put_long_field(&mut body, redirect_to.as_bytes()).ok_or(unencodable("redirect target"))?;
        let tag = key.compact_mac(&body).finalize().into_bytes();
        body.extend(tag.iter().take(COMPACT_MAC_LEN));
        let token = URL_SAFE_NO_PAD.encode(body);
        Ok(IssuedLink { url: format!("{}{CONFIRM_PAGE_PATH}?token={token}", self.public_base_url), expires_at })
    }
}

/// A field of at most 255 bytes, after its u8 length.
fn put_short_field(body: &mut Vec<u8>, field: &[u8]) -> Option<()> {
    body.push(u8::try_from(field.len()).ok()?);
    body.extend_from_slice(field);
    Some(())
}

/// A field of at most 65535 bytes, after its u16 big-endian length.
fn put_long_field(body: &mut Vec<u8>, field: &[u8]) -> Option<()> {
    body.extend_from_slice(&u16::try_from(field.len()).ok()?.to_be_bytes());
    body.extend_from_slice(field);
    Some(())
}

/// Reads a compact token's body front to back; running out is `Invalid`, never a panic.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], LinkTokenError> {
        let (taken, rest) = self.0.split_at_checked(len).ok_or(LinkTokenError::Invalid)?;
        self.0 = rest;
        Ok(taken)
    }

    fn byte(&mut self) -> Result<u8, LinkTokenError> {
        let (first, rest) = self.0.split_first().ok_or(LinkTokenError::Invalid)?;
        self.0 = rest;
        Ok(*first)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], LinkTokenError> {
        self.take(N)?.try_into().map_err(|_| LinkTokenError::Invalid)
    }

    fn short_field(&mut self) -> Result<&'a [u8], LinkTokenError> {
        let len = self.byte()?;
        self.take(usize::from(len))
    }

    fn long_field(&mut self) -> Result<&'a [u8], LinkTokenError> {
        let len = u16::from_be_bytes(self.array()?);
        self.take(usize::from(len))
    }
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
    use crate::domain::{ClientId, EmailAddress};

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
        let link = issuer.issue(&user("Ada@example.org"), "fr", None, UnixTime::now()).unwrap();
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
        let expired = issuer.issue(&user("a@example.org"), "en", None, long_ago).unwrap();
        assert_eq!(issuer.verifier().verify(token_of(&expired.url).unwrap()), Err(LinkTokenError::Expired));

        let authentic = issuer.verifier().authenticate(token_of(&expired.url).unwrap(), UnixTime::now()).unwrap();
        assert!(authentic.expired, "an expired link still names its user, to ask for a new one");
        assert_eq!(authentic.link.user_id.as_str(), "user-7");

        let other = self::issuer(KEY_B, "", "");
        let forged = other.issue(&user("a@example.org"), "en", None, UnixTime::now()).unwrap();
        assert_eq!(issuer.verifier().verify(token_of(&forged.url).unwrap()), Err(LinkTokenError::Invalid));
        let forged = token_of(&forged.url).unwrap();
        assert_eq!(issuer.verifier().authenticate(forged, UnixTime::now()), Err(LinkTokenError::Invalid));
    }

    #[test]
    fn a_flipped_bit_anywhere_or_a_truncation_is_refused() {
        let issuer = issuer(KEY_A, "", "");
        let mut user = user("a@example.org");
        user.client_id = Some(ClientId::parse("web").unwrap());
        let link = issuer.issue(&user, "en", Some("https://app.example.com/x"), UnixTime::now()).unwrap();
        let bytes = URL_SAFE_NO_PAD.decode(token_of(&link.url).unwrap()).unwrap();
        for index in 0..bytes.len() {
            for bit in 0..8 {
                let mut flipped = bytes.clone();
                flipped[index] ^= 1 << bit;
                let token = URL_SAFE_NO_PAD.encode(&flipped);
                assert_eq!(issuer.verifier().verify(&token), Err(LinkTokenError::Invalid), "byte {index} bit {bit}");
            }
        }
        let token = token_of(&link.url).unwrap();
        for len in 1..token.len() {
            assert!(issuer.verifier().verify(&token[..len]).is_err(), "truncated to {len}");
            let bytes = URL_SAFE_NO_PAD.encode(&bytes[..len.min(bytes.len() - 1)]);
            assert_eq!(issuer.verifier().verify(&bytes), Err(LinkTokenError::Invalid));
        }
        assert_eq!(issuer.verifier().verify("not-a-token"), Err(LinkTokenError::Invalid));
        assert_eq!(issuer.verifier().verify("  "), Err(LinkTokenError::Missing));
    }

    #[test]
    fn a_link_seals_its_client_and_redirect_target() {
        let issuer = issuer(KEY_A, "", "");
        let mut user = user("a@example.org");
        user.client_id = Some(ClientId::parse("mobile-app").unwrap());
        let target = "myapp://confirmed?from=mail";
        let link = issuer.issue(&user, "de", Some(target), UnixTime::now()).unwrap();
        let verified = issuer.verifier().verify(token_of(&link.url).unwrap()).unwrap();
        assert_eq!(verified.client_id.unwrap().as_str(), "mobile-app");
        assert_eq!(verified.redirect_to.as_deref(), Some(target));
        assert_eq!(verified.locale.unwrap().as_str(), "de");
        let too_long = "x".repeat(MAX_REDIRECT_LEN + 1);
        assert!(issuer.issue(&user, "de", Some(&too_long), UnixTime::now()).is_err());
    }

    #[test]
    fn a_typical_link_is_at_most_165_characters() {
        let issuer = issuer(KEY_A, "", "");
        let id = "0b6f7c1e-3d5a-4c8e-9f2a-7e1d4b6c8a90";
        let user =
            User::pending(UserId::parse(id).unwrap(), EmailAddress::parse("a@example.org").unwrap(), UnixTime(0));
        let link = issuer.issue(&user, "en", None, UnixTime::now()).unwrap();
        let legacy = legacy_jwt(&issuer, id, &user.email.tag(), "en", UnixTime::now());
        let legacy_url = format!("https://auth.example.com{CONFIRM_PAGE_PATH}?token={legacy}");
        println!("link URL length: legacy JWT {}, compact {}", legacy_url.len(), link.url.len());
        assert!(link.url.len() <= 165, "{}", link.url.len());
        assert!(issuer.verifier().verify(&legacy).is_ok());
    }

    /// A link as the issuer signed it before the compact form (jsonwebtoken's header and the same claims).
    fn legacy_jwt(issuer: &LinkIssuer, sub: &str, tag: &AddressTag, lc: &str, now: UnixTime) -> String {
        use jsonwebtoken::{Algorithm, EncodingKey, Header};
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(issuer.verifier().keys[0].id.clone());
        let claims = serde_json::json!({
            "sub": sub, "adr": tag.as_str(), "lc": lc, "aud": AUDIENCE, "iat": now.0, "exp": now.0 + 86_400,
        });
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(KEY_A.as_bytes())).unwrap()
    }

    #[test]
    fn links_signed_before_a_key_roll_stay_valid_while_the_old_key_is_listed() {
        let before = issuer(KEY_A, "", "");
        let link = before.issue(&user("a@example.org"), "en", None, UnixTime::now()).unwrap();
        let token = token_of(&link.url).unwrap();
        assert!(issuer(KEY_B, KEY_A, "").verifier().verify(token).is_ok());
        assert_eq!(issuer(KEY_B, "", "").verifier().verify(token), Err(LinkTokenError::Invalid));
    }

    #[test]
    fn links_are_the_same_jwts_that_jsonwebtoken_signs_and_checks() {
        use jsonwebtoken::{Algorithm, EncodingKey, Header};

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

        // ...and so does one in the issuer's old form, which still verifies after a key roll.
        let old = legacy_jwt(&issuer, "user-7", &EmailAddress::parse("a@example.org").unwrap().tag(), "en", now);
        assert!(self::issuer(KEY_B, KEY_A, "").verifier().verify(&old).is_ok());
        assert_eq!(self::issuer(KEY_B, "", "").verifier().verify(&old), Err(LinkTokenError::Invalid));

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
