//! Users awaiting or past confirmation, and the decisions taken on them.

use std::fmt;

use serde::Deserialize;

use super::{AddressTag, EmailAddress, InvalidEmailAddress, Locale, UnixTime};

/// The sign-up service's id for a user: any non-blank text of at most 128 characters
/// without control characters, kept as given.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a user id is 1 to 128 characters without control characters")]
pub struct InvalidUserId;

impl UserId {
    pub fn parse(input: &str) -> Result<Self, InvalidUserId> {
        let valid = !input.trim().is_empty() && input.chars().count() <= 128 && !input.chars().any(char::is_control);
        if valid { Ok(Self(input.to_owned())) } else { Err(InvalidUserId) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The OAuth client (application) that created a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a client id is 1 to 128 printable characters")]
pub struct InvalidClientId;

impl ClientId {
    pub fn parse(input: &str) -> Result<Self, InvalidClientId> {
        let valid = !input.trim().is_empty() && input.chars().count() <= 128 && !input.chars().any(char::is_control);
        if valid { Ok(Self(input.to_owned())) } else { Err(InvalidClientId) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserStatus {
    EmailConfirmationPending,
    Enabled,
}

impl UserStatus {
    /// The names Backendless uses, which every contract here shows.
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::EmailConfirmationPending => "EMAIL_CONFIRMATION_PENDING",
            UserStatus::Enabled => "ENABLED",
        }
    }

    pub fn parse(stored: &str) -> Option<Self> {
        match stored {
            "EMAIL_CONFIRMATION_PENDING" => Some(UserStatus::EmailConfirmationPending),
            "ENABLED" => Some(UserStatus::Enabled),
            _ => None,
        }
    }
}

/// How an address came to be confirmed (`EmailConfirmed`'s `method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfirmMethod {
    /// The Confirm button of the page the mail's link opens.
    Link,
    /// The app posted the link's token (Singularity's verify route).
    VerifyApi,
    /// The app's backend confirmed the user by hand.
    Admin,
    /// The app posted the one-time code from the mail for its signed-in user.
    Code,
}

impl ConfirmMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            ConfirmMethod::Link => "link",
            ConfirmMethod::VerifyApi => "verify_api",
            ConfirmMethod::Admin => "admin",
            ConfirmMethod::Code => "code",
        }
    }

    pub fn parse(stored: &str) -> Option<Self> {
        [ConfirmMethod::Link, ConfirmMethod::VerifyApi, ConfirmMethod::Admin, ConfirmMethod::Code]
            .into_iter()
            .find(|m| m.as_str() == stored)
    }
}

/// How and from where an address was confirmed, kept on the user for audit (never logged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfirmedBy {
    pub method: ConfirmMethod,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
}

impl ConfirmedBy {
    /// The longest user agent kept; the rest says nothing an audit needs.
    pub const MAX_USER_AGENT_CHARS: usize = 256;

    pub fn new(method: ConfirmMethod, source_ip: Option<String>, user_agent: Option<&str>) -> Self {
        let user_agent = user_agent.map(|agent| agent.chars().take(Self::MAX_USER_AGENT_CHARS).collect());
        Self { method, source_ip, user_agent }
    }
}

/// How a request names a user: by address (Backendless's default identity) or by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Email(EmailAddress),
    UserId(UserId),
}

/// Which attribute identifies users in requests that name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityAttribute {
    Email,
    UserId,
}

impl IdentityAttribute {
    pub fn parse(&self, value: &str) -> Option<Identity> {
        match self {
            IdentityAttribute::Email => EmailAddress::parse(value).ok().map(Identity::Email),
            IdentityAttribute::UserId => UserId::parse(value).ok().map(Identity::UserId),
        }
    }
}

/// A user as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub email: EmailAddress,
    pub status: UserStatus,
    pub locale: Option<Locale>,
    pub client_id: Option<ClientId>,
    pub created_at: UnixTime,
    pub confirmed_at: Option<UnixTime>,
    /// End of the cooldown started by the last confirmation mail; present once any mail went out.
    pub cooldown_until: Option<UnixTime>,
    /// When the mail service last accepted a confirmation mail for this user.
    pub last_mail_sent_at: Option<UnixTime>,
    /// Whether mail to the current address arrives, as SES's feedback last said.
    pub delivery: DeliveryState,
}

