//! The conformance suite every store backend runs.
//!
//! A backend's test crate expands [`store_conformance_tests!`](crate::store_conformance_tests)
//! with an expression that opens a fresh, empty store: one test per check,
//! each with its own store, so a failure names the check.

use super::{InvocationQuery, Store, StoreError, USAGE_BUCKET_MS, UsageQuery};
use nimbus_api::auth::{ApiKey, Scope};
use nimbus_api::{CodeKind, FunctionVersion, InvocationRecord, Limits, Route};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// A draft version of `ns/name` with recognisable contents.
pub fn draft(ns: &str, name: &str, digest: &str) -> FunctionVersion {
    FunctionVersion {
        namespace: ns.to_owned(),
        name: name.to_owned(),
        version: 0,
        created_at_ms: 0,
        code_digest: digest.to_owned(),
        code_size_bytes: 42,
        kind: CodeKind::WasiHttp,
        handler: None,
        runtime_version: None,
        public: false,
        network: false,
        invoke_mode: Default::default(),
        limits: Limits::default(),
        scaling: Default::default(),
        env: BTreeMap::from([("K".to_owned(), "v".to_owned())]),
        routes: vec![Route {
            methods: vec!["GET".to_owned()],
            path: format!("/{name}/{{id}}"),
            alias: None,
        }],
        grants: Default::default(),
        findings: Vec::new(),
        dependencies: Vec::new(),
    }
}

/// A record of `ns/name` started at `started_at_ms`.
pub fn record(id: &str, ns: &str, name: &str, started_at_ms: u64) -> InvocationRecord {
    InvocationRecord {
        id: id.to_owned(),
        namespace: ns.to_owned(),
        function: name.to_owned(),
        version: 1,
        trigger: "http".to_owned(),
        started_at_ms,
        duration_us: 1234,
        status: 200,
        error_code: None,
        error_message: None,
        cold: true,
        init_duration_us: Some(1500),
        memory_peak_bytes: Some(65536),
        memory_limit_mib: 128,
        billed_ms: 2,
        stdout: "out line\n".to_owned(),
        stderr: "err line\n".to_owned(),
        logs_truncated: false,
        trace_id: None,
    }
}

/// One test per check of the suite, each against a fresh store:
/// `nimbus_core::store_conformance_tests!(open())` in a backend's test
/// crate, where `open()` returns `(guard, Arc<store>)` and the guard (a
/// temporary directory, a database) lives as long as the test.
#[macro_export]
macro_rules! store_conformance_tests {
    ($open:expr) => {
        $crate::store_conformance_tests!(@each $open;
            versions_are_numbered_per_function,
            create_versions_is_atomic,
            latest_and_list,
            delete_restarts_numbering,
            version_round_trips_every_field,
            invocations_insert_query_get,
            prune_by_age_and_count,
            concurrent_deploys_get_distinct_versions,
            usage_is_the_sum_of_records_per_hour,
            code_digests_cover_every_version,
            keys_are_stored_listed_and_revoked,
            audit_entries_are_appended_queried_and_pruned,
            secrets_are_replaced_listed_and_deleted,
            aliases_are_replaced_listed_and_go_with_their_function,
        );
    };
    (@each $open:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let (_guard, store) = $open;
                $crate::store::conformance::$check(store).await;
            }
        )*
    };
}

