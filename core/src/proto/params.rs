//! The params and results the gateway itself reads or builds, typed: what `initialize`,
//! `tools/call`, `prompts/get`, `resources/read` and `resources/(un)subscribe` must carry is
//! checked once, here, with a -32602 that names the method and the field. What the gateway only
//! passes on stays as it came.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::jsonrpc::RpcError;

/// A request's params as `T`: absent params read as `{}`; anything but an object, or an
/// object without what `T` needs, is -32602 naming `method` and what is wrong.
pub fn parse<T: DeserializeOwned>(method: &str, params: Option<&Value>) -> Result<T, RpcError> {
    let empty = Value::Object(Map::new());
    let v = match params {
        None | Some(Value::Null) => &empty,
        Some(v @ Value::Object(_)) => v,
        Some(_) => return Err(RpcError::invalid_params(format!("{method}: params must be an object"))),
    };
    T::deserialize(v).map_err(|e| RpcError::invalid_params(format!("{method}: {e}")))
}

/// `initialize` params, as the gateway reads them.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Initialize {
    /// The revision the client asks for.
    pub protocol_version: String,
    /// What the client can do.
    #[serde(default)]
    pub capabilities: Option<Map<String, Value>>,
    /// Who the client says it is.
    #[serde(default)]
    pub client_info: Option<Value>,
}

/// `initialize`'s result, as the gateway builds it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InitializeResult {
    /// The negotiated revision.
    pub protocol_version: &'static str,
    /// What the gateway serves.
    pub capabilities: Value,
    /// Who the gateway (or the virtual server) is.
    pub server_info: Value,
    /// The virtual server's description, for the model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
}

/// `tools/call` and `prompts/get` params: a name and its arguments (absent or null: none).
#[derive(Debug, Clone, Deserialize)]
pub struct Named {
    /// The tool or prompt.
    pub name: String,
    /// Its arguments.
    #[serde(default)]
    pub arguments: Option<Map<String, Value>>,
}

/// `resources/read`, `resources/subscribe` and `resources/unsubscribe` params.
#[derive(Debug, Clone, Deserialize)]
pub struct Uri {
    /// The resource.
    pub uri: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::jsonrpc::INVALID_PARAMS;
    use serde_json::json;

    #[test]
    fn what_a_request_must_carry_is_refused_with_32602_naming_method_and_field() {
        let named: Named = parse(
            "tools/call",
            Some(&json!({"name": "echo", "arguments": null, "_meta": {}})),
        )
        .unwrap();
        assert_eq!((named.name.as_str(), named.arguments), ("echo", None));
        let e = parse::<Named>("tools/call", Some(&json!({"arguments": {}}))).unwrap_err();
        assert_eq!(e.code, INVALID_PARAMS);
        assert!(
            e.message.starts_with("tools/call:") && e.message.contains("name"),
            "{}",
            e.message
        );
        let e = parse::<Named>("prompts/get", Some(&json!({"name": "p", "arguments": [1]}))).unwrap_err();
        assert!(e.message.contains("map"), "{}", e.message);
        let e = parse::<Uri>("resources/read", Some(&json!([]))).unwrap_err();
        assert!(e.message.contains("must be an object"), "{}", e.message);
        let e = parse::<Uri>("resources/read", None).unwrap_err();
        assert!(e.message.contains("uri"), "{}", e.message);
        let e = parse::<Initialize>("initialize", Some(&json!({"protocolVersion": 5}))).unwrap_err();
        assert!(e.message.contains("string"), "{}", e.message);
        let e =
            parse::<Initialize>("initialize", Some(&json!({"protocolVersion": "x", "capabilities": 1}))).unwrap_err();
        assert!(e.message.contains("map"), "{}", e.message);
    }

    #[test]
    fn the_initialize_result_is_written_in_the_specs_names() {
        let r = InitializeResult {
            protocol_version: "2025-11-25",
            capabilities: json!({}),
            server_info: json!({"name": "mcpgw"}),
            instructions: None,
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"protocolVersion": "2025-11-25", "capabilities": {}, "serverInfo": {"name": "mcpgw"}})
        );
    }
}
