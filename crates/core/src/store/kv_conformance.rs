//! The conformance suite of [`KvStore`] backends: one test per check, each
//! against a fresh store (`nimbus_core::kv_conformance_tests!(open())`,
//! as [`crate::store_conformance_tests!`]).

use super::kv::{KvBucket, KvCondition, KvError, KvPut, KvStore};
use std::sync::Arc;

#[macro_export]
macro_rules! kv_conformance_tests {
    ($open:expr) => {
        $crate::kv_conformance_tests!(@each $open;
            set_get_delete_round_trip,
            versions_increase_and_are_never_reused,
            conditions_decide_writes,
            batches_are_all_or_nothing,
            quota_counts_every_store_and_refuses_only_growth,
            increments_are_exact_under_concurrency,
            increments_refuse_non_counters_and_overflow,
            expired_entries_are_absent_and_swept,
            keys_page_by_prefix_within_one_store,
            stores_count_keys_and_bytes,
        );
    };
    (@each $open:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let (_guard, store) = $open;
                $crate::store::kv_conformance::$check(store).await;
            }
        )*
    };
}

const A: KvBucket<'static> = KvBucket {
    namespace: "a",
    store: "default",
};
const NOW: u64 = 1_000_000;

fn put(key: &str, value: &str) -> KvPut {
    KvPut {
        key: key.to_owned(),
        value: value.as_bytes().to_vec(),
        expires_at_ms: None,
        condition: KvCondition::Always,
    }
}

async fn value<S: KvStore>(s: &S, at: KvBucket<'_>, key: &str) -> Option<String> {
    s.kv_get(at, vec![key.to_owned()], NOW)
        .await
        .expect("get")
        .pop()
        .flatten()
        .map(|e| String::from_utf8(e.value).expect("utf-8"))
}

pub async fn set_get_delete_round_trip<S: KvStore>(s: Arc<S>) {
    s.kv_put(A, vec![put("k", "v1")], NOW, None)
        .await
        .expect("put");
    assert_eq!(value(&*s, A, "k").await.as_deref(), Some("v1"));
    s.kv_put(A, vec![put("k", "v2")], NOW, None)
        .await
        .expect("replace");
    assert_eq!(value(&*s, A, "k").await.as_deref(), Some("v2"));
    let got = s
        .kv_get(A, vec!["k".into(), "missing".into()], NOW)
        .await
        .expect("get");
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].as_ref().map(|e| e.key.as_str()), Some("k"));
    assert!(got[1].is_none());
    let deleted = s
        .kv_delete(
            A,
            vec![
                ("k".into(), KvCondition::Always),
                ("missing".into(), KvCondition::Always),
            ],
            NOW,
        )
        .await
        .expect("delete");
    assert_eq!(deleted, 1);
    assert_eq!(value(&*s, A, "k").await, None);
    // Binary values come back as they went in.
    let bytes: Vec<u8> = (0..=255).collect();
    let mut p = put("bin", "");
    p.value = bytes.clone();
    s.kv_put(A, vec![p], NOW, None).await.expect("put binary");
    let got = s.kv_get(A, vec!["bin".into()], NOW).await.expect("get");
    assert_eq!(got[0].as_ref().map(|e| e.value.clone()), Some(bytes));
}

pub async fn versions_increase_and_are_never_reused<S: KvStore>(s: Arc<S>) {
    let v1 = s
        .kv_put(A, vec![put("k", "1")], NOW, None)
        .await
        .expect("put")[0];
    let v2 = s
        .kv_put(A, vec![put("k", "2")], NOW, None)
        .await
        .expect("put")[0];
    assert!(v2 > v1);
    s.kv_delete(A, vec![("k".into(), KvCondition::Always)], NOW)
        .await
        .expect("delete");
    let v3 = s
        .kv_put(A, vec![put("k", "3")], NOW, None)
        .await
        .expect("put")[0];
    assert!(v3 > v2, "a key written again gets a new version");
    let other = KvBucket {
        namespace: "b",
        store: "default",
    };
    let v4 = s
        .kv_put(other, vec![put("k", "4")], NOW, None)
        .await
        .expect("put")[0];
    assert!(v4 > v3, "versions increase across namespaces");
    let many = s
        .kv_put(A, vec![put("x", "1"), put("y", "2")], NOW, None)
        .await
        .expect("put many");
    assert!(many[0] > v4 && many[1] > many[0]);
    let got = s.kv_get(A, vec!["y".into()], NOW).await.expect("get");
    assert_eq!(got[0].as_ref().map(|e| e.version), Some(many[1]));
}

