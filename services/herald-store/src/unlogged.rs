//! Writing many rows of one statement as unlogged batches sent concurrently. On one node an
//! unlogged batch of rows in different partitions saves request overhead, not atomicity: each
//! row is its own write, which is all the callers need. Rows of one partition in one batch are
//! applied as one mutation, which is cheaper still.

use scylla::client::session::Session;
use scylla::serialize::row::SerializeRow;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;

use crate::StoreError;

/// Partitions per unlogged batch at most: Cassandra and ScyllaDB warn about unlogged batches
/// over more than 10 partitions (`unlogged_batch_across_partitions_warn_threshold`).
pub(crate) const PARTITIONS_PER_BATCH: usize = 10;
/// Rows per unlogged batch at most, whatever their partitions: keeps a batch of rows of up to
/// about 300 bytes (a timeline row) under the servers' batch-size warning (5 KiB), which they
/// log, and which the driver logs again, for every batch over it.
pub(crate) const ROWS_PER_BATCH: usize = 16;

/// Writes every row with `statement`, each row taken as its own partition, all requests at
/// once.
pub(crate) async fn write_all<V: SerializeRow>(
    session: &Session,
    statement: &PreparedStatement,
    rows: &[V],
) -> Result<(), StoreError> {
    write_grouped(session, statement, rows, |_| ()).await?;
    Ok(())
}

/// Writes every row with `statement`, all requests at once; rows next to each other with the
/// same `partition` share a batch's partition budget, so callers sort rows by partition first.
/// Returns the number of requests sent.
pub(crate) async fn write_grouped<V, P, F>(
    session: &Session,
    statement: &PreparedStatement,
    rows: &[V],
    partition: F,
) -> Result<usize, StoreError>
where
    V: SerializeRow,
    P: PartialEq,
    F: Fn(&V) -> P,
{
    let chunks = chunk_by_partition(rows, partition);
    let requests = chunks.len();
    let writes = chunks.into_iter().map(|chunk| async move {
        let mut batch = Batch::new(BatchType::Unlogged);
        for _ in chunk {
            batch.append_statement(statement.clone());
        }
        session.batch(&batch, chunk).await
    });
    futures::future::try_join_all(writes).await?;
    Ok(requests)
}

/// `rows` cut into runs of at most `PARTITIONS_PER_BATCH` partitions (a change of `partition`
/// between neighbours starts a new one; `()` makes every row its own) and `ROWS_PER_BATCH` rows.
fn chunk_by_partition<V, P: PartialEq>(rows: &[V], partition: impl Fn(&V) -> P) -> Vec<&[V]> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut partitions = 0;
    let mut last: Option<P> = None;
    for (i, row) in rows.iter().enumerate() {
        let key = partition(row);
        // A unit key (`()`) compares equal: count every row as a partition then.
        let new_partition =
            std::mem::size_of::<P>() == 0 || last.as_ref().is_none_or(|last| *last != key);
        let rows_in_chunk = i - start;
        if rows_in_chunk > 0
            && (rows_in_chunk == ROWS_PER_BATCH
                || (new_partition && partitions == PARTITIONS_PER_BATCH))
        {
            chunks.push(&rows[start..i]);
            start = i;
            partitions = 0;
        }
        if new_partition || partitions == 0 {
            partitions += 1;
        }
        last = Some(key);
    }
    if start < rows.len() {
        chunks.push(&rows[start..]);
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(chunks: &[&[u32]]) -> Vec<usize> {
        chunks.iter().map(|c| c.len()).collect()
    }

    #[test]
    fn rows_of_their_own_partitions_go_ten_to_a_batch() {
        let rows: Vec<u32> = (0..25).collect();
        assert_eq!(sizes(&chunk_by_partition(&rows, |_| ())), [10, 10, 5]);
        assert!(chunk_by_partition(&[] as &[u32], |_| ()).is_empty());
    }

    #[test]
    fn rows_of_one_partition_share_a_batch_up_to_the_row_limit() {
        // Partitions of one row each: 10 per batch; of 3 rows: 16 rows (6 partitions) per batch.
        let single: Vec<u32> = (0..25).collect();
        assert_eq!(sizes(&chunk_by_partition(&single, |r| *r)), [10, 10, 5]);
        let rows: Vec<u32> = (0..40).map(|i| i / 3).collect();
        let chunks = chunk_by_partition(&rows, |r| *r);
        assert_eq!(sizes(&chunks), [16, 16, 8]);
        for chunk in &chunks {
            let mut partitions: Vec<u32> = chunk.to_vec();
            partitions.dedup();
            assert!(partitions.len() <= PARTITIONS_PER_BATCH);
        }
        // One big partition is cut at the row limit.
        let one = vec![7u32; 40];
        assert_eq!(sizes(&chunk_by_partition(&one, |r| *r)), [16, 16, 8]);
        // Every row is in exactly one batch, in order.
        let flat: Vec<u32> = chunks.concat();
        assert_eq!(flat, rows);
    }
}
