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
/// lives here.
pub(super) fn stamp(listing: &str, fed: Option<&Federated>, own: &str, key: &str) -> String {
    let Ok(mut entry) = serde_json::from_str::<Value>(listing) else {
        return listing.to_string();
    };
    let (mut path, name) = match fed.and_then(|f| origin_of(&serde_json::from_str(&f.listing).ok()?)) {
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
