//! The gateway's seal around a 2026-07-28 upstream's own `requestState` (a stateless client in
//! front of a stateless upstream). The upstream's `input_required` goes to the client as it came,
//! but its `requestState` is replaced by `up.<AES-256-GCM sealed JSON>` binding the upstream's
//! state to the upstream, the caller's subject, a digest of the request and an expiry. On the
//! retry the seal is opened and checked, and the upstream gets back its own state byte for
//! byte: a state cannot be carried to another upstream, by another subject, to another request,
//! or past its expiry, and is good for one retry: a replayed one is refused. What is kept
//! between rounds is only the ids of states used (until they expire), in this process: in a
//! Worker, per isolate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::mrtr::Binding;
use crate::federation::Relayed;
use crate::platform::{boxed_stream, BoxStream};
use crate::ports::{Clock, Ids};
use crate::proto::jsonrpc::{Json, RpcError};
use crate::registry::seal::{self, Sealer};

/// What a wrapped state starts with (no park id has a '.' before its own: see `mrtr`).
const PREFIX: &str = "up.";

/// The sealed part.
#[derive(Serialize, Deserialize)]
struct Sealed {
    /// The upstream's id.
    u: String,
    /// The subject.
    s: String,
    /// The request's digest.
    d: String,
    /// Expiry, ms since the epoch.
    e: u64,
    /// The upstream's own state.
    v: String,
    /// This state's id (for single use).
    i: String,
}

/// The most used-state ids remembered; past it the ones expiring first are forgotten.
const MAX_USED: usize = 100_000;

/// Seals and opens wrapped states.
pub(crate) struct Envelope {
    sealer: Sealer,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn Ids>,
    ttl_ms: u64,
    /// Ids of states already used → their expiry.
    used: Mutex<HashMap<String, u64>>,
}

fn refused(why: &str) -> RpcError {
    RpcError::invalid_params(format!("Invalid params: requestState {why}"))
}

impl Envelope {
    /// Sealed with `sealer` (the gateway's encryption key; a random one without it, which only
    /// this process can open: set the key where several instances serve one endpoint).
    pub fn new(sealer: Sealer, clock: Arc<dyn Clock>, ids: Arc<dyn Ids>, ttl_ms: u64) -> Self {
        Self {
            sealer,
            clock,
            ids,
            ttl_ms,
            used: Mutex::new(HashMap::new()),
        }
    }

    /// True for a state this module wrapped (or one pretending to be).
    pub fn is_wrapped(state: &str) -> bool {
        state.starts_with(PREFIX)
    }

    /// `result` with its `requestState` (if any) sealed for `binding` and `upstream`.
    pub async fn wrap(&self, binding: &Binding, upstream: &str, result: &Json) -> Json {
        let Ok(Value::Object(mut obj)) = serde_json::from_str::<Value>(&result.0) else {
            return result.clone();
        };
        let Some(Value::String(inner)) = obj.remove("requestState") else {
            return result.clone();
        };
        let sealed = Sealed {
            u: upstream.to_string(),
            s: binding.subject.clone(),
            d: binding.digest.clone(),
            e: self.clock.now_ms().saturating_add(self.ttl_ms),
            v: inner,
            i: self.ids.new_id(),
        };
        let text = self
            .sealer
            .seal(
                &serde_json::to_string(&sealed).unwrap_or_default(),
                seal::nonce(self.ids.as_ref()),
            )
            .await;
        // Sealing fails only if the platform's AES-GCM does: the client gets no state to
        // bring back (and its retry is refused), never the upstream's own.
        let text = text.unwrap_or_default();
        obj.insert("requestState".into(), Value::String(format!("{PREFIX}{text}")));
        Json::from_value(&Value::Object(obj))
    }

    /// The upstream's own state in a wrapped `state`, if it was sealed here for `binding` and
    /// `upstream` and has not expired; else -32602 saying why.
    pub async fn open(&self, binding: &Binding, upstream: &str, state: &str) -> Result<String, RpcError> {
        let altered = || refused("is not one this gateway issued (or was altered)");
        let text = state
            .strip_prefix(PREFIX)
            .filter(|t| t.starts_with("enc:"))
            .ok_or_else(altered)?;
        let sealed: Sealed = match self.sealer.open(text).await {
            Ok(t) => serde_json::from_str(&t).map_err(|_| altered())?,
            Err(_) => return Err(altered()),
        };
        if self.clock.now_ms() >= sealed.e {
            return Err(refused("has expired"));
        }
        if sealed.s != binding.subject {
            return Err(refused("was issued to another caller"));
        }
        if sealed.d != binding.digest {
            return Err(refused("was issued for another request"));
        }
        if sealed.u != upstream {
            return Err(refused("was issued by another upstream"));
        }
        let now = self.clock.now_ms();
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        if used.contains_key(&sealed.i) {
            return Err(refused("was already used"));
        }
        if used.len() >= MAX_USED {
            used.retain(|_, e| *e > now);
            if used.len() >= MAX_USED {
                if let Some(k) = used.iter().min_by_key(|(_, e)| **e).map(|(k, _)| k.clone()) {
                    used.remove(&k);
                }
            }
        }
        used.insert(sealed.i, sealed.e);
        Ok(sealed.v)
    }
}

