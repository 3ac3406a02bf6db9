//! Rate-limit buckets on the edge: one Durable Object per bucket key (identity and route
//! class), so every isolate in every location counts against the same budget. The object runs
//! the core's bucket arithmetic and keeps the bucket in its storage, so eviction loses nothing.
//! The same class holds the cache's entries (`cache.rs`, under names of their own), one class
//! for every keyed object, as each class costs the Worker's bundle its glue.

use async_trait::async_trait;
use mcpgw_core::security::ratelimit::{take, Bucket, Decision, Limiter, LimiterError, Rule};
use serde::{Deserialize, Serialize};
use worker::{durable_object, DurableObject, Env, ObjectNamespace, Request, RequestInit, Response, Result, State};

use crate::LIMITER_BINDING;

#[derive(Serialize, Deserialize)]
struct Take {
    rule: Rule,
    cost: u32,
}

/// The `Limiter` port over the `RateLimiter` objects.
pub struct ObjectLimiter {
    ns: ObjectNamespace,
}

impl ObjectLimiter {
    /// Over the `LIMITER` binding.
    pub fn new(env: &Env) -> Result<Self> {
        Ok(Self {
            ns: env.durable_object(LIMITER_BINDING)?,
        })
    }
}

#[async_trait(?Send)]
impl Limiter for ObjectLimiter {
    async fn take(
        &self,
        key: &str,
        rule: Rule,
        _now_ms: u64,
        cost: u32,
    ) -> std::result::Result<Decision, LimiterError> {
        let go = async {
            let stub = self.ns.id_from_name(key)?.get_stub()?;
            let body =
                serde_json::to_string(&Take { rule, cost }).map_err(|e| worker::Error::RustError(e.to_string()))?;
            let mut init = RequestInit::new();
            init.with_method(worker::Method::Post).with_body(Some(body.into()));
            let req = Request::new_with_init("https://limiter/take", &init)?;
            let mut resp = stub.fetch_with_request(req).await?;
            resp.json::<Decision>().await
        };
        go.await.map_err(|e: worker::Error| LimiterError(e.to_string()))
    }
}

/// One bucket.
#[durable_object]
pub struct RateLimiter {
    state: State,
    bucket: std::cell::Cell<Option<Bucket>>,
    loaded: std::cell::Cell<bool>,
}

impl DurableObject for RateLimiter {
    fn new(state: State, _env: Env) -> Self {
        Self {
            state,
            bucket: Default::default(),
            loaded: Default::default(),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let storage = self.state.storage();
        if req.path() == crate::cache::CACHE_PATH {
            return crate::cache::serve(&storage, req).await;
        }
        let Take { rule, cost } = req.json().await?;
        if !self.loaded.get() {
            self.bucket.set(storage.get::<Bucket>("bucket").await.ok().flatten());
            self.loaded.set(true);
        }
        let (bucket, decision) = take(self.bucket.get(), rule, worker::Date::now().as_millis(), cost);
        if cost > 0 {
            self.bucket.set(Some(bucket));
            storage.put("bucket", bucket).await?;
        }
        Response::from_json(&decision)
    }

    async fn alarm(&self) -> Result<Response> {
        crate::cache::expire(&self.state.storage()).await?;
        Response::ok("expired")
    }
}
