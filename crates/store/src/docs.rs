//! Document collections and their change feed in SQLite.
//!
//! `docs` holds one row per document, its JSON as text; `doc_collections`
//! each collection's document count and bytes (ids and JSON), changed by
//! the same command as the documents, so a namespace's storage is known
//! without a scan; `doc_changes` is the change feed, one row per document
//! changed, written by the same command (the outbox), its `seq` the
//! document's new version. A write is one writer command applied write by
//! write inside its savepoint; a refusal found part-way rolls the savepoint
//! back ([`SqliteStore::write_all_or_nothing`]), so nothing of it remains.
//!
//! Filters compile to SQL over `json_type` and `json_extract` with the
//! typed meaning of [`Filter::matches`]; field paths are inlined (their
//! names are `A-Z a-z 0-9 _` only) so an expression index on the same path
//! can serve them; values are bound.

use crate::SqliteStore;
use anyhow::Context;
use async_trait::async_trait;
use nimbus_api::docs::{
    ChangeOp, CollectionInfo, Dir, DocWritten, FieldPath, Filter, Op, Scalar, merge_patch,
};
use nimbus_core::store::StoreError;
use nimbus_core::store::docs::{
    ChangeQuery, ChangeRow, DocBounds, DocCondition, DocError, DocOp, DocQuery, DocRow, DocStore,
    DocWrite,
};
use rusqlite::types::Value as Sql;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use serde_json::{Map, Value};

/// What a write needs to know of the document it changes.
struct Current {
    data: String,
    version: u64,
    created_at_ms: u64,
}

fn current(
    conn: &Connection,
    ns: &str,
    collection: &str,
    id: &str,
) -> Result<Option<Current>, StoreError> {
    conn.prepare_cached(
        "SELECT data, version, created_at_ms FROM docs
         WHERE namespace = ?1 AND collection = ?2 AND id = ?3",
    )
    .and_then(|mut st| {
        st.query_row(params![ns, collection, id], |r| {
            Ok(Current {
                data: r.get(0)?,
                version: r.get::<_, i64>(1)? as u64,
                created_at_ms: r.get::<_, i64>(2)? as u64,
            })
        })
        .optional()
    })
    .with_context(|| format!("read document {ns}/{collection}/{id}"))
    .map_err(StoreError::Backend)
}

fn holds(condition: DocCondition, cur: Option<&Current>) -> bool {
    match condition {
        DocCondition::Always => true,
        DocCondition::Absent => cur.is_none(),
        DocCondition::Exists => cur.is_some(),
        DocCondition::Version(v) => cur.is_some_and(|c| c.version == v),
    }
}

fn parse_object(text: &str, what: &str) -> anyhow::Result<Map<String, Value>> {
    match serde_json::from_str(text).with_context(|| format!("read the JSON of {what}"))? {
        Value::Object(m) => Ok(m),
        _ => anyhow::bail!("the JSON of {what} is not an object"),
    }
}

/// Appends a change-feed row; returns its seq.
fn append_change(
    conn: &Connection,
    ns: &str,
    collection: &str,
    id: &str,
    op: ChangeOp,
    at_ms: u64,
    data: Option<&str>,
) -> Result<u64, StoreError> {
    conn.prepare_cached(
        "INSERT INTO doc_changes (namespace, collection, id, op, at_ms, data)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING seq",
    )
    .and_then(|mut st| {
        st.query_row(
            params![ns, collection, id, op.as_str(), at_ms as i64, data],
            |r| r.get::<_, i64>(0),
        )
    })
    .map(|s| s as u64)
    .with_context(|| format!("append the change of {ns}/{collection}/{id}"))
    .map_err(StoreError::Backend)
}

/// Adds to a collection's document count and bytes (one whose count
/// reaches 0 is removed).
fn account(
    conn: &Connection,
    ns: &str,
    collection: &str,
    docs: i64,
    bytes: i64,
) -> Result<(), StoreError> {
    if docs == 0 && bytes == 0 {
        return Ok(());
    }
    conn.prepare_cached(
        "INSERT INTO doc_collections (namespace, collection, docs, bytes) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (namespace, collection) DO UPDATE SET docs = docs + ?3, bytes = bytes + ?4",
    )
    .and_then(|mut st| st.execute(params![ns, collection, docs, bytes]))
    .and_then(|_| {
        conn.prepare_cached(
            "DELETE FROM doc_collections WHERE namespace = ?1 AND collection = ?2 AND docs <= 0",
        )
        .and_then(|mut st| st.execute(params![ns, collection]))
    })
    .with_context(|| format!("account for collection {ns}/{collection}"))
    .map_err(StoreError::Backend)?;
    Ok(())
}

