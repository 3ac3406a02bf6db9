//! The per-request metadata of the stateless era (2026-07-28): the `_meta` keys a request
//! carries instead of a session, the errors that era adds, and the `=?base64?…?=` encoding of
//! header values that mirror body fields. Pure: no I/O, no gateway state.

use base64::Engine as _;
use serde_json::{json, Value};

use super::jsonrpc::RpcError;
use super::logging::LogLevel;
use super::version::{Era, ProtocolVersion};

/// `_meta` key: the revision a request speaks.
pub const PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// `_meta` key: the client's capabilities for this request.
pub const CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// `_meta` key: the client's name and version.
pub const CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
/// `_meta` key: the least severe log level the client wants for this request.
pub const LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
/// `_meta` key of a result: the server's name and version.
pub const SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
/// `_meta` key of a notification on a `subscriptions/listen` stream.
pub const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

/// The headers of a request do not match its body, or are missing or malformed.
pub const HEADER_MISMATCH: i64 = -32020;
/// The request needs a client capability it did not declare.
pub const MISSING_CAPABILITY: i64 = -32021;
/// The requested revision is not served.
pub const UNSUPPORTED_VERSION: i64 = -32022;

/// What a stateless request says about itself in `params._meta`.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestMeta {
    /// The revision named, as sent (checked against the header before it is resolved).
    pub version: String,
    /// The client's capabilities (an object).
    pub capabilities: Value,
    /// The client's name and version, if sent.
    pub client_info: Option<Value>,
    /// The log level asked for; without it the request gets no log messages.
    pub log_level: Option<LogLevel>,
}

/// The revision a request's `_meta` names, if it names one: what marks a request as stateless.
pub fn declared_version(params: Option<&Value>) -> Option<&str> {
    params?.get("_meta")?.get(PROTOCOL_VERSION)?.as_str()
}

impl RequestMeta {
    /// Reads `params._meta`: the version and the capabilities are required (-32602).
    pub fn parse(params: Option<&Value>) -> Result<Self, RpcError> {
        let meta = params
            .and_then(|p| p.get("_meta"))
            .and_then(Value::as_object)
            .ok_or_else(|| RpcError::invalid_params("Invalid params: _meta is required and must be an object"))?;
        let version = meta
            .get(PROTOCOL_VERSION)
            .and_then(Value::as_str)
            .ok_or_else(|| RpcError::invalid_params(format!("Invalid params: _meta must carry {PROTOCOL_VERSION}")))?;
        let capabilities = meta.get(CLIENT_CAPABILITIES).filter(|c| c.is_object()).ok_or_else(|| {
            RpcError::invalid_params(format!(
                "Invalid params: _meta must carry {CLIENT_CAPABILITIES} (an object)"
            ))
        })?;
        let log_level = match meta.get(LOG_LEVEL) {
            None | Some(Value::Null) => None,
            Some(l) => Some(serde_json::from_value::<LogLevel>(l.clone()).map_err(|_| {
                RpcError::invalid_params(format!(
                    "Invalid params: {LOG_LEVEL} must be one of debug, info, notice, warning, error, critical, alert, emergency"
                ))
            })?),
        };
        Ok(Self {
            version: version.to_string(),
            capabilities: capabilities.clone(),
            client_info: meta.get(CLIENT_INFO).filter(|i| i.is_object()).cloned(),
            log_level,
        })
    }

    /// The revision, if it is one this gateway serves statelessly; else -32022 naming every
    /// revision served.
    pub fn resolve(&self) -> Result<ProtocolVersion, RpcError> {
        match ProtocolVersion::parse(&self.version) {
            Some(v) if v.is_served() && v.era() == Era::Stateless => Ok(v),
            _ => Err(unsupported_version(&self.version)),
        }
    }

    /// True when the client declared `capability` (a top-level key of its capabilities).
    pub fn declares(&self, capability: &str) -> bool {
        self.capabilities.get(capability).is_some_and(|c| !c.is_null())
    }
}

/// -32022 for a revision not served, with `data.supported` (newest first) and `data.requested`.
pub fn unsupported_version(requested: &str) -> RpcError {
    let mut supported = ProtocolVersion::served_names();
    supported.reverse();
    RpcError::new(UNSUPPORTED_VERSION, "Unsupported protocol version")
        .with_data(json!({"supported": supported, "requested": requested}))
}

/// -32020 with a message saying what does not match.
pub fn header_mismatch(message: impl Into<String>) -> RpcError {
    RpcError::new(HEADER_MISMATCH, format!("Header mismatch: {}", message.into()))
}

/// -32021 naming the capabilities needed, as a capabilities object (`{"sampling": {}}`).
pub fn missing_capability(needed: &[&str]) -> RpcError {
    let caps: serde_json::Map<String, Value> = needed.iter().map(|c| (c.to_string(), json!({}))).collect();
    RpcError::new(
        MISSING_CAPABILITY,
        format!("Missing required client capability: {}", needed.join(", ")),
    )
    .with_data(json!({"requiredCapabilities": caps}))
}

