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
            ["message"] => Route::Message { server: None },
            ["servers", id, "mcp"] => Route::Mcp { server: server(id) },
            ["servers", id, "sse"] => Route::Sse { server: server(id) },
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
            Route::Health | Route::Ready | Route::Version | Route::ResourceMetadata { .. } => Access::Public,
            Route::NotFound { public: true } => Access::Public,
            Route::Mcp { .. } | Route::Sse { .. } | Route::Message { .. } | Route::Rpc => Access::Client,
            _ => Access::Admin,
        }
    }

    /// The route's class, as metrics label it.
    pub fn class(&self) -> &'static str {
        match self {
            Route::Mcp { .. } => "mcp",
            Route::Sse { .. } => "sse",
            Route::Message { .. } => "message",
            Route::Rpc => "rpc",
            Route::ResourceMetadata { .. } => "metadata",
            Route::Revocations { .. } | Route::Refresh { .. } | Route::Collection { .. } => "api",
            Route::Health | Route::Ready | Route::Version => "operations",
            Route::Metrics => "metrics",
            Route::NotFound { .. } => "not_found",
        }
    }

    /// How the route's errors are written.
    pub fn error_style(&self) -> ErrorStyle {
        match self.access() {
            Access::Client => ErrorStyle::JsonRpc,
            _ => ErrorStyle::Rest,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
