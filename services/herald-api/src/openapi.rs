//! The OpenAPI 3.1 description of `/v1`, generated from the handlers and types
//! ([`utoipa`]), served at `/openapi.json` and kept in the repository as
//! `services/herald-api/openapi.json` (a test fails when the two differ; run it with
//! `HERALD_UPDATE_OPENAPI=1` to rewrite the file).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::{
    callbacks, categories, inbox, manage, preview, send, suppressions, templates, timeline,
    tracking, unsubscribe, webhooks,
};

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Herald API",
        description = "Send notifications and manage users, preferences, categories and webhook \
endpoints. Every `/v1` route takes a tenant API key as `Authorization: Bearer hrld_...` and acts \
inside its tenant. Every error is an RFC 9457 problem (`application/problem+json`). Sending is \
answered 202 only once Kafka acknowledged the request; a 503 may still have been accepted, so \
retry with the same `Idempotency-Key` header (or `event_id`). Changes to users, preferences, \
categories and webhook endpoints reach the router within its cache TTL (`router.cache_ttl`, \
30 s by default). Template versions are immutable: a new one is a draft, which a preview \
renders when given its number but the router does not, until it is published; a publication \
reaches the router within the same cache TTL. The router treats a request pinned to a draft \
version like one pinned to an unknown version (dead-lettered, `unknown_template`). \
The timeline routes read what `herald track` wrote from `notifications.status` (a status is \
visible within about 2 s). `/v1/unsubscribe/{token}` takes no key: the signed, expiring link of an email's \
`List-Unsubscribe` header (RFC 8058 one-click). `/v1/callbacks/sendgrid` and \
`/v1/callbacks/twilio` take no key either: they are the providers' delivery callbacks, each \
verified by the provider's signature (401 otherwise). Suppressed email addresses (hard bounces, \
complaints, or added by hand) are not emailed until deleted; the router sees a change within \
its cache TTL. `/v1/t/open/{token}` and `/v1/t/click/{token}` take no key: an email's open \
pixel and redirect links (a category's `track_engagement`), signed; the first open and click of \
a dispatch become `opened` and `clicked` statuses. The `/v1/inbox` routes take a user token \
(`POST /v1/users/{user_id}/inbox-token`), not a tenant key, and act on that user's in-app inbox \
only; they answer 404 until `api.inbox.token_secret` is set."
    ),
    paths(
        send::post_notification,
        send::post_batch,
        timeline::get_notification,
        timeline::list_user_notifications,
        manage::put_user,
        manage::get_user,
        manage::delete_user,
        manage::get_preferences,
        manage::put_preferences,
        manage::add_push_token,
        manage::remove_push_token,
        webhooks::create,
        webhooks::list,
        webhooks::disable,
        webhooks::enable,
        webhooks::rotate,
        webhooks::delete,
        categories::get_category,
        categories::put_category,
        categories::delete_category,
        preview::preview,
        templates::create_version,
        templates::publish_version,
        templates::get_template,
        templates::get_version,
        unsubscribe::confirm,
        unsubscribe::unsubscribe,
        callbacks::sendgrid::receive,
        callbacks::twilio::receive,
        suppressions::list,
        suppressions::add,
        suppressions::get,
        suppressions::delete,
        tracking::open,
        tracking::click,
        inbox::user::issue,
        inbox::messages::list,
        inbox::messages::get,
        inbox::messages::counts,
        inbox::messages::mark,
        inbox::stream::stream,
    ),
    modifiers(&BearerKey),
    security(("api_key" = []))
)]
pub struct ApiDoc;

/// The tenant API key as a bearer token.
struct BearerKey;

impl Modify for BearerKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A tenant API key from `herald apikey create` (`hrld_<id>_<secret>`)",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "inbox_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A user token from `POST /v1/users/{user_id}/inbox-token` (HS256 JWT)",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document as served and as kept in the repository.
pub fn json() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_copy_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
        let generated = format!("{}\n", json());
        if std::env::var_os("HERALD_UPDATE_OPENAPI").is_some() {
            std::fs::write(path, &generated).unwrap();
        }
        let kept = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            kept == generated,
            "{path} is not what the code generates; rerun this test with HERALD_UPDATE_OPENAPI=1"
        );
        let doc: serde_json::Value = serde_json::from_str(&generated).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        assert_eq!(doc["paths"].as_object().unwrap().len(), 32);
    }
}
