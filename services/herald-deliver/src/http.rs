//! The HTTP client every HTTP adapter starts from.

use reqwest::ClientBuilder;
use reqwest::redirect::Policy;
use std::time::Duration;

pub(crate) const USER_AGENT: &str = concat!("herald/", env!("CARGO_PKG_VERSION"));

/// Timeouts, Herald's user agent, and no redirects: a provider API that redirects is
/// misconfigured, and a webhook that redirects could point anywhere (a 3xx is permanent).
pub(crate) fn client_builder(timeout: Duration, connect_timeout: Duration) -> ClientBuilder {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(connect_timeout)
        .user_agent(USER_AGENT)
        .redirect(Policy::none())
}

/// `base` without trailing slashes, so `{base}/path` has exactly one.
pub(crate) fn base_url(key: &str, base: &str) -> Result<String, crate::BuildError> {
    let parsed = reqwest::Url::parse(base)
        .map_err(|e| crate::BuildError::config(key, format!("`{base}` is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(crate::BuildError::config(
            key,
            format!("`{base}` is not an http(s) URL"),
        ));
    }
    Ok(base.trim_end_matches('/').to_owned())
}

/// Whether a request's path may appear on its span. A webhook URL is the recipient's address
/// (its path may hold a token, as in chat hooks) and an APNs path holds the device token:
/// their spans show only the origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UrlPath {
    Shown,
    Hidden,
}

/// The HTTP client span of one provider call (OpenTelemetry HTTP conventions), a child of the
/// delivery attempt's; disabled when spans are not exported. `url.full` never has a query,
/// credentials or a fragment, and has the path only when `path` allows.
pub(crate) fn client_span(request: &reqwest::Request, path: UrlPath) -> tracing::Span {
    if !herald_runtime::telemetry::traces_exported() {
        return tracing::Span::none();
    }
    let url = request.url();
    let method = request.method().as_str();
    tracing::info_span!(
        "http",
        otel.name = method,
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        http.request.method = method,
        server.address = url.host_str().unwrap_or_default(),
        // i64: the OpenTelemetry layer would record an unsigned integer as text.
        server.port = url.port_or_known_default().map(i64::from),
        url.full = shown_url(url, path),
        http.response.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
    )
}

/// `scheme://host[:port]` and the path (or `/REDACTED`).
fn shown_url(url: &reqwest::Url, path: UrlPath) -> String {
    let mut shown = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
    if let Some(port) = url.port() {
        shown.push(':');
        shown.push_str(&port.to_string());
    }
    match path {
        UrlPath::Shown => shown.push_str(url.path()),
        UrlPath::Hidden => shown.push_str("/REDACTED"),
    }
    shown
}

/// Records the answer's status on a client span; a 4xx or 5xx is an error.
pub(crate) fn record_status(span: &tracing::Span, status: reqwest::StatusCode) {
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_client_error() || status.is_server_error() {
        span.record("otel.status_code", "ERROR");
        span.record("error.type", status.as_str());
    }
}

/// Records why a call got no answer (`timeout`, `connect`, `refused`, ...) on a client span.
pub(crate) fn record_failure(span: &tracing::Span, error_type: &'static str) {
    span.record("otel.status_code", "ERROR");
    span.record("error.type", error_type);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn spans_show_no_query_credentials_or_hidden_path() {
        let url =
            reqwest::Url::parse("https://user:pw@api.example.com:8443/v3/mail/send?key=s3cret#x")
                .unwrap();
        assert_eq!(
            shown_url(&url, UrlPath::Shown),
            "https://api.example.com:8443/v3/mail/send"
        );
        let hook = reqwest::Url::parse("https://hooks.example.com/services/T0/B0/token").unwrap();
        assert_eq!(
            shown_url(&hook, UrlPath::Hidden),
            "https://hooks.example.com/REDACTED"
        );
    }
}