pub async fn aliases_are_replaced_listed_and_go_with_their_function<S: Store>(s: Arc<S>) {
    use nimbus_api::alias::{Alias, AliasTarget};
    let alias = |ns: &str, f: &str, name: &str, version: u32| Alias {
        namespace: ns.to_owned(),
        function: f.to_owned(),
        name: name.to_owned(),
        routing: vec![AliasTarget {
            version,
            weight: 100,
        }],
        previous: Vec::new(),
        created_at_ms: 1,
        updated_at_ms: 1,
        rollout: None,
    };
    s.create_versions(vec![draft("a", "f", "d1"), draft("b", "g", "d2")])
        .await
        .expect("deploy");
    // No function, no alias.
    assert!(matches!(
        s.put_alias(alias("a", "missing", "prod", 1)).await,
        Err(crate::store::StoreError::Conflict(_))
    ));
    s.put_alias(alias("a", "f", "prod", 1)).await.expect("put");
    s.put_alias(alias("a", "f", "beta", 1)).await.expect("put");
    s.put_alias(alias("b", "g", "prod", 1)).await.expect("put");
    let mut moved = alias("a", "f", "prod", 2);
    moved.previous = alias("a", "f", "prod", 1).routing;
    s.put_alias(moved.clone()).await.expect("replace");
    let all = s.aliases(None).await.expect("list");
    let names: Vec<(&str, &str, &str)> = all
        .iter()
        .map(|a| (a.namespace.as_str(), a.function.as_str(), a.name.as_str()))
        .collect();
    assert_eq!(
        names,
        [("a", "f", "beta"), ("a", "f", "prod"), ("b", "g", "prod")]
    );
    assert_eq!(all[1], moved);
    assert_eq!(s.aliases(Some("b")).await.expect("list").len(), 1);
    assert!(s.delete_alias("a", "f", "beta").await.expect("delete"));
    assert!(!s.delete_alias("a", "f", "beta").await.expect("again"));
    // Deleting the function deletes its aliases.
    assert!(s.delete_function("a", "f").await.expect("delete fn"));
    assert!(s.aliases(Some("a")).await.expect("list").is_empty());
    assert_eq!(s.aliases(None).await.expect("list").len(), 1);
}

fn sealed(ns: &str, name: &str, byte: u8, at_ms: u64) -> crate::store::SealedSecret {
    crate::store::SealedSecret {
        namespace: ns.to_owned(),
        name: name.to_owned(),
        key_id: format!("k{byte}"),
        nonce: vec![byte; 12],
        ciphertext: vec![byte; 20],
        created_at_ms: at_ms,
        updated_at_ms: at_ms,
    }
}

pub async fn secrets_are_replaced_listed_and_deleted<S: Store>(s: Arc<S>) {
    s.put_secret(sealed("b", "TOKEN", 1, 10))
        .await
        .expect("put");
    s.put_secret(sealed("a", "TOKEN", 2, 20))
        .await
        .expect("put");
    s.put_secret(sealed("a", "DB", 3, 30)).await.expect("put");
    assert_eq!(
        s.secret("a", "TOKEN").await.expect("read"),
        Some(sealed("a", "TOKEN", 2, 20))
    );
    assert_eq!(s.secret("a", "NONE").await.expect("read"), None);
    // Replacing keeps the creation time and takes everything else.
    s.put_secret(sealed("a", "TOKEN", 4, 40))
        .await
        .expect("replace");
    let replaced = s.secret("a", "TOKEN").await.expect("read").expect("kept");
    assert_eq!(replaced.created_at_ms, 20);
    assert_eq!(replaced.updated_at_ms, 40);
    assert_eq!(replaced.ciphertext, vec![4; 20]);
    assert_eq!(replaced.key_id, "k4");
    let all: Vec<(String, String)> = s
        .secrets(None)
        .await
        .expect("list")
        .into_iter()
        .map(|x| (x.namespace, x.name))
        .collect();
    let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(
        all,
        vec![pair("a", "DB"), pair("a", "TOKEN"), pair("b", "TOKEN")]
    );
    assert_eq!(s.secrets(Some("b")).await.expect("list").len(), 1);
    assert!(s.delete_secret("a", "TOKEN").await.expect("delete"));
    assert!(!s.delete_secret("a", "TOKEN").await.expect("delete again"));
    assert_eq!(s.secret("a", "TOKEN").await.expect("read"), None);
    assert!(s.secret("b", "TOKEN").await.expect("read").is_some());
}

