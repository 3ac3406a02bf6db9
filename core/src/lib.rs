//! mcpgw-core: the gateway itself, free of any runtime.
//!
//! Layers, each importing only those below it (checked by `scripts/layers.py`): [`platform`],
//! [`settings`], [`proto`] (the wire), [`model`], [`ports`], [`memory`], [`http`] (routes,
//! responses), [`registry`], [`security`], [`config`], `session`, `upstream`, `federation`,
//! `engine`, `face`, and `gateway` (the composition root, [`Gateway::handle`]). No tokio, axum,
//! worker or reqwest here: the same code runs in a tokio task natively and inside a Worker on
//! the edge.

#![warn(missing_docs)]

pub mod bridge;
pub mod config;
#[cfg(feature = "test-util")]
pub mod fixtures;
pub mod http;
pub mod memory;
pub mod model;
pub mod netguard;
pub mod oauth;
pub mod observe;
pub mod platform;
pub mod ports;
pub mod proto;
pub mod queue;
pub mod registry;
pub mod render;
pub mod security;
pub mod settings;
pub mod uri_template;

#[cfg(all(feature = "test-util", not(target_family = "wasm")))]
pub mod fuzzing;
#[cfg(feature = "test-util")]
pub mod store_suite;

mod engine;
mod face;
pub mod federation;
mod gateway;
mod session;
mod ui;
mod upstream;
pub mod ws;

pub use config::{ConfigError, GatewayConfig, SeedFile};
pub use engine::{Park, ServerInfo};
pub use face::{AssignSessionId, Placement};
pub use gateway::{Gateway, Ports};
pub use http::response::{Body, Unread};
pub use security::admission::{Admitted, ClientIp, FORBIDDEN, RATE_LIMITED, UNAUTHORIZED};
