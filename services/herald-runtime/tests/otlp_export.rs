//! With `telemetry.otlp_endpoint` set, spans are exported over OTLP/HTTP. A stand-in collector
//! (a bare HTTP listener) records what arrives. Its own test binary: logging is process-global.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use herald_runtime::telemetry::TelemetryConfig;

/// Accepts one request and answers 200; sends back (request line, headers, body length).
fn stand_in_collector() -> (String, mpsc::Receiver<(String, Vec<String>, usize)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut request_line = String::new();
        reader.read_line(&mut request_line).unwrap();
        let mut headers = Vec::new();
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let line = line.trim_end().to_owned();
            if line.is_empty() {
                break;
            }
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().unwrap();
            }
            headers.push(line);
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let mut stream = stream;
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .unwrap();
        tx.send((request_line.trim_end().to_owned(), headers, body.len()))
            .unwrap();
    });
    (endpoint, rx)
}

#[test]
fn spans_are_exported_to_the_configured_endpoint() {
    let (endpoint, received) = stand_in_collector();
    let config = TelemetryConfig {
        otlp_endpoint: Some(endpoint),
        ..TelemetryConfig::default()
    };
    let guard = herald_runtime::telemetry::init(&config, "test").unwrap();
    {
        // Only Herald's own spans are exported (targets `herald*`), as the router's are.
        let span = tracing::info_span!(target: "herald_router", "route_event", event_id = "e-1");
        let _entered = span.enter();
        tracing::info!("inside a span");
    }
    // Dropping the guard flushes the batch exporter.
    drop(guard);
    let (request_line, headers, body_len) = received.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(request_line, "POST /v1/traces HTTP/1.1");
    assert!(
        headers
            .iter()
            .any(|h| h.eq_ignore_ascii_case("content-type: application/x-protobuf")),
        "{headers:?}"
    );
    assert!(body_len > 0);
}
