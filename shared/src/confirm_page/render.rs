//! The confirm page as HTML in the person's language, and the headers that keep it safe:
//! a strict Content-Security-Policy, no referrer (the token is in the URL), no caching.

use std::collections::HashMap;
use std::sync::OnceLock;

use base64::Engine as _;
use lambda_http::{Body, Response};
use minijinja::{Environment, Value, context};
use sha2::{Digest, Sha256};

use super::outcome::{MaskedAddress, Page};
use crate::clients::{Accent, Brand};
use crate::domain::{Locale, LocaleNegotiation};
use crate::redirect::RedirectPolicy;

/// The languages the page is written in, as the mails are.
pub const PAGE_LOCALES: &[&str] = crate::mail::MAIL_LOCALES;

const STRINGS: &[(&str, &str)] = &[
    ("en", include_str!("../../templates/page/en.json")),
    ("fr", include_str!("../../templates/page/fr.json")),
    ("de", include_str!("../../templates/page/de.json")),
    ("es", include_str!("../../templates/page/es.json")),
    ("it", include_str!("../../templates/page/it.json")),
    ("pt", include_str!("../../templates/page/pt.json")),
    ("nl", include_str!("../../templates/page/nl.json")),
    ("pl", include_str!("../../templates/page/pl.json")),
    ("ja", include_str!("../../templates/page/ja.json")),
    ("zh-Hans", include_str!("../../templates/page/zh-Hans.json")),
];
const TEMPLATE: &str = include_str!("../../templates/page/page.html");
const CSS: &str = include_str!("../../templates/page/page.css");

/// A form the page's button submits.
#[derive(Debug, Clone)]
pub struct PageForm<'a> {
    pub action: &'static str,
    pub token: &'a str,
    pub redirect_to: Option<&'a str>,
}

/// Everything one page shows.
pub struct PageView<'a> {
    pub page: Page,
    pub locale: &'static str,
    pub brand: &'a Brand,
    pub form: Option<PageForm<'a>>,
    /// Where "Continue to <app>" leads, on a success.
    pub continue_to: Option<&'a str>,
    pub address: Option<&'a MaskedAddress>,
    /// The address typed into the code form, shown again after a wrong code.
    pub typed_address: Option<&'a str>,
}

/// Renders pages; the template is parsed on first use, not at start-up.
#[derive(Default)]
pub struct PageRenderer {
    compiled: OnceLock<Result<Environment<'static>, String>>,
}

type StringTables = HashMap<&'static str, HashMap<String, String>>;

