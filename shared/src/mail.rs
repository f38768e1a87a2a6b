//! Confirmation mails: rendered from per-locale templates (minijinja), sent through SES v2.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::anyhow;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};
use base64::Engine as _;
use minijinja::{Environment, context};

use crate::aws::AwsClients;
use crate::clients::{Accent, Brand, Clients, Support};
use crate::config::{self, ConfigError, Source};
use crate::domain::{ClientId, EmailAddress, Locale, LocaleNegotiation};
use crate::ports::Mailer;

/// The languages mails are written in.
pub const MAIL_LOCALES: &[&str] = &["en", "fr", "de", "es", "it", "pt", "nl", "pl", "ja", "zh-Hans"];

/// The language of last resort, when `DEFAULT_LOCALE` is unset.
pub const FALLBACK_LOCALE: &str = "en";

macro_rules! locale_templates {
    ($($locale:literal),*) => {
        &[$(
            (concat!($locale, "/subject.txt"), include_str!(concat!("../templates/mail/", $locale, "/subject.txt"))),
            (concat!($locale, "/body.txt"), include_str!(concat!("../templates/mail/", $locale, "/body.txt"))),
            (concat!($locale, "/body.html"), include_str!(concat!("../templates/mail/", $locale, "/body.html"))),
        )*]
    };
}

const TEMPLATES: &[(&str, &str)] = locale_templates!("en", "fr", "de", "es", "it", "pt", "nl", "pl", "ja", "zh-Hans");
const LAYOUT: &str = include_str!("../templates/mail/layout.html");

/// The mail templates: the shipped ones, each replaceable by a file of the same relative
/// path under `MAIL_TEMPLATES_DIR` (e.g. `fr/subject.txt`, `layout.html`). Compiled on
/// first use, not at start-up.
#[derive(Debug, Default)]
pub struct MailTemplates {
    dir: Option<PathBuf>,
    compiled: OnceLock<Result<Environment<'static>, String>>,
}

impl Clone for MailTemplates {
    fn clone(&self) -> Self {
        Self { dir: self.dir.clone(), compiled: OnceLock::new() }
    }
}

impl MailTemplates {
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self { dir, compiled: OnceLock::new() }
    }

    fn environment(&self) -> Result<&Environment<'static>, TemplateError> {
        self.compiled
            .get_or_init(|| {
                let mut env = Environment::new();
                env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
                let shipped = TEMPLATES.iter().copied().chain([("layout.html", LAYOUT)]);
                for (name, builtin) in shipped {
                    let source = match self.dir.as_ref().map(|dir| dir.join(name)).filter(|path| path.is_file()) {
                        Some(path) => std::fs::read_to_string(&path)
                            .map_err(|err| format!("reading {}: {err}", path.display()))?,
                        // The shipped text bodies end with the brand's closing lines; an
                        // operator's own body places `{{ closing }}` where it wants it, or not.
                        None if name.ends_with("/body.txt") => format!("{}\n\n{{{{ closing }}}}\n", builtin.trim_end()),
                        None => builtin.to_owned(),
                    };
                    env.add_template_owned(name, source).map_err(|err| format!("{name}: {err}"))?;
                }
                Ok(env)
            })
            .as_ref()
            .map_err(|reason| TemplateError(anyhow!("the mail templates do not compile: {reason}")))
    }

    /// Renders the confirmation mail in a shipped locale, in the app's brand, without a
    /// one-time code.
    pub fn render_confirmation(
        &self,
        locale: &'static str,
        brand: &Brand,
        link: &str,
        lifetime: Duration,
    ) -> Result<ConfirmationMail, TemplateError> {
        self.render_confirmation_with_code(locale, brand, link, lifetime, None)
    }

    /// Renders the confirmation mail in a shipped locale; the templates show `code` (the
    /// one-time code, digits only) when there is one.
    pub fn render_confirmation_with_code(
        &self,
        locale: &'static str,
        brand: &Brand,
        link: &str,
        lifetime: Duration,
        code: Option<&str>,
    ) -> Result<ConfirmationMail, TemplateError> {
        let env = self.environment()?;
        let app_name = &brand.app_name;
        // "30 minutes", "1 Stunde": the lifetime in words, in the mail's language.
        let valid_for = crate::durations::valid_for(locale, lifetime).map_err(|err| TemplateError(anyhow!(err)))?;
        // Kept for operators' own templates written before `valid_for`; rounded up as it was.
        let valid_hours = lifetime.as_secs().div_ceil(3600);
        // Our own URL (a checked base URL and a base64url token): HTML-escaping it would only
        // turn its slashes into entities.
        let link = minijinja::Value::from_safe_string(link.to_owned());
        let render = |part: &str, ctx: minijinja::Value| {
            env.get_template(&format!("{locale}/{part}"))
                .and_then(|t| t.render(ctx))
                .map_err(|err| TemplateError(anyhow!(err)))
        };
        let closing = BrandLines::new(locale, brand).map_err(|err| TemplateError(anyhow!(err)))?;
        let subject = render("subject.txt", context! { app_name })?.trim().to_owned();
        let text = render(
            "body.txt",
            context! { app_name, link => link.clone(), valid_for, valid_hours, code, closing => closing.as_text() },
        )?;
        let accent = brand.accent.unwrap_or(Accent::DEFAULT);
        let html = render(
            "body.html",
            context! {
                app_name, link, valid_for, valid_hours, locale, subject, code,
                logo_url => brand.logo_url.as_deref(),
                accent => accent.css(),
                accent_text => accent.text_on(),
                signature => closing.signature,
                help => closing.help,
                help_link => closing.help_link,
                support_href => brand.support.as_ref().map(Support::href),
                footer => brand.footer.as_deref(),
            },
        )?;
        Ok(ConfirmationMail { locale, subject, text, html, from: None })
    }
}

