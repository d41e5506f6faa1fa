//! The conformance suite of [`DocStore`] backends: one test per check,
//! each against a fresh store (`nimbus_core::docs_conformance_tests!(open())`,
//! as [`crate::kv_conformance_tests!`]).

use super::docs::{
    ChangeQuery, DocBounds, DocCondition, DocError, DocOp, DocQuery, DocStore, DocWrite,
};
use nimbus_api::docs::{ChangeOp, Dir, FieldPath, Filter};
use serde_json::{Map, Value, json};
use std::sync::Arc;

#[macro_export]
macro_rules! docs_conformance_tests {
    ($open:expr) => {
        $crate::docs_conformance_tests!(@each $open;
            put_get_delete_round_trip,
            conditions_decide_writes,
            patches_merge_into_the_current_document,
            transactions_are_all_or_nothing,
            queries_agree_with_the_meaning_of_filters,
            sorted_pages_resume_where_they_ended,
            counts_agree_with_queries,
            the_change_feed_holds_every_change_in_order,
            the_feed_is_pruned_by_age_and_size,
            pruning_by_age_leaves_no_gap,
            a_snapshot_is_one_moment,
            documents_count_towards_the_storage_quota,
            collections_count_documents_and_bytes,
            concurrent_writes_lose_nothing,
        );
    };
    (@each $open:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let (_guard, store) = $open;
                $crate::store::docs_conformance::$check(store).await;
            }
        )*
    };
}

const NS: &str = "a";
const NOW: u64 = 1_000;
const BOUNDS: DocBounds = DocBounds {
    max_doc_bytes: 4096,
    quota_bytes: None,
};

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().expect("an object")
}

fn put(collection: &str, id: &str, data: Value) -> DocWrite {
    DocWrite {
        collection: collection.to_owned(),
        id: id.to_owned(),
        op: DocOp::Put(obj(data)),
        condition: DocCondition::Always,
    }
}

async fn write<S: DocStore>(s: &S, writes: Vec<DocWrite>) -> Vec<u64> {
    s.docs_write(NS, writes, NOW, BOUNDS)
        .await
        .expect("write")
        .iter()
        .map(|w| w.version)
        .collect()
}

async fn data<S: DocStore>(s: &S, collection: &str, id: &str) -> Option<Value> {
    s.docs_get(NS, collection, vec![id.to_owned()])
        .await
        .expect("get")
        .pop()
        .flatten()
        .map(|d| Value::Object(d.data))
}

fn filter(v: Value) -> Filter {
    Filter::parse(&v).expect("a filter")
}

async fn all_changes<S: DocStore>(s: &S, after: u64) -> Vec<super::docs::ChangeRow> {
    s.docs_changes(ChangeQuery {
        after,
        limit: 1000,
        ..Default::default()
    })
    .await
    .expect("changes")
}

pub async fn put_get_delete_round_trip<S: DocStore>(s: Arc<S>) {
    let v1 = write(&*s, vec![put("c", "d1", json!({"n": 1}))]).await[0];
    let got = s
        .docs_get(NS, "c", vec!["d1".into(), "none".into()])
        .await
        .expect("get");
    let d = got[0].as_ref().expect("d1");
    assert_eq!(
        (d.version, d.created_at_ms, d.updated_at_ms),
        (v1, NOW, NOW)
    );
    assert!(got[1].is_none());
    let later = s
        .docs_write(NS, vec![put("c", "d1", json!({"n": 2}))], NOW + 5, BOUNDS)
        .await
        .expect("replace");
    assert_eq!(later[0].op, ChangeOp::Update);
    let d = s
        .docs_get(NS, "c", vec!["d1".into()])
        .await
        .expect("get")
        .pop()
        .flatten()
        .expect("d1");
    assert!(d.version > v1, "versions increase");
    assert_eq!((d.created_at_ms, d.updated_at_ms), (NOW, NOW + 5));
    assert_eq!(Value::Object(d.data), json!({"n": 2}));
    let del = s
        .docs_write(
            NS,
            vec![DocWrite {
                op: DocOp::Delete,
                ..put("c", "d1", json!({}))
            }],
            NOW,
            BOUNDS,
        )
        .await
        .expect("delete");
    assert_eq!(del[0].op, ChangeOp::Delete);
    assert!(data(&*s, "c", "d1").await.is_none());
    // A document made again gets a new version, never an old one.
    let again = write(&*s, vec![put("c", "d1", json!({}))]).await[0];
    assert!(again > del[0].version);
    // Another collection or namespace is another place.
    assert!(data(&*s, "other", "d1").await.is_none());
    assert!(s.docs_get("b", "c", vec!["d1".into()]).await.expect("get")[0].is_none());
}

