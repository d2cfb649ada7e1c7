//! Dispatch records for delivery tests, as the router would emit them.

use herald_contracts::time::now_millis;
use herald_contracts::{Channel, Dispatch, Priority, RenderedContent, TemplateRef};

use crate::unique;

/// A dispatch of a fresh event (unique event id; dispatch id `<event id>:<channel>`) to
/// `address`, with a subject, a text and an HTML body that carry non-ASCII text, and a JSON
/// payload.
pub fn sample_dispatch(channel: Channel, address: &str) -> Dispatch {
    let event_id = unique("evt");
    Dispatch {
        dispatch_id: format!("{event_id}:{channel}"),
        event_id,
        tenant: "acme".into(),
        user_id: "u-1".into(),
        category: "billing.invoice_ready".into(),
        channel,
        priority: Priority::High,
        address: address.into(),
        content: RenderedContent {
            subject: Some("Facture n° 42 prête — 12,50 €".into()),
            text: Some("Bonjour Zoë,\nvotre facture est prête : 12,50 €.\n".into()),
            html: Some(
                "<p>Bonjour Zoë,</p><p>votre facture est prête : <b>12,50 €</b>.</p>".into(),
            ),
            json: Some(r#"{"invoice":"INV-42","amount":"12.50"}"#.into()),
            ..RenderedContent::default()
        },
        template: TemplateRef {
            id: "invoice_ready".into(),
            version: Some(1),
        },
        locale: "fr".into(),
        attempt: 0,
        deadline: None,
        fallback: Vec::new(),
        fallback_request: None,
        created_at: now_millis(),
        routed_at: now_millis(),
        track_engagement: false,
    }
}
