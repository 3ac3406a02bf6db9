//! JSON-RPC 2.0 framing: parsing single messages and batches, classifying requests, notifications
//! and responses, and building replies. Payloads stay `serde_json::Value` so nothing the gateway
//! does not read is lost on the way through.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// Invalid JSON was received.
pub const PARSE_ERROR: i64 = -32700;
/// The JSON sent is not a valid request object.
pub const INVALID_REQUEST: i64 = -32600;
/// The method does not exist or is not available.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// Invalid method parameters.
pub const INVALID_PARAMS: i64 = -32602;
/// Internal JSON-RPC error.
pub const INTERNAL_ERROR: i64 = -32603;
/// MCP: the session named by `Mcp-Session-Id` does not exist (sent with HTTP 404).
pub const SESSION_NOT_FOUND: i64 = -32001;
/// MCP: a resource URI matched nothing.
pub const RESOURCE_NOT_FOUND: i64 = -32002;

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("JSON-RPC error {code}: {message}")]
pub struct RpcError {
    /// The error code (see the constants in this module).
    pub code: i64,
    /// A short human-readable description.
    pub message: String,
    /// Optional structured detail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl RpcError {
    /// An error with a code and message.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }
    /// Attaches structured detail.
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }
    /// -32602 Invalid params.
    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(INVALID_PARAMS, message)
    }
    /// -32601 Method not found, naming the method.
    pub fn method_not_found(method: &str) -> Self {
        Self::new(METHOD_NOT_FOUND, format!("Method not found: {method}"))
    }
    /// -32600 Invalid request.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(INVALID_REQUEST, message)
    }
    /// -32603 Internal error.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(INTERNAL_ERROR, message)
    }
}

/// A request: has an id and expects a response.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The id, a string or number, echoed in the response.
    pub id: Value,
    /// The method name.
    pub method: String,
    /// The params object or array, if any.
    pub params: Option<Value>,
}

/// One classified JSON-RPC message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A request (has an id).
    Request(Request),
    /// A notification (no id, no response).
    Notification {
        /// The method name.
        method: String,
        /// The params, if any.
        params: Option<Value>,
    },
    /// A response to a request this side sent.
    Response {
        /// The id of the request answered.
        id: Value,
        /// The result or the error.
        outcome: Result<Value, RpcError>,
    },
}

/// A parsed request body: one message, or a batch of entries each valid or not.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A single message.
    Single(Message),
    /// A batch; an invalid entry carries the id it had (or null) and the error to answer with.
    Batch(Vec<Result<Message, (Value, RpcError)>>),
}

impl Incoming {
    /// True when any entry is a request (and so needs a response body).
    pub fn has_requests(&self) -> bool {
        match self {
            Incoming::Single(m) => matches!(m, Message::Request(_)),
            Incoming::Batch(items) => items.iter().any(|m| matches!(m, Ok(Message::Request(_)) | Err(_))),
        }
    }
}

/// Parses a body. `Err` is a parse error (-32700) or a top-level invalid request (-32600).
pub fn parse(body: &[u8]) -> Result<Incoming, RpcError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| RpcError::new(PARSE_ERROR, format!("Parse error: {e}")))?;
    match value {
        Value::Array(items) => {
            if items.is_empty() {
                return Err(RpcError::invalid_request("Invalid Request: empty batch"));
            }
            Ok(Incoming::Batch(items.into_iter().map(classify).collect()))
        }
        other => classify(other).map(Incoming::Single).map_err(|(_, e)| e),
    }
}

