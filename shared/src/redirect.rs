//! Where a confirmed person may be sent next: the app's web pages (any path on an allowed
//! origin) and its mobile deep links (`myapp://confirmed`, by prefix), nothing else.

use crate::config::{self, ConfigError, Source};

/// Schemes a browser runs or reads locally instead of handing to an app: never a target.
const FORBIDDEN_SCHEMES: &[&str] =
    &["javascript", "data", "vbscript", "file", "blob", "about", "filesystem", "view-source", "ws", "wss", "ftp"];

/// The longest target followed: browsers and proxies cut URLs and headers beyond a few KB.
pub const MAX_TARGET_LENGTH: usize = 2_000;

/// One entry of an allow-list.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Allowed {
    /// `https://app.example.com`: any address on this origin.
    Origin(String),
    /// `myapp://confirmed`: this address and any below it (`/…`, `?…`, `#…`).
    DeepLink(String),
}

/// Where to send a confirmed person: a default, or an address the link carries when it is on
/// the allow-list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedirectPolicy {
    default: Option<String>,
    allowed: Vec<Allowed>,
}

/// A redirect setting that does not parse, with the reason in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidRedirect(String);

impl RedirectPolicy {
    /// `CONFIRMED_REDIRECT_URL` and `CONFIRMED_REDIRECT_ALLOWED_ORIGINS` (comma-separated).
    pub fn from_config(source: &dyn Source) -> Result<Self, ConfigError> {
        const URL: &str = "CONFIRMED_REDIRECT_URL";
        const ORIGINS: &str = "CONFIRMED_REDIRECT_ALLOWED_ORIGINS";
        let default = config::optional(source, URL);
        let allowed = config::optional(source, ORIGINS).unwrap_or_default();
        let allowed: Vec<&str> = allowed.split(',').collect();
        let default = Self::parse(default.as_deref(), &[]).map_err(|err| ConfigError::invalid(URL, err))?.default;
        let allowed = Self::parse(None, &allowed).map_err(|err| ConfigError::invalid(ORIGINS, err))?.allowed;
        Ok(Self { default, allowed })
    }

    /// A default target and an allow-list of origins (`https://app.example.com`) and deep-link
    /// prefixes (`myapp://confirmed`); blank entries are skipped.
    pub fn parse(default: Option<&str>, allowed: &[&str]) -> Result<Self, InvalidRedirect> {
        let default = match default.map(str::trim).filter(|url| !url.is_empty()) {
            None => None,
            Some(url) => {
                target_kind(url).ok_or_else(|| {
                    InvalidRedirect(format!(
                        "{url:?} is not an absolute http(s) URL or an app link such as myapp://confirmed"
                    ))
                })?;
                Some(url.to_owned())
            }
        };
        let mut entries = Vec::new();
        for entry in allowed.iter().map(|entry| entry.trim()).filter(|entry| !entry.is_empty()) {
            let bare = entry.trim_end_matches('/');
            let parsed = match origin_of(bare) {
                Some(origin) if origin.eq_ignore_ascii_case(bare) || origin_without_default_port(bare) == origin => {
                    Some(Allowed::Origin(origin))
                }
                Some(_) => None,
                None => deep_link_of(entry).map(Allowed::DeepLink),
            };
            entries.push(parsed.ok_or_else(|| {
                InvalidRedirect(format!(
                    "{entry:?} is neither an origin such as https://app.example.com nor an app link such as myapp://confirmed"
                ))
            })?);
        }
        entries.sort();
        entries.dedup();
        Ok(Self { default, allowed: entries })
    }

    /// Whether `target` is on the allow-list (and short enough for a Location header and a link).
    pub fn allows(&self, target: &str) -> bool {
        let target = target.trim();
        if target.len() > MAX_TARGET_LENGTH {
            return false;
        }
        match target_kind(target) {
            Some(TargetKind::Web(origin)) => self.allowed.contains(&Allowed::Origin(origin)),
            Some(TargetKind::DeepLink) => self.allowed.iter().any(|allowed| match allowed {
                Allowed::DeepLink(prefix) => under_prefix(target, prefix),
                Allowed::Origin(_) => false,
            }),
            None => false,
        }
    }

