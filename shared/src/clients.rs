//! The look and the settings of each app a deployment serves: the global settings from the
//! environment (`APP_NAME`, `BRAND_*`, …), and per `client_id` overrides from one JSON
//! document (`CLIENT_SETTINGS`, or the file `CLIENT_SETTINGS_FILE`), merged at start-up.
//!
//! A document rather than `CLIENT#<id>` items in the table: every decision stays one DynamoDB
//! round trip (a table item would add a read to each mail and page), a typo stops the start
//! with its name instead of surfacing at the first sign-up, and a change is deployed and rolled
//! back with the function's configuration like every other setting.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;

use crate::config::{self, ConfigError, Source};
use crate::domain::{ClientId, EmailAddress, Locale};
use crate::mail::{FALLBACK_LOCALE, MAIL_LOCALES};
use crate::redirect::{RedirectPolicy, origin_of};

/// How an app presents itself on the page and in the mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Brand {
    pub app_name: String,
    /// An http(s) image shown above the title and at the top of the mail.
    pub logo_url: Option<String>,
    pub accent: Option<Accent>,
    /// Where to ask for help: a web page or a mail address (as a `mailto:` link).
    pub support: Option<Support>,
    /// One line of legal text (company, address) at the bottom of the page and the mail.
    pub footer: Option<String>,
    /// The app's home, where "Continue to <app>" leads when no redirect is set.
    pub app_url: Option<String>,
}

impl Brand {
    /// A brand that is only a name.
    pub fn named(app_name: impl Into<String>) -> Self {
        Self { app_name: app_name.into(), logo_url: None, accent: None, support: None, footer: None, app_url: None }
    }
}

/// The brand colour, with the text colour that stays readable on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accent {
    rgb: [u8; 3],
}

impl Accent {
    /// The blue of the button when the brand names no colour.
    pub const DEFAULT: Accent = Accent { rgb: [0x1d, 0x4e, 0xd8] };

    /// `#1d4ed8` or `#15f`.
    pub fn parse(input: &str) -> Result<Self, String> {
        let hex = input.trim().strip_prefix('#').ok_or("expected a colour such as #1d4ed8")?;
        let digits: Vec<u8> = hex
            .chars()
            .map(|c| c.to_digit(16).and_then(|d| u8::try_from(d).ok()))
            .collect::<Option<_>>()
            .ok_or("expected hexadecimal digits, as in #1d4ed8")?;
        let rgb = match digits.as_slice() {
            [r, g, b] => [r * 17, g * 17, b * 17],
            [r1, r2, g1, g2, b1, b2] => [r1 * 16 + r2, g1 * 16 + g2, b1 * 16 + b2],
            _ => return Err("expected 3 or 6 hexadecimal digits, as in #1d4ed8".to_owned()),
        };
        Ok(Self { rgb })
    }

    pub fn css(self) -> String {
        let [r, g, b] = self.rgb;
        format!("#{r:02x}{g:02x}{b:02x}")
    }

    /// The colour a pressed or hovered button takes: 15 % darker.
    pub fn darker(self) -> Self {
        Self { rgb: self.rgb.map(|channel| (u16::from(channel) * 85 / 100) as u8) }
    }

    /// White or near-black, whichever contrasts more with the colour (WCAG's ratio).
    pub fn text_on(self) -> &'static str {
        let luminance = relative_luminance(self.rgb);
        let dark = relative_luminance([0x18, 0x18, 0x1b]);
        if (1.05) / (luminance + 0.05) >= (luminance + 0.05) / (dark + 0.05) { "#ffffff" } else { "#18181b" }
    }
}

fn relative_luminance(rgb: [u8; 3]) -> f64 {
    let linear = |channel: u8| {
        let c = f64::from(channel) / 255.0;
        if c <= 0.040_45 { c / 12.92 } else { ((c + 0.055) / 1.055).powf(2.4) }
    };
    let [r, g, b] = rgb.map(linear);
    0.2126 * r + 0.7152 * g + 0.0722 * b
}

/// Where a person asks for help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Support {
    Web(String),
    Mail(String),
}

