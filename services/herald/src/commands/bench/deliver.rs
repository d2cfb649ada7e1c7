//! `herald bench deliver --channel webhook`: produces webhook dispatches to the bulk dispatch
//! topic, then measures (1) a baseline that consumes them and POSTs each body with no ledger,
//! breaker or retry and (2) the delivery worker, as a child process, on the same records, both
//! against a local sink that answers 200 at once; then a steady offered load. Prints
//! deliveries/s, the ratio, the worker's CPU, CQL statements and allocations per delivery, its
//! peak RSS, and latency from `created_at` to the provider call (the sink's receipt).

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureProducer;
use std::collections::HashMap;
use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::config_file::HeraldConfig;
use herald_contracts::time::now_millis;
use herald_contracts::{
    Channel, Codec, Decoded, Dispatch, Lane, Priority, RenderedContent, TemplateRef,
};
use herald_deliver::webhook::{WEBHOOK_ID, webhook_body};
use herald_kafka::apply_plan;

use super::child::{Spent, config_path, free_port, herald, peak_rss, run_env, wait_ready};
use super::flood::{Flood, IN_FLIGHT};
use crate::cli::BenchDeliverArgs;
use crate::exit;
use herald_runtime::metric_names::DELIVER_OUTCOMES;

/// An example secret from the Standard Webhooks specification; the sink does not verify it.
const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const BASELINE_GROUP: &str = "bench-deliver-baseline";
/// How long a phase may go without a new receipt before the bench gives up.
const STALL: Duration = Duration::from_secs(120);

