//! Pages of a listing: `limit` (1 to 100, default 20) and an opaque `cursor`, which is the
//! base64url of the position the previous page ended at (its parts joined by newlines).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};

use crate::problem::Problem;

pub(crate) const DEFAULT_LIMIT: usize = 20;
pub(crate) const MAX_LIMIT: usize = 100;

/// `limit` and the decoded `cursor` of a query string; 400 for a bad one.
pub(crate) fn page_params<C>(
    query: &str,
    decode: impl Fn(Vec<String>) -> Option<C>,
) -> Result<(usize, Option<C>), Problem> {
    let mut limit = DEFAULT_LIMIT;
    let mut cursor = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        Problem::bad_request(format!("limit must be 1 to {MAX_LIMIT}"))
                    })?;
            }
            "cursor" => {
                cursor = Some(cursor_parts(value).and_then(&decode).ok_or_else(|| {
                    Problem::bad_request("cursor is not a next_cursor this API gave")
                })?);
            }
            _ => {}
        }
    }
    Ok((limit, cursor))
}

/// The cursor for a position given as parts (none may contain a newline).
pub(crate) fn encode_cursor(parts: &[&str]) -> String {
    URL_SAFE_NO_PAD.encode(parts.join("\n"))
}

/// The cursor of a position given as a time and an id (a row's clustering key).
pub(crate) fn encode_position(at: DateTime<Utc>, id: &str) -> String {
    encode_cursor(&[&at.timestamp_millis().to_string(), id])
}

/// A position's parts: the time in milliseconds and the id (everything after the time, so an
/// id holding the separator survives).
pub(crate) fn decode_position(parts: Vec<String>) -> Option<(DateTime<Utc>, String)> {
    let mut parts = parts.into_iter();
    let at = DateTime::from_timestamp_millis(parts.next()?.parse().ok()?)?;
    let rest: Vec<String> = parts.collect();
    if rest.is_empty() {
        return None;
    }
    Some((at, rest.join("\n")))
}

fn cursor_parts(text: &str) -> Option<Vec<String>> {
    let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    Some(text.split('\n').map(str::to_owned).collect())
}
