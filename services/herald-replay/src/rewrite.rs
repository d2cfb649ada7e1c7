//! What a replay changes in a record it copies: in `resend` mode the ids (so the pipeline
//! processes it again, once), and in every mode the headers (the replay's own, and none of the
//! error or retry bookkeeping of a record taken out of the DLQ).

use serde::{Deserialize, Serialize};

use herald_contracts::{Codec, CodecError, Decoded, Dispatch, NotificationRequest, headers};

/// Marks a resent event's id: `<event_id>:replay:<replay_id>`.
pub const REPLAY_ID_MARK: &str = ":replay:";

/// How a replay treats the ids of what it copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Keep event and dispatch ids: the dedupe and send ledgers let through only what never
    /// finished.
    Recover,
    /// Derive new ids from the replay id: everything matched is processed again, once.
    Resend,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Recover => "recover",
            Mode::Resend => "resend",
        }
    }
}

/// The id a `resend` replay gives a copied event or dispatch.
pub fn derived_id(id: &str, replay_id: &str) -> String {
    format!("{id}{REPLAY_ID_MARK}{replay_id}")
}

/// Why a record cannot be resent.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    /// Waiting can cure it (the registry is down).
    #[error("schema registry unavailable: {0}")]
    Unavailable(CodecError),
    /// The record is not a request or a dispatch Herald can read, so it has no id to derive.
    #[error("{0}")]
    NoId(String),
}

fn codec_error(e: CodecError) -> RewriteError {
    if e.is_transient() {
        RewriteError::Unavailable(e)
    } else {
        RewriteError::NoId(e.to_string())
    }
}

/// The value of a `resend` copy: a request with a derived event id, or a dispatch with derived
/// event and dispatch ids (and its fallback request's id derived too, so a fallback of the
/// resent dispatch is not taken for the original's).
pub async fn resend_value(
    codec: &Codec,
    decoded: &Decoded,
    replay_id: &str,
) -> Result<Vec<u8>, RewriteError> {
    match decoded {
        Decoded::Request(request) => codec
            .encode_request(&resent_request(request, replay_id))
            .await
            .map_err(codec_error),
        Decoded::Dispatch(dispatch) => {
            let fallback_request = match &dispatch.fallback_request {
                Some(bytes) => {
                    let request = codec.decode_request(bytes).await.map_err(codec_error)?;
                    Some(
                        codec
                            .encode_request(&resent_request(&request, replay_id))
                            .await
                            .map_err(codec_error)?,
                    )
                }
                None => None,
            };
            let resent = Dispatch {
                dispatch_id: derived_id(&dispatch.dispatch_id, replay_id),
                event_id: derived_id(&dispatch.event_id, replay_id),
                fallback_request,
                ..dispatch.clone()
            };
            codec.encode_dispatch(&resent).await.map_err(codec_error)
        }
        other => Err(RewriteError::NoId(format!(
            "a {} record has no id a resend can derive",
            other.schema_name().unwrap_or("schema-less")
        ))),
    }
}

fn resent_request(request: &NotificationRequest, replay_id: &str) -> NotificationRequest {
    NotificationRequest {
        event_id: derived_id(&request.event_id, replay_id),
        ..request.clone()
    }
}

/// Where a copied record came from, for its replay headers.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

/// Headers a replay drops from what it copies: an earlier replay's (replaced by this one's),
/// and a DLQ record's error and retry bookkeeping (the record starts its attempts afresh).
const DROPPED: [&str; 10] = [
    headers::ERROR_STAGE,
    headers::ERROR_CLASS,
    headers::ERROR_MESSAGE,
    headers::ORIGINAL_TOPIC,
    headers::ORIGINAL_PARTITION,
    headers::ORIGINAL_OFFSET,
    headers::ATTEMPT,
    headers::DUE_AT,
    headers::DEFERRED_SINCE,
    headers::REDRIVE_COUNT,
];

/// The headers of a copy: the original's, less [`DROPPED`] and any earlier replay's, plus this
/// replay's, plus `extra` (a redrive's count).
pub fn copy_headers(
    original: &[(String, Vec<u8>)],
    replay_id: &str,
    mode: Mode,
    source: Source<'_>,
    extra: &[(&str, String)],
) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = original
        .iter()
        .filter(|(k, _)| {
            !DROPPED.contains(&k.as_str()) && !headers::REPLAY_HEADERS.contains(&k.as_str())
        })
        .cloned()
        .collect();
    let ours = [
        (headers::REPLAY_ID, replay_id.to_owned()),
        (headers::REPLAY_MODE, mode.as_str().to_owned()),
        (headers::REPLAY_SOURCE_TOPIC, source.topic.to_owned()),
        (
            headers::REPLAY_SOURCE_PARTITION,
            source.partition.to_string(),
        ),
        (headers::REPLAY_SOURCE_OFFSET, source.offset.to_string()),
    ];
    for (name, value) in ours.into_iter().chain(extra.iter().cloned()) {
        out.push((name.to_owned(), value.into_bytes()));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_resend_id_names_the_replay() {
        assert_eq!(derived_id("e1", "r7"), "e1:replay:r7");
        assert_eq!(
            derived_id("e1:fallback:sms", "r7"),
            "e1:fallback:sms:replay:r7"
        );
    }

    #[test]
    fn copies_lose_error_headers_and_earlier_replays_and_name_this_one() {
        let original = vec![
            ("traceparent".to_owned(), b"00-a-b-01".to_vec()),
            (headers::ERROR_CLASS.to_owned(), b"x".to_vec()),
            (headers::ATTEMPT.to_owned(), b"4".to_vec()),
            (headers::REPLAY_ID.to_owned(), b"old".to_vec()),
            (headers::FALLBACK_CHAIN.to_owned(), b"push".to_vec()),
        ];
        let source = Source {
            topic: "notifications.dlq",
            partition: 2,
            offset: 41,
        };
        let out = copy_headers(
            &original,
            "r1",
            Mode::Resend,
            source,
            &[(headers::REDRIVE_COUNT, "1".to_owned())],
        );
        let names: Vec<&str> = out.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "traceparent",
                headers::FALLBACK_CHAIN,
                headers::REPLAY_ID,
                headers::REPLAY_MODE,
                headers::REPLAY_SOURCE_TOPIC,
                headers::REPLAY_SOURCE_PARTITION,
                headers::REPLAY_SOURCE_OFFSET,
                headers::REDRIVE_COUNT,
            ]
        );
        assert_eq!(out[2].1, b"r1");
        assert_eq!(out[3].1, b"resend");
        assert_eq!(out[6].1, b"41");
    }
}