fn doc_bytes(id: &str, json_len: usize) -> i64 {
    (id.len() + json_len) as i64
}

/// Applies one write; returns what it did and the namespace's growth.
fn apply(
    conn: &Connection,
    ns: &str,
    w: &DocWrite,
    now_ms: u64,
    bounds: DocBounds,
) -> Result<Result<(DocWritten, i64), DocError>, StoreError> {
    let (collection, id) = (w.collection.as_str(), w.id.as_str());
    let cur = current(conn, ns, collection, id)?;
    if !holds(w.condition, cur.as_ref()) {
        return Ok(Err(DocError::ConditionFailed {
            collection: collection.to_owned(),
            id: id.to_owned(),
        }));
    }
    let old_bytes = cur.as_ref().map_or(0, |c| doc_bytes(id, c.data.len()));
    let not_found = || DocError::NotFound {
        collection: collection.to_owned(),
        id: id.to_owned(),
    };
    let next = match (&w.op, &cur) {
        (DocOp::Delete, None) => return Ok(Err(not_found())),
        (DocOp::Delete, Some(_)) => None,
        (DocOp::Put(data), _) => Some(Value::Object(data.clone())),
        (DocOp::Patch(_), None) => return Ok(Err(not_found())),
        (DocOp::Patch(patch), Some(c)) => {
            let mut doc = Value::Object(
                parse_object(&c.data, &format!("{ns}/{collection}/{id}"))
                    .map_err(StoreError::Backend)?,
            );
            merge_patch(&mut doc, patch);
            Some(doc)
        }
    };
    let Some(next) = next else {
        let seq = append_change(conn, ns, collection, id, ChangeOp::Delete, now_ms, None)?;
        conn.prepare_cached(
            "DELETE FROM docs WHERE namespace = ?1 AND collection = ?2 AND id = ?3",
        )
        .and_then(|mut st| st.execute(params![ns, collection, id]))
        .with_context(|| format!("delete document {ns}/{collection}/{id}"))?;
        account(conn, ns, collection, -1, -old_bytes)?;
        return Ok(Ok((
            DocWritten {
                collection: collection.to_owned(),
                id: id.to_owned(),
                op: ChangeOp::Delete,
                version: seq,
            },
            -old_bytes,
        )));
    };
    let text = serde_json::to_string(&next).context("encode a document")?;
    if text.len() > bounds.max_doc_bytes {
        return Ok(Err(DocError::TooLarge {
            collection: collection.to_owned(),
            id: id.to_owned(),
            bytes: text.len(),
        }));
    }
    let op = if cur.is_some() {
        ChangeOp::Update
    } else {
        ChangeOp::Create
    };
    let seq = append_change(conn, ns, collection, id, op, now_ms, Some(&text))?;
    let created = cur.as_ref().map_or(now_ms, |c| c.created_at_ms);
    conn.prepare_cached(
        "INSERT INTO docs (namespace, collection, id, data, version, created_at_ms, updated_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (namespace, collection, id) DO UPDATE SET
           data = excluded.data, version = excluded.version, updated_at_ms = excluded.updated_at_ms",
    )
    .and_then(|mut st| {
        st.execute(params![
            ns,
            collection,
            id,
            text,
            seq as i64,
            created as i64,
            now_ms as i64
        ])
    })
    .with_context(|| format!("write document {ns}/{collection}/{id}"))?;
    let growth = doc_bytes(id, text.len()) - old_bytes;
    account(conn, ns, collection, i64::from(cur.is_none()), growth)?;
    Ok(Ok((
        DocWritten {
            collection: collection.to_owned(),
            id: id.to_owned(),
            op,
            version: seq,
        },
        growth,
    )))
}

/// SQL text and its bound values.
#[derive(Default)]
struct Fragment {
    text: String,
    params: Vec<Sql>,
}

