//! In-memory port implementations, real ones: sessions, events and the cache of a single native
//! instance (and of a single Durable Object). The fakes tests run on are in `fixtures`.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::ports::{EventStore, SessionState, SessionStore, StoredEvent};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sessions in a map.
#[derive(Default)]
pub struct MemorySessionStore {
    sessions: Mutex<HashMap<String, SessionState>>,
}

#[cfg_attr(not(target_family = "wasm"), async_trait)]
#[cfg_attr(target_family = "wasm", async_trait(?Send))]
impl SessionStore for MemorySessionStore {
    async fn get(&self, id: &str) -> Option<SessionState> {
        lock(&self.sessions).get(id).cloned()
    }
    async fn put(&self, state: SessionState) {
        lock(&self.sessions).insert(state.id.clone(), state);
    }
    async fn remove(&self, id: &str) -> bool {
        lock(&self.sessions).remove(id).is_some()
    }
    async fn expire(&self, cutoff_ms: u64) -> Vec<String> {
        let mut map = lock(&self.sessions);
        let gone: Vec<String> = map
            .values()
            .filter(|s| s.last_seen < cutoff_ms)
            .map(|s| s.id.clone())
            .collect();
        for id in &gone {
            map.remove(id);
        }
        gone
    }
    async fn count(&self) -> usize {
        lock(&self.sessions).len()
    }
    async fn oldest_seen(&self) -> Option<u64> {
        lock(&self.sessions).values().map(|s| s.last_seen).min()
    }
}

/// A session's event logs. Sequence numbers are session-wide, so an event id is never reused,
/// even for a stream that was evicted and opened again.
#[derive(Default)]
struct SessionLogs {
    last_seq: u64,
    /// Streams, oldest first (a short list: linear search is cheapest).
    streams: VecDeque<(String, VecDeque<StoredEvent>)>,
}

/// Per-stream event logs: the last `capacity` events of each stream, and the last
/// `max_streams` streams of each session (every SSE-upgraded POST opens a stream, so a
/// long-lived session would otherwise grow without bound).
pub struct MemoryEventStore {
    capacity: usize,
    max_streams: usize,
    sessions: Mutex<HashMap<String, SessionLogs>>,
}

impl MemoryEventStore {
    /// Keeps the last `capacity` events of each stream and the last `max_streams` streams of
    /// each session.
    pub fn new(capacity: usize, max_streams: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            max_streams: max_streams.max(1),
            sessions: Mutex::default(),
        }
    }
}

impl MemoryEventStore {
    /// How many events of each stream are kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
    /// How many streams of each session are kept.
    pub fn max_streams(&self) -> usize {
        self.max_streams
    }
}

impl Default for MemoryEventStore {
    fn default() -> Self {
        Self::new(256, 32)
    }
}

#[cfg_attr(not(target_family = "wasm"), async_trait)]
#[cfg_attr(target_family = "wasm", async_trait(?Send))]
impl EventStore for MemoryEventStore {
    async fn append(&self, session: &str, stream: &str, data: String) -> u64 {
        let mut all = lock(&self.sessions);
        let logs = all.entry(session.to_string()).or_default();
        let i = match logs.streams.iter().position(|(name, _)| name == stream) {
            Some(i) => i,
            None => {
                if logs.streams.len() == self.max_streams {
                    logs.streams.pop_front();
                }
                logs.streams.push_back((stream.to_string(), VecDeque::new()));
                logs.streams.len() - 1
            }
        };
        logs.last_seq += 1;
        let seq = logs.last_seq;
        let events = &mut logs.streams[i].1;
        if events.len() == self.capacity {
            events.pop_front();
        }
        events.push_back(StoredEvent { seq, data });
        seq
    }
    async fn replay(&self, session: &str, stream: &str, after_seq: u64) -> Vec<StoredEvent> {
        lock(&self.sessions)
            .get(session)
            .and_then(|logs| logs.streams.iter().find(|(name, _)| name == stream))
            .map(|(_, ev)| ev.iter().filter(|e| e.seq > after_seq).cloned().collect())
            .unwrap_or_default()
    }
    async fn forget(&self, session: &str) {
        lock(&self.sessions).remove(session);
    }
}

/// The [`Cache`](crate::ports::Cache) in this process: at most `capacity` entries (past it,
/// expired ones go, then the ones nearest their expiry), times from the clock.
pub struct MemoryCache {
    clock: std::sync::Arc<dyn crate::ports::Clock>,
    capacity: usize,
    entries: Mutex<HashMap<String, (String, u64)>>,
    counters: Mutex<HashMap<String, u64>>,
}

impl MemoryCache {
    /// A cache of at most `capacity` entries, on `clock`.
    pub fn new(clock: std::sync::Arc<dyn crate::ports::Clock>, capacity: usize) -> Self {
        Self {
            clock,
            capacity: capacity.max(1),
            entries: Mutex::new(HashMap::new()),
            counters: Mutex::new(HashMap::new()),
        }
    }
}

#[cfg_attr(not(target_family = "wasm"), async_trait)]
#[cfg_attr(target_family = "wasm", async_trait(?Send))]
impl crate::ports::Cache for MemoryCache {
    async fn get(&self, key: &str) -> Option<String> {
        if let Some(n) = lock(&self.counters).get(key) {
            return Some(n.to_string());
        }
        let now = self.clock.now_ms();
        let mut entries = lock(&self.entries);
        match entries.get(key) {
            Some((v, until)) if *until > now => Some(v.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    async fn put(&self, key: &str, value: String, ttl_ms: u64) {
        let now = self.clock.now_ms();
        let mut entries = lock(&self.entries);
        if entries.len() >= self.capacity && !entries.contains_key(key) {
            entries.retain(|_, (_, until)| *until > now);
            while entries.len() >= self.capacity {
                let Some(soonest) = entries
                    .iter()
                    .min_by_key(|(_, (_, until))| *until)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                entries.remove(&soonest);
            }
        }
        entries.insert(key.to_string(), (value, now.saturating_add(ttl_ms)));
    }

    async fn incr(&self, key: &str) -> u64 {
        let mut counters = lock(&self.counters);
        let n = counters.entry(key.to_string()).or_insert(0);
        *n += 1;
        *n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::ManualClock;
    use crate::ports::Clock;
    use futures::executor::block_on;
    use std::time::Duration;

    #[test]
    fn memory_sessions_and_event_logs_pass_the_suite() {
        block_on(async {
            crate::store_suite::sessions(&MemorySessionStore::default()).await;
            crate::store_suite::events(&MemoryEventStore::new(3, 2)).await;
            let clock = std::sync::Arc::new(ManualClock::at(1_000));
            let cache = MemoryCache::new(clock.clone(), 10);
            let wait = move |ms: u64| -> crate::platform::BoxFuture<'static, ()> {
                clock.advance(std::time::Duration::from_millis(ms));
                Box::pin(async {})
            };
            crate::store_suite::cache(&cache, &wait).await;
        });
    }

    #[test]
    fn manual_clock_sleep_advances() {
        let clock = ManualClock::at(5);
        block_on(clock.sleep(Duration::from_millis(10)));
        assert_eq!(clock.now_ms(), 15);
    }
}
