//! Registry definitions (tools, resources, prompts, virtual servers) as operators write them in
//! the REST API and the `--config` TOML file, and their validation. Stored as JSON bodies in
//! [`crate::ports::Record`]s; one [`validate`] entry point serves every kind.

use std::collections::BTreeMap;

use base64::Engine;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::{json, Value};

use crate::ports::Kind;
use crate::uri_template::UriTemplate;

mod upstream;

pub use upstream::{
    Catalog, ConflictPolicy, OAuthClient, OpenApiSpec, Operation, OperationBody, OperationParam, SecretMethod,
    Transport, UpstreamAuth, UpstreamDef, UpstreamKind,
};

/// A validation failure that names the offending field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The field path, e.g. `url` or `arguments[1].name`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// A failure of `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

fn default_method() -> String {
    "GET".into()
}
fn default_schema() -> JsonText {
    JsonText::new(&json!({"type": "object", "properties": {}}))
}

/// A JSON value kept as its compact text: a schema held by each of 10,000 tools costs its
/// length, not a tree of maps. Read it with [`JsonText::value`] where it is looked into;
/// (de)serialized as the JSON value it holds.
#[derive(Clone, PartialEq, Eq)]
pub struct JsonText(Box<str>);

impl JsonText {
    /// The text of `v`.
    pub fn new(v: &Value) -> Self {
        JsonText(v.to_string().into_boxed_str())
    }

    /// The value (parsed now).
    pub fn value(&self) -> Value {
        serde_json::from_str(&self.0).unwrap_or(Value::Null)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for JsonText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for JsonText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match serde_json::value::RawValue::from_string(self.0.to_string()) {
            Ok(raw) => raw.serialize(s),
            Err(e) => Err(serde::ser::Error::custom(e)),
        }
    }
}

impl<'de> Deserialize<'de> for JsonText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Value::deserialize(d).map(|v| JsonText::new(&v))
    }
}

/// Where a definition of `kind` holds credentials, as JSON pointer patterns (`*`: every member
/// of an object): declared by each type beside its fields ([`ToolDef::CREDENTIALS`],
/// [`UpstreamDef::CREDENTIALS`]). Every string there is sealed at rest, bound to its record and
/// place, and masked in answers.
pub fn credential_patterns(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Tool => ToolDef::CREDENTIALS,
        Kind::Upstream => UpstreamDef::CREDENTIALS,
        _ => &[],
    }
}

/// The JSON pointers of `body`'s credentials (strings at `kind`'s [`credential_patterns`]).
pub fn credential_pointers(kind: Kind, body: &Value) -> Vec<String> {
    let escape = |k: &str| k.replace('~', "~0").replace('/', "~1");
    let mut out = vec![];
    for pattern in credential_patterns(kind) {
        match pattern.strip_suffix("/*") {
            Some(object) => {
                for (k, v) in body.pointer(object).and_then(Value::as_object).into_iter().flatten() {
                    if v.is_string() {
                        out.push(format!("{object}/{}", escape(k)));
                    }
                }
            }
            None => {
                if body.pointer(pattern).is_some_and(Value::is_string) {
                    out.push(pattern.to_string());
                }
            }
        }
    }
    out
}

/// A tool backed by a REST endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolDef {
    /// Unique name, `[A-Za-z0-9_.-]{1,128}`.
    pub name: String,
    /// The scope a caller needs to see and use it (when auth is on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Display title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// What the tool does (shown to models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The endpoint; `{var}` placeholders (RFC 6570) are filled from the arguments.
    pub url: String,
    /// HTTP method: GET, POST, PUT, PATCH or DELETE. GET and DELETE send arguments as the query.
    #[serde(default = "default_method")]
    pub method: String,
    /// Extra request headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// JSON Schema of the arguments (an object schema).
    #[serde(default = "default_schema")]
    pub input_schema: JsonText,
    /// JSON Schema of structured output, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<JsonText>,
    /// MCP tool annotations, passed through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<JsonText>,
    /// Per-tool timeout in milliseconds (default: the gateway's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// A static resource (`uri` with `text` or `blob`) or a template (`uri_template` with `text`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceDef {
    /// Unique name.
    pub name: String,
    /// The scope a caller needs to see and use it (when auth is on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Display title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The URI of a static resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// The RFC 6570 template of a templated resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri_template: Option<String>,
    /// MIME type of the content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// Text content; for a template, a minijinja template over the URI variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Binary content, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob: Option<String>,
    /// MCP annotations, passed through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Value>,
    /// Completion values for template variables, by variable name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub completions: BTreeMap<String, Vec<String>>,
}

