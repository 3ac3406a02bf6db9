//! One message of a bridge's client, read as far as the bridge must know it.

use serde_json::Value;

use crate::proto::meta;
use crate::proto::method::Method as McpMethod;
use crate::proto::version::{Era, ProtocolVersion};

/// One message of the client, as far as the bridge must know it.
pub(super) struct Outgoing {
    /// The ids of its requests (every element's, for a batch).
    pub requests: Vec<Value>,
    /// The method of a single message.
    pub method: Option<String>,
    /// A single request's params.
    pub params: Option<Value>,
    pub id: Option<Value>,
}

impl Outgoing {
    /// True for a single message of `method`.
    pub fn is(&self, method: McpMethod) -> bool {
        self.method.as_deref().and_then(McpMethod::parse) == Some(method)
    }

    pub fn read(text: &str) -> Option<Self> {
        let v: Value = serde_json::from_str(text).ok()?;
        let is_request = |m: &Value| m.get("method").is_some() && m.get("id").is_some_and(|i| !i.is_null());
        let requests = match &v {
            Value::Array(items) => items
                .iter()
                .filter(|m| is_request(m))
                .map(|m| m["id"].clone())
                .collect(),
            m if is_request(m) => vec![m["id"].clone()],
            _ => Vec::new(),
        };
        let method = v.get("method").and_then(Value::as_str).map(str::to_string);
        Some(Outgoing {
            requests,
            method,
            params: v.get("params").cloned(),
            id: v.get("id").cloned(),
        })
    }

    /// The 2026-07-28 revision a sessionless message declares in `_meta`, if any.
    pub fn stateless(&self) -> Option<ProtocolVersion> {
        let declared = meta::declared_version(self.params.as_ref())?;
        ProtocolVersion::parse(declared).filter(|v| v.era() == Era::Stateless)
    }
}
