//! A tenant's suppressed email addresses: written when a provider reports a hard bounce or a
//! complaint (and by hand through `herald api`), read by the router before it sends email, and
//! deleted through the API. Addresses are kept lowercased ([`normalize`]).
//!
//! A tenant's list is spread over [`BUCKETS`] partitions by a stable hash of the address, so
//! one tenant's bounces never make one unbounded partition; a lookup reads one row, a listing
//! walks the buckets in order. The router's lookups go through a [`Batcher`]: concurrent
//! misses of its cache are answered by one `IN` read per partition.

use chrono::{DateTime, Utc};
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::batcher::Batcher;
use crate::migrate::fnv1a;
use crate::{StoreConfig, StoreError};

/// Partitions per tenant. Stored data depends on it: never change it.
pub const BUCKETS: i32 = 16;

/// Lookups answered by one read, and reads in flight at once.
const MAX_LOOKUPS: usize = 64;
const LOOKUP_LANES: usize = 4;

/// Why an address is suppressed.
pub mod source {
    /// The provider reported a hard bounce.
    pub const BOUNCE: &str = "bounce";
    /// The recipient reported a message as spam.
    pub const COMPLAINT: &str = "complaint";
    /// Added through the API.
    pub const MANUAL: &str = "manual";
}

/// One suppressed address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppression {
    pub address: String,
    /// [`source::BOUNCE`], [`source::COMPLAINT`] or [`source::MANUAL`].
    pub reason: String,
    pub suppressed_at: DateTime<Utc>,
    /// The provider that reported it, if one did.
    pub provider: Option<String>,
    /// The event and dispatch whose message bounced or was complained about.
    pub source_event_id: Option<String>,
    pub source_dispatch_id: Option<String>,
}

/// Where a listing goes on: the last address of a page and its bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuppressionCursor {
    pub bucket: i32,
    pub address: String,
}

/// The form an address is stored and looked up in: trimmed and lowercased (providers report
/// addresses in whatever case they were sent to, and mailbox providers ignore case).
pub fn normalize(address: &str) -> String {
    address.trim().to_lowercase()
}

/// The bucket of a normalized address.
pub fn bucket(address: &str) -> i32 {
    // The remainder is below BUCKETS (16), so it fits.
    (fnv1a(address.as_bytes()) % BUCKETS as u64) as i32
}

type Row = (
    String,
    Option<String>,
    Option<DateTime<Utc>>,
    Option<String>,
    Option<String>,
    Option<String>,
);

const COLUMNS: &str =
    "address, reason, suppressed_at, provider, source_event_id, source_dispatch_id";

fn suppression((address, reason, at, provider, event_id, dispatch_id): Row) -> Suppression {
    Suppression {
        address,
        reason: reason.unwrap_or_default(),
        suppressed_at: at.unwrap_or(DateTime::UNIX_EPOCH),
        provider,
        source_event_id: event_id,
        source_dispatch_id: dispatch_id,
    }
}

#[derive(Debug, Clone)]
pub struct Suppressions {
    session: Arc<Session>,
    insert: PreparedStatement,
    select: PreparedStatement,
    page: PreparedStatement,
    delete: PreparedStatement,
    lookups: Batcher<(String, String), bool>,
}

