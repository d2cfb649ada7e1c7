//! The one classification every HTTP adapter shares: 2xx → sent; 408, 429 and 5xx →
//! transient, honouring `Retry-After`; timeouts and connection errors → transient; a redirect
//! or any other 4xx → permanent, with the provider's error text (truncated).

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{RequestBuilder, StatusCode};
use std::time::{Duration, SystemTime};

use crate::Outcome;
use crate::http::{UrlPath, client_span, record_failure, record_status};
use crate::webhook::ssrf::Refused;
use tracing::Instrument as _;

/// The longest provider text kept in a reason: enough to act on, small enough for a status
/// event.
pub const MAX_REASON_CHARS: usize = 300;

/// A provider's HTTP answer, read whole.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    /// `Ok(self)` for a 2xx, else the failure outcome.
    pub fn success(self) -> Result<Self, Outcome> {
        classify_status(self.status, &self.headers, &self.body).map(|()| self)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Classifies a status line: `Ok(())` for 2xx, else the failure [`Outcome`].
pub fn classify_status(status: StatusCode, headers: &HeaderMap, body: &str) -> Result<(), Outcome> {
    if status.is_success() {
        return Ok(());
    }
    let reason = describe(status, body);
    if status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
    {
        let retry_after = headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        return Err(Outcome::Transient {
            reason,
            retry_after,
        });
    }
    if status.is_redirection() {
        return Err(Outcome::permanent(format!(
            "{reason} (redirects are not followed)"
        )));
    }
    Err(Outcome::permanent(reason))
}

/// `HTTP 400 Bad Request: <provider text>`.
fn describe(status: StatusCode, body: &str) -> String {
    let text = truncate_reason(body);
    if text.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {text}")
    }
}

/// A `Retry-After` value: delay-seconds or an HTTP-date (a date in the past means now).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse::<u64>().ok().map(Duration::from_secs);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// One line of at most [`MAX_REASON_CHARS`] characters.
pub fn truncate_reason(text: &str) -> String {
    let mut out = String::new();
    for (n, word) in text.split_whitespace().enumerate() {
        if n > 0 {
            out.push(' ');
        }
        out.push_str(word);
        if out.chars().count() > MAX_REASON_CHARS {
            break;
        }
    }
    if out.chars().count() > MAX_REASON_CHARS {
        out = out.chars().take(MAX_REASON_CHARS).collect();
        out.push('…');
    }
    out
}

/// Classifies a request that got no answer. The reason names the cause without the URL (a
/// webhook URL is an address).
pub fn classify_error(err: &reqwest::Error) -> Outcome {
    if let Some(refused) = find_source::<Refused>(err) {
        return Outcome::permanent(refused.to_string());
    }
    let cause = root_cause(err);
    if err.is_timeout() {
        Outcome::transient(format!("timed out: {cause}"))
    } else if err.is_connect() {
        Outcome::transient(format!("connection failed: {cause}"))
    } else if err.is_builder() || err.is_redirect() {
        Outcome::permanent(format!("invalid request: {cause}"))
    } else {
        Outcome::transient(format!("request failed: {cause}"))
    }
}

fn find_source<'e, E: std::error::Error + 'static>(
    err: &'e (dyn std::error::Error + 'static),
) -> Option<&'e E> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

/// The innermost error's message (reqwest's own message carries the URL).
fn root_cause(err: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = err;
    let mut depth = 0;
    while let Some(next) = cause.source() {
        cause = next;
        depth += 1;
    }
    if depth == 0 {
        return "no further detail".into();
    }
    truncate_reason(&cause.to_string())
}

/// The most of an answer's body that is read: provider errors are short, and a webhook
/// target is not trusted to be.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Why a request got no answer, as the `error.type` of its span.
fn error_type(err: &reqwest::Error) -> &'static str {
    if find_source::<Refused>(err).is_some() {
        "refused"
    } else if err.is_timeout() {
        "timeout"
    } else if err.is_connect() {
        "connect"
    } else if err.is_builder() || err.is_redirect() {
        "invalid_request"
    } else {
        "request"
    }
}

