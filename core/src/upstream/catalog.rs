//! Reading an upstream's catalog over a link.

use super::*;

/// Reads every list the upstream offers, following cursors.
/// `origins`: a peer gateway is asked for each entry's origin too.
pub(crate) async fn fetch_catalog(link: &Link, timeout_ms: u64, origins: bool) -> Result<Catalog, UpstreamError> {
    let caps = link.capabilities().clone();
    let mut cat = Catalog {
        protocol_version: link.protocol_version(),
        server_info: link.init["serverInfo"].clone(),
        capabilities: caps.clone(),
        instructions: link.init["instructions"].as_str().map(str::to_string),
        ..Catalog::default()
    };
    let lists: [(&str, &str, &str); 4] = [
        ("tools", "tools/list", "tools"),
        ("resources", "resources/list", "resources"),
        ("resources", "resources/templates/list", "resourceTemplates"),
        ("prompts", "prompts/list", "prompts"),
    ];
    for (cap, method, field) in lists {
        if caps.get(cap).is_none() {
            continue;
        }
        let mut items = Vec::new();
        let mut cursor: Option<Value> = None;
        for _page in 0..1000 {
            let mut params = cursor.take().map(|c| json!({"cursor": c}));
            if origins {
                let p = params.get_or_insert_with(|| json!({}));
                p["_meta"] = json!({ crate::registry::ORIGIN: true });
            }
            let answer = link.request(method, params, None, timeout_ms).await?;
            let Some(result) = answer.get("result") else {
                // An upstream without templates may not know the method: an empty list.
                if method == "resources/templates/list" {
                    break;
                }
                let msg = answer["error"]["message"].as_str().unwrap_or("error").to_string();
                return Err(UpstreamError::Protocol(format!("{method}: {msg}")));
            };
            if let Some(list) = result.get(field).and_then(Value::as_array) {
                let entries = list.iter().filter(|i| i.is_object()).cloned();
                // Only a peer says where its members come from; from anyone else such a claim
                // is dropped before it is stored.
                items.extend(entries.map(|mut e| {
                    if !origins {
                        if let Some(m) = e.get_mut("_meta").and_then(Value::as_object_mut) {
                            m.remove(crate::registry::ORIGIN);
                        }
                    }
                    e
                }));
            }
            match result.get("nextCursor") {
                Some(c) if !c.is_null() => cursor = Some(c.clone()),
                _ => break,
            }
        }
        match field {
            "tools" => cat.tools = items,
            "resources" => cat.resources = items,
            "resourceTemplates" => cat.resource_templates = items,
            _ => cat.prompts = items,
        }
    }
    Ok(cat)
}
