//! What an upstream says, rewritten for the client: the table of the upstream's own requests
//! (sampling, elicitation, roots) waiting for the client's answer, under ids the gateway hands
//! out (an upstream's ids are its own and could collide with another's), and the decision for
//! each message ([`Rewrite`]). No I/O: the caller does what the decision says.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

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

/// One session's upstream requests waiting for its client's answer. `L` is the link the answer
/// goes back on; `link_key` tells links apart. Owned with the rest of the session's state
/// ([`super::links::Links`]), so it ends with the session.
pub(crate) struct Asked<L> {
    /// Gateway id → the request.
    pending: HashMap<RequestId, Pending<L>>,
    /// (link, upstream id) → gateway id: finds a request the upstream cancels.
    by_upstream: HashMap<(usize, RequestId), RequestId>,
}

impl<L> Default for Asked<L> {
    fn default() -> Self {
        Self {
            pending: HashMap::new(),
            by_upstream: HashMap::new(),
        }
    }
}

/// The ids the gateway hands clients for upstream requests: unique across sessions (and, with
/// a prefix naming the instance, across instances).
pub(crate) struct Relay {
    seq: AtomicU64,
    /// What the ids handed to clients start with.
    prefix: String,
}

impl Default for Relay {
    fn default() -> Self {
        Self::with_prefix("mcpgw-".into())
    }
}

impl Relay {
    /// A relay whose ids for clients start with `prefix`.
    pub fn with_prefix(prefix: String) -> Self {
        Self {
            seq: AtomicU64::new(0),
            prefix,
        }
    }
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

impl Relay {
    /// The decision for a message `link` (told apart by `link_key`) sent for the session whose
    /// waiting requests are `asked`.
    pub fn to_client<L: Clone>(&self, asked: &mut Asked<L>, link: &L, link_key: usize, mut msg: Value) -> Rewrite {
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
            asked.by_upstream.insert((link_key, upstream_id.clone()), gid.clone());
            asked.pending.insert(
                gid,
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
            let Some(gid) = asked.by_upstream.remove(&(link_key, target)) else {
                return Rewrite::Drop;
            };
            asked.pending.remove(&gid);
            msg["params"]["requestId"] = gid.to_value();
        }
        Rewrite::Deliver(msg)
    }
}

impl<L> Asked<L> {
    /// The client answered the request it knows as `id`: the link to send the answer on and the
    /// answer under the upstream's id; `None` if the gateway never handed out that id.
    pub fn answer(&mut self, id: &RequestId, outcome: Result<Value, Value>) -> Option<(L, Value)> {
        let p = self.pending.remove(id)?;
        self.by_upstream.remove(&(p.link_key, p.upstream_id.clone()));
        Some((p.link, reply(&p.upstream_id, outcome)))
    }

    /// How many requests wait.
    pub fn waiting(&self) -> usize {
        self.pending.len()
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
            let relay = Relay::default();
            let (mut s1, mut s2) = (Asked::<&str>::default(), Asked::<&str>::default());
            let out = delivered(relay.to_client(&mut s1, &"link-a", 1, request(upstream_id.clone())));
            let gid = RequestId::of(&out["id"]).expect("an id");
            assert!(matches!(&gid, RequestId::String(g) if g.starts_with("mcpgw-")), "{gid}");
            assert_eq!(out["params"]["maxTokens"], 5);
            // Another session cannot answer it.
            assert!(s2.answer(&gid, Ok(json!({}))).is_none());
            let (link, back) = s1.answer(&gid, Ok(json!({"content": "hi"}))).expect("answered");
            assert_eq!(link, "link-a");
            assert_eq!(back["id"], upstream_id, "the id the upstream sent, exactly");
            assert!(back.to_string().contains(&upstream_id.to_string()), "{back}");
            assert_eq!(back["result"]["content"], "hi");
            assert!(s1.answer(&gid, Ok(json!({}))).is_none(), "answered once");
        }
    }

    #[test]
    fn two_upstreams_using_the_same_id_get_distinct_gateway_ids() {
        let relay = Relay::default();
        let mut s = Asked::<&str>::default();
        let a = delivered(relay.to_client(&mut s, &"a", 1, request(json!(1))));
        let b = delivered(relay.to_client(&mut s, &"b", 2, request(json!(1))));
        assert_ne!(a["id"], b["id"]);
        // Nor do two sessions share an id.
        let mut t = Asked::<&str>::default();
        let c = delivered(relay.to_client(&mut t, &"a", 1, request(json!(1))));
        assert!(c["id"] != a["id"] && c["id"] != b["id"]);
        let err = json!({"code": -1, "message": "declined"});
        let id = |m: &Value| RequestId::of(&m["id"]).expect("an id");
        assert_eq!(s.answer(&id(&b), Err(err.clone())).unwrap().0, "b");
        assert_eq!(s.answer(&id(&a), Ok(json!({}))).unwrap().0, "a");
    }

    #[test]
    fn an_upstream_cancelling_its_request_is_told_to_the_client_under_the_gateway_id() {
        let relay = Relay::default();
        let mut s = Asked::<&str>::default();
        let out = delivered(relay.to_client(&mut s, &"a", 1, request(json!("x"))));
        // The same upstream id on another link is not this request.
        let cancel = |id: Value| json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": id, "reason": "gone"}});
        assert_eq!(relay.to_client(&mut s, &"b", 2, cancel(json!("x"))), Rewrite::Drop);
        let told = delivered(relay.to_client(&mut s, &"a", 1, cancel(json!("x"))));
        assert_eq!(told["params"]["requestId"], out["id"]);
        assert_eq!(told["params"]["reason"], "gone");
        assert_eq!(s.waiting(), 0, "a cancelled request waits no more");
    }

    #[test]
    fn list_changes_refresh_stray_responses_drop_and_notifications_pass() {
        let relay = Relay::default();
        let mut s = Asked::<&str>::default();
        let changed = json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"});
        assert_eq!(
            relay.to_client(&mut s, &"a", 1, changed.clone()),
            Rewrite::RefreshCatalog
        );
        assert_eq!(unrouted(&changed), Rewrite::RefreshCatalog);
        let stray = json!({"jsonrpc": "2.0", "id": 4, "result": {}});
        assert_eq!(relay.to_client(&mut s, &"a", 1, stray.clone()), Rewrite::Drop);
        assert_eq!(unrouted(&stray), Rewrite::Drop);
        let progress = json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": "t", "progress": 1}});
        assert_eq!(
            relay.to_client(&mut s, &"a", 1, progress.clone()),
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
        assert_eq!(s.waiting(), 0);
    }
}
