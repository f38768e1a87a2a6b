//! POST /api/users/createEmailConfirmationURL/{identity}: a confirmation link for a trusted backend (Backendless contract).

use mailconfirm::contracts::backendless::CreateConfirmationUrl;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    mailconfirm::run_http(CreateConfirmationUrl::from_config).await
}
