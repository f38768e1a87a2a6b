//! How long, in words: a link's lifetime in the mail ("valid for 30 minutes") and the wait
//! before asking again on the confirm page ("in 5 minutes"), in each shipped language, each
//! count in the plural form its language's CLDR rules give it (`icu_plurals`).
//!
//! The unit follows the size: seconds (only for a wait) under a minute, minutes under an hour,
//! hours under two days, days beyond. A value that is not whole in its unit is told in the unit
//! below ("90 minutes", "60 hours"), rounded there: down for a lifetime, so the mail never
//! promises more than the link gives, and up for a wait, so the page never sends a person back
//! too early. A rounded value that is whole in a larger unit is said in it (a wait of 59 min
//! 59 s is "1 hour", not "60 minutes"). A lifetime under a minute is told as "1 minute", the
//! smallest the mail names.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use icu_plurals::{PluralCategory, PluralRules};

/// The phrase tables, one per shipped language (`shared/templates/durations/<locale>.json`).
const TABLES: &[(&str, &str)] = &[
    ("en", include_str!("../templates/durations/en.json")),
    ("fr", include_str!("../templates/durations/fr.json")),
    ("de", include_str!("../templates/durations/de.json")),
    ("es", include_str!("../templates/durations/es.json")),
    ("it", include_str!("../templates/durations/it.json")),
    ("pt", include_str!("../templates/durations/pt.json")),
    ("nl", include_str!("../templates/durations/nl.json")),
    ("pl", include_str!("../templates/durations/pl.json")),
    ("ja", include_str!("../templates/durations/ja.json")),
    ("zh-Hans", include_str!("../templates/durations/zh-Hans.json")),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Unit {
    Second,
    Minute,
    Hour,
    Day,
}

impl Unit {
    pub const ALL: [Unit; 4] = [Unit::Second, Unit::Minute, Unit::Hour, Unit::Day];

    fn seconds(self) -> u64 {
        match self {
            Unit::Second => 1,
            Unit::Minute => 60,
            Unit::Hour => 3_600,
            Unit::Day => 86_400,
        }
    }

    fn below(self) -> Unit {
        match self {
            Unit::Second | Unit::Minute => Unit::Second,
            Unit::Hour => Unit::Minute,
            Unit::Day => Unit::Hour,
        }
    }

    fn key(self) -> &'static str {
        match self {
            Unit::Second => "second",
            Unit::Minute => "minute",
            Unit::Hour => "hour",
            Unit::Day => "day",
        }
    }

    /// The unit a span of this size is told in, before looking at whether it is whole.
    fn for_size(seconds: u64) -> Unit {
        match seconds {
            0..60 => Unit::Second,
            60..3_600 => Unit::Minute,
            3_600..172_800 => Unit::Hour,
            _ => Unit::Day,
        }
    }
}

/// The sentence a span of time is put in, each with its own table entries: German says
/// "30 Minuten gültig" but "in 30 Minuten", and "2 Tage gültig" but "in 2 Tagen".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phrase {
    /// How long a link works, as the mail says it (`valid_for.<unit>.<plural>`).
    ValidFor,
    /// When a person may ask again, as the page says it (`retry_in.<unit>.<plural>`).
    RetryIn,
}

impl Phrase {
    pub const ALL: [Phrase; 2] = [Phrase::ValidFor, Phrase::RetryIn];

    fn key(self) -> &'static str {
        match self {
            Phrase::ValidFor => "valid_for",
            Phrase::RetryIn => "retry_in",
        }
    }

    /// The units this phrase may be told in: a lifetime is never told in seconds.
    pub fn units(self) -> &'static [Unit] {
        match self {
            Phrase::ValidFor => &[Unit::Minute, Unit::Hour, Unit::Day],
            Phrase::RetryIn => &Unit::ALL,
        }
    }
}

/// A count of one unit: what a phrase says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub count: u64,
    pub unit: Unit,
}

impl Span {
    /// A link's lifetime, rounded down (see the module's rules), at least 1 minute.
    pub fn lifetime(lifetime: Duration) -> Span {
        Self::told(lifetime.as_secs(), Unit::Minute, u64::div_euclid)
    }

    /// A wait, rounded up (see the module's rules), at least 1 second.
    pub fn wait(seconds: u64) -> Span {
        Self::told(seconds, Unit::Second, u64::div_ceil)
    }

    /// `seconds` told in words, then told again once rounded: a wait of 3599 s rounds up to
    /// 60 minutes, which is said "1 hour".
    fn told(seconds: u64, smallest: Unit, round: fn(u64, u64) -> u64) -> Span {
        let first = Self::rounded(seconds, smallest, round);
        Self::rounded(first.count.saturating_mul(first.unit.seconds()), smallest, round)
    }

