//! What an upstream says, rewritten for the client: the table of the upstream's own requests
//! (sampling, elicitation, roots) waiting for the client's answer, under ids the gateway hands
//! out (an upstream's ids are its own and could collide with another's), and the decision for
//! each message ([`Rewrite`]). No I/O: the caller does what the decision says.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde_json::{json, Value};

use crate::proto::jsonrpc::RequestId;
use crate::proto::method::ServerMethod;

/// What to do with one message an upstream sent.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Rewrite {
    /// Deliver it to the client, as rewritten.
    Deliver(Value),
    /// A list changed upstream: re-read its catalog (clients hear of it from the registry).
    RefreshCatalog,
    /// Answer the upstream with this message (a request nobody can answer).
    Reply(Value),
    /// Nothing to do (a stray response, a cancellation of something unknown).
    Drop,
}

struct Pending<L> {
    link: L,
    link_key: usize,
    upstream_id: RequestId,
}

/// The upstream requests of every session waiting for the client's answer. `L` is the link
/// the answer goes back on; `link_key` tells links apart.
pub(crate) struct Relay<L> {
    /// (session, gateway id) → the request.
    pending: Mutex<HashMap<(String, RequestId), Pending<L>>>,
    /// (session, link, upstream id) → gateway id: finds a request the upstream cancels.
    by_upstream: Mutex<HashMap<(String, usize, RequestId), RequestId>>,
    seq: AtomicU64,
    /// What the ids handed to clients start with.
    prefix: String,
}

impl<L> Default for Relay<L> {
    fn default() -> Self {
        Self::with_prefix("mcpgw-".into())
    }
}

