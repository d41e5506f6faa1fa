use crate::{db_path, fresh};
use nimbus_core::store::conformance::{draft, record};
use nimbus_core::store::{
    FunctionStore, InvocationQuery, InvocationStore, StoreError, USAGE_BUCKET_MS, UsageQuery,
};
use nimbus_store::{SqliteStore, WriterStats, schema::SCHEMA_VERSION};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

fn all() -> InvocationQuery {
    InvocationQuery {
        limit: 1000,
        ..Default::default()
    }
}

/// Takes the database's write lock from another connection, so the store's
/// writer waits and commands pile up in its queue.
fn hold_write_lock(dir: &tempfile::TempDir) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(db_path(dir)).expect("open blocker");
    conn.execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    conn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_reopen() {
    let (dir, store) = fresh();
    store
        .create_versions(vec![draft("default", "a", "d1")])
        .await
        .expect("a1");
    store
        .create_versions(vec![draft("default", "a", "d2"), draft("ns", "b", "d3")])
        .await
        .expect("a2 b1");
    store
        .insert_invocations(vec![
            record("i1", "default", "a", 1000),
            record("i2", "ns", "b", 2000),
        ])
        .await
        .expect("insert");
    drop(store);

    let store = SqliteStore::open(&db_path(&dir)).expect("reopen");
    assert_eq!(store.stats(), WriterStats::default());
    let latest = store
        .latest("default", "a")
        .await
        .expect("latest")
        .expect("exists");
    assert_eq!((latest.version, latest.code_digest.as_str()), (2, "d2"));
    assert_eq!(
        store
            .versions("default", "a")
            .await
            .expect("versions")
            .len(),
        2
    );
    assert_eq!(store.list_latest(None).await.expect("list").len(), 2);
    let ids: Vec<_> = store
        .invocations(all())
        .await
        .expect("query")
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, vec!["i2", "i1"]);
    // Numbering carries on from what is on disk.
    let next = store
        .create_versions(vec![draft("default", "a", "d4")])
        .await
        .expect("a3");
    assert_eq!(next[0].version, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_is_versioned_and_in_wal_mode() {
    let (dir, store) = fresh();
    store
        .insert_invocations(vec![record("i1", "default", "a", 1)])
        .await
        .expect("insert");
    drop(store);
    // Closing checkpoints the log into the database file and removes it.
    assert!(
        !dir.path().join("nimbus.db-wal").exists(),
        "the log is left behind"
    );
    let conn = rusqlite::Connection::open(db_path(&dir)).expect("open");
    let version: u32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("user_version");
    assert_eq!(version, SCHEMA_VERSION);
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("journal_mode");
    assert_eq!(mode, "wal");

    // A file from a newer Nimbus is refused, not modified.
    conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .expect("bump");
    drop(conn);
    let err = SqliteStore::open(&db_path(&dir)).expect_err("newer schema");
    assert!(
        format!("{err:#}").contains("newer than this Nimbus supports"),
        "{err:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_creates_missing_directories() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("a/b/nimbus.db");
    let store = SqliteStore::open(&path).expect("open");
    assert_eq!(store.path(), path);
    assert!(path.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_transactions() {
    let (_dir, store) = fresh();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .insert_invocations(vec![record(&format!("r{i:03}"), "default", "a", 1000 + i)])
                .await
        }));
    }
    for t in tasks {
        t.await.expect("join").expect("insert");
    }
    assert_eq!(store.invocations(all()).await.expect("query").len(), 200);
    let stats = store.stats();
    assert_eq!(stats.commands, 200);
    assert!(
        stats.transactions < stats.commands,
        "group commit batched nothing: {stats:?}"
    );
}

