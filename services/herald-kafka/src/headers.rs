//! Reading and writing Kafka record headers, and carrying W3C trace context in them. No
//! maintained crate does the latter for rdkafka, so this is the small Injector/Extractor pair.

use opentelemetry::propagation::{Extractor, Injector};
use rdkafka::message::{BorrowedHeaders, Header, Headers, OwnedHeaders};

/// The last value of a header as UTF-8 (a header may repeat; the last one wins).
pub fn last_str<'a, H: Headers>(headers: &'a H, name: &str) -> Option<&'a str> {
    let mut found = None;
    for header in headers.iter() {
        if header.key == name {
            found = header.value.and_then(|v| std::str::from_utf8(v).ok());
        }
    }
    found
}

/// Every header as (name, UTF-8 text or lossy text), in order.
pub fn to_pairs<H: Headers>(headers: &H) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|h| {
            (
                h.key.to_owned(),
                h.value
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

/// Builds `OwnedHeaders` with string values; the injector side of trace propagation.
#[derive(Debug, Default)]
pub struct HeaderWriter {
    headers: Vec<(String, String)>,
}

impl HeaderWriter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(mut self, name: &str, value: impl Into<String>) -> Self {
        self.set(name, value.into());
        self
    }

    fn set(&mut self, name: &str, value: String) {
        self.headers.retain(|(n, _)| n != name);
        self.headers.push((name.to_owned(), value));
    }

    pub fn build(self) -> OwnedHeaders {
        self.headers.iter().fold(
            OwnedHeaders::new_with_capacity(self.headers.len()),
            |h, (k, v)| {
                h.insert(Header {
                    key: k,
                    value: Some(v.as_bytes()),
                })
            },
        )
    }
}

impl Injector for HeaderWriter {
    fn set(&mut self, key: &str, value: String) {
        HeaderWriter::set(self, key, value);
    }
}

/// The extractor side: reads trace context from a consumed record's headers.
pub struct HeaderReader<'a>(pub &'a BorrowedHeaders);

impl std::fmt::Debug for HeaderReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(to_pairs(self.0)).finish()
    }
}

impl Extractor for HeaderReader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        last_str(self.0, key)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|h| h.key).collect()
    }
}

/// Trace context read from headers already copied out of a record as (name, bytes) pairs.
#[derive(Debug)]
pub struct PairsReader<'a>(pub &'a [(String, Vec<u8>)]);

impl Extractor for PairsReader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_str()).collect()
    }
}

/// Trace context written as (name, bytes) pairs, for records built before they are produced.
#[derive(Debug, Default)]
pub struct PairsWriter(pub Vec<(String, Vec<u8>)>);

impl Injector for PairsWriter {
    fn set(&mut self, key: &str, value: String) {
        self.0.retain(|(k, _)| k != key);
        self.0.push((key.to_owned(), value.into_bytes()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_header_wins_and_writer_replaces() {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "a",
                value: Some("1"),
            })
            .insert(Header {
                key: "a",
                value: Some("2"),
            });
        assert_eq!(last_str(&headers, "a"), Some("2"));
        assert_eq!(last_str(&headers, "b"), None);

        let built = HeaderWriter::new()
            .insert("x", "1")
            .insert("x", "2")
            .build();
        assert_eq!(to_pairs(&built), vec![("x".to_owned(), "2".to_owned())]);
    }

    #[test]
    fn pairs_carry_trace_context_both_ways() {
        let pairs = vec![
            ("traceparent".to_owned(), b"old".to_vec()),
            ("traceparent".to_owned(), b"new".to_vec()),
        ];
        assert_eq!(PairsReader(&pairs).get("traceparent"), Some("new"));
        let mut writer = PairsWriter(pairs);
        Injector::set(&mut writer, "traceparent", "ours".into());
        assert_eq!(writer.0, vec![("traceparent".to_owned(), b"ours".to_vec())]);
    }
}