/// The string tables of the page (and the mail's closing lines), parsed on first use.
fn string_tables() -> Result<&'static StringTables, String> {
    static TABLES: OnceLock<Result<StringTables, String>> = OnceLock::new();
    TABLES
        .get_or_init(|| {
            STRINGS
                .iter()
                .map(|(locale, json)| {
                    serde_json::from_str(json).map(|table| (*locale, table)).map_err(|err| format!("{locale}: {err}"))
                })
                .collect()
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// One phrase of a shipped locale's table, with `{app}` filled in.
pub fn phrase(locale: &str, key: &str, app_name: &str) -> Result<String, String> {
    let table = string_tables()?.get(locale).ok_or_else(|| format!("no strings for {locale}"))?;
    table.get(key).map(|text| text.replace("{app}", app_name)).ok_or_else(|| format!("{locale}: no {key}"))
}

/// The page's language: the link's or the user's, then the browser's `Accept-Language` (in its
/// order of preference, `fr-CA` → `fr`), then the app's default; the same negotiation as the
/// mail's.
pub fn choose_locale(preferred: &[&Locale], accept_language: Option<&str>, default: &'static str) -> &'static str {
    let accepted = Locale::accepted(accept_language.unwrap_or_default());
    LocaleNegotiation { available: PAGE_LOCALES, default }.choose(preferred.iter().copied().chain(accepted.iter()))
}

impl PageRenderer {
    fn template(&self) -> Result<minijinja::Template<'_, '_>, String> {
        self.compiled
            .get_or_init(|| {
                let mut env = Environment::new();
                env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
                env.add_template("page.html", TEMPLATE).map_err(|err| format!("page.html: {err}"))?;
                Ok(env)
            })
            .as_ref()
            .map_err(Clone::clone)?
            .get_template("page.html")
            .map_err(|err| err.to_string())
    }

    /// The page's HTML in a shipped locale and the app's brand, naming the address where the
    /// page is about it. Only fails if a shipped template is broken, which the unit tests rule out.
    pub fn render(&self, view: PageView<'_>) -> Result<String, String> {
        let PageView { page, locale, brand, form, continue_to, address, typed_address } = view;
        let text = |key: &str| phrase(locale, key, &brand.app_name);
        let key = page.key();
        let form = match (form, page.button()) {
            (Some(form), Some(_)) => Some(context! {
                action => form.action,
                token => form.token,
                redirect_to => form.redirect_to,
                button => text(&format!("{key}.button"))?,
            }),
            _ => None,
        };
        let code_form = match page.asks_for_code() {
            false => None,
            true => Some(context! {
                email_label => text("code_form.email")?,
                code_label => text("code_form.code")?,
                button => text("code_form.button")?,
                email => typed_address,
            }),
        };
        let continue_label = continue_to.map(|_| text("continue")).transpose()?;
        let title = text(&format!("{key}.title"))?;
        let mut body_text = text(&format!("{key}.text"))?;
        if let Page::TooManyRequests { retry_after_seconds } = page {
            body_text = body_text.replace("{retry_in}", &crate::durations::retry_in(locale, retry_after_seconds)?);
        }
        let address = match address.filter(|_| page.shows_address()) {
            None => None,
            Some(masked) => {
                let line = text("address")?;
                let (before, after) =
                    line.split_once("{address}").ok_or_else(|| format!("{locale}: address has no {{address}}"))?;
                Some(context! { before, masked => masked.as_str(), after })
            }
        };
        let help = match &brand.support {
            None => None,
            Some(support) => {
                Some(context! { text => text("help")?, link => text("help.link")?, href => support.href() })
            }
        };
        self.template()?
            .render(context! {
                lang => locale,
                page => key,
                tone => page.tone(),
                app_name => &brand.app_name,
                logo_url => brand.logo_url.as_deref(),
                title,
                text => body_text,
                css => Value::from_safe_string(CSS.to_owned()),
                brand_css => Value::from_safe_string(brand_style(brand)),
                form,
                code_form,
                continue_to,
                continue_label,
                address,
                help,
                footer => brand.footer.as_deref(),
            })
            .map_err(|err| format!("rendering {key}: {err}"))
    }
}

/// The brand's colours as custom properties, in a style element of their own so the shared
/// style sheet keeps one hash; the accent's own hash is computed at start-up.
pub fn brand_style(brand: &Brand) -> String {
    let accent = brand.accent.unwrap_or(Accent::DEFAULT);
    format!(
        ":root{{--accent:{};--accent-hover:{};--on-accent:{}}}",
        accent.css(),
        accent.darker().css(),
        accent.text_on()
    )
}

fn sha256_source(text: &str) -> String {
    format!("'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes())))
}

/// `'sha256-…'` of the page's shared style sheet.
fn style_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| sha256_source(CSS))
}

/// The page's Content-Security-Policy for one app: nothing but its two style elements (by
/// hash) and its logo, forms only to itself and to where a confirmed person may be sent on,
/// never in a frame.
pub fn content_security_policy(brand: &Brand, redirects: &RedirectPolicy) -> String {
    let mut form_action = String::from("'self'");
    for source in redirects.form_action_sources() {
        form_action.push(' ');
        form_action.push_str(&source);
    }
    let images = match crate::clients::logo_origin(brand) {
        Some(origin) => format!("; img-src {origin}"),
        None => String::new(),
    };
    format!(
        "default-src 'none'; style-src {} {}{images}; form-action {form_action}; frame-ancestors 'none'; base-uri 'none'",
        style_hash(),
        sha256_source(&brand_style(brand)),
    )
}

/// Headers every answer of the page carries, pages and redirects alike.
pub fn protect(response: &mut Response<Body>, csp: &str) {
    let headers = response.headers_mut();
    let pairs = [
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
    ];
    for (name, value) in pairs {
        headers.insert(name, http::HeaderValue::from_static(value));
    }
    if let Ok(value) = http::HeaderValue::from_str(csp) {
        headers.insert("content-security-policy", value);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    const EVERY_PAGE: &[Page] = &Page::ALL;

    fn brand(app_name: &str) -> Brand {
        Brand::named(app_name)
    }

    fn render(
        brand: &Brand,
        page: Page,
        locale: &'static str,
        form: Option<PageForm<'_>>,
        continue_to: Option<&str>,
        address: Option<&MaskedAddress>,
    ) -> Result<String, String> {
        PageRenderer::default().render(PageView {
            page,
            locale,
            brand,
            form,
            continue_to,
            address,
            typed_address: None,
        })
    }

    #[test]
    fn every_locale_has_every_string_of_english_and_no_other() {
        let compiled = string_tables().unwrap().clone();
        let english: BTreeSet<&String> = compiled["en"].keys().collect();
        for locale in PAGE_LOCALES {
            let keys: BTreeSet<&String> = compiled[locale].keys().collect();
            assert_eq!(keys, english, "{locale}");
            assert!(compiled[locale].values().all(|text| !text.trim().is_empty()), "{locale}");
        }
        for page in EVERY_PAGE {
            assert!(english.contains(&format!("{}.title", page.key())), "{page:?}");
            if page.button().is_some() {
                assert!(english.contains(&format!("{}.button", page.key())), "{page:?}");
            }
        }
    }

    #[test]
    fn every_page_renders_in_every_locale_in_that_language() {
        let brand = brand("Acme");
        for locale in PAGE_LOCALES {
            let mut titles = BTreeSet::new();
            for page in EVERY_PAGE {
                let form = PageForm { action: "confirm", token: "t.o.k", redirect_to: None };
                let html = render(&brand, *page, locale, Some(form), None, None).unwrap();
                assert!(html.contains(&format!("<html lang=\"{locale}\">")), "{locale} {page:?}");
                let buttons = page.button().is_some() || page.asks_for_code();
                assert_eq!(html.contains("<button type=\"submit\">"), buttons, "{locale} {page:?}");
                assert_eq!(html.contains(r#"autocomplete="one-time-code""#), page.asks_for_code(), "{locale} {page:?}");
                let title = html.split("<h1 id=\"page-title\">").nth(1).unwrap().split("</h1>").next().unwrap();
                titles.insert(title.to_owned());
            }
            assert_eq!(titles.len(), EVERY_PAGE.len(), "{locale}: every outcome says something different");
        }
        let french = render(&brand, Page::Confirmed, "fr", None, None, None).unwrap();
        assert!(french.contains("Votre adresse e-mail est confirmée"));
    }

    #[test]
    fn the_app_name_and_the_token_are_escaped() {
        let brand = brand("<Acme & Co>");
        let form =
            PageForm { action: "confirm", token: "\"><script>", redirect_to: Some("https://a.example/?a=1&b=2") };
        let html = render(&brand, Page::AskToConfirm, "en", Some(form), None, None).unwrap();
        assert!(html.contains("&lt;Acme &amp; Co&gt;") && !html.contains("<Acme"));
        assert!(!html.contains("\"><script>"));
        assert!(html.contains("value=\"https:&#x2f;&#x2f;a.example&#x2f;?a=1&amp;b=2\""), "{html}");
    }

    fn masked(typed: &str) -> MaskedAddress {
        MaskedAddress::of(&crate::domain::EmailAddress::parse(typed).unwrap())
    }

    #[test]
    fn the_pages_about_the_address_name_it_masked_in_every_locale() {
        let brand = brand("Acme");
        let address = masked("ada@example.com");
        for locale in PAGE_LOCALES {
            for page in EVERY_PAGE {
                let html = render(&brand, *page, locale, None, None, Some(&address)).unwrap();
                assert_eq!(
                    html.contains("<strong>a•••@example.com</strong>"),
                    page.shows_address(),
                    "{locale} {page:?}"
                );
                assert!(!html.contains("ada@"), "{locale} {page:?}");
            }
        }
        let english = render(&brand, Page::Confirmed, "en", None, None, Some(&address)).unwrap();
        assert!(english.contains("E-mail address: <strong>a•••@example.com</strong>"), "{english}");
        let french = render(&brand, Page::AskToConfirm, "fr", None, None, Some(&address)).unwrap();
        assert!(french.contains("Adresse e-mail : <strong>a•••@example.com</strong>"), "{french}");
    }

    #[test]
    fn the_throttle_page_says_when_to_ask_again_and_that_the_last_link_works() {
        let brand = brand("Acme");
        let page = |seconds, locale| {
            render(&brand, Page::TooManyRequests { retry_after_seconds: seconds }, locale, None, None, None).unwrap()
        };
        assert!(page(300, "en").contains("You can ask for a new link again in 5 minutes."), "{}", page(300, "en"));
        assert!(page(300, "en").contains("the last link we sent you still works"));
        assert!(page(45, "en").contains("again in 45 seconds."));
        assert!(page(3_600, "de").contains("Sie können in 1 Stunde wieder"));
        assert!(page(120, "fr").contains("demander un nouveau lien dans 2 minutes."));
        assert!(page(1, "es").contains("dentro de 1 segundo."));
        assert!(page(2 * 86_400, "it").contains("tra 2 giorni."));
        assert!(page(300, "pt").contains("Você poderá solicitar um novo link em 5 minutos."));
        assert!(page(3_600, "nl").contains("Je kunt over 1 uur weer een nieuwe link aanvragen."));
        assert!(page(120, "pl").contains("O nowy link możesz poprosić ponownie za 2 minuty."));
        assert!(page(300, "pl").contains("ponownie za 5 minut."));
        assert!(page(1, "pl").contains("ponownie za 1 sekundę."));
        assert!(page(300, "ja").contains("新しいリンクは5分後に再度リクエストできます。"));
        assert!(page(45, "zh-Hans").contains("您可以在 45 秒后重新申请新链接。"));
        for locale in PAGE_LOCALES {
            assert!(!page(59, locale).contains("{retry_in}"), "{locale}");
        }
    }

    #[test]
    fn the_page_has_a_dark_scheme_under_its_hashed_style() {
        let html = render(&brand("Acme"), Page::AskToConfirm, "en", None, None, None).unwrap();
        assert!(html.contains(r#"<meta name="color-scheme" content="light dark">"#));
        let style = html.split("<style>").nth(1).unwrap().split("</style>").next().unwrap();
        assert!(style.contains("color-scheme:light dark") && style.contains("@media (prefers-color-scheme:dark)"));
    }

    fn choose_locale_en(preferred: &[&Locale], accept_language: Option<&str>) -> &'static str {
        choose_locale(preferred, accept_language, "en")
    }

    #[test]
    fn the_language_comes_from_the_link_or_user_then_the_browser_then_the_default() {
        let fr_ca = Locale::parse("fr-CA").unwrap();
        let ko = Locale::parse("ko").unwrap();
        assert_eq!(choose_locale_en(&[&fr_ca], Some("de-DE,de;q=0.9")), "fr");
        assert_eq!(choose_locale_en(&[&ko], Some("de-AT,en;q=0.5")), "de");
        assert_eq!(choose_locale_en(&[], Some("es-MX, en;q=0.8")), "es");
        assert_eq!(choose_locale_en(&[], Some("ja, zh;q=0.8")), "ja");
        assert_eq!(choose_locale_en(&[], Some("ko, zh;q=0.8")), "zh-Hans");
        assert_eq!(choose_locale_en(&[], Some("zh-TW, zh;q=0.8")), "zh-Hans", "the reader accepts plain zh");
        assert_eq!(choose_locale_en(&[], Some("zh-HK, ja;q=0.5")), "ja");
        assert_eq!(choose_locale_en(&[], Some("zh-Hant-TW, en;q=0.5")), "en");
        assert_eq!(choose_locale_en(&[], Some("pt-PT, pt;q=0.9")), "pt");
        assert_eq!(choose_locale_en(&[], Some("nl-BE")), "nl");
        assert_eq!(choose_locale_en(&[], None), "en");
        assert_eq!(choose_locale(&[], Some("garbage;;,"), "it"), "it");
    }

    #[test]
    fn the_policy_allows_the_inline_style_by_its_hash_and_nothing_else() {
        let csp = content_security_policy(
            &brand("Acme"),
            &RedirectPolicy::parse(None, &["https://app.example.com"]).unwrap(),
        );
        assert!(csp.starts_with("default-src 'none'; style-src 'sha256-"));
        assert!(csp.contains("form-action 'self' https://app.example.com;"));
        assert!(csp.contains("frame-ancestors 'none'"));
        let html = render(&brand("Acme"), Page::Invalid, "en", None, None, None).unwrap();
        let style = html.split("<style>").nth(1).unwrap().split("</style>").next().unwrap();
        let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(style.as_bytes()));
        assert!(csp.contains(&hash), "the hash covers the style exactly as served");
    }

    fn acme_brand() -> Brand {
        Brand {
            app_name: "Acme".to_owned(),
            logo_url: Some("https://cdn.acme.example/logo.png".to_owned()),
            accent: Some(crate::clients::Accent::parse("#0f766e").unwrap()),
            support: Some(crate::clients::Support::parse("help@acme.example").unwrap()),
            footer: Some("Acme Ltd · 1 Main Street".to_owned()),
            app_url: Some("https://acme.example/app".to_owned()),
        }
    }

    #[test]
    fn the_page_wears_the_apps_brand_under_a_policy_that_allows_exactly_it() {
        let brand = acme_brand();
        let html = render(&brand, Page::Confirmed, "en", None, Some("https://acme.example/app"), None).unwrap();
        assert!(
            html.contains(r#"<img class="logo" src="https:&#x2f;&#x2f;cdn.acme.example&#x2f;logo.png" alt="Acme">"#),
            "{html}"
        );
        assert!(!html.contains(r#"<p class="app">"#), "the logo replaces the name");
        assert!(html.contains("--accent:#0f766e"));
        assert!(html.contains(r#"Need help? <a href="mailto:help@acme.example">Contact Acme support</a>"#), "{html}");
        assert!(html.contains("<p>Acme Ltd · 1 Main Street</p>"));
        assert!(html.contains(">Continue to Acme</a>"));

        let csp = content_security_policy(&brand, &RedirectPolicy::default());
        assert!(csp.contains("img-src https://cdn.acme.example;"), "{csp}");
        for style in html.split("<style>").skip(1) {
            let style = style.split("</style>").next().unwrap();
            let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(style.as_bytes()));
            assert!(csp.contains(&hash), "every style element is allowed by its hash");
        }
        let plain = content_security_policy(&Brand::named("Acme"), &RedirectPolicy::default());
        assert!(!plain.contains("img-src") && plain != csp, "{plain}");
        let french = render(&brand, Page::Confirmed, "fr", None, None, None).unwrap();
        assert!(french.contains("Besoin d'aide ?") || french.contains("Besoin d&#x27;aide ?"), "{french}");
    }
}
