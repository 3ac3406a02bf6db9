//! Upstream resource reads kept for reuse, through the [`Cache`] port: a read answered from here
//! does not reach the upstream. An answer is kept for the upstream's own hint (`ttlMs`, a
//! 2026-07-28 upstream's) up to `resource_cache_max_ms`, or without a hint for
//! `resource_cache_ms`; a `cacheScope: "private"` answer only for the caller who got it.
//!
//! Invalidation is by generation: every key names the upstream's generation, a counter in the
//! cache that `notifications/resources/updated` or `resources/list_changed` from the upstream
//! moves, so every answer kept from it is passed over at once, on every instance sharing the
//! cache, without finding them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::Value;

use crate::ports::Cache;
use crate::proto::jsonrpc::Json;

/// Where an answer not found is to be kept: its keys under the generation read when it was
/// looked for (an answer read while the upstream changed is kept where nobody looks).
pub(crate) struct Slot {
    public: String,
    private: String,
}

/// How long resource reads are kept.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CacheTimes {
    /// Answers without a hint (0: not kept).
    pub plain_ms: u64,
    /// The most any answer is kept (0: the cache is off).
    pub max_ms: u64,
}

/// The resource reads kept, with hit and miss counts.
pub(crate) struct ResourceCache {
    cache: Arc<dyn Cache>,
    times: CacheTimes,
    hits: AtomicU64,
    misses: AtomicU64,
}

fn generation_key(upstream: &str) -> String {
    format!("gen:{upstream}")
}

impl ResourceCache {
    /// Reads kept in `cache` for `times`.
    pub fn new(cache: Arc<dyn Cache>, times: CacheTimes) -> Self {
        Self {
            cache,
            times,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The kept answer to reading `uri` at `upstream` for `subject` (empty: anonymous), or
    /// where to keep the answer about to be fetched (none when the cache is off).
    pub async fn lookup(&self, upstream: &str, uri: &str, subject: &str) -> Result<Json, Option<Slot>> {
        if self.times.max_ms == 0 {
            return Err(None);
        }
        let generation = self.cache.get(&generation_key(upstream)).await.unwrap_or_default();
        let base = format!("res:{upstream}:{generation}:");
        let slot = Slot {
            public: format!("{base}*:{uri}"),
            private: format!("{base}{}:{subject}:{uri}", subject.len()),
        };
        for key in [&slot.public, &slot.private] {
            if let Some(text) = self.cache.get(key).await {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(Json(text));
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        Err(Some(slot))
    }

    /// Keeps an upstream's answer in `slot` for as long as its hints and the settings allow.
    pub async fn keep(&self, slot: &Slot, answer: &Json) {
        let Ok(v) = serde_json::from_str::<Value>(&answer.0) else {
            return;
        };
        if v.get("contents").is_none_or(|c| !c.is_array()) {
            return; // not a read's result (an error, input_required)
        }
        let ttl = match v.get("ttlMs").and_then(Value::as_u64) {
            Some(hint) => hint.min(self.times.max_ms),
            None => self.times.plain_ms.min(self.times.max_ms),
        };
        if ttl == 0 {
            return;
        }
        let key = match v.get("cacheScope").and_then(Value::as_str) {
            Some("private") => &slot.private,
            _ => &slot.public,
        };
        self.cache.put(key, answer.0.clone(), ttl).await;
    }

    /// The upstream's resources changed: nothing kept from it is served again.
    pub async fn invalidate(&self, upstream: &str) {
        if self.times.max_ms > 0 {
            self.cache.incr(&generation_key(upstream)).await;
        }
    }

    /// Reads answered from the cache, and reads looked for in vain.
    pub fn counts(&self) -> (u64, u64) {
        (self.hits.load(Ordering::Relaxed), self.misses.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::ManualClock;
    use crate::memory::MemoryCache;
    use futures::executor::block_on;

    fn answer(extra: &str) -> Json {
        Json(format!(r#"{{"contents":[{{"uri":"a://x","text":"v"}}]{extra}}}"#))
    }

    #[test]
    fn reads_are_kept_by_hint_or_setting_per_scope_until_the_upstream_changes() {
        block_on(async {
            let clock = Arc::new(ManualClock::at(1_000));
            let cache = Arc::new(MemoryCache::new(clock.clone(), 100));
            let rc = ResourceCache::new(
                cache,
                CacheTimes {
                    plain_ms: 0,
                    max_ms: 10_000,
                },
            );
            // Without a hint and with plain_ms 0: not kept.
            let slot = rc.lookup("up", "a://x", "alice").await.err().flatten().expect("slot");
            rc.keep(&slot, &answer("")).await;
            assert!(rc.lookup("up", "a://x", "alice").await.is_err());
            // A public hint: kept for everyone, until it runs out.
            rc.keep(&slot, &answer(r#","ttlMs":500"#)).await;
            assert!(rc.lookup("up", "a://x", "bob").await.is_ok());
            clock.advance(std::time::Duration::from_millis(600));
            assert!(rc.lookup("up", "a://x", "bob").await.is_err(), "expired");
            // A private hint: for its subject only (a subject cannot pose as another).
            let slot = rc.lookup("up", "a://x", "alice").await.err().flatten().expect("slot");
            rc.keep(&slot, &answer(r#","ttlMs":99999,"cacheScope":"private""#))
                .await;
            assert!(rc.lookup("up", "a://x", "alice").await.is_ok());
            assert!(rc.lookup("up", "a://x", "bob").await.is_err());
            assert!(rc.lookup("up", "a://x", "").await.is_err());
            // Capped by max_ms.
            clock.advance(std::time::Duration::from_millis(10_001));
            assert!(rc.lookup("up", "a://x", "alice").await.is_err(), "capped");
            // An update from the upstream passes over everything kept from it, not from others.
            let slot = rc.lookup("up", "a://x", "").await.err().flatten().expect("slot");
            rc.keep(&slot, &answer(r#","ttlMs":5000"#)).await;
            let other = rc.lookup("up2", "a://x", "").await.err().flatten().expect("slot");
            rc.keep(&other, &answer(r#","ttlMs":5000"#)).await;
            rc.invalidate("up").await;
            assert!(rc.lookup("up", "a://x", "").await.is_err());
            assert!(rc.lookup("up2", "a://x", "").await.is_ok());
            // Errors are not kept.
            let slot = rc.lookup("up", "a://y", "").await.err().flatten().expect("slot");
            rc.keep(&slot, &Json(r#"{"code":-32002,"message":"no"}"#.into())).await;
            assert!(rc.lookup("up", "a://y", "").await.is_err());
            let (hits, misses) = rc.counts();
            assert_eq!((hits, misses), (3, 12));
            // Off: nothing looked up, nothing counted.
            let off = ResourceCache::new(
                Arc::new(MemoryCache::new(clock.clone(), 10)),
                CacheTimes { plain_ms: 5, max_ms: 0 },
            );
            assert!(matches!(off.lookup("up", "a://x", "").await, Err(None)));
            assert_eq!(off.counts(), (0, 0));
        });
    }
}