/// Sends `request` and reads the answer (at most [`MAX_ANSWER_BYTES`] of its body); a request
/// that got no answer is classified. The call is an HTTP client span when spans are exported;
/// `path` says whether the URL's path may be shown on it.
pub(crate) async fn execute(request: RequestBuilder, path: UrlPath) -> Result<Answer, Outcome> {
    let (client, request) = request.build_split();
    let request = request.map_err(|e| classify_error(&e))?;
    let span = client_span(&request, path);
    exchange(&client, request, &span)
        .instrument(span.clone())
        .await
}

async fn exchange(
    client: &reqwest::Client,
    request: reqwest::Request,
    span: &tracing::Span,
) -> Result<Answer, Outcome> {
    let response = match client.execute(request).await {
        Ok(response) => response,
        Err(e) => {
            record_failure(span, error_type(&e));
            return Err(classify_error(&e));
        }
    };
    let status = response.status();
    record_status(span, status);
    let headers = response.headers().clone();
    let body = match read_body(response).await {
        Ok(body) => body,
        // The status line arrived: for a 2xx the provider took the message, and resending
        // would duplicate it, so the body (which only carries the id) is given up.
        Err(e) if status.is_success() => {
            tracing::warn!(error = %root_cause(&e), "answer body unreadable after a 2xx");
            String::new()
        }
        Err(e) => return Err(classify_error(&e)),
    };
    Ok(Answer {
        status,
        headers,
        body,
    })
}

async fn read_body(mut response: reqwest::Response) -> Result<String, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_ANSWER_BYTES - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_ANSWER_BYTES {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(retry_after: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = retry_after {
            h.insert(RETRY_AFTER, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn success_is_any_2xx() {
        for code in [200, 201, 202, 204] {
            let status = StatusCode::from_u16(code).unwrap();
            assert_eq!(classify_status(status, &headers(None), ""), Ok(()));
        }
    }

    #[test]
    fn rate_limits_and_server_errors_are_transient_with_the_hint() {
        let outcome = classify_status(
            StatusCode::TOO_MANY_REQUESTS,
            &headers(Some("7")),
            "slow down",
        )
        .unwrap_err();
        assert_eq!(
            outcome,
            Outcome::Transient {
                reason: "HTTP 429 Too Many Requests: slow down".into(),
                retry_after: Some(Duration::from_secs(7)),
            }
        );
        for code in [500, 502, 503, 504, 408] {
            let status = StatusCode::from_u16(code).unwrap();
            let outcome = classify_status(status, &headers(None), "").unwrap_err();
            assert!(
                matches!(
                    outcome,
                    Outcome::Transient {
                        retry_after: None,
                        ..
                    }
                ),
                "{code}: {outcome:?}"
            );
        }
    }

    #[test]
    fn other_client_errors_are_permanent_with_the_provider_text() {
        let outcome = classify_status(
            StatusCode::BAD_REQUEST,
            &headers(Some("5")),
            "{\"error\":\n  \"invalid 'To'\"}",
        )
        .unwrap_err();
        assert_eq!(
            outcome,
            Outcome::permanent("HTTP 400 Bad Request: {\"error\": \"invalid 'To'\"}")
        );
        for code in [401, 403, 404, 410, 422] {
            let status = StatusCode::from_u16(code).unwrap();
            let outcome = classify_status(status, &headers(None), "").unwrap_err();
            assert!(matches!(outcome, Outcome::Permanent { .. }), "{code}");
        }
    }

    #[test]
    fn redirects_are_permanent() {
        let outcome = classify_status(StatusCode::FOUND, &headers(None), "").unwrap_err();
        assert_eq!(
            outcome,
            Outcome::permanent("HTTP 302 Found (redirects are not followed)")
        );
    }

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_717); // 1994-11-06T08:48:37Z
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::from_secs(60))
        );
        // the obsolete formats HTTP still accepts
        assert_eq!(
            parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Sun Nov  6 08:49:37 1994", now),
            Some(Duration::from_secs(60))
        );
        // in the past: now
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("", now), None);
    }

    #[test]
    fn reasons_are_one_bounded_line() {
        let long = "é".repeat(1000);
        let cut = truncate_reason(&long);
        assert_eq!(cut.chars().count(), MAX_REASON_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(truncate_reason("a\n\n b\tc "), "a b c");
    }
}
