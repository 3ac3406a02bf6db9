//! Ports: the traits through which the core reaches storage, the network, time, randomness and
//! background work. Adapters implement them (libsql, reqwest and tokio natively; D1, Fetch and
//! Durable Objects on the edge); in-memory versions live in [`crate::memory`].
//!
//! Nothing here may assume a runtime: no tokio, no `worker`, no `std::time::Instant`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::platform::{BoxFuture, BoxStream, MaybeSend, MaybeSync};

/// What a registry record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Kind {
    /// A tool (REST-backed for now).
    Tool,
    /// A static resource or a resource template.
    Resource,
    /// A prompt template.
    Prompt,
    /// A virtual server.
    Server,
    /// An upstream MCP server (federation), with the catalog last read from it (served at the
    /// REST path `/gateways`, as in ContextForge).
    #[serde(alias = "gateway")]
    Upstream,
    /// A revoked token (`key` is its `jti`).
    Revocation,
    /// A caller's connection to a `user`-mode upstream: its tokens, sealed (the token vault).
    Connection,
    /// An authorization a caller was asked for and has not finished: the connect link's
    /// ticket, or the authorization request under way (single-use, short-lived).
    Consent,
    /// A client the gateway registered for itself at an authorization server (RFC 7591), by
    /// issuer and callback URL; its secret sealed.
    Client,
}

impl Kind {
    /// Every kind, in a fixed order.
    pub const ALL: [Kind; 9] = [
        Kind::Tool,
        Kind::Resource,
        Kind::Prompt,
        Kind::Server,
        Kind::Upstream,
        Kind::Revocation,
        Kind::Connection,
        Kind::Consent,
        Kind::Client,
    ];
    /// The kinds clients see as lists (a change to one is a `list_changed`).
    pub const LISTED: [Kind; 5] = [Kind::Tool, Kind::Resource, Kind::Prompt, Kind::Server, Kind::Upstream];
    /// The name stored in the `kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Tool => "tool",
            Kind::Resource => "resource",
            Kind::Prompt => "prompt",
            Kind::Server => "server",
            Kind::Upstream => "upstream",
            Kind::Revocation => "revocation",
            Kind::Connection => "connection",
            Kind::Consent => "consent",
            Kind::Client => "oauth_client",
        }
    }
    /// The inverse of [`Kind::as_str`]; `gateway`, the name upstreams were stored under before
    /// migration 0002, still reads as [`Kind::Upstream`].
    pub fn parse(s: &str) -> Option<Kind> {
        if s == "gateway" {
            return Some(Kind::Upstream);
        }
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A stored entry with its body as JSON text (see [`Store::list_raw`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RawRecord {
    /// Stable id.
    pub id: String,
    /// Unique key within the kind.
    pub key: String,
    /// The definition, as JSON text.
    pub body: String,
    /// Last change, ms since the epoch.
    pub updated_at: u64,
}

impl From<Record> for RawRecord {
    fn from(r: Record) -> Self {
        RawRecord {
            body: r.body.to_string(),
            id: r.id,
            key: r.key,
            updated_at: r.updated_at,
        }
    }
}

/// One stored registry entry. `key` is unique within its kind (a name, or a resource's URI);
/// `body` is the validated definition as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The record's kind.
    pub kind: Kind,
    /// Stable id, assigned at creation.
    pub id: String,
    /// Unique key within the kind.
    pub key: String,
    /// The definition.
    pub body: Value,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at: u64,
    /// Last update time, milliseconds since the Unix epoch.
    pub updated_at: u64,
}

/// One write in an atomic batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Insert; fails with [`StoreError::Conflict`] if the id or key exists.
    Insert(Record),
    /// Replace the record with this id; fails with `NotFound`, or `Conflict` if the new key is taken.
    Update(Record),
    /// Insert, or replace the body of the record with the same key (keeping its id and `created_at`).
    Upsert(Record),
    /// Delete by id; a missing record is not an error.
    Delete {
        /// The kind of the record.
        kind: Kind,
        /// Its id.
        id: String,
    },
}

/// Storage failures.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A record with this key (or id) already exists.
    #[error("{kind:?} '{key}' already exists")]
    Conflict {
        /// The kind.
        kind: Kind,
        /// The clashing key.
        key: String,
    },
    /// No record with this id.
    #[error("{kind:?} '{id}' not found")]
    NotFound {
        /// The kind.
        kind: Kind,
        /// The id looked for.
        id: String,
    },
    /// The backend failed (I/O, SQL, corrupt data).
    #[error("storage backend: {0}")]
    Backend(String),
}

