//! In-memory fakes of the engine's two Kafka sides, and the engine's tests against them: a
//! log of partitions with positions, pauses and committed offsets, and transactions that make
//! a batch's output visible only when its commit succeeds.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use super::*;

type Partition = (String, i32);

#[derive(Default)]
struct State {
    records: BTreeMap<Partition, Vec<Input>>,
    position: HashMap<Partition, i64>,
    paused: HashSet<Partition>,
    /// A partition just sought is fetched again only after a fetch round trip, as in Kafka.
    fetch_after: HashMap<Partition, std::time::Instant>,
    committed: HashMap<Partition, i64>,
    /// What committed transactions produced, in commit order.
    output: Vec<OutRecord>,
    /// The partition being fetched: it is read until it has nothing more, as a fetch fills
    /// a batch from one partition.
    turn: usize,
}

/// The broker: input partitions and the committed output.
#[derive(Clone, Default)]
struct Cluster(Arc<Mutex<State>>);

impl Cluster {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.0)
    }

    /// `count` records on `partitions` partitions of topic `in`, keyed by one of `keys` users;
    /// a key always lands on the same partition, as Kafka's partitioner would put it.
    fn with_records(count: i64, partitions: i32, keys: i64) -> Self {
        let cluster = Cluster::default();
        {
            let mut state = cluster.state();
            for n in 0..count {
                let user = n % keys;
                let partition = (user % i64::from(partitions)) as i32;
                let records = state.records.entry(("in".into(), partition)).or_default();
                let offset = records.len() as i64;
                records.push(Input {
                    topic: "in".into(),
                    partition,
                    offset,
                    key: Some(format!("user-{user}").into_bytes()),
                    payload: Some(n.to_be_bytes().to_vec()),
                    headers: Vec::new(),
                });
            }
        }
        cluster
    }

    fn take_next(&self) -> Option<Input> {
        let mut state = self.state();
        let partitions: Vec<Partition> = state.records.keys().cloned().collect();
        for i in 0..partitions.len() {
            let partition = &partitions[(state.turn + i) % partitions.len()];
            let refetching = state
                .fetch_after
                .get(partition)
                .is_some_and(|at| *at > std::time::Instant::now());
            if state.paused.contains(partition) || refetching {
                continue;
            }
            let at = state
                .position
                .get(partition)
                .copied()
                .or_else(|| state.committed.get(partition).copied())
                .unwrap_or(0);
            if let Some(input) = state.records[partition].get(at as usize).cloned() {
                state.position.insert(partition.clone(), at + 1);
                state.turn = (state.turn + i) % partitions.len();
                return Some(input);
            }
        }
        None
    }

    fn all_committed(&self) -> bool {
        let state = self.state();
        state
            .records
            .iter()
            .all(|(p, records)| state.committed.get(p).copied() == Some(records.len() as i64))
    }

    fn output(&self) -> Vec<OutRecord> {
        self.state().output.clone()
    }
}

struct FakeLog {
    cluster: Cluster,
    rebuilds: usize,
}

impl InputLog for FakeLog {
    type Group = ();

