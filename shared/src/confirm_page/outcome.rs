//! What the confirm page shows, decided without I/O: the page for each outcome of opening a
//! link or pressing one of the page's buttons, and where a confirmed person may be sent next.

use http::StatusCode;

use crate::domain::{EmailAddress, UnixTime, User, UserStatus};
use crate::link_token::{AuthenticLink, LinkTokenError};
use crate::usecases::confirm::ConfirmError;
use crate::usecases::confirm_code::ConfirmCodeError;
use crate::usecases::resend::ResendError;
use crate::usecases::throttle::Limited;

/// What a button of the page asks for when it is pressed (a `POST` with `action=…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Confirm,
    SendNewLink,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Confirm => "confirm",
            Action::SendNewLink => "send-new-link",
        }
    }

    /// A form's `action` field; none means confirm, the page's main button.
    pub fn parse(value: Option<&str>) -> Option<Self> {
        match value.map(str::trim) {
            None | Some("") | Some("confirm") => Some(Action::Confirm),
            Some("send-new-link") => Some(Action::SendNewLink),
            Some(_) => None,
        }
    }
}

/// Every page a person can see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// A good link to a pending address: the Confirm button. Opening a link changes nothing,
    /// so mail scanners that fetch it use nothing up.
    AskToConfirm,
    Confirmed,
    /// A success too: the address is confirmed, whoever pressed the button first.
    AlreadyConfirmed,
    /// The link is ours but too old: one button sends a new one.
    Expired,
    /// The same answer whatever the account's state, so the page reveals nothing about it.
    NewLinkRequested,
    Invalid,
    /// The account's address changed after this link was mailed.
    AddressChanged,
    MailDisabled,
    /// Our failure: nothing changed, and the button repeats what was asked.
    TemporaryFailure {
        retry: Action,
    },
    TooManyRequests {
        retry_after_seconds: u64,
    },
    /// The form for the one-time code of the mail, for a person reading mail elsewhere.
    EnterCode,
    /// The code (or the address) is not right: the form again.
    WrongCode,
    /// The code expired or had all its attempts: only a new mail helps.
    CodeUsedUp,
}

impl Page {
    /// One of each page, for tests and previews.
    pub const ALL: [Page; 13] = [
        Page::AskToConfirm,
        Page::Confirmed,
        Page::AlreadyConfirmed,
        Page::Expired,
        Page::NewLinkRequested,
        Page::Invalid,
        Page::AddressChanged,
        Page::MailDisabled,
        Page::TemporaryFailure { retry: Action::Confirm },
        Page::TooManyRequests { retry_after_seconds: 60 },
        Page::EnterCode,
        Page::WrongCode,
        Page::CodeUsedUp,
    ];

