//! POST /api/users/resendconfirmation/{identity}: resends the confirmation mail (Backendless contract).

use mailconfirm::contracts::backendless::ResendConfirmation;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    mailconfirm::run_http(ResendConfirmation::from_config).await
}
