//! Open and click tracking (no key): the open pixel and the redirect links the SMTP worker
//! puts into the email of a category that opted in (`track_engagement`, see
//! [`herald_contracts::tracking`]). `GET /v1/t/open/{token}` answers a 1x1 transparent GIF and
//! `GET /v1/t/click/{token}` a 302 to the link's original URL, which comes only from the
//! verified token: never an open redirect. A damaged or forged token is 400 and records
//! nothing.
//!
//! Each dispatch's first open and first click become an `opened` and a `clicked` status on
//! `notifications.status`, once per dispatch across replicas (herald-store
//! [`engagement`](herald_store::engagement)); later ones are counted in
//! `herald_api_engagement_total{outcome="repeat"}`, not emitted.
//!
//! Why the claim comes before the publish, and what a crash does:
//! - Claim (a lightweight transaction), publish and wait for the broker's acknowledgement, then
//!   mark the claim done. Two replicas never both publish a fresh claim.
//! - The publish fails (Kafka down, no acknowledgement within the publish timeout): the claim
//!   is deleted, so the next open or click of the dispatch publishes; the person still gets
//!   the image or the redirect (their click must not fail for our bookkeeping), and the miss
//!   is counted (`outcome="unrecorded"`), never reported as recorded.
//! - The replica dies, or the request is cut off by `api.request_timeout`, between the claim
//!   and the mark: the claim is left neither done nor deleted, and the next open or click
//!   after `api.request_timeout + api.produce_timeout` (when a live claim's publish has
//!   certainly ended) takes it over and publishes. A status is lost only if the person never
//!   opens or clicks again; a duplicate is possible only when the status reached the broker
//!   before the crash (or after a timeout), the same window as the send ledger's. `herald
//!   track` ranks states, so a duplicate never moves a dispatch's latest state.
//! - The database does not answer the claim: nothing is published (it cannot tell a first
//!   open from a repeat) and the miss is counted as unrecorded.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use std::time::Duration;

use herald_contracts::tracking::{Engagement, EngagementKind, TrackingLinks, is_http_url};
use herald_contracts::{Channel, Status, StatusEvent};
use herald_runtime::metric_names::API_ENGAGEMENT;
use herald_store::engagement::{Claim, EngagementMarks, Mark};

use crate::AppState;
use crate::problem::Problem;

/// A 1x1 transparent GIF (GIF89a, one transparent pixel).
const PIXEL_GIF: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// What recording needs beyond the links.
#[derive(Debug, Clone)]
pub struct Tracking {
    pub links: TrackingLinks,
    pub marks: EngagementMarks,
    /// When another request's claim can no longer be publishing:
    /// `api.request_timeout + api.produce_timeout`.
    pub stale_after: Duration,
}

/// What became of one open or click, the `outcome` label of `herald_api_engagement_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The dispatch's first: its status was published.
    Recorded,
    /// Not the first: counted only.
    Repeat,
    /// More than `tracking.record_for` after routing: counted only.
    Late,
    /// Kafka or the database failed: no status; the next one tries again.
    Unrecorded,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Recorded => "recorded",
            Outcome::Repeat => "repeat",
            Outcome::Late => "late",
            Outcome::Unrecorded => "unrecorded",
        }
    }
}

/// The tracking setup and the token's engagement, or the problem with the link.
fn verified(
    tracking: Option<&Tracking>,
    kind: EngagementKind,
    path: Result<Path<String>, PathRejection>,
) -> Result<(&Tracking, Engagement), Problem> {
    let tracking = tracking
        .ok_or_else(|| Problem::not_found("tracking links are not configured ([tracking])"))?;
    let Path(token) = path.map_err(|e| Problem::bad_request(e.body_text()))?;
    let engagement = tracking
        .links
        .verify(kind, &token)
        .map_err(|e| Problem::bad_request(e.to_string()))?;
    Ok((tracking, engagement))
}

/// The problems a tracking link can answer.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // documents the answers; handlers build `Problem`s
pub(crate) enum LinkErrors {
    /// The token is damaged or forged; nothing recorded.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// Tracking is not configured (`[tracking]`).
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
}

