//! mcpgw-edge: mcpgw on Cloudflare Workers.
//!
//! This crate will hand every request to `mcpgw_core::Gateway::handle` (the edge issue wires the
//! D1 store, Durable Object sessions and the Fetch client). Today it holds the platform ports that
//! prove the core's boundary on wasm32: a clock on `Date.now()` and worker timers, ids from the
//! JS crypto source, and a spawner on the isolate's event loop. None of these are `Send`; the
//! core accepts them because its port bounds are `MaybeSend` on wasm.
//!
//! Everything here is wasm-only; on the host the crate is empty so workspace-wide commands work.

#![cfg(target_family = "wasm")]

use std::time::Duration;

use mcpgw_core::platform::BoxFuture;
use mcpgw_core::ports::{Clock, Ids, Spawner};
use worker::{event, Context, Env, Request, Response, Result};

/// Time from the JS runtime.
pub struct JsClock;

impl Clock for JsClock {
    fn now_ms(&self) -> u64 {
        worker::Date::now().as_millis()
    }
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(worker::Delay::from(duration))
    }
}

/// Random ids from the JS crypto source (getrandom's `js` backend).
pub struct CryptoIds;

impl Ids for CryptoIds {
    fn new_id(&self) -> String {
        let mut b = [0u8; 16];
        // The JS crypto source does not fail in a Worker; a zeroed id would still be unique per
        // request only by chance, so treat failure as fatal to this request instead.
        if getrandom::getrandom(&mut b).is_err() {
            worker::console_error!("crypto.getRandomValues failed");
        }
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}

/// Background work on the isolate's event loop.
pub struct LocalSpawner;

impl Spawner for LocalSpawner {
    fn spawn(&self, work: BoxFuture<'static, ()>) {
        wasm_bindgen_futures::spawn_local(work);
    }
}

/// The Worker entry point. Until the edge issue wires the gateway, it says so plainly.
#[event(fetch)]
async fn fetch(_req: Request, _env: Env, _ctx: Context) -> Result<Response> {
    let body = serde_json::json!({
        "error": {"code": "not_implemented", "message": "the edge adapter is not wired yet; run the native gateway"}
    });
    Ok(Response::from_json(&body)?.with_status(501))
}