impl ResourceDef {
    /// The unique key: the URI, or the URI template.
    pub fn key(&self) -> &str {
        self.uri.as_deref().or(self.uri_template.as_deref()).unwrap_or_default()
    }
}

/// A declared prompt argument.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptArgumentDef {
    /// The name used in the template.
    pub name: String,
    /// Display title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Whether `prompts/get` must supply it.
    #[serde(default)]
    pub required: bool,
    /// Suggested values, offered by `completion/complete`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// The role of a prompt message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The user.
    User,
    /// The assistant.
    Assistant,
}

/// The content of one prompt message. Text is a minijinja template over the arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum PromptContentDef {
    /// Text, rendered with the arguments.
    Text {
        /// The template.
        text: String,
    },
    /// An image, base64.
    Image {
        /// Base64 data.
        data: String,
        /// e.g. `image/png`.
        mime_type: String,
    },
    /// Audio, base64.
    Audio {
        /// Base64 data.
        data: String,
        /// e.g. `audio/wav`.
        mime_type: String,
    },
    /// A registered resource embedded with its contents; the URI may use the arguments.
    Resource {
        /// The resource URI (a template over the arguments).
        uri: String,
    },
}

/// One message of a prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptMessageDef {
    /// Who says it.
    pub role: Role,
    /// What is said.
    pub content: PromptContentDef,
}

/// A prompt: `template` (one user text message) and/or `messages`, with declared arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptDef {
    /// Unique name.
    pub name: String,
    /// The scope a caller needs to see and use it (when auth is on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Display title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Shorthand for a single user text message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// The messages, after `template` if both are given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<PromptMessageDef>,
    /// Declared arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arguments: Vec<PromptArgumentDef>,
}

impl PromptDef {
    /// `template` followed by `messages`.
    pub fn all_messages(&self) -> Vec<PromptMessageDef> {
        let mut out = Vec::with_capacity(self.messages.len() + 1);
        if let Some(t) = &self.template {
            out.push(PromptMessageDef {
                role: Role::User,
                content: PromptContentDef::Text { text: t.clone() },
            });
        }
        out.extend(self.messages.iter().cloned());
        out
    }
}

/// A virtual server: a curated set of members with its own endpoint `/servers/{id-or-name}/mcp`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerDef {
    /// Unique name (also usable in the URL).
    pub name: String,
    /// The scope a caller needs to see and use it (when auth is on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Display title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Description (returned as `instructions` at initialize).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Member tools, by name.
    #[serde(default)]
    pub tools: Vec<String>,
    /// Member resources, by URI, URI template or name.
    #[serde(default)]
    pub resources: Vec<String>,
    /// Member prompts, by name.
    #[serde(default)]
    pub prompts: Vec<String>,
    /// Upstreams (by name) all of whose tools, resources and prompts are members.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<String>,
    /// Expose upstream members under their upstream names instead of `{slug}__{name}`, so a
    /// server fronting one upstream looks exactly like it (names must then be unambiguous).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub original_names: bool,
}

/// Deserializes a definition, turning serde's error into a [`FieldError`] that names the field.
pub fn parse_def<T: DeserializeOwned>(value: Value) -> Result<T, FieldError> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let path = e.path().to_string();
        let msg = e.inner().to_string();
        // "missing field `url`" has the parent's path; name the field itself.
        let field = match (path.as_str(), msg.split('`').nth(1)) {
            (".", Some(f)) => f.to_string(),
            (p, Some(f)) if msg.starts_with("missing field") => format!("{p}.{f}"),
            (p, _) => p.to_string(),
        };
        FieldError::new(field, msg)
    })
}

/// Whether `name` keeps the MCP tool-name rules (2025-11-25): 1 to 128 characters, each an
/// ASCII letter or digit, `_`, `-` or `.`.
pub fn is_tool_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn valid_name(field: &str, name: &str) -> Result<(), FieldError> {
    if is_tool_name(name) {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            "must be 1-128 characters of A-Z, a-z, 0-9, '_', '-' or '.'",
        ))
    }
}

