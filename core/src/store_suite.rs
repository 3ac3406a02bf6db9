//! The store test suites: the behaviours every [`Store`] ([`run`]), [`SessionStore`]
//! ([`sessions`]) and [`EventStore`] ([`events`]) implementation must show. Adapters call them
//! from their own tests with fresh stores (the in-memory ones run them in core).

// A test suite: a failed expectation is a panic with the case, by design.
#![allow(clippy::unwrap_used)]

use serde_json::json;

use crate::platform::BoxFuture;
use crate::ports::{Cache, EventStore, Kind, Op, Record, SessionState, SessionStore, Store, StoreError};

fn rec(kind: Kind, id: &str, key: &str, n: i64) -> Record {
    Record {
        kind,
        id: id.into(),
        key: key.into(),
        body: json!({"name": key, "n": n}),
        created_at: 1,
        updated_at: 1,
    }
}

/// Runs every case against `store`, which must start empty. Panics with the failed case.
pub async fn run<S: Store + ?Sized>(store: &S) {
    store.ping().await.expect("the store answers");
    // Insert, get by id and by key, list in key order.
    store
        .insert(rec(Kind::Tool, "id-b", "beta", 1))
        .await
        .expect("insert beta");
    store
        .insert(rec(Kind::Tool, "id-a", "alpha", 1))
        .await
        .expect("insert alpha");
    store
        .insert(rec(Kind::Prompt, "id-p", "alpha", 1))
        .await
        .expect("same key, other kind");
    assert_eq!(store.get(Kind::Tool, "id-a").await.unwrap().unwrap().key, "alpha");
    assert_eq!(store.get(Kind::Tool, "beta").await.unwrap().unwrap().id, "id-b");
    assert!(store.get(Kind::Tool, "nope").await.unwrap().is_none());
    assert!(
        store.get(Kind::Server, "alpha").await.unwrap().is_none(),
        "kinds are separate"
    );
    let keys: Vec<String> = store
        .list(Kind::Tool)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.key)
        .collect();
    assert_eq!(keys, ["alpha", "beta"]);
    // Unique keys and ids.
    let dup = store.insert(rec(Kind::Tool, "id-c", "alpha", 2)).await;
    assert!(
        matches!(dup, Err(StoreError::Conflict { .. })),
        "duplicate key: {dup:?}"
    );
    let dup = store.insert(rec(Kind::Tool, "id-a", "gamma", 2)).await;
    assert!(matches!(dup, Err(StoreError::Conflict { .. })), "duplicate id: {dup:?}");
    // Update: body and key change; conflicts and missing ids refused.
    let mut a = rec(Kind::Tool, "id-a", "alpha2", 5);
    a.updated_at = 9;
    store.update(a.clone()).await.expect("update");
    let got = store.get(Kind::Tool, "id-a").await.unwrap().unwrap();
    assert_eq!(
        (got.key.as_str(), got.body["n"].as_i64(), got.updated_at, got.created_at),
        ("alpha2", Some(5), 9, 1)
    );
    assert!(store.get(Kind::Tool, "alpha").await.unwrap().is_none(), "old key gone");
    let clash = store.update(rec(Kind::Tool, "id-a", "beta", 1)).await;
    assert!(matches!(clash, Err(StoreError::Conflict { .. })), "{clash:?}");
    let missing = store.update(rec(Kind::Tool, "id-z", "zeta", 1)).await;
    assert!(matches!(missing, Err(StoreError::NotFound { .. })), "{missing:?}");
    // Upsert by key keeps id and created_at.
    let mut up = rec(Kind::Tool, "id-new", "beta", 7);
    up.created_at = 50;
    store.apply(vec![Op::Upsert(up)]).await.expect("upsert existing");
    let b = store.get(Kind::Tool, "beta").await.unwrap().unwrap();
    assert_eq!(
        (b.id.as_str(), b.created_at, b.body["n"].as_i64()),
        ("id-b", 1, Some(7))
    );
    store
        .apply(vec![Op::Upsert(rec(Kind::Tool, "id-d", "delta", 1))])
        .await
        .expect("upsert new");
    assert_eq!(store.list(Kind::Tool).await.unwrap().len(), 3);
    // A failing batch changes nothing.
    let batch = vec![
        Op::Insert(rec(Kind::Tool, "id-e", "eps", 1)),
        Op::Insert(rec(Kind::Tool, "id-f", "delta", 1)),
    ];
    assert!(store.apply(batch).await.is_err());
    assert!(store.get(Kind::Tool, "eps").await.unwrap().is_none(), "batch is atomic");
    // A good batch applies wholly.
    let batch = vec![
        Op::Insert(rec(Kind::Server, "id-s", "srv", 1)),
        Op::Delete {
            kind: Kind::Tool,
            id: "id-d".into(),
        },
        Op::Upsert(rec(Kind::Resource, "id-r", "docs://x", 1)),
    ];
    store.apply(batch).await.expect("batch");
    assert!(store.get(Kind::Tool, "delta").await.unwrap().is_none());
    assert!(store.get(Kind::Server, "srv").await.unwrap().is_some());
    assert!(
        store.get(Kind::Resource, "docs://x").await.unwrap().is_some(),
        "URI keys work"
    );
    // Delete reports whether it existed.
    assert!(store.delete(Kind::Tool, "id-b").await.unwrap());
    assert!(!store.delete(Kind::Tool, "id-b").await.unwrap());
    // Bodies round-trip exactly, including unicode and nesting.
    let mut odd = rec(Kind::Prompt, "id-u", "ünï", 0);
    odd.body = json!({"t": "line1\nline2 \"q\" ✓", "deep": {"a": [1, 2.5, null, true]}});
    store.insert(odd.clone()).await.unwrap();
    assert_eq!(store.get(Kind::Prompt, "ünï").await.unwrap().unwrap(), odd);
    // The raw listing is the listing, bodies as text.
    let full = store.list(Kind::Prompt).await.unwrap();
    let raw = store.list_raw(Kind::Prompt).await.unwrap();
    assert_eq!(full.len(), raw.len());
    for (f, r) in full.iter().zip(&raw) {
        assert_eq!((&f.id, &f.key, f.updated_at), (&r.id, &r.key, r.updated_at));
        assert_eq!(f.body, serde_json::from_str::<serde_json::Value>(&r.body).unwrap());
    }
    // The version moves with every write, and only with writes (a failed one may or may not).
    let v = store.version().await.expect("version");
    assert_eq!(store.version().await.unwrap(), v, "reads do not move it");
    store.list(Kind::Tool).await.unwrap();
    assert_eq!(store.version().await.unwrap(), v, "listing does not move it");
    let mut changed = odd.clone();
    changed.body = json!({"t": "other"});
    store.update(changed).await.unwrap();
    let v2 = store.version().await.unwrap();
    assert_ne!(v2, v, "an update moves it");
    store.delete(Kind::Prompt, "id-u").await.unwrap();
    let v3 = store.version().await.unwrap();
    assert!(v3 != v2 && v3 != v, "a delete moves it");
    store.insert(odd).await.unwrap();
    assert!(
        ![v, v2, v3].contains(&store.version().await.unwrap()),
        "an insert moves it"
    );
}