pub(super) async fn run(
    config: &HeraldConfig,
    args: &BenchDeliverArgs,
) -> anyhow::Result<ExitCode> {
    if args.channel != Channel::Webhook {
        eprintln!(
            "herald: bench deliver has a local sink for webhook only, not {}",
            args.channel
        );
        return Ok(exit::config());
    }
    let (run_id, config) = super::isolated(config)?;
    let topics = config.kafka.topics();
    let topic = topics.dispatch(Channel::Webhook, Lane::Bulk);
    println!(
        "bench {run_id}: {} webhook dispatches to {} recipients, {} partitions",
        args.dispatches, args.recipients, args.partitions
    );

    // Topics and keyspace (the worker reads webhook_endpoints and writes the send ledger).
    let plan = super::declared_topics(&config, args.partitions, args.replication_factor)?;
    apply_plan(&config.kafka.client_config(), &plan, false).await?;
    let session = herald_store::connect(&config.store).await?;
    herald_store::migrate(&session, &config.store).await?;
    drop(session);

    let sink = Sink::start().await?;
    let codec = Codec::new(&config.registry, topics.clone())?;
    let started = std::time::Instant::now();
    let produced = produce(&config, &codec, &topic, &sink.base_url, args).await?;
    println!(
        "produced {} dispatches in {:.1}s; sink on {}",
        args.dispatches,
        started.elapsed().as_secs_f64(),
        sink.base_url
    );

    // Baseline: consume, decode, POST the body; nothing else.
    let phase_start = now_micros();
    let baseline_group = config.kafka.group(BASELINE_GROUP);
    baseline(
        &config,
        &codec,
        &baseline_group,
        &topic,
        args.dispatches,
        args.concurrency,
    )
    .await?;
    sink.wait_for(args.dispatches).await?;
    let baseline_run = sink.take(phase_start, &produced);

    // The worker, as its own process so that its CPU, memory and metrics are its own, with a
    // fresh group (the bench's prefix), until the sink has every dispatch id.
    let admin_port = free_port()?;
    let mut env = run_env(&config);
    env.extend([
        ("HERALD_ADMIN__LISTEN", format!("127.0.0.1:{admin_port}")),
        ("HERALD_DELIVER__INSTANCE_ID", "bench".to_owned()),
        (
            "HERALD_DELIVER__PROVIDERS__WEBHOOK__ALLOW",
            r#"["127.0.0.1/32"]"#.to_owned(),
        ),
        (
            "HERALD_DELIVER__PROVIDERS__WEBHOOK__DEFAULT_SECRET",
            WEBHOOK_SECRET.to_owned(),
        ),
    ]);
    let mut command = herald(&config_path(), &env);
    command
        .args(["deliver", "--channel", "webhook"])
        .stdout(Stdio::null());
    let phase_start = now_micros();
    let mut worker = command.spawn().context("starting herald deliver")?;
    let pid = worker.id().context("herald deliver exited at once")?;
    wait_ready(admin_port).await?;
    // Costs are counted from readiness: start-up is not a delivery's.
    let spent_at_start = Spent::read(pid, admin_port, DELIVER_OUTCOMES).await;
    let mut peak_rss_kib = 0;
    let mut sample_rss = || peak_rss_kib = peak_rss_kib.max(peak_rss(pid).unwrap_or(0));
    let mut exited = || worker.try_wait().ok().flatten().is_some();
    let waited = sink
        .wait(args.dispatches, &mut exited, &mut sample_rss)
        .await;
    let spent_at_end = Spent::read(pid, admin_port, DELIVER_OUTCOMES).await;
    let worker_run = sink.take(phase_start, &produced);
    let steady = match waited {
        Ok(()) if args.steady_seconds > 0 => Some(
            steady_phase(
                &config,
                &codec,
                &topic,
                &sink,
                args,
                &mut exited,
                &mut sample_rss,
            )
            .await,
        ),
        _ => None,
    };
    sample_rss();
    let _ = tokio::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await;
    if tokio::time::timeout(Duration::from_secs(60), worker.wait())
        .await
        .is_err()
    {
        eprintln!("herald: the worker did not stop within 60s");
    }
    waited?;
    let steady = steady.transpose()?;

    let baseline_rate = baseline_run.rate();
    let worker_rate = worker_run.rate();
    println!();
    println!(
        "baseline (consume, decode, POST; no ledger, breaker, retry): {:>8.0} deliveries/s  ({:.1}s)",
        baseline_rate,
        baseline_run.seconds()
    );
    println!(
        "worker (herald deliver --channel webhook, a child process): {:>8.0} deliveries/s  ({:.1}s, includes start-up)",
        worker_rate,
        worker_run.seconds()
    );
    println!(
        "worker / baseline: {:.1}%",
        100.0 * worker_rate / baseline_rate
    );
    for (label, run) in [("baseline", &baseline_run), ("worker", &worker_run)] {
        println!(
            "{label}: first delivery after {:.1}s, then {:.0} deliveries/s",
            run.first_receipt(),
            run.running_rate()
        );
    }
    for (label, run) in [("baseline", &baseline_run), ("worker", &worker_run)] {
        println!(
            "{label} latency, dispatch produced -> sink receipt: p50 {}  p99 {}  \
             (phase start -> receipt: p50 {}  p99 {})",
            ms(run.quantile(&run.since_produce, 0.5)),
            ms(run.quantile(&run.since_produce, 0.99)),
            ms(run.quantile(&run.since_start, 0.5)),
            ms(run.quantile(&run.since_start, 0.99)),
        );
    }
    for line in spent_at_start.per_unit(&spent_at_end, "delivery", "deliveries") {
        println!("{line}");
    }
    if let Some(steady) = steady {
        println!(
            "steady {} dispatches/s for {} s, created_at to the provider call (sink receipt): \
             p50 {}  p99 {}  ({} of {} delivered)",
            args.steady_rate,
            args.steady_seconds,
            ms(steady.quantile(&steady.since_produce, 0.5)),
            ms(steady.quantile(&steady.since_produce, 0.99)),
            steady.count,
            steady_total(args),
        );
    }
    println!("worker peak RSS: {:.1} MiB", peak_rss_kib as f64 / 1024.0);
    println!(
        "target (information only): >= 50% of the baseline, <= 40 µs of herald CPU per delivery, \
         RSS < 128 MiB"
    );
    Ok(exit::SUCCESS)
}

/// Produces `args.dispatches` webhook dispatches, Confluent-framed, keyed by recipient, with
/// `created_at` and `routed_at` the time each is produced; those times (µs since the epoch),
/// by dispatch number.
async fn produce(
    config: &HeraldConfig,
    codec: &Codec,
    topic: &str,
    base_url: &str,
    args: &BenchDeliverArgs,
) -> anyhow::Result<Vec<i64>> {
    let producer: FutureProducer = config.kafka.producer_config().create()?;
    let mut flood = Flood::new(&producer, topic, IN_FLIGHT);
    let mut produced = Vec::with_capacity(args.dispatches);
    for i in 0..args.dispatches {
        let dispatch = dispatch(i, args.recipients, base_url);
        produced.push(dispatch.created_at.timestamp_micros());
        let payload = codec.encode_dispatch(&dispatch).await?;
        flood.send(dispatch.key(), payload).await?;
    }
    flood.finish().await?;
    Ok(produced)
}

fn steady_total(args: &BenchDeliverArgs) -> usize {
    (args.steady_rate as usize) * (args.steady_seconds as usize)
}

