//! Every route the gateway serves, parsed once from the path: what it is, who may use it
//! ([`Access`]) and how its errors look ([`ErrorStyle`]). Core routes with it and so does the
//! edge Worker (which hands a session's MCP requests to the session's Durable Object); nothing
//! else matches paths.

use crate::ports::Kind;

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (`/health`, `/ready`, `/version`, `/.well-known/…`).
    Public,
    /// An MCP client (`/mcp`, `/servers/{id}/mcp`, legacy SSE, `/rpc`).
    Client,
    /// An administrator (the REST API).
    Admin,
}

/// How a route's errors are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorStyle {
    /// A JSON-RPC error object (the MCP endpoints and `/rpc`).
    JsonRpc,
    /// `{"error": {"code", "message"}}` (the REST API and operations).
    Rest,
}

/// One route, with what its path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Streamable HTTP: `/mcp`, or `/servers/{id}/mcp` for a virtual server.
    Mcp {
        /// The virtual server's id or name.
        server: Option<String>,
    },
    /// The legacy HTTP+SSE stream: `/sse`, `/servers/{id}/sse`.
    Sse {
        /// The virtual server's id or name.
        server: Option<String>,
    },
    /// The WebSocket transport (subprotocol `mcp`): `/ws`, `/servers/{id}/ws`.
    Ws {
        /// The virtual server's id or name.
        server: Option<String>,
    },
    /// The legacy HTTP+SSE message endpoint: `/message`, `/servers/{id}/message`.
    Message {
        /// The virtual server's id or name.
        server: Option<String>,
    },
    /// Plain JSON-RPC: `/rpc`.
    Rpc,
    /// OAuth protected-resource metadata (RFC 9728): `/.well-known/oauth-protected-resource`
    /// followed by the resource's path (empty for the bare document).
    ResourceMetadata {
        /// The resource path (`/mcp`, `/servers/x/mcp`) or empty.
        resource: String,
    },
    /// `/auth/revocations[/{jti}]`.
    Revocations {
        /// One revocation.
        jti: Option<String>,
    },
    /// `/gateways/{id}/refresh`.
    Refresh {
        /// The upstream's id or name.
        id: String,
    },
    /// `/health`.
    Health,
    /// `/ready`.
    Ready,
    /// `/version`.
    Version,
    /// `/metrics`: Prometheus text (admin).
    Metrics,
    /// `/peers/discovered`: gateways found by mDNS (admin).
    Discovered,
    /// `/openapi.json`: the REST API's OpenAPI document.
    OpenApi,
    /// `/admin[/…]`: the admin UI (its pages check their own cookie session).
    Admin {
        /// The rest of the path after `/admin`.
        rest: String,
    },
    /// A caller's own pages for upstreams acting for each caller: `/oauth/connect/{ticket}`,
    /// `/oauth/login`, `/oauth/callback`, `/me[/…]` (the pages check their own cookie).
    Account {
        /// The whole path.
        path: String,
    },
    /// The gateway's OAuth Client ID Metadata Document (`/oauth/client.json`): who it is at an
    /// upstream's authorization server where no client was registered for it.
    ClientMetadata,
    /// `/me/connections[/{upstream}]`: the caller's connections, with a client token.
    Connections {
        /// One upstream (id or name).
        upstream: Option<String>,
    },
    /// A REST collection or one of its records: `/tools[/{id}]`, `/resources`, `/prompts`,
    /// `/servers`, `/gateways`.
    Collection {
        /// The record kind.
        kind: Kind,
        /// One record (id or name).
        id: Option<String>,
    },
    /// Nothing here (public under `/.well-known/`, else an admin path).
    NotFound {
        /// Under `/.well-known/`.
        public: bool,
    },
}

/// The record kind a REST collection's path segment names.
pub fn collection_kind(segment: &str) -> Option<Kind> {
    match segment {
        "tools" => Some(Kind::Tool),
        "resources" => Some(Kind::Resource),
        "prompts" => Some(Kind::Prompt),
        "servers" => Some(Kind::Server),
        "gateways" => Some(Kind::Upstream),
        _ => None,
    }
}

