//! Gateway settings and the registry seed file. Both are serde structs with unknown fields
//! refused; [`GatewayConfig::validate`] names the bad setting.

use serde::{Deserialize, Serialize};
use serde_json::Value;

fn d_max_body() -> usize {
    4 * 1024 * 1024
}
fn d_page() -> usize {
    100
}
fn d_ttl() -> u64 {
    3600
}
fn d_tool_timeout() -> u64 {
    30_000
}
fn d_upstream_resp() -> usize {
    32 * 1024 * 1024
}
fn d_call_max() -> u64 {
    600_000
}
fn d_standalone_linger() -> u64 {
    10_000
}
fn d_tool_resp() -> usize {
    10 * 1024 * 1024
}
fn d_listen_poll() -> u64 {
    1_000
}
fn d_resource_cache_max() -> u64 {
    300_000
}
fn d_cache_ttl() -> u64 {
    60_000
}
fn d_cache() -> u64 {
    2_000
}
fn d_max_sessions() -> usize {
    10_000
}
fn d_max_connections() -> usize {
    10_000
}
fn d_connections_per_client() -> usize {
    512
}
fn d_client_body_bytes() -> usize {
    64 * 1024 * 1024
}
fn d_idle_timeout() -> u64 {
    30_000
}
fn d_body_timeout() -> u64 {
    30_000
}
fn d_stream_queue() -> usize {
    1_024
}
fn d_sessions_per_client() -> usize {
    1_000
}
fn d_max_batch() -> usize {
    100
}
fn d_separator() -> String {
    "__".into()
}
fn d_refresh() -> u64 {
    300
}
fn d_health() -> u64 {
    30
}
fn d_unhealthy() -> u32 {
    3
}
fn d_host() -> String {
    "127.0.0.1".into()
}

pub use crate::model::SeedFile;
pub use crate::settings::{split_list, ConfigError};

