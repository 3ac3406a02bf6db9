//! The upkeep of upstreams: health checks and the catalog refreshes they find due.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::{health, Federation};
use crate::model::{Catalog, Transport, UpstreamDef, UpstreamKind};
use crate::ports::OutboundRequest;
use crate::upstream::{fetch_catalog, Link, UpstreamError};

/// Catalog refreshes that an upstream's list changes ask for, one at a time per upstream: a
/// change announced while its catalog is being read asks for one more read after it, however
/// many changes were announced (an upstream announcing in a loop costs one read at a time).
#[derive(Default)]
pub(super) struct Refreshes {
    /// Upstreams being read → whether another read was asked for meanwhile.
    running: std::sync::Mutex<std::collections::HashMap<String, bool>>,
}

impl Refreshes {
    /// Whether a read of `id` is to start now (none is running); else one more is noted.
    pub fn begin(&self, id: &str) -> bool {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        match running.get_mut(id) {
            Some(again) => {
                *again = true;
                false
            }
            None => {
                running.insert(id.to_string(), false);
                true
            }
        }
    }

    /// A read of `id` was dropped before it ended (its task was cancelled): the next change
    /// starts one.
    pub fn forget(&self, id: &str) {
        self.running.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }

    /// A read of `id` ended: whether to read once more (a change came meanwhile).
    pub fn end(&self, id: &str) -> bool {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        match running.get_mut(id) {
            Some(again) if *again => {
                *again = false;
                true
            }
            _ => {
                running.remove(id);
                false
            }
        }
    }
}

/// Re-reads an upstream's catalog on a task of its own, at most one read at a time per upstream
/// ([`Refreshes`]): changes announced meanwhile ask for one more read.
pub(super) fn refresh_soon(fed: Arc<Federation>, id: String) {
    if !fed.refreshes.begin(&id) {
        return;
    }
    /// Lets the next change read if the task is dropped before its reads end.
    struct Reading(Arc<Federation>, String, bool);
    impl Reading {
        fn finished(&mut self) {
            self.2 = true;
        }
    }
    impl Drop for Reading {
        fn drop(&mut self) {
            if !self.2 {
                self.0.refreshes.forget(&self.1);
            }
        }
    }
    // Made before the task, so that a task dropped before it first runs frees the next too.
    let mut reading = Reading(fed.clone(), id, false);
    fed.net.spawner.spawn(crate::platform::boxed(async move {
        loop {
            let _ = reading.0.refresh_catalog(&reading.1).await;
            if !reading.0.refreshes.end(&reading.1) {
                reading.finished();
                break;
            }
        }
    }));
}

/// Health checks and catalog refreshes that are due: a `ping` on each upstream's shared link
/// every `health_check_secs` (an OpenAPI upstream: its document read, or its API answering);
/// the catalog re-read every `refresh_secs`, after a recovery, and when it was never read.
/// Returns how many upstreams are healthy.
pub(super) async fn check_upstreams(fed: &Federation, force: bool) -> usize {
    let Ok(snap) = fed.registry.snapshot().await else {
        return 0;
    };
    let now = fed.now();
    let mut healthy = 0;
    for up in &snap.upstreams {
        let before = fed.health.of(&up.id);
        let due = force
            || before.as_ref().is_none_or(|h| {
                now.saturating_sub(h.checked_at) >= fed.settings.health_check_secs.saturating_mul(1000)
            });
        if !due {
            healthy += usize::from(before.is_some_and(|h| h.healthy));
            continue;
        }
        // A due check finds the circuit's retry delay over too: it may always try.
        let timeout = fed.timeout_of(&up.def).min(10_000);
        let checked = match up.def.transport {
            Transport::Openapi => crate::upstream::openapi::probe(&fed.net, up, timeout).await,
            _ => match fed.link_for(None, up, fed.reader_of(up).await.as_deref(), None).await {
                // One acting for each caller, with nobody to act for here: not checked.
                Err(_) if up.def.auth.as_ref().is_some_and(|a| a.per_user()) => continue,
                Ok(link) => health::timed_ping(&link, timeout, &fed.net.telemetry, &up.def.name).await,
                Err(_) => continue,
            },
        };
        if let Err(e) = checked {
            // One caller's refused token is theirs, not the upstream's failure for everyone.
            let callers = matches!(
                e,
                crate::upstream::UpstreamError::Unauthorized(_) | crate::upstream::UpstreamError::NeedsConsent
            ) && up.def.auth.as_ref().is_some_and(|a| a.per_user());
            if !callers {
                fed.record_failure(&up.id, &e);
            }
            continue;
        }
        fed.health.success(&up.id, None, fed.now());
        healthy += 1;
        let refresh_ms = up
            .def
            .refresh_secs
            .unwrap_or(fed.settings.upstream_refresh_secs)
            .saturating_mul(1000);
        let recovered = before.as_ref().is_some_and(|h| !h.healthy);
        let never = before.as_ref().is_none_or(|h| h.refreshed_at == 0);
        let stale = before
            .as_ref()
            .is_some_and(|h| now.saturating_sub(h.refreshed_at) >= refresh_ms);
        if force || recovered || never || stale {
            let _ = fed.refresh_catalog(&up.id).await;
        }
    }
    healthy
}