    /// `seconds` in the unit its size calls for (not below `smallest`) when whole, else in the
    /// unit below it, but never below minutes, rounded there by `round`; at least 1.
    fn rounded(seconds: u64, smallest: Unit, round: fn(u64, u64) -> u64) -> Span {
        let unit = Unit::for_size(seconds).max(smallest);
        let unit = if seconds.is_multiple_of(unit.seconds()) || unit <= Unit::Minute { unit } else { unit.below() };
        Span { count: round(seconds, unit.seconds()).max(1), unit }
    }
}

/// A language's phrases by key (`retry_in.minute.one`).
type Phrases = HashMap<String, String>;

/// The tables, parsed on first use.
fn languages() -> Result<&'static HashMap<&'static str, Phrases>, String> {
    static LANGUAGES: OnceLock<Result<HashMap<&'static str, Phrases>, String>> = OnceLock::new();
    LANGUAGES
        .get_or_init(|| {
            TABLES
                .iter()
                .map(|(locale, json)| {
                    let phrases = serde_json::from_str(json).map_err(|err| format!("{locale}: {err}"))?;
                    Ok((*locale, phrases))
                })
                .collect()
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The language's cardinal rules, from the data compiled into `icu_plurals` (a static
/// reference: building them allocates nothing, and they are not `Sync` to keep).
fn plural_rules(locale: &str) -> Result<PluralRules, String> {
    let tag = icu_locale_core::Locale::try_from_str(locale).map_err(|err| format!("{locale}: {err}"))?;
    PluralRules::try_new_cardinal((&tag).into()).map_err(|err| format!("{locale}: no plural rules: {err}"))
}

fn category_key(category: PluralCategory) -> &'static str {
    match category {
        PluralCategory::Zero => "zero",
        PluralCategory::One => "one",
        PluralCategory::Two => "two",
        PluralCategory::Few => "few",
        PluralCategory::Many => "many",
        PluralCategory::Other => "other",
    }
}

/// `span` in `phrase`, in a shipped locale: "30 minutes", "in 1 hour", "dans 2 jours".
pub fn say(locale: &str, phrase: Phrase, span: Span) -> Result<String, String> {
    let phrases = languages()?.get(locale).ok_or_else(|| format!("no durations for {locale}"))?;
    let category = category_key(plural_rules(locale)?.category_for(span.count));
    let key = format!("{}.{}.{category}", phrase.key(), span.unit.key());
    let template = phrases.get(&key).ok_or_else(|| format!("{locale}: no {key}"))?;
    Ok(template.replace("{n}", &span.count.to_string()))
}

/// How long a link works, for the mail: "30 minutes", "1 Stunde", "2 jours".
pub fn valid_for(locale: &str, lifetime: Duration) -> Result<String, String> {
    say(locale, Phrase::ValidFor, Span::lifetime(lifetime))
}

/// When a person may ask again, for the page: "in 5 minutes", "dans 45 secondes".
pub fn retry_in(locale: &str, seconds: u64) -> Result<String, String> {
    say(locale, Phrase::RetryIn, Span::wait(seconds))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    const MINUTE: u64 = 60;
    const HOUR: u64 = 3_600;
    const DAY: u64 = 86_400;

    fn lifetime(seconds: u64) -> String {
        valid_for("en", Duration::from_secs(seconds)).unwrap()
    }

    #[test]
    fn a_lifetime_is_told_in_the_unit_its_size_calls_for() {
        assert_eq!(lifetime(6), "1 minute", "under a minute: the smallest the mail names");
        assert_eq!(lifetime(0), "1 minute");
        assert_eq!(lifetime(MINUTE), "1 minute");
        assert_eq!(lifetime(30 * MINUTE), "30 minutes");
        assert_eq!(lifetime(HOUR), "1 hour");
        assert_eq!(lifetime(24 * HOUR), "24 hours");
        assert_eq!(lifetime(36 * HOUR), "36 hours");
        assert_eq!(lifetime(2 * DAY), "2 days");
        assert_eq!(lifetime(7 * DAY), "7 days");
    }

    #[test]
    fn a_lifetime_that_is_not_whole_is_told_in_the_unit_below_rounded_down() {
        assert_eq!(lifetime(90), "1 minute");
        assert_eq!(lifetime(HOUR + 30 * MINUTE), "90 minutes");
        assert_eq!(lifetime(HOUR + 90), "61 minutes");
        assert_eq!(lifetime(2 * DAY + 12 * HOUR), "60 hours");
        assert_eq!(lifetime(2 * DAY + 12 * HOUR + 59 * MINUTE), "60 hours");
    }

    #[test]
    fn a_wait_is_told_in_seconds_under_a_minute_and_rounded_up_above() {
        let wait = |seconds| retry_in("en", seconds).unwrap();
        assert_eq!(wait(0), "in 1 second");
        assert_eq!(wait(1), "in 1 second");
        assert_eq!(wait(45), "in 45 seconds");
        assert_eq!(wait(60), "in 1 minute");
        assert_eq!(wait(61), "in 2 minutes");
        assert_eq!(wait(5 * MINUTE), "in 5 minutes");
        assert_eq!(wait(HOUR), "in 1 hour");
        assert_eq!(wait(HOUR + 1), "in 61 minutes");
        assert_eq!(wait(HOUR - 1), "in 1 hour", "60 minutes, once rounded up");
        assert_eq!(wait(2 * HOUR - 1), "in 2 hours");
        assert_eq!(wait(2 * DAY - 1), "in 2 days");
        assert_eq!(wait(DAY), "in 24 hours");
        assert_eq!(wait(3 * DAY - 1), "in 3 days");
        assert_eq!(wait(3 * DAY - HOUR - 1), "in 71 hours");
    }

    #[test]
    fn german_puts_a_lifetime_in_the_accusative_and_a_wait_after_in() {
        assert_eq!(valid_for("de", Duration::from_secs(MINUTE)).unwrap(), "1 Minute");
        assert_eq!(valid_for("de", Duration::from_secs(30 * MINUTE)).unwrap(), "30 Minuten");
        assert_eq!(valid_for("de", Duration::from_secs(HOUR)).unwrap(), "1 Stunde");
        assert_eq!(valid_for("de", Duration::from_secs(2 * DAY)).unwrap(), "2 Tage");
        assert_eq!(retry_in("de", 2 * DAY).unwrap(), "in 2 Tagen");
        assert_eq!(retry_in("de", 1).unwrap(), "in 1 Sekunde");
    }

    #[test]
    fn french_counts_zero_and_one_as_singular_and_millions_with_de() {
        assert_eq!(valid_for("fr", Duration::from_secs(HOUR)).unwrap(), "1 heure");
        assert_eq!(valid_for("fr", Duration::from_secs(30 * MINUTE)).unwrap(), "30 minutes");
        assert_eq!(valid_for("fr", Duration::from_secs(3 * DAY)).unwrap(), "3 jours");
        assert_eq!(retry_in("fr", 45).unwrap(), "dans 45 secondes");
        assert_eq!(say("fr", Phrase::RetryIn, Span { count: 0, unit: Unit::Minute }).unwrap(), "dans 0 minute");
        let million = Span { count: 1_000_000, unit: Unit::Day };
        assert_eq!(say("fr", Phrase::ValidFor, million).unwrap(), "1000000 de jours");
    }

    #[test]
    fn spanish_and_italian_have_their_singular_and_plural() {
        assert_eq!(valid_for("es", Duration::from_secs(HOUR)).unwrap(), "1 hora");
        assert_eq!(valid_for("es", Duration::from_secs(2 * DAY)).unwrap(), "2 días");
        assert_eq!(retry_in("es", 5 * MINUTE).unwrap(), "dentro de 5 minutos");
        assert_eq!(valid_for("it", Duration::from_secs(HOUR)).unwrap(), "1 ora");
        assert_eq!(valid_for("it", Duration::from_secs(24 * HOUR)).unwrap(), "24 ore");
        assert_eq!(retry_in("it", MINUTE).unwrap(), "tra 1 minuto");
    }

    #[test]
    fn polish_has_one_few_and_many() {
        let wait = |seconds| retry_in("pl", seconds).unwrap();
        assert_eq!(valid_for("pl", Duration::from_secs(MINUTE)).unwrap(), "1 minutę");
        assert_eq!(valid_for("pl", Duration::from_secs(2 * MINUTE)).unwrap(), "2 minuty");
        assert_eq!(valid_for("pl", Duration::from_secs(5 * MINUTE)).unwrap(), "5 minut");
        assert_eq!(valid_for("pl", Duration::from_secs(12 * MINUTE)).unwrap(), "12 minut");
        assert_eq!(valid_for("pl", Duration::from_secs(22 * MINUTE)).unwrap(), "22 minuty");
        assert_eq!(valid_for("pl", Duration::from_secs(HOUR)).unwrap(), "1 godzinę");
        assert_eq!(valid_for("pl", Duration::from_secs(24 * HOUR)).unwrap(), "24 godziny");
        assert_eq!(valid_for("pl", Duration::from_secs(25 * HOUR)).unwrap(), "25 godzin");
        assert_eq!(valid_for("pl", Duration::from_secs(2 * DAY)).unwrap(), "2 dni");
        assert_eq!(wait(1), "za 1 sekundę");
        assert_eq!(wait(3), "za 3 sekundy");
        assert_eq!(wait(45), "za 45 sekund");
        assert_eq!(wait(5 * MINUTE), "za 5 minut");
        assert_eq!(wait(DAY * 2 - 1), "za 2 dni");
    }

    #[test]
    fn portuguese_and_dutch_have_their_singular_and_plural() {
        assert_eq!(valid_for("pt", Duration::from_secs(2 * DAY)).unwrap(), "2 dias");
        assert_eq!(valid_for("pt", Duration::from_secs(HOUR)).unwrap(), "1 hora");
        assert_eq!(retry_in("pt", 5 * MINUTE).unwrap(), "em 5 minutos");
        assert_eq!(retry_in("pt", 1).unwrap(), "em 1 segundo");
        let million = Span { count: 1_000_000, unit: Unit::Day };
        assert_eq!(say("pt", Phrase::ValidFor, million).unwrap(), "1000000 de dias");
        assert_eq!(valid_for("nl", Duration::from_secs(HOUR)).unwrap(), "1 uur");
        assert_eq!(valid_for("nl", Duration::from_secs(24 * HOUR)).unwrap(), "24 uur");
        assert_eq!(valid_for("nl", Duration::from_secs(30 * MINUTE)).unwrap(), "30 minuten");
        assert_eq!(retry_in("nl", MINUTE).unwrap(), "over 1 minuut");
        assert_eq!(retry_in("nl", 2 * DAY).unwrap(), "over 2 dagen");
    }

    #[test]
    fn japanese_and_chinese_have_one_form_for_every_count() {
        assert_eq!(valid_for("ja", Duration::from_secs(30 * MINUTE)).unwrap(), "30分間");
        assert_eq!(valid_for("ja", Duration::from_secs(HOUR)).unwrap(), "1時間");
        assert_eq!(valid_for("ja", Duration::from_secs(2 * DAY)).unwrap(), "2日間");
        assert_eq!(retry_in("ja", 45).unwrap(), "45秒後");
        assert_eq!(valid_for("zh-Hans", Duration::from_secs(30 * MINUTE)).unwrap(), "30 分钟");
        assert_eq!(valid_for("zh-Hans", Duration::from_secs(2 * DAY)).unwrap(), "2 天");
        assert_eq!(retry_in("zh-Hans", 5 * MINUTE).unwrap(), "5 分钟后");
    }

    #[test]
    fn every_locale_has_every_plural_form_its_cldr_rules_need_and_nothing_else() {
        for locale in crate::mail::MAIL_LOCALES {
            let phrases = &languages().unwrap()[locale];
            let categories: Vec<&str> = plural_rules(locale).unwrap().categories().map(category_key).collect();
            assert!(categories.contains(&"other"), "{locale}");
            let mut expected = BTreeSet::new();
            for phrase in Phrase::ALL {
                for unit in phrase.units() {
                    for category in &categories {
                        expected.insert(format!("{}.{}.{category}", phrase.key(), unit.key()));
                    }
                }
            }
            let present: BTreeSet<String> = phrases.keys().cloned().collect();
            assert_eq!(present, expected, "{locale}: the keys its plural rules ({categories:?}) call for");
            for (key, text) in phrases {
                assert!(text.contains("{n}"), "{locale} {key}: the count is said");
            }
        }
        let french: Vec<_> = plural_rules("fr").unwrap().categories().map(category_key).collect();
        assert_eq!(french, ["one", "many", "other"], "the rules come from CLDR, not from us");
        let categories = |locale| plural_rules(locale).unwrap().categories().map(category_key).collect::<Vec<_>>();
        assert_eq!(categories("pl"), ["one", "few", "many", "other"]);
        assert_eq!(categories("pt"), ["one", "many", "other"]);
        assert_eq!(categories("nl"), ["one", "other"]);
        assert_eq!(categories("ja"), ["other"]);
        assert_eq!(categories("zh-Hans"), ["other"]);
    }

    #[test]
    fn every_locale_says_every_size_of_span() {
        let sizes = [0, 1, 2, 5, 21, 45, MINUTE, 2 * MINUTE, HOUR, 2 * HOUR, 25 * HOUR, 2 * DAY, 11 * DAY, 101 * DAY];
        for locale in crate::mail::MAIL_LOCALES {
            for seconds in sizes {
                assert!(valid_for(locale, Duration::from_secs(seconds)).is_ok(), "{locale} {seconds}");
                assert!(retry_in(locale, seconds).is_ok(), "{locale} {seconds}");
            }
        }
        assert!(valid_for("ko", Duration::from_secs(60)).is_err(), "an unshipped language is an error, not a panic");
    }
}