impl Route {
    /// The route of a request path (without its query).
    pub fn parse(path: &str) -> Self {
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let server = |id: &str| Some(id.to_string());
        match segs.as_slice() {
            ["mcp"] => Route::Mcp { server: None },
            ["sse"] => Route::Sse { server: None },
            ["ws"] => Route::Ws { server: None },
            ["message"] => Route::Message { server: None },
            ["servers", id, "mcp"] => Route::Mcp { server: server(id) },
            ["servers", id, "sse"] => Route::Sse { server: server(id) },
            ["servers", id, "ws"] => Route::Ws { server: server(id) },
            ["servers", id, "message"] => Route::Message { server: server(id) },
            ["rpc"] => Route::Rpc,
            [".well-known", "oauth-protected-resource", rest @ ..] => Route::ResourceMetadata {
                resource: if rest.is_empty() {
                    String::new()
                } else {
                    format!("/{}", rest.join("/"))
                },
            },
            [".well-known", ..] => Route::NotFound { public: true },
            ["auth", "revocations"] => Route::Revocations { jti: None },
            ["auth", "revocations", jti] => Route::Revocations {
                jti: Some(jti.to_string()),
            },
            ["gateways", id, "refresh"] => Route::Refresh { id: id.to_string() },
            ["health"] => Route::Health,
            ["ready"] => Route::Ready,
            ["version"] => Route::Version,
            ["metrics"] => Route::Metrics,
            ["peers", "discovered"] => Route::Discovered,
            ["openapi.json"] => Route::OpenApi,
            ["me", "connections"] => Route::Connections { upstream: None },
            ["me", "connections", up] => Route::Connections {
                upstream: Some(up.to_string()),
            },
            ["oauth", "client.json"] => Route::ClientMetadata,
            ["oauth", "connect", _] | ["oauth", "login"] | ["oauth", "callback", ..] | ["me", ..] => {
                Route::Account { path: path.to_string() }
            }
            ["admin", rest @ ..] => Route::Admin {
                rest: rest.iter().map(|s| format!("/{s}")).collect(),
            },
            [collection, rest @ ..] if rest.len() <= 1 => match collection_kind(collection) {
                Some(kind) => Route::Collection {
                    kind,
                    id: rest.first().map(|s| s.to_string()),
                },
                None => Route::NotFound { public: false },
            },
            _ => Route::NotFound { public: false },
        }
    }

    /// Who may use the route.
    pub fn access(&self) -> Access {
        match self {
            Route::Health
            | Route::Ready
            | Route::Version
            | Route::OpenApi
            | Route::ResourceMetadata { .. }
            | Route::ClientMetadata
            | Route::Account { .. }
            | Route::Admin { .. } => Access::Public,
            Route::Connections { .. } => Access::Client,
            Route::NotFound { public: true } => Access::Public,
            Route::Mcp { .. } | Route::Sse { .. } | Route::Ws { .. } | Route::Message { .. } | Route::Rpc => {
                Access::Client
            }
            _ => Access::Admin,
        }
    }