    /// Where to send a confirmed person, if anywhere: the requested target when allowed, else
    /// the default.
    pub fn target<'a>(&'a self, requested: Option<&'a str>) -> Option<&'a str> {
        requested.map(str::trim).filter(|url| self.allows(url)).or(self.default.as_deref())
    }

    /// What a confirm form may end up at, for the page's `form-action` policy: the origins,
    /// and the schemes of the app links (a policy cannot name a path of a custom scheme).
    pub fn form_action_sources(&self) -> Vec<String> {
        let default = self.default.as_deref().and_then(|url| match target_kind(url)? {
            TargetKind::Web(origin) => Some(origin),
            TargetKind::DeepLink => scheme_source(url),
        });
        let mut sources: Vec<String> = default.into_iter().collect();
        sources.extend(self.allowed.iter().filter_map(|allowed| match allowed {
            Allowed::Origin(origin) => Some(origin.clone()),
            Allowed::DeepLink(prefix) => scheme_source(prefix),
        }));
        sources.sort();
        sources.dedup();
        sources
    }
}

enum TargetKind {
    Web(String),
    DeepLink,
}

fn target_kind(url: &str) -> Option<TargetKind> {
    match origin_of(url) {
        Some(origin) => Some(TargetKind::Web(origin)),
        None => deep_link_of(url).map(|_| TargetKind::DeepLink),
    }
}

/// `scheme://host[:port]` of an absolute http(s) URL as a browser parses it (WHATWG, by
/// `url`), lower-cased and without a default port; `None` for anything else, including URLs
/// with credentials and, stricter than a browser, any whitespace, control character or
/// backslash, which browsers silently repair into another address.
pub fn origin_of(url: &str) -> Option<String> {
    if has_unsafe_characters(url) {
        return None;
    }
    let parsed = url::Url::parse(url).ok()?;
    let credentials = !parsed.username().is_empty() || parsed.password().is_some();
    if credentials || !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return None;
    }
    Some(parsed.origin().ascii_serialization())
}

/// An app's own link (`myapp://confirmed`, `com.example.app:/done`): an absolute URL of a
/// scheme that no browser runs itself, as typed (only the scheme lower-cased).
fn deep_link_of(url: &str) -> Option<String> {
    if has_unsafe_characters(url) {
        return None;
    }
    let parsed = url::Url::parse(url).ok()?;
    let scheme = parsed.scheme();
    let credentials = !parsed.username().is_empty() || parsed.password().is_some();
    if credentials || matches!(scheme, "http" | "https") || FORBIDDEN_SCHEMES.contains(&scheme) {
        return None;
    }
    // Something after the scheme: `myapp:` alone names no place in the app.
    let rest = url.get(scheme.len() + 1..).unwrap_or_default();
    if rest.trim_start_matches('/').is_empty() {
        return None;
    }
    Some(format!("{scheme}:{rest}"))
}

fn has_unsafe_characters(url: &str) -> bool {
    url.is_empty() || url.chars().any(|c| c.is_whitespace() || c.is_control() || c == '\\')
}

/// `myapp://confirmed?x` is under `myapp://confirmed`; `myapp://confirmedevil` is not.
fn under_prefix(target: &str, prefix: &str) -> bool {
    let (Some(target_scheme), Some(prefix_scheme)) = (target.split_once(':'), prefix.split_once(':')) else {
        return false;
    };
    if !target_scheme.0.eq_ignore_ascii_case(prefix_scheme.0) {
        return false;
    }
    let (target, prefix) = (target_scheme.1, prefix_scheme.1.trim_end_matches('/'));
    match target.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with(['/', '?', '#']),
        None => false,
    }
}

/// `myapp:` for a policy's source list.
fn scheme_source(url: &str) -> Option<String> {
    url::Url::parse(url).ok().map(|parsed| format!("{}:", parsed.scheme()))
}