/// The lines that close every mail, in its language: the signature, where to get help, the
/// legal footer.
struct BrandLines {
    signature: String,
    help: Option<String>,
    help_link: Option<String>,
    support: Option<String>,
    footer: Option<String>,
}

impl BrandLines {
    fn new(locale: &'static str, brand: &Brand) -> Result<Self, String> {
        let phrase = |key: &str| crate::confirm_page::render::phrase(locale, key, &brand.app_name);
        let (help, help_link) = match &brand.support {
            None => (None, None),
            Some(_) => (Some(phrase("help")?), Some(phrase("help.link")?)),
        };
        Ok(Self {
            signature: phrase("signature")?,
            help,
            help_link,
            support: brand.support.as_ref().map(|support| match support {
                Support::Web(url) => url.clone(),
                Support::Mail(address) => address.clone(),
            }),
            footer: brand.footer.clone(),
        })
    }

    /// The closing lines of the text part: the signature, then help and the footer.
    fn as_text(&self) -> String {
        let mut text = self.signature.clone();
        if let (Some(help), Some(support)) = (&self.help, &self.support) {
            text.push_str(&format!("\n\n{help} {support}"));
        }
        if let Some(footer) = &self.footer {
            text.push_str(&format!("\n{footer}"));
        }
        text
    }
}

/// Mail settings from configuration.
#[derive(Debug, Clone)]
pub struct MailSettings {
    /// `EMAIL_ENABLED`: when false, no mail is sent and sends answer "e-mail disabled".
    pub enabled: bool,
    /// The brand, sender, default language and link base of each app (see `clients`).
    pub clients: Arc<Clients>,
    /// `MAIL_TEMPLATES_DIR`: the operator's own templates, replacing shipped ones file by file.
    pub templates: MailTemplates,
}

impl MailSettings {
    pub fn from_config(source: &dyn Source) -> Result<Self, ConfigError> {
        Ok(Self {
            enabled: config::email_enabled(source)?,
            clients: Arc::new(Clients::from_config(source)?),
            templates: MailTemplates::new(config::optional(source, "MAIL_TEMPLATES_DIR").map(PathBuf::from)),
        })
    }

    /// The language of a mail: the request's choice, else the user's, else the app's default,
    /// each falling back from region to language (`fr-CA` → `fr`).
    pub fn choose_locale(
        &self,
        requested: Option<&Locale>,
        stored: Option<&Locale>,
        client: Option<&ClientId>,
    ) -> &'static str {
        LocaleNegotiation { available: MAIL_LOCALES, default: self.clients.for_client(client).default_locale }
            .choose(requested.into_iter().chain(stored))
    }
}