/// A peer's own upstreams and their health, as the peer's REST API tells them now (its
/// `GET /gateways`, with the peer's headers): each `{name, kind, healthy, last_error}`.
pub(super) async fn peer_upstreams(fed: &Federation, def: &UpstreamDef) -> Result<Value, UpstreamError> {
    let all = peer_get(fed, def, "/gateways").await?;
    let listed = all
        .as_array()
        .ok_or_else(|| UpstreamError::Protocol("the peer's GET /gateways is not a list".into()))?;
    Ok(Value::Array(
        listed
            .iter()
            .map(|u| {
                json!({"name": u["name"], "kind": u.get("kind").cloned().unwrap_or(json!("mcp")),
                       "healthy": u["status"]["healthy"], "last_error": u["status"]["last_error"]})
            })
            .collect(),
    ))
}

/// An MCP upstream's catalog read over `link`: a peer's with each entry's origin, and its
/// virtual servers.
pub(super) async fn catalog_over(fed: &Federation, link: &Link, def: &UpstreamDef) -> Result<Catalog, UpstreamError> {
    let peer = def.kind == UpstreamKind::Peer;
    let mut cat = fetch_catalog(link, fed.timeout_of(def), peer).await?;
    if peer {
        cat.servers = peer_servers(fed, def).await;
    }
    if !cat.tools.is_empty() {
        cat.needs = match known_needs(fed, def, &cat.tools).await {
            Some(known) => known,
            None => tool_needs(fed, def, link, &cat.tools).await,
        };
    }
    Ok(cat)
}

/// What the snapshot knows of which of `def`'s tools need client capabilities, if the upstream
/// lists the same tools as when that was found (a list that did not change is not read again
/// without each capability: a refresh costs one link, not four).
async fn known_needs(
    fed: &Federation,
    def: &UpstreamDef,
    listed: &[Value],
) -> Option<std::collections::BTreeMap<String, Vec<String>>> {
    let snap = fed.registry.snapshot().await.ok()?;
    let known: Vec<&crate::registry::Federated> = snap
        .tools
        .iter()
        .filter_map(|t| t.fed.as_ref().filter(|f| f.upstream.def.name == def.name))
        .collect();
    let mut was: Vec<&str> = known.iter().map(|f| f.name.as_str()).collect();
    let mut is: Vec<&str> = listed
        .iter()
        .filter_map(|t| t.get("name").and_then(Value::as_str))
        .collect();
    was.sort_unstable();
    is.sort_unstable();
    (!was.is_empty() && was == is).then(|| {
        known
            .iter()
            .filter(|f| !f.needs.is_empty())
            .map(|f| (f.name.clone(), f.needs.clone()))
            .collect()
    })
}

/// The client capabilities an upstream may list tools by.
const CLIENT_CAPABILITIES: [&str; 3] = ["sampling", "elicitation", "roots"];

