//! One-click unsubscribe (RFC 8058), without an API key: the link in an email's
//! `List-Unsubscribe` header is signed and expiring (see
//! [`herald_contracts::unsubscribe`]). `GET` shows a confirmation page with a form; `POST`
//! (what a mail client sends for one click, and what the form sends) opts the user out of the
//! link's category. A damaged or forged link is 400, an expired one 410; neither writes
//! anything. The router sees the opt-out within its cache TTL (`router.cache_ttl`); a
//! mandatory category is still sent, as with any opt-out.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;

use herald_contracts::unsubscribe::{LinkError, Unsubscribe, UnsubscribeLinks};

use crate::AppState;
use crate::problem::Problem;

/// The link's request, or the problem with the link.
fn verified(
    links: Option<&UnsubscribeLinks>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Unsubscribe, Problem> {
    let links = links.ok_or_else(|| {
        Problem::not_found("unsubscribe links are not configured ([unsubscribe])")
    })?;
    let Path(token) = path.map_err(|e| Problem::bad_request(e.body_text()))?;
    links
        .verify(&token, Utc::now())
        .map_err(|error| match error {
            LinkError::Invalid => Problem::bad_request(error.to_string()),
            LinkError::Expired(_) => Problem {
                kind: "urn:herald:problem:expired".into(),
                title: "Link expired",
                status: StatusCode::GONE.as_u16(),
                detail: Some(format!(
                    "{error}; use the link in a newer message, or change your preferences \
                     where you manage them"
                )),
                errors: Vec::new(),
            },
        })
}

/// Text for an HTML page: `&`, `<`, `>`, `"` and `'` as entities.
fn escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <title>{title}</title></head>\n<body>\n<h1>{title}</h1>\n{body}\n</body></html>\n"
    );
    let mut response = (StatusCode::OK, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // The page holds the link's token: keep it out of caches.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[utoipa::path(
    get,
    path = "/v1/unsubscribe/{token}",
    tag = "herald",
    security(()),
    params(
        ("token" = String, Path, description = "The signed token of a List-Unsubscribe link"),
    ),
    responses(
        (status = 200, description = "A confirmation page with a form that POSTs to the same URL", content_type = "text/html"),
        (status = 400, description = "The link is damaged or forged", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unsubscribe links are not configured", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The link expired", body = Problem, content_type = "application/problem+json"),
    ),
)]
/// `GET /v1/unsubscribe/{token}`: the confirmation page; nothing is written.
pub async fn confirm(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    let asked = verified(state.unsubscribe.as_ref(), path)?;
    let category = escaped(&asked.category);
    Ok(page(
        "Unsubscribe",
        &format!(
            "<p>Stop receiving <strong>{category}</strong> messages?</p>\n\
             <form method=\"post\"><button type=\"submit\">Unsubscribe</button></form>"
        ),
    ))
}

#[utoipa::path(
    post,
    path = "/v1/unsubscribe/{token}",
    tag = "herald",
    security(()),
    params(
        ("token" = String, Path, description = "The signed token of a List-Unsubscribe link"),
    ),
    request_body(content = String, description = "`List-Unsubscribe=One-Click` (RFC 8058); any body is accepted", content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The user is opted out of the link's category (again, if already)", content_type = "text/html"),
        (status = 400, description = "The link is damaged or forged; nothing written", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unsubscribe links are not configured", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The link expired; nothing written", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database did not answer; nothing may have been written, retry", body = Problem, content_type = "application/problem+json"),
    ),
)]
/// `POST /v1/unsubscribe/{token}`: one-click opt-out of the link's category.
pub async fn unsubscribe(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    let asked = verified(state.unsubscribe.as_ref(), path)?;
    state
        .users
        .opt_out(&asked.tenant, &asked.user_id, &asked.category)
        .await?;
    tracing::info!(tenant = %asked.tenant, category = %asked.category, "unsubscribed");
    let category = escaped(&asked.category);
    Ok(page(
        "Unsubscribed",
        &format!("<p>You will no longer receive <strong>{category}</strong> messages.</p>"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_text_is_escaped() {
        assert_eq!(
            escaped("<a href=\"x\">&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
    }
}