pub async fn conditions_decide_writes<S: DocStore>(s: Arc<S>) {
    let with = |w: DocWrite, c: DocCondition| DocWrite { condition: c, ..w };
    let v = write(&*s, vec![put("c", "d", json!({"n": 1}))]).await[0];
    for (c, holds) in [
        (DocCondition::Absent, false),
        (DocCondition::Exists, true),
        (DocCondition::Version(v + 1000), false),
    ] {
        let r = s
            .docs_write(
                NS,
                vec![with(put("c", "d", json!({"n": 9})), c)],
                NOW,
                BOUNDS,
            )
            .await;
        match (holds, r) {
            (true, Ok(_)) => {}
            (false, Err(DocError::ConditionFailed { collection, id })) => {
                assert_eq!((collection.as_str(), id.as_str()), ("c", "d"));
            }
            (_, other) => panic!("{c:?}: {other:?}"),
        }
    }
    let current = s.docs_get(NS, "c", vec!["d".into()]).await.expect("get")[0]
        .clone()
        .expect("d");
    s.docs_write(
        NS,
        vec![with(
            put("c", "d", json!({"n": 10})),
            DocCondition::Version(current.version),
        )],
        NOW,
        BOUNDS,
    )
    .await
    .expect("at its version");
    assert_eq!(data(&*s, "c", "d").await, Some(json!({"n": 10})));
    assert!(matches!(
        s.docs_write(
            NS,
            vec![with(put("c", "new", json!({})), DocCondition::Exists)],
            NOW,
            BOUNDS
        )
        .await,
        Err(DocError::ConditionFailed { .. })
    ));
    assert!(data(&*s, "c", "new").await.is_none());
}

pub async fn patches_merge_into_the_current_document<S: DocStore>(s: Arc<S>) {
    write(
        &*s,
        vec![put("c", "d", json!({"a": 1, "b": {"x": 1, "y": 2}}))],
    )
    .await;
    let patch = |id: &str, p: Value| DocWrite {
        op: DocOp::Patch(p),
        ..put("c", id, json!({}))
    };
    let r = s
        .docs_write(
            NS,
            vec![patch("d", json!({"a": null, "b": {"y": 3}, "c": [1]}))],
            NOW,
            BOUNDS,
        )
        .await
        .expect("patch");
    assert_eq!(r[0].op, ChangeOp::Update);
    assert_eq!(
        data(&*s, "c", "d").await,
        Some(json!({"b": {"x": 1, "y": 3}, "c": [1]}))
    );
    assert!(matches!(
        s.docs_write(NS, vec![patch("none", json!({"a": 1}))], NOW, BOUNDS)
            .await,
        Err(DocError::NotFound { .. })
    ));
    // A patch that would make the document too large changes nothing.
    let big = "x".repeat(BOUNDS.max_doc_bytes);
    assert!(matches!(
        s.docs_write(NS, vec![patch("d", json!({ "big": big }))], NOW, BOUNDS)
            .await,
        Err(DocError::TooLarge { .. })
    ));
    assert_eq!(
        data(&*s, "c", "d").await,
        Some(json!({"b": {"x": 1, "y": 3}, "c": [1]}))
    );
}