impl Support {
    /// `https://example.com/help`, `help@example.com` or `mailto:help@example.com`.
    pub fn parse(input: &str) -> Result<Self, String> {
        let input = input.trim();
        if let Some(address) = input.strip_prefix("mailto:").or((!input.contains("://")).then_some(input)) {
            let address = EmailAddress::parse(address).map_err(|err| err.to_string())?;
            return Ok(Support::Mail(address.as_typed().to_owned()));
        }
        origin_of(input).ok_or("expected an http(s) URL or a mail address")?;
        Ok(Support::Web(input.to_owned()))
    }

    pub fn href(&self) -> String {
        match self {
            Support::Web(url) => url.clone(),
            Support::Mail(address) => format!("mailto:{address}"),
        }
    }
}

/// Everything that may differ from one app (`client_id`) to another, resolved: the brand, the
/// sender, the default language, the redirect targets and where links point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSettings {
    pub brand: Brand,
    /// A From header of the app's own (`"Acme" <hello@acme.example>`); none: the global sender.
    pub sender: Option<String>,
    pub default_locale: &'static str,
    pub redirects: RedirectPolicy,
    /// The origin (and base path) of the confirm page the app's links open; none: the global one.
    pub link_base: Option<String>,
}

/// The global settings and the per-client overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clients {
    global: Arc<ClientSettings>,
    by_id: HashMap<String, Arc<ClientSettings>>,
}

/// A client's entry in the document; every field optional, unknown fields refused so a typo
/// stops the start instead of being ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Overrides {
    app_name: Option<String>,
    logo_url: Option<String>,
    accent_color: Option<String>,
    support: Option<String>,
    footer: Option<String>,
    app_url: Option<String>,
    sender_address: Option<String>,
    sender_name: Option<String>,
    default_locale: Option<String>,
    redirect_url: Option<String>,
    redirect_allowed: Option<Vec<String>>,
    link_base_url: Option<String>,
}

impl Clients {
    /// The global settings from the environment and the overrides of `CLIENT_SETTINGS` (a JSON
    /// object keyed by client id) or `CLIENT_SETTINGS_FILE` (a path to the same document).
    pub fn from_config(source: &dyn Source) -> Result<Self, ConfigError> {
        let global = Arc::new(global_settings(source)?);
        let document =
            match (config::optional(source, "CLIENT_SETTINGS"), config::optional(source, "CLIENT_SETTINGS_FILE")) {
                (Some(_), Some(_)) => {
                    return Err(ConfigError::invalid(
                        "CLIENT_SETTINGS",
                        "set CLIENT_SETTINGS or CLIENT_SETTINGS_FILE, not both",
                    ));
                }
                (Some(json), None) => Some(("CLIENT_SETTINGS", json)),
                (None, Some(path)) => Some((
                    "CLIENT_SETTINGS_FILE",
                    std::fs::read_to_string(path.trim()).map_err(|err| {
                        ConfigError::invalid("CLIENT_SETTINGS_FILE", format!("cannot read {path}: {err}"))
                    })?,
                )),
                (None, None) => None,
            };
        let mut by_id = HashMap::new();
        if let Some((name, json)) = document {
            let entries: HashMap<String, Overrides> =
                serde_json::from_str(&json).map_err(|err| ConfigError::invalid(name, err))?;
            for (id, overrides) in entries {
                ClientId::parse(&id).map_err(|err| ConfigError::invalid(name, format!("client {id:?}: {err}")))?;
                let settings = merge(&global, overrides, source)
                    .map_err(|reason| ConfigError::invalid(name, format!("client {id:?}: {reason}")))?;
                by_id.insert(id, Arc::new(settings));
            }
        }
        Ok(Self { global, by_id })
    }

    /// Only the global settings (tests, and deployments without per-client settings).
    pub fn global_only(global: ClientSettings) -> Self {
        Self { global: Arc::new(global), by_id: HashMap::new() }
    }

    /// The settings of a client, or the global ones for an unknown or absent client.
    pub fn for_client(&self, client: Option<&ClientId>) -> &ClientSettings {
        client.and_then(|client| self.by_id.get(client.as_str())).unwrap_or(&self.global)
    }

    pub fn global(&self) -> &ClientSettings {
        &self.global
    }

