//! Coalescing concurrent point lookups into multi-key requests. The router routes many
//! recipients at once, and each asks the database one small question; answering every
//! question that is waiting with one `IN (...)` request costs the database a fraction of the
//! work of answering them one by one, and costs a caller nothing when nobody else is waiting.

use std::future::Future;
use std::hash::{Hash, Hasher};
use tokio::sync::{mpsc, oneshot};

use crate::StoreError;

type Reply<V> = oneshot::Sender<Result<V, StoreError>>;

/// How long a load waits for more keys after the first before it starts. Callers arrive a
/// few at a time (each finishes some other step first); without the wait most loads would
/// carry one or two keys, and on a small database host the cost is per request, not per key
/// (thread hand-offs and wake-ups), so a millisecond or two buys several times the throughput.
const LINGER: std::time::Duration = std::time::Duration::from_millis(2);

/// Sends keys to loading tasks that each load everything pending for them in one call.
#[derive(Debug)]
pub(crate) struct Batcher<K, V> {
    /// One serial loading task per lane; a key always goes to the same lane, so one key is
    /// never in two loads at once.
    lanes: Vec<mpsc::Sender<(K, Reply<V>)>>,
}

impl<K, V> Clone for Batcher<K, V> {
    fn clone(&self) -> Self {
        Self {
            lanes: self.lanes.clone(),
        }
    }
}

impl<K: Hash + Send + 'static, V: Send + 'static> Batcher<K, V> {
    /// Starts `lanes` loading tasks (on the current Tokio runtime). `load` gets up to
    /// `max_keys` keys, possibly repeated, and answers one value per key, in order. The tasks
    /// end when the last handle is dropped.
    pub(crate) fn spawn<F, Fut>(max_keys: usize, lanes: usize, load: F) -> Self
    where
        F: Fn(Vec<K>) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Result<Vec<V>, StoreError>> + Send + 'static,
    {
        let lanes = (0..lanes.max(1))
            .map(|_| {
                let (requests, mut pending) = mpsc::channel::<(K, Reply<V>)>(max_keys.max(1) * 4);
                let load = load.clone();
                tokio::spawn(async move {
                    while let Some(first) = pending.recv().await {
                        let mut group = vec![first];
                        let deadline = tokio::time::Instant::now() + LINGER;
                        while group.len() < max_keys {
                            match tokio::time::timeout_at(deadline, pending.recv()).await {
                                Ok(Some(next)) => group.push(next),
                                Ok(None) | Err(_) => break,
                            }
                        }
                        let (keys, replies): (Vec<K>, Vec<Reply<V>>) = group.into_iter().unzip();
                        answer(replies, load(keys).await);
                    }
                });
                requests
            })
            .collect();
        Self { lanes }
    }

    /// The value for `key`, loaded together with whatever else is pending in its lane.
    pub(crate) async fn get(&self, key: K) -> Result<V, StoreError> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut hasher);
        // The lane count is small, so the remainder fits in usize.
        let lane = (hasher.finish() % self.lanes.len() as u64) as usize;
        let (reply, answer) = oneshot::channel();
        self.lanes[lane]
            .send((key, reply))
            .await
            .map_err(|_| StoreError::Request("the batched lookup task has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Request("the batched lookup task dropped a request".into()))?
    }
}

/// Sends each caller its value, or the load's error.
fn answer<V>(replies: Vec<Reply<V>>, loaded: Result<Vec<V>, StoreError>) {
    let asked = replies.len();
    match loaded {
        Ok(values) if values.len() == asked => {
            for (reply, value) in replies.into_iter().zip(values) {
                // A caller that stopped waiting no longer needs its answer.
                let _ = reply.send(Ok(value));
            }
        }
        Ok(values) => {
            let error = StoreError::Answer(format!(
                "a batched lookup answered {} values for {asked} keys",
                values.len()
            ));
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
        Err(error) => {
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_key_is_never_in_two_loads_at_once() {
        let loading: Arc<Mutex<HashSet<u32>>> = Arc::default();
        let overlaps = Arc::new(AtomicUsize::new(0));
        let (l, o) = (loading.clone(), overlaps.clone());
        let batcher = Batcher::spawn(8, 4, move |keys: Vec<u32>| {
            let (loading, overlaps) = (l.clone(), o.clone());
            async move {
                let distinct: HashSet<u32> = keys.iter().copied().collect();
                {
                    let mut now = loading.lock().unwrap();
                    if distinct.iter().any(|k| now.contains(k)) {
                        overlaps.fetch_add(1, Ordering::SeqCst);
                    }
                    now.extend(&distinct);
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                loading.lock().unwrap().retain(|k| !distinct.contains(k));
                Ok(keys)
            }
        });
        // Every key asked for many times at once.
        let answers = futures::future::join_all((0..400u32).map(|i| {
            let b = batcher.clone();
            async move { b.get(i % 10).await.unwrap() }
        }))
        .await;
        assert_eq!(answers, (0..400).map(|i| i % 10).collect::<Vec<_>>());
        assert_eq!(overlaps.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn concurrent_lookups_share_loads_and_get_their_own_answers() {
        let loads = Arc::new(AtomicUsize::new(0));
        let counted = loads.clone();
        let batcher = Batcher::spawn(16, 2, move |keys: Vec<u32>| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                Ok(keys.into_iter().map(|k| k * 10).collect())
            }
        });
        let answers = futures::future::join_all((0..40u32).map(|k| {
            let b = batcher.clone();
            async move { b.get(k).await.unwrap() }
        }))
        .await;
        assert_eq!(answers, (0..40).map(|k| k * 10).collect::<Vec<_>>());
        let loads = loads.load(Ordering::SeqCst);
        assert!(
            (3..40).contains(&loads),
            "40 keys, at most 16 per load: {loads} loads"
        );
    }

    #[tokio::test]
    async fn a_failed_load_fails_every_caller_in_it() {
        let batcher = Batcher::spawn(8, 2, |_keys: Vec<u32>| async {
            Err::<Vec<u32>, _>(StoreError::Request("down".into()))
        });
        let error = batcher.get(1).await.unwrap_err();
        assert!(error.is_transient(), "{error}");
        let short = Batcher::spawn(8, 2, |_keys: Vec<u32>| async { Ok(Vec::<u32>::new()) });
        assert!(matches!(short.get(1).await, Err(StoreError::Answer(_))));
    }
}