pub async fn conditions_decide_writes<S: KvStore>(s: Arc<S>) {
    let mut create = put("k", "first");
    create.condition = KvCondition::Absent;
    let v1 = s
        .kv_put(A, vec![create.clone()], NOW, None)
        .await
        .expect("create")[0];
    assert!(matches!(
        s.kv_put(A, vec![create], NOW, None).await,
        Err(KvError::ConditionFailed(k)) if k == "k"
    ));
    let mut stale = put("k", "stale");
    stale.condition = KvCondition::Version(v1 + 1000);
    assert!(matches!(
        s.kv_put(A, vec![stale], NOW, None).await,
        Err(KvError::ConditionFailed(_))
    ));
    let mut fresh = put("k", "second");
    fresh.condition = KvCondition::Version(v1);
    let v2 = s.kv_put(A, vec![fresh], NOW, None).await.expect("swap")[0];
    assert_eq!(value(&*s, A, "k").await.as_deref(), Some("second"));
    assert!(matches!(
        s.kv_delete(A, vec![("k".into(), KvCondition::Version(v1))], NOW)
            .await,
        Err(KvError::ConditionFailed(_))
    ));
    assert_eq!(
        s.kv_delete(A, vec![("k".into(), KvCondition::Version(v2))], NOW)
            .await
            .expect("delete"),
        1
    );
    // A version on a missing key never holds.
    let mut gone = put("k", "x");
    gone.condition = KvCondition::Version(v2);
    assert!(s.kv_put(A, vec![gone], NOW, None).await.is_err());
}

pub async fn batches_are_all_or_nothing<S: KvStore>(s: Arc<S>) {
    s.kv_put(A, vec![put("taken", "old")], NOW, None)
        .await
        .expect("put");
    let mut last = put("taken", "new");
    last.condition = KvCondition::Absent;
    let r = s
        .kv_put(A, vec![put("a", "1"), put("b", "2"), last], NOW, None)
        .await;
    assert!(matches!(r, Err(KvError::ConditionFailed(k)) if k == "taken"));
    assert_eq!(value(&*s, A, "a").await, None, "nothing of the batch");
    assert_eq!(value(&*s, A, "b").await, None);
    assert_eq!(value(&*s, A, "taken").await.as_deref(), Some("old"));
    let r = s
        .kv_delete(
            A,
            vec![
                ("taken".into(), KvCondition::Always),
                ("nope".into(), KvCondition::Version(1)),
            ],
            NOW,
        )
        .await;
    assert!(r.is_err());
    assert_eq!(value(&*s, A, "taken").await.as_deref(), Some("old"));
    let stores = s.kv_stores("a").await.expect("stores");
    assert_eq!((stores[0].keys, stores[0].bytes), (1, 8), "taken + old");
}

pub async fn quota_counts_every_store_and_refuses_only_growth<S: KvStore>(s: Arc<S>) {
    let other = KvBucket {
        namespace: "a",
        store: "other",
    };
    // 1 + 9 = 10 bytes in one store, 10 in another: 20 of 25.
    s.kv_put(A, vec![put("k", "123456789")], NOW, Some(25))
        .await
        .expect("put");
    s.kv_put(other, vec![put("k", "123456789")], NOW, Some(25))
        .await
        .expect("put");
    assert_eq!(s.storage_bytes("a").await.expect("bytes"), 20);
    match s.kv_put(A, vec![put("j", "123456")], NOW, Some(25)).await {
        Err(KvError::QuotaExceeded {
            needed_bytes,
            limit_bytes,
        }) => assert_eq!((needed_bytes, limit_bytes), (27, 25)),
        other => panic!("expected the quota: {other:?}"),
    }
    assert_eq!(value(&*s, A, "j").await, None);
    // Replacing a value with a shorter one passes even over the quota.
    s.kv_put(A, vec![put("k", "1")], NOW, Some(5))
        .await
        .expect("shrink");
    assert_eq!(s.storage_bytes("a").await.expect("bytes"), 12);
    // Increments count too.
    assert!(matches!(
        s.kv_incr(A, "counter".into(), 1, NOW, Some(12)).await,
        Err(KvError::QuotaExceeded { .. })
    ));
    // Another namespace has its own storage.
    let b = KvBucket {
        namespace: "b",
        store: "default",
    };
    s.kv_put(b, vec![put("k", "123456789")], NOW, Some(10))
        .await
        .expect("b");
    assert_eq!(s.storage_bytes("b").await.expect("bytes"), 10);
    s.kv_delete(A, vec![("k".into(), KvCondition::Always)], NOW)
        .await
        .expect("delete");
    assert_eq!(s.storage_bytes("a").await.expect("bytes"), 10);
}

pub async fn increments_are_exact_under_concurrency<S: KvStore>(s: Arc<S>) {
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                s.kv_incr(A, "hits".into(), 1, NOW, None)
                    .await
                    .expect("incr");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    assert_eq!(value(&*s, A, "hits").await.as_deref(), Some("500"));
    let (n, _) = s
        .kv_incr(A, "hits".into(), -600, NOW, None)
        .await
        .expect("down");
    assert_eq!(n, -100);
}

