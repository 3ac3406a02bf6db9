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
/// MCP (2025-11-25): the request needs URL elicitations completed first; `data.elicitations`
/// lists them.
pub const URL_ELICITATION_REQUIRED: i64 = -32042;

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

/// A request id: a string or a number, as JSON-RPC allows (MCP forbids null). A number keeps
/// its exact value within 64 bits, signed or not (2^64 - 1 comes back as 2^64 - 1, not as a
/// float); `1` and `"1"` are different ids.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RequestId {
    /// A number.
    Number(serde_json::Number),
    /// A string.
    String(String),
}

impl RequestId {
    /// The id a JSON value holds, if it is a string or a number.
    pub fn of(v: &Value) -> Option<Self> {
        match v {
            Value::Number(n) => Some(RequestId::Number(n.clone())),
            Value::String(s) => Some(RequestId::String(s.clone())),
            _ => None,
        }
    }

    /// As a JSON value.
    pub fn to_value(&self) -> Value {
        match self {
            RequestId::Number(n) => Value::Number(n.clone()),
            RequestId::String(s) => Value::String(s.clone()),
        }
    }
}

impl From<u64> for RequestId {
    fn from(n: u64) -> Self {
        RequestId::Number(n.into())
    }
}

impl From<&str> for RequestId {
    fn from(s: &str) -> Self {
        RequestId::String(s.to_string())
    }
}

impl std::fmt::Display for RequestId {
    /// The id as JSON text (a string quoted and escaped).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestId::Number(n) => write!(f, "{n}"),
            RequestId::String(s) => write!(f, "{}", Value::String(s.clone())),
        }
    }
}

/// A request: has an id and expects a response.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The id, echoed in the response.
    pub id: RequestId,
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
        /// The id of the request answered (none: the answering side could not read it).
        id: Option<RequestId>,
        /// The result or the error.
        outcome: Result<Value, RpcError>,
    },
}

/// An entry that is not a valid message: the id it had, if readable, and the error to answer with.
pub type Invalid = (Option<RequestId>, RpcError);

/// A parsed request body: one message, or a batch of entries each valid or not.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A single message.
    Single(Message),
    /// A batch; an invalid entry carries the id it had (if it could be read) and the error to
    /// answer with.
    Batch(Vec<Result<Message, Invalid>>),
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

/// Parses a body. `Err` is a parse error (-32700) or a top-level invalid request (-32600), with
/// the request's id when it could be read (the answer carries it).
pub fn parse(body: &[u8]) -> Result<Incoming, Invalid> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| (None, RpcError::new(PARSE_ERROR, format!("Parse error: {e}"))))?;
    match value {
        Value::Array(items) => {
            if items.is_empty() {
                return Err((None, RpcError::invalid_request("Invalid Request: empty batch")));
            }
            Ok(Incoming::Batch(items.into_iter().map(classify).collect()))
        }
        other => classify(other).map(Incoming::Single),
    }
}