fn audit_entry(n: u64, namespace: Option<&str>) -> nimbus_api::audit::AuditEntry {
    nimbus_api::audit::AuditEntry {
        id: format!("e{n:03}"),
        at_ms: 1000 * n,
        actor: "admin".to_owned(),
        action: "DELETE /api/v1/namespaces/{ns}/functions/{name}".to_owned(),
        path: "/api/v1/namespaces/a/functions/f".to_owned(),
        namespace: namespace.map(str::to_owned),
        status: if n.is_multiple_of(2) { 204 } else { 403 },
        error_code: (!n.is_multiple_of(2)).then(|| "forbidden".to_owned()),
    }
}

pub async fn audit_entries_are_appended_queried_and_pruned<S: Store>(s: Arc<S>) {
    use crate::store::AuditQuery;
    let all = |limit| AuditQuery {
        limit,
        ..Default::default()
    };
    assert!(s.audit(all(10)).await.expect("audit").is_empty());
    s.append_audit(
        (1..=6)
            .map(|n| audit_entry(n, Some(if n <= 3 { "a" } else { "b" })))
            .collect(),
    )
    .await
    .expect("append");
    s.append_audit(vec![audit_entry(7, None)])
        .await
        .expect("append");
    let got = s.audit(all(100)).await.expect("audit");
    assert_eq!(
        got.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["e007", "e006", "e005", "e004", "e003", "e002", "e001"],
        "newest first"
    );
    assert_eq!(got[1], audit_entry(6, Some("b")), "every field round-trips");
    let a = s
        .audit(AuditQuery {
            namespace: Some("a".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("audit a");
    assert_eq!(a.len(), 3);
    assert!(a.iter().all(|e| e.namespace.as_deref() == Some("a")));
    let recent = s
        .audit(AuditQuery {
            since_ms: Some(5000),
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("since");
    assert_eq!(recent.len(), 3);
    assert_eq!(s.audit(all(2)).await.expect("limit").len(), 2);
    // By age (before 2 s: e001), then beyond the newest 4 (e002, e003).
    assert_eq!(s.prune_audit(2000, 4).await.expect("prune"), 3);
    let left = s.audit(all(100)).await.expect("audit");
    assert_eq!(
        left.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["e007", "e006", "e005", "e004"]
    );
}

fn api_key(id: &str, created_at_ms: u64) -> ApiKey {
    ApiKey {
        id: id.to_owned(),
        name: format!("key {id}"),
        namespace: Some("team-a".to_owned()),
        scopes: vec![Scope::FunctionsRead, Scope::LogsRead],
        secret_sha256: "ab".repeat(32),
        created_at_ms,
        expires_at_ms: Some(created_at_ms + 1000),
        revoked_at_ms: None,
    }
}

pub async fn keys_are_stored_listed_and_revoked<S: Store>(s: Arc<S>) {
    assert!(s.keys().await.expect("keys").is_empty());
    assert!(s.key("k1").await.expect("key").is_none());
    s.create_key(api_key("k2", 20)).await.expect("create k2");
    s.create_key(api_key("k1", 10)).await.expect("create k1");
    assert!(
        matches!(
            s.create_key(api_key("k1", 30)).await,
            Err(StoreError::Conflict(_))
        ),
        "ids are unique"
    );
    assert_eq!(s.key("k1").await.expect("key"), Some(api_key("k1", 10)));
    let ids: Vec<String> = s
        .keys()
        .await
        .expect("keys")
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(ids, ["k1", "k2"], "oldest first");
    let revoked = s
        .revoke_key("k1", 99)
        .await
        .expect("revoke")
        .expect("k1 exists");
    assert_eq!(revoked.revoked_at_ms, Some(99));
    let again = s
        .revoke_key("k1", 150)
        .await
        .expect("revoke")
        .expect("k1 exists");
    assert_eq!(again.revoked_at_ms, Some(99), "the first revocation stands");
    assert_eq!(
        s.key("k1")
            .await
            .expect("key")
            .and_then(|k| k.revoked_at_ms),
        Some(99)
    );
    assert!(s.revoke_key("nope", 1).await.expect("revoke").is_none());
    assert_eq!(
        s.keys().await.expect("keys").len(),
        2,
        "revoked keys stay listed"
    );
}

pub async fn code_digests_cover_every_version<S: Store>(s: Arc<S>) {
    assert!(s.code_digests().await.expect("digests").is_empty());
    s.create_versions(vec![draft("default", "a", "d1")])
        .await
        .expect("a1");
    s.create_versions(vec![draft("default", "a", "d2")])
        .await
        .expect("a2");
    s.create_versions(vec![draft("default", "b", "d2"), draft("other", "c", "d3")])
        .await
        .expect("b1, c1");
    let digests = |v: &[&str]| v.iter().map(|d| d.to_string()).collect::<HashSet<_>>();
    assert_eq!(
        s.code_digests().await.expect("digests"),
        digests(&["d1", "d2", "d3"]),
        "older versions' code is kept too (they can be called by number)"
    );
    assert!(s.delete_function("default", "a").await.expect("delete a"));
    assert_eq!(
        s.code_digests().await.expect("digests"),
        digests(&["d2", "d3"]),
        "d2 is still b's"
    );
    assert!(s.delete_function("default", "b").await.expect("delete b"));
    assert_eq!(s.code_digests().await.expect("digests"), digests(&["d3"]));
}

pub async fn versions_are_numbered_per_function<S: Store>(s: Arc<S>) {
    let v1 = s
        .create_versions(vec![draft("default", "a", "d1")])
        .await
        .expect("create a");
    assert_eq!(v1[0].version, 1);
    assert!(v1[0].created_at_ms > 0, "created_at_ms is assigned");
    let v2 = s
        .create_versions(vec![draft("default", "a", "d2")])
        .await
        .expect("create a again");
    assert_eq!(v2[0].version, 2);
    let b = s
        .create_versions(vec![draft("default", "b", "d3")])
        .await
        .expect("create b");
    assert_eq!(b[0].version, 1, "numbering is per function");
    let other_ns = s
        .create_versions(vec![draft("other", "a", "d4")])
        .await
        .expect("create other/a");
    assert_eq!(other_ns[0].version, 1, "numbering is per namespace");
    let versions = s.versions("default", "a").await.expect("versions");
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![2, 1],
        "newest first"
    );
    assert_eq!(
        s.version("default", "a", 1)
            .await
            .expect("v1")
            .expect("exists")
            .code_digest,
        "d1"
    );
    assert!(s.version("default", "a", 3).await.expect("v3").is_none());
}

pub async fn create_versions_is_atomic<S: Store>(s: Arc<S>) {
    let out = s
        .create_versions(vec![
            draft("default", "x", "d1"),
            draft("default", "y", "d2"),
        ])
        .await
        .expect("create two");
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].name, "x");
    assert_eq!(out[1].name, "y");
    // The same function twice in one batch is a conflict and nothing is written.
    let err = s
        .create_versions(vec![
            draft("default", "z", "d3"),
            draft("default", "z", "d4"),
        ])
        .await
        .expect_err("duplicate in batch");
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert!(
        s.latest("default", "z").await.expect("latest").is_none(),
        "nothing half-written"
    );
}

pub async fn latest_and_list<S: Store>(s: Arc<S>) {
    assert!(s.latest("default", "nope").await.expect("latest").is_none());
    assert!(s.list_latest(None).await.expect("list").is_empty());
    s.create_versions(vec![draft("default", "b", "d1")])
        .await
        .expect("b1");
    s.create_versions(vec![draft("default", "a", "d2")])
        .await
        .expect("a1");
    s.create_versions(vec![draft("default", "a", "d3")])
        .await
        .expect("a2");
    s.create_versions(vec![draft("zeta", "c", "d4")])
        .await
        .expect("c1");
    let latest = s
        .latest("default", "a")
        .await
        .expect("latest")
        .expect("exists");
    assert_eq!((latest.version, latest.code_digest.as_str()), (2, "d3"));
    let all = s.list_latest(None).await.expect("list all");
    let names: Vec<_> = all
        .iter()
        .map(|v| format!("{}/{}@{}", v.namespace, v.name, v.version))
        .collect();
    assert_eq!(names, vec!["default/a@2", "default/b@1", "zeta/c@1"]);
    let ns = s.list_latest(Some("zeta")).await.expect("list zeta");
    assert_eq!(ns.len(), 1);
    assert_eq!(ns[0].name, "c");
}

pub async fn delete_restarts_numbering<S: Store>(s: Arc<S>) {
    s.create_versions(vec![draft("default", "a", "d1")])
        .await
        .expect("a1");
    s.create_versions(vec![draft("default", "a", "d2")])
        .await
        .expect("a2");
    assert!(s.delete_function("default", "a").await.expect("delete"));
    assert!(
        !s.delete_function("default", "a")
            .await
            .expect("delete again")
    );
    assert!(s.latest("default", "a").await.expect("latest").is_none());
    assert!(
        s.versions("default", "a")
            .await
            .expect("versions")
            .is_empty()
    );
    let again = s
        .create_versions(vec![draft("default", "a", "d3")])
        .await
        .expect("a again");
    assert_eq!(again[0].version, 1);
}

pub async fn version_round_trips_every_field<S: Store>(s: Arc<S>) {
    let mut d = draft("default", "full", "abc");
    d.public = true;
    d.kind = CodeKind::Python;
    d.handler = Some("app.lambda_handler".to_owned());
    d.env
        .insert("GREETING".to_owned(), "héllo\nworld".to_owned());
    d.routes.push(Route {
        methods: vec![],
        path: "/any/{*rest}".to_owned(),
        alias: Some("prod".to_owned()),
    });
    let created = s.create_versions(vec![d.clone()]).await.expect("create");
    let read = s
        .version("default", "full", 1)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(read, created[0]);
    let mut expected = d;
    expected.version = 1;
    expected.created_at_ms = read.created_at_ms;
    assert_eq!(read, expected);
}

pub async fn invocations_insert_query_get<S: Store>(s: Arc<S>) {
    let mut failed = record("i3", "default", "a", 3000);
    failed.status = 504;
    failed.error_code = Some("timeout".to_owned());
    failed.error_message = Some("ran past 10 ms".to_owned());
    failed.memory_peak_bytes = None;
    failed.logs_truncated = true;
    s.insert_invocations(vec![
        record("i1", "default", "a", 1000),
        record("i2", "default", "b", 2000),
        failed.clone(),
        record("i4", "other", "a", 4000),
    ])
    .await
    .expect("insert");
    assert_eq!(
        s.invocation("i3").await.expect("get").expect("exists"),
        failed
    );
    assert!(s.invocation("nope").await.expect("get").is_none());

    let q = |ns: Option<&str>, f: Option<&str>, since: Option<u64>, limit| InvocationQuery {
        namespace: ns.map(str::to_owned),
        function: f.map(str::to_owned),
        since_ms: since,
        limit,
    };
    let ids = |v: Vec<InvocationRecord>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.invocations(q(None, None, None, 100)).await.expect("all")),
        vec!["i4", "i3", "i2", "i1"]
    );
    assert_eq!(
        ids(s
            .invocations(q(Some("default"), Some("a"), None, 100))
            .await
            .expect("a")),
        vec!["i3", "i1"]
    );
    assert_eq!(
        ids(s
            .invocations(q(Some("default"), None, Some(2000), 100))
            .await
            .expect("since")),
        vec!["i3", "i2"]
    );
    assert_eq!(
        ids(s.invocations(q(None, None, None, 2)).await.expect("limit")),
        vec!["i4", "i3"]
    );
}

