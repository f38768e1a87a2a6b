//! GET /v1/users/{user_id}: a user's confirmation status, for the app's backend.

use mailconfirm::contracts::service::GetUser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    mailconfirm::run_http(GetUser::from_config).await
}