fn valid_http_url(field: &str, url: &str) -> Result<(), FieldError> {
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') && !r.contains(char::is_whitespace) => Ok(()),
        _ => Err(FieldError::new(field, "must be an absolute http:// or https:// URL")),
    }
}

fn valid_uri(field: &str, uri: &str) -> Result<(), FieldError> {
    let scheme_ok = uri.split_once(':').is_some_and(|(s, rest)| {
        !s.is_empty()
            && s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
            && !rest.is_empty()
    });
    // `mcpgw:` names the gateway's aliases of upstreams' resources (see `registry::uris`).
    if uri.get(..6).is_some_and(|s| s.eq_ignore_ascii_case("mcpgw:")) {
        return Err(FieldError::new(
            field,
            "the mcpgw: scheme is the gateway's own (aliases of upstreams' resources)",
        ));
    }
    if scheme_ok && !uri.contains(char::is_whitespace) {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            "must be an absolute URI with a scheme, e.g. docs://readme",
        ))
    }
}

fn valid_headers(headers: &BTreeMap<String, String>) -> Result<(), FieldError> {
    for (k, v) in headers {
        let bad = |s: &str| s.is_empty() || s.bytes().any(|b| b == b'\r' || b == b'\n');
        if bad(k)
            || bad(v)
            || http::HeaderName::from_bytes(k.as_bytes()).is_err()
            || http::HeaderValue::from_str(v).is_err()
        {
            return Err(FieldError::new(format!("headers.{k}"), "is not a valid HTTP header"));
        }
    }
    Ok(())
}

fn valid_template(field: &str, source: &str) -> Result<(), FieldError> {
    crate::render::check(source).map_err(|e| FieldError::new(field, format!("invalid template: {e}")))
}

fn valid_base64(field: &str, data: &str) -> Result<(), FieldError> {
    base64::engine::general_purpose::STANDARD
        .decode(data)
        .map(|_| ())
        .map_err(|e| FieldError::new(field, format!("invalid base64: {e}")))
}

impl ToolDef {
    /// Where a tool holds credentials: its `headers` (API keys, bearer tokens).
    pub const CREDENTIALS: &'static [&'static str] = &["/headers/*"];

    /// Checks the definition and normalizes the method to upper case.
    pub fn validate(&mut self) -> Result<(), FieldError> {
        valid_name("name", &self.name)?;
        valid_scope(&self.scope)?;
        valid_http_url("url", &self.url)?;
        UriTemplate::parse(&self.url).map_err(|e| FieldError::new("url", e.to_string()))?;
        self.method = self.method.to_ascii_uppercase();
        if !matches!(self.method.as_str(), "GET" | "POST" | "PUT" | "PATCH" | "DELETE") {
            return Err(FieldError::new(
                "method",
                "must be one of GET, POST, PUT, PATCH, DELETE",
            ));
        }
        let input_schema = self.input_schema.value();
        if input_schema.get("type").and_then(Value::as_str) != Some("object") {
            return Err(FieldError::new(
                "input_schema",
                "must be a JSON Schema with \"type\": \"object\"",
            ));
        }
        if let Some(props) = input_schema.get("properties") {
            if !props.is_object() {
                return Err(FieldError::new("input_schema.properties", "must be an object"));
            }
        }
        if let Some(s) = self.output_schema.as_ref().map(JsonText::value) {
            if s.get("type").and_then(Value::as_str) != Some("object") {
                return Err(FieldError::new(
                    "output_schema",
                    "must be a JSON Schema with \"type\": \"object\"",
                ));
            }
        }
        valid_headers(&self.headers)?;
        if self.timeout_ms == Some(0) {
            return Err(FieldError::new("timeout_ms", "must be greater than 0"));
        }
        Ok(())
    }
}

