//! GET /api/auth/email/verification/cooldown: seconds until the next mail may be sent (Singularity contract).

use mailconfirm::contracts::singularity::VerificationCooldown;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    mailconfirm::run_http(VerificationCooldown::from_config).await
}
