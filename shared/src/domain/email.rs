//! E-mail addresses, parsed once at the edge.

use std::fmt;

use base64::Engine as _;
use sha2::{Digest, Sha256};

/// An address that passed [`EmailAddress::parse`]: kept as typed (to send to) and
/// normalised (to look up), because people type the same address in many cases.
#[derive(Clone, PartialEq, Eq)]
pub struct EmailAddress {
    as_typed: String,
    normalized: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidEmailAddress {
    #[error("the address is empty")]
    Empty,
    #[error("the address is longer than 254 characters")]
    TooLong,
    #[error("the address must contain exactly one '@' with text on both sides")]
    MissingAt,
    #[error("the part before '@' is not a valid local part")]
    InvalidLocalPart,
    #[error("the part after '@' is not a valid domain name")]
    InvalidDomain,
}

impl EmailAddress {
    /// Accepts the addresses that mail servers deliver in practice: a dot-atom local part
    /// (RFC 5322, without quoted strings or comments) and a domain of DNS labels with a dot.
    pub fn parse(input: &str) -> Result<Self, InvalidEmailAddress> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(InvalidEmailAddress::Empty);
        }
        if trimmed.len() > 254 {
            return Err(InvalidEmailAddress::TooLong);
        }
        let (local, domain) = match trimmed.split_once('@') {
            Some((local, domain)) if !local.is_empty() && !domain.is_empty() && !domain.contains('@') => {
                (local, domain)
            }
            _ => return Err(InvalidEmailAddress::MissingAt),
        };
        if !is_valid_local_part(local) {
            return Err(InvalidEmailAddress::InvalidLocalPart);
        }
        if !is_valid_domain(domain) {
            return Err(InvalidEmailAddress::InvalidDomain);
        }
        Ok(Self { as_typed: trimmed.to_owned(), normalized: trimmed.to_lowercase() })
    }

    /// The address as the person typed it: the one mail is sent to.
    pub fn as_typed(&self) -> &str {
        &self.as_typed
    }

    /// The lower-cased form that identifies the mailbox for look-ups and uniqueness.
    pub fn normalized(&self) -> &str {
        &self.normalized
    }

    /// A digest of the normalised address that a confirmation link carries, so the link is
    /// bound to the mailbox it was sent to without putting the address in the URL.
    pub fn tag(&self) -> AddressTag {
        AddressTag::of_normalized(&self.normalized)
    }
}

// Addresses are personal data: Debug never prints them, so a stray `{:?}` cannot leak one.
impl fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EmailAddress(<redacted>)")
    }
}

fn is_valid_local_part(local: &str) -> bool {
    const SPECIALS: &str = "!#$%&'*+-/=?^_`{|}~.";
    local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local.chars().all(|c| c.is_alphanumeric() || SPECIALS.contains(c))
}

fn is_valid_domain(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    labels.len() >= 2
        && domain.len() <= 253
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
        && labels.last().is_some_and(|tld| tld.chars().all(char::is_alphabetic) || tld.starts_with("xn--"))
}

/// Base64url of the first 16 bytes of SHA-256 over a normalised address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressTag(String);

impl AddressTag {
    fn of_normalized(normalized: &str) -> Self {
        let digest: [u8; 32] = Sha256::digest(normalized.as_bytes()).into();
        let mut head = [0u8; 16];
        head.copy_from_slice(&digest[..16]);
        Self::from_bytes(head)
    }

    /// Wraps a tag read back from storage or from a verified link.
    pub fn from_stored(tag: String) -> Self {
        Self(tag)
    }

    /// The tag of the 16 digest bytes a compact link carries.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
    }

    /// The 16 digest bytes behind the tag; `None` for a stored text that is not a tag.
    pub fn to_bytes(&self) -> Option<[u8; 16]> {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&self.0).ok()?.try_into().ok()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_typed_form_and_lowercases_the_lookup_form() {
        let address = EmailAddress::parse("  Ada.Lovelace+News@Example.ORG ").unwrap();
        assert_eq!(address.as_typed(), "Ada.Lovelace+News@Example.ORG");
        assert_eq!(address.normalized(), "ada.lovelace+news@example.org");
    }

    #[test]
    fn the_same_mailbox_in_any_case_has_the_same_tag() {
        let a = EmailAddress::parse("ADA@example.org").unwrap();
        let b = EmailAddress::parse("ada@EXAMPLE.org").unwrap();
        let c = EmailAddress::parse("ada2@example.org").unwrap();
        assert_eq!(a.tag(), b.tag());
        assert_ne!(a.tag(), c.tag());
        assert_eq!(a.tag().as_str().len(), 22);
    }

    #[test]
    fn a_tag_is_its_16_bytes_and_back() {
        let tag = EmailAddress::parse("ada@example.org").unwrap().tag();
        let bytes = tag.to_bytes().unwrap();
        assert_eq!(AddressTag::from_bytes(bytes), tag);
        assert_eq!(AddressTag::from_stored("not a tag".to_owned()).to_bytes(), None);
    }

    #[test]
    fn rejects_what_cannot_be_delivered() {
        use InvalidEmailAddress::*;
        let cases = [
            ("", Empty),
            ("   ", Empty),
            ("no-at-sign", MissingAt),
            ("@example.org", MissingAt),
            ("ada@", MissingAt),
            ("a@b@example.org", MissingAt),
            ("ada lovelace@example.org", InvalidLocalPart),
            (".ada@example.org", InvalidLocalPart),
            ("ada..l@example.org", InvalidLocalPart),
            ("ada@localhost", InvalidDomain),
            ("ada@-example.org", InvalidDomain),
            ("ada@example..org", InvalidDomain),
            ("ada@example.123", InvalidDomain),
            ("ada@exa_mple.org", InvalidDomain),
        ];
        for (input, expected) in cases {
            assert_eq!(EmailAddress::parse(input), Err(expected), "{input:?}");
        }
        let too_long = format!("{}@example.org", "a".repeat(250));
        assert_eq!(EmailAddress::parse(&too_long), Err(TooLong));
    }

    #[test]
    fn accepts_internationalised_and_punycode_domains() {
        assert!(EmailAddress::parse("josé@bücher.de").is_ok());
        assert!(EmailAddress::parse("ops@xn--bcher-kva.xn--p1ai").is_ok());
    }

    #[test]
    fn debug_output_never_shows_the_address() {
        let address = EmailAddress::parse("secret@example.org").unwrap();
        assert!(!format!("{address:?}").contains("secret"));
    }
}
