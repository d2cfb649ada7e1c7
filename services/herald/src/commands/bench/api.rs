//! `herald bench api`: starts `herald api` as a child process (its RSS and CPU read from
//! /proc), makes a key, then measures with N concurrent keep-alive HTTP clients (1) single
//! notifications, (2) batches of 100 and (3) a fixed request rate, next to a baseline measured
//! in the same run: the same requests encoded (Confluent-framed Avro, as the API writes them)
//! and produced straight to `notifications.requested` by this process with the API's producer
//! settings (idempotent, `acks=all`), N in flight. Prints numbers; asserts nothing.

use anyhow::Context;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use std::future::Future;
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::config_file::HeraldConfig;
use herald_contracts::{Codec, NotificationRequest};

use super::child::{config_path, cpu_micros, free_port, herald, peak_rss, run_env, wait_ready};
use super::{millis, percentile};
use crate::cli::BenchApiArgs;
use crate::exit;

const TENANT: &str = "acme";
const USERS: usize = 10_000;
const BATCH: usize = 100;
/// A fixed-rate request issued later than this after its due time missed the schedule.
const LATE: Duration = Duration::from_millis(5);
/// How long the API's producer may wait for room in its queue (as `herald api` does).
const QUEUE_WAIT: Duration = Duration::from_millis(100);

