//! App config versions in SQLite.
//!
//! `config_versions` holds one row per kept version: its settings as a JSON
//! object, what its change did, and its size in `bytes` (counted towards
//! the namespace's storage by [`crate::usage`]). A commit is one writer
//! command: it reads the current version, decides, writes the next one and
//! removes versions beyond those kept, inside the command's savepoint.

use crate::SqliteStore;
use anyhow::Context;
use async_trait::async_trait;
use nimbus_api::config::ConfigVersion;
use nimbus_core::store::StoreError;
use nimbus_core::store::config::{
    Applied, ConfigBounds, ConfigCommit, ConfigEdit, ConfigError, ConfigStore, apply, entries_bytes,
};
use rusqlite::{Connection, OptionalExtension, Row, params};
use std::collections::BTreeMap;

const COLUMNS: &str =
    "version, created_at_ms, author, description, rollback_of, changed, keys, bytes";

fn version_of(r: &Row<'_>) -> rusqlite::Result<(ConfigVersion, String)> {
    Ok((
        ConfigVersion {
            version: r.get::<_, i64>(0)? as u64,
            created_at_ms: r.get::<_, i64>(1)? as u64,
            author: r.get(2)?,
            description: r.get(3)?,
            rollback_of: r.get::<_, Option<i64>>(4)?.map(|v| v as u64),
            set: Vec::new(),
            deleted: Vec::new(),
            keys: r.get::<_, i64>(6)? as u32,
            bytes: r.get::<_, i64>(7)? as u64,
            entries: None,
        },
        r.get(5)?,
    ))
}

fn with_changed((mut v, changed): (ConfigVersion, String)) -> anyhow::Result<ConfigVersion> {
    // `{"set": [...], "deleted": [...]}`
    let c: BTreeMap<String, Vec<String>> = serde_json::from_str(&changed)
        .with_context(|| format!("read what config version {} changed", v.version))?;
    let mut c = c;
    v.set = c.remove("set").unwrap_or_default();
    v.deleted = c.remove("deleted").unwrap_or_default();
    Ok(v)
}

/// One version with its entries; the current one when `version` is None.
fn read_version(
    conn: &Connection,
    namespace: &str,
    version: Option<u64>,
) -> anyhow::Result<Option<ConfigVersion>> {
    let sql = match version {
        Some(_) => format!(
            "SELECT {COLUMNS}, entries FROM config_versions WHERE namespace = ?1 AND version = ?2"
        ),
        None => format!(
            "SELECT {COLUMNS}, entries FROM config_versions WHERE namespace = ?1
             ORDER BY version DESC LIMIT 1"
        ),
    };
    let mut st = conn.prepare_cached(&sql)?;
    let row = |r: &Row<'_>| Ok((version_of(r)?, r.get::<_, String>(8)?));
    let found = match version {
        Some(v) => st.query_row(params![namespace, v as i64], row).optional(),
        None => st.query_row(params![namespace], row).optional(),
    }
    .with_context(|| format!("read the config of namespace {namespace}"))?;
    let Some((head, entries)) = found else {
        return Ok(None);
    };
    let mut v = with_changed(head)?;
    v.entries = Some(serde_json::from_str(&entries).with_context(|| {
        format!(
            "read the settings of config version {} of namespace {namespace}",
            v.version
        )
    })?);
    Ok(Some(v))
}