/// A steady offered load after the backlog: `steady_rate` dispatches a second for
/// `steady_seconds`, each with `created_at` the moment it is produced (numbered after the
/// backlog's), until the sink has every one.
async fn steady_phase(
    config: &HeraldConfig,
    codec: &Codec,
    topic: &str,
    sink: &Sink,
    args: &BenchDeliverArgs,
    exited: impl FnMut() -> bool,
    on_poll: impl FnMut(),
) -> anyhow::Result<PhaseRun> {
    let producer: FutureProducer = config.kafka.producer_config().create()?;
    // A new producer's first records wait for its metadata and idempotence id; one record
    // acknowledged first keeps that wait out of the measured ones (the sink's count includes
    // it).
    let warm_up = dispatch(args.dispatches, args.recipients, &sink.base_url);
    let mut flood = Flood::new(&producer, topic, 1);
    flood
        .send(warm_up.key(), codec.encode_dispatch(&warm_up).await?)
        .await?;
    flood.finish().await?;
    sink.wait(1, || false, || {}).await?;
    let first = args.dispatches + 1;
    let total = steady_total(args);
    // Produce times by dispatch number; the backlog's numbers stay empty.
    let mut produced = vec![i64::MAX; first + total];
    let rate = args.steady_rate.max(1);
    let mut flood = Flood::new(&producer, topic, rate as usize);
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let phase_start = now_micros();
    for (i, slot) in produced.iter_mut().enumerate().skip(first) {
        tick.tick().await;
        let dispatch = dispatch(i, args.recipients, &sink.base_url);
        *slot = dispatch.created_at.timestamp_micros();
        flood
            .send(dispatch.key(), codec.encode_dispatch(&dispatch).await?)
            .await?;
    }
    flood.finish().await?;
    sink.wait(1 + total, exited, on_poll).await?;
    let mut run = sink.take(phase_start, &produced);
    // The warm-up's receipt is not the phase's.
    run.since_produce.retain(|us| *us >= 0);
    run.count = run.since_produce.len();
    Ok(run)
}