/// Which of `listed` (read declaring every capability the gateway relays) the upstream lists
/// only to a client that declares some: the list read again declaring none, and where it is
/// shorter, once without each capability. A read that fails tells nothing (the tool is
/// offered to all, as before).
async fn tool_needs(
    fed: &Federation,
    def: &UpstreamDef,
    link: &Link,
    listed: &[Value],
) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut needs = std::collections::BTreeMap::new();
    let prefer = if link.is_stateless() {
        crate::proto::version::Era::Stateless
    } else {
        crate::proto::version::Era::Session
    };
    let timeout = fed.timeout_of(def);
    // The tool names listed to a client declaring every capability but `without`.
    let names_without = |without: &'static [&'static str]| async move {
        let mut caps = super::relayable_hello().capabilities;
        if let Some(m) = caps.as_object_mut() {
            m.retain(|k, _| !without.contains(&k.as_str()));
        }
        let hello = crate::upstream::Hello {
            capabilities: caps,
            client_info: Value::Null,
            prefer,
            acting_for: None,
        };
        let (other, _) = Link::open(&fed.net, def, &hello, 0, timeout).await.ok()?;
        let names = crate::upstream::fetch_tool_names(&other, timeout).await.ok();
        other.close(&fed.net.spawner);
        names
    };
    let Some(bare) = names_without(&CLIENT_CAPABILITIES).await else {
        return needs;
    };
    let hidden: Vec<&str> = listed
        .iter()
        .filter_map(|t| t.get("name").and_then(Value::as_str))
        .filter(|n| !bare.contains(*n))
        .collect();
    if hidden.is_empty() {
        return needs;
    }
    for (i, cap) in CLIENT_CAPABILITIES.iter().enumerate() {
        let Some(seen) = names_without(&CLIENT_CAPABILITIES[i..=i]).await else {
            continue;
        };
        for name in hidden.iter().filter(|n| !seen.contains(**n)) {
            needs
                .entry(name.to_string())
                .or_insert_with(Vec::new)
                .push(cap.to_string());
        }
    }
    needs
}

/// A peer's virtual servers (its `GET /servers`), none if it does not tell them.
async fn peer_servers(fed: &Federation, def: &UpstreamDef) -> Vec<Value> {
    match peer_get(fed, def, "/servers").await {
        Ok(Value::Array(all)) => all,
        _ => Vec::new(),
    }
}

/// `GET {peer}{path}` of a peer's REST API, with its headers.
async fn peer_get(fed: &Federation, def: &UpstreamDef, path: &str) -> Result<Value, UpstreamError> {
    let endpoint = def
        .url
        .as_deref()
        .ok_or_else(|| UpstreamError::Unsupported("the peer has no URL".into()))?;
    // The peer's base: its MCP endpoint without `/mcp` (or `/servers/{id}/mcp`).
    let base = match endpoint.find("/servers/") {
        Some(i) => &endpoint[..i],
        None => endpoint.trim_end_matches('/').trim_end_matches("/mcp"),
    };
    let mut headers = crate::http::header_map(&def.headers).map_err(|e| UpstreamError::Unsupported(e.to_string()))?;
    headers.insert(http::header::ACCEPT, http::HeaderValue::from_static("application/json"));
    let request = OutboundRequest {
        method: http::Method::GET,
        url: format!("{base}{path}"),
        headers,
        body: None,
        tls: def.tls.clone().map(std::sync::Arc::new),
    };
    let timeout = Duration::from_millis(fed.timeout_of(def).min(5_000));
    let (resp, body) = crate::http::fetch::fetch(&*fed.net.http, &*fed.net.clock, request, timeout, fed.net.max_bytes)
        .await
        .map_err(|e| UpstreamError::Unreachable(e.to_string()))?;
    if !resp.status.is_success() {
        return Err(UpstreamError::Protocol(format!(
            "the peer's GET {path} answered {}",
            resp.status
        )));
    }
    serde_json::from_slice(&body).map_err(|e| UpstreamError::Protocol(format!("not JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::Refreshes;

    #[test]
    fn list_changes_during_a_read_ask_for_one_more_read_not_one_each() {
        let r = Refreshes::default();
        assert!(r.begin("a"), "the first change reads");
        assert!(r.begin("b"), "another upstream reads on its own");
        for _ in 0..100 {
            assert!(!r.begin("a"), "a read is running");
        }
        assert!(r.end("a"), "one more read for the changes meanwhile");
        assert!(!r.end("a"), "and no more");
        assert!(r.begin("a"), "a later change reads again");
        assert!(!r.end("a"));
        assert!(!r.end("b"));
        // A read whose task was dropped does not hold the next change back.
        assert!(r.begin("c"));
        r.forget("c");
        assert!(r.begin("c"));
    }
}
