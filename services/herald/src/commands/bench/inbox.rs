//! `herald bench inbox`: starts `herald api` as a child process with the inbox on, holds N
//! Server-Sent Events streams on it (one user each), then produces one new message per user to
//! `notifications.inbox` and times the fan-out: from the first record produced until every
//! stream has its message. The baseline, in the same run: a plain `read_committed` consumer
//! reading those records from the topic as they are produced. Prints the fan-out time and its
//! ratio to the baseline, per-stream p50/p99, the API's RSS (peak, and per stream) and its CPU
//! per delivered message. Asserts nothing.

use anyhow::Context;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::config_file::HeraldConfig;
use herald_api::config::InboxConfig;
use herald_api::inbox::token::InboxTokens;
use herald_contracts::inbox::InboxContent;
use herald_contracts::metric_names::{API_INBOX_STREAMS, PROCESS_HEAP_BYTES};
use herald_contracts::secret::Secret;
use herald_contracts::{Codec, InboxChange, InboxEvent};

use super::child::{
    config_path, counter, cpu_micros, fetch_metrics, free_port, herald, peak_rss, run_env,
    wait_ready,
};
use super::{millis, percentile};
use crate::cli::BenchInboxArgs;

const TENANT: &str = "acme";
/// Streams being opened at once.
const CONNECTING: usize = 256;
/// How long every stream may take to get its message before the bench gives up.
const FAN_OUT_LIMIT: Duration = Duration::from_secs(120);

