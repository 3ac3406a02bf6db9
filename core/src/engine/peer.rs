//! What a peer gateway asks for when it reads this gateway's lists (`_meta` with
//! `io.mcpgw/origin: true` in the list request): each entry with where it comes from, the
//! gateways that served it so far (this one last) and its name where it lives, so that the peer
//! never takes back what it gave (A <-> B, rings) and takes a member reached twice once.

use serde_json::{json, Value};

use super::ctx::CallCtx;
use crate::registry::{origin_of, Federated, Snapshot, ORIGIN};

/// Whether a list request asks for origins.
pub(super) fn asked(params: &serde_json::Map<String, Value>) -> bool {
    params.get("_meta").and_then(|m| m.get(ORIGIN)) == Some(&Value::Bool(true))
}

/// One entry with its origin: a peer's member keeps its path (this gateway added), any other
/// lives here.
fn stamp(listing: &str, fed: Option<&Federated>, own: &str, key: &str) -> String {
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

/// The entries of list `what` the caller sees, each with its origin.
pub(super) fn stamped(snap: &Snapshot, ctx: &CallCtx, what: &str, own: &str) -> Vec<String> {
    match what {
        "tools" => snap
            .tools
            .iter()
            .filter(|t| ctx.sees_tool(t))
            .map(|t| stamp(ctx.listing(&t.listing, t.fed.as_ref()), t.fed.as_ref(), own, "name"))
            .collect(),
        "resources" => snap
            .resources
            .iter()
            .filter(|r| ctx.sees_resource(r))
            .map(|r| stamp(ctx.listing(&r.listing, r.fed.as_ref()), r.fed.as_ref(), own, "uri"))
            .collect(),
        "resourceTemplates" => snap
            .templates
            .iter()
            .filter(|r| ctx.sees_resource(r))
            .map(|r| {
                stamp(
                    ctx.listing(&r.listing, r.fed.as_ref()),
                    r.fed.as_ref(),
                    own,
                    "uriTemplate",
                )
            })
            .collect(),
        _ => snap
            .prompts
            .iter()
            .filter(|p| ctx.sees_prompt(p))
            .map(|p| stamp(ctx.listing(&p.listing, p.fed.as_ref()), p.fed.as_ref(), own, "name"))
            .collect(),
    }
}
