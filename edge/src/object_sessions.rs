//! A session's state kept in its Durable Object's storage, so that an object that was evicted
//! (idle, or a deploy) rebuilds it on the next request and the client never notices. Reads come
//! from memory while the object lives; a touch (`last_seen`) is written at most every
//! [`TOUCH_EVERY_MS`], every other change at once.

use std::cell::RefCell;
use std::collections::HashMap;

use async_trait::async_trait;
use mcpgw_core::ports::{SessionState, SessionStore};
use wasm_bindgen::JsValue;
use worker::{ListOptions, Storage};

/// Storage keys of sessions start with this.
const PREFIX: &str = "session:";
/// How stale a stored `last_seen` may get (idle expiry is an hour by default).
const TOUCH_EVERY_MS: u64 = 60_000;

fn key(id: &str) -> String {
    format!("{PREFIX}{id}")
}

/// [`SessionStore`] on a Durable Object's storage.
pub struct ObjectSessions {
    storage: Storage,
    /// What was last read or written, with the `last_seen` that storage holds.
    cache: RefCell<HashMap<String, (SessionState, u64)>>,
}

impl ObjectSessions {
    /// The sessions kept in `storage`.
    pub fn new(storage: Storage) -> Self {
        Self {
            storage,
            cache: RefCell::new(HashMap::new()),
        }
    }

    /// Every stored session.
    async fn stored(&self) -> Vec<SessionState> {
        let Ok(map) = self.storage.list_with_options(ListOptions::new().prefix(PREFIX)).await else {
            return Vec::new();
        };
        let mut out = Vec::new();
        map.for_each(&mut |value: JsValue, _key: JsValue| {
            if let Some(s) = value.as_string().and_then(|t| serde_json::from_str(&t).ok()) {
                out.push(s);
            }
        });
        out
    }
}

#[async_trait(?Send)]
impl SessionStore for ObjectSessions {
    async fn get(&self, id: &str) -> Option<SessionState> {
        if let Some((s, _)) = self.cache.borrow().get(id) {
            return Some(s.clone());
        }
        let text: String = self.storage.get(&key(id)).await.ok().flatten()?;
        let s: SessionState = serde_json::from_str(&text).ok()?;
        self.cache.borrow_mut().insert(id.to_string(), (s.clone(), s.last_seen));
        Some(s)
    }

    async fn put(&self, state: SessionState) {
        // Only a touch, and a recent one stored: memory takes it, storage need not.
        let kept = match self.cache.borrow().get(&state.id) {
            Some((old, stored_seen)) => {
                let touched_only = SessionState {
                    last_seen: old.last_seen,
                    ..state.clone()
                } == *old;
                (touched_only && state.last_seen.saturating_sub(*stored_seen) < TOUCH_EVERY_MS).then_some(*stored_seen)
            }
            None => None,
        };
        let write = kept.is_none();
        let stored_seen = kept.unwrap_or(state.last_seen);
        self.cache
            .borrow_mut()
            .insert(state.id.clone(), (state.clone(), stored_seen));
        if write {
            if let Ok(text) = serde_json::to_string(&state) {
                if let Err(e) = self.storage.put(&key(&state.id), text).await {
                    worker::console_error!("mcpgw: session {} not stored: {e}", state.id);
                }
            }
        }
    }

    async fn remove(&self, id: &str) -> bool {
        let cached = self.cache.borrow_mut().remove(id).is_some();
        let stored = self.storage.delete(&key(id)).await.unwrap_or(false);
        cached || stored
    }

    async fn expire(&self, cutoff_ms: u64) -> Vec<String> {
        let mut gone = Vec::new();
        for s in self.stored().await {
            // The newest touch may be only in memory.
            let seen = self.cache.borrow().get(&s.id).map_or(s.last_seen, |(c, _)| c.last_seen);
            if seen < cutoff_ms {
                self.remove(&s.id).await;
                gone.push(s.id);
            }
        }
        gone
    }

    async fn count(&self) -> usize {
        self.stored().await.len()
    }

    async fn oldest_seen(&self) -> Option<u64> {
        let stored = self.stored().await;
        let cache = self.cache.borrow();
        // The newest touch may be only in memory.
        stored
            .iter()
            .map(|s| cache.get(&s.id).map_or(s.last_seen, |(c, _)| c.last_seen))
            .chain(cache.values().map(|(c, _)| c.last_seen))
            .min()
    }
}
