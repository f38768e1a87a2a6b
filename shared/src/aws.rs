//! AWS clients, built once per execution environment on first use: loading the SDK
//! configuration and TLS roots takes milliseconds that a cold start should not wait for.

use aws_config::{BehaviorVersion, SdkConfig};
pub use aws_sdk_dynamodb::config::{Intercept, SharedInterceptor};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use tokio::sync::OnceCell;

use crate::aws_policy;

#[derive(Default)]
pub struct AwsClients {
    config: OnceCell<SdkConfig>,
    dynamodb: OnceCell<aws_sdk_dynamodb::Client>,
    sesv2: OnceCell<aws_sdk_sesv2::Client>,
    interceptors: Vec<SharedInterceptor>,
    /// Where both clients send their calls instead of AWS (the tests' fault proxy).
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
        self.config
            .get_or_init(|| async {
                // One HTTP stack (hyper 1, rustls on ring) instead of the SDK's default two.
                let http_client = aws_smithy_http_client::Builder::new()
                    .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
                    .build_https();
                aws_config::defaults(BehaviorVersion::latest()).http_client(http_client).load().await
            })
            .await
    }

    pub async fn dynamodb(&self) -> &aws_sdk_dynamodb::Client {
        self.dynamodb
            .get_or_init(|| async {
                let mut config = aws_sdk_dynamodb::config::Builder::from(self.config().await);
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
}