pub(super) async fn run(config: &HeraldConfig, args: &BenchApiArgs) -> anyhow::Result<ExitCode> {
    let (run_id, config) = super::isolated(config)?;
    let topics = config.kafka.topics();
    println!(
        "bench {run_id}: {} single requests, {} batches of {BATCH}, {} clients, {} req/s for {} s, {} partitions",
        args.requests,
        args.batches,
        args.concurrency,
        args.rate,
        args.rate_seconds,
        args.partitions
    );

    super::prepare_run(&config, args.partitions, args.replication_factor).await?;

    // Baseline: the same records, encoded and produced by this process, N in flight.
    let codec = Arc::new(Codec::new(&config.registry, topics.clone())?);
    let mut producer_config = config.kafka.producer_config();
    producer_config.set(
        "message.timeout.ms",
        config.api.produce_timeout.as_millis().to_string(),
    );
    let producer: FutureProducer = producer_config.create()?;
    let topic = Arc::new(topics.requested());
    let baseline = closed_loop(args.concurrency, args.requests, move |i| {
        let (codec, producer, topic) = (codec.clone(), producer.clone(), topic.clone());
        async move {
            let json = request(i).to_string();
            let request = NotificationRequest::from_json(&json).map_err(|e| e.to_string())?;
            let payload = codec
                .encode_request(&request)
                .await
                .map_err(|e| e.to_string())?;
            let key = request.key();
            producer
                .send(
                    FutureRecord::to(&topic).key(&key).payload(&payload),
                    Timeout::After(QUEUE_WAIT),
                )
                .await
                .map_err(|(e, _)| e.to_string())?;
            Ok(1)
        }
    })
    .await;

    // The API, as its own process.
    let config_file = config_path();
    let child_env = run_env(&config);
    let key = {
        let mut command = herald(&config_file, &child_env);
        command.args(["apikey", "create", "--tenant", TENANT, "--scopes", "send"]);
        let output = command
            .output()
            .await
            .context("running herald apikey create")?;
        anyhow::ensure!(
            output.status.success(),
            "herald apikey create: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout)?.trim().to_owned()
    };
    let api_port = free_port()?;
    let admin_port = free_port()?;
    let mut command = herald(&config_file, &child_env);
    command
        .arg("api")
        .stdout(Stdio::null())
        .env("HERALD_API__LISTEN", format!("127.0.0.1:{api_port}"))
        .env("HERALD_ADMIN__LISTEN", format!("127.0.0.1:{admin_port}"));
    let mut child = command.spawn().context("starting herald api")?;
    let pid = child.id().context("herald api exited at once")?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .timeout(Duration::from_secs(30))
        .build()?;
    wait_ready(admin_port).await?;

    let url = Arc::new(format!("http://127.0.0.1:{api_port}/v1/notifications"));
    let auth = Arc::new(format!("Bearer {key}"));
    let post = {
        let (client, url, auth) = (client.clone(), url.clone(), auth.clone());
        move |i: usize| {
            let (client, url, auth) = (client.clone(), url.clone(), auth.clone());
            async move { post_single(&client, &url, &auth, i).await }
        }
    };
    let cpu_start = cpu_micros(pid);
    let bench_start = cpu_micros(std::process::id());
    let singles = closed_loop(args.concurrency, args.requests, post.clone()).await;
    let cpu_singles = cpu_micros(pid);
    let bench_singles = cpu_micros(std::process::id());
    let batches = closed_loop(args.concurrency, args.batches, {
        let (client, url, auth) = (client.clone(), url.clone(), auth.clone());
        move |i: usize| {
            let (client, url, auth) = (client.clone(), url.clone(), auth.clone());
            async move { post_batch(&client, &url, &auth, i).await }
        }
    })
    .await;
    let cpu_batches = cpu_micros(pid);
    let cpu_bench = cpu_micros(std::process::id());
    let fixed = fixed_rate(args.rate, args.rate_seconds, args.concurrency, post).await;
    let rss_kib = peak_rss(pid).unwrap_or(0);

    let _ = tokio::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await;
    let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;

    println!();
    let baseline_rate = baseline.per_second();
    println!(
        "baseline (encode + produce, idempotent, acks=all, {} in flight): {:>8.0} notifications/s  ({:.1}s){}",
        args.concurrency,
        baseline_rate,
        baseline.elapsed.as_secs_f64(),
        baseline.failures()
    );
    println!(
        "api singles: {:>8.0} requests/s = notifications/s  ({:.1}s){}  {:.1}% of the baseline",
        singles.per_second(),
        singles.elapsed.as_secs_f64(),
        singles.failures(),
        100.0 * singles.per_second() / baseline_rate
    );
    println!(
        "api singles latency: p50 {}  p99 {}",
        millis(percentile(&singles.latencies, 0.50)),
        millis(percentile(&singles.latencies, 0.99))
    );
    println!(
        "api batches of {BATCH}: {:>8.0} requests/s, {:>8.0} notifications/s  ({:.1}s){}  {:.1}% of the baseline",
        batches.requests() as f64 / batches.elapsed.as_secs_f64(),
        batches.per_second(),
        batches.elapsed.as_secs_f64(),
        batches.failures(),
        100.0 * batches.per_second() / baseline_rate
    );
    println!(
        "api fixed rate {} req/s for {} s: {} requests answered at {:.0} req/s, p50 {}  p99 {} (from the schedule: p99 {}), {} missed the schedule by more than {} ms{}",
        args.rate,
        args.rate_seconds,
        fixed.phase.latencies.len(),
        fixed.phase.requests() as f64 / fixed.phase.elapsed.as_secs_f64(),
        millis(percentile(&fixed.phase.latencies, 0.50)),
        millis(percentile(&fixed.phase.latencies, 0.99)),
        millis(percentile(&fixed.from_schedule, 0.99)),
        fixed.missed,
        LATE.as_millis(),
        fixed.phase.failures()
    );
    println!("api peak RSS (VmHWM): {:.1} MiB", rss_kib as f64 / 1024.0);
    let per = |from: Option<u64>, to: Option<u64>, phase: &Phase| {
        from.zip(to).map_or("n/a".into(), |(from, to)| {
            format!(
                "{:.0} µs",
                (to - from) as f64 / phase.accepted.max(1) as f64
            )
        })
    };
    println!(
        "api CPU per notification: singles {}, batches {}  (the bench's own HTTP clients: singles {}, batches {})",
        per(cpu_start, cpu_singles, &singles),
        per(cpu_singles, cpu_batches, &batches),
        per(bench_start, bench_singles, &singles),
        per(bench_singles, cpu_bench, &batches),
    );
    println!("targets: singles >= 50% of the baseline, p99 < 25 ms at 2,000 req/s, RSS < 128 MiB");
    Ok(exit::SUCCESS)
}

/// Request `i`: an invoice notice to one of [`USERS`] users, with its own event id.
fn request(i: usize) -> serde_json::Value {
    serde_json::json!({
        "event_id": uuid::Uuid::new_v4().to_string(),
        "tenant": TENANT,
        "category": "billing.invoice_ready",
        "template": {"id": "invoice_ready"},
        "recipient": {"user_id": format!("u{}", i % USERS)},
        "channels": ["email"],
        "data": {"name": "Ada", "invoice": {"number": format!("INV-{i}"), "amount": "42.00"}},
    })
}

async fn post_single(
    client: &reqwest::Client,
    url: &str,
    auth: &str,
    i: usize,
) -> Result<usize, String> {
    let response = client
        .post(url)
        .header("authorization", auth)
        .header("content-type", "application/json")
        .body(request(i).to_string())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    // Read the body so the connection goes back to the pool.
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    if status == reqwest::StatusCode::ACCEPTED {
        Ok(1)
    } else {
        Err(format!("{status}: {}", String::from_utf8_lossy(&body)))
    }
}

async fn post_batch(
    client: &reqwest::Client,
    url: &str,
    auth: &str,
    i: usize,
) -> Result<usize, String> {
    let notifications: Vec<serde_json::Value> =
        (0..BATCH).map(|j| request(i * BATCH + j)).collect();
    let response = client
        .post(format!("{url}/batch"))
        .header("authorization", auth)
        .header("content-type", "application/json")
        .body(serde_json::json!({ "notifications": notifications }).to_string())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.map_err(|e| e.to_string())?;
    if status != reqwest::StatusCode::OK {
        return Err(format!("{status}: {body}"));
    }
    let results = body["results"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let accepted = results.iter().filter(|r| r["status"] == 202).count();
    if accepted == BATCH {
        Ok(accepted)
    } else {
        Err(format!("{accepted} of {BATCH} accepted: {body}"))
    }
}

/// What one phase did: its duration, each successful call's latency and what it accepted.
#[derive(Debug, Default)]
struct Phase {
    elapsed: Duration,
    latencies: Vec<Duration>,
    accepted: usize,
    failed: usize,
    first_error: Option<String>,
}

impl Phase {
    fn per_second(&self) -> f64 {
        self.accepted as f64 / self.elapsed.as_secs_f64()
    }

    fn requests(&self) -> usize {
        self.latencies.len()
    }

    fn record(&mut self, latency: Duration, outcome: Result<usize, String>) {
        match outcome {
            Ok(accepted) => {
                self.latencies.push(latency);
                self.accepted += accepted;
            }
            Err(error) => {
                self.failed += 1;
                self.first_error.get_or_insert(error);
            }
        }
    }

    fn merge(&mut self, other: Phase) {
        self.latencies.extend(other.latencies);
        self.accepted += other.accepted;
        self.failed += other.failed;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    fn failures(&self) -> String {
        match &self.first_error {
            Some(error) => format!(", {} failed (first: {error})", self.failed),
            None => String::new(),
        }
    }
}

/// `count` calls of `call(i)` by `concurrency` workers, each waiting for its call's answer
/// before making the next.
async fn closed_loop<F, Fut>(concurrency: usize, count: usize, call: F) -> Phase
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<usize, String>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (next, call) = (next.clone(), call.clone());
            tokio::spawn(async move {
                let mut phase = Phase::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        return phase;
                    }
                    let sent = Instant::now();
                    let outcome = call(i).await;
                    phase.record(sent.elapsed(), outcome);
                }
            })
        })
        .collect();
    let mut total = Phase::default();
    for worker in workers {
        match worker.await {
            Ok(phase) => total.merge(phase),
            Err(e) => total.merge(Phase {
                failed: 1,
                first_error: Some(e.to_string()),
                ..Phase::default()
            }),
        }
    }
    total.elapsed = started.elapsed();
    total
}

