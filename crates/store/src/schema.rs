//! Connection settings and schema migrations.
//!
//! The schema version lives in `PRAGMA user_version`: 0 is an empty file and
//! version `n` means the first `n` entries of [`MIGRATIONS`] have run. Each
//! migration runs in its own transaction together with the version bump, so a
//! crash mid-migration leaves the previous version intact. A file written by
//! a newer Nimbus (a version above what this build knows) is refused rather
//! than guessed at.

use anyhow::{Context, bail};
use rusqlite::{Connection, TransactionBehavior};
use std::time::Duration;

/// How long a connection waits for a lock held by another connection (another
/// process on the same file, or a checkpoint) before giving up.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Version 1: functions, their versions and invocation records.
///
/// - `functions` holds one row per live function: `latest_version` is the
///   version callers get, `next_version` the number the next deploy takes.
///   Deleting the row (and its versions) restarts numbering at 1.
/// - `versions` holds each immutable version as JSON in `body`; the key
///   columns are copies used for lookups.
/// - `invocations` holds each record as JSON in `body`, with the columns
///   queries filter and sort on.
const SCHEMA_V1: &str = "
CREATE TABLE functions (
    namespace      TEXT    NOT NULL,
    name           TEXT    NOT NULL,
    next_version   INTEGER NOT NULL,
    latest_version INTEGER NOT NULL,
    PRIMARY KEY (namespace, name)
) WITHOUT ROWID;

CREATE TABLE versions (
    namespace     TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    version       INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    body          TEXT    NOT NULL,
    PRIMARY KEY (namespace, name, version),
    FOREIGN KEY (namespace, name) REFERENCES functions (namespace, name) ON DELETE CASCADE
);

CREATE TABLE invocations (
    id            TEXT    NOT NULL PRIMARY KEY,
    namespace     TEXT    NOT NULL,
    function      TEXT    NOT NULL,
    started_at_ms INTEGER NOT NULL,
    body          TEXT    NOT NULL
);

CREATE INDEX invocations_by_start ON invocations (started_at_ms, id);
CREATE INDEX invocations_by_function ON invocations (namespace, function, started_at_ms, id);
";

/// Version 2: hourly usage per function.
///
/// `usage_hourly` holds one row per function and hour (`hour_start_ms` is a
/// multiple of the bucket length) with running totals, added to in the same
/// transaction as the invocation records they count. Rows outlive the
/// records and are pruned on their own schedule; the index serves pruning
/// and reads across functions. Records stored before this version are not
/// counted: usage starts with the first batch written after the upgrade.
const SCHEMA_V2: &str = "
CREATE TABLE usage_hourly (
    namespace     TEXT    NOT NULL,
    function      TEXT    NOT NULL,
    hour_start_ms INTEGER NOT NULL,
    invocations   INTEGER NOT NULL,
    errors        INTEGER NOT NULL,
    billed_ms     INTEGER NOT NULL,
    mib_ms        INTEGER NOT NULL,
    PRIMARY KEY (namespace, function, hour_start_ms)
) WITHOUT ROWID;

CREATE INDEX usage_hourly_by_hour ON usage_hourly (hour_start_ms);
";

/// Version 3: API keys, one row each with the key as JSON in `body`
/// (the secret's SHA-256, never the secret).
const SCHEMA_V3: &str = "
CREATE TABLE api_keys (
    id   TEXT PRIMARY KEY,
    body TEXT NOT NULL
) WITHOUT ROWID;
";

/// Version 4: the audit log, one row per admin action with the entry as
/// JSON in `body`; `seq` orders it, the indexes serve pruning by time and
/// reads of one namespace.
const SCHEMA_V4: &str = "
CREATE TABLE audit_log (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms     INTEGER NOT NULL,
    namespace TEXT,
    body      TEXT NOT NULL
);

CREATE INDEX audit_log_by_time ON audit_log (at_ms);
CREATE INDEX audit_log_by_namespace ON audit_log (namespace, seq);
";

/// Version 5: secrets, sealed (ChaCha20-Poly1305) by the server before
/// they reach the store: `key_id` names the key that sealed the row,
/// `nonce` and `ciphertext` are what opening it needs with that key. No
/// value is ever stored in clear.
const SCHEMA_V5: &str = "
CREATE TABLE secrets (
    namespace     TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    key_id        TEXT    NOT NULL,
    nonce         BLOB    NOT NULL,
    ciphertext    BLOB    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (namespace, name)
) WITHOUT ROWID;
";

/// Version 6: aliases, one row per alias with the alias as JSON in `body`;
/// they go with their function.
const SCHEMA_V6: &str = "
CREATE TABLE aliases (
    namespace TEXT NOT NULL,
    function  TEXT NOT NULL,
    name      TEXT NOT NULL,
    body      TEXT NOT NULL,
    PRIMARY KEY (namespace, function, name),
    FOREIGN KEY (namespace, function) REFERENCES functions (namespace, name) ON DELETE CASCADE
) WITHOUT ROWID;
";

