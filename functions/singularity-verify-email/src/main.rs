//! POST /api/auth/email/verification: confirms an address with the token from its link (Singularity contract).

use mailconfirm::contracts::singularity::VerifyEmail;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    mailconfirm::run_http(VerifyEmail::from_config).await
}
