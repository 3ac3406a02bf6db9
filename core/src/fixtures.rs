//! The fakes tests run on (behind `test-util`): the registry in a map (the reference every
//! `Store` matches), a clock moved by hand, ids in sequence, spawned work queued, a bus in
//! memory, no network; and every port in memory at once (`memory_ports`).

use std::sync::Mutex;

use async_trait::async_trait;

use crate::memory::{MemoryCache, MemoryEventStore, MemorySessionStore};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
use crate::platform::BoxFuture;
use crate::ports::{
    Clock, HttpClient, HttpError, Ids, InboundResponse, Kind, Op, OutboundRequest, Record, Spawner, Store, StoreError,
};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The registry in a map: the reference behaviour every other [`Store`] must match.
#[derive(Default)]
pub struct MemoryStore {
    records: Mutex<BTreeMap<(Kind, String), Record>>,
    version: AtomicU64,
}

fn find<'a>(map: &'a BTreeMap<(Kind, String), Record>, kind: Kind, id_or_key: &str) -> Option<&'a Record> {
    map.get(&(kind, id_or_key.to_string()))
        .or_else(|| map.values().find(|r| r.kind == kind && r.key == id_or_key))
}

fn apply_one(map: &mut BTreeMap<(Kind, String), Record>, op: Op) -> Result<(), StoreError> {
    match op {
        Op::Insert(r) => {
            if find(map, r.kind, &r.id).is_some() || find(map, r.kind, &r.key).is_some() {
                return Err(StoreError::Conflict {
                    kind: r.kind,
                    key: r.key,
                });
            }
            map.insert((r.kind, r.id.clone()), r);
        }
        Op::Update(r) => {
            if !map.contains_key(&(r.kind, r.id.clone())) {
                return Err(StoreError::NotFound { kind: r.kind, id: r.id });
            }
            if map.values().any(|o| o.kind == r.kind && o.key == r.key && o.id != r.id) {
                return Err(StoreError::Conflict {
                    kind: r.kind,
                    key: r.key,
                });
            }
            map.insert((r.kind, r.id.clone()), r);
        }
        Op::Upsert(mut r) => {
            if let Some(existing) = map.values().find(|o| o.kind == r.kind && o.key == r.key) {
                r.id = existing.id.clone();
                r.created_at = existing.created_at;
            } else if map.contains_key(&(r.kind, r.id.clone())) {
                return Err(StoreError::Conflict {
                    kind: r.kind,
                    key: r.key,
                });
            }
            map.insert((r.kind, r.id.clone()), r);
        }
        Op::Delete { kind, id } => {
            map.remove(&(kind, id));
        }
    }
    Ok(())
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, kind: Kind, id_or_key: &str) -> Result<Option<Record>, StoreError> {
        Ok(find(&lock(&self.records), kind, id_or_key).cloned())
    }
    async fn list(&self, kind: Kind) -> Result<Vec<Record>, StoreError> {
        let mut out: Vec<Record> = lock(&self.records)
            .values()
            .filter(|r| r.kind == kind)
            .cloned()
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
    async fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let mut map = lock(&self.records);
        let mut next = map.clone();
        for op in ops {
            apply_one(&mut next, op)?;
        }
        *map = next;
        self.version.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
    async fn version(&self) -> Result<u64, StoreError> {
        Ok(self.version.load(Ordering::Relaxed))
    }
}

/// A clock that moves only when told; `sleep` completes at once and advances it.
#[derive(Default)]
pub struct ManualClock {
    now: AtomicU64,
}

impl ManualClock {
    /// A clock reading `ms`.
    pub fn at(ms: u64) -> Self {
        Self {
            now: AtomicU64::new(ms),
        }
    }
    /// Moves the clock forward.
    pub fn advance(&self, d: Duration) {
        self.now.fetch_add(d.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        self.advance(d);
        Box::pin(futures::future::ready(()))
    }
}

/// Sequential ids, for readable tests.
#[derive(Default)]
pub struct SeqIds {
    next: AtomicU64,
}

impl Ids for SeqIds {
    fn new_id(&self) -> String {
        format!("{:032x}", self.next.fetch_add(1, Ordering::SeqCst) + 1)
    }
}

/// Runs spawned work on a local pool the test drives (or drops).
#[derive(Default)]
pub struct QueueSpawner {
    /// Work spawned so far, not yet run.
    pub queue: Mutex<Vec<BoxFuture<'static, ()>>>,
}

impl QueueSpawner {
    /// Runs everything queued to completion (blocking the test thread).
    pub fn run_all(&self) {
        let work: Vec<_> = std::mem::take(&mut *lock(&self.queue));
        for w in work {
            futures::executor::block_on(w);
        }
    }
}

impl Spawner for QueueSpawner {
    fn spawn(&self, work: BoxFuture<'static, ()>) {
        lock(&self.queue).push(work);
    }
}

/// A bus inside one process: every holder of [`crate::ports::Bus::messages`] hears every
/// message (unit tests of instances sharing sessions).
#[derive(Default)]
pub struct MemoryBus {
    subscribers: Mutex<Vec<futures::channel::mpsc::UnboundedSender<String>>>,
}

#[cfg_attr(not(target_family = "wasm"), async_trait)]
#[cfg_attr(target_family = "wasm", async_trait(?Send))]
impl crate::ports::Bus for MemoryBus {
    async fn publish(&self, message: String) {
        lock(&self.subscribers).retain(|tx| tx.unbounded_send(message.clone()).is_ok());
    }
    fn messages(&self) -> crate::platform::BoxStream<'static, String> {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        lock(&self.subscribers).push(tx);
        Box::pin(rx)
    }
}

/// No network: every outbound call fails (unit tests and fuzzing never leave the process).
pub struct NoNetwork;

#[cfg_attr(not(target_family = "wasm"), async_trait)]
#[cfg_attr(target_family = "wasm", async_trait(?Send))]
impl HttpClient for NoNetwork {
    async fn send(&self, r: OutboundRequest) -> Result<InboundResponse, HttpError> {
        Err(HttpError::Connect(format!("no network in tests ({})", r.url)))
    }
}

/// Every port in memory, on `clock`: no network, spawned work queued, no stdio launcher.
#[cfg(not(target_family = "wasm"))]
pub fn memory_ports(clock: std::sync::Arc<ManualClock>) -> crate::Ports {
    use std::sync::Arc;
    let clock_for_cache: Arc<dyn Clock> = clock.clone();
    crate::Ports {
        store: Arc::new(MemoryStore::default()),
        sessions: Arc::new(MemorySessionStore::default()),
        events: Arc::new(MemoryEventStore::default()),
        http: Arc::new(NoNetwork),
        clock,
        ids: Arc::new(SeqIds::default()),
        spawner: Arc::new(QueueSpawner::default()),
        limiter: std::sync::Arc::new(crate::security::ratelimit::MemoryLimiter::default()),
        launcher: None,
        crypto: Arc::new(crate::security::RustCrypto),
        bus: None,
        cache: Arc::new(MemoryCache::new(clock_for_cache, 1000)),
        recorder: None,
    }
}
