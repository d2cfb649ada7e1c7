//! A stand-in OpenTelemetry collector: an HTTP listener on 127.0.0.1 that answers 200 to every
//! OTLP/HTTP export and keeps the request bodies (protobuf) for the test to look into.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone)]
pub struct StandInCollector {
    /// The traces endpoint, for `telemetry.otlp_endpoint`.
    pub endpoint: String,
    bodies: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl StandInCollector {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let kept = bodies.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                if let Some(body) = read_request(&stream) {
                    kept.lock().unwrap().push(body);
                }
                let mut stream = stream;
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            }
        });
        Self { endpoint, bodies }
    }

    /// Every export body received so far, concatenated.
    pub fn received(&self) -> Vec<u8> {
        self.bodies.lock().unwrap().concat()
    }
}

fn read_request(stream: &std::net::TcpStream) -> Option<Vec<u8>> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end().to_ascii_lowercase();
        if line.is_empty() {
            break;
        }
        if let Some(value) = line.strip_prefix("content-length:") {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(body)
}

/// Whether `haystack` contains `needle` as a run of bytes.
pub fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
