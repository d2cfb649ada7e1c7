//! Instants on the wire are Avro `timestamp-millis`; in Rust they are `chrono::DateTime<Utc>`.

use chrono::{DateTime, TimeZone, Utc};

pub fn to_millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

/// `None` for an instant chrono cannot represent (beyond year 262143).
pub fn from_millis(millis: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(millis).single()
}

/// Now, truncated to the millisecond so that it survives a trip through Avro unchanged.
pub fn now_millis() -> DateTime<Utc> {
    let now = Utc::now();
    from_millis(to_millis(now)).unwrap_or(now)
}
