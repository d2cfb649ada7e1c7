//! `herald produce`: JSON lines in, Confluent-framed Avro records out, keyed `tenant:user_id`.

use anyhow::Context;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::io::BufRead;
use std::process::ExitCode;
use std::time::Duration;

use crate::config_file::HeraldConfig;
use herald_contracts::{Codec, NotificationRequest};
use herald_kafka::HeraldContext;

use crate::cli::ProduceArgs;
use crate::exit;

/// Deliveries awaited at once; bounds memory on a large input.
const IN_FLIGHT: usize = 1024;
/// How long a record may wait for the broker. Generous: after a broker restart the producer
/// id and partition leaders can take a while to come back, and giving up early turns a
/// short outage into a failed import (librdkafka's own default is 5 minutes).
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(120);

pub(crate) async fn run(config: &HeraldConfig, args: &ProduceArgs) -> anyhow::Result<ExitCode> {
    let topics = config.kafka.topics();
    let topic = args
        .topic
        .as_deref()
        .map_or_else(|| topics.requested(), |name| topics.resolve(name));
    let codec = Codec::new(&config.registry, topics)?;
    let producer: FutureProducer<HeraldContext> = config
        .kafka
        .producer_config()
        .set(
            "message.timeout.ms",
            DELIVERY_TIMEOUT.as_millis().to_string(),
        )
        .create_with_context(HeraldContext::default())
        .context("creating the Kafka producer")?;

    let input: Box<dyn BufRead> = match &args.file {
        Some(path) if path.as_os_str() != "-" => Box::new(std::io::BufReader::new(
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
        )),
        _ => Box::new(std::io::stdin().lock()),
    };

    let mut rejected = 0usize;
    let mut failed = 0usize;
    let mut produced = 0usize;
    let mut deliveries = FuturesUnordered::new();
    for (index, line) in input.lines().enumerate() {
        let number = index + 1;
        let line = line.with_context(|| format!("reading line {number}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let limit = config.router.max_data_bytes;
        let request = match NotificationRequest::from_json(&line)
            .and_then(|request| request.check_data_size(limit).map(|()| request))
        {
            Ok(request) => request,
            Err(e) => {
                eprintln!("line {number}: rejected: {e}");
                rejected += 1;
                continue;
            }
        };
        let payload = match codec.encode_request(&request).await {
            Ok(payload) => payload,
            Err(e) if e.is_transient() => {
                return Err(e).context(format!(
                    "line {number}: encoding (nothing after it was produced)"
                ));
            }
            Err(e) => {
                eprintln!("line {number}: rejected: {e}");
                rejected += 1;
                continue;
            }
        };
        let key = request.key();
        let producer = producer.clone();
        let topic = topic.clone();
        deliveries.push(async move {
            let record = FutureRecord::to(&topic).key(&key).payload(&payload);
            let result = producer.send(record, DELIVERY_TIMEOUT).await;
            (
                number,
                request.event_id,
                result.map(|_| ()).map_err(|(e, _)| e),
            )
        });
        if deliveries.len() >= IN_FLIGHT
            && let Some(outcome) = deliveries.next().await
        {
            tally(outcome, &mut produced, &mut failed);
        }
    }
    while let Some(outcome) = deliveries.next().await {
        tally(outcome, &mut produced, &mut failed);
    }
    eprintln!("produced {produced}, rejected {rejected}, failed {failed} to {topic}");
    if failed > 0 {
        eprintln!(
            "the lines not produced are named above; producing them again is safe: the router \
             drops an event id it has already seen"
        );
    }
    Ok(if failed > 0 {
        exit::FAILURE
    } else if rejected > 0 {
        exit::rejected()
    } else {
        exit::SUCCESS
    })
}

fn tally(
    (number, event_id, result): (usize, String, Result<(), rdkafka::error::KafkaError>),
    produced: &mut usize,
    failed: &mut usize,
) {
    match result {
        Ok(()) => {
            println!("{event_id}");
            *produced += 1;
        }
        Err(e) => {
            eprintln!("line {number}: not produced: {e}");
            *failed += 1;
        }
    }
}
