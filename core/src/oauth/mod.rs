//! The gateway as an OAuth client of its upstreams (the MCP authorization spec, 2025-11-25):
//! the challenges an upstream's refusal carries ([`challenge`]), the discovery of who
//! authorizes requests to it ([`discovery`]), requests to its token endpoint ([`token`]) and
//! PKCE ([`pkce`]). Pure but for the `HttpClient` and `Clock` ports;
//! the same on both runtimes.

pub mod assertion;
pub mod authorize;
pub mod challenge;
pub mod credential;
pub mod discovery;
pub mod exchange;
pub mod grants;
mod kept;
pub mod pkce;
pub mod registration;
pub mod token;
pub mod vault;
mod vault_records;