pub async fn prune_by_age_and_count<S: Store>(s: Arc<S>) {
    let records = (1..=10)
        .map(|i| record(&format!("r{i:02}"), "default", "a", i * 100))
        .collect();
    s.insert_invocations(records).await.expect("insert");
    // Older than 300 ms: r01, r02 go.
    assert_eq!(s.prune_invocations(300, 1000).await.expect("prune age"), 2);
    // Keep the newest 5 of the remaining 8.
    assert_eq!(s.prune_invocations(0, 5).await.expect("prune count"), 3);
    let left = s
        .invocations(InvocationQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("left");
    let ids: Vec<_> = left.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, vec!["r10", "r09", "r08", "r07", "r06"]);
}

pub async fn concurrent_deploys_get_distinct_versions<S: Store>(s: Arc<S>) {
    let mut tasks = Vec::new();
    for i in 0..16 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.create_versions(vec![draft("default", "hot", &format!("d{i}"))])
                .await
                .expect("create")[0]
                .version
        }));
    }
    let mut versions = Vec::new();
    for t in tasks {
        versions.push(t.await.expect("join"));
    }
    versions.sort_unstable();
    assert_eq!(versions, (1..=16).collect::<Vec<u32>>());
    let latest = s
        .latest("default", "hot")
        .await
        .expect("latest")
        .expect("exists");
    assert_eq!(latest.version, 16);
}