pub async fn transactions_are_all_or_nothing<S: DocStore>(s: Arc<S>) {
    write(&*s, vec![put("c", "taken", json!({"v": 0}))]).await;
    let (last, _) = s.docs_feed_bounds().await.expect("bounds");
    let r = s
        .docs_write(
            NS,
            vec![
                put("c", "a", json!({"v": 1})),
                put("other", "b", json!({"v": 2})),
                DocWrite {
                    condition: DocCondition::Absent,
                    ..put("c", "taken", json!({"v": 3}))
                },
            ],
            NOW,
            BOUNDS,
        )
        .await;
    assert!(matches!(r, Err(DocError::ConditionFailed { .. })), "{r:?}");
    assert!(data(&*s, "c", "a").await.is_none());
    assert!(data(&*s, "other", "b").await.is_none());
    assert_eq!(data(&*s, "c", "taken").await, Some(json!({"v": 0})));
    assert!(
        all_changes(&*s, last).await.is_empty(),
        "a refused transaction leaves no change"
    );
    let collections = s.docs_collections(NS).await.expect("collections");
    assert_eq!(collections.len(), 1, "{collections:?}");
    // A document named twice: the second write sees the first.
    let done = s
        .docs_write(
            NS,
            vec![
                put("c", "twice", json!({"v": 1})),
                DocWrite {
                    op: DocOp::Patch(json!({"w": 2})),
                    condition: DocCondition::Exists,
                    ..put("c", "twice", json!({}))
                },
            ],
            NOW,
            BOUNDS,
        )
        .await
        .expect("transaction");
    assert_eq!(
        (done[0].op, done[1].op),
        (ChangeOp::Create, ChangeOp::Update)
    );
    assert_eq!(data(&*s, "c", "twice").await, Some(json!({"v": 1, "w": 2})));
}

/// Documents of every JSON shape a field can have.
fn corpus() -> Vec<(String, Value)> {
    let values = [
        json!(null),
        json!(true),
        json!(false),
        json!(0),
        json!(1),
        json!(1.5),
        json!(-3),
        json!(10),
        json!("1"),
        json!("a"),
        json!("b"),
        json!("é"),
        json!(["a", 1]),
        json!([1.5, "b"]),
        json!({"x": 1}),
    ];
    let mut out = Vec::new();
    for (i, v) in values.iter().enumerate() {
        out.push((
            format!("d{i:02}"),
            json!({"f": v, "g": {"h": values[(i * 7) % values.len()]}, "k": i % 3}),
        ));
    }
    out.push(("empty".to_owned(), json!({})));
    out.push(("huge".to_owned(), json!({"f": 9_007_199_254_740_993i64})));
    out.push(("nested-not-object".to_owned(), json!({"g": 5})));
    out
}

pub async fn queries_agree_with_the_meaning_of_filters<S: DocStore>(s: Arc<S>) {
    let docs = corpus();
    let writes = docs.iter().map(|(id, d)| put("c", id, d.clone())).collect();
    write(&*s, writes).await;
    let filters = [
        json!({"field": "f", "op": "==", "value": 1}),
        json!({"field": "f", "op": "==", "value": 1.0}),
        json!({"field": "f", "op": "==", "value": "1"}),
        json!({"field": "f", "op": "==", "value": true}),
        json!({"field": "f", "op": "==", "value": null}),
        json!({"field": "f", "op": "!=", "value": 1}),
        json!({"field": "f", "op": "<", "value": 1.5}),
        json!({"field": "f", "op": "<=", "value": 1.5}),
        json!({"field": "f", "op": ">", "value": 0}),
        json!({"field": "f", "op": ">=", "value": "a"}),
        json!({"field": "f", "op": "<", "value": "b"}),
        json!({"field": "f", "op": "in", "value": [1, "a", false]}),
        json!({"field": "f", "op": "not-in", "value": [1, "a", false]}),
        json!({"field": "f", "op": "contains", "value": "a"}),
        json!({"field": "f", "op": "contains", "value": 1.5}),
        json!({"field": "f", "op": "contains", "value": 1}),
        json!({"field": "f", "op": "exists", "value": true}),
        json!({"field": "f", "op": ">", "value": 9_007_199_254_740_992.0}),
        json!({"field": "f", "op": "==", "value": 9_007_199_254_740_992.0}),
        json!({"field": "f", "op": "<=", "value": 9_007_199_254_740_993i64}),
        json!({"field": "f", "op": "exists", "value": false}),
        json!({"field": "f.x", "op": "==", "value": 1}),
        json!({"field": "g.h", "op": ">", "value": -3}),
        json!({"field": "g.h", "op": "exists", "value": false}),
        json!({"and": [{"field": "k", "op": "==", "value": 1}, {"field": "f", "op": "exists", "value": true}]}),
        json!({"or": [{"field": "k", "op": "==", "value": 2}, {"field": "f", "op": "==", "value": "é"}]}),
        json!({"and": [{"or": [{"field": "k", "op": "==", "value": 0}, {"field": "k", "op": "==", "value": 1}]}, {"field": "f", "op": "!=", "value": null}]}),
    ];
    for f in filters {
        let parsed = filter(f.clone());
        let mut want: Vec<String> = docs
            .iter()
            .filter(|(_, d)| parsed.matches(d.as_object().expect("object")))
            .map(|(id, _)| id.clone())
            .collect();
        want.sort();
        let got: Vec<String> = s
            .docs_query(
                NS,
                "c",
                DocQuery {
                    filter: Some(parsed),
                    limit: 1000,
                    ..Default::default()
                },
            )
            .await
            .expect("query")
            .into_iter()
            .map(|d| d.id)
            .collect();
        assert_eq!(got, want, "{f}");
    }
}

