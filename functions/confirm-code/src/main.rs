//! POST /v1/confirmations/code: confirms the token's user with the one-time code of its mail.

use mailconfirm::contracts::codes::ConfirmCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    mailconfirm::run_http(ConfirmCode::from_config).await
}