    async fn next(&self) -> Result<Input, KafkaError> {
        loop {
            if let Some(input) = self.cluster.take_next() {
                return Ok(input);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    fn ready(&self) -> Option<Result<Input, KafkaError>> {
        self.cluster.take_next().map(Ok)
    }

    fn revocations(&self) -> u64 {
        0
    }

    fn stuck(&self) -> bool {
        false
    }

    fn group(&self) -> Option<()> {
        Some(())
    }

    fn pause(&self, ranges: &OffsetRanges) -> Result<(), KafkaError> {
        let mut state = self.cluster.state();
        for (topic, partition, _) in ranges.starts() {
            state.paused.insert((topic.to_owned(), partition));
        }
        Ok(())
    }

    fn resume(&self, ranges: &OffsetRanges) -> Result<(), KafkaError> {
        let mut state = self.cluster.state();
        for (topic, partition, _) in ranges.starts() {
            state.paused.remove(&(topic.to_owned(), partition));
        }
        Ok(())
    }

    fn seek(&self, topic: &str, partition: i32, offset: i64) -> Result<(), KafkaError> {
        let mut state = self.cluster.state();
        let partition = (topic.to_owned(), partition);
        state.position.insert(partition.clone(), offset);
        state.fetch_after.insert(
            partition,
            std::time::Instant::now() + Duration::from_millis(1),
        );
        Ok(())
    }

    fn rewind_owned(&self, ranges: &OffsetRanges) -> Result<(), KafkaError> {
        for (topic, partition, first) in ranges.starts() {
            self.seek(topic, partition, first)?;
        }
        Ok(())
    }

    fn rebuild(&mut self) -> Result<(), KafkaError> {
        // A new consumer starts from the committed offsets.
        self.rebuilds += 1;
        let mut state = self.cluster.state();
        state.position.clear();
        state.paused.clear();
        Ok(())
    }

    fn leave(&self) {}
}

/// Transactions that take `delay` to commit and fail the commits numbered in `fail` (from 0).
struct FakeTransactions {
    cluster: Cluster,
    delay: Duration,
    /// The first commit waits until this list (a step's applied records) holds this many.
    first_waits_for: Option<(Applied, usize)>,
    fail: Arc<HashSet<usize>>,
    commits: Arc<AtomicUsize>,
    recoveries: Arc<AtomicUsize>,
}

impl FakeTransactions {
    fn new(cluster: &Cluster, delay: Duration, fail: impl IntoIterator<Item = usize>) -> Self {
        Self {
            cluster: cluster.clone(),
            delay,
            first_waits_for: None,
            fail: Arc::new(fail.into_iter().collect()),
            commits: Arc::default(),
            recoveries: Arc::default(),
        }
    }
}

impl Transactions for FakeTransactions {
    type Group = ();

    fn commit(
        &self,
        (): (),
        records: Vec<OutRecord>,
        ranges: &OffsetRanges,
    ) -> impl Future<Output = Result<(), KafkaError>> + Send + 'static {
        let first_waits_for = self.first_waits_for.clone();
        let (cluster, delay, fail, commits) = (
            self.cluster.clone(),
            self.delay,
            self.fail.clone(),
            self.commits.clone(),
        );
        let next: Vec<(Partition, i64)> = ranges
            .ends()
            .map(|(topic, partition, last)| ((topic.to_owned(), partition), last + 1))
            .collect();
        async move {
            let number = commits.fetch_add(1, Ordering::SeqCst);
            if let (0, Some((applied, count))) = (number, first_waits_for) {
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                while lock(&applied).len() < count && std::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            tokio::time::sleep(delay).await;
            if fail.contains(&number) {
                return Err(KafkaError::MessageProduction(
                    RDKafkaErrorCode::NotEnoughReplicas,
                ));
            }
            let mut state = cluster.state();
            state.output.extend(records);
            state.committed.extend(next);
            Ok(())
        }
    }

    async fn recover(self, _error: &KafkaError) -> Result<Self, KafkaError> {
        self.recoveries.fetch_add(1, Ordering::SeqCst);
        Ok(self)
    }
}

/// The (partition, offset) of every record a step applied, in order.
type Applied = Arc<Mutex<Vec<(i32, i64)>>>;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Produces one record per input, naming it, and fails its first `faults` batches.
#[derive(Default)]
struct Echo {
    applied: Applied,
    batch_sizes: Mutex<Vec<usize>>,
    faults: AtomicUsize,
}

impl Echo {
    fn failing(faults: usize) -> Self {
        Self {
            faults: AtomicUsize::new(faults),
            ..Self::default()
        }
    }

    fn applied(&self) -> Vec<(i32, i64)> {
        lock(&self.applied).clone()
    }
}

impl Step for Echo {
    type Fault = &'static str;

    async fn apply(
        &self,
        batch: &Batch,
        max_in_flight: usize,
    ) -> Result<Vec<OutRecord>, &'static str> {
        lock(&self.batch_sizes).push(batch.len());
        if self
            .faults
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |f| f.checked_sub(1))
            .is_ok()
        {
            return Err("database unavailable");
        }
        apply_by_key(
            &batch.inputs,
            0..batch.len(),
            max_in_flight,
            |input| async move {
                lock(&self.applied).push((input.partition, input.offset));
                Ok(vec![OutRecord {
                    topic: "out".into(),
                    key: input.key.clone(),
                    payload: format!("{}/{}", input.partition, input.offset).into_bytes(),
                    headers: Vec::new(),
                }])
            },
        )
        .await
    }

    fn stage(_: &&'static str) -> &'static str {
        "database"
    }
}

const METRICS: EngineMetrics = EngineMetrics {
    transactions: "test_transactions_total",
    commit_seconds: "test_commit_seconds",
    transient_faults: "test_transient_faults_total",
};

fn config(max_batch: usize) -> EngineConfig {
    EngineConfig {
        max_batch,
        max_in_flight: 4,
        commit_interval: Duration::from_millis(5),
        max_backoff: Duration::from_millis(5),
        metrics: METRICS,
    }
}

/// Runs the engine until every input is committed, then shuts it down.
async fn run_to_the_end(
    cluster: &Cluster,
    transactions: FakeTransactions,
    step: &Echo,
    max_batch: usize,
) -> FakeLog {
    let mut log = FakeLog {
        cluster: cluster.clone(),
        rebuilds: 0,
    };
    let shutdown = CancellationToken::new();
    let watcher = {
        let (cluster, shutdown) = (cluster.clone(), shutdown.clone());
        tokio::spawn(async move {
            while !cluster.all_committed() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            shutdown.cancel();
        })
    };
    let ran = tokio::time::timeout(
        Duration::from_secs(30),
        run(
            &mut log,
            transactions,
            step,
            TakeAll,
            config(max_batch),
            &shutdown,
        ),
    )
    .await;
    assert!(matches!(ran, Ok(Ok(()))), "the engine did not finish");
    watcher.await.unwrap();
    log
}

/// Every input is in the committed output exactly once, and one key's outputs are in the
/// order of its inputs.
fn assert_exactly_once_in_key_order(cluster: &Cluster) {
    let inputs: Vec<Input> = cluster
        .state()
        .records
        .values()
        .flatten()
        .cloned()
        .collect();
    let output = cluster.output();
    let mut names: Vec<String> = output
        .iter()
        .map(|o| String::from_utf8_lossy(&o.payload).into_owned())
        .collect();
    names.sort();
    let mut expected: Vec<String> = inputs
        .iter()
        .map(|i| format!("{}/{}", i.partition, i.offset))
        .collect();
    expected.sort();
    assert_eq!(names, expected, "every input once");
    let mut last_offset: HashMap<Vec<u8>, i64> = HashMap::new();
    for record in &output {
        let name = String::from_utf8_lossy(&record.payload).into_owned();
        let offset: i64 = name
            .split('/')
            .nth(1)
            .and_then(|o| o.parse().ok())
            .unwrap_or(-1);
        let key = record.key.clone().unwrap_or_default();
        if let Some(previous) = last_offset.insert(key, offset) {
            assert!(
                previous < offset,
                "{name} came after offset {previous} of its key"
            );
        }
    }
}

#[tokio::test]
async fn every_input_is_committed_once_in_key_order() {
    let cluster = Cluster::with_records(300, 3, 17);
    let step = Echo::default();
    let transactions = FakeTransactions::new(&cluster, Duration::from_millis(2), []);
    run_to_the_end(&cluster, transactions, &step, 25).await;
    assert_exactly_once_in_key_order(&cluster);
    assert_eq!(
        step.applied().len(),
        300,
        "nothing applied twice without a fault"
    );
}

#[tokio::test]
async fn a_failed_commit_rewinds_the_batch_applied_while_it_ran() {
    // Ten records on each partition: the first batch is one partition's, the second the
    // other's, so the second is only read again if the engine rewinds it too.
    let cluster = Cluster::with_records(20, 2, 2);
    let step = Echo::default();
    // The first commit waits until the second batch has been collected and applied (both
    // batches' 20 records), then fails.
    let mut transactions = FakeTransactions::new(&cluster, Duration::ZERO, [0]);
    transactions.first_waits_for = Some((step.applied.clone(), 20));
    let recoveries = transactions.recoveries.clone();
    run_to_the_end(&cluster, transactions, &step, 10).await;
    assert_exactly_once_in_key_order(&cluster);
    assert_eq!(recoveries.load(Ordering::SeqCst), 1);
    let applied = step.applied();
    let mut count: HashMap<(i32, i64), usize> = HashMap::new();
    for record in &applied {
        *count.entry(*record).or_default() += 1;
    }
    let twice = count.values().filter(|n| **n > 1).count();
    // The failed batch and the one applied during its commit were both applied again.
    assert!(
        twice >= 20,
        "{twice} records applied twice, expected both batches (20 records)"
    );
}

#[tokio::test]
async fn a_step_fault_reads_the_batch_again_smaller() {
    let cluster = Cluster::with_records(60, 2, 5);
    let step = Echo::failing(1);
    let transactions = FakeTransactions::new(&cluster, Duration::from_millis(1), []);
    run_to_the_end(&cluster, transactions, &step, 20).await;
    assert_exactly_once_in_key_order(&cluster);
    let sizes = lock(&step.batch_sizes).clone();
    assert_eq!(sizes[0], 20, "the first batch is full: {sizes:?}");
    assert!(
        sizes[1] <= 5,
        "the batch after a fault is a quarter: {sizes:?}"
    );
    assert_eq!(
        step.applied().len(),
        60,
        "the failed batch produced nothing"
    );
}

#[tokio::test]
async fn shutdown_commits_the_applied_batch_before_returning() {
    let cluster = Cluster::with_records(8, 1, 3);
    let step = Echo::default();
    let transactions = FakeTransactions::new(&cluster, Duration::from_millis(20), []);
    let mut log = FakeLog {
        cluster: cluster.clone(),
        rebuilds: 0,
    };
    let shutdown = CancellationToken::new();
    let stop = {
        let shutdown = shutdown.clone();
        let step = &step;
        async move {
            // Shut down as soon as the batch is applied, while its commit is under way.
            while step.applied().len() < 8 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            shutdown.cancel();
        }
    };
    let (ran, ()) = tokio::join!(
        run(
            &mut log,
            transactions,
            &step,
            TakeAll,
            config(100),
            &shutdown
        ),
        stop
    );
    assert!(ran.is_ok());
    assert!(cluster.all_committed());
    assert_exactly_once_in_key_order(&cluster);
    assert_eq!(log.rebuilds, 0);
}