/// Registry persistence: reads by kind and an atomic batch of writes. No BEGIN/COMMIT in the
/// contract: Durable Object SQL rejects them, so each backend makes `apply` atomic its own way.
#[cfg_attr(not(target_family = "wasm"), async_trait)]
#[cfg_attr(target_family = "wasm", async_trait(?Send))]
pub trait Store: MaybeSend + MaybeSync {
    /// A record by id or key.
    async fn get(&self, kind: Kind, id_or_key: &str) -> Result<Option<Record>, StoreError>;
    /// Every record of a kind, ordered by key.
    async fn list(&self, kind: Kind) -> Result<Vec<Record>, StoreError>;
    /// [`Store::list`] with each body as the JSON text the store keeps: what a snapshot of many
    /// records is built from, without a tree of maps per record on the way. Stores that keep
    /// text override it.
    async fn list_raw(&self, kind: Kind) -> Result<Vec<RawRecord>, StoreError> {
        Ok(self.list(kind).await?.into_iter().map(RawRecord::from).collect())
    }
    /// Applies every op or none.
    async fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError>;
    /// Cheap liveness check for `/ready`.
    async fn ping(&self) -> Result<(), StoreError>;
    /// A number every write moves (any writer, any process): equal numbers mean nothing was
    /// written in between, so a reader's copy is still current. Cheap: read before every reuse
    /// of a cached snapshot.
    async fn version(&self) -> Result<u64, StoreError>;

    /// Inserts one record.
    async fn insert(&self, record: Record) -> Result<(), StoreError> {
        self.apply(vec![Op::Insert(record)]).await
    }
    /// Replaces one record.
    async fn update(&self, record: Record) -> Result<(), StoreError> {
        self.apply(vec![Op::Update(record)]).await
    }
    /// Deletes one record; true if it existed.
    async fn delete(&self, kind: Kind, id: &str) -> Result<bool, StoreError> {
        let existed = self.get(kind, id).await?.is_some_and(|r| r.id == id);
        self.apply(vec![Op::Delete {
            kind,
            id: id.to_string(),
        }])
        .await?;
        Ok(existed)
    }
}

/// The state of one MCP session, small and serializable so any backend can hold it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionState {
    /// The id handed to the client (`Mcp-Session-Id`, or `sessionId` for legacy SSE).
    pub id: String,
    /// The negotiated protocol revision (none until `initialize` on legacy SSE).
    #[serde(default, with = "crate::proto::version::stored")]
    pub protocol_version: Option<crate::proto::version::ProtocolVersion>,
    /// The virtual server this session is bound to, if any (its id).
    pub server: Option<String>,
    /// The client's declared capabilities.
    pub client_capabilities: Value,
    /// The client's name and version.
    pub client_info: Value,
    /// The level set by `logging/setLevel`; no log notifications until one is set.
    pub log_level: Option<crate::proto::logging::LogLevel>,
    /// Legacy HTTP+SSE session (true) or streamable HTTP (false).
    pub legacy_sse: bool,
    /// Creation time, ms since the epoch.
    pub created_at: u64,
    /// Last request, ms since the epoch (idle sessions expire).
    pub last_seen: u64,
    /// The subject that opened it, when auth is on: nobody else may use it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// Where sessions live between requests.