/// Settings of the core gateway (the adapters add their own, such as the port).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// The address the gateway listens on; a loopback address turns on Host/Origin checks.
    #[serde(default = "d_host")]
    pub bind_host: String,
    /// Extra Host header values accepted (host or host:port).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Origins accepted from browsers (e.g. `https://app.example.com`), or `*`.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Largest request body, in bytes.
    #[serde(default = "d_max_body")]
    pub max_body_bytes: usize,
    /// Open connections in all (natively; 0: no bound).
    #[serde(default = "d_max_connections")]
    pub max_connections: usize,
    /// Open connections per client address (natively; an IPv6 address by its /64; trusted
    /// proxies count in the total only; 0: no bound).
    #[serde(default = "d_connections_per_client")]
    pub max_connections_per_client: usize,
    /// Request body bytes one client may have on their way at once (natively; one body is
    /// always read; 0: no bound).
    #[serde(default = "d_client_body_bytes")]
    pub max_client_body_bytes: usize,
    /// How long a connection may wait for a request's head, idle between requests included
    /// (natively), in ms.
    #[serde(default = "d_idle_timeout")]
    pub idle_timeout_ms: u64,
    /// How long a request's body may take to arrive once its head has (natively), in ms.
    #[serde(default = "d_body_timeout")]
    pub body_timeout_ms: u64,
    /// Most messages in one JSON-RPC batch.
    #[serde(default = "d_max_batch")]
    pub max_batch: usize,
    /// Items per page of `tools/list` and the other lists.
    #[serde(default = "d_page")]
    pub page_size: usize,
    /// Idle seconds after which a session expires.
    #[serde(default = "d_ttl")]
    pub session_ttl_secs: u64,
    /// Most sessions held at once; past it, idle ones are expired, then new ones refused (503).
    #[serde(default = "d_max_sessions")]
    pub max_sessions: usize,
    /// Most sessions one client (a subject; an address when anonymous) holds on this instance;
    /// past it, its least recently used session ends to make room (0: no quota).
    #[serde(default = "d_sessions_per_client")]
    pub max_sessions_per_client: usize,
    /// Messages an SSE stream may have unread; a stream whose client stops reading is closed
    /// there (what it missed stays in the event log for resumption).
    #[serde(default = "d_stream_queue")]
    pub max_stream_queue: usize,
    /// Default timeout of a REST tool call, in milliseconds.
    #[serde(default = "d_tool_timeout")]
    pub tool_timeout_ms: u64,
    /// Longest a forwarded upstream call may run in all, in milliseconds. Its own timeout
    /// (`timeout_ms`, else `tool_timeout_ms`) is an idle timeout: every message the upstream
    /// sends for the call (progress, logs, a request to the client) starts it again, so a call
    /// that keeps reporting, or waits on a person answering an elicitation, runs up to this.
    #[serde(default = "d_call_max")]
    pub call_max_ms: u64,
    /// How long an upstream session's standalone stream stays open with nothing to keep it, in
    /// milliseconds. It is kept while a call is in flight, while the client has a stream of its
    /// own and while the session is subscribed to one of the upstream's resources; otherwise it
    /// is closed after this long without a message, and reopened (with `Last-Event-ID`) before
    /// the next call goes out. An idle session then holds no upstream connection.
    #[serde(default = "d_standalone_linger")]
    pub standalone_linger_ms: u64,
    /// Largest REST tool response read, in bytes.
    #[serde(default = "d_tool_resp")]
    pub max_tool_response_bytes: usize,
    /// Largest message read from an upstream MCP server, in bytes (a 10 MB blob resource is
    /// 13.3 MB of base64).
    #[serde(default = "d_upstream_resp")]
    pub max_upstream_response_bytes: usize,
    /// How long a registry snapshot is served before the store is read again, in milliseconds
    /// (writes through this gateway refresh it at once).
    #[serde(default = "d_cache")]
    pub registry_cache_ms: u64,
    /// The freshness hint (`ttlMs`) of 2026-07-28 results a client may cache: `server/discover`,
    /// the lists and `resources/read`, in milliseconds.
    #[serde(default = "d_cache_ttl")]
    pub cache_ttl_ms: u64,
    /// How long an upstream's `resources/read` answer without a cache hint is kept and reused, in
    /// milliseconds (0: not kept).
    #[serde(default)]
    pub resource_cache_ms: u64,
    /// The longest any upstream `resources/read` answer is kept, its own `ttlMs` hint included,
    /// in milliseconds (0: none is kept).
    #[serde(default = "d_resource_cache_max")]
    pub resource_cache_max_ms: u64,
    /// How often an open `subscriptions/listen` stream (2026-07-28) checks the registry for
    /// changed lists, in milliseconds.
    #[serde(default = "d_listen_poll")]
    pub listen_poll_ms: u64,
    /// Between an upstream's slug and a member's name in federated names (`{slug}__{name}`).
    #[serde(default = "d_separator")]
    pub name_separator: String,
    /// A name for this instance, reported by `/version` (empty: not reported): tells an
    /// operator, or a test, which of several instances answered.
    #[serde(default)]
    pub instance: String,
    /// Default seconds between upstream catalog refreshes.
    #[serde(default = "d_refresh")]
    pub upstream_refresh_secs: u64,
    /// Seconds between upstream health checks.
    #[serde(default = "d_health")]
    pub health_check_secs: u64,
    /// Consecutive failed checks (or calls) after which an upstream is unhealthy.
    #[serde(default = "d_unhealthy")]
    pub unhealthy_after: u32,
    /// Authentication (read from `MCPGW_*` variables by the adapters with
    /// [`crate::security::auth::AuthConfig::from_vars`]; the library default is off).
    #[serde(skip)]
    pub auth: crate::security::auth::AuthConfig,
    /// Token buckets per identity and route class (none: not limited).
    #[serde(default)]
    pub rate_limits: crate::security::ratelimit::RateLimits,
    /// Special-purpose targets (loopback, private, link-local, …) tools and upstreams may use:
    /// CIDRs, addresses, host names or classes (see [`crate::netguard::NetPolicy::parse`]).
    #[serde(default)]
    pub ssrf_allow: Vec<String>,
    /// Proxies whose `X-Forwarded-For` / `X-Forwarded-Proto` are believed (CIDRs or addresses);
    /// from anyone else those headers are removed.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Whether the REST API (and so the admin UI) may register or change a stdio upstream's
    /// command, arguments or environment. Off by default: with it, an admin token runs programs
    /// on the gateway's host. Seed files and the CLI may always.
    #[serde(default)]
    pub allow_stdio_api: bool,
    /// Variables of the gateway's environment passed to stdio upstreams besides `PATH`, `HOME`,
    /// the locale and the time zone (names, or prefixes ending in `*`); `MCPGW_*` never is.
    #[serde(default)]
    pub stdio_env: Vec<String>,
    /// The AES-256-GCM key that seals stored credentials (tool and upstream `headers`): 32
    /// bytes in base64 or hex. Without one, such headers cannot be stored.
    #[serde(skip)]
    pub encryption_key: Option<crate::security::auth::Secret>,
    /// Without `encryption_key`: a key the runtime keeps for every instance of one deployment
    /// (the edge's, in D1), for what they must open alike but never keep at rest (sealed
    /// `requestState`s, admin cookies, the gateway's id); never for stored credentials.
    #[serde(skip)]
    pub deployment_key: Option<crate::security::auth::Secret>,
}