fn session(id: &str, last_seen: u64) -> SessionState {
    SessionState {
        id: id.into(),
        protocol_version: Some(crate::proto::version::ProtocolVersion::V2025_11_25),
        server: Some("srv".into()),
        client_capabilities: json!({"sampling": {}}),
        client_info: json!({"name": "c ✓", "version": "1"}),
        log_level: None,
        legacy_sse: false,
        created_at: 1,
        last_seen,
        owner: Some("alice".into()),
    }
}

/// Session state: kept whole, touched, expired by `last_seen`, counted, removed. `store` must
/// start empty.
pub async fn sessions<S: SessionStore + ?Sized>(store: &S) {
    assert_eq!((store.count().await, store.oldest_seen().await), (0, None));
    store.put(session("old", 10)).await;
    store.put(session("new", 100)).await;
    assert_eq!(store.get("new").await, Some(session("new", 100)), "kept whole");
    assert!(store.get("nope").await.is_none());
    assert_eq!((store.count().await, store.oldest_seen().await), (2, Some(10)));
    // A touch moves it out of the next expiry.
    store.put(session("old", 60)).await;
    assert_eq!(store.oldest_seen().await, Some(60));
    assert_eq!(store.expire(50).await, Vec::<String>::new(), "touched since");
    assert_eq!(store.expire(70).await, vec!["old".to_string()]);
    assert!(store.get("old").await.is_none() && store.get("new").await.is_some());
    assert_eq!(store.count().await, 1);
    assert!(store.remove("new").await && !store.remove("new").await);
    assert_eq!((store.count().await, store.oldest_seen().await), (0, None));
}