impl<L> Relay<L> {
    /// A relay whose ids for clients start with `prefix`.
    pub fn with_prefix(prefix: String) -> Self {
        Self {
            pending: Mutex::new(HashMap::new()),
            by_upstream: Mutex::new(HashMap::new()),
            seq: AtomicU64::new(0),
            prefix,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn has_method(msg: &Value) -> bool {
    msg.get("method").and_then(Value::as_str).is_some()
}

/// A message of a link that serves no client session (catalog reads, `/rpc`, stateless
/// requests): a call's progress and log messages go to its caller (who decides what it shows),
/// list changes refresh the catalog, requests are refused.
pub(crate) fn unrouted(msg: &Value) -> Rewrite {
    let method = ServerMethod::of(msg);
    if msg.get("id").is_none() && matches!(method, Some(ServerMethod::Progress | ServerMethod::Log)) {
        Rewrite::Deliver(msg.clone())
    } else if matches!(method, Some(ServerMethod::ListChanged(_))) {
        Rewrite::RefreshCatalog
    } else if msg.get("id").is_some() && msg.get("method").is_some() {
        Rewrite::Reply(
            json!({"jsonrpc": "2.0", "id": msg["id"], "error": {"code": -32601, "message": "no client session to forward this request to"}}),
        )
    } else {
        Rewrite::Drop
    }
}

/// The answer to an upstream's request `id`: the client's result, or an error object.
pub(crate) fn reply(id: &RequestId, outcome: Result<Value, Value>) -> Value {
    match outcome {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err(error) => json!({"jsonrpc": "2.0", "id": id, "error": error}),
    }
}

impl<L: Clone> Relay<L> {
    /// The decision for a message `link` (told apart by `link_key`) sent for session `sid`.
    pub fn to_client(&self, sid: &str, link: &L, link_key: usize, mut msg: Value) -> Rewrite {
        if !has_method(&msg) {
            return Rewrite::Drop; // a stray response: nothing waits for it
        }
        let method = ServerMethod::of(&msg);
        if matches!(method, Some(ServerMethod::ListChanged(_))) {
            return Rewrite::RefreshCatalog;
        }
        if let Some(id) = msg.get("id") {
            // A request whose id is neither a string nor a number cannot be answered.
            let Some(upstream_id) = RequestId::of(id) else {
                return Rewrite::Drop;
            };
            let gid = RequestId::String(format!(
                "{}{}",
                self.prefix,
                self.seq.fetch_add(1, Ordering::Relaxed) + 1
            ));
            msg["id"] = gid.to_value();
            lock(&self.by_upstream).insert((sid.to_string(), link_key, upstream_id.clone()), gid.clone());
            lock(&self.pending).insert(
                (sid.to_string(), gid),
                Pending {
                    link: link.clone(),
                    link_key,
                    upstream_id,
                },
            );
        } else if method == Some(ServerMethod::Cancelled) {
            // The upstream gave up on a request it sent the client: name it by the client's id.
            let Some(target) = RequestId::of(&msg["params"]["requestId"]) else {
                return Rewrite::Drop;
            };
            let Some(gid) = lock(&self.by_upstream).remove(&(sid.to_string(), link_key, target)) else {
                return Rewrite::Drop;
            };
            lock(&self.pending).remove(&(sid.to_string(), gid.clone()));
            msg["params"]["requestId"] = gid.to_value();
        }
        Rewrite::Deliver(msg)
    }

    /// The client answered the request it knows as `id`: the link to send the answer on and the
    /// answer under the upstream's id; `None` if the gateway never handed out that id.
    pub fn answer(&self, sid: &str, id: &RequestId, outcome: Result<Value, Value>) -> Option<(L, Value)> {
        let p = lock(&self.pending).remove(&(sid.to_string(), id.clone()))?;
        lock(&self.by_upstream).remove(&(sid.to_string(), p.link_key, p.upstream_id.clone()));
        Some((p.link, reply(&p.upstream_id, outcome)))
    }

    /// Forgets a session's requests (it ended).
    pub fn forget(&self, sid: &str) {
        lock(&self.pending).retain(|(s, _), _| s != sid);
        lock(&self.by_upstream).retain(|(s, _, _), _| s != sid);
    }

    /// How many requests wait (all sessions).
    #[cfg(test)]
    fn waiting(&self) -> usize {
        lock(&self.pending).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(id: Value) -> Value {
        json!({"jsonrpc": "2.0", "id": id, "method": "sampling/createMessage", "params": {"maxTokens": 5}})
    }

    fn delivered(r: Rewrite) -> Value {
        match r {
            Rewrite::Deliver(v) => v,
            other => panic!("expected delivery, got {other:?}"),
        }
    }

    #[test]
    fn an_upstream_request_goes_out_under_a_gateway_id_and_its_answer_comes_back_under_the_upstreams() {
        // String ids, a u64 beyond f64's exact range, and a negative number: each comes back as sent.
        for upstream_id in [
            json!("req-7"),
            json!(18_446_744_073_709_551_615u64),
            json!(-3),
            json!(0),
        ] {
            let relay = Relay::<&str>::default();
            let out = delivered(relay.to_client("s1", &"link-a", 1, request(upstream_id.clone())));
            let gid = RequestId::of(&out["id"]).expect("an id");
            assert!(matches!(&gid, RequestId::String(g) if g.starts_with("mcpgw-")), "{gid}");
            assert_eq!(out["params"]["maxTokens"], 5);
            // Another session cannot answer it.
            assert!(relay.answer("s2", &gid, Ok(json!({}))).is_none());
            let (link, back) = relay
                .answer("s1", &gid, Ok(json!({"content": "hi"})))
                .expect("answered");
            assert_eq!(link, "link-a");
            assert_eq!(back["id"], upstream_id, "the id the upstream sent, exactly");
            assert!(back.to_string().contains(&upstream_id.to_string()), "{back}");
            assert_eq!(back["result"]["content"], "hi");
            assert!(relay.answer("s1", &gid, Ok(json!({}))).is_none(), "answered once");
        }
    }

    #[test]
    fn two_upstreams_using_the_same_id_get_distinct_gateway_ids() {
        let relay = Relay::<&str>::default();
        let a = delivered(relay.to_client("s", &"a", 1, request(json!(1))));
        let b = delivered(relay.to_client("s", &"b", 2, request(json!(1))));
        assert_ne!(a["id"], b["id"]);
        let err = json!({"code": -1, "message": "declined"});
        let id = |m: &Value| RequestId::of(&m["id"]).expect("an id");
        assert_eq!(relay.answer("s", &id(&b), Err(err.clone())).unwrap().0, "b");
        assert_eq!(relay.answer("s", &id(&a), Ok(json!({}))).unwrap().0, "a");
    }

    #[test]
    fn an_upstream_cancelling_its_request_is_told_to_the_client_under_the_gateway_id() {
        let relay = Relay::<&str>::default();
        let out = delivered(relay.to_client("s", &"a", 1, request(json!("x"))));
        // The same upstream id on another link is not this request.
        let cancel = |id: Value| json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": id, "reason": "gone"}});
        assert_eq!(relay.to_client("s", &"b", 2, cancel(json!("x"))), Rewrite::Drop);
        let told = delivered(relay.to_client("s", &"a", 1, cancel(json!("x"))));
        assert_eq!(told["params"]["requestId"], out["id"]);
        assert_eq!(told["params"]["reason"], "gone");
        assert_eq!(relay.waiting(), 0, "a cancelled request waits no more");
    }

    #[test]
    fn list_changes_refresh_stray_responses_drop_and_notifications_pass() {
        let relay = Relay::<&str>::default();
        let changed = json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"});
        assert_eq!(relay.to_client("s", &"a", 1, changed.clone()), Rewrite::RefreshCatalog);
        assert_eq!(unrouted(&changed), Rewrite::RefreshCatalog);
        let stray = json!({"jsonrpc": "2.0", "id": 4, "result": {}});
        assert_eq!(relay.to_client("s", &"a", 1, stray.clone()), Rewrite::Drop);
        assert_eq!(unrouted(&stray), Rewrite::Drop);
        let progress = json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": "t", "progress": 1}});
        assert_eq!(
            relay.to_client("s", &"a", 1, progress.clone()),
            Rewrite::Deliver(progress.clone())
        );
        assert_eq!(unrouted(&progress), Rewrite::Deliver(progress));
        match unrouted(&request(json!("q"))) {
            Rewrite::Reply(r) => assert_eq!(
                (r["id"].clone(), r["error"]["code"].clone()),
                (json!("q"), json!(-32601))
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_session_that_ends_forgets_its_requests() {
        let relay = Relay::<&str>::default();
        let a = delivered(relay.to_client("s", &"a", 1, request(json!(1))));
        relay.to_client("t", &"a", 1, request(json!(1)));
        relay.forget("s");
        let id = RequestId::of(&a["id"]).expect("an id");
        assert!(relay.answer("s", &id, Ok(json!({}))).is_none());
        assert_eq!(relay.waiting(), 1);
    }
}