fn commit(
    conn: &Connection,
    namespace: &str,
    c: &ConfigCommit,
    bounds: ConfigBounds,
) -> Result<Result<(ConfigVersion, bool), ConfigError>, StoreError> {
    let cur = read_version(conn, namespace, None).map_err(StoreError::Backend)?;
    let cur_version = cur.as_ref().map_or(0, |v| v.version);
    if let Some(expected) = c.expected_version
        && expected != cur_version
    {
        return Ok(Err(ConfigError::ConditionFailed {
            current: cur_version,
        }));
    }
    let empty = BTreeMap::new();
    let cur_entries = cur
        .as_ref()
        .and_then(|v| v.entries.as_ref())
        .unwrap_or(&empty);
    let target = match c.edit {
        ConfigEdit::Rollback { to } => {
            match read_version(conn, namespace, Some(to)).map_err(StoreError::Backend)? {
                Some(v) => v.entries,
                None => return Ok(Err(ConfigError::NoSuchVersion(to))),
            }
        }
        ConfigEdit::Change { .. } => None,
    };
    let Some(Applied { next, set, deleted }) = apply(cur_entries, &c.edit, target.as_ref()) else {
        let unchanged = cur.unwrap_or_else(ConfigVersion::none_yet);
        return Ok(Ok((unchanged, false)));
    };
    let bytes = entries_bytes(&next);
    if next.len() > bounds.max_keys || bytes > bounds.max_bytes {
        return Ok(Err(ConfigError::TooLarge {
            keys: next.len(),
            bytes,
        }));
    }
    let version = cur_version + 1;
    // Versions this commit removes: all but the newest `keep - 1` before it.
    let oldest_kept = (version + 1).saturating_sub(u64::from(bounds.keep_versions.max(1)));
    let freed: i64 = conn
        .prepare_cached(
            "SELECT COALESCE(SUM(bytes), 0) FROM config_versions WHERE namespace = ?1 AND version < ?2",
        )
        .and_then(|mut st| st.query_row(params![namespace, oldest_kept as i64], |r| r.get(0)))
        .context("measure the config versions to remove")?;
    if let Some(limit) = bounds.quota_bytes {
        let growth = bytes as i64 - freed;
        let needed = crate::usage::used_bytes(conn, namespace)?.saturating_add_signed(growth);
        if growth > 0 && needed > limit {
            return Ok(Err(ConfigError::QuotaExceeded {
                needed_bytes: needed,
                limit_bytes: limit,
            }));
        }
    }
    let changed = serde_json::json!({ "set": set, "deleted": deleted }).to_string();
    let entries_json = serde_json::to_string(&next).context("encode config settings")?;
    let rollback_of = match c.edit {
        ConfigEdit::Rollback { to } => Some(to),
        ConfigEdit::Change { .. } => None,
    };
    conn.prepare_cached(
        "INSERT INTO config_versions
           (namespace, version, created_at_ms, author, description, rollback_of, changed, keys, bytes, entries)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )
    .and_then(|mut st| {
        st.execute(params![
            namespace,
            version as i64,
            c.created_at_ms as i64,
            c.author,
            c.description,
            rollback_of.map(|v| v as i64),
            changed,
            next.len() as i64,
            bytes as i64,
            entries_json
        ])
    })
    .with_context(|| format!("write config version {version} of namespace {namespace}"))?;
    conn.prepare_cached("DELETE FROM config_versions WHERE namespace = ?1 AND version < ?2")
        .and_then(|mut st| st.execute(params![namespace, oldest_kept as i64]))
        .context("remove old config versions")?;
    Ok(Ok((
        ConfigVersion {
            version,
            created_at_ms: c.created_at_ms,
            author: c.author.clone(),
            description: c.description.clone(),
            set,
            deleted,
            rollback_of,
            keys: next.len() as u32,
            bytes,
            entries: Some(next),
        },
        true,
    )))
}

#[async_trait]
impl ConfigStore for SqliteStore {
    async fn config_version(
        &self,
        namespace: &str,
        version: Option<u64>,
    ) -> Result<Option<ConfigVersion>, StoreError> {
        let namespace = namespace.to_owned();
        self.read_row(move |conn| read_version(conn, &namespace, version))
            .await
    }

    async fn config_history(
        &self,
        namespace: &str,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<ConfigVersion>, StoreError> {
        let namespace = namespace.to_owned();
        self.read(move |conn| {
            let mut st = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM config_versions
                 WHERE namespace = ?1 AND (?2 IS NULL OR version < ?2)
                 ORDER BY version DESC LIMIT ?3"
            ))?;
            let rows = st
                .query_map(
                    params![namespace, before.map(|b| b as i64), limit],
                    version_of,
                )
                .with_context(|| format!("read the config history of namespace {namespace}"))?;
            let mut out = Vec::new();
            for row in rows {
                out.push(with_changed(row.context("read a config version")?)?);
            }
            Ok(out)
        })
        .await
    }

    async fn config_commit(
        &self,
        namespace: &str,
        c: ConfigCommit,
        bounds: ConfigBounds,
    ) -> Result<(ConfigVersion, bool), ConfigError> {
        let namespace = namespace.to_owned();
        self.write(move |conn| commit(conn, &namespace, &c, bounds))
            .await?
    }
}
