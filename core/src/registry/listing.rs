//! What each definition looks like in its MCP listing (`tools/list`, `resources/list` and
//! `resources/templates/list`, `prompts/list`), rendered once when the registry's snapshot is
//! built. Depends on the model only.

use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::model::{PromptDef, ResourceDef, ToolDef};

/// Sets `key` to `v` when `v` is there.
pub(crate) fn put_opt(m: &mut Map<String, Value>, key: &str, v: &Option<impl serde::Serialize>) {
    if let Some(v) = v {
        if let Ok(v) = serde_json::to_value(v) {
            m.insert(key.into(), v);
        }
    }
}

/// The `tools/list` entry of a tool, serialized.
pub fn tool_listing(d: &ToolDef) -> String {
    let mut m = Map::new();
    m.insert("name".into(), json!(d.name));
    put_opt(&mut m, "title", &d.title);
    put_opt(&mut m, "description", &d.description);
    m.insert("inputSchema".into(), d.input_schema.value());
    put_opt(&mut m, "outputSchema", &d.output_schema);
    put_opt(&mut m, "annotations", &d.annotations);
    Value::Object(m).to_string()
}

/// The `resources/list` (or `resources/templates/list`) entry of a resource, serialized.
pub fn resource_listing(d: &ResourceDef) -> String {
    let mut m = Map::new();
    match &d.uri_template {
        Some(t) => m.insert("uriTemplate".into(), json!(t)),
        None => m.insert("uri".into(), json!(d.key())),
    };
    m.insert("name".into(), json!(d.name));
    put_opt(&mut m, "title", &d.title);
    put_opt(&mut m, "description", &d.description);
    put_opt(&mut m, "mimeType", &d.mime_type);
    put_opt(&mut m, "annotations", &d.annotations);
    if d.uri_template.is_none() {
        let size = match (&d.text, &d.blob) {
            (Some(t), _) => Some(t.len()),
            (_, Some(b)) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .ok()
                .map(|v| v.len()),
            _ => None,
        };
        put_opt(&mut m, "size", &size);
    }
    Value::Object(m).to_string()
}

/// The `prompts/list` entry of a prompt, serialized.
pub fn prompt_listing(p: &PromptDef) -> String {
    let mut m = Map::new();
    m.insert("name".into(), json!(p.name));
    put_opt(&mut m, "title", &p.title);
    put_opt(&mut m, "description", &p.description);
    let args: Vec<Value> = p
        .arguments
        .iter()
        .map(|a| {
            let mut am = Map::new();
            am.insert("name".into(), json!(a.name));
            put_opt(&mut am, "title", &a.title);
            put_opt(&mut am, "description", &a.description);
            am.insert("required".into(), json!(a.required));
            Value::Object(am)
        })
        .collect();
    m.insert("arguments".into(), Value::Array(args));
    Value::Object(m).to_string()
}