/// Dispatch `i`, as the router would emit it, to its recipient's endpoint
/// `<base_url>/hook/<user id>`.
fn dispatch(i: usize, recipients: usize, base_url: &str) -> Dispatch {
    let event_id = format!("bench-{i}");
    let user_id = format!("u{}", i % recipients.max(1));
    let now = now_millis();
    Dispatch {
        dispatch_id: format!("{event_id}:{}", Channel::Webhook),
        address: format!("{base_url}/hook/{user_id}"),
        tenant: "acme".into(),
        user_id,
        category: "billing.invoice_ready".into(),
        channel: Channel::Webhook,
        priority: Priority::Normal,
        content: RenderedContent {
            subject: Some(format!("Invoice INV-{i} is ready")),
            text: Some(format!(
                "Hello Ada,\nyour invoice INV-{i} for 42.00 is ready.\n"
            )),
            json: Some(format!(r#"{{"invoice":"INV-{i}","amount":"42.00"}}"#)),
            ..RenderedContent::default()
        },
        template: TemplateRef {
            id: "invoice_ready".into(),
            version: Some(1),
        },
        locale: "en-US".into(),
        attempt: 0,
        deadline: None,
        fallback: Vec::new(),
        fallback_request: None,
        event_id,
        created_at: now,
        routed_at: now,
        track_engagement: false,
    }
}

/// Reads `count` records of `topic` (read_committed) and POSTs each dispatch's webhook body to
/// its address, `concurrency` requests at a time. No ledger, breaker, retry or offset commits.
async fn baseline(
    config: &HeraldConfig,
    codec: &Codec,
    group: &str,
    topic: &str,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    let consumer: StreamConsumer = config.kafka.consumer_config(group).create()?;
    consumer.subscribe(&[topic])?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()?;
    let mut pending = FuturesUnordered::new();
    for _ in 0..count {
        while pending.len() >= concurrency.max(1) {
            if let Some(result) = pending.next().await {
                result?;
            }
        }
        let message = consumer.recv().await?;
        let Decoded::Dispatch(dispatch) =
            codec.decode(message.payload().unwrap_or_default()).await?
        else {
            bail!("a record of {topic} is not a dispatch");
        };
        let request = client
            .post(&dispatch.address)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(WEBHOOK_ID, &dispatch.dispatch_id)
            .body(webhook_body(&dispatch)?);
        pending.push(async move {
            request
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map(drop)
                .context("baseline POST")
        });
    }
    while let Some(result) = pending.next().await {
        result?;
    }
    Ok(())
}

/// The local webhook receiver: 200 at once, the first receipt time (µs since the epoch) per
/// `webhook-id`.
#[derive(Debug)]
struct Sink {
    base_url: String,
    receipts: Arc<Mutex<HashMap<String, i64>>>,
}

impl Sink {
    async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let receipts = Arc::new(Mutex::new(HashMap::new()));
        let app = Router::new().fallback(receive).with_state(receipts.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("herald: the bench sink stopped: {e}");
            }
        });
        Ok(Self { base_url, receipts })
    }

    fn len(&self) -> usize {
        self.receipts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    async fn wait_for(&self, count: usize) -> anyhow::Result<()> {
        self.wait(count, || false, || {}).await
    }

    /// Waits until `count` ids have arrived, failing if `gone` says the worker has ended;
    /// `on_poll` runs every 50 ms.
    async fn wait(
        &self,
        count: usize,
        mut gone: impl FnMut() -> bool,
        mut on_poll: impl FnMut(),
    ) -> anyhow::Result<()> {
        let (mut last, mut progressed) = (0, std::time::Instant::now());
        loop {
            on_poll();
            let now = self.len();
            if now >= count {
                return Ok(());
            }
            if gone() {
                bail!("the worker stopped after {now} of {count} deliveries");
            }
            if now > last {
                (last, progressed) = (now, std::time::Instant::now());
            } else if progressed.elapsed() > STALL {
                bail!("no delivery for {STALL:?}; {now} of {count} arrived");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Empties the sink and returns what the phase that started at `phase_start` received.
    fn take(&self, phase_start: i64, produced: &[i64]) -> PhaseRun {
        let receipts =
            std::mem::take(&mut *self.receipts.lock().unwrap_or_else(PoisonError::into_inner));
        let mut since_produce = Vec::with_capacity(receipts.len());
        let mut since_start = Vec::with_capacity(receipts.len());
        let mut last = phase_start;
        for (id, received) in &receipts {
            last = last.max(*received);
            since_start.push(received - phase_start);
            if let Some(produced) = dispatch_index(id).and_then(|i| produced.get(i)) {
                since_produce.push(received - produced);
            }
        }
        since_produce.sort_unstable();
        since_start.sort_unstable();
        PhaseRun {
            count: receipts.len(),
            micros: (last - phase_start).max(1),
            since_produce,
            since_start,
        }
    }
}

async fn receive(
    State(receipts): State<Arc<Mutex<HashMap<String, i64>>>>,
    headers: HeaderMap,
) -> StatusCode {
    let now = now_micros();
    if let Some(id) = headers.get(WEBHOOK_ID).and_then(|v| v.to_str().ok()) {
        receipts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(id.to_owned())
            .or_insert(now);
    }
    StatusCode::OK
}

/// `i` of the dispatch id `bench-<i>:webhook`.
fn dispatch_index(id: &str) -> Option<usize> {
    id.strip_prefix("bench-")?.split(':').next()?.parse().ok()
}

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// What the sink received in one phase.
#[derive(Debug)]
struct PhaseRun {
    count: usize,
    /// From the phase's start to its last receipt.
    micros: i64,
    /// Receipt minus the dispatch's produce time, sorted.
    since_produce: Vec<i64>,
    /// Receipt minus the phase's start, sorted.
    since_start: Vec<i64>,
}

impl PhaseRun {
    fn seconds(&self) -> f64 {
        self.micros as f64 / 1e6
    }

    fn rate(&self) -> f64 {
        self.count as f64 / self.seconds()
    }

    /// Seconds from the phase's start to its first receipt (start-up: joining the group,
    /// preparing statements).
    fn first_receipt(&self) -> f64 {
        self.since_start.first().copied().unwrap_or_default() as f64 / 1e6
    }

    /// Receipts per second from the first receipt to the last: the rate once running.
    fn running_rate(&self) -> f64 {
        let first = self.since_start.first().copied().unwrap_or_default();
        let span = (self.micros - first).max(1) as f64 / 1e6;
        self.count.saturating_sub(1) as f64 / span
    }

    fn quantile(&self, sorted: &[i64], q: f64) -> Option<i64> {
        let last = sorted.len().checked_sub(1)?;
        let index = ((last as f64) * q).round() as usize;
        sorted.get(index.min(last)).copied()
    }
}

fn ms(micros: Option<i64>) -> String {
    micros.map_or("n/a".into(), |us| format!("{:.1} ms", us as f64 / 1000.0))
}