/// `Name <address>`, with a non-ASCII name MIME-encoded as SES requires.
pub fn from_header(address: &EmailAddress, name: Option<&str>) -> String {
    match name.map(str::trim).filter(|n| !n.is_empty()) {
        None => address.as_typed().to_owned(),
        Some(name) if name.is_ascii() && !name.contains(['"', '\\', '<', '>']) => {
            format!("\"{name}\" <{}>", address.as_typed())
        }
        Some(name) => {
            format!("=?utf-8?B?{}?= <{}>", base64::engine::general_purpose::STANDARD.encode(name), address.as_typed())
        }
    }
}

/// A rendered mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfirmationMail {
    pub locale: &'static str,
    /// The app's own From header, when its client has one; else the mailer's.
    pub from: Option<String>,
    pub subject: String,
    pub text: String,
    pub html: String,
}

#[derive(Debug, thiserror::Error)]
#[error("could not render the confirmation mail")]
pub struct TemplateError(#[from] anyhow::Error);

#[derive(Debug, thiserror::Error)]
#[error("{}", self.describe())]
pub struct MailSendError {
    #[source]
    source: anyhow::Error,
    refused_for_rate: bool,
}

impl From<anyhow::Error> for MailSendError {
    fn from(source: anyhow::Error) -> Self {
        Self { source, refused_for_rate: false }
    }
}

impl MailSendError {
    /// SES refused the mail for the account's sending rate: nothing was sent, so later is safe.
    pub fn refused_for_rate(source: anyhow::Error) -> Self {
        Self { source, refused_for_rate: true }
    }

    pub fn is_refused_for_rate(&self) -> bool {
        self.refused_for_rate
    }

    fn describe(&self) -> &'static str {
        if self.refused_for_rate {
            "SES refused the mail for the account's sending rate"
        } else {
            "SES did not accept the mail"
        }
    }
}

/// Sends mail through SES v2.
pub struct SesMailer {
    aws: Arc<AwsClients>,
    /// `SENDER_ADDRESS` with the optional display name `SENDER_NAME`, ready for a From header.
    from: String,
    /// `SES_CONFIGURATION_SET`: where SES reports deliveries, bounces and complaints.
    configuration_set: Option<String>,
}

impl SesMailer {
    pub fn from_config(source: &dyn Source, aws: Arc<AwsClients>) -> Result<Self, ConfigError> {
        let from = match (config::email_enabled(source)?, config::optional(source, "SENDER_ADDRESS")) {
            (false, None) => String::new(),
            _ => from_header(&config::sender_address(source)?, config::optional(source, "SENDER_NAME").as_deref()),
        };
        Ok(Self { aws, from, configuration_set: config::optional(source, "SES_CONFIGURATION_SET") })
    }
}

