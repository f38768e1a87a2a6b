//! AWS clients, built once per execution environment. The configuration comes from what
//! Lambda puts in the environment (credentials, region) rather than from `aws-config`, whose
//! provider chain (profiles, SSO, STS, IMDS) a Lambda function never needs: it was a third of a
//! megabyte of every binary and probed `~/.aws` at start.

mod https;

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
pub use aws_sdk_dynamodb::config::{Intercept, SharedInterceptor};
use aws_smithy_runtime_api::client::behavior_version::BehaviorVersion;
use aws_types::SdkConfig;
use aws_types::region::Region;
use tokio::sync::OnceCell;

pub use https::{HttpsClient, HttpsPool, http1_client, tls_config};

use crate::aws_policy;

#[derive(Default)]
pub struct AwsClients {
    config: OnceCell<SdkConfig>,
    dynamodb: OnceCell<aws_sdk_dynamodb::Client>,
    sesv2: OnceCell<aws_sdk_sesv2::Client>,
    eventbridge: OnceCell<aws_sdk_eventbridge::Client>,
    interceptors: Vec<SharedInterceptor>,
    /// Where every client sends their calls instead of AWS (the tests' fault proxy).
    endpoint: Option<String>,
}

impl AwsClients {
    pub fn new() -> Self {
        Self::default()
    }

    /// Clients that also run `interceptor` on every call (the tests record which AWS
    /// operations each function makes, to hold the template's IAM policies to them).
    pub fn with_interceptor(interceptor: SharedInterceptor) -> Self {
        Self { interceptors: vec![interceptor], ..Self::default() }
    }

    /// The same clients, calling `url` instead of AWS.
    pub fn with_endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// Clients built elsewhere (the unit tests' SDK mocks).
    pub fn from_clients(dynamodb: aws_sdk_dynamodb::Client, sesv2: aws_sdk_sesv2::Client) -> Self {
        Self { dynamodb: OnceCell::new_with(Some(dynamodb)), sesv2: OnceCell::new_with(Some(sesv2)), ..Self::default() }
    }

    async fn config(&self) -> &SdkConfig {
        self.config.get_or_init(|| async { sdk_config(&Env) }).await
    }

    pub async fn dynamodb(&self) -> &aws_sdk_dynamodb::Client {
        self.dynamodb
            .get_or_init(|| async {
                let mut config = aws_sdk_dynamodb::config::Builder::from(self.config().await);
                if let Some(url) = var(&Env, "AWS_ENDPOINT_URL_DYNAMODB") {
                    config.set_endpoint_url(Some(url));
                }
                if let Some(url) = &self.endpoint {
                    config.set_endpoint_url(Some(url.clone()));
                }
                config.set_timeout_config(Some(aws_policy::dynamodb_timeouts(aws_policy::function_timeout())));
                for interceptor in &self.interceptors {
                    config.push_interceptor(interceptor.clone());
                }
                aws_sdk_dynamodb::Client::from_conf(config.build())
            })
            .await
    }

    pub async fn sesv2(&self) -> &aws_sdk_sesv2::Client {
        self.sesv2
            .get_or_init(|| async {
                let mut config = aws_sdk_sesv2::config::Builder::from(self.config().await);
                if let Some(url) = var(&Env, "AWS_ENDPOINT_URL_SESV2") {
                    config.set_endpoint_url(Some(url));
                }
                if let Some(url) = &self.endpoint {
                    config.set_endpoint_url(Some(url.clone()));
                }
                config.set_timeout_config(Some(aws_policy::ses_timeouts(aws_policy::function_timeout())));
                config.push_retry_classifier(
                    aws_smithy_runtime_api::client::retries::classifiers::SharedRetryClassifier::new(
                        aws_policy::SendAtMostOnce,
                    ),
                );
                for interceptor in &self.interceptors {
                    config.push_interceptor(interceptor.clone());
                }
                aws_sdk_sesv2::Client::from_conf(config.build())
            })
            .await
    }