/// How a setting's text becomes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A whole number.
    Number,
    /// A comma-separated list.
    List,
    /// Text as given.
    Text,
    /// true or false (also 1/0, yes/no, on/off).
    Flag,
}

/// One setting of the core gateway as a runtime reads it: the field of [`GatewayConfig`] it
/// sets (its variable is `MCPGW_` and the field in capitals, its native flag the field with
/// dashes), how it is parsed, and what it means.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// The field of [`GatewayConfig`].
    pub field: &'static str,
    /// How its text is read.
    pub shape: Shape,
    /// What it means (the native `--help`).
    pub help: &'static str,
}

impl Setting {
    /// Its variable: `MCPGW_PAGE_SIZE` for `page_size`.
    pub fn var(&self) -> String {
        format!("MCPGW_{}", self.field.to_ascii_uppercase())
    }

    /// Its native flag, without the dashes in front: `page-size` for `page_size`.
    pub fn flag(&self) -> String {
        self.field.replace('_', "-")
    }
}

const fn setting(field: &'static str, shape: Shape, help: &'static str) -> Setting {
    Setting { field, shape, help }
}

/// Every setting both runtimes read the same way (the listening address, the database and the
/// encryption key are each runtime's own; auth and rate limits are read by
/// [`crate::security::auth::AuthConfig::from_vars`] and
/// [`crate::security::ratelimit::RateLimits::from_vars`]).
pub const SETTINGS: &[Setting] = &[
    setting("page_size", Shape::Number, "Items per page of list results."),
    setting("max_body_bytes", Shape::Number, "Largest request body in bytes."),
    setting("max_connections", Shape::Number, "Open connections in all (native; 0: no bound)."),
    setting(
        "max_connections_per_client",
        Shape::Number,
        "Open connections per client address (native; IPv6 by /64; trusted proxies count in the total only; 0: no bound).",
    ),
    setting(
        "max_client_body_bytes",
        Shape::Number,
        "Request body bytes one client may have on their way at once (native; one body is always read; 0: no bound).",
    ),
    setting(
        "idle_timeout_ms",
        Shape::Number,
        "How long a connection may wait for a request's head, idle between requests included, in milliseconds (native).",
    ),
    setting(
        "body_timeout_ms",
        Shape::Number,
        "How long a request's body may take to arrive once its head has, in milliseconds (408 past it; native).",
    ),
    setting("max_batch", Shape::Number, "Most messages in one JSON-RPC batch."),
    setting("tool_timeout_ms", Shape::Number, "Default timeout of a tool call in milliseconds (an idle timeout for forwarded calls)."),
    setting(
        "call_max_ms",
        Shape::Number,
        "Longest a forwarded upstream call may run in milliseconds (its timeout restarts on every message the upstream sends for it: progress, logs, requests to the client).",
    ),
    setting(
        "standalone_linger_ms",
        Shape::Number,
        "How long an upstream session's standalone stream stays open with nothing to keep it, in milliseconds (no call in flight, no client stream, no subscription).",
    ),
    setting("max_tool_response_bytes", Shape::Number, "Largest REST tool response read, in bytes."),
    setting("max_upstream_response_bytes", Shape::Number, "Largest message read from an upstream MCP server, in bytes."),
    setting("registry_cache_ms", Shape::Number, "How long a registry snapshot is served before the store is read again, in milliseconds."),
    setting(
        "cache_ttl_ms",
        Shape::Number,
        "Freshness hint (ttlMs) of 2026-07-28 discover, list and resources/read results, in milliseconds.",
    ),
    setting(
        "resource_cache_ms",
        Shape::Number,
        "How long an upstream resources/read answer without a cache hint (ttlMs) is kept and reused, in milliseconds (0: not kept).",
    ),
    setting(
        "resource_cache_max_ms",
        Shape::Number,
        "The longest any upstream resources/read answer is kept, its own ttlMs hint included, in milliseconds (0: none is kept).",
    ),
    setting(
        "listen_poll_ms",
        Shape::Number,
        "How often an open 2026-07-28 subscriptions/listen stream checks the registry for changed lists, in milliseconds.",
    ),
    setting("session_ttl_secs", Shape::Number, "Idle seconds before a session expires."),
    setting("max_sessions", Shape::Number, "Most sessions held at once (idle ones are expired to make room; then 503)."),
    setting(
        "max_sessions_per_client",
        Shape::Number,
        "Most sessions one client (a subject; an address when anonymous) holds here; past it, its least recently used one ends (0: no quota).",
    ),
    setting(
        "max_stream_queue",
        Shape::Number,
        "Messages an SSE stream may have unread; a stream whose client stops reading is closed there (resumable from the event log).",
    ),
    setting("allowed_hosts", Shape::List, "Extra accepted Host header values, comma-separated."),
    setting("allowed_origins", Shape::List, "Accepted browser Origins, comma-separated (or *)."),
    setting("name_separator", Shape::Text, "Between an upstream's slug and a member's name in federated names."),
    setting("instance", Shape::Text, "A name for this instance, reported by /version (which of several answered)."),
    setting("upstream_refresh_secs", Shape::Number, "Default seconds between upstream catalog refreshes."),
    setting("health_check_secs", Shape::Number, "Seconds between upstream health checks."),
    setting(
        "unhealthy_after",
        Shape::Number,
        "Consecutive failures after which an upstream is unhealthy (calls fail fast until it answers a health check again).",
    ),
    setting(
        "ssrf_allow",
        Shape::List,
        "Special-purpose targets tools and upstreams may reach despite the SSRF guard, comma-separated: CIDRs, addresses, host names, or loopback/private/link-local/shared.",
    ),
    setting(
        "trusted_proxies",
        Shape::List,
        "Reverse proxies whose X-Forwarded-For and X-Forwarded-Proto are believed, comma-separated CIDRs or addresses (from anyone else those headers are dropped).",
    ),
    setting(
        "allow_stdio_api",
        Shape::Flag,
        "Let the REST API and admin UI register or change stdio upstreams' commands (an admin token then runs programs on this host); seed files and the CLI always may.",
    ),
    setting(
        "stdio_env",
        Shape::List,
        "Variables passed to stdio upstreams besides PATH, HOME, USER, the locale, TZ and TMPDIR, comma-separated (names, or prefixes ending in *); MCPGW_* never is.",
    ),
];