fn scalar_param(s: &Scalar) -> Sql {
    match s {
        Scalar::Null => Sql::Null,
        Scalar::Bool(b) => Sql::Integer(i64::from(*b)),
        Scalar::Int(i) => Sql::Integer(*i),
        Scalar::Float(f) => Sql::Real(*f),
        Scalar::Text(t) => Sql::Text(t.clone()),
    }
}

/// A JSON value as `json_extract` gives it back.
fn json_param(v: &Value) -> Sql {
    match v {
        Value::Null => Sql::Null,
        Value::Bool(b) => Sql::Integer(i64::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Sql::Integer(i),
            None => n.as_f64().map_or(Sql::Null, Sql::Real),
        },
        Value::String(s) => Sql::Text(s.clone()),
        other => Sql::Text(other.to_string()),
    }
}

/// `json_type` and `json_extract` of a path, as SQL text.
fn field_exprs(path: &FieldPath) -> (String, String) {
    // Names are A-Z a-z 0-9 _ only (FieldPath::parse): safe to inline.
    let p = path.json_path();
    (
        format!("json_type(docs.data, '{p}')"),
        format!("json_extract(docs.data, '{p}')"),
    )
}

/// `value == s`, typed, where `ty` is the value's JSON type.
fn typed_eq(ty: &str, value: &str, s: &Scalar, out: &mut Fragment) {
    match s {
        Scalar::Null => out.text.push_str(&format!("({ty} = 'null')")),
        Scalar::Bool(true) => out.text.push_str(&format!("({ty} = 'true')")),
        Scalar::Bool(false) => out.text.push_str(&format!("({ty} = 'false')")),
        Scalar::Int(_) | Scalar::Float(_) => {
            out.text
                .push_str(&format!("({ty} IN ('integer', 'real') AND {value} = ?)"));
            out.params.push(scalar_param(s));
        }
        Scalar::Text(_) => {
            out.text
                .push_str(&format!("({ty} = 'text' AND {value} = ?)"));
            out.params.push(scalar_param(s));
        }
    }
}

fn any_eq(ty: &str, value: &str, values: &[Scalar], out: &mut Fragment) {
    out.text.push('(');
    for (i, s) in values.iter().enumerate() {
        if i > 0 {
            out.text.push_str(" OR ");
        }
        typed_eq(ty, value, s, out);
    }
    out.text.push(')');
}

fn compile(filter: &Filter, out: &mut Fragment) {
    match filter {
        Filter::And(parts) | Filter::Or(parts) => {
            let joint = if matches!(filter, Filter::And(_)) {
                " AND "
            } else {
                " OR "
            };
            out.text.push('(');
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    out.text.push_str(joint);
                }
                compile(p, out);
            }
            out.text.push(')');
        }
        Filter::Cond { field, op, values } => {
            let (ty, value) = field_exprs(field);
            let s = &values[0];
            match op {
                Op::Exists => {
                    let null = if *s == Scalar::Bool(true) {
                        "IS NOT NULL"
                    } else {
                        "IS NULL"
                    };
                    out.text.push_str(&format!("({ty} {null})"));
                }
                Op::Eq | Op::In => any_eq(&ty, &value, values, out),
                Op::Ne | Op::NotIn => {
                    out.text.push_str(&format!("({ty} IS NOT NULL AND NOT "));
                    any_eq(&ty, &value, values, out);
                    out.text.push(')');
                }
                Op::Contains => {
                    out.text.push_str(&format!(
                        "({ty} = 'array' AND EXISTS (SELECT 1 FROM json_each(docs.data, '{}') AS e WHERE ",
                        field.json_path()
                    ));
                    typed_eq("e.type", "e.value", s, out);
                    out.text.push_str("))");
                }
                Op::Lt | Op::Le | Op::Gt | Op::Ge => {
                    let class = match s {
                        Scalar::Text(_) => "= 'text'",
                        _ => "IN ('integer', 'real')",
                    };
                    out.text
                        .push_str(&format!("({ty} {class} AND {value} {} ?)", op.as_str()));
                    out.params.push(scalar_param(s));
                }
            }
        }
    }
}