    /// The global settings first, then each client's, in a stable order.
    pub fn all(&self) -> impl Iterator<Item = (Option<&str>, &ClientSettings)> {
        let mut ids: Vec<&String> = self.by_id.keys().collect();
        ids.sort();
        std::iter::once((None, self.global.as_ref()))
            .chain(ids.into_iter().filter_map(|id| self.by_id.get(id).map(|s| (Some(id.as_str()), s.as_ref()))))
    }
}

fn global_settings(source: &dyn Source) -> Result<ClientSettings, ConfigError> {
    let field = |name: &'static str, parse: fn(&str) -> Result<String, String>| {
        config::optional(source, name)
            .map(|value| parse(&value).map_err(|err| ConfigError::invalid(name, err)))
            .transpose()
    };
    let brand = Brand {
        app_name: field("APP_NAME", app_name)?.unwrap_or_else(|| "mailconfirm".to_owned()),
        logo_url: field("BRAND_LOGO_URL", logo_url)?,
        accent: config::optional(source, "BRAND_ACCENT_COLOR")
            .map(|value| Accent::parse(&value).map_err(|err| ConfigError::invalid("BRAND_ACCENT_COLOR", err)))
            .transpose()?,
        support: config::optional(source, "BRAND_SUPPORT")
            .map(|value| Support::parse(&value).map_err(|err| ConfigError::invalid("BRAND_SUPPORT", err)))
            .transpose()?,
        footer: field("BRAND_FOOTER", footer)?,
        app_url: field("APP_URL", app_url)?,
    };
    let default_locale = match config::optional(source, "DEFAULT_LOCALE") {
        None => FALLBACK_LOCALE,
        Some(tag) => shipped_locale(&tag).map_err(|err| ConfigError::invalid("DEFAULT_LOCALE", err))?,
    };
    Ok(ClientSettings {
        brand,
        sender: None,
        default_locale,
        redirects: RedirectPolicy::from_config(source)?,
        link_base: None,
    })
}

fn merge(global: &ClientSettings, overrides: Overrides, source: &dyn Source) -> Result<ClientSettings, String> {
    let text = |value: Option<String>, name: &str, parse: fn(&str) -> Result<String, String>| {
        value.map(|value| parse(&value).map_err(|err| format!("{name}: {err}"))).transpose()
    };
    let global_brand = &global.brand;
    let brand = Brand {
        app_name: text(overrides.app_name, "app_name", app_name)?.unwrap_or_else(|| global_brand.app_name.clone()),
        logo_url: text(overrides.logo_url, "logo_url", logo_url)?.or_else(|| global_brand.logo_url.clone()),
        accent: match overrides.accent_color {
            None => global_brand.accent,
            Some(colour) => Some(Accent::parse(&colour).map_err(|err| format!("accent_color: {err}"))?),
        },
        support: match overrides.support {
            None => global_brand.support.clone(),
            Some(support) => Some(Support::parse(&support).map_err(|err| format!("support: {err}"))?),
        },
        footer: text(overrides.footer, "footer", footer)?.or_else(|| global_brand.footer.clone()),
        app_url: text(overrides.app_url, "app_url", app_url)?.or_else(|| global_brand.app_url.clone()),
    };
    let sender = match (overrides.sender_address, overrides.sender_name) {
        (None, None) => None,
        (address, name) => {
            let address = match address.or_else(|| config::optional(source, "SENDER_ADDRESS")) {
                Some(address) => EmailAddress::parse(&address).map_err(|err| format!("sender_address: {err}"))?,
                None => return Err("sender_name needs a sender_address (or SENDER_ADDRESS)".to_owned()),
            };
            let name = name.or_else(|| config::optional(source, "SENDER_NAME"));
            Some(crate::mail::from_header(&address, name.as_deref()))
        }
    };
    let default_locale = match overrides.default_locale {
        None => global.default_locale,
        Some(tag) => shipped_locale(&tag).map_err(|err| format!("default_locale: {err}"))?,
    };
    let redirects = match (overrides.redirect_url, overrides.redirect_allowed) {
        (None, None) => global.redirects.clone(),
        (url, allowed) => {
            let allowed: Vec<&str> = allowed.iter().flatten().map(String::as_str).collect();
            RedirectPolicy::parse(url.as_deref(), &allowed).map_err(|err| format!("redirects: {err}"))?
        }
    };
    let link_base = match overrides.link_base_url {
        None => global.link_base.clone(),
        Some(url) => Some(config::parse_base_url(&url).map_err(|err| format!("link_base_url: {err}"))?),
    };
    Ok(ClientSettings { brand, sender, default_locale, redirects, link_base })
}

