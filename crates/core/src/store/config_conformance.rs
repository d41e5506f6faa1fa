//! The conformance suite of [`ConfigStore`] backends: one test per check,
//! each against a fresh store (`nimbus_core::config_conformance_tests!(open())`,
//! as [`crate::kv_conformance_tests!`]).

use super::config::{ConfigBounds, ConfigCommit, ConfigEdit, ConfigError, ConfigStore};
use super::kv::{KvBucket, KvCondition, KvError, KvPut, KvStore};
use std::collections::BTreeMap;
use std::sync::Arc;

#[macro_export]
macro_rules! config_conformance_tests {
    ($open:expr) => {
        $crate::config_conformance_tests!(@each $open;
            commits_make_consecutive_versions,
            unchanged_edits_make_no_version,
            expected_versions_decide_commits,
            rollback_restores_as_a_new_version,
            bounds_refuse_and_write_nothing,
            only_the_newest_versions_are_kept,
            history_pages_newest_first,
            concurrent_commits_lose_no_change,
            namespaces_are_separate,
            config_counts_towards_the_storage_quota,
        );
    };
    (@each $open:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let (_guard, store) = $open;
                $crate::store::config_conformance::$check(store).await;
            }
        )*
    };
}

const BOUNDS: ConfigBounds = ConfigBounds {
    max_keys: 10,
    max_bytes: 1000,
    keep_versions: 5,
    quota_bytes: None,
};

fn set(pairs: &[(&str, &str)]) -> ConfigCommit {
    change(pairs, &[])
}

