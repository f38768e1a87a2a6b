//! POST /v1/users/{user_id}/confirm: confirms a user without a link, for the app's backend.

use mailconfirm::contracts::service::ConfirmUser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    mailconfirm::run_http(ConfirmUser::from_config).await
}