/// What SES's feedback says of a user's current address: a hard bounce or a complaint stops
/// every confirmation mail to it until the address changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeliveryState {
    #[default]
    Ok,
    Bounced,
    Complained,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Ok => "ok",
            DeliveryState::Bounced => "bounced",
            DeliveryState::Complained => "complained",
        }
    }

    pub fn parse(stored: &str) -> Option<Self> {
        [DeliveryState::Ok, DeliveryState::Bounced, DeliveryState::Complained]
            .into_iter()
            .find(|d| d.as_str() == stored)
    }
}

impl User {
    /// A user who has just signed up: pending, with no language or client, nothing sent.
    pub fn pending(id: UserId, email: EmailAddress, created_at: UnixTime) -> Self {
        Self {
            id,
            email,
            status: UserStatus::EmailConfirmationPending,
            locale: None,
            client_id: None,
            created_at,
            confirmed_at: None,
            cooldown_until: None,
            last_mail_sent_at: None,
            delivery: DeliveryState::Ok,
        }
    }
}

/// What a send requires of the user besides being pending and out of cooldown.
#[derive(Debug, Clone, Copy, Default)]
pub struct SendRequirements<'a> {
    /// The user must have been created by this OAuth client (Mastodon).
    pub client: Option<&'a ClientId>,
    /// The request names the address to send to; it must be the user's pending one (10npay).
    pub address: Option<&'a EmailAddress>,
    /// A queue command's idempotency key: the send is refused if this command's mail was
    /// already accepted. Judged by the store's condition alone ([`SendRefusal::decide`] cannot
    /// see it), so its refusal reads as a spent cooldown.
    pub command: Option<&'a str>,
}

/// Why a conditional send was refused, read from the item as it was when the condition failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendRefusal {
    UserNotFound,
    /// The user was created by another client than the one asking.
    ClientMismatch,
    AlreadyConfirmed,
    /// The request named an address that is not the user's.
    AddressMismatch,
    /// SES reported a hard bounce or a complaint for the user's current address.
    Undeliverable,
    CooldownActive {
        remaining_seconds: u64,
    },
}

impl SendRefusal {
    /// The rule "may we send?": `Ok` when `user` may be mailed now. Checked in the order the
    /// contracts report refusals: ownership, then state, then deliverability, then the cooldown. The store's
    /// conditional write encodes the same rule; a test holds the two to each other.
    pub fn decide(user: Option<&User>, requirements: &SendRequirements, now: UnixTime) -> Result<(), Self> {
        let Some(user) = user else { return Err(SendRefusal::UserNotFound) };
        if requirements.client.is_some() && user.client_id.as_ref() != requirements.client {
            return Err(SendRefusal::ClientMismatch);
        }
        if user.status == UserStatus::Enabled {
            return Err(SendRefusal::AlreadyConfirmed);
        }
        if requirements.address.is_some_and(|address| address.normalized() != user.email.normalized()) {
            return Err(SendRefusal::AddressMismatch);
        }
        if user.delivery != DeliveryState::Ok {
            return Err(SendRefusal::Undeliverable);
        }
        match user.cooldown_until.map_or(0, |until| now.seconds_until(until)) {
            0 => Ok(()),
            remaining_seconds => Err(SendRefusal::CooldownActive { remaining_seconds }),
        }
    }

    /// Why a conditional send was refused, from the user the condition saw.
    pub fn explain(user: Option<&User>, requirements: &SendRequirements, now: UnixTime) -> Self {
        // At least one second: the write saw a live cooldown even if the clock moved on since.
        Self::decide(user, requirements, now).err().unwrap_or(SendRefusal::CooldownActive { remaining_seconds: 1 })
    }
}

/// Why a conditional confirmation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfirmRefusal {
    UserNotFound,
    AlreadyConfirmed,
    /// The link was sent to an address the user no longer has.
    AddressChanged,
}

