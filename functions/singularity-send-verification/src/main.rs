//! POST /api/auth/email/verification/send: resends the confirmation mail (Singularity contract).

use mailconfirm::contracts::singularity::SendVerification;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    mailconfirm::run_http(SendVerification::from_config).await
}