/// Classifies one JSON value as a request, notification or response.
pub fn classify(value: Value) -> Result<Message, Invalid> {
    let Value::Object(mut obj) = value else {
        return Err((
            None,
            RpcError::invalid_request("Invalid Request: a message must be a JSON object"),
        ));
    };
    let id = obj.remove("id");
    let err_id = id.as_ref().and_then(RequestId::of);
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
        return match (id, err_id.clone()) {
            (None, _) => Ok(Message::Notification { method, params }),
            (Some(_), Some(id)) => Ok(Message::Request(Request { id, method, params })),
            (Some(_), None) => fail("\"id\" must be a string or a number"),
        };
    }
    let id = match id {
        None => return fail("a message needs \"method\" (request or notification) or \"id\" (response)"),
        Some(Value::Null) => None,
        Some(_) if err_id.is_none() => return fail("\"id\" must be a string or a number"),
        Some(_) => err_id.clone(),
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

/// A request with a numeric id, written straight to text (no map is built for it).
pub fn request_text(id: u64, method: &str, params: Option<&Value>) -> String {
    use std::io::Write;
    let mut out = Vec::with_capacity(128);
    // Writing to a Vec cannot fail, nor can serializing a string or a Value.
    let _ = write!(out, r#"{{"jsonrpc":"2.0","id":{id},"method":"#);
    let _ = serde_json::to_writer(&mut out, method);
    if let Some(p) = params {
        out.extend_from_slice(br#","params":"#);
        let _ = serde_json::to_writer(&mut out, p);
    }
    out.push(b'}');
    String::from_utf8(out).unwrap_or_default()
}

/// A success response around an already-serialized result.
pub fn response_json(id: &RequestId, result: &Json) -> Json {
    Json(format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{}}}"#, result.0))
}

/// A success response.
pub fn response(id: &RequestId, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// An error response (`id` is null when the request's id could not be read).
pub fn error_response(id: Option<&RequestId>, error: &RpcError) -> Value {
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
    fn a_request_written_as_text_is_the_request() {
        let p = json!({"name": "a\"b", "arguments": {"n": [1, 2.5, null]}});
        let text = request_text(u64::MAX, "tools/\"call", Some(&p));
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v,
            json!({"jsonrpc": "2.0", "id": u64::MAX, "method": "tools/\"call", "params": p})
        );
        let bare: Value = serde_json::from_str(&request_text(1, "ping", None)).unwrap();
        assert_eq!(bare, json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}));
    }

    #[test]
    fn request_ids_are_strings_or_numbers_kept_exactly() {
        for (wire, id) in [
            (r#""a\"b""#, RequestId::from("a\"b")),
            ("18446744073709551615", RequestId::from(u64::MAX)),
            ("-9223372036854775808", RequestId::Number(i64::MIN.into())),
            ("0", RequestId::from(0)),
        ] {
            let body = format!(r#"{{"jsonrpc":"2.0","id":{wire},"method":"ping"}}"#);
            let Ok(Incoming::Single(Message::Request(r))) = parse(body.as_bytes()) else {
                panic!("{body}");
            };
            assert_eq!(r.id, id);
            let answer = response_json(&r.id, &Json("{}".into()));
            assert_eq!(answer.0, format!(r#"{{"jsonrpc":"2.0","id":{wire},"result":{{}}}}"#));
        }
        assert_ne!(
            RequestId::from(1),
            RequestId::from("1"),
            "1 and \"1\" are different ids"
        );
        for bad in ["null", "true", "{}", "[1]"] {
            let body = format!(r#"{{"jsonrpc":"2.0","id":{bad},"method":"ping"}}"#);
            assert!(parse(body.as_bytes()).is_err(), "{bad}");
        }
        // A response may carry a null id (its sender could not read the request's).
        let m = parse(br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}"#).unwrap();
        assert!(matches!(m, Incoming::Single(Message::Response { id: None, .. })));
    }

    #[test]
    fn parses_request_notification_response() {
        let m = parse(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#).unwrap();
        assert!(
            matches!(m, Incoming::Single(Message::Request(ref r)) if r.method == "ping" && r.id == RequestId::from(1))
        );
        let n = parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert!(matches!(n, Incoming::Single(Message::Notification { .. })));
        let r = parse(br#"{"jsonrpc":"2.0","id":"a","result":{}}"#).unwrap();
        assert!(matches!(r, Incoming::Single(Message::Response { outcome: Ok(_), .. })));
    }

    #[test]
    fn text_responses_are_valid_json() {
        let r = response_json(&RequestId::from("a\"b"), &Json::from_value(&json!({"x": [1, 2]})));
        let v: Value = serde_json::from_str(r.as_str()).unwrap();
        assert_eq!(v, json!({"jsonrpc": "2.0", "id": "a\"b", "result": {"x": [1, 2]}}));
    }

    #[test]
    fn rejects_malformed_and_invalid() {
        assert_eq!(parse(b"{not json").unwrap_err().1.code, PARSE_ERROR);
        assert_eq!(parse(b"[]").unwrap_err().1.code, INVALID_REQUEST);
        assert_eq!(
            parse(br#"{"jsonrpc":"1.0","id":1,"method":"x"}"#).unwrap_err().1.code,
            INVALID_REQUEST
        );
        assert_eq!(
            parse(br#"{"jsonrpc":"2.0","id":null,"method":"x"}"#)
                .unwrap_err()
                .1
                .code,
            INVALID_REQUEST
        );
        let (id, e) = parse(br#"{"jsonrpc":"2.0","id":1,"method":"x","params":3}"#).unwrap_err();
        assert_eq!(
            (id, e.code),
            (RequestId::of(&Value::from(1)), INVALID_REQUEST),
            "the id comes back"
        );
        assert_eq!(parse(br#"42"#).unwrap_err().1.code, INVALID_REQUEST);
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
        assert_eq!((id, err.code), (Some(RequestId::from(8)), INVALID_REQUEST));
    }
}