#[cfg_attr(not(target_family = "wasm"), async_trait)]
#[cfg_attr(target_family = "wasm", async_trait(?Send))]
pub trait SessionStore: MaybeSend + MaybeSync {
    /// A session by id.
    async fn get(&self, id: &str) -> Option<SessionState>;
    /// Creates or replaces a session.
    async fn put(&self, state: SessionState);
    /// Removes a session; true if it existed.
    async fn remove(&self, id: &str) -> bool;
    /// Removes sessions idle since before `cutoff_ms`; returns their ids.
    async fn expire(&self, cutoff_ms: u64) -> Vec<String>;
    /// How many sessions are held.
    async fn count(&self) -> usize;
    /// The oldest `last_seen` of the sessions held (the next to expire), if any.
    async fn oldest_seen(&self) -> Option<u64>;
}

/// Messages between the instances that share sessions (natively Redis pub/sub, with
/// `MCPGW_REDIS_URL`). What one instance cannot deliver itself (a message for a stream another
/// instance holds, a client's answer to a request another is waiting on, a session's end) it
/// publishes; every instance hears it and acts on what concerns it.
#[cfg_attr(not(target_family = "wasm"), async_trait)]
#[cfg_attr(target_family = "wasm", async_trait(?Send))]
pub trait Bus: MaybeSend + MaybeSync {
    /// Publishes one message to every instance (the publisher may hear it too).
    async fn publish(&self, message: String);
    /// The messages published from now on, for as long as the stream is held (a bus whose
    /// connection drops reconnects underneath; what was published meanwhile is lost, as
    /// messages to a stream that is not open are: the event log keeps them for replay).
    fn messages(&self) -> BoxStream<'static, String>;
}

/// A cache of text values with a time to live, shared by whoever shares its backend (memory in
/// one process; Redis for every instance on it; Durable Objects on the edge). A miss is never an
/// error: a backend that cannot answer misses.
#[cfg_attr(not(target_family = "wasm"), async_trait)]
#[cfg_attr(target_family = "wasm", async_trait(?Send))]
pub trait Cache: MaybeSend + MaybeSync {
    /// The value at `key`, unless absent or expired.
    async fn get(&self, key: &str) -> Option<String>;
    /// Keeps `value` at `key` for `ttl_ms`.
    async fn put(&self, key: &str, value: String, ttl_ms: u64);
    /// Adds one to the counter at `key` (absent counts as 0; counters do not expire, and
    /// [`Cache::get`] reads them in decimal); the new value, or 0 if the backend could not count.
    async fn incr(&self, key: &str) -> u64;
}

/// One stored SSE event, replayable by `Last-Event-ID`.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Sequence number, increasing across the session's streams (never reused), from 1.
    pub seq: u64,
    /// The JSON-RPC message, serialized.
    pub data: String,
}

/// The per-stream event log that makes SSE streams resumable.
#[cfg_attr(not(target_family = "wasm"), async_trait)]
#[cfg_attr(target_family = "wasm", async_trait(?Send))]
pub trait EventStore: MaybeSend + MaybeSync {
    /// Appends an event to a stream of a session and returns its sequence number, which is
    /// greater than every number handed out before in that session.
    async fn append(&self, session: &str, stream: &str, data: String) -> u64;
    /// Events of a stream after `after_seq`, in order.
    async fn replay(&self, session: &str, stream: &str, after_seq: u64) -> Vec<StoredEvent>;
    /// Forgets everything of a session.
    async fn forget(&self, session: &str);
}

/// An outbound HTTP request.
#[derive(Debug, Clone)]
pub struct OutboundRequest {
    /// The method.
    pub method: http::Method,
    /// The absolute URL.
    pub url: String,
    /// The headers (built once per link where they do not change, see [`crate::http::header_map`]).
    pub headers: http::HeaderMap,
    /// The body, if any.
    pub body: Option<Bytes>,
    /// The upstream's own TLS settings, if it has any (none: the client's defaults).
    pub tls: Option<Arc<UpstreamTls>>,
}

