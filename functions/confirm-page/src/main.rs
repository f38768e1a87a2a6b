//! GET/HEAD/POST /confirm-email: the hosted page behind every confirmation link; only its button confirms.

use mailconfirm::confirm_page::ConfirmPage;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    mailconfirm::run_http(ConfirmPage::from_config).await
}
