//! The end-to-end suite as one test binary (it links once, and its cases share one test
//! runner): a module per area. `MCPGW_TARGET=edge` runs the shared modules against the Worker
//! under `wrangler dev`; `lifecycle`, `fixture_upstream`, `shared_registry`, `shared_sessions`, `scale_faults` and `soak` are native-only and
//! `edge_restart` always runs the edge (the test command filters them out of the edge run and
//! reports them as skipped there).

mod admin_ui;
mod auth;
mod bad_input;
mod conformance;
mod credentials;
mod edge_restart;
mod federation;
mod federation_faults;
mod fixture_upstream;
mod hostile;
mod ids;
mod lifecycle;
mod mdns;
mod mrtr;
mod oauth;
mod observability;
mod odd_upstreams;
mod openapi;
mod openapi_upstream;
mod peers;
mod protocol;
mod ratelimit;
mod scale_faults;
mod sdk_clients;
mod shared_registry;
mod shared_sessions;
mod soak;
mod ssrf;
mod stateless;
mod stdio;
mod tls;
mod upstream_oauth;
mod upstream_user_clients;
mod upstream_user_oauth;
mod ws;
