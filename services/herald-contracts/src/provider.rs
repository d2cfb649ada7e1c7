//! Provider names, declared once: what a delivery worker's provider calls itself (a status's
//! `provider`, the `provider` label of the worker's metrics), what it records message ids under
//! for status callbacks, and what `herald api` matches those callbacks by.

pub const SMTP: &str = "smtp";
pub const SENDGRID: &str = "sendgrid";
pub const TWILIO: &str = "twilio";
/// Push: FCM and APNs behind one provider; their own names prefix their error classes.
pub const PUSH: &str = "push";
pub const FCM: &str = "fcm";
pub const APNS: &str = "apns";
pub const WEBHOOK: &str = "webhook";
pub const INBOX: &str = "inbox";