impl GatewayConfig {
    /// The configuration from variables (`MCPGW_*`, as [`SETTINGS`] names them, plus those of
    /// auth and rate limits): absent or blank ones keep their defaults. `bind_host` and the
    /// encryption key are the runtime's to set. Not validated yet: see [`GatewayConfig::validate`].
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let mut fields = serde_json::Map::new();
        for s in SETTINGS {
            let Some(text) = get(&s.var()) else { continue };
            let value = match s.shape {
                Shape::Number => text
                    .trim()
                    .parse::<u64>()
                    .map(Value::from)
                    .map_err(|_| ConfigError::new(s.field, format!("'{text}' is not a valid number")))?,
                Shape::List => Value::from(split_list(&text)),
                Shape::Text => Value::from(text.clone()),
                Shape::Flag => Value::Bool(
                    crate::settings::flag(&text)
                        .ok_or_else(|| ConfigError::new(s.field, format!("'{text}' is not true or false")))?,
                ),
            };
            // Alone first, so that a number too large for its field names the setting.
            let alone = serde_json::Map::from_iter([(s.field.to_string(), value.clone())]);
            serde_json::from_value::<GatewayConfig>(Value::Object(alone))
                .map_err(|_| ConfigError::new(s.field, format!("'{text}' is out of range")))?;
            fields.insert(s.field.to_string(), value);
        }
        let mut config: GatewayConfig =
            serde_json::from_value(Value::Object(fields)).map_err(|e| ConfigError::new("settings", e.to_string()))?;
        config.auth = crate::security::auth::AuthConfig::from_vars(get)?;
        config.rate_limits = crate::security::ratelimit::RateLimits::from_vars(get)?;
        Ok(config)
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        serde_json::from_value(Value::Object(Default::default())).unwrap_or_else(|_| unreachable_default())
    }
}