impl ConfirmRefusal {
    pub fn explain(user: Option<&User>, link_address: &AddressTag) -> Self {
        match user {
            None => ConfirmRefusal::UserNotFound,
            Some(user) if user.email.tag() != *link_address => ConfirmRefusal::AddressChanged,
            Some(_) => ConfirmRefusal::AlreadyConfirmed,
        }
    }
}

/// A sign-up event as the sign-up service emits it.
#[derive(Debug, Deserialize)]
pub struct SignUpEvent {
    pub user_id: Option<serde_json::Value>,
    pub email: Option<String>,
    pub locale: Option<String>,
    pub client_id: Option<String>,
    /// Where the person goes after confirming, sealed into the mail's link when the client's
    /// allow-list has it.
    pub redirect_to: Option<String>,
}

/// A sign-up that passed parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignUp {
    pub user_id: UserId,
    pub email: EmailAddress,
    pub locale: Option<Locale>,
    pub client_id: Option<ClientId>,
    pub redirect_to: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSignUp {
    #[error("user_id is missing")]
    MissingUserId,
    #[error("user_id is invalid: {0}")]
    UserId(#[from] InvalidUserId),
    #[error("email is missing")]
    MissingEmail,
    #[error("email is invalid: {0}")]
    Email(#[from] InvalidEmailAddress),
    #[error("locale is invalid")]
    Locale,
    #[error("client_id is invalid: {0}")]
    ClientId(#[from] InvalidClientId),
    #[error("redirect_to is not an absolute URL of at most 2,000 characters")]
    RedirectTo,
}

impl TryFrom<SignUpEvent> for SignUp {
    type Error = InvalidSignUp;

    fn try_from(event: SignUpEvent) -> Result<Self, Self::Error> {
        let user_id = user_id_field(event.user_id.ok_or(InvalidSignUp::MissingUserId)?)?;
        let email = EmailAddress::parse(&event.email.ok_or(InvalidSignUp::MissingEmail)?)?;
        let locale = locale_field(event.locale)?;
        let client_id = event.client_id.map(|id| ClientId::parse(&id)).transpose()?;
        let redirect_to = match event.redirect_to.map(|target| target.trim().to_owned()) {
            None => None,
            Some(target) if target.is_empty() => None,
            Some(target) if target.len() <= crate::redirect::MAX_TARGET_LENGTH && url::Url::parse(&target).is_ok() => {
                Some(target)
            }
            Some(_) => return Err(InvalidSignUp::RedirectTo),
        };
        Ok(SignUp { user_id, email, locale, client_id, redirect_to })
    }
}

/// An event's `user_id`: sign-up services use numeric ids as often as string ids; both are kept as text.
pub fn user_id_field(value: serde_json::Value) -> Result<UserId, InvalidSignUp> {
    match value {
        serde_json::Value::String(id) => Ok(UserId::parse(&id)?),
        serde_json::Value::Number(id) => Ok(UserId::parse(&id.to_string())?),
        _ => Err(InvalidSignUp::UserId(InvalidUserId)),
    }
}

/// An event's optional `locale`; an empty one is none.
pub fn locale_field(tag: Option<String>) -> Result<Option<Locale>, InvalidSignUp> {
    tag.filter(|tag| !tag.trim().is_empty())
        .map(|tag| Locale::parse(&tag).map_err(|_| InvalidSignUp::Locale))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(status: UserStatus, cooldown_until: Option<i64>) -> User {
        User {
            id: UserId::parse("u-1").unwrap(),
            email: EmailAddress::parse("ada@example.org").unwrap(),
            status,
            locale: None,
            client_id: None,
            created_at: UnixTime(0),
            confirmed_at: None,
            cooldown_until: cooldown_until.map(UnixTime),
            last_mail_sent_at: None,
            delivery: DeliveryState::Ok,
        }
    }

    #[test]
    fn a_refused_send_is_explained_by_the_item_it_saw() {
        let now = UnixTime(1_000);
        let none = SendRequirements::default();
        assert_eq!(SendRefusal::explain(None, &none, now), SendRefusal::UserNotFound);
        let confirmed = user(UserStatus::Enabled, None);
        assert_eq!(SendRefusal::explain(Some(&confirmed), &none, now), SendRefusal::AlreadyConfirmed);
        let cooling = user(UserStatus::EmailConfirmationPending, Some(1_045));
        assert_eq!(
            SendRefusal::explain(Some(&cooling), &none, now),
            SendRefusal::CooldownActive { remaining_seconds: 45 }
        );
    }

    #[test]
    fn ownership_is_reported_before_state_and_the_address_before_the_cooldown() {
        let now = UnixTime(1_000);
        let web = ClientId::parse("web").unwrap();
        let app = ClientId::parse("app").unwrap();
        let mut confirmed = user(UserStatus::Enabled, None);
        confirmed.client_id = Some(web.clone());
        let other_client = SendRequirements { client: Some(&app), address: None, command: None };
        assert_eq!(SendRefusal::explain(Some(&confirmed), &other_client, now), SendRefusal::ClientMismatch);
        let same_client = SendRequirements { client: Some(&web), address: None, command: None };
        assert_eq!(SendRefusal::explain(Some(&confirmed), &same_client, now), SendRefusal::AlreadyConfirmed);

        let cooling = user(UserStatus::EmailConfirmationPending, Some(1_045));
        let elsewhere = EmailAddress::parse("someone-else@example.org").unwrap();
        let wrong_address = SendRequirements { client: None, address: Some(&elsewhere), command: None };
        assert_eq!(SendRefusal::explain(Some(&cooling), &wrong_address, now), SendRefusal::AddressMismatch);
        let own = EmailAddress::parse("ADA@example.org").unwrap();
        let right_address = SendRequirements { client: None, address: Some(&own), command: None };
        assert_eq!(
            SendRefusal::explain(Some(&cooling), &right_address, now),
            SendRefusal::CooldownActive { remaining_seconds: 45 }
        );
    }

    #[test]
    fn a_refused_confirmation_tells_a_changed_address_from_a_repeated_click() {
        let confirmed = user(UserStatus::Enabled, None);
        let same = EmailAddress::parse("ADA@example.org").unwrap().tag();
        let other = EmailAddress::parse("old@example.org").unwrap().tag();
        assert_eq!(ConfirmRefusal::explain(Some(&confirmed), &same), ConfirmRefusal::AlreadyConfirmed);
        assert_eq!(ConfirmRefusal::explain(Some(&confirmed), &other), ConfirmRefusal::AddressChanged);
        assert_eq!(ConfirmRefusal::explain(None, &same), ConfirmRefusal::UserNotFound);
    }

    #[test]
    fn sign_up_events_are_parsed_into_valid_sign_ups() {
        let event: SignUpEvent = serde_json::from_str(
            r#"{"user_id": 42, "email": "Ada@Example.org", "locale": "fr_ca", "client_id": "web"}"#,
        )
        .unwrap();
        let sign_up = SignUp::try_from(event).unwrap();
        assert_eq!(sign_up.user_id.as_str(), "42");
        assert_eq!(sign_up.email.normalized(), "ada@example.org");
        assert_eq!(sign_up.locale.unwrap().as_str(), "fr-CA");
        assert_eq!(sign_up.client_id.unwrap().as_str(), "web");
    }

    #[test]
    fn malformed_sign_up_events_say_which_field_is_wrong() {
        let parse = |json: &str| SignUp::try_from(serde_json::from_str::<SignUpEvent>(json).unwrap());
        assert_eq!(parse(r#"{"email": "a@example.org"}"#), Err(InvalidSignUp::MissingUserId));
        assert_eq!(parse(r#"{"user_id": "  ", "email": "a@example.org"}"#), Err(InvalidSignUp::UserId(InvalidUserId)));
        assert_eq!(parse(r#"{"user_id": true, "email": "a@example.org"}"#), Err(InvalidSignUp::UserId(InvalidUserId)));
        assert_eq!(parse(r#"{"user_id": "u"}"#), Err(InvalidSignUp::MissingEmail));
        assert!(matches!(parse(r#"{"user_id": "u", "email": "nope"}"#), Err(InvalidSignUp::Email(_))));
        assert_eq!(parse(r#"{"user_id": "u", "email": "a@example.org", "locale": "x"}"#), Err(InvalidSignUp::Locale));
    }
}