fn shipped_locale(tag: &str) -> Result<&'static str, String> {
    let locale = Locale::parse(tag).map_err(|err| err.to_string())?;
    MAIL_LOCALES
        .iter()
        .copied()
        .find(|shipped| shipped.eq_ignore_ascii_case(locale.as_str()))
        .ok_or_else(|| format!("must be one of {MAIL_LOCALES:?}"))
}

fn plain_line(input: &str, longest: usize) -> Result<String, String> {
    let line = input.trim();
    if line.is_empty() || line.chars().count() > longest || line.chars().any(char::is_control) {
        return Err(format!("expected one line of 1 to {longest} characters"));
    }
    Ok(line.to_owned())
}

fn app_name(input: &str) -> Result<String, String> {
    plain_line(input, 80)
}

fn footer(input: &str) -> Result<String, String> {
    plain_line(input, 300)
}

fn logo_url(input: &str) -> Result<String, String> {
    let url = input.trim();
    origin_of(url).ok_or("expected an absolute http(s) URL of an image")?;
    if url.contains(['"', '\'', '<', '>']) {
        return Err("the URL must not contain quotes or angle brackets".to_owned());
    }
    Ok(url.to_owned())
}

/// The app's home: a web address or an app link, as a redirect target would be.
fn app_url(input: &str) -> Result<String, String> {
    let url = input.trim();
    let policy = RedirectPolicy::parse(Some(url), &[]).map_err(|err| err.to_string())?;
    policy.target(None).map(str::to_owned).ok_or_else(|| "expected an absolute URL".to_owned())
}

