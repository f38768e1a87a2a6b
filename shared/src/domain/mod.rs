//! The domain: values that can only hold valid data, and the pure decisions made on them.

pub mod code;
pub mod cooldown;
pub mod email;
pub mod locale;
pub mod throttle;
pub mod user;

pub use code::{CodeRecord, CodeRefusal, CodeState, MAX_CODE_ATTEMPTS, OneTimeCode, StoredCode};
pub use cooldown::{CooldownPolicy, UnixTime};
pub use email::{AddressTag, EmailAddress, InvalidEmailAddress};
pub use locale::{Locale, LocaleNegotiation};
#[cfg(test)]
pub use throttle::RequestLog;
pub use throttle::{Throttle, ThrottleRule, Throttled, client_subject};
pub use user::{
    ClientId, ConfirmMethod, ConfirmedBy, DeliveryState, Identity, IdentityAttribute, SendRequirements, SignUp, User,
    UserId, UserStatus,
};
