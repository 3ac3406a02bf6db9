//! What a JSON-RPC message is, told in one place for every layer (upstream links, the bridge,
//! the faces): from its text without building a value tree ([`kind_of`], the fast path for
//! relayed answers), or from a parsed value ([`is_response`], [`response_id`], [`is_jsonrpc`]).

use serde::de::{Deserializer, IgnoredAny};
use serde::Deserialize;
use serde_json::Value;

/// What a message is, read without building it: which members it has, and its id.
#[derive(Deserialize, Default)]
struct Head {
    #[serde(default, deserialize_with = "present")]
    method: bool,
    #[serde(default, deserialize_with = "some")]
    id: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    result: bool,
    #[serde(default, deserialize_with = "present")]
    error: bool,
}

/// True when the member is there, whatever its value (`null` included).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    IgnoredAny::deserialize(d).map(|_| true)
}

fn some<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// How a message's text reads.
pub enum Kind {
    /// A response (an id and a result or error, no method), with its id if it is a number.
    Response(Option<u64>),
    /// Anything else that is JSON: a request or notification of the upstream's.
    Other,
}

/// Classifies a message's text; `None` if it is not JSON.
pub fn kind_of(text: &str) -> Option<Kind> {
    match serde_json::from_str::<Head>(text) {
        Ok(h) if !h.method && h.id.is_some() && (h.result || h.error) => {
            Some(Kind::Response(h.id.as_ref().and_then(Value::as_u64)))
        }
        Ok(_) => Some(Kind::Other),
        // An array or a scalar: JSON all the same, and no response.
        Err(_) => serde_json::from_str::<IgnoredAny>(text).ok().map(|_| Kind::Other),
    }
}

/// True for a response (an id and a result or error, no method).
pub fn is_response(v: &Value) -> bool {
    v.get("method").is_none() && v.get("id").is_some() && (v.get("result").is_some() || v.get("error").is_some())
}

/// The id of a message that answers a request (no method, an id that is not null).
pub fn response_id(m: &Value) -> Option<&Value> {
    m.get("method")
        .is_none()
        .then(|| m.get("id").filter(|i| !i.is_null()))
        .flatten()
}

/// Whether `v` is one JSON-RPC message or a non-empty batch of them (each says `jsonrpc`).
pub fn is_jsonrpc(v: &Value) -> bool {
    match v {
        Value::Array(items) => !items.is_empty() && items.iter().all(|m| m.get("jsonrpc").is_some()),
        m => m.get("jsonrpc").is_some(),
    }
}