fn change(pairs: &[(&str, &str)], delete: &[&str]) -> ConfigCommit {
    ConfigCommit {
        edit: ConfigEdit::Change {
            set: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            delete: delete.iter().map(|k| k.to_string()).collect(),
        },
        expected_version: None,
        author: "tester".to_owned(),
        description: String::new(),
        created_at_ms: 1_000,
    }
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn current<S: ConfigStore>(s: &S, ns: &str) -> (u64, BTreeMap<String, String>) {
    let v = s
        .config_version(ns, None)
        .await
        .expect("read")
        .expect("a current version");
    (v.version, v.entries.expect("entries"))
}

pub async fn commits_make_consecutive_versions<S: ConfigStore>(s: Arc<S>) {
    assert!(s.config_version("a", None).await.expect("read").is_none());
    let (v1, made) = s
        .config_commit("a", set(&[("x", "1"), ("y", "2")]), BOUNDS)
        .await
        .expect("commit");
    assert!(made);
    assert_eq!(v1.version, 1);
    assert_eq!(v1.set, vec!["x", "y"]);
    assert_eq!((v1.keys, v1.bytes), (2, 4));
    assert_eq!(v1.author, "tester");
    let (v2, _) = s
        .config_commit("a", change(&[("x", "10")], &["y", "absent"]), BOUNDS)
        .await
        .expect("commit");
    assert_eq!(v2.version, 2);
    assert_eq!(v2.set, vec!["x"]);
    assert_eq!(v2.deleted, vec!["y"]);
    assert_eq!(current(&*s, "a").await, (2, map(&[("x", "10")])));
    let old = s
        .config_version("a", Some(1))
        .await
        .expect("read")
        .expect("version 1");
    assert_eq!(old.entries, Some(map(&[("x", "1"), ("y", "2")])));
    assert!(
        s.config_version("a", Some(3))
            .await
            .expect("read")
            .is_none()
    );
}

pub async fn unchanged_edits_make_no_version<S: ConfigStore>(s: Arc<S>) {
    s.config_commit("a", set(&[("x", "1")]), BOUNDS)
        .await
        .expect("commit");
    let (v, made) = s
        .config_commit("a", change(&[("x", "1")], &["never-set"]), BOUNDS)
        .await
        .expect("commit");
    assert!(!made, "nothing differed");
    assert_eq!(v.version, 1);
    assert_eq!(
        s.config_history("a", None, 10)
            .await
            .expect("history")
            .len(),
        1
    );
    // Nothing yet and nothing to do: version 0.
    let (v, made) = s
        .config_commit("b", change(&[], &["x"]), BOUNDS)
        .await
        .expect("commit");
    assert!(!made);
    assert_eq!(v.version, 0);
}

pub async fn expected_versions_decide_commits<S: ConfigStore>(s: Arc<S>) {
    let mut first = set(&[("x", "1")]);
    first.expected_version = Some(0);
    s.config_commit("a", first.clone(), BOUNDS)
        .await
        .expect("first commit expecting none");
    match s.config_commit("a", first, BOUNDS).await {
        Err(ConfigError::ConditionFailed { current: 1 }) => {}
        other => panic!("expected a failed condition at 1, got {other:?}"),
    }
    let mut stale = set(&[("x", "2")]);
    stale.expected_version = Some(7);
    assert!(matches!(
        s.config_commit("a", stale, BOUNDS).await,
        Err(ConfigError::ConditionFailed { current: 1 })
    ));
    let mut fresh = set(&[("x", "2")]);
    fresh.expected_version = Some(1);
    let (v, _) = s.config_commit("a", fresh, BOUNDS).await.expect("commit");
    assert_eq!(v.version, 2);
    assert_eq!(current(&*s, "a").await.1, map(&[("x", "2")]));
}

pub async fn rollback_restores_as_a_new_version<S: ConfigStore>(s: Arc<S>) {
    s.config_commit("a", set(&[("x", "1"), ("y", "1")]), BOUNDS)
        .await
        .expect("v1");
    s.config_commit("a", change(&[("x", "2"), ("z", "2")], &["y"]), BOUNDS)
        .await
        .expect("v2");
    let mut back = set(&[]);
    back.edit = ConfigEdit::Rollback { to: 1 };
    let (v3, made) = s.config_commit("a", back, BOUNDS).await.expect("rollback");
    assert!(made);
    assert_eq!(v3.version, 3);
    assert_eq!(v3.rollback_of, Some(1));
    assert_eq!(v3.set, vec!["x", "y"]);
    assert_eq!(v3.deleted, vec!["z"]);
    assert_eq!(current(&*s, "a").await, (3, map(&[("x", "1"), ("y", "1")])));
    let mut missing = set(&[]);
    missing.edit = ConfigEdit::Rollback { to: 9 };
    assert!(matches!(
        s.config_commit("a", missing, BOUNDS).await,
        Err(ConfigError::NoSuchVersion(9))
    ));
    assert_eq!(current(&*s, "a").await.0, 3);
}

pub async fn bounds_refuse_and_write_nothing<S: ConfigStore>(s: Arc<S>) {
    s.config_commit("a", set(&[("x", "1")]), BOUNDS)
        .await
        .expect("v1");
    let many: Vec<(String, String)> = (0..10).map(|i| (format!("k{i}"), "v".into())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    match s.config_commit("a", set(&many), BOUNDS).await {
        Err(ConfigError::TooLarge { keys: 11, .. }) => {}
        other => panic!("expected too many keys, got {other:?}"),
    }
    let big = "v".repeat(1000);
    assert!(matches!(
        s.config_commit("a", set(&[("big", &big)]), BOUNDS).await,
        Err(ConfigError::TooLarge { .. })
    ));
    assert_eq!(current(&*s, "a").await, (1, map(&[("x", "1")])));
    assert_eq!(
        s.config_history("a", None, 10)
            .await
            .expect("history")
            .len(),
        1
    );
}

pub async fn only_the_newest_versions_are_kept<S: ConfigStore>(s: Arc<S>) {
    for i in 1..=8 {
        s.config_commit("a", set(&[("x", &i.to_string())]), BOUNDS)
            .await
            .expect("commit");
    }
    let kept: Vec<u64> = s
        .config_history("a", None, 100)
        .await
        .expect("history")
        .iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(kept, vec![8, 7, 6, 5, 4]);
    assert!(
        s.config_version("a", Some(3))
            .await
            .expect("read")
            .is_none()
    );
    let mut back = set(&[]);
    back.edit = ConfigEdit::Rollback { to: 3 };
    assert!(matches!(
        s.config_commit("a", back, BOUNDS).await,
        Err(ConfigError::NoSuchVersion(3))
    ));
}

pub async fn history_pages_newest_first<S: ConfigStore>(s: Arc<S>) {
    for i in 1..=4 {
        s.config_commit("a", set(&[("x", &i.to_string())]), BOUNDS)
            .await
            .expect("commit");
    }
    let page = s.config_history("a", None, 2).await.expect("history");
    assert_eq!(page.iter().map(|v| v.version).collect::<Vec<_>>(), [4, 3]);
    assert!(page.iter().all(|v| v.entries.is_none()));
    let rest = s.config_history("a", Some(3), 10).await.expect("history");
    assert_eq!(rest.iter().map(|v| v.version).collect::<Vec<_>>(), [2, 1]);
}

pub async fn concurrent_commits_lose_no_change<S: ConfigStore>(s: Arc<S>) {
    let bounds = ConfigBounds {
        max_keys: 100,
        max_bytes: 10_000,
        keep_versions: 100,
        quota_bytes: None,
    };
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                s.config_commit("a", set(&[(&format!("k{i}"), "v")]), bounds)
                    .await
                    .expect("commit")
                    .0
                    .version
            })
        })
        .collect();
    let mut versions = Vec::new();
    for t in tasks {
        versions.push(t.await.expect("task"));
    }
    versions.sort_unstable();
    assert_eq!(versions, (1..=20).collect::<Vec<u64>>());
    let (v, entries) = current(&*s, "a").await;
    assert_eq!(v, 20);
    assert_eq!(entries.len(), 20, "every change is in the last version");
}

