//! The cache on the edge: one Durable Object per key (named `cache:<key>`, of the class the
//! rate-limit buckets use, so the Worker carries no second class), so every isolate in every
//! location sees the same value and a counter moves atomically. The object keeps the value and
//! its expiry in its storage, and deletes both at expiry (an alarm), so nothing is left behind.

use async_trait::async_trait;
use mcpgw_core::ports::Cache;
use serde::{Deserialize, Serialize};
use worker::{Env, ObjectNamespace, Request, RequestInit, Response, Result, Storage};

use crate::LIMITER_BINDING;

/// The path of cache operations at a keyed object.
pub const CACHE_PATH: &str = "/cache";

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Op {
    Get,
    Put { value: String, ttl_ms: u64 },
    Incr,
}

#[derive(Serialize, Deserialize, Default)]
struct Answer {
    value: Option<String>,
    count: u64,
}

/// The `Cache` port over the `CacheEntry` objects.
pub struct ObjectCache {
    ns: ObjectNamespace,
}

impl ObjectCache {
    /// Over the keyed objects' binding.
    pub fn new(env: &Env) -> Result<Self> {
        Ok(Self {
            ns: env.durable_object(LIMITER_BINDING)?,
        })
    }

    async fn ask(&self, key: &str, op: &Op) -> Answer {
        let go = async {
            let stub = self.ns.id_from_name(&format!("cache:{key}"))?.get_stub()?;
            let body = serde_json::to_string(op).map_err(|e| worker::Error::RustError(e.to_string()))?;
            let mut init = RequestInit::new();
            init.with_method(worker::Method::Post).with_body(Some(body.into()));
            let req = Request::new_with_init(&format!("https://cache{CACHE_PATH}"), &init)?;
            let mut resp = stub.fetch_with_request(req).await?;
            resp.json::<Answer>().await
        };
        // A cache that cannot answer misses.
        go.await.unwrap_or_else(|e: worker::Error| {
            worker::console_error!("mcpgw: cache {key}: {e}");
            Answer::default()
        })
    }
}

#[async_trait(?Send)]
impl Cache for ObjectCache {
    async fn get(&self, key: &str) -> Option<String> {
        self.ask(key, &Op::Get).await.value
    }

    async fn put(&self, key: &str, value: String, ttl_ms: u64) {
        self.ask(key, &Op::Put { value, ttl_ms }).await;
    }

    async fn incr(&self, key: &str) -> u64 {
        self.ask(key, &Op::Incr).await.count
    }
}

/// One cache entry's side of a keyed object: a value with its expiry (ms since the epoch), or
/// a counter, in the object's storage.
pub async fn serve(storage: &Storage, mut req: Request) -> Result<Response> {
    let op: Op = req.json().await?;
    let now = worker::Date::now().as_millis();
    let answer = match op {
        Op::Get => {
            let count: Option<u64> = storage.get("count").await.ok().flatten();
            let until: Option<u64> = storage.get("until").await.ok().flatten();
            let value = match (count, until) {
                (Some(n), _) => Some(n.to_string()),
                (None, Some(t)) if t > now => storage.get::<String>("value").await.ok().flatten(),
                _ => None,
            };
            Answer { value, count: 0 }
        }
        Op::Put { value, ttl_ms } => {
            let until = now.saturating_add(ttl_ms.max(1));
            storage.put("value", value).await?;
            storage.put("until", until).await?;
            storage.set_alarm(ttl_ms.max(1) as i64).await?;
            Answer::default()
        }
        Op::Incr => {
            let count = storage.get::<u64>("count").await.ok().flatten().unwrap_or(0) + 1;
            storage.put("count", count).await?;
            Answer { value: None, count }
        }
    };
    Response::from_json(&answer)
}

/// The entry's alarm: an expired value is deleted.
pub async fn expire(storage: &Storage) -> Result<()> {
    let until: Option<u64> = storage.get("until").await.ok().flatten();
    if until.is_some_and(|t| t <= worker::Date::now().as_millis()) {
        storage.delete("value").await?;
        storage.delete("until").await?;
    }
    Ok(())
}
