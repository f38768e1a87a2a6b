//! POST /api/v1/emails/confirmations: resends the confirmation mail, optionally to a new address (Mastodon contract).

use mailconfirm::contracts::mastodon::ResendConfirmation;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    mailconfirm::run_http(ResendConfirmation::from_config).await
}