/// The fixed-rate phase: latencies of the requests themselves, and measured from each
/// request's due time (which counts the delay of a request issued late).
#[derive(Debug)]
struct FixedRate {
    phase: Phase,
    from_schedule: Vec<Duration>,
    missed: usize,
}

/// `rate` requests a second for `seconds`, each due at its time whatever the answers to the
/// earlier ones (an open loop), over at most `connections` requests in flight as a client
/// with a connection pool would: a request waiting for a free connection past [`LATE`] missed
/// the schedule, and its wait counts in its latency from the schedule.
async fn fixed_rate<F, Fut>(rate: u32, seconds: u32, connections: usize, call: F) -> FixedRate
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<usize, String>> + Send + 'static,
{
    let total = rate as usize * seconds as usize;
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let pool = Arc::new(tokio::sync::Semaphore::new(connections.max(1)));
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let due = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due).await;
        let (call, pool) = (call.clone(), pool.clone());
        tasks.push(tokio::spawn(async move {
            let _connection = pool.acquire().await;
            let sent = tokio::time::Instant::now();
            let outcome = call(i).await;
            (sent.elapsed(), outcome, sent.duration_since(due))
        }));
    }
    let mut missed = 0;
    let mut phase = Phase::default();
    let mut from_schedule = Vec::with_capacity(total);
    for task in tasks {
        if let Ok((latency, outcome, late)) = task.await {
            if late > LATE {
                missed += 1;
            }
            if outcome.is_ok() {
                from_schedule.push(latency + late);
            }
            phase.record(latency, outcome);
        }
    }
    phase.elapsed = start.elapsed();
    FixedRate {
        phase,
        from_schedule,
        missed,
    }
}
