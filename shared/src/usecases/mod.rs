//! The use cases, one module each, each with its own error type. Contracts map these
//! outcomes to HTTP; the use cases know nothing of HTTP.

pub mod confirm;
pub mod cooldown_status;
pub mod send;
pub mod signup;
pub mod throttle;
