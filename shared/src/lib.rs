//! mailconfirm: the e-mail confirmation step of a sign-up, as Lambda functions. This crate
//! holds everything but the functions' `main`: the domain, the use cases, the AWS adapters
//! and the API contracts.

pub mod access_token;
pub mod app_events;
pub mod aws;
pub mod aws_error;
pub mod aws_policy;
pub mod clients;
pub mod config;
pub mod confirm_page;
pub mod confirmation_code;
pub mod contracts;
pub mod domain;
pub mod durations;
pub mod link_token;
pub mod mail;
pub mod mail_feedback;
pub mod metrics;
pub mod pacing;
pub mod ports;
pub mod redirect;
pub mod result_token;
pub mod signup_events;
pub mod store;
pub mod telemetry;
pub mod usecases;
pub mod wiring;

pub use wiring::{HttpHandler, SnsHandler, SqsHandler, StreamHandler, Wiring, run_http, run_sns, run_sqs, run_stream};

/// Structured logs as Lambda's advanced logging controls ask for (`AWS_LAMBDA_LOG_FORMAT`).
pub fn init_telemetry() {
    telemetry::init();
}

/// Reads a function's configuration, or ends the start with the variable that is wrong.
pub fn configure<T>(build: impl FnOnce() -> Result<T, config::ConfigError>) -> T {
    match build() {
        Ok(value) => value,
        Err(err) => {
            tracing::error!(error = %err, "configuration is invalid; the function cannot start");
            eprintln!("mailconfirm: {err}");
            std::process::exit(78);
        }
    }
}