    /// The route's class, as metrics label it.
    pub fn class(&self) -> &'static str {
        match self {
            Route::Mcp { .. } => "mcp",
            Route::Sse { .. } => "sse",
            Route::Ws { .. } => "ws",
            Route::Message { .. } => "message",
            Route::Rpc => "rpc",
            Route::ResourceMetadata { .. } | Route::ClientMetadata => "metadata",
            Route::Revocations { .. } | Route::Refresh { .. } | Route::Collection { .. } | Route::Discovered => "api",
            Route::Health | Route::Ready | Route::Version | Route::OpenApi => "operations",
            Route::Metrics => "metrics",
            Route::Admin { .. } | Route::Account { .. } => "ui",
            Route::Connections { .. } => "api",
            Route::NotFound { .. } => "not_found",
        }
    }

    /// The path template the route answers on, as the OpenAPI document names it (`{id}` for an
    /// id); none for no route.
    pub fn template(&self) -> Option<&'static str> {
        Some(match self {
            Route::Mcp { server: None } => "/mcp",
            Route::Mcp { server: Some(_) } => "/servers/{id}/mcp",
            Route::Sse { server: None } => "/sse",
            Route::Sse { server: Some(_) } => "/servers/{id}/sse",
            Route::Ws { server: None } => "/ws",
            Route::Ws { server: Some(_) } => "/servers/{id}/ws",
            Route::Message { server: None } => "/message",
            Route::Message { server: Some(_) } => "/servers/{id}/message",
            Route::Rpc => "/rpc",
            Route::ResourceMetadata { resource } if resource.is_empty() => "/.well-known/oauth-protected-resource",
            Route::ResourceMetadata { .. } => "/.well-known/oauth-protected-resource{resource}",
            Route::ClientMetadata => "/oauth/client.json",
            Route::Revocations { jti: None } => "/auth/revocations",
            Route::Revocations { jti: Some(_) } => "/auth/revocations/{id}",
            Route::Refresh { .. } => "/gateways/{id}/refresh",
            Route::Health => "/health",
            Route::Ready => "/ready",
            Route::Version => "/version",
            Route::Metrics => "/metrics",
            Route::Discovered => "/peers/discovered",
            Route::OpenApi => "/openapi.json",
            Route::Admin { .. } => "/admin{rest}",
            Route::Account { .. } => "/me",
            Route::Connections { upstream: None } => "/me/connections",
            Route::Connections { upstream: Some(_) } => "/me/connections/{id}",
            Route::Collection { kind, id } => match (kind, id.is_some()) {
                (Kind::Tool, false) => "/tools",
                (Kind::Tool, true) => "/tools/{id}",
                (Kind::Resource, false) => "/resources",
                (Kind::Resource, true) => "/resources/{id}",
                (Kind::Prompt, false) => "/prompts",
                (Kind::Prompt, true) => "/prompts/{id}",
                (Kind::Server, false) => "/servers",
                (Kind::Server, true) => "/servers/{id}",
                (Kind::Upstream, false) => "/gateways",
                (Kind::Upstream, true) => "/gateways/{id}",
                (Kind::Revocation | Kind::Connection | Kind::Consent | Kind::Client, _) => return None,
            },
            Route::NotFound { .. } => return None,
        })
    }

    /// How the route's errors are written.
    pub fn error_style(&self) -> ErrorStyle {
        if matches!(self, Route::Connections { .. }) {
            return ErrorStyle::Rest;
        }
        match self.access() {
            Access::Client => ErrorStyle::JsonRpc,
            _ => ErrorStyle::Rest,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Routes the OpenAPI document leaves out: the MCP endpoints (JSON-RPC, described by the
    /// MCP specification), the metadata of a resource path (a suffix with slashes, which an
    /// OpenAPI path cannot template; the bare document is described), and the admin UI's HTML
    /// pages and a caller's own (`/me`, `/oauth/…`).
    const NOT_DOCUMENTED: [&str; 12] = [
        "/mcp",
        "/servers/{id}/mcp",
        "/ws",
        "/servers/{id}/ws",
        "/sse",
        "/servers/{id}/sse",
        "/message",
        "/servers/{id}/message",
        "/rpc",
        "/.well-known/oauth-protected-resource{resource}",
        "/admin{rest}",
        "/me",
    ];

    #[test]
    fn every_route_is_in_the_openapi_document_and_every_documented_path_is_a_route() {
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("../../assets/openapi.json")).expect("the document is JSON");
        let documented: std::collections::BTreeSet<String> =
            doc["paths"].as_object().expect("paths").keys().cloned().collect();
        // Each documented path is served, under that template.
        for path in &documented {
            let example = path.replace("{id}", "x");
            assert_eq!(Route::parse(&example).template(), Some(path.as_str()), "{path}");
            assert!(!NOT_DOCUMENTED.contains(&path.as_str()), "{path}");
        }
        // Every path made of the words this parser knows (its string literals), up to four
        // segments, that is a route is documented or deliberately left out: a new route
        // without its entry in the document fails here.
        let words: std::collections::BTreeSet<&str> = include_str!("route.rs")
            .split('"')
            .skip(1)
            .step_by(2)
            .filter(|w| !w.is_empty() && w.len() < 40 && !w.contains([' ', '/', '{', '\\']))
            .chain(["x"])
            .collect();
        let words: Vec<&str> = words.into_iter().collect();
        let mut seen = std::collections::BTreeSet::new();
        let mut paths: Vec<String> = vec![String::new()];
        for _ in 0..4 {
            let mut next = vec![];
            for p in &paths {
                for w in &words {
                    let path = format!("{p}/{w}");
                    if let Some(t) = Route::parse(&path).template() {
                        seen.insert(t);
                        assert!(
                            documented.contains(t) || NOT_DOCUMENTED.contains(&t),
                            "{path} is served as {t}, which the OpenAPI document lacks"
                        );
                    }
                    next.push(path);
                }
            }
            paths = next;
        }
        assert!(seen.len() >= documented.len(), "the walk reached {seen:?}");
    }

    #[test]
    fn paths_parse_to_routes_with_their_access_and_style() {
        let cases: [(&str, Route, Access); 14] = [
            ("/mcp", Route::Mcp { server: None }, Access::Client),
            ("/mcp/", Route::Mcp { server: None }, Access::Client),
            (
                "/servers/x/mcp",
                Route::Mcp {
                    server: Some("x".into()),
                },
                Access::Client,
            ),
            (
                "/servers/x/message",
                Route::Message {
                    server: Some("x".into()),
                },
                Access::Client,
            ),
            ("/rpc", Route::Rpc, Access::Client),
            ("/health", Route::Health, Access::Public),
            (
                "/.well-known/oauth-protected-resource/mcp",
                Route::ResourceMetadata {
                    resource: "/mcp".into(),
                },
                Access::Public,
            ),
            ("/.well-known/other", Route::NotFound { public: true }, Access::Public),
            (
                "/tools/echo",
                Route::Collection {
                    kind: Kind::Tool,
                    id: Some("echo".into()),
                },
                Access::Admin,
            ),
            (
                "/servers/x",
                Route::Collection {
                    kind: Kind::Server,
                    id: Some("x".into()),
                },
                Access::Admin,
            ),
            ("/gateways/g/refresh", Route::Refresh { id: "g".into() }, Access::Admin),
            ("/auth/revocations", Route::Revocations { jti: None }, Access::Admin),
            ("/tools/a/b", Route::NotFound { public: false }, Access::Admin),
            ("/nope", Route::NotFound { public: false }, Access::Admin),
        ];
        for (path, route, access) in cases {
            let parsed = Route::parse(path);
            assert_eq!(parsed, route, "{path}");
            assert_eq!(parsed.access(), access, "{path}");
            let style = if access == Access::Client {
                ErrorStyle::JsonRpc
            } else {
                ErrorStyle::Rest
            };
            assert_eq!(parsed.error_style(), style, "{path}");
        }
    }
}