pub async fn usage_is_the_sum_of_records_per_hour<S: Store>(s: Arc<S>) {
    let h = USAGE_BUCKET_MS;
    let base = 1_800_000_000_000 / h * h; // an hour boundary
    let mut recs = Vec::new();
    for (i, (ns, f, at, billed, mib, err)) in [
        ("default", "a", base + 10, 5, 128, false),
        ("default", "a", base + h - 1, 7, 128, true),
        ("default", "a", base + h, 1, 256, false),
        ("default", "b", base + 20, 3, 64, false),
        ("other", "a", base + 30, 11, 128, false),
    ]
    .into_iter()
    .enumerate()
    {
        let mut r = record(&format!("u{i}"), ns, f, at);
        r.billed_ms = billed;
        r.memory_limit_mib = mib;
        if err {
            r.error_code = Some("trap".to_owned());
        }
        recs.push(r);
    }
    // Two batches: usage accumulates across transactions.
    s.insert_invocations(recs[..2].to_vec())
        .await
        .expect("insert 1");
    s.insert_invocations(recs[2..].to_vec())
        .await
        .expect("insert 2");
    let rows = s.usage(UsageQuery::default()).await.expect("usage");
    let key = |r: &nimbus_api::UsageRow| (r.hour_start_ms, r.namespace.clone(), r.function.clone());
    let got: Vec<_> = rows
        .iter()
        .map(|r| (key(r), r.invocations, r.errors, r.billed_ms, r.mib_ms))
        .collect();
    assert_eq!(
        got,
        vec![
            ((base, "default".into(), "a".into()), 2, 1, 12, 12 * 128),
            ((base, "default".into(), "b".into()), 1, 0, 3, 3 * 64),
            ((base, "other".into(), "a".into()), 1, 0, 11, 11 * 128),
            ((base + h, "default".into(), "a".into()), 1, 0, 1, 256),
        ]
    );
    let a = s
        .usage(UsageQuery {
            namespace: Some("default".into()),
            function: Some("a".into()),
            since_ms: Some(base + h + 5),
        })
        .await
        .expect("usage a");
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].hour_start_ms, base + h);
    // Usage outlives record pruning, and has its own pruning.
    s.prune_invocations(u64::MAX, 0)
        .await
        .expect("prune records");
    assert_eq!(
        s.usage(UsageQuery::default()).await.expect("usage").len(),
        4
    );
    assert_eq!(s.prune_usage(base + h).await.expect("prune usage"), 3);
    assert_eq!(
        s.usage(UsageQuery::default()).await.expect("usage").len(),
        1
    );
}

#[cfg(test)]
mod tests {
    /// Every check of this file is one of the macro's tests: a check
    /// written here but not listed there would never run.
    #[test]
    fn every_check_is_in_the_macro() {
        let src = include_str!("conformance.rs");
        let (listed, checks) = src
            .split_once("(@each $open:expr;")
            .expect("the macro's @each arm");
        let listed = listed
            .rsplit_once("$crate::store_conformance_tests!(@each $open;")
            .expect("the macro's list")
            .1;
        for line in checks.lines() {
            if let Some(rest) = line.strip_prefix("pub async fn ") {
                let name = rest.split('<').next().expect("name");
                assert!(
                    listed.contains(&format!("{name},")),
                    "check {name} is missing from store_conformance_tests!"
                );
            }
        }
    }
}