/// Polls `fut` until it first waits, which queues its write command, and
/// hands it back to be awaited later. Commands queued this way reach the
/// writer in the order of the calls.
async fn queued<F: Future + Unpin>(mut fut: F) -> F {
    std::future::poll_fn(|cx| match Pin::new(&mut fut).poll(cx) {
        Poll::Pending => Poll::Ready(()),
        Poll::Ready(_) => panic!("the write finished while the write lock was held"),
    })
    .await;
    fut
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_command_fails_alone_in_its_batch() {
    let (dir, store) = fresh();
    let blocker = hold_write_lock(&dir);
    let insert = |ids: &[&str]| {
        let records: Vec<_> = ids
            .iter()
            .map(|id| record(id, "default", "a", 1000))
            .collect();
        store.insert_invocations(records)
    };
    // The writer takes what is queued and waits for the lock; whatever
    // queues behind it forms the next batch. Either way every command below
    // is queued before the lock is released, so exactly two transactions run.
    let a = queued(insert(&["a"])).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let b = queued(insert(&["b"])).await;
    let dup_in_batch = queued(insert(&["c", "b"])).await;
    let dup_on_disk = queued(insert(&["d", "a"])).await;
    let e = queued(insert(&["e"])).await;
    blocker.execute_batch("COMMIT").expect("release the lock");

    a.await.expect("a");
    b.await.expect("b");
    let err = dup_in_batch.await.expect_err("b twice");
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let err = dup_on_disk.await.expect_err("a twice");
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    e.await.expect("e");

    let ids: Vec<_> = store
        .invocations(all())
        .await
        .expect("query")
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, vec!["e", "b", "a"], "failed commands wrote nothing");
    assert_eq!(
        store.stats(),
        WriterStats {
            transactions: 2,
            commands: 5
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_store_finishes_queued_writes() {
    let (dir, store) = fresh();
    let blocker = hold_write_lock(&dir);
    // Callers that stop waiting: their commands are already queued.
    for i in 0..3 {
        let store = store.clone();
        let write = store.insert_invocations(vec![record(&format!("q{i}"), "default", "a", 1000)]);
        let waited = tokio::time::timeout(Duration::from_millis(50), write).await;
        assert!(waited.is_err(), "the writer should be waiting for the lock");
    }
    // Dropping the last handle waits for the writer, which waits for the lock.
    let closing = tokio::task::spawn_blocking(move || drop(store));
    tokio::time::sleep(Duration::from_millis(100)).await;
    blocker.execute_batch("COMMIT").expect("release the lock");
    closing.await.expect("close");

    let store = SqliteStore::open(&db_path(&dir)).expect("reopen");
    assert_eq!(store.invocations(all()).await.expect("query").len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_limit_defaults_and_caps() {
    let (_dir, store) = fresh();
    let records = (0..1100)
        .map(|i| record(&format!("r{i:04}"), "default", "a", 1000 + i))
        .collect();
    store.insert_invocations(records).await.expect("insert");
    let page = |limit| InvocationQuery {
        limit,
        ..Default::default()
    };
    let default = store.invocations(page(0)).await.expect("default");
    assert_eq!(default.len(), 100);
    assert_eq!(default[0].id, "r1099");
    assert_eq!(
        store.invocations(page(5000)).await.expect("capped").len(),
        1000
    );
    // A bound past anything stored matches nothing instead of failing.
    let later = InvocationQuery {
        since_ms: Some(u64::MAX),
        limit: 10,
        ..Default::default()
    };
    assert!(
        store
            .invocations(later)
            .await
            .expect("since max")
            .is_empty()
    );
    assert_eq!(
        store
            .prune_invocations(u64::MAX, u64::MAX)
            .await
            .expect("prune all"),
        1100
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_input_is_an_error_not_a_panic() {
    let (_dir, store) = fresh();
    let err = store
        .insert_invocations(vec![
            record("ok", "default", "a", 1),
            record("bad", "default", "a", u64::MAX),
        ])
        .await
        .expect_err("started_at_ms past i64");
    assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
    assert!(
        store.invocation("ok").await.expect("get").is_none(),
        "the command is all or nothing"
    );
    // The writer is still there.
    store
        .insert_invocations(vec![record("later", "default", "a", 1)])
        .await
        .expect("insert");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_writes_are_no_ops() {
    let (_dir, store) = fresh();
    assert!(
        store
            .create_versions(vec![])
            .await
            .expect("no drafts")
            .is_empty()
    );
    store.insert_invocations(vec![]).await.expect("no records");
    assert_eq!(store.stats().commands, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_batch_leaves_usage_unchanged() {
    let (_dir, store) = fresh();
    let hour = 1_800_000_000_000 / USAGE_BUCKET_MS * USAGE_BUCKET_MS;
    store
        .insert_invocations(vec![record("a", "default", "f", hour + 1)])
        .await
        .expect("insert");
    let before = store.usage(UsageQuery::default()).await.expect("usage");
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].invocations, 1);

    // A duplicate id fails the batch after its other records (same hour and
    // a new one) were inserted: none of them count.
    let mut failed = record("b", "default", "f", hour + 2);
    failed.error_code = Some("trap".to_owned());
    let err = store
        .insert_invocations(vec![
            failed,
            record("c", "default", "f", hour + USAGE_BUCKET_MS),
            record("a", "default", "f", hour + 3),
        ])
        .await
        .expect_err("duplicate id");
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(
        store.usage(UsageQuery::default()).await.expect("usage"),
        before
    );
    // So does a batch that fails on an out-of-range record.
    store
        .insert_invocations(vec![
            record("d", "default", "f", hour + 4),
            record("e", "default", "f", u64::MAX),
        ])
        .await
        .expect_err("started_at_ms past i64");
    assert_eq!(
        store.usage(UsageQuery::default()).await.expect("usage"),
        before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_totals_saturate() {
    let (_dir, store) = fresh();
    let mut big = record("big", "default", "f", 0);
    big.billed_ms = u64::MAX;
    big.memory_limit_mib = 1024;
    let mut more = record("more", "default", "f", 1);
    more.billed_ms = 5;
    store.insert_invocations(vec![big]).await.expect("big");
    store.insert_invocations(vec![more]).await.expect("more");
    let rows = store.usage(UsageQuery::default()).await.expect("usage");
    assert_eq!(rows.len(), 1);
    let max = i64::MAX as u64;
    assert_eq!(
        (rows[0].invocations, rows[0].billed_ms, rows[0].mib_ms),
        (2, max, max)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_file_is_migrated_keeping_its_data() {
    let (dir, store) = fresh();
    store
        .create_versions(vec![draft("default", "a", "d1")])
        .await
        .expect("a1");
    store
        .insert_invocations(vec![record("old", "default", "a", 1000)])
        .await
        .expect("insert");
    drop(store);
    // Turn the file back into what version 1 wrote: no usage table, and
    // records without a billed duration.
    let conn = rusqlite::Connection::open(db_path(&dir)).expect("open");
    conn.execute_batch(
        "DROP TABLE usage_hourly;
         DROP TABLE api_keys;
         DROP TABLE audit_log;
         DROP TABLE secrets;
         DROP TABLE aliases;
         DROP TABLE kv;
         DROP TABLE kv_stores;
         DROP TABLE sequences;
         DROP TABLE config_versions;
         DROP TABLE docs;
         DROP TABLE doc_collections;
         DROP TABLE doc_changes;
         UPDATE invocations SET body = json_remove(body, '$.billed_ms');
         PRAGMA user_version = 1;",
    )
    .expect("downgrade to version 1");
    drop(conn);

    let store = SqliteStore::open(&db_path(&dir)).expect("reopen");
    let latest = store
        .latest("default", "a")
        .await
        .expect("latest")
        .expect("exists");
    assert_eq!(latest.code_digest, "d1");
    let old = store.invocation("old").await.expect("get").expect("kept");
    assert_eq!(
        old.billed_ms, 0,
        "a version 1 record has no billed duration"
    );
    // Usage starts empty and counts what is written from now on.
    assert!(
        store
            .usage(UsageQuery::default())
            .await
            .expect("usage")
            .is_empty()
    );
    store
        .insert_invocations(vec![record("new", "default", "a", 2000)])
        .await
        .expect("insert after migration");
    let rows = store.usage(UsageQuery::default()).await.expect("usage");
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].invocations, rows[0].billed_ms), (1, 2));
    drop(store);

    let conn = rusqlite::Connection::open(db_path(&dir)).expect("open");
    let version: u32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("user_version");
    assert_eq!(version, 9);
    assert_eq!(SCHEMA_VERSION, 9);
}

/// A key-value batch that fails in the middle of its writes (a fault the
/// database raises on the third row) leaves nothing of itself: no entry, no
/// change to the store's counts, no version taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kv_batch_that_fails_mid_write_leaves_nothing() {
    use nimbus_core::store::kv::{KvBucket, KvCondition, KvPut, KvStore};
    let (dir, store) = fresh();
    let at = KvBucket {
        namespace: "a",
        store: "default",
    };
    let put = |key: &str| KvPut {
        key: key.to_owned(),
        value: b"v".to_vec(),
        expires_at_ms: None,
        condition: KvCondition::Always,
    };
    let before = store
        .kv_put(at, vec![put("first")], 1, None)
        .await
        .expect("put")[0];
    // A second connection installs the fault: the writer sees it at its
    // next statement.
    let conn = rusqlite::Connection::open(db_path(&dir)).expect("open");
    conn.execute_batch(
        "CREATE TRIGGER inject_fault BEFORE INSERT ON kv WHEN NEW.key = 'boom'
         BEGIN SELECT RAISE(ABORT, 'injected fault'); END;",
    )
    .expect("install the fault");
    let r = store
        .kv_put(at, vec![put("a"), put("b"), put("boom"), put("c")], 1, None)
        .await;
    assert!(r.is_err(), "the injected fault fails the batch");
    let got = store
        .kv_get(at, vec!["a".into(), "b".into(), "c".into()], 1)
        .await
        .expect("get");
    assert!(
        got.iter().all(Option::is_none),
        "nothing of the batch: {got:?}"
    );
    let stores = store.kv_stores("a").await.expect("stores");
    assert_eq!(
        (stores[0].keys, stores[0].bytes),
        (1, 6),
        "counts as before"
    );
    conn.execute_batch("DROP TRIGGER inject_fault")
        .expect("remove the fault");
    let after = store
        .kv_put(at, vec![put("d")], 1, None)
        .await
        .expect("put")[0];
    assert_eq!(after, before + 1, "the failed batch took no version");
}

/// A config commit that fails at its last statement (removing versions
/// beyond those kept; a fault the database raises) leaves nothing of
/// itself: the new version is not there, the old ones all are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_commit_that_fails_at_its_last_step_leaves_nothing() {
    use nimbus_core::store::config::{ConfigBounds, ConfigCommit, ConfigEdit, ConfigStore};
    let (dir, store) = fresh();
    let bounds = ConfigBounds {
        max_keys: 10,
        max_bytes: 1000,
        keep_versions: 2,
        quota_bytes: None,
    };
    let commit = |value: &str| ConfigCommit {
        edit: ConfigEdit::Change {
            set: [("k".to_owned(), value.to_owned())].into(),
            delete: Vec::new(),
        },
        expected_version: None,
        author: "t".to_owned(),
        description: String::new(),
        created_at_ms: 1,
    };
    for v in ["1", "2"] {
        store
            .config_commit("a", commit(v), bounds)
            .await
            .expect("commit");
    }
    let conn = rusqlite::Connection::open(db_path(&dir)).expect("open");
    conn.execute_batch(
        "CREATE TRIGGER inject_fault BEFORE DELETE ON config_versions
         BEGIN SELECT RAISE(ABORT, 'injected fault'); END;",
    )
    .expect("install the fault");
    let r = store.config_commit("a", commit("3"), bounds).await;
    assert!(r.is_err(), "the injected fault fails the commit");
    let current = store
        .config_version("a", None)
        .await
        .expect("read")
        .expect("current");
    assert_eq!(current.version, 2, "the failed commit made no version");
    assert_eq!(current.entries.expect("entries")["k"], "2");
    assert!(
        store
            .config_version("a", Some(1))
            .await
            .expect("read")
            .is_some()
    );
    conn.execute_batch("DROP TRIGGER inject_fault")
        .expect("remove the fault");
    let (v, _) = store
        .config_commit("a", commit("3"), bounds)
        .await
        .expect("commit");
    assert_eq!(v.version, 3);
    assert!(
        store
            .config_version("a", Some(1))
            .await
            .expect("read")
            .is_none()
    );
}

/// A document transaction that the database fails part-way (a fault raised
/// on its third document) leaves nothing: no document, no change in the
/// feed, no change to the collection's counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_transaction_that_fails_mid_write_leaves_nothing() {
    use nimbus_core::store::docs::{DocBounds, DocCondition, DocOp, DocStore, DocWrite};
    let (dir, store) = fresh();
    let bounds = DocBounds {
        max_doc_bytes: 1 << 20,
        quota_bytes: None,
    };
    let put = |id: &str| DocWrite {
        collection: "c".to_owned(),
        id: id.to_owned(),
        op: DocOp::Put(serde_json::Map::new()),
        condition: DocCondition::Always,
    };
    store
        .docs_write("a", vec![put("first")], 1, bounds)
        .await
        .expect("write");
    let (head, _) = store.docs_feed_bounds().await.expect("bounds");
    let conn = rusqlite::Connection::open(db_path(&dir)).expect("open");
    conn.execute_batch(
        "CREATE TRIGGER inject_fault BEFORE INSERT ON docs WHEN NEW.id = 'boom'
         BEGIN SELECT RAISE(ABORT, 'injected fault'); END;",
    )
    .expect("install the fault");
    let r = store
        .docs_write(
            "a",
            vec![put("x"), put("y"), put("boom"), put("z")],
            1,
            bounds,
        )
        .await;
    assert!(r.is_err(), "the injected fault fails the transaction");
    let got = store
        .docs_get("a", "c", vec!["x".into(), "y".into(), "z".into()])
        .await
        .expect("get");
    assert!(got.iter().all(Option::is_none), "{got:?}");
    let feed = store
        .docs_changes(nimbus_core::store::docs::ChangeQuery {
            after: head,
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("feed");
    assert!(feed.is_empty(), "no change of it in the feed: {feed:?}");
    let collections = store.docs_collections("a").await.expect("collections");
    assert_eq!(collections[0].docs, 1, "counts as before");
}

/// Following the feed from a point older than what is kept is refused as
/// gone, not answered with a gap; from within what is kept it works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_point_older_than_the_kept_feed_is_gone() {
    use nimbus_core::store::docs::DocStore;
    let (_dir, store) = fresh();
    let docs = nimbus_core::docs::Docs::new(store.clone(), None);
    let mut last = 0;
    for i in 0..3 {
        last = docs
            .put(
                "a",
                "c",
                &format!("d{i}"),
                serde_json::json!({ "i": i }),
                Default::default(),
            )
            .await
            .expect("put")
            .version;
    }
    store.docs_prune_changes(0, 1).await.expect("prune");
    let e = docs
        .changes("a", "c", Some(0), None)
        .await
        .expect_err("gone");
    assert_eq!(e.code, nimbus_api::ErrorCode::Gone);
    assert!(e.message.contains("read the documents again"), "{e}");
    let page = docs
        .changes("a", "c", Some(last - 1), None)
        .await
        .expect("kept");
    assert_eq!(page.changes.len(), 1);
    // No resume point: from the oldest change kept, never gone.
    let page = docs.changes("a", "c", None, None).await.expect("kept");
    assert_eq!(page.changes.len(), 1);
}