/// `WHERE …` of a collection and a filter.
fn where_clause(ns: &str, collection: &str, filter: Option<&Filter>) -> Fragment {
    let mut out = Fragment {
        text: "docs.namespace = ? AND docs.collection = ?".to_owned(),
        params: vec![Sql::Text(ns.to_owned()), Sql::Text(collection.to_owned())],
    };
    if let Some(f) = filter {
        out.text.push_str(" AND ");
        compile(f, &mut out);
    }
    out
}

/// Rows after the cursor's row in the query's order: for each sort field
/// in turn, equal on those before it and past it on this one; then the id.
fn after_clause(order: &[(FieldPath, Dir)], values: &[Value], id: &str, out: &mut Fragment) {
    out.text.push_str(" AND (");
    for i in 0..=order.len() {
        if i > 0 {
            out.text.push_str(" OR ");
        }
        out.text.push('(');
        for (j, (path, _)) in order.iter().take(i).enumerate() {
            let (_, value) = field_exprs(path);
            out.text.push_str(&format!("{value} IS ? AND "));
            out.params.push(json_param(&values[j]));
        }
        match order.get(i) {
            None => {
                out.text.push_str("docs.id > ?");
                out.params.push(Sql::Text(id.to_owned()));
            }
            Some((path, dir)) => {
                let (_, value) = field_exprs(path);
                match (dir, &values[i]) {
                    (Dir::Asc, Value::Null) => out.text.push_str(&format!("{value} IS NOT NULL")),
                    (Dir::Asc, v) => {
                        out.text.push_str(&format!("{value} > ?"));
                        out.params.push(json_param(v));
                    }
                    (Dir::Desc, Value::Null) => out.text.push('0'),
                    (Dir::Desc, v) => {
                        out.text
                            .push_str(&format!("({value} < ? OR {value} IS NULL)"));
                        out.params.push(json_param(v));
                    }
                }
            }
        }
        out.text.push(')');
    }
    out.text.push(')');
}

/// A query as SQL, ready to run on a read connection.
struct Prepared {
    text: String,
    params: Vec<Sql>,
    /// Sort fields: their values come back after the five row columns.
    keys: usize,
}

impl Prepared {
    fn of(ns: &str, collection: &str, query: &DocQuery) -> Prepared {
        let mut sql = where_clause(ns, collection, query.filter.as_ref());
        if let Some((values, id)) = &query.after {
            after_clause(&query.order, values, id, &mut sql);
        }
        let mut order = String::new();
        let mut keys = String::new();
        for (path, dir) in &query.order {
            let (_, value) = field_exprs(path);
            let dir = match dir {
                Dir::Asc => "ASC",
                Dir::Desc => "DESC",
            };
            order.push_str(&format!("{value} {dir}, "));
            keys.push_str(&format!(", {value}"));
        }
        Prepared {
            text: format!(
                "SELECT docs.id, docs.data, docs.version, docs.created_at_ms, docs.updated_at_ms{keys}
                 FROM docs WHERE {} ORDER BY {order}docs.id ASC LIMIT {}",
                sql.text, query.limit
            ),
            params: sql.params,
            keys: query.order.len(),
        }
    }

    fn run(&self, conn: &Connection) -> anyhow::Result<Vec<DocRow>> {
        let mut st = conn
            .prepare_cached(&self.text)
            .context("prepare a document query")?;
        let mut rows = st
            .query(params_from_iter(self.params.iter()))
            .context("query documents")?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().context("read a document")? {
            let mut doc = row_to_doc(r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)?;
            for i in 0..self.keys {
                doc.sort_keys.push(sql_to_json(r.get_ref(5 + i)?));
            }
            out.push(doc);
        }
        Ok(out)
    }
}

/// A value `json_extract` gave, as JSON (it binds back to the same value).
fn sql_to_json(v: rusqlite::types::ValueRef<'_>) -> Value {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null | ValueRef::Blob(_) => Value::Null,
        ValueRef::Integer(i) => Value::from(i),
        ValueRef::Real(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
    }
}

/// The feed's last seq ever given and the seq before its oldest row.
fn feed_bounds(conn: &Connection) -> anyhow::Result<(u64, u64)> {
    // sqlite_sequence keeps the highest seq ever given, even once its row
    // is pruned.
    let last: i64 = conn
        .query_row(
            "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'doc_changes'), 0)",
            [],
            |r| r.get(0),
        )
        .context("read the feed's last seq")?;
    let oldest: Option<i64> = conn
        .query_row("SELECT MIN(seq) FROM doc_changes", [], |r| r.get(0))
        .context("read the feed's oldest seq")?;
    let horizon = oldest.map_or(last, |o| o - 1);
    Ok((last.max(0) as u64, horizon.max(0) as u64))
}