fn origin_without_default_port(entry: &str) -> String {
    entry.to_ascii_lowercase().trim_end_matches(":443").trim_end_matches(":80").to_owned()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn policy(pairs: &[(&str, &str)]) -> Result<RedirectPolicy, ConfigError> {
        let env: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        RedirectPolicy::from_config(&env)
    }

    #[test]
    fn origins_are_scheme_host_and_port_and_nothing_that_could_fool_a_comparison() {
        assert_eq!(origin_of("https://App.Example.com/welcome?x=1").as_deref(), Some("https://app.example.com"));
        assert_eq!(origin_of("https://app.example.com:443/").as_deref(), Some("https://app.example.com"));
        assert_eq!(origin_of("http://127.0.0.1:3000/x").as_deref(), Some("http://127.0.0.1:3000"));
        for bad in [
            "/welcome",
            "//evil.example/x",
            "javascript:alert(1)",
            "https://app.example.com@evil.example/",
            "https://evil.example\\@app.example.com/",
            "https://app.example.com /x",
            "ftp://app.example.com/",
            "",
        ] {
            assert_eq!(origin_of(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_requested_redirect_is_followed_only_to_an_allowed_origin() {
        let policy = policy(&[
            ("CONFIRMED_REDIRECT_URL", "https://app.example.com/welcome"),
            ("CONFIRMED_REDIRECT_ALLOWED_ORIGINS", "https://app.example.com, https://beta.example.com/"),
        ])
        .unwrap();
        assert_eq!(policy.target(None), Some("https://app.example.com/welcome"));
        assert_eq!(policy.target(Some("https://beta.example.com/hi")), Some("https://beta.example.com/hi"));
        assert_eq!(policy.target(Some("https://evil.example/hi")), Some("https://app.example.com/welcome"));
        assert_eq!(
            policy.target(Some("https://beta.example.com.evil.example/")),
            Some("https://app.example.com/welcome")
        );
        assert_eq!(policy.form_action_sources(), ["https://app.example.com", "https://beta.example.com"]);

        let unconfigured = self::policy(&[]).unwrap();
        assert_eq!(unconfigured.target(Some("https://app.example.com/")), None, "no allow-list, no redirect");
    }

    #[test]
    fn app_links_are_allowed_by_prefix_and_never_a_scheme_a_browser_runs() {
        let policy = RedirectPolicy::parse(None, &["myapp://confirmed", "com.example.app:/done"]).unwrap();
        for good in
            ["myapp://confirmed", "myapp://confirmed/welcome?x=1", "MYAPP://confirmed#top", "com.example.app:/done"]
        {
            assert!(policy.allows(good), "{good}");
        }
        for bad in [
            "myapp://confirmedevil",
            "myapp://other",
            "otherapp://confirmed",
            "myapp://confirmed\\x",
            "myapp://user@confirmed",
            "https://confirmed",
            "javascript://confirmed",
        ] {
            assert!(!policy.allows(bad), "{bad}");
        }
        assert_eq!(policy.form_action_sources(), ["com.example.app:", "myapp:"]);
        for bad in ["javascript:alert(1)", "data:text/html,x", "myapp:", "file:///etc/passwd", "not a url"] {
            assert!(RedirectPolicy::parse(None, &[bad]).is_err(), "{bad}");
            assert!(RedirectPolicy::parse(Some(bad), &[]).is_err(), "{bad}");
        }
        assert!(RedirectPolicy::parse(Some("myapp://confirmed"), &[]).is_ok());
    }

    #[test]
    fn malformed_redirect_settings_stop_the_start() {
        let err = policy(&[("CONFIRMED_REDIRECT_URL", "/welcome")]).unwrap_err().to_string();
        assert!(err.contains("CONFIRMED_REDIRECT_URL"), "{err}");
        let err = policy(&[("CONFIRMED_REDIRECT_ALLOWED_ORIGINS", "https://app.example.com/path")]).unwrap_err();
        assert!(err.to_string().contains("CONFIRMED_REDIRECT_ALLOWED_ORIGINS"), "{err}");
    }
}