/// A forwarded request's `params` with the upstream's own state put back where the client
/// brought a wrapped one (checked against `binding` and `upstream`; refused without them).
pub(super) async fn unwrap(
    env: Option<&Envelope>,
    binding: Option<&Binding>,
    upstream: &str,
    mut params: Map<String, Value>,
) -> Result<Map<String, Value>, RpcError> {
    let Some(state) = params
        .get("requestState")
        .and_then(Value::as_str)
        .filter(|s| Envelope::is_wrapped(s))
    else {
        return Ok(params);
    };
    let (Some(env), Some(b)) = (env, binding) else {
        return Err(refused("cannot be used here: only a 2026-07-28 request may bring one"));
    };
    let inner = env.open(b, upstream, state).await?;
    params.insert("requestState".into(), Value::String(inner));
    Ok(params)
}

/// `items` with the `requestState` of an upstream's `input_required` sealed for `binding`.
pub(super) fn wrap(
    env: Option<Arc<Envelope>>,
    binding: Option<Arc<Binding>>,
    items: BoxStream<'static, Relayed>,
) -> BoxStream<'static, Relayed> {
    let (Some(env), Some(b)) = (env, binding) else {
        return items;
    };
    boxed_stream(items.then(move |item| {
        let (env, b) = (env.clone(), b.clone());
        async move {
            match item {
                Relayed::Input { result, upstream } => Relayed::Input {
                    result: env.wrap(&b, &upstream, &result).await,
                    upstream,
                },
                other => other,
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{ManualClock, SeqIds};
    use serde_json::json;

    fn binding(subject: &str, args: Value) -> Binding {
        let p = json!({"name": "t", "arguments": args});
        Binding::of(subject, "", "tools/call", p.as_object().unwrap(), &json!({}))
    }

    #[test]
    fn the_upstreams_state_comes_back_only_to_its_upstream_subject_and_request_in_time() {
        futures::executor::block_on(async {
            let clock = Arc::new(ManualClock::at(1_000));
            let ids = Arc::new(SeqIds::default());
            let sealer = Sealer::random(
                crate::registry::seal::Purpose::Envelope,
                ids.as_ref(),
                Arc::new(crate::security::RustCrypto),
            );
            let env = Envelope::new(sealer, clock.clone(), ids, 60_000);
            let b = binding("ada", json!({"x": 1}));
            let result =
                Json(r#"{"inputRequests":{"k":{"method":"roots/list"}},"requestState":"their \"state\" ü"}"#.into());
            let wrapped: Value = serde_json::from_str(&env.wrap(&b, "up1", &result).await.0).unwrap();
            let state = wrapped["requestState"].as_str().unwrap().to_string();
            assert!(Envelope::is_wrapped(&state) && !state.contains("their"));
            assert_eq!(wrapped["inputRequests"]["k"]["method"], "roots/list");
            let why = |r: Result<String, RpcError>| r.unwrap_err().message;
            assert!(why(env.open(&b, "up1", &format!("{state}x")).await).contains("altered"));
            assert!(why(env.open(&b, "up1", "up.their state").await).contains("altered"));
            assert!(why(env.open(&binding("bob", json!({"x": 1})), "up1", &state).await).contains("another caller"));
            assert!(why(env.open(&binding("ada", json!({"x": 2})), "up1", &state).await).contains("another request"));
            assert!(why(env.open(&b, "up2", &state).await).contains("another upstream"));
            // Refusals do not use it up; the one good retry does.
            assert_eq!(env.open(&b, "up1", &state).await.unwrap(), "their \"state\" ü");
            assert!(why(env.open(&b, "up1", &state).await).contains("already used"));
            clock.advance(std::time::Duration::from_millis(60_000));
            assert!(why(env.open(&b, "up1", &state).await).contains("expired"));
            // Without a state there is nothing to seal.
            let plain = Json(r#"{"inputRequests":{}}"#.into());
            assert_eq!(env.wrap(&b, "up1", &plain).await.0, plain.0);
        });
    }
}