/// An upstream's own TLS settings, PEM text. The native client keeps one TLS configuration per
/// distinct setting; Workers' `fetch` can do neither, so the edge refuses such an upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    /// The CAs trusted for this upstream, instead of the gateway's roots (PEM certificates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// The client certificate chain presented to it (mTLS), leaf first (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<String>,
    /// The client certificate's private key (PEM; sealed at rest, masked in answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<String>,
}

/// A streamed response to an [`OutboundRequest`].
pub struct InboundResponse {
    /// The status.
    pub status: http::StatusCode,
    /// The headers.
    pub headers: http::HeaderMap,
    /// The body, chunk by chunk.
    pub body: BoxStream<'static, Result<Bytes, HttpError>>,
}

/// Outbound HTTP failures.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The URL could not be used.
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    /// A configured header (named) is not a valid HTTP header.
    #[error("invalid header '{0}'")]
    InvalidHeader(String),
    /// Connecting or sending failed (the request may not have reached the server; a runtime that
    /// cannot tell reports [`HttpError::Lost`] cases as this too).
    #[error("connection failed: {0}")]
    Connect(String),
    /// The connection was made and the request sent, then lost before the response began: the
    /// server may have acted on it.
    #[error("connection lost before the response: {0}")]
    Lost(String),
    /// The body failed mid-way.
    #[error("body: {0}")]
    Body(String),
    /// The deadline passed.
    #[error("timed out after {0} ms")]
    Timeout(u64),
    /// The body exceeded the configured limit.
    #[error("response larger than {0} bytes")]
    TooLarge(usize),
}

/// Gateways found on the local network (mDNS; native only): each a JSON object with at least
/// `id` and `url`.
pub trait Discovery: MaybeSend + MaybeSync {
    /// What is known now.
    fn discovered(&self) -> Vec<serde_json::Value>;
}

/// Outbound HTTP with streamed responses.
#[cfg_attr(not(target_family = "wasm"), async_trait)]
#[cfg_attr(target_family = "wasm", async_trait(?Send))]
pub trait HttpClient: MaybeSend + MaybeSync {
    /// Sends a request; the response body is streamed.
    async fn send(&self, request: OutboundRequest) -> Result<InboundResponse, HttpError>;
}

/// Wall-clock time and sleeping (`Instant::now()` panics on wasm32-unknown-unknown).
pub trait Clock: MaybeSend + MaybeSync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    /// Microseconds since the Unix epoch (durations and span times; a platform with a finer
    /// clock than milliseconds says so here).
    fn now_us(&self) -> u64 {
        self.now_ms().saturating_mul(1000)
    }
    /// A future that completes after `duration`.
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()>;
}

/// Random identifiers (session ids, record ids).
pub trait Ids: MaybeSend + MaybeSync {
    /// A fresh, unguessable id: 32 lowercase hex digits.
    fn new_id(&self) -> String;
}

/// Background work that outlives a request.
pub trait Spawner: MaybeSend + MaybeSync {
    /// Runs `work` to completion in the background.
    fn spawn(&self, work: BoxFuture<'static, ()>);

    /// Whether a request may wait for something another request is doing (a lock held across
    /// that request's I/O). A Worker isolate cancels a request that waits on another request's
    /// I/O as hung, so there such waits are polled on the waiter's own timer instead.
    fn waits_across_requests(&self) -> bool {
        true
    }

    /// Whether work spawned while serving a request goes on once that request's response has
    /// ended (natively it does; a Worker's runtime stops it): only then may a stream close while
    /// the work it reports goes on (SEP-1699 polling).
    fn outlives_requests(&self) -> bool {
        true
    }
}

/// The JWS algorithms (RFC 7518) whose checks the platform does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignatureAlg {
    /// HMAC with SHA-256 (the key a JWK of `kty` `oct` with the secret as `k`).
    Hs256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// ECDSA on P-256 with SHA-256 (the signature as `r || s`, 64 bytes).
    Es256,
    /// Ed25519 (RFC 8037).
    EdDsa,
}

