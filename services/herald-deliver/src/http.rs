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
