//! The embedded SQLite backend of Nimbus's storage traits
//! ([`FunctionStore`], [`InvocationStore`]).
//!
//! One file holds everything. [`SqliteStore::open`] creates it if needed,
//! switches it to write-ahead logging and brings its schema up to date
//! (`PRAGMA user_version` records the schema version; see [`schema`]).
//!
//! # Design
//!
//! - **One writer.** A dedicated thread owns the only write connection.
//!   Every write (a deploy, a delete, a batch of invocation records, a prune)
//!   is a command sent to it over a bounded queue (callers wait when it is
//!   full) with a oneshot for the answer.
//! - **Group commit.** The writer blocks for the first command, then takes
//!   whatever else is already queued (up to 256 commands) and runs them all
//!   in one transaction, each in its own savepoint so a failing command is
//!   rolled back alone and gets its own error. It commits once and only then
//!   answers every command. With `synchronous=FULL` each commit syncs the log
//!   to disk, so an acknowledged write survives power loss; under load that
//!   one sync is shared by every command of the batch, which keeps
//!   durability cheap. A command is atomic: all of it or none of it.
//! - **Readers.** A fixed pool of four `query_only` connections serves reads
//!   on tokio's blocking pool. Write-ahead logging lets them run alongside
//!   the writer, and each read sees every write acknowledged before it.
//! - **Shutdown.** Dropping the last `Arc<SqliteStore>` closes the queue; the
//!   writer runs every command still queued, closes its connection and
//!   exits, and the drop waits for it.
//!
//! Versions and records are stored as JSON, next to copies of the columns
//! that lookups filter and sort on. Hourly usage totals live in their own
//! table, added to by the same command that inserts the records they count.

mod aliases;
mod audit;
mod config;
mod docs;
mod error;
mod keys;
mod kv;
mod readers;
pub mod schema;
mod secrets;
mod usage;
mod writer;

pub use writer::WriterStats;

use anyhow::{Context, anyhow};
use async_trait::async_trait;
use error::is_duplicate_key;
use nimbus_api::{FunctionVersion, InvocationRecord, UsageRow};
use nimbus_core::store::{
    FunctionStore, InvocationQuery, InvocationStore, MAX_QUERY_LIMIT, StoreError, StoreResult,
    USAGE_BUCKET_MS, UsageQuery,
};
use readers::Readers;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Records an invocation query returns when it asks for 0.
pub const DEFAULT_QUERY_LIMIT: u32 = 100;