const SENTINEL_START: &str = "=?base64?";
const SENTINEL_END: &str = "?=";

/// The value a mirrored header carries: `=?base64?…?=` decoded (None when that is not valid
/// base64 of UTF-8), anything else as it is (HTTP has already trimmed it).
pub fn decode_header_value(raw: &str) -> Option<String> {
    let v = raw.trim_matches([' ', '\t']);
    match v
        .strip_prefix(SENTINEL_START)
        .and_then(|r| r.strip_suffix(SENTINEL_END))
    {
        Some(b64) => {
            let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
            String::from_utf8(bytes).ok()
        }
        None => Some(v.to_string()),
    }
}

/// A value as a header carries it: plain when it is visible ASCII without edge whitespace and
/// does not look like the sentinel, else `=?base64?…?=`.
pub fn encode_header_value(value: &str) -> String {
    let sentinel = value.starts_with(SENTINEL_START) && value.ends_with(SENTINEL_END);
    let plain = !value.is_empty()
        && value
            .bytes()
            .all(|b| b == b' ' || b == b'\t' || (0x21..=0x7e).contains(&b))
        && !value.starts_with([' ', '\t'])
        && !value.ends_with([' ', '\t'])
        && !sentinel;
    if plain {
        value.to_string()
    } else {
        format!(
            "{SENTINEL_START}{}{SENTINEL_END}",
            base64::engine::general_purpose::STANDARD.encode(value)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(m: Value) -> Option<Value> {
        Some(json!({"_meta": m}))
    }

    #[test]
    fn the_version_and_capabilities_are_required() {
        assert_eq!(RequestMeta::parse(None).unwrap_err().code, -32602);
        assert_eq!(RequestMeta::parse(Some(&json!({}))).unwrap_err().code, -32602);
        let no_caps = meta(json!({PROTOCOL_VERSION: "2026-07-28"}));
        assert_eq!(RequestMeta::parse(no_caps.as_ref()).unwrap_err().code, -32602);
        let no_version = meta(json!({CLIENT_CAPABILITIES: {}}));
        assert_eq!(RequestMeta::parse(no_version.as_ref()).unwrap_err().code, -32602);
        let caps_not_object = meta(json!({PROTOCOL_VERSION: "2026-07-28", CLIENT_CAPABILITIES: []}));
        assert_eq!(RequestMeta::parse(caps_not_object.as_ref()).unwrap_err().code, -32602);
        let bad_level = meta(json!({PROTOCOL_VERSION: "2026-07-28", CLIENT_CAPABILITIES: {}, LOG_LEVEL: "loud"}));
        assert_eq!(RequestMeta::parse(bad_level.as_ref()).unwrap_err().code, -32602);

        let ok =
            meta(json!({PROTOCOL_VERSION: "2026-07-28", CLIENT_CAPABILITIES: {"sampling": {}}, LOG_LEVEL: "info"}));
        let m = RequestMeta::parse(ok.as_ref()).unwrap();
        assert_eq!(m.resolve().unwrap(), ProtocolVersion::V2026_07_28);
        assert_eq!(m.log_level, Some(LogLevel::Info));
        assert!(m.declares("sampling") && !m.declares("elicitation"));
        assert_eq!(m.client_info, None);
        assert_eq!(declared_version(ok.as_ref()), Some("2026-07-28"));
    }

    #[test]
    fn an_unserved_or_session_era_version_is_refused_with_the_supported_list() {
        for v in ["v999.0.0", "2025-11-25"] {
            let p = meta(json!({PROTOCOL_VERSION: v, CLIENT_CAPABILITIES: {}}));
            let e = RequestMeta::parse(p.as_ref()).unwrap().resolve().unwrap_err();
            assert_eq!(e.code, UNSUPPORTED_VERSION);
            let data = e.data.unwrap();
            assert_eq!(data["requested"], v);
            assert_eq!(data["supported"][0], "2026-07-28");
            assert!(data["supported"].as_array().unwrap().contains(&json!("2025-11-25")));
        }
    }

    #[test]
    fn header_values_round_trip_through_the_sentinel() {
        for v in [
            "get_weather",
            "Hello, 世界",
            " padded ",
            "line1\nline2",
            "=?base64?literal?=",
            "file:///a b",
        ] {
            assert_eq!(
                decode_header_value(&encode_header_value(v)).as_deref(),
                Some(v),
                "{v:?}"
            );
        }
        assert_eq!(encode_header_value("us-west1"), "us-west1");
        assert_eq!(encode_header_value("Hello, 世界"), "=?base64?SGVsbG8sIOS4lueVjA==?=");
        assert_eq!(decode_header_value("  plain\t").as_deref(), Some("plain"));
        assert_eq!(decode_header_value("=?base64?***?="), None);
        assert_eq!(
            missing_capability(&["sampling"]).data.unwrap(),
            json!({"requiredCapabilities": {"sampling": {}}})
        );
    }
}