pub async fn namespaces_are_separate<S: ConfigStore>(s: Arc<S>) {
    s.config_commit("a", set(&[("x", "a")]), BOUNDS)
        .await
        .expect("a");
    s.config_commit("b", set(&[("x", "b")]), BOUNDS)
        .await
        .expect("b");
    assert_eq!(current(&*s, "a").await, (1, map(&[("x", "a")])));
    assert_eq!(current(&*s, "b").await, (1, map(&[("x", "b")])));
    assert!(s.config_version("c", None).await.expect("read").is_none());
    assert!(
        s.config_history("c", None, 10)
            .await
            .expect("history")
            .is_empty()
    );
}

/// Every kept version's bytes count towards the namespace's storage,
/// beside its key-value entries, for both services' quota checks.
pub async fn config_counts_towards_the_storage_quota<S: ConfigStore + KvStore>(s: Arc<S>) {
    let at = KvBucket {
        namespace: "a",
        store: "default",
    };
    s.kv_put(
        at,
        vec![KvPut {
            key: "k".into(),
            value: vec![0; 96],
            expires_at_ms: None,
            condition: KvCondition::Always,
        }],
        0,
        None,
    )
    .await
    .expect("kv put");
    s.config_commit("a", set(&[("x", "123456789")]), BOUNDS)
        .await
        .expect("commit");
    assert_eq!(s.storage_bytes("a").await.expect("bytes"), 97 + 10);
    let quota = ConfigBounds {
        quota_bytes: Some(120),
        ..BOUNDS
    };
    // Version 2 would keep 10 more bytes beside version 1: 117, within.
    s.config_commit("a", set(&[("x", "abcdefghi")]), quota)
        .await
        .expect("within the quota");
    match s.config_commit("a", set(&[("y", "1")]), quota).await {
        Err(ConfigError::QuotaExceeded {
            needed_bytes,
            limit_bytes: 120,
        }) => assert_eq!(needed_bytes, 117 + 12),
        other => panic!("expected the quota to refuse, got {other:?}"),
    }
    // The key-value service sees config's bytes too.
    match s
        .kv_put(
            at,
            vec![KvPut {
                key: "k2".into(),
                value: vec![0; 4],
                expires_at_ms: None,
                condition: KvCondition::Always,
            }],
            0,
            Some(120),
        )
        .await
    {
        Err(KvError::QuotaExceeded { needed_bytes, .. }) => assert_eq!(needed_bytes, 117 + 6),
        other => panic!("expected the quota to refuse, got {other:?}"),
    }
}
