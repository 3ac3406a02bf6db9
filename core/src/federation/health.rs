//! What this gateway knows of each upstream's health (per process or Durable Object): consecutive
//! failures (the circuit opens at `unhealthy_after`), the last error, when it was last checked
//! and its catalog last read, the endpoint in use, and stdio restarts.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;

use crate::upstream::UpstreamError;

/// A health check's ping, its round trip counted (`mcpgw_upstream_request_duration_seconds`
/// with the method `ping`) whatever the upstream's era calls it.
pub(crate) async fn timed_ping(
    link: &crate::upstream::Link,
    timeout_ms: u64,
    t: &crate::observe::Telemetry,
    upstream: &str,
) -> Result<(), UpstreamError> {
    let started = t.now_us();
    let r = link.ping(timeout_ms).await;
    let outcome = if r.is_ok() { "ok" } else { "error" };
    t.elapsed(
        &crate::observe::metrics::UPSTREAM_DURATION,
        &[upstream, crate::proto::method::Method::Ping.name(), outcome],
        started,
    );
    r
}

/// One upstream's health.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Health {
    /// False while `failures` is at least `unhealthy_after` (derived when read).
    pub healthy: bool,
    /// Consecutive failures.
    pub failures: u32,
    /// The last failure, if any.
    pub last_error: Option<String>,
    /// When the last check or connection attempt ended, ms since the epoch.
    pub checked_at: u64,
    /// When the catalog was last read, ms since the epoch.
    pub refreshed_at: u64,
    /// The endpoint in use (index into the upstream's URLs).
    pub endpoint: usize,
    /// How many times a stdio process was started.
    pub starts: u32,
}

/// The health of every upstream this gateway has talked to.
pub(crate) struct HealthBook {
    all: Mutex<HashMap<String, Health>>,
    unhealthy_after: u32,
}

impl HealthBook {
    /// An empty book; an upstream is unhealthy after `unhealthy_after` failures in a row.
    pub fn new(unhealthy_after: u32) -> Self {
        Self {
            all: Mutex::new(HashMap::new()),
            unhealthy_after,
        }
    }

    fn with<T>(&self, id: &str, f: impl FnOnce(&mut Health) -> T) -> T {
        let mut all = self.all.lock().unwrap_or_else(|e| e.into_inner());
        f(all.entry(id.to_string()).or_default())
    }

    /// An upstream's health, if it was ever contacted.
    pub fn of(&self, id: &str) -> Option<Health> {
        let mut h = self.all.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned()?;
        h.healthy = h.failures < self.unhealthy_after;
        Some(h)
    }

    /// The upstream answered (on `endpoint`, if a link was just opened).
    pub fn success(&self, id: &str, endpoint: Option<usize>, now: u64) {
        self.with(id, |h| {
            h.checked_at = now;
            h.failures = 0;
            if let Some(e) = endpoint {
                h.endpoint = e;
            }
        })
    }

    /// The upstream failed.
    pub fn failure(&self, id: &str, e: &UpstreamError, now: u64) {
        self.with(id, |h| {
            h.checked_at = now;
            h.failures = h.failures.saturating_add(1);
            h.last_error = Some(e.to_string());
        })
    }

    /// Its catalog was just read (`answered`: and that counts as a successful check).
    pub fn refreshed(&self, id: &str, now: u64, answered: bool) {
        self.with(id, |h| {
            if answered {
                h.failures = 0;
                h.checked_at = now;
            }
            h.refreshed_at = now;
        })
    }

    /// A stdio process is being started.
    pub fn started(&self, id: &str) {
        self.with(id, |h| h.starts += 1)
    }

    /// Forgets an upstream (changed or deleted).
    pub fn remove(&self, id: &str) {
        self.all.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }
}
