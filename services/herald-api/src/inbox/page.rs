//! `GET /inbox`: a minimal inbox page, plain HTML and JavaScript with no build step, served by
//! `herald api` as documentation that runs: a bell with the unread count, the message list,
//! mark read, mark all read, and live updates over the stream. Open it as
//! `/inbox#token=<user token>` (the fragment never reaches a server or a log).

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// The page's path.
pub const PATH: &str = "/inbox";
/// Its script's path.
pub const SCRIPT_PATH: &str = "/inbox/inbox.js";

const HTML: &str = include_str!("page/inbox.html");
const SCRIPT: &str = include_str!("page/inbox.js");

/// Only this origin's script, styles and API: nothing injected into a message can run.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; \
                      connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
                      frame-ancestors 'none'";

fn static_file(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// `GET /inbox`.
pub async fn page() -> Response {
    static_file(HTML, "text/html; charset=utf-8")
}

/// `GET /inbox/inbox.js`.
pub async fn script() -> Response {
    static_file(SCRIPT, "text/javascript; charset=utf-8")
}
