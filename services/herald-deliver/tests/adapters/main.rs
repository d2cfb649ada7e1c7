//! The adapters against real things: recording HTTP stand-ins for the SaaS providers, a real
//! SMTP server (aiosmtpd), the Python `standardwebhooks` package for signatures, and the local
//! stack's CQL database. One test binary, one module per adapter.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod email_api;
mod inbox;
mod push;
mod sms;
mod smtp;
mod webhook;
