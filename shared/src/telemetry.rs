//! Logs as Lambda's advanced logging controls ask for them: JSON lines when
//! `AWS_LAMBDA_LOG_FORMAT` is `JSON`, at the level of `AWS_LAMBDA_LOG_LEVEL` (else `RUST_LOG`,
//! else INFO).
//!
//! This is `lambda_runtime`'s default subscriber with a plain level filter instead of an
//! `EnvFilter`, whose directive parser and regex engine were 185 KiB of every binary. `RUST_LOG`
//! is read as one level: per-module directives (`mailconfirm=debug`) are not supported, and a
//! list keeps its first bare level (`warn,hyper=info` logs at WARN).

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Libraries that log whole requests and answers below WARN (the SDK logs DynamoDB items and
/// SES error messages, which hold addresses): never below WARN, whatever the level.
const QUIET_BELOW_WARN: &[&str] = &[
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_sdk_dynamodb",
    "aws_sdk_sesv2",
    "aws_runtime",
    "hyper",
    "hyper_util",
    "rustls",
];

fn targets(level: LevelFilter) -> Targets {
    QUIET_BELOW_WARN.iter().fold(Targets::new().with_default(level), |targets, library| {
        targets.with_target(*library, level.min(LevelFilter::WARN))
    })
}

pub fn init() {
    let var = |name| std::env::var(name).ok().filter(|value: &String| !value.trim().is_empty());
    let level = level_of(var("AWS_LAMBDA_LOG_LEVEL").or_else(|| var("RUST_LOG")).as_deref());
    let json = var("AWS_LAMBDA_LOG_FORMAT").is_some_and(|format| format.trim().eq_ignore_ascii_case("json"));
    let subscriber =
        tracing_subscriber::fmt().with_target(false).without_time().with_max_level(level).with_writer(std::io::stdout);
    if json {
        subscriber.json().finish().with(targets(level)).init();
    } else {
        subscriber.finish().with(targets(level)).init();
    }
}

/// The level a setting names; INFO when it names none. Lambda's FATAL is ERROR here.
fn level_of(setting: Option<&str>) -> LevelFilter {
    setting
        .into_iter()
        .flat_map(|setting| setting.split(','))
        .map(str::trim)
        .find_map(|item| match item.to_ascii_lowercase().as_str() {
            "fatal" => Some(LevelFilter::ERROR),
            item => item.parse().ok(),
        })
        .unwrap_or(LevelFilter::INFO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdk_never_logs_below_warn_whatever_the_level() {
        let trace = targets(LevelFilter::TRACE);
        assert!(!trace.would_enable("aws_smithy_runtime::client::orchestrator", &tracing::Level::DEBUG));
        assert!(trace.would_enable("aws_smithy_runtime::client::orchestrator", &tracing::Level::WARN));
        assert!(trace.would_enable("mailconfirm::store", &tracing::Level::TRACE));
        let error = targets(LevelFilter::ERROR);
        assert!(!error.would_enable("aws_sdk_sesv2", &tracing::Level::WARN));
    }

    #[test]
    fn a_level_is_read_from_lambda_or_rust_log_spellings() {
        assert_eq!(level_of(None), LevelFilter::INFO);
        assert_eq!(level_of(Some("DEBUG")), LevelFilter::DEBUG);
        assert_eq!(level_of(Some("FATAL")), LevelFilter::ERROR);
        assert_eq!(level_of(Some("off")), LevelFilter::OFF);
        assert_eq!(level_of(Some("hyper=info, warn")), LevelFilter::WARN);
        assert_eq!(level_of(Some("mailconfirm=debug")), LevelFilter::INFO);
        assert_eq!(level_of(Some("verbose")), LevelFilter::INFO);
    }
}