/// Event logs, for a store keeping the last 3 events of a stream and the last 2 streams of a
/// session: session-wide sequence numbers, replay after one, both bounds, forgetting.
pub async fn events<S: EventStore + ?Sized>(events: &S) {
    for i in 1..=5 {
        assert_eq!(events.append("s", "p1", format!("e{i}")).await, i);
    }
    assert_eq!(
        events.append("s", "g", "other\nline ✓".into()).await,
        6,
        "sequence numbers are session-wide"
    );
    assert_eq!(events.append("t", "p1", "another session".into()).await, 1);
    let after2: Vec<String> = events.replay("s", "p1", 2).await.into_iter().map(|e| e.data).collect();
    assert_eq!(after2, ["e3", "e4", "e5"]);
    let all: Vec<u64> = events.replay("s", "p1", 0).await.into_iter().map(|e| e.seq).collect();
    assert_eq!(all, [3, 4, 5], "only the last 3 are kept");
    assert_eq!(events.replay("s", "g", 0).await[0].data, "other\nline ✓");
    events.append("s", "p2", "x".into()).await;
    assert!(
        events.replay("s", "p1", 0).await.is_empty(),
        "the oldest stream is dropped past 2"
    );
    assert_eq!(events.replay("s", "g", 0).await.len(), 1);
    // A stream opened again after eviction never reuses an id.
    assert_eq!(events.append("s", "p1", "again".into()).await, 8);
    let again: Vec<u64> = events.replay("s", "p1", 5).await.into_iter().map(|e| e.seq).collect();
    assert_eq!(again, [8]);
    events.forget("s").await;
    assert!(events.replay("s", "g", 0).await.is_empty());
    assert_eq!(events.replay("t", "p1", 0).await.len(), 1, "other sessions stay");
}

/// A cache: values kept until their time runs out (`wait` lets `ms` pass on the cache's clock),
/// replaced, counters from 1. `cache` must start empty.
pub async fn cache<C: Cache + ?Sized>(cache: &C, wait: &dyn Fn(u64) -> BoxFuture<'static, ()>) {
    assert_eq!(cache.get("k").await, None);
    cache.put("k", "v1 ✓\nline".into(), 300).await;
    cache.put("long", "stays".into(), 60_000).await;
    assert_eq!(cache.get("k").await.as_deref(), Some("v1 ✓\nline"));
    cache.put("k", "v2".into(), 300).await;
    assert_eq!(cache.get("k").await.as_deref(), Some("v2"), "replaced");
    assert_eq!(
        (cache.incr("n").await, cache.incr("n").await, cache.incr("m").await),
        (1, 2, 1)
    );
    wait(400).await;
    assert_eq!(cache.get("k").await, None, "expired");
    assert_eq!(cache.get("long").await.as_deref(), Some("stays"));
    assert_eq!(cache.incr("n").await, 3, "counters do not expire");
    assert_eq!(cache.get("n").await.as_deref(), Some("3"), "a counter reads in decimal");
}

#[cfg(test)]
mod tests {
    #[test]
    fn memory_store_passes_the_suite() {
        futures::executor::block_on(super::run(&crate::fixtures::MemoryStore::default()));
    }
}