fn row_to_doc(
    id: String,
    data: String,
    version: i64,
    created: i64,
    updated: i64,
) -> anyhow::Result<DocRow> {
    Ok(DocRow {
        data: parse_object(&data, &format!("document {id}"))?,
        id,
        version: version as u64,
        created_at_ms: created as u64,
        updated_at_ms: updated as u64,
        sort_keys: Vec::new(),
    })
}

type ChangeColumns = (i64, String, String, String, String, i64, Option<String>);

fn change_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ChangeColumns> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

#[async_trait]
impl DocStore for SqliteStore {
    async fn docs_get(
        &self,
        namespace: &str,
        collection: &str,
        ids: Vec<String>,
    ) -> Result<Vec<Option<DocRow>>, StoreError> {
        let (ns, collection) = (namespace.to_owned(), collection.to_owned());
        let one = ids.len() == 1;
        let lookup = move |conn: &Connection| {
            let mut st = conn.prepare_cached(
                "SELECT data, version, created_at_ms, updated_at_ms FROM docs
                 WHERE namespace = ?1 AND collection = ?2 AND id = ?3",
            )?;
            let mut out = Vec::with_capacity(ids.len());
            for id in ids.iter() {
                let found = st
                    .query_row(params![ns, collection, id], |r| {
                        Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                    })
                    .optional()
                    .with_context(|| format!("read document {ns}/{collection}/{id}"))?;
                out.push(match found {
                    Some((data, v, c, u)) => Some(row_to_doc(id.clone(), data, v, c, u)?),
                    None => None,
                });
            }
            Ok(out)
        };
        if one {
            self.read_row(lookup).await
        } else {
            self.read(lookup).await
        }
    }

    async fn docs_write(
        &self,
        namespace: &str,
        writes: Vec<DocWrite>,
        now_ms: u64,
        bounds: DocBounds,
    ) -> Result<Vec<DocWritten>, DocError> {
        let ns = namespace.to_owned();
        self.write_all_or_nothing(move |conn| {
            let mut done = Vec::with_capacity(writes.len());
            let mut growth = 0i64;
            for w in &writes {
                match apply(conn, &ns, w, now_ms, bounds)? {
                    Ok((written, grew)) => {
                        done.push(written);
                        growth += grew;
                    }
                    Err(e) => return Ok(Err(e)),
                }
            }
            if let Some(limit) = bounds.quota_bytes
                && growth > 0
            {
                let needed = crate::usage::used_bytes(conn, &ns)?;
                if needed > limit {
                    return Ok(Err(DocError::QuotaExceeded {
                        needed_bytes: needed,
                        limit_bytes: limit,
                    }));
                }
            }
            Ok(Ok(done))
        })
        .await?
    }

    async fn docs_query(
        &self,
        namespace: &str,
        collection: &str,
        query: DocQuery,
    ) -> Result<Vec<DocRow>, StoreError> {
        let q = Prepared::of(namespace, collection, &query);
        self.read(move |conn| q.run(conn)).await
    }

    async fn docs_snapshot(
        &self,
        namespace: &str,
        collection: &str,
        query: DocQuery,
    ) -> Result<(Vec<DocRow>, u64), StoreError> {
        let q = Prepared::of(namespace, collection, &query);
        self.read(move |conn| {
            // One read transaction: the rows and the head are of one moment.
            conn.execute_batch("BEGIN")
                .context("begin a snapshot read")?;
            let read = q
                .run(conn)
                .and_then(|rows| Ok((rows, feed_bounds(conn)?.0)));
            let _ = conn.execute_batch("COMMIT");
            read
        })
        .await
    }

    async fn docs_count(
        &self,
        namespace: &str,
        collection: &str,
        filter: Option<Filter>,
    ) -> Result<u64, StoreError> {
        let sql = where_clause(namespace, collection, filter.as_ref());
        let text = format!("SELECT COUNT(*) FROM docs WHERE {}", sql.text);
        let params = sql.params;
        self.read(move |conn| {
            let n: i64 = conn
                .prepare_cached(&text)?
                .query_row(params_from_iter(params.iter()), |r| r.get(0))
                .context("count documents")?;
            Ok(n.max(0) as u64)
        })
        .await
    }

