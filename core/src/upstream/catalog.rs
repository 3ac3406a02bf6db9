//! Reading an upstream's catalog over a link.

use super::*;
use crate::proto::method::Method;

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
    let lists: [(&str, Method, &str); 4] = [
        ("tools", Method::ToolsList, "tools"),
        ("resources", Method::ResourcesList, "resources"),
        ("resources", Method::ResourceTemplatesList, "resourceTemplates"),
        ("prompts", Method::PromptsList, "prompts"),
    ];
    for (cap, method, field) in lists {
        if caps.get(cap).is_none() {
            continue;
        }
        let items = read_list(link, method, field, timeout_ms, origins).await?;
        match field {
            "tools" => cat.tools = items,
            "resources" => cat.resources = items,
            "resourceTemplates" => cat.resource_templates = items,
            _ => cat.prompts = items,
        }
    }
    Ok(cat)
}

/// The names of the tools the upstream lists over `link`.
pub(crate) async fn fetch_tool_names(
    link: &Link,
    timeout_ms: u64,
) -> Result<std::collections::HashSet<String>, UpstreamError> {
    let tools = read_list(link, Method::ToolsList, "tools", timeout_ms, false).await?;
    Ok(tools
        .iter()
        .filter_map(|t| t.get("name").and_then(Value::as_str).map(str::to_string))
        .collect())
}

/// Every page of one list. `origins`: a peer gateway is asked for each entry's origin too.
async fn read_list(
    link: &Link,
    method: Method,
    field: &str,
    timeout_ms: u64,
    origins: bool,
) -> Result<Vec<Value>, UpstreamError> {
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
            if method == Method::ResourceTemplatesList {
                break;
            }
            let msg = answer["error"]["message"].as_str().unwrap_or("error").to_string();
            return Err(UpstreamError::Protocol(format!("{}: {msg}", method.name())));
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
    Ok(items)
}