    /// EventBridge, which only the change-stream consumer calls. A retried `PutEvents` whose
    /// first answer was lost publishes twice, which the events' stable `event_id` allows.
    pub async fn eventbridge(&self) -> &aws_sdk_eventbridge::Client {
        self.eventbridge
            .get_or_init(|| async {
                let mut config = aws_sdk_eventbridge::config::Builder::from(self.config().await);
                if let Some(url) = var(&Env, "AWS_ENDPOINT_URL_EVENTBRIDGE") {
                    config.set_endpoint_url(Some(url));
                }
                if let Some(url) = &self.endpoint {
                    config.set_endpoint_url(Some(url.clone()));
                }
                config.set_timeout_config(Some(aws_policy::dynamodb_timeouts(aws_policy::function_timeout())));
                for interceptor in &self.interceptors {
                    config.push_interceptor(interceptor.clone());
                }
                aws_sdk_eventbridge::Client::from_conf(config.build())
            })
            .await
    }
}

/// Where the settings come from: the process environment, or a map in tests.
trait Vars {
    fn get(&self, name: &str) -> Option<String>;
}

struct Env;

impl Vars for Env {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// A variable's value; an empty one counts as unset, as in the SDK's own environment loader.
fn var(vars: &dyn Vars, name: &str) -> Option<String> {
    vars.get(name).filter(|value| !value.trim().is_empty())
}

/// The SDK configuration of a Lambda execution environment:
/// - credentials from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`
///   (Lambda sets them from the function's role for the life of the environment);
/// - region from `AWS_REGION` (else `AWS_DEFAULT_REGION`);
/// - `AWS_ENDPOINT_URL` for every service (`AWS_ENDPOINT_URL_DYNAMODB` and
///   `AWS_ENDPOINT_URL_SESV2` win for their service), which the tests use to reach moto;
/// - retries and timeouts are the SDK's defaults for the latest behaviour version, the same
///   that `aws-config` gave (standard retries, 3 attempts; 3.1 s connect timeout).
///
/// Without credentials no provider is set, and every call fails with the SDK's
/// "no credentials" error, which names the problem.
fn sdk_config(vars: &dyn Vars) -> SdkConfig {
    let credentials = match (var(vars, "AWS_ACCESS_KEY_ID"), var(vars, "AWS_SECRET_ACCESS_KEY")) {
        (Some(key_id), Some(secret)) => Some(SharedCredentialsProvider::new(Credentials::new(
            key_id,
            secret,
            var(vars, "AWS_SESSION_TOKEN"),
            None,
            "Environment",
        ))),
        _ => None,
    };
    let region = var(vars, "AWS_REGION").or_else(|| var(vars, "AWS_DEFAULT_REGION")).map(Region::new);
    let mut config = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(HttpsClient::new(var(vars, "SSL_CERT_FILE").as_deref()))
        .region(region);
    config.set_credentials_provider(credentials);
    config.set_endpoint_url(var(vars, "AWS_ENDPOINT_URL"));
    config.build()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use aws_credential_types::provider::ProvideCredentials;

    use super::*;

    impl Vars for HashMap<&str, &str> {
        fn get(&self, name: &str) -> Option<String> {
            HashMap::get(self, name).map(|value| value.to_string())
        }
    }

    #[tokio::test]
    async fn the_configuration_is_what_lambda_puts_in_the_environment() {
        let vars = HashMap::from([
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_SESSION_TOKEN", "session"),
            ("AWS_REGION", "eu-west-3"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", ""),
        ]);
        let config = sdk_config(&vars);
        assert_eq!(config.region().map(Region::as_ref), Some("eu-west-3"));
        assert_eq!(config.endpoint_url(), None, "an empty variable counts as unset");
        let credentials = config.credentials_provider().unwrap().provide_credentials().await.unwrap();
        assert_eq!(
            (credentials.access_key_id(), credentials.secret_access_key(), credentials.session_token()),
            ("AKIDEXAMPLE", "secret", Some("session"))
        );
    }

    #[test]
    fn the_default_region_and_a_shared_endpoint_are_honoured_and_missing_keys_set_no_credentials() {
        let vars = HashMap::from([
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
        ]);
        let config = sdk_config(&vars);
        assert_eq!(config.region().map(Region::as_ref), Some("us-east-1"));
        assert_eq!(config.endpoint_url(), Some("http://127.0.0.1:5000"));
        assert!(config.credentials_provider().is_none());
    }
}