    /// Names the page's texts in the string tables (`<key>.title`, `<key>.text`, …).
    pub fn key(self) -> &'static str {
        match self {
            Page::AskToConfirm => "ask",
            Page::Confirmed => "confirmed",
            Page::AlreadyConfirmed => "already_confirmed",
            Page::Expired => "expired",
            Page::NewLinkRequested => "new_link_requested",
            Page::Invalid => "invalid",
            Page::AddressChanged => "address_changed",
            Page::MailDisabled => "mail_disabled",
            Page::TemporaryFailure { .. } => "temporary_failure",
            Page::TooManyRequests { .. } => "too_many_requests",
            Page::EnterCode => "enter_code",
            Page::WrongCode => "wrong_code",
            Page::CodeUsedUp => "code_used_up",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Page::AskToConfirm
            | Page::Confirmed
            | Page::AlreadyConfirmed
            | Page::NewLinkRequested
            | Page::EnterCode => StatusCode::OK,
            Page::WrongCode => StatusCode::UNPROCESSABLE_ENTITY,
            Page::CodeUsedUp => StatusCode::GONE,
            Page::Invalid => StatusCode::BAD_REQUEST,
            Page::AddressChanged => StatusCode::CONFLICT,
            Page::Expired => StatusCode::GONE,
            Page::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Page::MailDisabled | Page::TemporaryFailure { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// What the page's button does, if it has one.
    pub fn button(self) -> Option<Action> {
        match self {
            Page::AskToConfirm => Some(Action::Confirm),
            Page::Expired => Some(Action::SendNewLink),
            Page::TemporaryFailure { retry } => Some(retry),
            _ => None,
        }
    }

    /// How the page looks: a success, a problem the person can act on, or our failure.
    pub fn tone(self) -> &'static str {
        match self {
            Page::Confirmed | Page::AlreadyConfirmed | Page::NewLinkRequested => "success",
            Page::AskToConfirm | Page::EnterCode => "neutral",
            _ => "problem",
        }
    }

    /// Whether the page names the address it is about (masked): only where the link is known
    /// to be for the account's current address.
    pub fn shows_address(self) -> bool {
        matches!(self, Page::AskToConfirm | Page::Confirmed | Page::AlreadyConfirmed)
    }

    /// Whether the page shows the form for a one-time code.
    pub fn asks_for_code(self) -> bool {
        matches!(self, Page::EnterCode | Page::WrongCode)
    }

    /// The page after a code was entered on the page. An unknown address, a wrong code and a
    /// user without a code read the same, so the form tells nobody which addresses exist.
    pub fn after_code(result: &Result<User, ConfirmCodeError>, now: UnixTime) -> Page {
        match result {
            Ok(_) => Page::Confirmed,
            Err(ConfirmCodeError::AlreadyConfirmed) => Page::AlreadyConfirmed,
            Err(ConfirmCodeError::WrongCode { .. } | ConfirmCodeError::UserNotFound | ConfirmCodeError::NoCode) => {
                Page::WrongCode
            }
            Err(ConfirmCodeError::TooManyAttempts | ConfirmCodeError::Expired) => Page::CodeUsedUp,
            Err(ConfirmCodeError::Throttled(throttled)) => {
                Page::TooManyRequests { retry_after_seconds: throttled.retry_after_seconds(now) }
            }
            Err(ConfirmCodeError::Failed(_)) => Page::TemporaryFailure { retry: Action::Confirm },
        }
    }

    /// Whether a person on this page is done and may continue to the app.
    pub fn is_success(self) -> bool {
        matches!(self, Page::Confirmed | Page::AlreadyConfirmed)
    }

    /// The page for an opened link, given the user as stored now (`None`: no such user).
    pub fn on_open(link: &AuthenticLink, user: Option<&User>) -> Page {
        match user {
            None => Page::Invalid,
            Some(user) if user.email.tag() != link.link.address => Page::AddressChanged,
            Some(user) if user.status == UserStatus::Enabled => Page::AlreadyConfirmed,
            Some(_) if link.expired => Page::Expired,
            Some(_) => Page::AskToConfirm,
        }
    }

    /// The page a Confirm `POST` redirects to: the link as it stands now (`self`), worded by
    /// what the press ended on (`pressed`, a page key). Only a truthful page comes out: the
    /// press's word is taken only where the stored state agrees with it.
    pub fn after_confirm_redirect(self, pressed: &str) -> Page {
        match (self, pressed) {
            (Page::AlreadyConfirmed, "confirmed") => Page::Confirmed,
            (Page::AskToConfirm, "temporary_failure") => Page::TemporaryFailure { retry: Action::Confirm },
            (state, _) => state,
        }
    }

    /// The page for a link that did not verify.
    pub fn on_bad_link(err: LinkTokenError) -> Page {
        match err {
            LinkTokenError::Missing | LinkTokenError::Invalid => Page::Invalid,
            LinkTokenError::Expired => Page::Expired,
        }
    }

    /// The page after pressing Confirm.
    pub fn after_confirm(result: &Result<User, ConfirmError>) -> Page {
        match result {
            Ok(_) => Page::Confirmed,
            Err(ConfirmError::AlreadyConfirmed) => Page::AlreadyConfirmed,
            Err(ConfirmError::Token(err)) => Page::on_bad_link(*err),
            Err(ConfirmError::UserNotFound) => Page::Invalid,
            Err(ConfirmError::AddressChanged) => Page::AddressChanged,
            Err(ConfirmError::MailDisabled) => Page::MailDisabled,
            Err(ConfirmError::Failed(_)) => Page::TemporaryFailure { retry: Action::Confirm },
        }
    }

    /// The page after asking for a new link. Whether a mail went out, the cooldown held it
    /// back, or the account is confirmed or gone, the answer is the same.
    pub fn after_new_link<T>(result: &Result<T, Limited<ResendError>>, now: UnixTime) -> Page {
        let refused = match result {
            Ok(_) => return Page::NewLinkRequested,
            Err(Limited::Throttled(throttled)) => {
                return Page::TooManyRequests { retry_after_seconds: throttled.retry_after_seconds(now) };
            }
            Err(Limited::Refused(refused)) => refused,
        };
        match refused {
            ResendError::MailDisabled => Page::MailDisabled,
            ResendError::Failed(_) => Page::TemporaryFailure { retry: Action::SendNewLink },
            ResendError::UserNotFound
            | ResendError::AlreadyConfirmed
            | ResendError::Undeliverable
            | ResendError::CooldownActive { .. } => Page::NewLinkRequested,
        }
    }
}

/// The address a page is about, as the page shows it: the local part's first character, three
/// bullets, then the domain (`a•••@example.com`), so a person sees which of their addresses
/// this is while a shoulder-surfer or a forwarded link learns little. Still personal data: it
/// is never logged, and `Debug` does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct MaskedAddress(String);

impl MaskedAddress {
    pub fn of(address: &EmailAddress) -> Self {
        let typed = address.as_typed();
        // A parsed address has exactly one '@' with text on both sides.
        let (local, domain) = typed.rsplit_once('@').unwrap_or((typed, ""));
        let first: String = local.chars().take(1).collect();
        Self(format!("{first}\u{2022}\u{2022}\u{2022}@{domain}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for MaskedAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MaskedAddress(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{DeliveryState, EmailAddress, UnixTime, UserId};
    use crate::link_token::VerifiedLink;
    use crate::usecases::Failure;

    fn user(email: &str, status: UserStatus) -> User {
        User {
            id: UserId::parse("u-1").unwrap(),
            email: EmailAddress::parse(email).unwrap(),
            status,
            locale: None,
            client_id: None,
            created_at: UnixTime(0),
            confirmed_at: None,
            cooldown_until: None,
            last_mail_sent_at: None,
            delivery: DeliveryState::Ok,
        }
    }

    fn link_to(email: &str, expired: bool) -> AuthenticLink {
        let address = EmailAddress::parse(email).unwrap().tag();
        AuthenticLink {
            link: VerifiedLink {
                user_id: UserId::parse("u-1").unwrap(),
                address,
                locale: None,
                client_id: None,
                redirect_to: None,
            },
            expired,
        }
    }

    #[test]
    fn opening_a_link_shows_the_state_of_its_user() {
        use UserStatus::*;
        let pending = user("ada@example.org", EmailConfirmationPending);
        let confirmed = user("ada@example.org", Enabled);
        let moved = user("new@example.org", EmailConfirmationPending);
        assert_eq!(Page::on_open(&link_to("ada@example.org", false), Some(&pending)), Page::AskToConfirm);
        assert_eq!(Page::on_open(&link_to("ADA@example.org", false), Some(&confirmed)), Page::AlreadyConfirmed);
        assert_eq!(Page::on_open(&link_to("ada@example.org", true), Some(&confirmed)), Page::AlreadyConfirmed);
        assert_eq!(Page::on_open(&link_to("ada@example.org", true), Some(&pending)), Page::Expired);
        assert_eq!(Page::on_open(&link_to("ada@example.org", false), Some(&moved)), Page::AddressChanged);
        assert_eq!(Page::on_open(&link_to("ada@example.org", false), None), Page::Invalid);
    }

    #[test]
    fn pressing_confirm_maps_every_outcome_to_a_page() {
        let ok: Result<User, ConfirmError> = Ok(user("a@example.org", UserStatus::Enabled));
        assert_eq!(Page::after_confirm(&ok), Page::Confirmed);
        let cases = [
            (ConfirmError::AlreadyConfirmed, Page::AlreadyConfirmed),
            (ConfirmError::Token(LinkTokenError::Expired), Page::Expired),
            (ConfirmError::Token(LinkTokenError::Invalid), Page::Invalid),
            (ConfirmError::Token(LinkTokenError::Missing), Page::Invalid),
            (ConfirmError::UserNotFound, Page::Invalid),
            (ConfirmError::AddressChanged, Page::AddressChanged),
            (ConfirmError::MailDisabled, Page::MailDisabled),
            (
                ConfirmError::Failed(Failure::Storage(anyhow::anyhow!("down"))),
                Page::TemporaryFailure { retry: Action::Confirm },
            ),
        ];
        for (err, page) in cases {
            assert_eq!(Page::after_confirm(&Err(err)), page);
        }
    }

    #[test]
    fn asking_for_a_new_link_answers_the_same_whatever_the_account() {
        let same = [
            Ok(()),
            Err(ResendError::UserNotFound),
            Err(ResendError::AlreadyConfirmed),
            Err(ResendError::CooldownActive { remaining_seconds: 30 }),
        ];
        for result in same {
            assert_eq!(Page::after_new_link(&result.map_err(Limited::Refused), UnixTime(0)), Page::NewLinkRequested);
        }
        let failed = Err(Limited::Refused(ResendError::Failed(Failure::Storage(anyhow::anyhow!("down")))));
        assert_eq!(
            Page::after_new_link::<()>(&failed, UnixTime(0)),
            Page::TemporaryFailure { retry: Action::SendNewLink }
        );
        let disabled = Err(Limited::Refused(ResendError::MailDisabled));
        assert_eq!(Page::after_new_link::<()>(&disabled, UnixTime(0)), Page::MailDisabled);
        let rule = crate::domain::ThrottleRule { name: "ip", limit: 1, window: std::time::Duration::from_secs(60) };
        let throttled = Err(Limited::Throttled(crate::domain::Throttled { rule, resets_at: UnixTime(45) }));
        assert_eq!(
            Page::after_new_link::<()>(&throttled, UnixTime(0)),
            Page::TooManyRequests { retry_after_seconds: 45 }
        );
    }

    #[test]
    fn an_address_is_masked_to_its_first_character_and_its_domain() {
        let masked = |typed| MaskedAddress::of(&EmailAddress::parse(typed).unwrap()).as_str().to_owned();
        assert_eq!(masked("ada.lovelace@example.com"), "a•••@example.com");
        assert_eq!(masked("a@example.com"), "a•••@example.com");
        assert_eq!(masked("Élodie@Example.fr"), "É•••@Example.fr", "a character, not a byte");
        let debug = format!("{:?}", MaskedAddress::of(&EmailAddress::parse("ada@example.com").unwrap()));
        assert!(!debug.contains("example.com"), "{debug}");
    }

    #[test]
    fn only_the_pages_about_the_current_address_name_it() {
        let naming: Vec<Page> = Page::ALL.into_iter().filter(|page| page.shows_address()).collect();
        assert_eq!(naming, [Page::AskToConfirm, Page::Confirmed, Page::AlreadyConfirmed]);
    }

    #[test]
    fn only_pages_that_offer_an_action_have_a_button() {
        assert_eq!(Page::AskToConfirm.button(), Some(Action::Confirm));
        assert_eq!(Page::Expired.button(), Some(Action::SendNewLink));
        assert_eq!(Page::TemporaryFailure { retry: Action::SendNewLink }.button(), Some(Action::SendNewLink));
        assert_eq!(Page::Confirmed.button(), None);
        assert_eq!(Page::Invalid.button(), None);
    }

    #[test]
    fn form_actions_parse_and_default_to_confirm() {
        assert_eq!(Action::parse(None), Some(Action::Confirm));
        assert_eq!(Action::parse(Some("send-new-link")), Some(Action::SendNewLink));
        assert_eq!(Action::parse(Some("delete-account")), None);
    }

    #[test]
    fn an_entered_code_maps_every_outcome_to_a_page_and_hides_which_addresses_exist() {
        let ok: Result<User, ConfirmCodeError> = Ok(user("a@example.org", UserStatus::Enabled));
        assert_eq!(Page::after_code(&ok, UnixTime(0)), Page::Confirmed);
        let cases = [
            (ConfirmCodeError::AlreadyConfirmed, Page::AlreadyConfirmed),
            (ConfirmCodeError::WrongCode { attempts_left: 2 }, Page::WrongCode),
            (ConfirmCodeError::UserNotFound, Page::WrongCode),
            (ConfirmCodeError::NoCode, Page::WrongCode),
            (ConfirmCodeError::TooManyAttempts, Page::CodeUsedUp),
            (ConfirmCodeError::Expired, Page::CodeUsedUp),
            (
                ConfirmCodeError::Failed(Failure::Storage(anyhow::anyhow!("down"))),
                Page::TemporaryFailure { retry: Action::Confirm },
            ),
        ];
        for (err, page) in cases {
            assert_eq!(Page::after_code(&Err(err), UnixTime(0)), page);
        }
        assert!(Page::EnterCode.asks_for_code() && Page::WrongCode.asks_for_code());
        assert!(!Page::CodeUsedUp.asks_for_code() && Page::CodeUsedUp.button().is_none());
    }
}