impl Suppressions {
    pub async fn prepare(session: Arc<Session>, config: &StoreConfig) -> Result<Self, StoreError> {
        let table = config.table("suppressions");
        let insert = session
            .prepare(format!(
                "INSERT INTO {table} (tenant, bucket, {COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            ))
            .await?;
        let select = session
            .prepare(format!(
                "SELECT {COLUMNS} FROM {table} WHERE tenant = ? AND bucket = ? AND address = ?"
            ))
            .await?;
        let page = session
            .prepare(format!(
                "SELECT {COLUMNS} FROM {table} WHERE tenant = ? AND bucket = ? AND address > ? \
                 LIMIT ?"
            ))
            .await?;
        let delete = session
            .prepare(format!(
                "DELETE FROM {table} WHERE tenant = ? AND bucket = ? AND address = ?"
            ))
            .await?;
        let lookup = Arc::new(
            session
                .prepare(format!(
                    "SELECT address FROM {table} WHERE tenant = ? AND bucket = ? AND address IN ?"
                ))
                .await?,
        );
        let lookup_session = session.clone();
        let lookups = Batcher::spawn(MAX_LOOKUPS, LOOKUP_LANES, move |keys| {
            let (session, statement) = (lookup_session.clone(), lookup.clone());
            async move { load(&session, &statement, keys).await }
        });
        Ok(Self {
            session,
            insert,
            select,
            page,
            delete,
            lookups,
        })
    }

    /// Records `suppression` (its address normalized); recording an address again replaces
    /// its reason and time.
    pub async fn add(&self, tenant: &str, suppression: &Suppression) -> Result<(), StoreError> {
        let address = normalize(&suppression.address);
        self.session
            .execute_unpaged(
                &self.insert,
                (
                    tenant,
                    bucket(&address),
                    &address,
                    &suppression.reason,
                    suppression.suppressed_at,
                    &suppression.provider,
                    &suppression.source_event_id,
                    &suppression.source_dispatch_id,
                ),
            )
            .await?;
        Ok(())
    }

    pub async fn get(
        &self,
        tenant: &str,
        address: &str,
    ) -> Result<Option<Suppression>, StoreError> {
        let address = normalize(address);
        let row = self
            .session
            .execute_unpaged(&self.select, (tenant, bucket(&address), &address))
            .await?
            .into_rows_result()?
            .maybe_first_row::<Row>()?;
        Ok(row.map(suppression))
    }

    /// Removes the address; removing one that is not there changes nothing.
    pub async fn delete(&self, tenant: &str, address: &str) -> Result<(), StoreError> {
        let address = normalize(address);
        self.session
            .execute_unpaged(&self.delete, (tenant, bucket(&address), &address))
            .await?;
        Ok(())
    }

    /// Whether the router must not send email to `address` (batched with concurrent lookups).
    pub async fn is_suppressed(&self, tenant: &str, address: &str) -> Result<bool, StoreError> {
        self.lookups
            .get((tenant.to_owned(), normalize(address)))
            .await
    }

    /// Up to `limit` suppressions after `cursor`, bucket by bucket, and the cursor of the next
    /// page when there is one.
    pub async fn list(
        &self,
        tenant: &str,
        cursor: Option<SuppressionCursor>,
        limit: usize,
    ) -> Result<(Vec<Suppression>, Option<SuppressionCursor>), StoreError> {
        let limit = limit.max(1);
        let (mut bucket, mut after) = match cursor {
            Some(c) => (c.bucket.max(0), c.address),
            None => (0, String::new()),
        };
        // One more than asked for, to know whether there is a next page.
        let mut found: Vec<(i32, Suppression)> = Vec::with_capacity(limit + 1);
        while bucket < BUCKETS && found.len() <= limit {
            let want = i32::try_from(limit + 1 - found.len()).unwrap_or(i32::MAX);
            let rows = self
                .session
                .execute_unpaged(&self.page, (tenant, bucket, &after, want))
                .await?
                .into_rows_result()?;
            for row in rows.rows::<Row>()? {
                found.push((bucket, suppression(row?)));
            }
            bucket += 1;
            after = String::new();
        }
        let next = if found.len() > limit {
            found.truncate(limit);
            found.last().map(|(bucket, s)| SuppressionCursor {
                bucket: *bucket,
                address: s.address.clone(),
            })
        } else {
            None
        };
        Ok((found.into_iter().map(|(_, s)| s).collect(), next))
    }
}

/// Whether each (tenant, address) is suppressed: one `IN` read per (tenant, bucket).
async fn load(
    session: &Session,
    statement: &PreparedStatement,
    keys: Vec<(String, String)>,
) -> Result<Vec<bool>, StoreError> {
    let mut groups: HashMap<(&str, i32), Vec<&str>> = HashMap::new();
    for (tenant, address) in &keys {
        let group = groups.entry((tenant, bucket(address))).or_default();
        if !group.contains(&address.as_str()) {
            group.push(address);
        }
    }
    let mut suppressed: HashSet<(String, String)> = HashSet::new();
    for ((tenant, bucket), addresses) in groups {
        let rows = session
            .execute_unpaged(statement, (tenant, bucket, &addresses))
            .await?
            .into_rows_result()?;
        for row in rows.rows::<(String,)>()? {
            let (address,) = row?;
            suppressed.insert((tenant.to_owned(), address));
        }
    }
    Ok(keys.iter().map(|key| suppressed.contains(key)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_normalized_and_bucketed_stably() {
        assert_eq!(normalize("  Ana@Example.COM "), "ana@example.com");
        let b = bucket("ana@example.com");
        assert!((0..BUCKETS).contains(&b));
        // Stored data depends on the bucket of an address never changing.
        assert_eq!(bucket("ana@example.com"), b);
        assert_eq!(bucket(""), (0xcbf2_9ce4_8422_2325_u64 % 16) as i32);
        let spread: HashSet<i32> = (0..200)
            .map(|i| bucket(&format!("u{i}@x.example")))
            .collect();
        assert_eq!(spread.len(), BUCKETS as usize);
    }
}