/// Why the platform's cryptography did not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The key cannot serve the operation (not a key of the algorithm, or malformed).
    #[error("unusable key: {0}")]
    Key(String),
    /// What was to be opened does not open: another key or associated data, or altered.
    #[error("does not open: sealed with another key or for another place, or altered")]
    Rejected,
    /// The platform could not do it.
    #[error("{0}")]
    Platform(String),
}

/// The cryptography the platform does: WebCrypto on the edge, so that the Worker carries no
/// cipher, MAC or big-number arithmetic of its own and runs them at native speed; Rust crates
/// natively (`security::RustCrypto`).
pub trait Crypto: MaybeSend + MaybeSync {
    /// Whether `signature` is an `alg` signature of `message` by `jwk`, the key members of a
    /// JWK as JSON text (`kty` with `n`, `e`; or `crv`, `x`, `y`; or `crv`, `x`; or, for HS256,
    /// `oct` with `k`). An error when the key cannot serve `alg`.
    fn verify<'a>(
        &'a self,
        alg: SignatureAlg,
        jwk: &'a str,
        message: &'a [u8],
        signature: &'a [u8],
    ) -> BoxFuture<'a, Result<bool, CryptoError>>;

    /// An `alg` signature of `message` by the private key `jwk` (a private JWK as JSON text:
    /// RSA with `d`, `p`, `q`, ...; P-256 or Ed25519 with `d`), in JWS form (ES256 as `r || s`).
    /// An error when the key cannot serve `alg`. For the gateway's own assertions as an OAuth
    /// client (`private_key_jwt`).
    fn sign<'a>(
        &'a self,
        alg: SignatureAlg,
        jwk: &'a str,
        message: &'a [u8],
    ) -> BoxFuture<'a, Result<Vec<u8>, CryptoError>>;

    /// PBKDF2 with HMAC-SHA-256: `len` bytes derived from `password` and `salt`.
    fn pbkdf2_sha256<'a>(
        &'a self,
        password: &'a [u8],
        salt: &'a [u8],
        iterations: u32,
        len: usize,
    ) -> BoxFuture<'a, Result<Vec<u8>, CryptoError>>;

    /// AES-256-GCM: `plain` encrypted under `key` and the 96-bit `nonce` (never used twice with
    /// one key), authenticated with the associated data `aad`, as the ciphertext followed by its
    /// 128-bit tag.
    fn seal<'a>(
        &'a self,
        key: &'a [u8; 32],
        nonce: [u8; 12],
        aad: &'a [u8],
        plain: &'a [u8],
    ) -> BoxFuture<'a, Result<Vec<u8>, CryptoError>>;

    /// The plaintext of what [`Crypto::seal`] made with `key`, `nonce` and `aad`; an error when
    /// the tag does not match (another key or associated data, or altered).
    fn open<'a>(
        &'a self,
        key: &'a [u8; 32],
        nonce: [u8; 12],
        aad: &'a [u8],
        sealed: &'a [u8],
    ) -> BoxFuture<'a, Result<Vec<u8>, CryptoError>>;
}

/// Why a local process (a stdio upstream) could not be started or written to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProcessError(pub String);

/// The sending half of a duplex connection to an upstream (a stdio process's stdin).
pub trait Pipe: MaybeSend + MaybeSync {
    /// Sends one JSON-RPC message (a single line, no newline).
    fn send(&self, message: String) -> BoxFuture<'static, Result<(), ProcessError>>;
    /// Ends the connection (closes stdin and stops the process).
    fn close(&self);
}

/// Starts local MCP server processes for stdio upstreams (native only; `None` on the edge).
pub trait Launcher: MaybeSend + MaybeSync {
    /// Starts `command` with `args` and extra `env`; returns the pipe to its stdin and the stream
    /// of lines it writes to stdout. The process must not outlive the pipe's `close` or drop.
    #[allow(clippy::type_complexity)]
    fn launch(
        &self,
        command: &str,
        args: &[String],
        env: &std::collections::BTreeMap<String, String>,
    ) -> Result<(Box<dyn Pipe>, BoxStream<'static, String>), ProcessError>;
}
