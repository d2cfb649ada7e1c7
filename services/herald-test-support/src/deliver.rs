//! Delivery-worker tests: a test env whose webhook worker may call 127.0.0.1, dispatches to a
//! stand-in receiver, and readers for the worker's statuses and metrics.

use herald_contracts::{Channel, Codec, Dispatch, Lane};

use crate::dispatch::sample_dispatch;
use crate::kafka::produce_raw;
use crate::{HeraldEnv, RoleProcess};

/// An example secret from the Standard Webhooks specification.
pub const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The `[deliver]` settings most worker tests use: 1 s, 2 s, 3 s retry tiers, a short ledger
/// lease and a fixed instance id.
pub const DELIVER_DEFAULTS: &str =
    "retry_delays = [\"1s\", \"2s\", \"3s\"]\nledger_lease = \"10s\"\ninstance_id = \"w1\"\n";

/// A prepared test env (topics, schemas, keyspace) whose worker delivers webhooks to
/// 127.0.0.1. `deliver` is the body of the `[deliver]` table (it may open `[deliver.*]`
/// tables after its keys), e.g. [`DELIVER_DEFAULTS`].
pub fn webhook_env(bin: &str, name: &str, deliver: &str) -> HeraldEnv {
    let env = HeraldEnv::new(bin, name);
    env.prepare(true);
    env.append_config(&format!(
        "\n[deliver]\n{deliver}\n\n\
         [deliver.providers.webhook]\nallow = [\"127.0.0.1/32\"]\ndefault_secret = \"{WEBHOOK_SECRET}\"\n"
    ));
    env
}

/// Starts `herald deliver --channel webhook` with the deliver crate logging at info, plus
/// `envs`.
pub fn spawn_webhook_worker(env: &HeraldEnv, envs: &[(&str, &str)]) -> RoleProcess {
    let mut all = vec![(
        "HERALD_TELEMETRY__LOG_LEVEL",
        "warn,herald_deliver=info,herald_kafka=info",
    )];
    all.extend_from_slice(envs);
    env.spawn("deliver", &["deliver", "--channel", "webhook"], &all)
}

/// A webhook dispatch for `user` to `<base_url>/<path>/<event id>`.
pub fn webhook_dispatch(base_url: &str, path: &str, user: &str) -> Dispatch {
    let mut dispatch = sample_dispatch(Channel::Webhook, "");
    dispatch.address = format!("{base_url}/{path}/{}", dispatch.event_id);
    dispatch.user_id = user.into();
    dispatch
}

/// Produces `dispatches` to their channel's `lane` topic with one producer.
pub async fn produce_dispatches(
    env: &HeraldEnv,
    codec: &Codec,
    lane: Lane,
    dispatches: &[Dispatch],
) {
    let Some(first) = dispatches.first() else {
        return;
    };
    let mut records = Vec::new();
    for dispatch in dispatches {
        let bytes = codec.encode_dispatch(dispatch).await.unwrap();
        records.push((dispatch.key().into_bytes(), bytes));
    }
    let topic = env.topics().dispatch(first.channel, lane);
    tokio::task::block_in_place(|| {
        crate::kafka::produce_raw_many(&env.kafka_config(), &topic, &records)
    });
}

/// Produces `dispatch` to its channel's `lane` topic.
pub async fn produce_dispatch(env: &HeraldEnv, codec: &Codec, lane: Lane, dispatch: &Dispatch) {
    let bytes = codec.encode_dispatch(dispatch).await.unwrap();
    produce_raw(
        &env.kafka_config(),
        &env.topics().dispatch(dispatch.channel, lane),
        dispatch.key().as_bytes(),
        &bytes,
        &[],
    );
}

/// Status records of one dispatch, as (status, attempt), in topic order.
pub fn statuses_of(records: &[serde_json::Value], dispatch_id: &str) -> Vec<(String, i64)> {
    records
        .iter()
        .filter(|r| r["value"]["dispatch_id"] == dispatch_id)
        .map(|r| {
            (
                r["value"]["status"].as_str().unwrap().to_owned(),
                r["value"]["attempt"].as_i64().unwrap(),
            )
        })
        .collect()
}