// Every field has a serde default, so the empty object always deserializes; this keeps the
// fallback explicit without a panic path.
fn unreachable_default() -> GatewayConfig {
    GatewayConfig {
        bind_host: d_host(),
        allowed_hosts: vec![],
        allowed_origins: vec![],
        max_body_bytes: d_max_body(),
        max_connections: d_max_connections(),
        max_connections_per_client: d_connections_per_client(),
        max_client_body_bytes: d_client_body_bytes(),
        idle_timeout_ms: d_idle_timeout(),
        body_timeout_ms: d_body_timeout(),
        max_batch: d_max_batch(),
        page_size: d_page(),
        session_ttl_secs: d_ttl(),
        max_sessions: d_max_sessions(),
        max_sessions_per_client: d_sessions_per_client(),
        max_stream_queue: d_stream_queue(),
        tool_timeout_ms: d_tool_timeout(),
        call_max_ms: d_call_max(),
        standalone_linger_ms: d_standalone_linger(),
        max_tool_response_bytes: d_tool_resp(),
        max_upstream_response_bytes: d_upstream_resp(),
        registry_cache_ms: d_cache(),
        cache_ttl_ms: d_cache_ttl(),
        resource_cache_ms: 0,
        resource_cache_max_ms: d_resource_cache_max(),
        listen_poll_ms: d_listen_poll(),
        name_separator: d_separator(),
        instance: String::new(),
        upstream_refresh_secs: d_refresh(),
        health_check_secs: d_health(),
        unhealthy_after: d_unhealthy(),
        auth: Default::default(),
        rate_limits: Default::default(),
        ssrf_allow: vec![],
        trusted_proxies: vec![],
        allow_stdio_api: false,
        stdio_env: vec![],
        encryption_key: None,
        deployment_key: None,
    }
}

fn bad(setting: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::new(setting, message)
}