pub async fn sorted_pages_resume_where_they_ended<S: DocStore>(s: Arc<S>) {
    let docs = corpus();
    let writes = docs.iter().map(|(id, d)| put("c", id, d.clone())).collect();
    write(&*s, writes).await;
    let path = |p: &str| FieldPath::parse(p).expect("path");
    for order in [
        vec![],
        vec![(path("f"), Dir::Asc)],
        vec![(path("f"), Dir::Desc)],
        vec![(path("k"), Dir::Asc), (path("g.h"), Dir::Desc)],
        vec![(path("k"), Dir::Desc), (path("f"), Dir::Asc)],
    ] {
        let whole: Vec<String> = s
            .docs_query(
                NS,
                "c",
                DocQuery {
                    order: order.clone(),
                    limit: 1000,
                    ..Default::default()
                },
            )
            .await
            .expect("query")
            .into_iter()
            .map(|d| d.id)
            .collect();
        assert_eq!(whole.len(), docs.len());
        let mut paged = Vec::new();
        let mut after = None;
        loop {
            let page = s
                .docs_query(
                    NS,
                    "c",
                    DocQuery {
                        order: order.clone(),
                        after: after.clone(),
                        limit: 4,
                        ..Default::default()
                    },
                )
                .await
                .expect("page");
            let Some(last) = page.last() else { break };
            after = Some((last.sort_keys.clone(), last.id.clone()));
            paged.extend(page.iter().map(|d| d.id.clone()));
            assert!(paged.len() <= docs.len(), "{order:?}: pages repeat");
        }
        assert_eq!(paged, whole, "{order:?}");
    }
    // Ascending on numbers: smaller first, missing first.
    let ids: Vec<String> = s
        .docs_query(
            NS,
            "c",
            DocQuery {
                filter: Some(filter(
                    json!({"field": "f", "op": "in", "value": [10, -3, 1.5]}),
                )),
                order: vec![(path("f"), Dir::Asc)],
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .expect("query")
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(ids, ["d06", "d05", "d07"]);
}

pub async fn counts_agree_with_queries<S: DocStore>(s: Arc<S>) {
    let docs = corpus();
    let writes = docs.iter().map(|(id, d)| put("c", id, d.clone())).collect();
    write(&*s, writes).await;
    assert_eq!(
        s.docs_count(NS, "c", None).await.expect("count"),
        docs.len() as u64
    );
    let f = filter(json!({"field": "k", "op": "==", "value": 1}));
    let want = docs
        .iter()
        .filter(|(_, d)| f.matches(d.as_object().expect("object")))
        .count() as u64;
    assert_eq!(s.docs_count(NS, "c", Some(f)).await.expect("count"), want);
    assert_eq!(s.docs_count(NS, "none", None).await.expect("count"), 0);
}

pub async fn the_change_feed_holds_every_change_in_order<S: DocStore>(s: Arc<S>) {
    let (start, _) = s.docs_feed_bounds().await.expect("bounds");
    let v = write(
        &*s,
        vec![
            put("c", "x", json!({"n": 1})),
            put("d", "y", json!({"n": 2})),
        ],
    )
    .await;
    let u = write(&*s, vec![put("c", "x", json!({"n": 3}))]).await[0];
    let del = s
        .docs_write(
            NS,
            vec![DocWrite {
                op: DocOp::Delete,
                ..put("c", "x", json!({}))
            }],
            NOW,
            BOUNDS,
        )
        .await
        .expect("delete")[0]
        .version;
    s.docs_write("b", vec![put("c", "z", json!({}))], NOW, BOUNDS)
        .await
        .expect("other namespace");
    let feed = all_changes(&*s, start).await;
    let seen: Vec<(u64, &str, &str, ChangeOp)> = feed
        .iter()
        .map(|c| (c.seq, c.namespace.as_str(), c.id.as_str(), c.op))
        .collect();
    assert_eq!(
        seen[..4],
        [
            (v[0], NS, "x", ChangeOp::Create),
            (v[1], NS, "y", ChangeOp::Create),
            (u, NS, "x", ChangeOp::Update),
            (del, NS, "x", ChangeOp::Delete),
        ]
    );
    assert_eq!(seen[4].1, "b");
    assert_eq!(feed[2].data, Some(obj(json!({"n": 3}))));
    assert_eq!(feed[3].data, None);
    // Filtered by namespace and collection, and resumed after a seq.
    let c_only = s
        .docs_changes(ChangeQuery {
            namespace: Some(NS.to_owned()),
            collection: Some("c".to_owned()),
            after: v[0],
            limit: 10,
        })
        .await
        .expect("changes");
    assert_eq!(c_only.iter().map(|c| c.seq).collect::<Vec<_>>(), [u, del]);
    let (last, _) = s.docs_feed_bounds().await.expect("bounds");
    assert_eq!(last, feed.last().expect("a change").seq);
}

/// Times out of seq order (clocks step back, writers race): pruning by age
/// removes only a prefix of the feed, so no gap opens inside what is kept.
pub async fn pruning_by_age_leaves_no_gap<S: DocStore>(s: Arc<S>) {
    for (i, at) in [100u64, 300, 200, 400].iter().enumerate() {
        s.docs_write(NS, vec![put("p", &format!("p{i}"), json!({}))], *at, BOUNDS)
            .await
            .expect("write");
    }
    let (last, _) = s.docs_feed_bounds().await.expect("bounds");
    // Older than 250: the first and the third; the second is newer, so
    // the third stays with it.
    s.docs_prune_changes(250, 100).await.expect("prune");
    let kept: Vec<u64> = all_changes(&*s, 0).await.iter().map(|c| c.seq).collect();
    let (_, horizon) = s.docs_feed_bounds().await.expect("bounds");
    assert_eq!(kept, ((horizon + 1)..=last).collect::<Vec<_>>(), "no gap");
    assert_eq!(kept.len(), 3);
}

pub async fn the_feed_is_pruned_by_age_and_size<S: DocStore>(s: Arc<S>) {
    for (i, at) in [100u64, 200, 300, 400, 500].iter().enumerate() {
        s.docs_write(NS, vec![put("c", &format!("d{i}"), json!({}))], *at, BOUNDS)
            .await
            .expect("write");
    }
    let (last, horizon) = s.docs_feed_bounds().await.expect("bounds");
    assert_eq!(horizon + 5, last);
    // Older than 250 ms: two go; then only the newest 2 are kept.
    assert_eq!(s.docs_prune_changes(250, 100).await.expect("prune"), 2);
    assert_eq!(s.docs_prune_changes(0, 2).await.expect("prune"), 1);
    let (last2, horizon2) = s.docs_feed_bounds().await.expect("bounds");
    assert_eq!((last2, horizon2), (last, last - 2));
    assert_eq!(all_changes(&*s, 0).await.len(), 2);
    // The documents themselves stay.
    assert!(data(&*s, "c", "d0").await.is_some());
    // Pruned to nothing, the last seq still counts on.
    assert_eq!(
        s.docs_prune_changes(u64::MAX >> 2, 100)
            .await
            .expect("prune"),
        2
    );
    assert_eq!(s.docs_feed_bounds().await.expect("bounds"), (last, last));
    let next = write(&*s, vec![put("c", "after", json!({}))]).await[0];
    assert!(next > last, "seqs are never reused");
}

pub async fn documents_count_towards_the_storage_quota<S: DocStore + super::kv::KvStore>(
    s: Arc<S>,
) {
    // {"v":"xxxxxxxxxx"} is 18 bytes; with the id "d1", 20.
    write(&*s, vec![put("c", "d1", json!({"v": "xxxxxxxxxx"}))]).await;
    assert_eq!(s.storage_bytes(NS).await.expect("bytes"), 20);
    let quota = DocBounds {
        quota_bytes: Some(45),
        ..BOUNDS
    };
    s.docs_write(
        NS,
        vec![put("c", "d2", json!({"v": "xxxxxxxxxx"}))],
        NOW,
        quota,
    )
    .await
    .expect("within");
    match s
        .docs_write(NS, vec![put("c", "d3", json!({"v": "x"}))], NOW, quota)
        .await
    {
        Err(DocError::QuotaExceeded {
            needed_bytes,
            limit_bytes: 45,
        }) => assert_eq!(needed_bytes, 40 + 11),
        other => panic!("expected the quota to refuse, got {other:?}"),
    }
    assert!(data(&*s, "c", "d3").await.is_none());
    // A write that shrinks passes over the quota.
    s.docs_write(
        NS,
        vec![put("c", "d1", json!({}))],
        NOW,
        DocBounds {
            quota_bytes: Some(1),
            ..BOUNDS
        },
    )
    .await
    .expect("shrinking");
}

pub async fn collections_count_documents_and_bytes<S: DocStore>(s: Arc<S>) {
    write(
        &*s,
        vec![
            put("b", "x", json!({"n": 1})),
            put("a", "y", json!({})),
            put("a", "z", json!({})),
        ],
    )
    .await;
    let list = s.docs_collections(NS).await.expect("collections");
    let seen: Vec<(&str, u64, u64)> = list
        .iter()
        .map(|c| (c.name.as_str(), c.docs, c.bytes))
        .collect();
    assert_eq!(seen, [("a", 2, 6), ("b", 1, 8)]);
    let one = s.docs_collection(NS, "b").await.expect("collection");
    assert_eq!(one.map(|c| (c.docs, c.bytes)), Some((1, 8)));
    assert!(
        s.docs_collection(NS, "none")
            .await
            .expect("collection")
            .is_none()
    );
    s.docs_write(
        NS,
        vec![DocWrite {
            op: DocOp::Delete,
            ..put("b", "x", json!({}))
        }],
        NOW,
        BOUNDS,
    )
    .await
    .expect("delete");
    let list = s.docs_collections(NS).await.expect("collections");
    assert_eq!(list.len(), 1, "an emptied collection is not listed");
}

pub async fn concurrent_writes_lose_nothing<S: DocStore>(s: Arc<S>) {
    let (start, _) = s.docs_feed_bounds().await.expect("bounds");
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                for j in 0..5 {
                    s.docs_write(
                        NS,
                        vec![put("c", &format!("t{i}-{j}"), json!({ "i": i }))],
                        NOW,
                        BOUNDS,
                    )
                    .await
                    .expect("write");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    assert_eq!(s.docs_count(NS, "c", None).await.expect("count"), 100);
    let feed = all_changes(&*s, start).await;
    assert_eq!(feed.len(), 100);
    assert!(feed.windows(2).all(|w| w[0].seq < w[1].seq), "in seq order");
}

/// A snapshot's rows and head are of one moment: the head is the last
/// change the rows reflect.
pub async fn a_snapshot_is_one_moment<S: DocStore>(s: Arc<S>) {
    write(&*s, vec![put("c", "a", json!({"n": 1}))]).await;
    let last = write(&*s, vec![put("c", "b", json!({"n": 2}))]).await[0];
    write(&*s, vec![put("other", "x", json!({}))]).await;
    let (rows, head) = s
        .docs_snapshot(
            NS,
            "c",
            DocQuery {
                filter: Some(filter(json!({"field": "n", "op": ">", "value": 0}))),
                order: vec![(FieldPath::parse("n").expect("path"), Dir::Desc)],
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .expect("snapshot");
    let (feed_last, _) = s.docs_feed_bounds().await.expect("bounds");
    assert_eq!(head, feed_last);
    assert!(head > last);
    assert_eq!(
        rows.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["b", "a"]
    );
    assert_eq!(rows[0].sort_keys, vec![json!(2)]);
}