pub(super) async fn run(config: &HeraldConfig, args: &BenchInboxArgs) -> anyhow::Result<ExitCode> {
    let (run_id, config) = super::isolated(config)?;
    let topics = config.kafka.topics();
    let streams = args.streams;
    println!(
        "bench {run_id}: {streams} inbox streams on one herald api, one new message each, {} partitions",
        args.partitions
    );
    super::prepare_run(&config, args.partitions, args.replication_factor).await?;

    // The API, as its own process, with a token secret of this run.
    let secret = format!("bench-inbox-{}", uuid::Uuid::new_v4().simple());
    let api_port = free_port()?;
    let admin_port = free_port()?;
    let mut child_env = run_env(&config);
    child_env.extend([
        ("HERALD_API__INBOX__TOKEN_SECRET", secret.clone()),
        ("HERALD_API__LISTEN", format!("127.0.0.1:{api_port}")),
        ("HERALD_ADMIN__LISTEN", format!("127.0.0.1:{admin_port}")),
    ]);
    let mut child = herald(&config_path(), &child_env)
        .arg("api")
        .stdout(Stdio::null())
        .spawn()
        .context("starting herald api")?;
    let pid = child.id().context("herald api exited at once")?;
    wait_ready(admin_port).await?;
    let rss_idle = peak_rss(pid).unwrap_or(0);

    // Every stream, open and registered.
    let tokens = InboxTokens::from_config(&InboxConfig {
        token_secret: Some(Secret::new(secret)),
        ..InboxConfig::default()
    })
    .context("the bench's token secret")?;
    let (received_tx, mut received) = mpsc::unbounded_channel::<(usize, Instant)>();
    let opening = Instant::now();
    let mut readers = Vec::with_capacity(streams);
    let gate = Arc::new(tokio::sync::Semaphore::new(CONNECTING));
    for user in 0..streams {
        let (token, _) = tokens.issue(TENANT, &user_id(user), chrono::Utc::now());
        let received = received_tx.clone();
        let gate = gate.clone();
        readers.push(tokio::spawn(async move {
            let stream = {
                let _permit = gate.acquire().await;
                open_stream(api_port, &token).await
            };
            match stream {
                Ok(stream) => {
                    if let Some(at) = first_message(stream).await {
                        let _ = received.send((user, at));
                    }
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }));
    }
    drop(received_tx);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let metrics = fetch_metrics(admin_port).await.unwrap_or_default();
        if counter(&metrics, API_INBOX_STREAMS) as usize >= streams {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {streams} streams connected within 2 minutes",
            counter(&metrics, API_INBOX_STREAMS)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let connected = opening.elapsed();
    let rss_connected = peak_rss(pid).unwrap_or(0);
    let heap = counter(
        &fetch_metrics(admin_port).await.unwrap_or_default(),
        PROCESS_HEAP_BYTES,
    );
    println!(
        "connect      {streams} streams in {:.1} s; API RSS {:.1} MiB idle, {:.1} MiB with the streams ({:.1} KiB per stream); live heap {:.1} MiB ({:.1} KiB per stream)",
        connected.as_secs_f64(),
        rss_idle as f64 / 1024.0,
        rss_connected as f64 / 1024.0,
        rss_connected.saturating_sub(rss_idle) as f64 / streams as f64,
        heap / 1024.0 / 1024.0,
        heap / 1024.0 / streams as f64
    );

    // The baseline reader, at the topic's end before anything is produced.
    let baseline = baseline_reader(&config, &topics.inbox(), streams).await?;

    // One new message per user, produced as fast as Kafka takes them.
    let codec = Codec::new(&config.registry, topics.clone())?;
    let producer: FutureProducer = config.kafka.producer_config().create()?;
    let topic = topics.inbox();
    let mut payloads = Vec::with_capacity(streams);
    for user in 0..streams {
        let event = message(user);
        payloads.push((event.key(), codec.encode_inbox(&event).await?));
    }
    let cpu_before = cpu_micros(pid);
    let started = Instant::now();
    let sends = payloads.iter().map(|(key, payload)| {
        producer.send(
            FutureRecord::to(&topic).key(key).payload(payload),
            Timeout::After(Duration::from_secs(30)),
        )
    });
    for sent in futures::future::join_all(sends).await {
        sent.map_err(|(e, _)| e)
            .context("producing an inbox event")?;
    }
    let produced = started.elapsed();

    let mut latencies = Vec::with_capacity(streams);
    let limit = started + FAN_OUT_LIMIT;
    while latencies.len() < streams {
        match tokio::time::timeout_at(limit.into(), received.recv()).await {
            Ok(Some((_, at))) => latencies.push(at.saturating_duration_since(started)),
            Ok(None) | Err(_) => break,
        }
    }
    let fan_out = latencies.iter().max().copied().unwrap_or_default();
    let cpu_after = cpu_micros(pid);
    let baseline = baseline
        .await
        .context("the baseline reader")??
        .saturating_duration_since(started);
    let delivered = latencies.len();
    println!(
        "baseline     {streams} records read back by one read_committed consumer in {}",
        millis(Some(baseline))
    );
    println!(
        "fan-out      {delivered} of {streams} streams got their message {} after the first \
         record was produced (producing took {}); {:.2}x the baseline; per stream p50 {} p99 {}",
        millis(Some(fan_out)),
        millis(Some(produced)),
        fan_out.as_secs_f64() / baseline.as_secs_f64().max(1e-9),
        millis(percentile(&latencies, 0.5)),
        millis(percentile(&latencies, 0.99)),
    );
    if let (Some(before), Some(after)) = (cpu_before, cpu_after) {
        println!(
            "api          {:.1} µs CPU per delivered message; peak RSS {:.1} MiB",
            (after - before) as f64 / delivered.max(1) as f64,
            peak_rss(pid).unwrap_or(0) as f64 / 1024.0
        );
    }
    for reader in readers {
        reader.abort();
    }
    child.start_kill().ok();
    child.wait().await.ok();
    Ok(if delivered == streams {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "herald bench inbox: {} streams got nothing",
            streams - delivered
        );
        crate::exit::FAILURE
    })
}

fn user_id(n: usize) -> String {
    format!("u{n:06}")
}

fn message(user: usize) -> InboxEvent {
    let now = herald_contracts::time::now_millis();
    InboxEvent {
        tenant: TENANT.to_owned(),
        user_id: user_id(user),
        change: InboxChange::Message,
        dispatch_id: format!("bench-{user}:inapp"),
        created_at: now,
        at: now,
        content: InboxContent {
            event_id: Some(format!("bench-{user}")),
            category: Some("bench.broadcast".to_owned()),
            priority: Some("normal".to_owned()),
            title: Some("Scheduled maintenance".to_owned()),
            body: Some(
                "The service will be read-only on Sunday from 02:00 to 03:00 UTC.".to_owned(),
            ),
            ..InboxContent::default()
        },
    }
}

/// Opens `GET /v1/inbox/stream` on a plain connection and reads the answer's head.
async fn open_stream(port: u16, token: &str) -> anyhow::Result<tokio::net::TcpStream> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let request = format!(
        "GET /v1/inbox/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        anyhow::ensure!(
            stream.read(&mut byte).await? == 1,
            "the API closed a stream"
        );
        head.push(byte[0]);
    }
    anyhow::ensure!(
        head.starts_with(b"HTTP/1.1 200"),
        "the stream was answered {}",
        String::from_utf8_lossy(&head)
    );
    Ok(stream)
}

/// When the first `message` event arrived on `stream`.
async fn first_message(mut stream: tokio::net::TcpStream) -> Option<Instant> {
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let read = stream.read(&mut buffer).await.ok()?;
        if read == 0 {
            return None;
        }
        seen.extend_from_slice(&buffer[..read]);
        if seen.windows(14).any(|w| w == b"event: message") {
            return Some(Instant::now());
        }
        // Heartbeats only so far: keep the tail, where an event's start may be cut.
        if seen.len() > 64 {
            seen.drain(..seen.len() - 16);
        }
    }
}

/// A consumer at the topic's end that reads until it has `count` records; its task answers
/// when it had them all.
async fn baseline_reader(
    config: &HeraldConfig,
    topic: &str,
    count: usize,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<Instant>>> {
    let consumer: StreamConsumer = config
        .kafka
        .client_config()
        .set("group.id", format!("bench-inbox-{}", uuid::Uuid::new_v4()))
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut assignment = TopicPartitionList::new();
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        assignment.add_partition_offset(topic, partition.id(), Offset::End)?;
    }
    consumer.assign(&assignment)?;
    Ok(tokio::spawn(async move {
        for _ in 0..count {
            consumer.recv().await?;
        }
        Ok(Instant::now())
    }))
}