/// Emits the dispatch's status if this is its first open or click (see the module doc).
async fn record(state: &AppState, tracking: &Tracking, engagement: &Engagement) -> Outcome {
    let now = Utc::now();
    let record_for =
        chrono::Duration::from_std(tracking.links.record_for()).unwrap_or(chrono::Duration::MAX);
    let Some(ttl) = engagement
        .routed_at
        .checked_add_signed(record_for)
        .and_then(|until| until.signed_duration_since(now).to_std().ok())
        .filter(|left| !left.is_zero())
    else {
        return Outcome::Late;
    };
    let mark = Mark {
        tenant: &engagement.tenant,
        dispatch_id: &engagement.dispatch_id,
        kind: engagement.kind.as_str(),
    };
    let token = match tracking
        .marks
        .claim(mark, now, ttl, tracking.stale_after)
        .await
    {
        Ok(Claim::Held { token, taken_over }) => {
            if taken_over {
                tracing::info!(dispatch_id = %engagement.dispatch_id, kind = mark.kind,
                    "took over a stale engagement claim");
            }
            token
        }
        Ok(Claim::Done | Claim::Busy) => return Outcome::Repeat,
        Err(error) => {
            tracing::warn!(dispatch_id = %engagement.dispatch_id, kind = mark.kind, %error,
                "cannot record an engagement: the database did not answer");
            return Outcome::Unrecorded;
        }
    };
    let status = StatusEvent {
        event_id: engagement.event_id.clone(),
        dispatch_id: Some(engagement.dispatch_id.clone()),
        tenant: engagement.tenant.clone(),
        user_id: engagement.user_id.clone(),
        channel: Some(Channel::Email),
        status: match engagement.kind {
            EngagementKind::Open => Status::Opened,
            EngagementKind::Click => Status::Clicked,
        },
        reason: None,
        provider: None,
        provider_message_id: None,
        attempt: 0,
        at: herald_contracts::time::now_millis(),
        scheduled_for: None,
        category: Some(engagement.category.clone()),
        created_at: Some(engagement.created_at),
    };
    if state.statuses.publish(&status).await.is_err() {
        // The publisher logged why.
        tracing::warn!(dispatch_id = %engagement.dispatch_id, kind = mark.kind,
            "cannot record an engagement: the status was not acknowledged");
        if let Err(error) = tracking.marks.release(mark, &token).await {
            // The claim goes stale and the next open or click after `stale_after` takes it.
            tracing::warn!(dispatch_id = %engagement.dispatch_id, %error,
                "cannot release an engagement claim");
        }
        return Outcome::Unrecorded;
    }
    if let Err(error) = tracking.marks.mark_done(mark, &token, ttl).await {
        // The status is out; a stale claim may be taken over later and publish it again.
        tracing::warn!(dispatch_id = %engagement.dispatch_id, %error,
            "cannot mark an engagement recorded");
    }
    Outcome::Recorded
}

fn counted(kind: EngagementKind, outcome: Outcome) {
    metrics::counter!(API_ENGAGEMENT, "kind" => kind.as_str(), "outcome" => outcome.as_str())
        .increment(1);
}

/// Headers every tracking answer has: nothing may be cached, or a second open would not
/// reach the API (and a cached redirect would skip it too).
fn uncached(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache, must-revalidate, max-age=0"),
    );
    response
}

/// A URL as a `Location` value: bytes outside visible ASCII percent-encoded (an HTML link
/// can hold raw UTF-8, a header cannot).
fn location(target: &str) -> Option<HeaderValue> {
    let mut out = String::with_capacity(target.len());
    for byte in target.bytes() {
        if (0x21..=0x7e).contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    HeaderValue::from_str(&out).ok()
}

#[utoipa::path(
    get,
    path = "/v1/t/open/{token}",
    tag = "herald",
    security(()),
    params(
        ("token" = String, Path, description = "The signed token of an email's open pixel"),
    ),
    responses(
        (status = 200, description = "A 1x1 transparent GIF, never cached. The dispatch's first open emits an `opened` status; the image is answered also when that could not be recorded (counted in herald_api_engagement_total)", content_type = "image/gif"),
        LinkErrors,
    ),
)]
/// `GET /v1/t/open/{token}`: the open pixel.
pub async fn open(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    let (tracking, engagement) = verified(state.tracking.as_ref(), EngagementKind::Open, path)?;
    counted(
        EngagementKind::Open,
        record(&state, tracking, &engagement).await,
    );
    let mut response = (StatusCode::OK, PIXEL_GIF).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("image/gif"));
    Ok(uncached(response))
}

#[utoipa::path(
    get,
    path = "/v1/t/click/{token}",
    tag = "herald",
    security(()),
    params(
        ("token" = String, Path, description = "The signed token of a rewritten link"),
    ),
    responses(
        (status = 302, description = "To the link's original URL, taken from the verified token. The dispatch's first click emits a `clicked` status; the redirect is answered also when that could not be recorded (counted in herald_api_engagement_total)",
            headers(("Location" = String, description = "The original URL"))),
        LinkErrors,
    ),
)]
/// `GET /v1/t/click/{token}`: a rewritten link.
pub async fn click(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    let (tracking, engagement) = verified(state.tracking.as_ref(), EngagementKind::Click, path)?;
    let target = engagement
        .target
        .as_deref()
        .filter(|t| is_http_url(t))
        .and_then(location)
        .ok_or_else(|| Problem::bad_request("the link's target is not an http(s) URL"))?;
    counted(
        EngagementKind::Click,
        record(&state, tracking, &engagement).await,
    );
    let mut response = StatusCode::FOUND.into_response();
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, target);
    // The target learns nothing of the token from the redirect.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Ok(uncached(response))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_pixel_is_a_1x1_gif() {
        assert!(PIXEL_GIF.starts_with(b"GIF89a"));
        assert_eq!(&PIXEL_GIF[6..10], &[1, 0, 1, 0]);
        assert_eq!(PIXEL_GIF.last(), Some(&0x3b));
    }

    #[test]
    fn locations_are_visible_ascii() {
        assert_eq!(
            location("https://ü.example/a b?c=é#d").unwrap(),
            "https://%C3%BC.example/a%20b?c=%C3%A9#d"
        );
        assert_eq!(
            location("https://a.example/x?y=1&z=%20").unwrap(),
            "https://a.example/x?y=1&z=%20"
        );
    }
}
