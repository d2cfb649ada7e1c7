//! Browser access to the inbox routes (CORS), per tenant: a page of an origin listed in
//! `api.inbox.allowed_origins.<tenant>` may call them with a token of that tenant. A preflight
//! carries no token, so it is allowed for an origin some tenant lists; the answer itself is
//! readable only by an origin the token's tenant lists (or, when the token is not valid, by any
//! listed origin, so that the page can read its 401). Tokens travel in a header, not in cookies,
//! so credentials are never allowed.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use std::collections::{BTreeMap, BTreeSet};

use crate::AppState;
use crate::inbox::user::presented;

/// How long a browser may remember a preflight's answer, in seconds.
const PREFLIGHT_MAX_AGE: &str = "600";

/// The allowed origins, by tenant.
#[derive(Debug, Clone, Default)]
pub struct AllowedOrigins {
    by_tenant: BTreeMap<String, BTreeSet<String>>,
}

impl AllowedOrigins {
    pub fn new(by_tenant: &BTreeMap<String, Vec<String>>) -> Self {
        Self {
            by_tenant: by_tenant
                .iter()
                .map(|(tenant, origins)| (tenant.clone(), origins.iter().cloned().collect()))
                .collect(),
        }
    }

    fn allows(&self, tenant: Option<&str>, origin: &str) -> bool {
        match tenant {
            Some(tenant) => self
                .by_tenant
                .get(tenant)
                .is_some_and(|origins| origins.contains(origin)),
            None => self
                .by_tenant
                .values()
                .any(|origins| origins.contains(origin)),
        }
    }
}

/// The middleware of the inbox routes.
pub async fn cors(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let Some(origin) = origin else {
        return next.run(request).await;
    };
    let origins = &state.inbox.origins;
    let preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        let mut response = StatusCode::NO_CONTENT.into_response();
        if origins.allows(None, &origin) {
            allow(response.headers_mut(), &origin);
            let headers = response.headers_mut();
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, POST"),
            );
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("authorization, content-type, last-event-id"),
            );
            headers.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static(PREFLIGHT_MAX_AGE),
            );
        }
        vary(response.headers_mut());
        return response;
    }
    let tenant = state.inbox.tokens.as_ref().and_then(|tokens| {
        let token = presented(request.headers(), request.uri().query())?;
        tokens
            .verify(&token, Utc::now())
            .ok()
            .map(|user| user.tenant)
    });
    let mut response = next.run(request).await;
    if origins.allows(tenant.as_deref(), &origin) {
        allow(response.headers_mut(), &origin);
    }
    vary(response.headers_mut());
    response
}

fn allow(headers: &mut HeaderMap, origin: &str) {
    if let Ok(value) = HeaderValue::from_str(origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
}

/// The answer depends on `Origin`: caches must not hand it to another origin.
fn vary(headers: &mut HeaderMap) {
    headers.append(header::VARY, HeaderValue::from_static("origin"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_origin_is_allowed_for_the_tenants_that_list_it() {
        let origins = AllowedOrigins::new(
            &[
                (
                    "acme".to_owned(),
                    vec!["https://app.acme.example".to_owned()],
                ),
                ("beta".to_owned(), vec!["https://beta.example".to_owned()]),
            ]
            .into(),
        );
        assert!(origins.allows(Some("acme"), "https://app.acme.example"));
        assert!(!origins.allows(Some("acme"), "https://beta.example"));
        assert!(!origins.allows(Some("gamma"), "https://beta.example"));
        assert!(origins.allows(None, "https://beta.example"));
        assert!(!origins.allows(None, "https://evil.example"));
    }
}