    async fn docs_collection(
        &self,
        namespace: &str,
        collection: &str,
    ) -> Result<Option<CollectionInfo>, StoreError> {
        let (ns, collection) = (namespace.to_owned(), collection.to_owned());
        self.read_row(move |conn| {
            conn.prepare_cached(
                "SELECT docs, bytes FROM doc_collections WHERE namespace = ?1 AND collection = ?2",
            )?
            .query_row(params![ns, collection], |r| {
                Ok(CollectionInfo {
                    name: collection.clone(),
                    docs: r.get::<_, i64>(0)?.max(0) as u64,
                    bytes: r.get::<_, i64>(1)?.max(0) as u64,
                })
            })
            .optional()
            .context("read a collection")
        })
        .await
    }

    async fn docs_collections(&self, namespace: &str) -> Result<Vec<CollectionInfo>, StoreError> {
        let ns = namespace.to_owned();
        self.read(move |conn| {
            let mut st = conn.prepare_cached(
                "SELECT collection, docs, bytes FROM doc_collections WHERE namespace = ?1
                 ORDER BY collection",
            )?;
            let rows = st
                .query_map(params![ns], |r| {
                    Ok(CollectionInfo {
                        name: r.get(0)?,
                        docs: r.get::<_, i64>(1)?.max(0) as u64,
                        bytes: r.get::<_, i64>(2)?.max(0) as u64,
                    })
                })
                .context("list collections")?;
            let mut out = Vec::new();
            for row in rows {
                out.push(row.context("read a collection")?);
            }
            Ok(out)
        })
        .await
    }

    async fn docs_changes(&self, q: ChangeQuery) -> Result<Vec<ChangeRow>, StoreError> {
        self.read(move |conn| {
            let mut st = conn.prepare_cached(
                "SELECT seq, namespace, collection, id, op, at_ms, data FROM doc_changes
                 WHERE seq > ?1 AND (?2 IS NULL OR namespace = ?2)
                   AND (?3 IS NULL OR collection = ?3)
                 ORDER BY seq LIMIT ?4",
            )?;
            let rows = st
                .query_map(
                    params![q.after as i64, q.namespace, q.collection, q.limit],
                    change_row,
                )
                .context("read the change feed")?;
            let mut out = Vec::new();
            for row in rows {
                let (seq, namespace, collection, id, op, at_ms, data) =
                    row.context("read a change")?;
                let Some(op) = ChangeOp::parse(&op) else {
                    anyhow::bail!("change {seq} has the unknown op {op:?}");
                };
                let data = match data {
                    Some(text) => Some(parse_object(&text, &format!("change {seq}"))?),
                    None => None,
                };
                out.push(ChangeRow {
                    seq: seq as u64,
                    namespace,
                    collection,
                    id,
                    op,
                    at_ms: at_ms as u64,
                    data,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn docs_feed_bounds(&self) -> Result<(u64, u64), StoreError> {
        self.read(feed_bounds).await
    }

    async fn docs_prune_changes(
        &self,
        older_than_ms: u64,
        keep_max: u64,
    ) -> Result<u64, StoreError> {
        self.write(move |conn| {
            let old = conn
                // Only the changes before the first one still young go,
                // even where times are out of seq order: a gap inside what
                // is kept would be missed by readers without their being told.
                .prepare_cached(
                    "DELETE FROM doc_changes WHERE seq < COALESCE(
                       (SELECT MIN(seq) FROM doc_changes WHERE at_ms >= ?1),
                       (SELECT MAX(seq) + 1 FROM doc_changes))",
                )
                .and_then(|mut st| st.execute(params![older_than_ms as i64]))
                .context("prune old changes")?;
            let over = conn
                .prepare_cached(
                    "DELETE FROM doc_changes WHERE seq <=
                       (SELECT seq FROM doc_changes ORDER BY seq DESC LIMIT 1 OFFSET ?1)",
                )
                .and_then(|mut st| st.execute(params![keep_max as i64]))
                .context("prune changes beyond those kept")?;
            Ok((old + over) as u64)
        })
        .await
    }
}