/// Classifies one JSON value as a request, notification or response.
pub fn classify(value: Value) -> Result<Message, (Value, RpcError)> {
    let Value::Object(mut obj) = value else {
        return Err((
            Value::Null,
            RpcError::invalid_request("Invalid Request: a message must be a JSON object"),
        ));
    };
    let id = obj.remove("id");
    let err_id = match &id {
        Some(v @ (Value::String(_) | Value::Number(_))) => v.clone(),
        _ => Value::Null,
    };
    let fail = |msg: &str| {
        Err((
            err_id.clone(),
            RpcError::invalid_request(format!("Invalid Request: {msg}")),
        ))
    };
    if obj.get("jsonrpc") != Some(&Value::String("2.0".into())) {
        return fail("\"jsonrpc\" must be \"2.0\"");
    }
    if let Some(method) = obj.remove("method") {
        let Value::String(method) = method else {
            return fail("\"method\" must be a string");
        };
        let params = obj.remove("params");
        if let Some(p) = &params {
            if !(p.is_object() || p.is_array()) {
                return fail("\"params\" must be an object or an array");
            }
        }
        return match id {
            None => Ok(Message::Notification { method, params }),
            Some(Value::String(_) | Value::Number(_)) => Ok(Message::Request(Request {
                id: err_id,
                method,
                params,
            })),
            Some(_) => fail("\"id\" must be a string or a number"),
        };
    }
    let Some(id) = id else {
        return fail("a message needs \"method\" (request or notification) or \"id\" (response)");
    };
    match (obj.remove("result"), obj.remove("error")) {
        (Some(result), None) => Ok(Message::Response {
            id,
            outcome: Ok(result),
        }),
        (None, Some(error)) => match serde_json::from_value::<RpcError>(error) {
            Ok(e) => Ok(Message::Response { id, outcome: Err(e) }),
            Err(_) => fail("\"error\" must have an integer \"code\" and a string \"message\""),
        },
        _ => fail("a response needs exactly one of \"result\" and \"error\""),
    }
}

/// JSON text this crate serialized itself (so known to be valid): results travel as text so
/// that pre-rendered parts (list entries) are copied, not rebuilt as `Value` trees per request.
#[derive(Debug, Clone, PartialEq)]
pub struct Json(pub String);

impl Json {
    /// Serializes a value.
    pub fn from_value(v: &Value) -> Self {
        Json(v.to_string())
    }
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A success response around an already-serialized result.
pub fn response_json(id: &Value, result: &Json) -> Json {
    Json(format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{}}}"#, result.0))
}

/// A success response.
pub fn response(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// An error response (`id` is null when the request's id could not be read).
pub fn error_response(id: &Value, error: &RpcError) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": error})
}

/// A notification message.
pub fn notification(method: &str, params: Option<Value>) -> Value {
    let mut m = Map::new();
    m.insert("jsonrpc".into(), "2.0".into());
    m.insert("method".into(), method.into());
    if let Some(p) = params {
        m.insert("params".into(), p);
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_request_notification_response() {
        let m = parse(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#).unwrap();
        assert!(matches!(m, Incoming::Single(Message::Request(ref r)) if r.method == "ping" && r.id == json!(1)));
        let n = parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert!(matches!(n, Incoming::Single(Message::Notification { .. })));
        let r = parse(br#"{"jsonrpc":"2.0","id":"a","result":{}}"#).unwrap();
        assert!(matches!(r, Incoming::Single(Message::Response { outcome: Ok(_), .. })));
    }

    #[test]
    fn text_responses_are_valid_json() {
        let r = response_json(&json!("a\"b"), &Json::from_value(&json!({"x": [1, 2]})));
        let v: Value = serde_json::from_str(r.as_str()).unwrap();
        assert_eq!(v, json!({"jsonrpc": "2.0", "id": "a\"b", "result": {"x": [1, 2]}}));
    }

    #[test]
    fn rejects_malformed_and_invalid() {
        assert_eq!(parse(b"{not json").unwrap_err().code, PARSE_ERROR);
        assert_eq!(parse(b"[]").unwrap_err().code, INVALID_REQUEST);
        assert_eq!(
            parse(br#"{"jsonrpc":"1.0","id":1,"method":"x"}"#).unwrap_err().code,
            INVALID_REQUEST
        );
        assert_eq!(
            parse(br#"{"jsonrpc":"2.0","id":null,"method":"x"}"#).unwrap_err().code,
            INVALID_REQUEST
        );
        assert_eq!(
            parse(br#"{"jsonrpc":"2.0","id":1,"method":"x","params":3}"#)
                .unwrap_err()
                .code,
            INVALID_REQUEST
        );
        assert_eq!(parse(br#"42"#).unwrap_err().code, INVALID_REQUEST);
    }

    #[test]
    fn batch_keeps_invalid_entries_with_their_ids() {
        let Incoming::Batch(items) =
            parse(br#"[{"jsonrpc":"2.0","id":7,"method":"ping"},{"jsonrpc":"2.0","id":8}]"#).unwrap()
        else {
            panic!("expected a batch")
        };
        assert!(items[0].is_ok());
        let (id, err) = items[1].clone().unwrap_err();
        assert_eq!((id, err.code), (json!(8), INVALID_REQUEST));
    }
}
