//! Language tags, and the choice of the language a mail or page is written in.

use std::fmt;

/// A well-formed language tag such as `fr` or `fr-CA` (subset of BCP 47), stored in its
/// canonical case: language lower-case, two-letter region upper-case.
#[derive(Clone, PartialEq, Eq)]
pub struct Locale(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a language tag such as 'en' or 'fr-CA'")]
pub struct InvalidLocale;

impl Locale {
    pub fn parse(input: &str) -> Result<Self, InvalidLocale> {
        let mut parts = input.trim().split(['-', '_']);
        let language = parts.next().unwrap_or_default();
        if !(2..=3).contains(&language.len()) || !language.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(InvalidLocale);
        }
        let mut canonical = language.to_ascii_lowercase();
        for subtag in parts {
            if subtag.is_empty() || subtag.len() > 8 || !subtag.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(InvalidLocale);
            }
            canonical.push('-');
            if subtag.len() == 2 && subtag.chars().all(|c| c.is_ascii_alphabetic()) {
                canonical.push_str(&subtag.to_ascii_uppercase());
            } else {
                canonical.push_str(&subtag.to_ascii_lowercase());
            }
        }
        Ok(Self(canonical))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// This tag and each shorter prefix of it: `zh-Hant-TW`, `zh-hant`, `zh`. A Chinese tag
    /// that names no script is also tried, right after itself, with the script its region
    /// writes (`zh-CN` → `zh-hans-CN`, `zh-hans`, `zh`; `zh` → `zh`, `zh-hans`): browsers send
    /// `zh-CN` or `zh` where we ship `zh-Hans`, and a `zh-TW` reader must never be given
    /// Simplified characters.
    pub fn fallbacks(&self) -> Vec<String> {
        let mut tags: Vec<String> = prefixes(&self.0).map(str::to_owned).collect();
        if let Some(scripted) = self.with_likely_script() {
            let added: Vec<String> =
                prefixes(&scripted).filter(|tag| !tags.iter().any(|t| t == tag)).map(str::to_owned).collect();
            tags.splice(1..1, added);
        }
        tags
    }

    /// A Chinese tag with the script its region writes inserted (`zh-TW` → `zh-hant-TW`), as
    /// CLDR's likely subtags have it: Traditional in Taiwan, Hong Kong and Macau, Simplified
    /// elsewhere. `None` for other languages, for a tag that names its script, and for one
    /// whose next subtag is not a region (`zh-yue`: Cantonese is not Mandarin in Simplified).
    fn with_likely_script(&self) -> Option<String> {
        let (language, rest) = self.0.split_once('-').unwrap_or((&self.0, ""));
        if language != "zh" {
            return None;
        }
        let first = rest.split('-').next().unwrap_or_default();
        let is_region = (first.len() == 2 && first.chars().all(|c| c.is_ascii_alphabetic()))
            || (first.len() == 3 && first.chars().all(|c| c.is_ascii_digit()));
        if !rest.is_empty() && !is_region {
            return None;
        }
        let script = if matches!(first, "TW" | "HK" | "MO") { "hant" } else { "hans" };
        Some(if rest.is_empty() { format!("zh-{script}") } else { format!("zh-{script}-{rest}") })
    }
}

/// `tag` and each shorter prefix of it, down to the language.
fn prefixes(tag: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(Some(tag), |current| current.rsplit_once('-').map(|(prefix, _)| prefix))
}

impl Locale {
    /// The languages of an `Accept-Language` header, most preferred first (by `q`, then by
    /// order); `*`, malformed entries and `q=0` are left out.
    pub fn accepted(header: &str) -> Vec<Locale> {
        let mut weighted: Vec<(u16, usize, Locale)> = header
            .split(',')
            .enumerate()
            .filter_map(|(position, entry)| {
                let mut parts = entry.split(';').map(str::trim);
                let tag = parts.next().filter(|tag| *tag != "*")?;
                let quality = parts
                    .find_map(|param| param.strip_prefix("q=").or_else(|| param.strip_prefix("Q=")))
                    .map_or(Some(1000), |q| q.parse::<f32>().ok().map(|q| (q.clamp(0.0, 1.0) * 1000.0) as u16))?;
                let locale = Locale::parse(tag).ok()?;
                (quality > 0).then_some((quality, position, locale))
            })
            .collect();
        weighted.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        weighted.into_iter().map(|(_, _, locale)| locale).collect()
    }
}

impl fmt::Debug for Locale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Locale({})", self.0)
    }
}

impl fmt::Display for Locale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Picks one of the shipped languages for a list of preferences, most preferred first.
pub struct LocaleNegotiation<'a> {
    pub available: &'a [&'static str],
    pub default: &'static str,
}

