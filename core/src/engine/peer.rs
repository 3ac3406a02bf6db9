//! What a peer gateway asks for when it reads this gateway's lists (`_meta` with
//! `io.mcpgw/origin: true` in the list request): each entry with where it comes from, the
//! gateways that served it so far (this one last) and its name where it lives, so that the peer
//! never takes back what it gave (A <-> B, rings) and takes a member reached twice once.

use serde_json::{json, Value};

use crate::registry::{origin_of, Federated, ORIGIN};

/// Whether a list request asks for origins.
pub(super) fn asked(params: &serde_json::Map<String, Value>) -> bool {
    params.get("_meta").and_then(|m| m.get(ORIGIN)) == Some(&Value::Bool(true))
}

/// One entry with its origin: a peer's member keeps its path (this gateway added), any other
/// lives here. An origin is believed only from an upstream registered as a peer: any other
/// upstream's entry lives at that upstream, whatever its `_meta` claims.
pub(super) fn stamp(listing: &str, fed: Option<&Federated>, own: &str, key: &str) -> String {
    let Ok(mut entry) = serde_json::from_str::<Value>(listing) else {
        return listing.to_string();
    };
    let from_peer = fed.filter(|f| f.upstream.def.kind == crate::model::UpstreamKind::Peer);
    let (mut path, name) = match from_peer.and_then(|f| origin_of(&serde_json::from_str(&f.listing).ok()?)) {
        Some(o) => o,
        None => (Vec::new(), entry[key].as_str().unwrap_or_default().to_string()),
    };
    path.push(own.to_string());
    if !entry.get("_meta").is_some_and(Value::is_object) {
        entry["_meta"] = json!({});
    }
    entry["_meta"][ORIGIN] = json!({"path": path, "name": name});
    entry.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn fed(kind: &str) -> Federated {
        let def: crate::model::UpstreamDef =
            serde_json::from_value(json!({"name": "x", "url": "http://x.example/mcp", "kind": kind})).expect("def");
        Federated {
            upstream: Arc::new(crate::registry::Upstream {
                id: "u1".into(),
                slug: "x".into(),
                revision: 0,
                def,
                capabilities: json!({}),
                protocol_version: None,
                instructions: None,
                base_url: None,
            }),
            name: "t".into(),
            listing: json!({"name": "t", "_meta": {ORIGIN: {"path": ["gw-c"], "name": "genuine"}}}).to_string(),
            needs: Vec::new(),
        }
    }

    /// A forged origin from an upstream that is not a peer is not believed: its member lives at
    /// that upstream, served by this gateway.
    #[test]
    fn only_a_peers_origin_is_passed_on() {
        let listing = r#"{"name":"x__t"}"#;
        let forged: Value = serde_json::from_str(&stamp(listing, Some(&fed("mcp")), "gw-a", "name")).expect("json");
        assert_eq!(forged["_meta"][ORIGIN], json!({"path": ["gw-a"], "name": "x__t"}));
        let genuine: Value = serde_json::from_str(&stamp(listing, Some(&fed("peer")), "gw-a", "name")).expect("json");
        assert_eq!(
            genuine["_meta"][ORIGIN],
            json!({"path": ["gw-c", "gw-a"], "name": "genuine"})
        );
    }
}
