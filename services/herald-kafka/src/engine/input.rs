//! A consumed record, a batch of them, and applying a step to a batch one key at a time.

use futures::StreamExt as _;
use rdkafka::message::{BorrowedMessage, Headers as _, Message as _};

use crate::transaction::{OffsetRanges, OutRecord, group_by_key};

/// A consumed record, owned: it outlives the consumer's borrow while its batch is applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Input {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Input {
    pub fn from_message(message: &BorrowedMessage<'_>) -> Self {
        Self {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
            headers: message
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// The last value of header `name`, as Kafka keeps every value a producer added.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }

    /// Header `name` as a decimal number, if it is one.
    pub fn header_number(&self, name: &str) -> Option<i64> {
        std::str::from_utf8(self.header(name)?).ok()?.parse().ok()
    }
}

/// The records of one transaction and, per partition, the first and last offsets they cover.
#[derive(Debug, Default)]
pub struct Batch {
    pub inputs: Vec<Input>,
    pub ranges: OffsetRanges,
}

impl Batch {
    pub fn push(&mut self, input: Input) {
        self.ranges
            .push(&input.topic, input.partition, input.offset);
        self.inputs.push(input);
    }

    pub fn len(&self) -> usize {
        self.inputs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty()
    }
}

/// Applies `apply` to `inputs[indices]`: one key's records in order, different keys
/// concurrently, at most `max_in_flight` keys at once (guarantee 4). Keying by recipient
/// rather than by partition matters: a fetch often fills a batch from a single partition.
/// The first fault ends it; what was produced so far is dropped with it.
pub async fn apply_by_key<'a, E, F, Fut>(
    inputs: &'a [Input],
    indices: impl IntoIterator<Item = usize>,
    max_in_flight: usize,
    apply: F,
) -> Result<Vec<OutRecord>, E>
where
    F: Fn(&'a Input) -> Fut,
    Fut: Future<Output = Result<Vec<OutRecord>, E>>,
{
    let by_key = group_by_key(indices.into_iter().map(|i| (i, inputs[i].key.as_deref())));
    let apply = &apply;
    let mut applied = futures::stream::iter(by_key)
        .map(|indices| async move {
            let mut out = Vec::new();
            for i in indices {
                out.extend(apply(&inputs[i]).await?);
            }
            Ok::<_, E>(out)
        })
        .buffer_unordered(max_in_flight.max(1));
    let mut outputs = Vec::new();
    while let Some(key_outputs) = applied.next().await {
        outputs.extend(key_outputs?);
    }
    Ok(outputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(key: &str, offset: i64) -> Input {
        Input {
            topic: "t".into(),
            partition: 0,
            offset,
            key: Some(key.as_bytes().to_vec()),
            ..Input::default()
        }
    }

    fn out(input: &Input) -> OutRecord {
        OutRecord {
            topic: "out".into(),
            key: input.key.clone(),
            payload: input.offset.to_be_bytes().to_vec(),
            headers: Vec::new(),
        }
    }

    #[tokio::test]
    async fn one_key_s_outputs_keep_its_input_order() {
        let inputs: Vec<Input> = [("a", 0), ("b", 1), ("a", 2), ("c", 3), ("a", 4), ("b", 5)]
            .into_iter()
            .map(|(k, o)| input(k, o))
            .collect();
        let outputs = apply_by_key(&inputs, 0..inputs.len(), 2, |input| async move {
            // Later records finish sooner: only the per-key order may hold them back.
            tokio::time::sleep(std::time::Duration::from_millis(10 - input.offset as u64)).await;
            Ok::<_, ()>(vec![out(input)])
        })
        .await
        .unwrap();
        assert_eq!(outputs.len(), inputs.len());
        for key in ["a", "b", "c"] {
            let offsets: Vec<Vec<u8>> = outputs
                .iter()
                .filter(|o| o.key.as_deref() == Some(key.as_bytes()))
                .map(|o| o.payload.clone())
                .collect();
            let mut sorted = offsets.clone();
            sorted.sort();
            assert_eq!(offsets, sorted, "key {key}");
        }
    }

    #[tokio::test]
    async fn a_fault_ends_the_batch_and_later_records_of_its_key_are_not_applied() {
        let inputs = vec![input("a", 0), input("a", 1), input("b", 2)];
        let applied = std::sync::Mutex::new(Vec::new());
        let result = apply_by_key(&inputs, 0..3, 4, |input| {
            applied.lock().unwrap().push(input.offset);
            async move {
                if input.offset == 0 {
                    Err("database down")
                } else {
                    Ok(vec![out(input)])
                }
            }
        })
        .await;
        assert_eq!(result, Err("database down"));
        assert!(!applied.lock().unwrap().contains(&1));
    }

    #[test]
    fn headers_read_the_last_value_and_numbers_parse() {
        let input = Input {
            headers: vec![
                ("n".into(), b"1".to_vec()),
                ("n".into(), b"42".to_vec()),
                ("x".into(), b"nope".to_vec()),
            ],
            ..Input::default()
        };
        assert_eq!(input.header("n"), Some(&b"42"[..]));
        assert_eq!(input.header_number("n"), Some(42));
        assert_eq!(input.header_number("x"), None);
        assert_eq!(input.header("missing"), None);
    }
}