/// The SQLite store. Open it once and share the `Arc`.
pub struct SqliteStore {
    path: PathBuf,
    /// Taken (closing the queue) when the store is dropped.
    queue: Option<writer::Queue>,
    writer: Option<JoinHandle<()>>,
    readers: Arc<Readers>,
    counters: Arc<writer::Counters>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`, migrates its schema
    /// and starts the writer thread. This blocks on file I/O: call it at
    /// start-up, or from `spawn_blocking`.
    pub fn open(path: &Path) -> anyhow::Result<Arc<SqliteStore>> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("create the store directory {}", parent.display()))?;
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(path, flags)
            .with_context(|| format!("open the store at {}", path.display()))?;
        schema::configure_writer(&conn)
            .with_context(|| format!("configure the store at {}", path.display()))?;
        schema::migrate(&mut conn)
            .with_context(|| format!("migrate the store at {}", path.display()))?;
        let readers = Readers::open(path)?;
        let counters = Arc::new(writer::Counters::default());
        let (queue, handle) = writer::spawn(conn, Arc::clone(&counters))?;
        tracing::debug!(path = %path.display(), "opened the store");
        Ok(Arc::new(SqliteStore {
            path: path.to_owned(),
            queue: Some(queue),
            writer: Some(handle),
            readers: Arc::new(readers),
            counters,
        }))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the writer thread has done so far.
    pub fn stats(&self) -> WriterStats {
        self.counters.snapshot()
    }

    async fn write<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        writer::submit(self.queue.as_ref(), work).await
    }

    /// [`Self::write`] of a command that may be refused part-way: a
    /// refusal (`Ok(Err(_))`) rolls the command's savepoint back, so
    /// nothing it wrote before remains, and reaches the caller as given.
    async fn write_all_or_nothing<T, E, F>(&self, work: F) -> StoreResult<Result<T, E>>
    where
        T: Send + 'static,
        E: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<Result<T, E>> + Send + 'static,
    {
        let refused = std::sync::Arc::new(std::sync::Mutex::new(None));
        let slot = refused.clone();
        let done = self
            .write(move |conn| match work(conn)? {
                Ok(v) => Ok(v),
                Err(e) => {
                    *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    Err(StoreError::Conflict("refused: rolled back".to_owned()))
                }
            })
            .await;
        match done {
            Ok(v) => Ok(Ok(v)),
            Err(e) => match refused.lock().unwrap_or_else(|p| p.into_inner()).take() {
                Some(refusal) => Ok(Err(refusal)),
                None => Err(e),
            },
        }
    }

    async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> anyhow::Result<T> + Send + 'static,
    {
        readers::read(&self.readers, f).await
    }

    /// [`Self::read`] of one row by its key: on the calling thread when a
    /// read connection is free (see [`readers::read_now`]).
    async fn read_row<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> anyhow::Result<T> + Send + Sync + 'static,
    {
        if let Some(done) = readers::read_now(&self.readers, &f) {
            return done;
        }
        readers::read(&self.readers, f).await
    }
}

impl Drop for SqliteStore {
    /// Closes the write queue and waits for the writer to finish what was
    /// queued.
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(handle) = self.writer.take()
            && handle.join().is_err()
        {
            tracing::error!(path = %self.path.display(), "the store writer thread panicked");
        }
    }
}

/// `v` as an SQLite integer, or an error naming `what`.
fn to_sql_int(v: u64, what: &str) -> anyhow::Result<i64> {
    i64::try_from(v).map_err(|_| anyhow!("{what} {v} is out of range"))
}

fn decode_version(body: &str) -> anyhow::Result<FunctionVersion> {
    serde_json::from_str(body).context("decode a stored function version")
}

fn decode_record(body: &str) -> anyhow::Result<InvocationRecord> {
    serde_json::from_str(body).context("decode a stored invocation record")
}

/// Runs `sql` with `params` and decodes every `body` column it returns.
fn query_bodies<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    decode: fn(&str) -> anyhow::Result<T>,
) -> anyhow::Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let bodies = stmt
        .query_map(params, |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    bodies.iter().map(|b| decode(b)).collect()
}

/// Creates the next version of each draft; runs on the writer.
fn create_versions_tx(
    conn: &Connection,
    drafts: Vec<FunctionVersion>,
) -> StoreResult<Vec<FunctionVersion>> {
    let now = nimbus_core::time::now_ms().max(1);
    let mut created = Vec::with_capacity(drafts.len());
    for mut v in drafts {
        let what = format!("{}/{}", v.namespace, v.name);
        let next: Option<i64> = conn
            .prepare_cached("SELECT next_version FROM functions WHERE namespace = ?1 AND name = ?2")
            .and_then(|mut s| {
                s.query_row(params![v.namespace, v.name], |row| row.get(0))
                    .optional()
            })
            .with_context(|| format!("read the next version of {what}"))?;
        let version = match next {
            None => 1,
            Some(n) => u32::try_from(n)
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| anyhow!("the stored next version of {what} ({n}) is invalid"))?,
        };
        let following = version
            .checked_add(1)
            .ok_or_else(|| anyhow!("{what} has run out of version numbers"))?;
        v.version = version;
        v.created_at_ms = now;
        let body = serde_json::to_string(&v).context("encode a function version")?;
        let created_at = to_sql_int(now, "created_at_ms")?;
        conn.prepare_cached(
            "INSERT INTO functions (namespace, name, next_version, latest_version)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (namespace, name) DO UPDATE
             SET next_version = excluded.next_version, latest_version = excluded.latest_version",
        )
        .and_then(|mut s| s.execute(params![v.namespace, v.name, following, version]))
        .with_context(|| format!("point {what} at version {version}"))?;
        let inserted = conn
            .prepare_cached(
                "INSERT INTO versions (namespace, name, version, created_at_ms, body)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut s| s.execute(params![v.namespace, v.name, version, created_at, body]));
        match inserted {
            Ok(_) => {}
            Err(e) if is_duplicate_key(&e) => {
                return Err(StoreError::Conflict(format!(
                    "version {version} of {what} already exists"
                )));
            }
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("insert version {version} of {what}"))
                    .into());
            }
        }
        created.push(v);
    }
    Ok(created)
}

#[async_trait]
impl FunctionStore for SqliteStore {
    async fn create_versions(
        &self,
        drafts: Vec<FunctionVersion>,
    ) -> StoreResult<Vec<FunctionVersion>> {
        if drafts.is_empty() {
            return Ok(Vec::new());
        }
        let mut seen = HashSet::with_capacity(drafts.len());
        for d in &drafts {
            if !seen.insert((d.namespace.as_str(), d.name.as_str())) {
                return Err(StoreError::Conflict(format!(
                    "{}/{} appears more than once in one deploy",
                    d.namespace, d.name
                )));
            }
        }
        self.write(move |conn| create_versions_tx(conn, drafts))
            .await
    }

    async fn latest(&self, namespace: &str, name: &str) -> StoreResult<Option<FunctionVersion>> {
        let (namespace, name) = (namespace.to_owned(), name.to_owned());
        self.read(move |conn| {
            let body: Option<String> = conn
                .prepare_cached(
                    "SELECT v.body FROM functions f
                     JOIN versions v ON v.namespace = f.namespace AND v.name = f.name
                                    AND v.version = f.latest_version
                     WHERE f.namespace = ?1 AND f.name = ?2",
                )
                .and_then(|mut s| {
                    s.query_row(params![namespace, name], |row| row.get(0))
                        .optional()
                })
                .with_context(|| format!("read the latest version of {namespace}/{name}"))?;
            body.as_deref().map(decode_version).transpose()
        })
        .await
    }

    async fn version(
        &self,
        namespace: &str,
        name: &str,
        version: u32,
    ) -> StoreResult<Option<FunctionVersion>> {
        let (namespace, name) = (namespace.to_owned(), name.to_owned());
        self.read(move |conn| {
            let body: Option<String> = conn
                .prepare_cached(
                    "SELECT body FROM versions WHERE namespace = ?1 AND name = ?2 AND version = ?3",
                )
                .and_then(|mut s| {
                    s.query_row(params![namespace, name, version], |row| row.get(0))
                        .optional()
                })
                .with_context(|| format!("read version {version} of {namespace}/{name}"))?;
            body.as_deref().map(decode_version).transpose()
        })
        .await
    }

    async fn versions(&self, namespace: &str, name: &str) -> StoreResult<Vec<FunctionVersion>> {
        let (namespace, name) = (namespace.to_owned(), name.to_owned());
        self.read(move |conn| {
            query_bodies(
                conn,
                "SELECT body FROM versions WHERE namespace = ?1 AND name = ?2 ORDER BY version DESC",
                params![namespace, name],
                decode_version,
            )
            .with_context(|| format!("list the versions of {namespace}/{name}"))
        })
        .await
    }

    async fn list_latest(&self, namespace: Option<&str>) -> StoreResult<Vec<FunctionVersion>> {
        let namespace = namespace.map(str::to_owned);
        self.read(move |conn| {
            const SELECT: &str = "SELECT v.body FROM functions f
                 JOIN versions v ON v.namespace = f.namespace AND v.name = f.name
                                AND v.version = f.latest_version";
            match &namespace {
                Some(ns) => query_bodies(
                    conn,
                    &format!("{SELECT} WHERE f.namespace = ?1 ORDER BY f.namespace, f.name"),
                    params![ns],
                    decode_version,
                ),
                None => query_bodies(
                    conn,
                    &format!("{SELECT} ORDER BY f.namespace, f.name"),
                    [],
                    decode_version,
                ),
            }
            .context("list the latest function versions")
        })
        .await
    }

    async fn delete_function(&self, namespace: &str, name: &str) -> StoreResult<bool> {
        let (namespace, name) = (namespace.to_owned(), name.to_owned());
        self.write(move |conn| {
            conn.prepare_cached("DELETE FROM versions WHERE namespace = ?1 AND name = ?2")
                .and_then(|mut s| s.execute(params![namespace, name]))
                .with_context(|| format!("delete the versions of {namespace}/{name}"))?;
            let deleted = conn
                .prepare_cached("DELETE FROM functions WHERE namespace = ?1 AND name = ?2")
                .and_then(|mut s| s.execute(params![namespace, name]))
                .with_context(|| format!("delete the function {namespace}/{name}"))?;
            Ok(deleted > 0)
        })
        .await
    }

    async fn code_digests(&self) -> StoreResult<HashSet<String>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT DISTINCT json_extract(body, '$.code_digest') FROM versions")
                .context("list the code digests of all versions")?;
            let rows = stmt
                .query_map([], |row| row.get::<_, Option<String>>(0))
                .context("list the code digests of all versions")?;
            let mut out = HashSet::new();
            for row in rows {
                if let Some(d) = row.context("read a code digest")? {
                    out.insert(d);
                }
            }
            Ok(out)
        })
        .await
    }
}

/// Usage totals of one function in one hour, as they accumulate.
#[derive(Debug, Default)]
struct UsageDelta {
    invocations: u64,
    errors: u64,
    billed_ms: u64,
    mib_ms: u64,
}

impl UsageDelta {
    fn add(&mut self, r: &InvocationRecord) {
        self.invocations = self.invocations.saturating_add(1);
        self.errors = self
            .errors
            .saturating_add(u64::from(r.error_code.is_some()));
        self.billed_ms = self.billed_ms.saturating_add(r.billed_ms);
        self.mib_ms = self
            .mib_ms
            .saturating_add(r.billed_ms.saturating_mul(u64::from(r.memory_limit_mib)));
    }
}

/// Start of the usage hour `started_at_ms` falls in.
fn hour_start(started_at_ms: u64) -> u64 {
    started_at_ms / USAGE_BUCKET_MS * USAGE_BUCKET_MS
}

/// `v` as an SQLite integer, capped at the largest one.
fn saturating_sql_int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Column `idx` of `row` as a `u64`; a negative value is an error rather than
/// wrapping around.
fn get_u64(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<u64> {
    let v: i64 = row.get(idx)?;
    u64::try_from(v).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Integer, Box::new(e))
    })
}

/// Adds one delta to a usage row, creating it if needed. Each total stops at
/// the largest SQLite integer rather than overflowing.
const UPSERT_USAGE: &str = "
INSERT INTO usage_hourly
    (namespace, function, hour_start_ms, invocations, errors, billed_ms, mib_ms)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
ON CONFLICT (namespace, function, hour_start_ms) DO UPDATE SET
    invocations = CASE WHEN excluded.invocations > 9223372036854775807 - invocations
                       THEN 9223372036854775807 ELSE invocations + excluded.invocations END,
    errors      = CASE WHEN excluded.errors > 9223372036854775807 - errors
                       THEN 9223372036854775807 ELSE errors + excluded.errors END,
    billed_ms   = CASE WHEN excluded.billed_ms > 9223372036854775807 - billed_ms
                       THEN 9223372036854775807 ELSE billed_ms + excluded.billed_ms END,
    mib_ms      = CASE WHEN excluded.mib_ms > 9223372036854775807 - mib_ms
                       THEN 9223372036854775807 ELSE mib_ms + excluded.mib_ms END";

/// Inserts `records` and adds them to their hourly usage rows; runs on the
/// writer, so both happen in one savepoint: all of it or none of it.
fn insert_invocations_tx(conn: &Connection, records: &[InvocationRecord]) -> StoreResult<()> {
    insert_records(conn, records)?;
    // One upsert per function and hour, however many records the batch has.
    let mut usage: BTreeMap<(&str, &str, u64), UsageDelta> = BTreeMap::new();
    for r in records {
        usage
            .entry((&r.namespace, &r.function, hour_start(r.started_at_ms)))
            .or_default()
            .add(r);
    }
    let mut stmt = conn
        .prepare_cached(UPSERT_USAGE)
        .context("prepare to add to usage")?;
    for ((namespace, function, hour), d) in usage {
        stmt.execute(params![
            namespace,
            function,
            saturating_sql_int(hour),
            saturating_sql_int(d.invocations),
            saturating_sql_int(d.errors),
            saturating_sql_int(d.billed_ms),
            saturating_sql_int(d.mib_ms),
        ])
        .with_context(|| format!("add to the usage of {namespace}/{function} in hour {hour}"))?;
    }
    Ok(())
}

/// Inserts `records`; runs on the writer.
fn insert_records(conn: &Connection, records: &[InvocationRecord]) -> StoreResult<()> {
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO invocations (id, namespace, function, started_at_ms, body)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .context("prepare to insert invocation records")?;
    for r in records {
        let started = to_sql_int(r.started_at_ms, "started_at_ms")
            .with_context(|| format!("insert invocation record {}", r.id))?;
        let body = serde_json::to_string(r).context("encode an invocation record")?;
        match stmt.execute(params![r.id, r.namespace, r.function, started, body]) {
            Ok(_) => {}
            Err(e) if is_duplicate_key(&e) => {
                return Err(StoreError::Conflict(format!(
                    "invocation record {} already exists",
                    r.id
                )));
            }
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("insert invocation record {}", r.id))
                    .into());
            }
        }
    }
    Ok(())
}

#[async_trait]
impl InvocationStore for SqliteStore {
    async fn insert_invocations(&self, records: Vec<InvocationRecord>) -> StoreResult<()> {
        if records.is_empty() {
            return Ok(());
        }
        self.write(move |conn| insert_invocations_tx(conn, &records))
            .await
    }

    async fn usage(&self, query: UsageQuery) -> StoreResult<Vec<UsageRow>> {
        self.read(move |conn| {
            let mut sql = String::from(
                "SELECT namespace, function, hour_start_ms, invocations, errors, billed_ms, mib_ms
                 FROM usage_hourly WHERE 1 = 1",
            );
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            filter_function(&mut sql, &mut args, query.namespace, query.function);
            if let Some(since) = query.since_ms {
                // Hours start on bucket boundaries, so "ends after `since`"
                // is "starts at or after the start of `since`'s hour". A
                // bound beyond what SQLite stores matches nothing.
                args.push(saturating_sql_int(hour_start(since)).into());
                sql.push_str(&format!(" AND hour_start_ms >= ?{}", args.len()));
            }
            sql.push_str(" ORDER BY hour_start_ms, namespace, function");
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(args), |row| {
                    Ok(UsageRow {
                        namespace: row.get(0)?,
                        function: row.get(1)?,
                        hour_start_ms: get_u64(row, 2)?,
                        invocations: get_u64(row, 3)?,
                        errors: get_u64(row, 4)?,
                        billed_ms: get_u64(row, 5)?,
                        mib_ms: get_u64(row, 6)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()
                .context("query usage")?;
            Ok(rows)
        })
        .await
    }

    async fn prune_usage(&self, older_than_ms: u64) -> StoreResult<u64> {
        // A bound beyond what SQLite stores means "everything".
        let older_than = saturating_sql_int(older_than_ms);
        self.write(move |conn| {
            let deleted = conn
                .prepare_cached("DELETE FROM usage_hourly WHERE hour_start_ms < ?1")
                .and_then(|mut s| s.execute(params![older_than]))
                .context("delete old usage rows")?;
            Ok(deleted as u64)
        })
        .await
    }

    async fn invocations(&self, query: InvocationQuery) -> StoreResult<Vec<InvocationRecord>> {
        let limit = match query.limit {
            0 => DEFAULT_QUERY_LIMIT,
            n => n.min(MAX_QUERY_LIMIT),
        };
        self.read(move |conn| {
            let mut sql = String::from("SELECT body FROM invocations WHERE 1 = 1");
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            filter_function(&mut sql, &mut args, query.namespace, query.function);
            if let Some(since) = query.since_ms {
                // A bound beyond what SQLite stores matches nothing.
                args.push(i64::try_from(since).unwrap_or(i64::MAX).into());
                sql.push_str(&format!(" AND started_at_ms >= ?{}", args.len()));
            }
            args.push(i64::from(limit).into());
            sql.push_str(&format!(
                " ORDER BY started_at_ms DESC, id DESC LIMIT ?{}",
                args.len()
            ));
            query_bodies(conn, &sql, rusqlite::params_from_iter(args), decode_record)
                .context("query invocation records")
        })
        .await
    }

    async fn invocation(&self, id: &str) -> StoreResult<Option<InvocationRecord>> {
        let id = id.to_owned();
        self.read(move |conn| {
            let body: Option<String> = conn
                .prepare_cached("SELECT body FROM invocations WHERE id = ?1")
                .and_then(|mut s| s.query_row(params![id], |row| row.get(0)).optional())
                .with_context(|| format!("read invocation record {id}"))?;
            body.as_deref().map(decode_record).transpose()
        })
        .await
    }

    async fn prune_invocations(&self, older_than_ms: u64, keep_max: u64) -> StoreResult<u64> {
        // Bounds beyond what SQLite stores mean "everything" / "no limit".
        let older_than = i64::try_from(older_than_ms).unwrap_or(i64::MAX);
        let keep = i64::try_from(keep_max).unwrap_or(i64::MAX);
        self.write(move |conn| {
            let by_age = conn
                .prepare_cached("DELETE FROM invocations WHERE started_at_ms < ?1")
                .and_then(|mut s| s.execute(params![older_than]))
                .context("delete old invocation records")?;
            let by_count = conn
                .prepare_cached(
                    "DELETE FROM invocations WHERE id IN (
                         SELECT id FROM invocations
                         ORDER BY started_at_ms DESC, id DESC
                         LIMIT -1 OFFSET ?1)",
                )
                .and_then(|mut s| s.execute(params![keep]))
                .context("delete invocation records beyond the newest")?;
            Ok((by_age + by_count) as u64)
        })
        .await
    }
}

/// Appends `AND namespace = ? AND function = ?` for the filters given.
fn filter_function(
    sql: &mut String,
    args: &mut Vec<rusqlite::types::Value>,
    namespace: Option<String>,
    function: Option<String>,
) {
    for (column, value) in [("namespace", namespace), ("function", function)] {
        if let Some(v) = value {
            args.push(v.into());
            sql.push_str(&format!(" AND {column} = ?{}", args.len()));
        }
    }
}
