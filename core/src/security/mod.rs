//! Security: who is calling and whether they may ([`admission::Security`]: credentials, scopes,
//! revocations, rate limits, the 401/403/429 answers), the auth settings ([`auth`]), what a credential proves
//! ([`identity`]), JWT verification ([`jwt`]; public-key signatures and PBKDF2 through the
//! [`crate::ports::Crypto`] port, in Rust natively: `RustCrypto`), rate-limit rules and buckets ([`ratelimit`]), and
//! the Host/Origin/CORS policy ([`origin`]).
//!
//! Lives here: every decision about letting a request in. Not here: what the request does
//! once it is in; the SSRF policy for outbound URLs ([`crate::netguard`], which the registry
//! applies when definitions are stored).

pub(crate) mod admission;
pub mod auth;
pub mod identity;
pub mod jwt;
pub(crate) mod origin;
pub mod ratelimit;
#[cfg(not(target_family = "wasm"))]
mod rust_crypto;

#[cfg(not(target_family = "wasm"))]
pub use rust_crypto::{mint, RustCrypto};
