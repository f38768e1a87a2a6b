//! POST /User/email/send-confirmation: resends the confirmation mail (10npay contract).

use mailconfirm::contracts::tennpay::SendConfirmation;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    mailconfirm::run_http(SendConfirmation::from_config).await
}
