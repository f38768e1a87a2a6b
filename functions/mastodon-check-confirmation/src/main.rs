//! GET /api/v1/emails/check_confirmation: whether the token's user has confirmed (Mastodon contract).

use mailconfirm::contracts::mastodon::CheckConfirmation;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    mailconfirm::run_http(CheckConfirmation::from_config).await
}