impl ResourceDef {
    /// Checks the definition.
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.name.trim().is_empty() {
            return Err(FieldError::new("name", "must not be empty"));
        }
        valid_scope(&self.scope)?;
        match (&self.uri, &self.uri_template) {
            (Some(uri), None) => {
                valid_uri("uri", uri)?;
                match (&self.text, &self.blob) {
                    (Some(_), None) => {}
                    (None, Some(b)) => valid_base64("blob", b)?,
                    _ => {
                        return Err(FieldError::new(
                            "text",
                            "a static resource needs exactly one of text and blob",
                        ))
                    }
                }
            }
            (None, Some(t)) => {
                let tpl = UriTemplate::parse(t).map_err(|e| FieldError::new("uri_template", e.to_string()))?;
                if tpl.variables().is_empty() {
                    return Err(FieldError::new(
                        "uri_template",
                        "has no {variables}: use uri for a static resource",
                    ));
                }
                valid_uri("uri_template", t)?;
                if self.blob.is_some() {
                    return Err(FieldError::new(
                        "blob",
                        "a resource template renders text; blob is not supported",
                    ));
                }
                let text = self
                    .text
                    .as_deref()
                    .ok_or_else(|| FieldError::new("text", "a resource template needs text"))?;
                valid_template("text", text)?;
            }
            _ => {
                return Err(FieldError::new(
                    "uri",
                    "exactly one of uri and uri_template is required",
                ))
            }
        }
        Ok(())
    }
}

impl PromptDef {
    /// Checks the definition.
    pub fn validate(&self) -> Result<(), FieldError> {
        valid_name("name", &self.name)?;
        valid_scope(&self.scope)?;
        if self.template.is_none() && self.messages.is_empty() {
            return Err(FieldError::new("template", "a prompt needs a template or messages"));
        }
        if let Some(t) = &self.template {
            valid_template("template", t)?;
        }
        for (i, m) in self.messages.iter().enumerate() {
            match &m.content {
                PromptContentDef::Text { text } => valid_template(&format!("messages[{i}].content.text"), text)?,
                PromptContentDef::Image { data, .. } | PromptContentDef::Audio { data, .. } => {
                    valid_base64(&format!("messages[{i}].content.data"), data)?
                }
                PromptContentDef::Resource { uri } => valid_template(&format!("messages[{i}].content.uri"), uri)?,
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, a) in self.arguments.iter().enumerate() {
            valid_name(&format!("arguments[{i}].name"), &a.name)?;
            if !seen.insert(a.name.as_str()) {
                return Err(FieldError::new(format!("arguments[{i}].name"), "is declared twice"));
            }
        }
        Ok(())
    }
}

impl ServerDef {
    /// Checks the definition (membership is checked against the registry by the caller).
    pub fn validate(&self) -> Result<(), FieldError> {
        valid_name("name", &self.name)?;
        valid_scope(&self.scope)
    }
}

/// A scope: 1-128 visible ASCII characters without spaces or quotes (RFC 6749 §3.3).
fn valid_scope(scope: &Option<String>) -> Result<(), FieldError> {
    match scope {
        Some(s)
            if s.is_empty() || s.len() > 128 || !s.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\') =>
        {
            Err(FieldError::new(
                "scope",
                "must be 1-128 visible ASCII characters, no spaces or quotes",
            ))
        }
        _ => Ok(()),
    }
}

/// A revoked token (`/auth/revocations`): tokens with this `jti` are refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RevocationDef {
    /// The token's `jti`.
    pub jti: String,
    /// Its `exp`, seconds since the epoch, if known.
    #[serde(default)]
    pub exp: Option<u64>,
    /// Why it was revoked.
    #[serde(default)]
    pub reason: Option<String>,
}

/// Parses and validates a definition of `kind`; returns its key and its normalized JSON.
pub fn validate(kind: Kind, body: Value) -> Result<(String, Value), FieldError> {
    fn norm<T: Serialize>(key: String, def: &T) -> Result<(String, Value), FieldError> {
        let v = serde_json::to_value(def).map_err(|e| FieldError::new("", e.to_string()))?;
        Ok((key, v))
    }
    if !body.is_object() {
        return Err(FieldError::new("", "the body must be a JSON object"));
    }
    match kind {
        Kind::Tool => {
            let mut d: ToolDef = parse_def(body)?;
            d.validate()?;
            norm(d.name.clone(), &d)
        }
        Kind::Resource => {
            let d: ResourceDef = parse_def(body)?;
            d.validate()?;
            norm(d.key().to_string(), &d)
        }
        Kind::Prompt => {
            let d: PromptDef = parse_def(body)?;
            d.validate()?;
            norm(d.name.clone(), &d)
        }
        Kind::Server => {
            let d: ServerDef = parse_def(body)?;
            d.validate()?;
            norm(d.name.clone(), &d)
        }
        Kind::Upstream => {
            let mut d: UpstreamDef = parse_def(body)?;
            d.validate()?;
            d.catalog = None;
            norm(d.name.clone(), &d)
        }
        Kind::Revocation => {
            let d: RevocationDef = parse_def(body)?;
            if d.jti.is_empty() || d.jti.len() > 256 {
                return Err(FieldError::new("jti", "a string of 1-256 characters is required"));
            }
            norm(d.jti.clone(), &d)
        }
        // The vault's own records are written by it alone, never through the REST API.
        Kind::Connection | Kind::Consent | Kind::Client => Err(FieldError::new("", "this kind is not edited here")),
    }
}

