//! `herald track` in tests: starting it, synthetic status records, and what it wrote.

use futures::StreamExt;
use scylla::client::session::Session;
use std::collections::{BTreeMap, BTreeSet};

use herald_contracts::{Channel, Codec, Status, StatusEvent};

use crate::{HeraldEnv, RoleProcess};

/// Starts `herald track` in `env`.
pub fn spawn_track(env: &HeraldEnv) -> RoleProcess {
    env.spawn(
        "track",
        &["track"],
        &[("HERALD_TELEMETRY__LOG_LEVEL", "warn,herald_track=info")],
    )
}

/// Status records (key, value) for synthetic webhook dispatches `s-<i>`, three each: routed,
/// then the receiver's `delivered` before the worker's `sent` (out of order), users `u0`..`u6`.
pub async fn status_records(
    codec: &Codec,
    range: std::ops::Range<usize>,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let start = chrono::Utc::now();
    let mut records = Vec::new();
    for i in range {
        let user = format!("u{}", i % 7);
        let base = StatusEvent {
            event_id: format!("s-{i}"),
            dispatch_id: Some(format!("s-{i}:webhook")),
            tenant: "acme".into(),
            user_id: user.clone(),
            channel: Some(Channel::Webhook),
            status: Status::Routed,
            reason: None,
            provider: None,
            provider_message_id: None,
            attempt: 0,
            at: start + chrono::Duration::milliseconds(i as i64 * 10),
            ..Default::default()
        };
        for (status, after) in [
            (Status::Routed, 0),
            (Status::Delivered, 2),
            (Status::Sent, 1),
        ] {
            let event = StatusEvent {
                status,
                at: base.at + chrono::Duration::milliseconds(after),
                ..base.clone()
            };
            records.push((
                format!("acme:{user}").into_bytes(),
                codec.encode_status(&event).await.unwrap(),
            ));
        }
    }
    records
}

/// Every timeline row's source (`topic/partition/offset`), with how many rows it has.
pub async fn timeline_sources(session: &Session, env: &HeraldEnv) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    let mut rows = session
        .query_iter(format!("SELECT source FROM {}.timeline", env.name), ())
        .await
        .unwrap()
        .rows_stream::<(String,)>()
        .unwrap();
    while let Some(row) = rows.next().await {
        *counts.entry(row.unwrap().0).or_insert(0) += 1;
    }
    counts
}

/// Waits (up to `wait`) until the timeline holds rows of at least `expected` sources, asserts
/// that no source has two rows, and answers the sources written.
pub async fn timeline_sources_once(
    session: &Session,
    env: &HeraldEnv,
    expected: usize,
    wait: std::time::Duration,
) -> BTreeSet<String> {
    let written = crate::wait_for("a row for every status", wait, || {
        let written = futures::executor::block_on(timeline_sources(session, env));
        (written.len() >= expected).then_some(written)
    });
    let duplicates: Vec<_> = written.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicates.is_empty(), "written twice: {duplicates:?}");
    written.into_keys().collect()
}

/// The source of every record now on the status topic.
pub fn status_sources_on_topic(env: &HeraldEnv) -> BTreeSet<String> {
    let topic = env.topics().status();
    env.read_all(&topic)
        .iter()
        .map(|r| format!("{topic}/{}/{}", r["partition"], r["offset"]))
        .collect()
}
