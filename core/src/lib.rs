//! mcpgw-core: the gateway itself, free of any runtime.
//!
//! The wire ([`proto`]: JSON-RPC, protocol revisions, SSE), the registry ([`model`], [`registry`]), the MCP
//! methods and REST tools, the transports and REST API behind one HTTP face
//! ([`Gateway::handle`]), and the [`ports`] through which adapters supply storage, HTTP, time,
//! randomness and background work. No tokio, axum, worker or reqwest here: the same code runs
//! in a tokio task natively and inside a Worker on the edge.

#![warn(missing_docs)]

pub mod auth;
pub mod config;
pub mod listing;
pub mod memory;
pub mod model;
pub mod netguard;
pub mod platform;
pub mod ports;
pub mod proto;
pub mod ratelimit;
pub mod registry;
pub mod render;
pub mod route;
pub mod seal;
pub mod settings;
pub mod uri_template;

#[cfg(feature = "test-util")]
pub mod store_suite;

mod admin;
pub mod federation;
mod gateway;
mod guard;
mod hub;
mod mcp;
mod response;
mod tools;
mod upstream;

pub use config::{ConfigError, GatewayConfig, SeedFile};
pub use gateway::{AssignSessionId, Gateway, Ports, ServerInfo};
pub use guard::{Admitted, ClientIp, FORBIDDEN, RATE_LIMITED, UNAUTHORIZED};
pub use response::Body;
