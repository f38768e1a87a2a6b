//! GET /api/info: the app information the Backendless SDK loads at start (Backendless contract).

use mailconfirm::contracts::backendless_info::AppInfo;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    mailconfirm::run_http(AppInfo::from_config).await
}