pub async fn increments_refuse_non_counters_and_overflow<S: KvStore>(s: Arc<S>) {
    s.kv_put(A, vec![put("name", "ada")], NOW, None)
        .await
        .expect("put");
    assert!(matches!(
        s.kv_incr(A, "name".into(), 1, NOW, None).await,
        Err(KvError::NotACounter(k)) if k == "name"
    ));
    assert_eq!(value(&*s, A, "name").await.as_deref(), Some("ada"));
    s.kv_put(A, vec![put("big", &i64::MAX.to_string())], NOW, None)
        .await
        .expect("put");
    assert!(matches!(
        s.kv_incr(A, "big".into(), 1, NOW, None).await,
        Err(KvError::Overflow(_))
    ));
    let (n, v) = s
        .kv_incr(A, "fresh".into(), 5, NOW, None)
        .await
        .expect("incr");
    assert_eq!(n, 5);
    let got = s.kv_get(A, vec!["fresh".into()], NOW).await.expect("get");
    assert_eq!(
        got[0].as_ref().map(|e| (e.value.clone(), e.version)),
        Some((b"5".to_vec(), v))
    );
}

pub async fn expired_entries_are_absent_and_swept<S: KvStore>(s: Arc<S>) {
    let mut short = put("short", "9");
    short.expires_at_ms = Some(NOW + 10);
    let mut long = put("long", "v");
    long.expires_at_ms = Some(NOW + 10_000);
    s.kv_put(A, vec![short, long], NOW, None)
        .await
        .expect("put");
    assert_eq!(value(&*s, A, "short").await.as_deref(), Some("9"));
    let later = NOW + 20;
    let got = s
        .kv_get(A, vec!["short".into(), "long".into()], later)
        .await
        .expect("get");
    assert!(got[0].is_none(), "expired");
    assert_eq!(
        got[1].as_ref().and_then(|e| e.expires_at_ms),
        Some(NOW + 10_000)
    );
    let keys = s
        .kv_keys(A, String::new(), None, 10, later)
        .await
        .expect("keys");
    assert_eq!(keys, vec!["long".to_owned()]);
    // An expired entry is absent to conditions and counters too.
    let mut create = put("short", "new");
    create.condition = KvCondition::Absent;
    s.kv_put(A, vec![create], later, None)
        .await
        .expect("create over expired");
    s.kv_put(
        A,
        vec![KvPut {
            expires_at_ms: Some(NOW + 10),
            ..put("c", "41")
        }],
        NOW,
        None,
    )
    .await
    .expect("put counter");
    let (n, _) = s
        .kv_incr(A, "c".into(), 1, later, None)
        .await
        .expect("incr");
    assert_eq!(n, 1, "an expired counter starts again");
    // Sweeping removes what expired and gives its bytes back.
    let mut gone = put("gone", "12345");
    gone.expires_at_ms = Some(NOW + 10);
    s.kv_put(A, vec![gone], NOW, None).await.expect("put");
    let before = s.storage_bytes("a").await.expect("bytes");
    assert_eq!(s.kv_sweep(later, 100).await.expect("sweep"), 1);
    assert_eq!(s.storage_bytes("a").await.expect("bytes"), before - 9);
    assert_eq!(s.kv_sweep(later, 100).await.expect("sweep"), 0);
}

pub async fn keys_page_by_prefix_within_one_store<S: KvStore>(s: Arc<S>) {
    let puts = [
        "user:1",
        "user:2",
        "user:10",
        "users",
        "order:1",
        "user:\u{e9}",
    ]
    .iter()
    .map(|k| put(k, "v"))
    .collect();
    s.kv_put(A, puts, NOW, None).await.expect("put");
    let elsewhere = [
        KvBucket {
            namespace: "a",
            store: "other",
        },
        KvBucket {
            namespace: "b",
            store: "default",
        },
    ];
    for at in elsewhere {
        s.kv_put(at, vec![put("user:0", "v")], NOW, None)
            .await
            .expect("put");
    }
    let page = s
        .kv_keys(A, "user:".into(), None, 2, NOW)
        .await
        .expect("keys");
    assert_eq!(page, vec!["user:1", "user:10"]);
    let rest = s
        .kv_keys(A, "user:".into(), page.last().cloned(), 10, NOW)
        .await
        .expect("keys");
    assert_eq!(rest, vec!["user:2", "user:\u{e9}"]);
    let all = s
        .kv_keys(A, String::new(), None, 100, NOW)
        .await
        .expect("keys");
    assert_eq!(all.len(), 6);
    assert_eq!(all[0], "order:1");
}

pub async fn stores_count_keys_and_bytes<S: KvStore>(s: Arc<S>) {
    let other = KvBucket {
        namespace: "a",
        store: "cart",
    };
    s.kv_put(A, vec![put("k1", "abc"), put("k2", "de")], NOW, None)
        .await
        .expect("put");
    s.kv_put(other, vec![put("x", "y")], NOW, None)
        .await
        .expect("put");
    let stores = s.kv_stores("a").await.expect("stores");
    let shown: Vec<(String, u64, u64)> = stores
        .into_iter()
        .map(|i| (i.name, i.keys, i.bytes))
        .collect();
    assert_eq!(
        shown,
        vec![("cart".to_owned(), 1, 2), ("default".to_owned(), 2, 9)]
    );
    s.kv_delete(other, vec![("x".into(), KvCondition::Always)], NOW)
        .await
        .expect("delete");
    let stores = s.kv_stores("a").await.expect("stores");
    assert_eq!(stores.len(), 1, "an emptied store is not listed");
    assert!(s.kv_stores("b").await.expect("stores").is_empty());
}
