//! The HTTP client the AWS SDK calls through (and the JWKS fetch of access tokens): hyper 1 over
//! HTTP/1.1, rustls on ring, and the Mozilla root certificates compiled in (`webpki-roots`).
//!
//! The SDK's own client (`aws-smithy-http-client`) also builds HTTP/2 (`h2`), proxy support and
//! `rustls-native-certs`, which reads and parses every file of the system CA directory when the
//! first client is built: about 7 ms of a cold start, more than the rest of it. DynamoDB and
//! SES speak HTTP/1.1, and compiled-in roots cost nothing to load.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::retry::ErrorKind;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One connection pool per timeout setting, as the SDK's own client keeps: the SDK asks for a
/// connector on every attempt, and a new pool each time would never reuse a connection.
#[derive(Debug, Clone)]
pub struct HttpsClient {
    tls: Arc<rustls::ClientConfig>,
    connectors: Arc<Mutex<Vec<(Timeouts, SharedHttpConnector)>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Timeouts {
    connect: Option<Duration>,
    read: Option<Duration>,
}

impl HttpsClient {
    /// Trusts the Mozilla roots, plus the certificates of the PEM file `extra_roots` (the
    /// `SSL_CERT_FILE` of an endpoint with a private CA) when given.
    pub fn new(extra_roots: Option<&str>) -> Self {
        Self { tls: tls_config(extra_roots), connectors: Arc::default() }
    }
}

/// rustls on ring with the Mozilla roots, plus the certificates of the PEM file `extra_roots`
/// when given. A file that cannot be read adds nothing: calls to an endpoint it was meant for
/// then fail on the certificate.
// ring's provider supports both protocol versions, so the builder cannot refuse them.
#[allow(clippy::expect_used)]
pub fn tls_config(extra_roots: Option<&str>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(path) = extra_roots {
        match CertificateDer::pem_file_iter(path) {
            Ok(certs) => {
                let (added, ignored) = roots.add_parsable_certificates(certs.filter_map(Result::ok));
                tracing::debug!(path, added, ignored, "extra root certificates");
            }
            Err(err) => tracing::warn!(path, error = %err, "cannot read the extra root certificates"),
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(tls)
}

/// An HTTP/1.1 client over `tls` (https) or plain TCP (http), whose connections are pooled and
/// come up within `connect_timeout`. The SDK's connector and the JWKS fetch share it.
pub fn http1_client<B>(tls: Arc<rustls::ClientConfig>, connect_timeout: Option<Duration>) -> HttpsPool<B>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
{
    let mut tcp = TcpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(connect_timeout);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(Arc::unwrap_or_clone(tls))
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp);
    Client::builder(TokioExecutor::new()).pool_timer(TokioTimer::new()).build(https)
}

/// The client [`http1_client`] builds.
pub type HttpsPool<B> = Client<hyper_rustls::HttpsConnector<TcpConnector>, B>;

impl HttpClient for HttpsClient {
    fn http_connector(&self, settings: &HttpConnectorSettings, _: &RuntimeComponents) -> SharedHttpConnector {
        let timeouts = Timeouts { connect: settings.connect_timeout(), read: settings.read_timeout() };
        let mut connectors = self.connectors.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((_, connector)) = connectors.iter().find(|(key, _)| *key == timeouts) {
            return connector.clone();
        }
        let connector = SharedHttpConnector::new(Connector::new(self.tls.clone(), timeouts));
        connectors.push((timeouts, connector.clone()));
        connector
    }
}

#[derive(Debug)]
struct Connector {
    client: HttpsPool<SdkBody>,
    read_timeout: Option<Duration>,
}

impl Connector {
    fn new(tls: Arc<rustls::ClientConfig>, timeouts: Timeouts) -> Self {
        Self { client: http1_client(tls, timeouts.connect), read_timeout: timeouts.read }
    }
}

impl HttpConnector for Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let request = match request.try_into_http1x() {
            Ok(request) => request,
            Err(err) => return HttpConnectorFuture::ready(Err(ConnectorError::user(err.into()))),
        };
        let response = self.client.request(request);
        let read_timeout = self.read_timeout;
        HttpConnectorFuture::new(async move {
            let response = match read_timeout {
                Some(limit) => tokio::time::timeout(limit, response)
                    .await
                    .map_err(|elapsed| ConnectorError::timeout(elapsed.into()))?,
                None => response.await,
            }
            .map_err(connector_error)?;
            HttpResponse::try_from(response.map(SdkBody::from_body_1_x))
                .map_err(|err| ConnectorError::other(err.into(), None))
        })
    }
}

/// Sorts a failed request the way the SDK's retry policy needs: timeouts, I/O failures
/// (retried: the connection broke or never came up), and the rest.
fn connector_error(err: hyper_util::client::legacy::Error) -> ConnectorError {
    let io = find_source::<std::io::Error>(&err).map(std::io::Error::kind);
    if io == Some(std::io::ErrorKind::TimedOut) {
        return ConnectorError::timeout(err.into());
    }
    if err.is_connect() {
        return ConnectorError::io(err.into());
    }
    let kind: fn(BoxError) -> ConnectorError = match find_source::<hyper::Error>(&err) {
        Some(hyper) if hyper.is_timeout() => ConnectorError::timeout,
        Some(hyper) if hyper.is_user() => ConnectorError::user,
        Some(hyper) if hyper.is_closed() || hyper.is_canceled() || io.is_some() => ConnectorError::io,
        Some(hyper) if hyper.is_incomplete_message() => {
            |err| ConnectorError::other(err, Some(ErrorKind::TransientError))
        }
        _ if io.is_some() => ConnectorError::io,
        _ => |err| ConnectorError::other(err, None),
    };
    kind(err.into())
}

fn find_source<'e, E: std::error::Error + 'static>(err: &'e (dyn std::error::Error + 'static)) -> Option<&'e E> {
    std::iter::successors(Some(err), |err| err.source()).find_map(|err| err.downcast_ref::<E>())
}