/// The origin of the logo, for the page's `img-src`.
pub fn logo_origin(brand: &Brand) -> Option<String> {
    brand.logo_url.as_deref().and_then(origin_of)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    const DOCUMENT: &str = r##"{
        "ios": {
            "app_name": "Acme for iPhone",
            "accent_color": "#0f766e",
            "sender_address": "hello@acme.example",
            "sender_name": "Acme",
            "default_locale": "de",
            "redirect_url": "acme://confirmed",
            "redirect_allowed": ["acme://confirmed", "https://acme.example"],
            "link_base_url": "https://auth.acme.example/"
        },
        "web": {}
    }"##;

    #[test]
    fn a_client_overrides_what_it_names_and_inherits_the_rest() {
        let clients = Clients::from_config(&env(&[
            ("APP_NAME", "Acme"),
            ("BRAND_LOGO_URL", "https://cdn.acme.example/logo.png"),
            ("BRAND_SUPPORT", "help@acme.example"),
            ("BRAND_FOOTER", "Acme Ltd · 1 Main St"),
            ("APP_URL", "https://acme.example/app"),
            ("CONFIRMED_REDIRECT_ALLOWED_ORIGINS", "https://acme.example"),
            ("CLIENT_SETTINGS", DOCUMENT),
        ]))
        .unwrap();
        let ios = clients.for_client(Some(&ClientId::parse("ios").unwrap()));
        assert_eq!(ios.brand.app_name, "Acme for iPhone");
        assert_eq!(ios.brand.logo_url.as_deref(), Some("https://cdn.acme.example/logo.png"), "inherited");
        assert_eq!(ios.brand.accent.map(Accent::css).as_deref(), Some("#0f766e"));
        assert_eq!(ios.brand.support.as_ref().map(Support::href).as_deref(), Some("mailto:help@acme.example"));
        assert_eq!(ios.sender.as_deref(), Some("\"Acme\" <hello@acme.example>"));
        assert_eq!(ios.default_locale, "de");
        assert_eq!(ios.redirects.target(None), Some("acme://confirmed"));
        assert!(ios.redirects.allows("acme://confirmed/welcome"));
        assert_eq!(ios.link_base.as_deref(), Some("https://auth.acme.example"));

        let web = clients.for_client(Some(&ClientId::parse("web").unwrap()));
        assert_eq!(web, clients.global(), "an empty entry is the global settings");
        assert_eq!(clients.for_client(Some(&ClientId::parse("unknown").unwrap())), clients.global());
        assert_eq!(clients.for_client(None).brand.app_url.as_deref(), Some("https://acme.example/app"));
        assert_eq!(clients.all().map(|(id, _)| id).collect::<Vec<_>>(), [None, Some("ios"), Some("web")]);
    }

    #[test]
    fn a_malformed_document_stops_the_start_naming_the_client_and_field() {
        let cases = [
            (r##"{"ios": {"accent_colour": "#fff"}}"##, "unknown field"),
            (r#"{"ios": {"accent_color": "teal"}}"#, "accent_color"),
            (r#"{"ios": {"logo_url": "javascript:alert(1)"}}"#, "logo_url"),
            (r#"{"ios": {"redirect_allowed": ["https://acme.example/path"]}}"#, "redirects"),
            (r#"{"ios": {"default_locale": "tlh"}}"#, "default_locale"),
            (r#"{"ios": {"sender_name": "Acme"}}"#, "sender_address"),
            (r#"{"ios": {"link_base_url": "auth.acme.example"}}"#, "link_base_url"),
            (r#"["ios"]"#, "CLIENT_SETTINGS"),
        ];
        for (document, expected) in cases {
            let err = Clients::from_config(&env(&[("CLIENT_SETTINGS", document)])).unwrap_err().to_string();
            assert!(err.contains("CLIENT_SETTINGS") && err.contains(expected), "{document}: {err}");
        }
        let both = env(&[("CLIENT_SETTINGS", "{}"), ("CLIENT_SETTINGS_FILE", "/x.json")]);
        assert!(Clients::from_config(&both).is_err());
    }

    #[test]
    fn the_document_can_come_from_a_file() {
        let path = std::env::temp_dir().join(format!("mailconfirm-clients-{}.json", std::process::id()));
        std::fs::write(&path, DOCUMENT).unwrap();
        let clients = Clients::from_config(&env(&[("CLIENT_SETTINGS_FILE", path.to_str().unwrap())])).unwrap();
        assert_eq!(clients.for_client(Some(&ClientId::parse("ios").unwrap())).default_locale, "de");
        std::fs::remove_file(path).unwrap();
        let missing = Clients::from_config(&env(&[("CLIENT_SETTINGS_FILE", "/nonexistent/clients.json")]));
        assert!(missing.unwrap_err().to_string().contains("CLIENT_SETTINGS_FILE"));
    }

    #[test]
    fn global_brand_settings_are_checked_at_start_up() {
        for (name, bad) in [
            ("BRAND_ACCENT_COLOR", "#12345"),
            ("BRAND_LOGO_URL", "/logo.png"),
            ("BRAND_SUPPORT", "ftp://help"),
            ("APP_URL", "javascript:alert(1)"),
            ("BRAND_FOOTER", "line\nbreak"),
        ] {
            let err = Clients::from_config(&env(&[(name, bad)])).unwrap_err().to_string();
            assert!(err.contains(name), "{name}: {err}");
        }
    }

    #[test]
    fn the_text_on_the_accent_stays_readable() {
        assert_eq!(Accent::parse("#1d4ed8").unwrap().text_on(), "#ffffff");
        assert_eq!(Accent::parse("#facc15").unwrap().text_on(), "#18181b");
        assert_eq!(Accent::parse("#fff").unwrap().css(), "#ffffff");
        assert_eq!(Accent::parse("#1d4ed8").unwrap().darker().css(), "#1842b7");
        assert!(Accent::parse("1d4ed8").is_err() && Accent::parse("#ggg").is_err());
    }

    #[test]
    fn support_is_a_web_page_or_a_mail_address() {
        assert_eq!(Support::parse("https://acme.example/help").unwrap().href(), "https://acme.example/help");
        assert_eq!(Support::parse("mailto:help@acme.example").unwrap().href(), "mailto:help@acme.example");
        assert!(Support::parse("not an address").is_err());
    }
}
