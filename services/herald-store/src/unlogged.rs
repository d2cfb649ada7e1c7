//! Writing many rows of one statement as unlogged batches sent concurrently. On one node an
//! unlogged batch of rows in different partitions saves request overhead, not atomicity: each
//! row is its own write, which is all the callers need.

use scylla::client::session::Session;
use scylla::serialize::row::SerializeRow;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;

use crate::StoreError;

/// Rows per unlogged batch: Cassandra warns about unlogged batches over more than 10
/// partitions, and every row here is its own partition.
pub(crate) const ROWS_PER_BATCH: usize = 10;

/// Writes every row with `statement`, `ROWS_PER_BATCH` rows per request, all requests at once.
pub(crate) async fn write_all<V: SerializeRow>(
    session: &Session,
    statement: &PreparedStatement,
    rows: &[V],
) -> Result<(), StoreError> {
    let writes = rows.chunks(ROWS_PER_BATCH).map(|chunk| async move {
        let mut batch = Batch::new(BatchType::Unlogged);
        for _ in chunk {
            batch.append_statement(statement.clone());
        }
        session.batch(&batch, chunk).await
    });
    futures::future::try_join_all(writes).await?;
    Ok(())
}