#[async_trait::async_trait]
impl Mailer for SesMailer {
    async fn send(&self, to: &EmailAddress, mail: &ConfirmationMail) -> Result<(), MailSendError> {
        let utf8 = |data: &str| Content::builder().data(data).charset("UTF-8").build();
        let message = Message::builder()
            .subject(utf8(&mail.subject).map_err(|e| MailSendError::from(anyhow!(e)))?)
            .body(
                Body::builder()
                    .text(utf8(&mail.text).map_err(|e| MailSendError::from(anyhow!(e)))?)
                    .html(utf8(&mail.html).map_err(|e| MailSendError::from(anyhow!(e)))?)
                    .build(),
            )
            .build();
        self.aws
            .sesv2()
            .await
            .send_email()
            .from_email_address(mail.from.as_deref().unwrap_or(&self.from))
            .destination(Destination::builder().to_addresses(to.as_typed()).build())
            .content(EmailContent::builder().simple(message).build())
            .set_configuration_set_name(self.configuration_set.clone())
            .send()
            .await
            .map_err(|err| {
                let failure = crate::aws_error::AwsFailure::of("SES", &err);
                if crate::aws_policy::ses_refused_for_rate(failure.status, failure.code.as_deref()) {
                    MailSendError::refused_for_rate(anyhow::Error::new(failure))
                } else {
                    MailSendError::from(anyhow::Error::new(failure))
                }
            })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const LINK: &str = "https://auth.example.com/confirm-email?token=abc.def.ghi";
    const DAY: Duration = Duration::from_secs(86_400);

    fn settings(pairs: &[(&str, &str)]) -> MailSettings {
        let env: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        MailSettings::from_config(&env).unwrap()
    }

    #[test]
    fn every_shipped_locale_renders_all_three_parts_with_the_link() {
        for locale in MAIL_LOCALES {
            let mail = MailTemplates::default().render_confirmation(locale, &Brand::named("Acme"), LINK, DAY).unwrap();
            assert!(mail.subject.contains("Acme") && !mail.subject.contains('\n'), "{locale}: {}", mail.subject);
            assert!(mail.text.contains(LINK) && mail.text.contains("24"), "{locale}");
            assert!(!mail.text.contains("1 hours") && !mail.html.contains("{{"), "{locale}");
            assert!(mail.html.contains(&format!("href=\"{LINK}\"")), "{locale}");
            assert!(mail.html.contains(&format!("lang=\"{locale}\"")), "{locale}");
        }
    }

    #[test]
    fn every_shipped_locale_shows_the_code_when_given_and_nothing_of_it_when_not() {
        for locale in MAIL_LOCALES {
            let templates = MailTemplates::default();
            let with = templates
                .render_confirmation_with_code(locale, &Brand::named("Acme"), LINK, DAY, Some("042917"))
                .unwrap();
            let line = with.text.lines().find(|line| line.contains("042917")).unwrap_or_default();
            // ": 042917", or the full-width "：042917" of Japanese and Chinese.
            let introduced = line.ends_with(": 042917") || line.ends_with("：042917");
            assert!(line.contains("Acme") && introduced, "{locale}: {}", with.text);
            assert!(with.text.contains(&format!("{LINK}\n\n{line}\n\n")), "{locale}: a paragraph of its own");
            assert!(with.html.contains(">042917</"), "{locale}: the code in its box");
            assert!(with.html.contains("monospace"), "{locale}");
            let without = templates.render_confirmation(locale, &Brand::named("Acme"), LINK, DAY).unwrap();
            let plain =
                templates.render_confirmation_with_code(locale, &Brand::named("Acme"), LINK, DAY, None).unwrap();
            assert_eq!(without, plain, "{locale}");
            assert!(!without.html.contains("monospace") && !without.html.contains("mail-code\""), "{locale}");
            assert_eq!(without.text.lines().count() + 2, with.text.lines().count(), "{locale}: {}", without.text);
            assert!(without.text.contains(&format!("{LINK}\n\n")), "{locale}");
        }
    }

    #[test]
    fn the_language_falls_back_from_region_to_language_to_the_default() {
        let defaults = settings(&[("SENDER_ADDRESS", "no-reply@example.com")]);
        let fr_ca = Locale::parse("fr-CA").unwrap();
        let ko = Locale::parse("ko").unwrap();
        let de = Locale::parse("de").unwrap();
        assert_eq!(defaults.choose_locale(Some(&fr_ca), None, None), "fr");
        assert_eq!(defaults.choose_locale(Some(&ko), None, None), "en");
        assert_eq!(defaults.choose_locale(None, Some(&de), None), "de");
        assert_eq!(defaults.choose_locale(Some(&ko), Some(&de), None), "de");
        let french_default = settings(&[("SENDER_ADDRESS", "no-reply@example.com"), ("DEFAULT_LOCALE", "fr")]);
        assert_eq!(french_default.choose_locale(Some(&ko), None, None), "fr");
        let chinese = |tag| Locale::parse(tag).unwrap();
        assert_eq!(defaults.choose_locale(Some(&chinese("zh-CN")), None, None), "zh-Hans");
        assert_eq!(defaults.choose_locale(Some(&chinese("zh-TW")), Some(&de), None), "de");
        assert_eq!(defaults.choose_locale(None, Some(&chinese("pt-BR")), None), "pt");
    }

    #[test]
    fn simplified_chinese_is_accepted_as_the_default_and_named_in_its_own_case() {
        let chinese_default = settings(&[("SENDER_ADDRESS", "no-reply@example.com"), ("DEFAULT_LOCALE", "zh-Hans")]);
        assert_eq!(chinese_default.clients.global().default_locale, "zh-Hans");
        let ko = Locale::parse("ko").unwrap();
        let locale = chinese_default.choose_locale(Some(&ko), None, None);
        assert_eq!(locale, "zh-Hans");
        let mail = chinese_default.templates.render_confirmation(locale, &Brand::named("Acme"), LINK, DAY).unwrap();
        assert_eq!(mail.locale, "zh-Hans");
        assert!(mail.html.contains("<html lang=\"zh-Hans\">"));
    }

    #[test]
    fn the_mail_says_how_long_the_link_works_in_the_unit_and_plural_that_fit() {
        fn sentence_of(locale: &str, seconds: u64) -> String {
            let words = crate::durations::valid_for(locale, Duration::from_secs(seconds)).unwrap();
            match locale {
                "en" => format!("The link is valid for {words}."),
                "de" => format!("Der Link ist {words} gültig."),
                "fr" => format!("Ce lien est valable {words}."),
                "es" => format!("El enlace es válido durante {words}."),
                "it" => format!("Il link è valido per {words}."),
                "pt" => format!("O link é válido por {words}."),
                "nl" => format!("De link is {words} geldig."),
                "pl" => format!("Link jest ważny przez {words}."),
                "ja" => format!("このリンクは{words}有効です。"),
                _ => format!("该链接在 {words}内有效。"),
            }
        }
        for locale in MAIL_LOCALES {
            for seconds in [6, 30 * 60, 3_600, 5_400, 86_400, 2 * 86_400] {
                let lifetime = Duration::from_secs(seconds);
                let mail = MailTemplates::default()
                    .render_confirmation(locale, &Brand::named("Acme"), LINK, lifetime)
                    .unwrap();
                let sentence = sentence_of(locale, seconds);
                assert!(mail.text.contains(&sentence), "{locale} {seconds}: {}", mail.text);
                assert!(mail.html.contains(&sentence), "{locale} {seconds}");
            }
        }
        let english = |seconds| {
            MailTemplates::default()
                .render_confirmation("en", &Brand::named("Acme"), LINK, Duration::from_secs(seconds))
                .unwrap()
                .text
        };
        assert!(english(6).contains("valid for 1 minute."));
        assert!(english(30 * 60).contains("valid for 30 minutes."));
        assert!(english(3_600).contains("valid for 1 hour."));
        assert!(english(2 * 86_400).contains("valid for 2 days."));
        let german = MailTemplates::default()
            .render_confirmation("de", &Brand::named("Acme"), LINK, Duration::from_secs(3_600))
            .unwrap();
        assert!(german.text.contains("Der Link ist 1 Stunde gültig."));
    }

    #[test]
    fn each_new_language_says_the_lifetime_in_its_own_plural() {
        let text = |locale, seconds| {
            MailTemplates::default()
                .render_confirmation(locale, &Brand::named("Acme"), LINK, Duration::from_secs(seconds))
                .unwrap()
                .text
        };
        assert!(text("pl", 5 * 60).contains("Link jest ważny przez 5 minut."));
        assert!(text("pl", 2 * 60).contains("Link jest ważny przez 2 minuty."));
        assert!(text("pl", 60).contains("Link jest ważny przez 1 minutę."));
        assert!(text("pl", 22 * 3_600).contains("Link jest ważny przez 22 godziny."));
        assert!(text("pt", 2 * 86_400).contains("O link é válido por 2 dias."));
        assert!(text("pt", 3_600).contains("O link é válido por 1 hora."));
        assert!(text("nl", 3_600).contains("De link is 1 uur geldig."));
        assert!(text("nl", 2 * 86_400).contains("De link is 2 dagen geldig."));
        assert!(text("ja", 30 * 60).contains("このリンクは30分間有効です。"));
        assert!(text("zh-Hans", 24 * 3_600).contains("该链接在 24 小时内有效。"));
    }

    #[test]
    fn the_english_greeting_is_followed_by_a_capital() {
        let mail = MailTemplates::default().render_confirmation("en", &Brand::named("Acme"), LINK, DAY).unwrap();
        assert!(mail.text.starts_with("Hello,\n\nPlease confirm"), "{}", mail.text);
        assert!(mail.html.contains(">Please confirm"));
    }

    #[test]
    fn the_html_mail_offers_a_dark_scheme() {
        let mail = MailTemplates::default().render_confirmation("en", &Brand::named("Acme"), LINK, DAY).unwrap();
        assert!(mail.html.contains(r#"<meta name="color-scheme" content="light dark">"#));
        assert!(mail.html.contains("color-scheme:light dark"));
        assert!(mail.html.contains("@media (prefers-color-scheme: dark)"));
    }

    #[test]
    fn an_operator_template_written_for_valid_hours_still_renders() {
        let dir = std::env::temp_dir().join(format!("mailconfirm-mail-hours-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("en")).unwrap();
        std::fs::write(dir.join("en/body.txt"), "{{ link }} works {{ valid_hours }} h").unwrap();
        let mail = MailTemplates::new(Some(dir.clone()))
            .render_confirmation("en", &Brand::named("Acme"), LINK, Duration::from_secs(5_400))
            .unwrap();
        assert!(mail.text.ends_with("works 2 h"), "{}", mail.text);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_french_mail_is_in_french() {
        let mail = MailTemplates::default().render_confirmation("fr", &Brand::named("Acme"), LINK, DAY).unwrap();
        assert_eq!(mail.subject, "Confirmez votre adresse e-mail pour Acme");
        assert!(mail.html.contains("Confirmer mon adresse"));
    }

    #[test]
    fn the_app_name_is_escaped_in_html_but_not_in_text() {
        let mail = MailTemplates::default().render_confirmation("en", &Brand::named("<Acme & Co>"), LINK, DAY).unwrap();
        assert!(mail.html.contains("&lt;Acme &amp; Co&gt;") && !mail.html.contains("<Acme"));
        assert!(mail.text.contains("<Acme & Co>"));
    }

    #[test]
    fn a_template_file_in_the_templates_dir_replaces_the_shipped_one() {
        let dir = std::env::temp_dir().join(format!("mailconfirm-mail-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("en")).unwrap();
        std::fs::write(dir.join("en/subject.txt"), "Welcome to {{ app_name }}, confirm please").unwrap();
        let custom = MailTemplates::new(Some(dir.clone()));
        let mail = custom.render_confirmation("en", &Brand::named("Acme"), LINK, DAY).unwrap();
        assert_eq!(mail.subject, "Welcome to Acme, confirm please");
        assert!(mail.text.contains(LINK), "other parts stay shipped");
        std::fs::write(dir.join("en/subject.txt"), "{% if %}").unwrap();
        assert!(
            MailTemplates::new(Some(dir.clone())).render_confirmation("en", &Brand::named("Acme"), LINK, DAY).is_err()
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_display_name_is_quoted_or_mime_encoded() {
        let sender = EmailAddress::parse("no-reply@example.com").unwrap();
        assert_eq!(from_header(&sender, None), "no-reply@example.com");
        assert_eq!(from_header(&sender, Some("Acme")), "\"Acme\" <no-reply@example.com>");
        assert_eq!(from_header(&sender, Some("Café")), "=?utf-8?B?Q2Fmw6k=?= <no-reply@example.com>");
    }

    #[test]
    fn an_unshipped_default_locale_is_refused_at_start_up() {
        let env: HashMap<String, String> = [("SENDER_ADDRESS", "a@example.com"), ("DEFAULT_LOCALE", "ko")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert!(MailSettings::from_config(&env).unwrap_err().to_string().contains("DEFAULT_LOCALE"));
    }

    #[test]
    fn the_mail_wears_the_apps_brand_and_signs_off_in_its_language() {
        let brand = Brand {
            logo_url: Some("https://cdn.acme.example/logo.png".to_owned()),
            accent: Some(Accent::parse("#facc15").unwrap()),
            support: Some(Support::parse("https://acme.example/help").unwrap()),
            footer: Some("Acme Ltd · 1 Main Street".to_owned()),
            ..Brand::named("Acme")
        };
        let mail = MailTemplates::default().render_confirmation("en", &brand, LINK, DAY).unwrap();
        assert!(
            mail.html.contains(r#"<img src="https:&#x2f;&#x2f;cdn.acme.example&#x2f;logo.png" alt="Acme""#),
            "{}",
            mail.html
        );
        assert!(mail.html.contains("background:#facc15;color:#18181b"), "dark text on a light accent");
        assert!(mail.html.contains("— The Acme team") && mail.text.contains("\n\n— The Acme team"));
        assert!(mail.text.contains("Need help? https://acme.example/help\nAcme Ltd · 1 Main Street"), "{}", mail.text);
        let german = MailTemplates::default().render_confirmation("de", &brand, LINK, DAY).unwrap();
        assert!(german.text.contains("— Ihr Acme-Team"), "{}", german.text);
        let plain = MailTemplates::default().render_confirmation("en", &Brand::named("Acme"), LINK, DAY).unwrap();
        assert!(!plain.html.contains("<img") && !plain.text.contains("Need help"));
        assert!(plain.html.contains("background:#1d4ed8;color:#ffffff"));
    }
}
