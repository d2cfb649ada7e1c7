//! Coalescing concurrent point lookups into multi-key requests. The router routes many
//! recipients at once, and each asks the database one small question; answering every
//! question that is waiting with one `IN (...)` request costs the database a fraction of the
//! work of answering them one by one, and costs a caller nothing when nobody else is waiting.

use std::future::Future;
use tokio::sync::{mpsc, oneshot};

use crate::StoreError;

type Reply<V> = oneshot::Sender<Result<V, StoreError>>;

/// Sends keys to a task that loads everything pending in one call of `load`.
#[derive(Debug)]
pub(crate) struct Batcher<K, V> {
    requests: mpsc::Sender<(K, Reply<V>)>,
}

impl<K, V> Clone for Batcher<K, V> {
    fn clone(&self) -> Self {
        Self {
            requests: self.requests.clone(),
        }
    }
}

impl<K: Send + 'static, V: Send + 'static> Batcher<K, V> {
    /// Starts the loading task (on the current Tokio runtime). `load` gets up to `max_keys`
    /// keys, possibly repeated, and answers one value per key, in order. The task ends when
    /// the last handle is dropped.
    pub(crate) fn spawn<F, Fut>(max_keys: usize, load: F) -> Self
    where
        F: Fn(Vec<K>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<V>, StoreError>> + Send + 'static,
    {
        let (requests, mut pending) = mpsc::channel::<(K, Reply<V>)>(max_keys.max(1) * 4);
        tokio::spawn(async move {
            while let Some(first) = pending.recv().await {
                let mut group = vec![first];
                while group.len() < max_keys {
                    match pending.try_recv() {
                        Ok(next) => group.push(next),
                        Err(_) => break,
                    }
                }
                let (keys, replies): (Vec<K>, Vec<Reply<V>>) = group.into_iter().unzip();
                let asked = keys.len();
                match load(keys).await {
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
        });
        Self { requests }
    }

    /// The value for `key`, loaded together with whatever else is pending.
    pub(crate) async fn get(&self, key: K) -> Result<V, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send((key, reply))
            .await
            .map_err(|_| StoreError::Request("the batched lookup task has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Request("the batched lookup task dropped a request".into()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_lookups_share_loads_and_get_their_own_answers() {
        let loads = Arc::new(AtomicUsize::new(0));
        let counted = loads.clone();
        let batcher = Batcher::spawn(16, move |keys: Vec<u32>| {
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
        let batcher = Batcher::spawn(8, |_keys: Vec<u32>| async {
            Err::<Vec<u32>, _>(StoreError::Request("down".into()))
        });
        let error = batcher.get(1).await.unwrap_err();
        assert!(error.is_transient(), "{error}");
        let short = Batcher::spawn(8, |_keys: Vec<u32>| async { Ok(Vec::<u32>::new()) });
        assert!(matches!(short.get(1).await, Err(StoreError::Answer(_))));
    }
}
