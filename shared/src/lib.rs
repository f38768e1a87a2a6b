//! mailconfirm: the e-mail confirmation step of a sign-up, as Lambda functions. This crate
//! holds everything but the functions' `main`: the domain, the use cases, the AWS adapters
//! and the API contracts.

pub mod access_token;
pub mod aws;
pub mod config;
pub mod confirm_page;
pub mod contracts;
pub mod domain;
pub mod link_token;
pub mod mail;
pub mod signup_events;
pub mod store;
pub mod telemetry;
pub mod usecases;

/// Structured logs as Lambda's advanced logging controls ask for (`AWS_LAMBDA_LOG_FORMAT`).
pub fn init_telemetry() {
    telemetry::init();
}

/// Reads a function's configuration, or ends the start with the variable that is wrong.
pub fn configure<T>(build: impl FnOnce(&dyn config::Source) -> Result<T, config::ConfigError>) -> T {
    match build(&config::ProcessEnv) {
        Ok(value) => value,
        Err(err) => {
            tracing::error!(error = %err, "configuration is invalid; the function cannot start");
            eprintln!("mailconfirm: {err}");
            std::process::exit(78);
        }
    }
}