/// The `--config` file: registry entries to create or update at start-up, by name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedFile {
    /// `[[tool]]` entries.
    #[serde(default)]
    pub tool: Vec<ToolDef>,
    /// `[[resource]]` entries (static).
    #[serde(default)]
    pub resource: Vec<ResourceDef>,
    /// `[[resource_template]]` entries.
    #[serde(default)]
    pub resource_template: Vec<ResourceDef>,
    /// `[[prompt]]` entries.
    #[serde(default)]
    pub prompt: Vec<PromptDef>,
    /// `[[server]]` entries (virtual servers).
    #[serde(default)]
    pub server: Vec<ServerDef>,
    /// `[[upstream]]` entries (federated MCP servers).
    #[serde(default)]
    pub upstream: Vec<UpstreamDef>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateways_alias_scheme_is_not_a_resources_own() {
        assert!(valid_uri("uri", "mcpgw:b/test://x").is_err());
        assert!(valid_uri("uri", "MCPGW:b/test://x").is_err());
        assert!(valid_uri("uri", "mcpgwx:y").is_ok());
    }

    #[test]
    fn upstream_oauth_settings_are_checked_by_field() {
        let up = |v: Value| validate(Kind::Upstream, v).map(|_| ()).map_err(|e| e.field);
        let cc = json!({"mode": "client-credentials", "client_id": "gw", "client_secret": "s"});
        assert_eq!(up(json!({"name": "u", "url": "https://h/mcp", "auth": cc})), Ok(()));
        let mut no_id = cc.clone();
        no_id["client_id"] = json!(" ");
        assert_eq!(
            up(json!({"name": "u", "url": "https://h/mcp", "auth": no_id})),
            Err("auth.client_id".into())
        );
        let mut bad_issuer = cc.clone();
        bad_issuer["issuer"] = json!("ftp://as");
        assert_eq!(
            up(json!({"name": "u", "url": "https://h/mcp", "auth": bad_issuer})),
            Err("auth.issuer".into())
        );
        let jwt = json!({"mode": "client-credentials", "client_id": "gw", "method": "private_key_jwt"});
        assert_eq!(
            up(json!({"name": "u", "url": "https://h/mcp", "auth": jwt})),
            Err("auth.private_key".into())
        );
        let mut jwt = jwt;
        jwt["private_key"] = json!(r#"{"kty":"EC","crv":"P-256","x":"a","y":"b","d":"c"}"#);
        assert_eq!(up(json!({"name": "u", "url": "https://h/mcp", "auth": jwt})), Ok(()));
        let no_secret = json!({"mode": "client-credentials", "client_id": "gw"});
        assert_eq!(
            up(json!({"name": "u", "url": "https://h/mcp", "auth": no_secret})),
            Err("auth.client_secret".into())
        );
        let sse = json!({"name": "u", "url": "https://h/sse", "transport": "sse", "auth": cc});
        assert_eq!(up(sse), Err("auth".into()));
        // An unknown mode or member is refused, not ignored.
        assert!(up(json!({"name": "u", "url": "https://h/mcp", "auth": {"mode": "magic"}})).is_err());
        let mut extra = cc.clone();
        extra["client_secrett"] = json!("typo");
        assert!(up(json!({"name": "u", "url": "https://h/mcp", "auth": extra})).is_err());
    }

    #[test]
    fn upstream_tls_settings_are_checked_by_field() {
        let cert = "-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----\n";
        let key = "-----BEGIN PRIVATE KEY-----\nMII\n-----END PRIVATE KEY-----\n";
        let up = |url: &str, tls: Value| validate(Kind::Upstream, json!({"name": "u", "url": url, "tls": tls}));
        assert!(up(
            "https://h/mcp",
            json!({"ca": cert, "client_cert": cert, "client_key": key})
        )
        .is_ok());
        assert_eq!(up("http://h/mcp", json!({"ca": cert})).unwrap_err().field, "tls");
        assert_eq!(
            up("https://h/mcp", json!({"ca": "not pem"})).unwrap_err().field,
            "tls.ca"
        );
        assert_eq!(
            up("https://h/mcp", json!({"client_cert": cert})).unwrap_err().field,
            "tls.client_key"
        );
        assert_eq!(
            up("https://h/mcp", json!({"client_key": key})).unwrap_err().field,
            "tls.client_cert"
        );
        assert_eq!(
            up("https://h/mcp", json!({"client_cert": key, "client_key": key}))
                .unwrap_err()
                .field,
            "tls.client_cert"
        );
        assert!(up("https://h/mcp", json!({"verify": false}))
            .unwrap_err()
            .message
            .contains("verify"));
    }

    #[test]
    fn tool_errors_name_the_field() {
        let e = validate(Kind::Tool, json!({"name": "w"})).unwrap_err();
        assert_eq!(e.field, "url");
        let e = validate(Kind::Tool, json!({"name": "w", "url": "ftp://x"})).unwrap_err();
        assert_eq!(e.field, "url");
        let e = validate(Kind::Tool, json!({"name": "w", "url": "http://h/x", "method": "TRACE"})).unwrap_err();
        assert_eq!(e.field, "method");
        let e = validate(Kind::Tool, json!({"name": "w", "url": "http://h/x", "bogus": 1})).unwrap_err();
        assert!(e.message.contains("bogus"), "{e:?}");
        let e = validate(Kind::Tool, json!({"name": "w w", "url": "http://h/x"})).unwrap_err();
        assert_eq!(e.field, "name");
        let e = validate(Kind::Tool, json!({"name": 5, "url": "http://h/x"})).unwrap_err();
        assert_eq!(e.field, "name");
    }

    #[test]
    fn tool_defaults_and_normalization() {
        let (key, v) = validate(
            Kind::Tool,
            json!({"name": "w", "url": "http://h/{city}", "method": "post"}),
        )
        .unwrap();
        assert_eq!(key, "w");
        assert_eq!(v["method"], "POST");
        assert_eq!(v["input_schema"]["type"], "object");
    }

    #[test]
    fn resources_need_exactly_one_source() {
        assert!(validate(Kind::Resource, json!({"name": "r", "uri": "docs://a", "text": "x"})).is_ok());
        assert!(validate(Kind::Resource, json!({"name": "r", "uri": "docs://a", "blob": "aGk="})).is_ok());
        assert_eq!(
            validate(Kind::Resource, json!({"name": "r", "uri": "docs://a"}))
                .unwrap_err()
                .field,
            "text"
        );
        assert_eq!(
            validate(Kind::Resource, json!({"name": "r", "uri": "docs://a", "blob": "!!"}))
                .unwrap_err()
                .field,
            "blob"
        );
        assert_eq!(
            validate(Kind::Resource, json!({"name": "r", "text": "x"}))
                .unwrap_err()
                .field,
            "uri"
        );
        let (key, _) = validate(
            Kind::Resource,
            json!({"name": "p", "uri_template": "docs://p/{id}", "text": "{{ id }}"}),
        )
        .unwrap();
        assert_eq!(key, "docs://p/{id}");
        assert_eq!(
            validate(
                Kind::Resource,
                json!({"name": "p", "uri_template": "docs://p/{id}", "text": "{{ id"})
            )
            .unwrap_err()
            .field,
            "text"
        );
    }

    #[test]
    fn prompts_check_templates_and_arguments() {
        assert!(validate(Kind::Prompt, json!({"name": "g", "template": "Hi {{ name }}"})).is_ok());
        assert_eq!(
            validate(Kind::Prompt, json!({"name": "g"})).unwrap_err().field,
            "template"
        );
        let e = validate(
            Kind::Prompt,
            json!({"name": "g", "template": "x", "arguments": [{"name": "a"}, {"name": "a"}]}),
        )
        .unwrap_err();
        assert_eq!(e.field, "arguments[1].name");
        let e = validate(Kind::Prompt, json!({"name": "g", "messages": [{"role": "user", "content": {"type": "image", "data": "@@", "mime_type": "image/png"}}]})).unwrap_err();
        assert_eq!(e.field, "messages[0].content.data");
    }
}