impl GatewayConfig {
    /// Checks every setting; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.bind_host.trim().is_empty() {
            return Err(bad("bind_host", "must not be empty"));
        }
        if !(1024..=1 << 30).contains(&self.max_body_bytes) {
            return Err(bad("max_body_bytes", "must be between 1024 and 1073741824"));
        }
        if self.idle_timeout_ms == 0 {
            return Err(bad("idle_timeout_ms", "must be greater than 0"));
        }
        if self.body_timeout_ms == 0 {
            return Err(bad("body_timeout_ms", "must be greater than 0"));
        }
        if !(1..=10_000).contains(&self.max_batch) {
            return Err(bad("max_batch", "must be between 1 and 10000"));
        }
        if !(1..=10_000).contains(&self.page_size) {
            return Err(bad("page_size", "must be between 1 and 10000"));
        }
        if self.session_ttl_secs == 0 {
            return Err(bad("session_ttl_secs", "must be greater than 0"));
        }
        if self.max_stream_queue == 0 {
            return Err(bad("max_stream_queue", "must be at least 1"));
        }
        if self.max_sessions == 0 {
            return Err(bad("max_sessions", "must be at least 1"));
        }
        if self.tool_timeout_ms == 0 {
            return Err(bad("tool_timeout_ms", "must be greater than 0"));
        }
        if self.call_max_ms == 0 {
            return Err(bad("call_max_ms", "must be greater than 0"));
        }
        if self.standalone_linger_ms == 0 {
            return Err(bad("standalone_linger_ms", "must be greater than 0"));
        }
        if self.max_tool_response_bytes < 1024 {
            return Err(bad("max_tool_response_bytes", "must be at least 1024"));
        }
        if self.max_upstream_response_bytes < 1024 {
            return Err(bad("max_upstream_response_bytes", "must be at least 1024"));
        }
        let sep_ok = !self.name_separator.is_empty()
            && self.name_separator.len() <= 8
            && self
                .name_separator
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !sep_ok {
            return Err(bad(
                "name_separator",
                "must be 1-8 characters of A-Z, a-z, 0-9, '_', '-' or '.'",
            ));
        }
        if self.upstream_refresh_secs == 0 {
            return Err(bad("upstream_refresh_secs", "must be greater than 0"));
        }
        if self.health_check_secs == 0 {
            return Err(bad("health_check_secs", "must be greater than 0"));
        }
        if self.unhealthy_after == 0 {
            return Err(bad("unhealthy_after", "must be at least 1"));
        }
        crate::netguard::NetPolicy::parse(&self.ssrf_allow).map_err(|e| bad("ssrf_allow", e.to_string()))?;
        crate::netguard::Networks::parse(&self.trusted_proxies).map_err(|e| bad("trusted_proxies", e.to_string()))?;
        // A token's audience is this gateway's URL; it must never come from what a client says
        // it called: off loopback the URL (or the audience) must be configured. (The native
        // gateway on loopback sets it to the address it listens on; a Worker under `wrangler
        // dev` reads its loopback Host, which the Host policy checks.)
        let a = &self.auth;
        if a.oauth_issuer.is_some() && a.audience.is_empty() && a.public_url.is_none() && !self.is_loopback() {
            return Err(bad(
                "MCPGW_PUBLIC_URL",
                "with MCPGW_OAUTH_ISSUER the gateway checks that tokens were issued for it: set MCPGW_PUBLIC_URL to its public URL (or MCPGW_JWT_AUDIENCE)",
            ));
        }
        if let Some(k) = &self.encryption_key {
            crate::registry::seal::Sealer::parse_key(&k.0).map_err(|e| bad("encryption_key", e.to_string()))?;
        }
        if let Some(k) = &self.deployment_key {
            crate::registry::seal::Sealer::parse_key(&k.0).map_err(|e| bad("deployment_key", e.to_string()))?;
        }
        for o in &self.allowed_origins {
            if o != "*" && !(o.starts_with("http://") || o.starts_with("https://")) {
                return Err(bad(
                    "allowed_origins",
                    format!("'{o}' is not an origin like https://host[:port] or *"),
                ));
            }
        }
        Ok(())
    }

    /// True when bound to a loopback address: DNS-rebinding protection applies.
    pub fn is_loopback(&self) -> bool {
        let h = self.bind_host.trim_start_matches('[').trim_end_matches(']');
        h == "localhost" || h == "::1" || h.starts_with("127.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_of_the_table_reaches_its_field() {
        let defaults = serde_json::to_value(GatewayConfig::default()).expect("json");
        for s in SETTINGS {
            let (text, want) = match s.shape {
                Shape::Number => ("7", json_number(7)),
                Shape::List => ("a, b", serde_json::json!(["a", "b"])),
                Shape::Text => ("t", serde_json::json!("t")),
                Shape::Flag => ("yes", serde_json::json!(true)),
            };
            assert!(defaults.get(s.field).is_some(), "{} is a field", s.field);
            let var = s.var();
            let cfg = GatewayConfig::from_vars(|n| vars(&[(&var, text)], n)).expect(s.field);
            let got = serde_json::to_value(&cfg).expect("json");
            assert_eq!(got[s.field], want, "{var}");
            // Nothing else moved.
            for other in SETTINGS.iter().filter(|o| o.field != s.field) {
                assert_eq!(got[other.field], defaults[other.field], "{var} changed {}", other.field);
            }
        }
        assert_eq!(SETTINGS[0].flag(), "page-size");
    }

    /// An OAuth resource server must know its own URL unless the Host header it would read
    /// instead is checked (bound to loopback, or with allowed hosts).
    #[test]
    fn oauth_needs_a_configured_audience_off_loopback() {
        let oauth = |extra: &[(&str, &str)], host: &str| {
            let mut given = vec![
                ("MCPGW_AUTH_REQUIRED", "true"),
                ("MCPGW_OAUTH_ISSUER", "https://idp.example"),
            ];
            given.extend_from_slice(extra);
            let mut c = GatewayConfig::from_vars(|n| given.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string()))
                .expect("vars");
            c.bind_host = host.into();
            c.validate()
        };
        let e = oauth(&[], "0.0.0.0").unwrap_err();
        assert_eq!(e.setting, "MCPGW_PUBLIC_URL", "{e:?}");
        assert!(oauth(&[], "127.0.0.1").is_ok());
        assert!(oauth(&[("MCPGW_PUBLIC_URL", "https://gw.example")], "0.0.0.0").is_ok());
        assert!(oauth(&[("MCPGW_JWT_AUDIENCE", "mcpgw")], "0.0.0.0").is_ok());
        let e = oauth(&[("MCPGW_ALLOWED_HOSTS", "gw.example")], "0.0.0.0").unwrap_err();
        assert_eq!(
            e.setting, "MCPGW_PUBLIC_URL",
            "allowed hosts do not say the port or scheme"
        );
        let e = oauth(&[("MCPGW_TRUSTED_PROXIES", "10.0.0.0/33")], "127.0.0.1").unwrap_err();
        assert_eq!(e.setting, "trusted_proxies", "{e:?}");
    }

    fn json_number(n: u64) -> Value {
        Value::from(n)
    }

    /// `given`, with auth off (the runtimes' default is on, which needs a key).
    fn vars(given: &[(&str, &str)], name: &str) -> Option<String> {
        if name == "MCPGW_AUTH_REQUIRED" {
            return Some("false".into());
        }
        given.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn bad_values_name_their_setting_and_blank_ones_keep_the_default() {
        let one = |var: &'static str, v: &'static str| GatewayConfig::from_vars(move |n| vars(&[(var, v)], n));
        let e = one("MCPGW_PAGE_SIZE", "many").unwrap_err();
        assert_eq!(
            (e.setting.as_str(), e.message.as_str()),
            ("page_size", "'many' is not a valid number")
        );
        let e = one("MCPGW_UNHEALTHY_AFTER", "99999999999").unwrap_err();
        assert_eq!(e.setting, "unhealthy_after", "{e:?}");
        let e = one("MCPGW_ALLOW_STDIO_API", "maybe").unwrap_err();
        assert_eq!(
            (e.setting.as_str(), e.message.as_str()),
            ("allow_stdio_api", "'maybe' is not true or false")
        );
        let blank = one("MCPGW_PAGE_SIZE", "  ").unwrap();
        assert_eq!(blank.page_size, GatewayConfig::default().page_size);
    }
}
