//! mailconfirm's local stack and test harness: the table and routes read from the SAM
//! template, moto for DynamoDB and SES, an API Gateway-style router over every handler, and
//! the developer's tools (publish a sign-up, mint a token, read the inbox).

pub mod fault_proxy;
pub mod gateway;
pub mod harness;
pub mod queue;
pub mod server;
pub mod stack;
pub mod stream;
pub mod template;
