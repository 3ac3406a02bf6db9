//! The HTTP header names of MCP's transports, once: every layer that reads or writes them
//! names them from here.

use http::HeaderName;

/// `Mcp-Session-Id`: the session of a streamable HTTP request (session era).
pub const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
/// `MCP-Protocol-Version`: the revision a request speaks.
pub const MCP_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
/// `Mcp-Method`: a 2026-07-28 request's method, mirrored from its body.
pub const MCP_METHOD: HeaderName = HeaderName::from_static("mcp-method");
/// `Mcp-Name`: the tool, prompt or resource a 2026-07-28 request acts on, mirrored.
pub const MCP_NAME: HeaderName = HeaderName::from_static("mcp-name");
/// `Last-Event-ID`: where a resumed SSE stream goes on from.
pub const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");