impl LocaleNegotiation<'_> {
    /// The first preference that is shipped, trying each preference's fallbacks (`fr-CA` →
    /// `fr`, `zh-CN` → `zh-Hans`) before the next preference; the default when none is.
    pub fn choose<'l>(&self, preferences: impl IntoIterator<Item = &'l Locale>) -> &'static str {
        preferences
            .into_iter()
            .flat_map(Locale::fallbacks)
            .find_map(|tag| self.available.iter().copied().find(|shipped| shipped.eq_ignore_ascii_case(&tag)))
            .unwrap_or(self.default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIPPED: LocaleNegotiation<'static> =
        LocaleNegotiation { available: &["en", "fr", "de", "pt-BR"], default: "en" };

    fn locale(tag: &str) -> Locale {
        Locale::parse(tag).unwrap()
    }

    #[test]
    fn tags_are_stored_in_canonical_case() {
        assert_eq!(locale("FR_ca").as_str(), "fr-CA");
        assert_eq!(locale("zh-Hant-TW").as_str(), "zh-hant-TW");
    }

    #[test]
    fn malformed_tags_are_rejected() {
        for bad in ["", "e", "english", "en--US", "en-", "1n", "en-toolongsubtag", "en US"] {
            assert_eq!(Locale::parse(bad), Err(InvalidLocale), "{bad:?}");
        }
    }

    #[test]
    fn a_regional_variant_falls_back_to_its_language_then_to_the_default() {
        assert_eq!(SHIPPED.choose([&locale("fr-CA")]), "fr");
        assert_eq!(SHIPPED.choose([&locale("fr")]), "fr");
        assert_eq!(SHIPPED.choose([&locale("ja-JP")]), "en");
        assert_eq!(SHIPPED.choose([]), "en");
    }

    #[test]
    fn an_exact_regional_match_wins_over_its_language() {
        assert_eq!(SHIPPED.choose([&locale("pt-br")]), "pt-BR");
    }

    #[test]
    fn later_preferences_are_tried_when_earlier_ones_are_not_shipped() {
        assert_eq!(SHIPPED.choose([&locale("ja"), &locale("de-AT")]), "de");
    }

    #[test]
    fn accept_language_is_read_in_order_of_preference() {
        let tags = |header: &str| Locale::accepted(header).iter().map(|l| l.as_str().to_owned()).collect::<Vec<_>>();
        assert_eq!(tags("de;q=0.5, fr-CA, en;q=0.8, *;q=0.1"), ["fr-CA", "en", "de"]);
        assert_eq!(tags("it;q=0, es"), ["es"]);
        assert_eq!(tags("garbage!!, ;q=1, pt-BR;q=abc"), Vec::<String>::new());
        assert_eq!(tags(""), Vec::<String>::new());
    }

    #[test]
    fn fallbacks_walk_from_the_full_tag_to_the_language() {
        let tag = locale("zh-Hant-TW");
        assert_eq!(tag.fallbacks(), ["zh-hant-TW", "zh-hant", "zh"]);
    }

    #[test]
    fn a_chinese_tag_without_a_script_is_also_tried_with_its_regions_script() {
        assert_eq!(locale("zh").fallbacks(), ["zh", "zh-hans"]);
        assert_eq!(locale("zh-CN").fallbacks(), ["zh-CN", "zh-hans-CN", "zh-hans", "zh"]);
        assert_eq!(locale("zh-TW").fallbacks(), ["zh-TW", "zh-hant-TW", "zh-hant", "zh"]);
        assert_eq!(locale("zh-yue").fallbacks(), ["zh-yue", "zh"]);
        assert_eq!(locale("pt-BR").fallbacks(), ["pt-BR", "pt"]);
    }

    const TEN: LocaleNegotiation<'static> = LocaleNegotiation {
        available: &["en", "fr", "de", "es", "it", "pt", "nl", "pl", "ja", "zh-Hans"],
        default: "en",
    };

    #[test]
    fn mainland_and_singapore_chinese_get_simplified_chinese() {
        for tag in ["zh-CN", "zh-SG", "zh-Hans", "zh-Hans-CN", "zh", "zh_cn", "zh-MY"] {
            assert_eq!(TEN.choose([&locale(tag)]), "zh-Hans", "{tag}");
        }
    }

    #[test]
    fn traditional_chinese_never_gets_simplified_chinese() {
        for tag in ["zh-TW", "zh-HK", "zh-MO", "zh-Hant", "zh-Hant-TW", "zh-Hant-HK", "zh-yue-HK"] {
            assert_eq!(TEN.choose([&locale(tag)]), "en", "{tag}: the default");
            assert_eq!(TEN.choose([&locale(tag), &locale("ja")]), "ja", "{tag}: the next preference");
        }
    }

    #[test]
    fn portuguese_and_dutch_regions_fall_back_to_their_language() {
        assert_eq!(TEN.choose([&locale("pt-BR")]), "pt");
        assert_eq!(TEN.choose([&locale("pt-PT")]), "pt");
        assert_eq!(TEN.choose([&locale("nl-BE")]), "nl");
        assert_eq!(TEN.choose([&locale("pl-PL")]), "pl");
        assert_eq!(TEN.choose([&locale("ja-JP")]), "ja");
    }
}