/// Version 7: key-value stores.
///
/// - `kv` holds one row per entry; `version` comes from the `kv` row of
///   `sequences`, so versions increase across every store and are never
///   reused; an entry past `expires_at_ms` is absent until swept.
/// - `kv_stores` holds each store's key count and bytes (keys and values),
///   changed by the command that changes its entries: a namespace's
///   storage is the sum of its rows.
const SCHEMA_V7: &str = "
CREATE TABLE kv (
    namespace     TEXT    NOT NULL,
    store         TEXT    NOT NULL,
    key           TEXT    NOT NULL,
    value         BLOB    NOT NULL,
    version       INTEGER NOT NULL,
    expires_at_ms INTEGER,
    PRIMARY KEY (namespace, store, key)
) WITHOUT ROWID;

CREATE INDEX kv_by_expiry ON kv (expires_at_ms) WHERE expires_at_ms IS NOT NULL;

CREATE TABLE kv_stores (
    namespace TEXT    NOT NULL,
    store     TEXT    NOT NULL,
    keys      INTEGER NOT NULL,
    bytes     INTEGER NOT NULL,
    PRIMARY KEY (namespace, store)
) WITHOUT ROWID;

CREATE TABLE sequences (
    name  TEXT    NOT NULL PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Version 8: app config, one row per kept version of a namespace's
/// settings (`entries`, a JSON object), what its change did (`changed`:
/// the keys set and deleted), and its size in `bytes`, which counts
/// towards the namespace's storage.
const SCHEMA_V8: &str = "
CREATE TABLE config_versions (
    namespace     TEXT    NOT NULL,
    version       INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    author        TEXT    NOT NULL,
    description   TEXT    NOT NULL,
    rollback_of   INTEGER,
    changed       TEXT    NOT NULL,
    keys          INTEGER NOT NULL,
    bytes         INTEGER NOT NULL,
    entries       TEXT    NOT NULL,
    PRIMARY KEY (namespace, version)
);
";

/// Version 9: document collections and their change feed.
///
/// - `docs` holds one row per document, its JSON object as text in
///   `data`; `version` is the `seq` of the change that made it.
/// - `doc_collections` holds each collection's document count and bytes
///   (ids and JSON), changed by the command that changes its documents.
/// - `doc_changes` is the change feed (the outbox): one row per document
///   changed, written by the same command; `seq` never goes back (it is
///   AUTOINCREMENT), so a reader resumes after the last one it saw.
const SCHEMA_V9: &str = "
CREATE TABLE docs (
    namespace     TEXT    NOT NULL,
    collection    TEXT    NOT NULL,
    id            TEXT    NOT NULL,
    data          TEXT    NOT NULL,
    version       INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (namespace, collection, id)
);

CREATE TABLE doc_collections (
    namespace  TEXT    NOT NULL,
    collection TEXT    NOT NULL,
    docs       INTEGER NOT NULL,
    bytes      INTEGER NOT NULL,
    PRIMARY KEY (namespace, collection)
) WITHOUT ROWID;

CREATE TABLE doc_changes (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace  TEXT    NOT NULL,
    collection TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    op         TEXT    NOT NULL,
    at_ms      INTEGER NOT NULL,
    data       TEXT
);

CREATE INDEX doc_changes_by_collection ON doc_changes (namespace, collection, seq);
CREATE INDEX doc_changes_by_time ON doc_changes (at_ms);
";

/// Every migration in order; entry `i` takes the schema from version `i` to
/// `i + 1`. Append only: released entries never change.
const MIGRATIONS: &[&str] = &[
    SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5, SCHEMA_V6, SCHEMA_V7, SCHEMA_V8,
    SCHEMA_V9,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Settings every connection gets.
fn configure_common(conn: &Connection) -> anyhow::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)
        .context("set busy_timeout")?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .context("enable foreign_keys")?;
    Ok(())
}

/// Settings of the write connection: write-ahead logging, and a full sync
/// of the log on every commit so an acknowledged write survives power loss.
pub(crate) fn configure_writer(conn: &Connection) -> anyhow::Result<()> {
    configure_common(conn)?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .context("switch to journal_mode=WAL")?;
    if !mode.eq_ignore_ascii_case("wal") {
        bail!("the database refused journal_mode=WAL (it is in {mode} mode)");
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .context("set synchronous=FULL")?;
    Ok(())
}

/// Settings of a read-only connection.
pub(crate) fn configure_reader(conn: &Connection) -> anyhow::Result<()> {
    configure_common(conn)?;
    conn.pragma_update(None, "query_only", "ON")
        .context("set query_only")?;
    Ok(())
}

/// Brings the schema up to [`SCHEMA_VERSION`].
pub(crate) fn migrate(conn: &mut Connection) -> anyhow::Result<()> {
    let current: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .context("read the schema version")?;
    let current = match u32::try_from(current) {
        Ok(v) if v <= SCHEMA_VERSION => v,
        _ => bail!(
            "the database has schema version {current}, newer than this Nimbus supports \
             ({SCHEMA_VERSION}); upgrade Nimbus to open it"
        ),
    };
    for (from, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let to = from + 1;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .with_context(|| format!("begin the migration to schema version {to}"))?;
        tx.execute_batch(sql)
            .with_context(|| format!("migrate the schema to version {to}"))?;
        tx.pragma_update(None, "user_version", to as i64)
            .with_context(|| format!("record schema version {to}"))?;
        tx.commit()
            .with_context(|| format!("commit the migration to schema version {to}"))?;
        tracing::info!(version = to, "migrated the store schema");
    }
    Ok(())
}
