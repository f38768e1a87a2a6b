//! SNS subscriber of SES's feedback: a hard bounce or a complaint stops the mail to that address.

use mailconfirm::mail_feedback::MailFeedbackConsumer;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    mailconfirm::run_sns(MailFeedbackConsumer::from_config).await
}
