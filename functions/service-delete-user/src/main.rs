//! DELETE /v1/users/{user_id}: erases a user and its address, for the app's backend.

use mailconfirm::contracts::service::DeleteUser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    mailconfirm::run_http(DeleteUser::from_config).await
}
