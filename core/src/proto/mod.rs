//! The wire, pure: JSON-RPC messages and ids, protocol revisions and their eras, the stateless
//! era's per-request metadata, log levels, MCP's header names,
//! SSE framing and parsing, list cursors, the params and results the gateway reads or builds. No I/O and nothing of the gateway's own: every other
//! layer may use this one, and it uses none of them (only `platform`).

pub mod classify;
pub mod cursor;
pub mod headers;
pub mod jsonrpc;
pub mod logging;
pub mod meta;
pub mod method;
pub mod params;
pub mod sse;
pub mod version;
