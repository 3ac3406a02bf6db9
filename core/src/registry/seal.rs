//! Credentials at rest: the `headers` of REST tools and upstreams (API keys, bearer tokens) and
//! an upstream's TLS client key are stored sealed with AES-256-GCM. [`SealedStore`] wraps the
//! registry store, so everything above it (the registry, federation, tools) sees the values and
//! everything below it (libsql, D1) sees only `enc:v1:<base64 nonce‖ciphertext‖tag>`. The REST API never shows them either (see
//! [`crate::registry::record_json`]).

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use serde_json::Value;

use crate::ports::{Crypto, Ids, Kind, Op, RawRecord, Record, Store, StoreError};

/// Values sealed with the master key itself, by builds before keys per purpose (credentials at
/// rest only still open them).
const PREFIX_V1: &str = "enc:v1:";
/// Values sealed with a key derived for their purpose, bound to what they belong to.
const PREFIX: &str = "enc:v2:";

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// What a key is for. Each purpose has its own key, derived from the master key (HKDF-SHA256
/// with the purpose's label), so that nothing sealed for one purpose opens for another: a stored
/// credential is never a valid admin cookie, a `requestState` never an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Credentials at rest in the registry (bound to their record and field).
    Credentials,
    /// The admin UI's session cookies.
    AdminCookie,
    /// Parked calls' `requestState` handed to stateless clients.
    RequestState,
    /// A 2026-07-28 upstream's own `requestState`, wrapped for its client.
    Envelope,
    /// Callers' tokens for their upstreams (the token vault), and the PKCE verifiers of
    /// authorizations under way.
    Vault,
}

impl Purpose {
    fn label(self) -> &'static str {
        match self {
            Purpose::Credentials => "mcpgw credentials v2",
            Purpose::AdminCookie => "mcpgw admin-ui cookie v2",
            Purpose::RequestState => "mcpgw request-state v2",
            Purpose::Envelope => "mcpgw envelope v2",
            Purpose::Vault => "mcpgw token vault v1",
        }
    }
}

/// An AES-256-GCM key for one [`Purpose`], used through the platform's [`Crypto`] (WebCrypto on
/// the edge). A value it seals is bound to the purpose and to a context the caller names (the
/// record and field a credential belongs to), as associated data.
pub struct Sealer {
    key: [u8; 32],
    purpose: Purpose,
    /// The master key, kept only to open values of the first format (credentials at rest).
    legacy: Option<[u8; 32]>,
    crypto: Arc<dyn Crypto>,
}

impl Sealer {
    /// The 32 bytes of a key's text: base64 (standard or URL-safe) or 64 hex digits.
    pub fn parse_key(text: &str) -> Result<[u8; 32], KeyError> {
        let t = text.trim();
        let bytes = if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&t[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| KeyError::Encoding)?
        } else {
            b64()
                .decode(t)
                .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(t))
                .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t))
                .map_err(|_| KeyError::Encoding)?
        };
        bytes.try_into().map_err(|b: Vec<u8>| KeyError::Length(b.len()))
    }

    /// The key for `purpose` derived from the master key `master`.
    pub fn derive(master: &[u8; 32], purpose: Purpose, crypto: Arc<dyn Crypto>) -> Self {
        let mut key = [0u8; 32];
        // 32 bytes are always within HKDF-SHA256's output limit.
        let _ = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"mcpgw key derivation"), master)
            .expand(purpose.label().as_bytes(), &mut key);
        Self {
            key,
            purpose,
            legacy: (purpose == Purpose::Credentials).then_some(*master),
            crypto,
        }
    }

    /// The key for `purpose` from the master key's text (see [`Sealer::parse_key`]).
    pub fn from_key_text(text: &str, purpose: Purpose, crypto: Arc<dyn Crypto>) -> Result<Self, KeyError> {
        Ok(Self::derive(&Self::parse_key(text)?, purpose, crypto))
    }

    /// A key for `purpose` from 32 random bytes (for what only this process opens again).
    pub fn random(purpose: Purpose, ids: &dyn Ids, crypto: Arc<dyn Crypto>) -> Self {
        Self::derive(&random_bytes(ids), purpose, crypto)
    }

    /// The associated data of a value sealed in `context`.
    fn aad(&self, context: &str) -> Vec<u8> {
        let mut aad = self.purpose.label().as_bytes().to_vec();
        aad.push(0);
        aad.extend_from_slice(context.as_bytes());
        aad
    }

    /// Seals `plain` under a 96-bit `nonce` (never reuse one with the same key).
    pub async fn seal(&self, plain: &str, nonce: [u8; 12]) -> Result<String, SealError> {
        self.seal_in("", plain, nonce).await
    }

    /// Seals `plain` bound to `context`: it opens only with the same context.
    pub async fn seal_in(&self, context: &str, plain: &str, nonce: [u8; 12]) -> Result<String, SealError> {
        let ct = self
            .crypto
            .seal(&self.key, nonce, &self.aad(context), plain.as_bytes())
            .await?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(format!("{PREFIX}{}", b64().encode(out)))
    }

    /// Opens a sealed value; a value that is not sealed is returned as it is.
    pub async fn open(&self, value: &str) -> Result<String, SealError> {
        self.open_in("", value).await
    }

    /// Opens a value sealed in `context`; a value that is not sealed is returned as it is.
    pub async fn open_in(&self, context: &str, value: &str) -> Result<String, SealError> {
        let (rest, key, aad) = if let Some(rest) = value.strip_prefix(PREFIX) {
            (rest, self.key, self.aad(context))
        } else if let Some(rest) = value.strip_prefix(PREFIX_V1) {
            let Some(master) = self.legacy else {
                return Err(SealError::OtherPurpose);
            };
            (rest, master, vec![])
        } else {
            return Ok(value.to_string());
        };
        let raw = b64().decode(rest).map_err(|_| SealError::Malformed("not base64"))?;
        if raw.len() < 12 + 16 {
            return Err(SealError::Malformed("too short"));
        }
        let (nonce, ct) = raw.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| SealError::Malformed("no nonce"))?;
        let plain = self
            .crypto
            .open(&key, nonce, &aad, ct)
            .await
            .map_err(|_| SealError::OtherKey)?;
        String::from_utf8(plain).map_err(|_| SealError::Malformed("not UTF-8"))
    }

    /// Whether `value` is sealed (in either format).
    pub fn is_sealed(value: &str) -> bool {
        value.starts_with(PREFIX) || value.starts_with(PREFIX_V1)
    }

    /// `value` without its format's prefix (a cookie carries only the rest).
    pub fn strip_prefix(value: &str) -> &str {
        value.strip_prefix(PREFIX).unwrap_or(value)
    }

    /// A value of this format from what [`Sealer::strip_prefix`] left.
    pub fn with_prefix(rest: &str) -> String {
        format!("{PREFIX}{rest}")
    }
}

/// The registry store, with credentials sealed on the way down and opened on the way up.
pub struct SealedStore {
    inner: Arc<dyn Store>,
    sealer: Sealer,
    ids: Arc<dyn Ids>,
}

/// 32 random bytes: two random ids (128 bits each, a few of them fixed in UUIDs), hashed
/// together.
pub fn random_bytes(ids: &dyn Ids) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(format!("{}:{}", ids.new_id(), ids.new_id())).into()
}

/// A fresh random nonce.
pub fn nonce(ids: &dyn Ids) -> [u8; 12] {
    let mut n = [0u8; 12];
    n.copy_from_slice(&random_bytes(ids)[..12]);
    n
}

pub use crate::model::credential_pointers;

/// Why a key's text is not a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Neither base64 nor hex.
    #[error("not base64 or hex")]
    Encoding,
    /// Decoded, but not 32 bytes.
    #[error(
        "the key must be 32 bytes (base64 or 64 hex digits), not {0}; make one with: head -c 32 /dev/urandom | base64"
    )]
    Length(usize),
}

/// Why a sealed value did not open, or a value could not be sealed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The platform's cryptography failed.
    #[error(transparent)]
    Crypto(#[from] crate::ports::CryptoError),
    /// A value of the first format opens only as a credential.
    #[error("sealed for another purpose")]
    OtherPurpose,
    /// Not what sealing makes.
    #[error("sealed value is malformed ({0})")]
    Malformed(&'static str),
    /// Sealed under another key or bound to another place.
    #[error("sealed with another key or for another place (MCPGW_ENCRYPTION_KEY changed?)")]
    OtherKey,
}

/// Where a credential sealed at rest belongs: its kind, record (by its unique key, which a store
/// keeps across upserts, where an id made for a write may not be the one stored) and place. A
/// sealed value copied to another record or field does not open there.
fn context(kind: Kind, key: &str, pointer: &str) -> String {
    format!("{kind:?}/{key}{pointer}")
}

impl SealedStore {
    /// Wraps `inner`; nonces come from `ids` (random).
    pub fn new(inner: Arc<dyn Store>, sealer: Sealer, ids: Arc<dyn Ids>) -> Self {
        Self { inner, sealer, ids }
    }

    /// `body`'s credentials sealed, each bound to its record and place. A value of the first
    /// format is sealed again in this one; a value sealed in this one that does not open here
    /// (another key) stays as it is.
    async fn seal_body(&self, kind: Kind, key: &str, body: &mut Value) -> Result<(), StoreError> {
        for p in credential_pointers(kind, body) {
            let Some(v) = body.pointer_mut(&p) else { continue };
            let at = context(kind, key, &p);
            let mut s = v.as_str().unwrap_or_default().to_string();
            if s.starts_with(PREFIX_V1) {
                match self.sealer.open_in(&at, &s).await {
                    Ok(plain) => s = plain,
                    Err(_) => continue,
                }
            }
            if !Sealer::is_sealed(&s) {
                let sealed = self.sealer.seal_in(&at, &s, nonce(self.ids.as_ref())).await;
                *v = Value::String(sealed.map_err(|e| StoreError::Backend(e.to_string()))?);
            }
        }
        Ok(())
    }

    /// `body`'s credentials opened. A value sealed under another key (or for another place)
    /// stays sealed: the request that uses it fails visibly at the upstream, and nothing else
    /// breaks.
    async fn open_body(&self, kind: Kind, key: &str, body: &mut Value) {
        for p in credential_pointers(kind, body) {
            let Some(v) = body.pointer_mut(&p) else { continue };
            let at = context(kind, key, &p);
            if let Ok(plain) = self.sealer.open_in(&at, v.as_str().unwrap_or_default()).await {
                *v = Value::String(plain);
            }
        }
    }

    async fn seal_record(&self, mut r: Record) -> Result<Record, StoreError> {
        self.seal_body(r.kind, &r.key, &mut r.body).await?;
        Ok(r)
    }

    async fn open_record(&self, mut r: Record) -> Record {
        self.open_body(r.kind, &r.key, &mut r.body).await;
        r
    }
}

#[cfg_attr(not(target_family = "wasm"), async_trait)]
#[cfg_attr(target_family = "wasm", async_trait(?Send))]
impl Store for SealedStore {
    async fn get(&self, kind: Kind, id_or_key: &str) -> Result<Option<Record>, StoreError> {
        Ok(match self.inner.get(kind, id_or_key).await? {
            Some(r) => Some(self.open_record(r).await),
            None => None,
        })
    }
    async fn list(&self, kind: Kind) -> Result<Vec<Record>, StoreError> {
        let mut out = vec![];
        for r in self.inner.list(kind).await? {
            out.push(self.open_record(r).await);
        }
        Ok(out)
    }
    async fn list_raw(&self, kind: Kind) -> Result<Vec<RawRecord>, StoreError> {
        let mut out = self.inner.list_raw(kind).await?;
        // Only bodies that carry something sealed are opened (parsed, unsealed, written again).
        if !crate::model::credential_patterns(kind).is_empty() {
            let carries = |b: &str| b.contains(PREFIX) || b.contains(PREFIX_V1);
            for r in out.iter_mut().filter(|r| carries(&r.body)) {
                if let Ok(mut body) = serde_json::from_str::<serde_json::Value>(&r.body) {
                    self.open_body(kind, &r.key, &mut body).await;
                    r.body = body.to_string();
                }
            }
        }
        Ok(out)
    }
    async fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let mut sealed = Vec::with_capacity(ops.len());
        for op in ops {
            sealed.push(match op {
                Op::Insert(r) => Op::Insert(self.seal_record(r).await?),
                Op::Update(r) => Op::Update(self.seal_record(r).await?),
                Op::Upsert(r) => Op::Upsert(self.seal_record(r).await?),
                other => other,
            });
        }
        self.inner.apply(sealed).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn version(&self) -> Result<u64, StoreError> {
        self.inner.version().await
    }
}

/// What this gateway is to its peers: its instance name, else a digest of its sealing key (the
/// same for every instance sharing the registry and the key), else an id of this process.
pub(crate) fn gateway_id(instance: &str, key: Option<&str>, ids: &dyn Ids) -> String {
    use sha2::Digest;
    if !instance.trim().is_empty() {
        return instance.trim().to_string();
    }
    match key {
        Some(k) => {
            let digest = sha2::Sha256::digest(format!("mcpgw-gateway-id\0{k}").as_bytes());
            digest[..8].iter().map(|b| format!("{b:02x}")).collect()
        }
        None => ids.new_id()[..16].to_string(),
    }
}

/// The store as the registry sees it: sealed (credentials encrypted at rest) when a key is set.
#[cfg_attr(target_family = "wasm", allow(clippy::arc_with_non_send_sync))]
pub(crate) fn sealed_store(
    key: Option<&str>,
    store: Arc<dyn Store>,
    ids: Arc<dyn Ids>,
    crypto: Arc<dyn Crypto>,
) -> Result<Arc<dyn Store>, KeyError> {
    Ok(match key {
        Some(k) => Arc::new(SealedStore::new(
            store,
            Sealer::from_key_text(k, Purpose::Credentials, crypto)?,
            ids,
        )),
        None => store,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{MemoryStore, SeqIds};
    use futures::executor::block_on;
    use serde_json::json;

    const KEY: &str = "6vL0Jm3bX9q2Rk7Tz1Wc5Yh8Nf4Pd6Sg0Ua2Ie9Ko3M=";

    fn sealer(text: &str) -> Sealer {
        Sealer::from_key_text(text, Purpose::Credentials, Arc::new(crate::security::RustCrypto)).expect("key")
    }

    #[test]
    fn keys_parse_in_base64_or_hex_and_nothing_else() {
        assert!(Sealer::parse_key(KEY).is_ok());
        assert_eq!(Sealer::parse_key(&"ab".repeat(32)), Ok([0xab; 32]));
        let e = Sealer::parse_key("c2hvcnQ=").expect_err("short");
        assert!(e.to_string().contains("32 bytes"), "{e}");
        assert!(Sealer::parse_key("not a key!").is_err());
    }

    #[test]
    fn values_round_trip_and_another_key_cannot_open_them() {
        block_on(async {
            let s = sealer(KEY);
            let sealed = s.seal("Bearer abc", [7; 12]).await.expect("seal");
            assert!(sealed.starts_with(PREFIX) && !sealed.contains("abc"));
            assert_eq!(s.open(&sealed).await.as_deref(), Ok("Bearer abc"));
            assert_eq!(s.open("plain").await.as_deref(), Ok("plain"));
            let other = sealer(&"cd".repeat(32));
            assert!(other.open(&sealed).await.is_err());
            let mut tampered = sealed.clone();
            tampered.pop();
            tampered.push('A');
            assert!(s.open(&tampered).await.is_err());
        });
    }

    /// The format at rest is fixed: what earlier builds sealed (standard AES-256-GCM, nonce then
    /// ciphertext then tag, in base64; this one made by Python's `cryptography`) still opens.
    #[test]
    fn a_value_sealed_by_an_earlier_build_opens() {
        let old = "enc:v1:BwcHBwcHBwcHBwcHRkoxGEdddoZx4pUzP6LDdD5kVvzSPqMeo2Q=";
        assert_eq!(block_on(sealer(KEY).open(old)).as_deref(), Ok("Bearer abc"));
        // ... as a credential only: the master key opens nothing for any other purpose.
        let cookie =
            Sealer::from_key_text(KEY, Purpose::AdminCookie, Arc::new(crate::security::RustCrypto)).expect("key");
        assert!(block_on(cookie.open(old)).is_err());
    }

    /// A value sealed for one purpose, or one place, opens for no other: a stored credential is
    /// not an admin cookie, a credential copied to another record or field does not open there.
    #[test]
    fn sealed_values_are_bound_to_their_purpose_and_place() {
        block_on(async {
            let crypto = || -> Arc<dyn Crypto> { Arc::new(crate::security::RustCrypto) };
            let creds = sealer(KEY);
            let at = context(Kind::Upstream, "u1", "/headers/Authorization");
            let sealed = creds.seal_in(&at, "{\"who\":\"admin\"}", [1; 12]).await.expect("seal");
            assert_eq!(creds.open_in(&at, &sealed).await.as_deref(), Ok("{\"who\":\"admin\"}"));
            for purpose in [Purpose::AdminCookie, Purpose::RequestState, Purpose::Envelope] {
                let other = Sealer::from_key_text(KEY, purpose, crypto()).expect("key");
                assert!(other.open_in(&at, &sealed).await.is_err(), "{purpose:?}");
                assert!(other.open_in("mcpgw_admin", &sealed).await.is_err(), "{purpose:?}");
            }
            assert!(creds
                .open_in(&context(Kind::Upstream, "u2", "/headers/Authorization"), &sealed)
                .await
                .is_err());
            assert!(creds
                .open_in(&context(Kind::Upstream, "u1", "/env/TOKEN"), &sealed)
                .await
                .is_err());
        });
    }

    #[test]
    fn credentials_are_every_header_and_env_value_and_the_tls_client_key() {
        let body = json!({"headers": {"a/b~c": "1", "n": 2}, "env": {"GITHUB_TOKEN": "ghp"}, "tls": {"ca": "x", "client_key": "k"}});
        assert_eq!(
            credential_pointers(Kind::Upstream, &body),
            ["/headers/a~1b~0c", "/env/GITHUB_TOKEN", "/tls/client_key"]
        );
        assert_eq!(credential_pointers(Kind::Tool, &body), ["/headers/a~1b~0c"]);
        assert!(credential_pointers(Kind::Prompt, &body).is_empty());
        let mut r = crate::ports::Record {
            kind: Kind::Upstream,
            id: "u".into(),
            key: "u".into(),
            body,
            created_at: 0,
            updated_at: 0,
        };
        r.body = crate::registry::record_json(&r);
        assert_eq!(r.body["env"]["GITHUB_TOKEN"], crate::registry::MASK);
        assert_eq!(r.body["headers"]["a/b~c"], crate::registry::MASK);
        assert_eq!(r.body["tls"]["client_key"], crate::registry::MASK);
        assert_eq!(r.body["tls"]["ca"], "x");
    }

    #[test]
    fn the_store_below_sees_only_sealed_headers() {
        block_on(async {
            let raw = Arc::new(MemoryStore::default());
            let sealed = SealedStore::new(raw.clone(), sealer(KEY), Arc::new(SeqIds::default()));
            let rec = |kind, id: &str| Record {
                kind,
                id: id.into(),
                key: id.into(),
                body: json!({"name": id, "url": "https://x.example/", "headers": {"Authorization": "Bearer top-secret"}}),
                created_at: 1,
                updated_at: 1,
            };
            sealed
                .apply(vec![
                    Op::Insert(rec(Kind::Tool, "t")),
                    Op::Insert(rec(Kind::Upstream, "g")),
                    Op::Insert(rec(Kind::Prompt, "p")),
                ])
                .await
                .expect("insert");
            for kind in [Kind::Tool, Kind::Upstream] {
                let below = raw.list(kind).await.expect("list");
                let text = below[0].body.to_string();
                assert!(!text.contains("top-secret") && text.contains(PREFIX), "{text}");
                let above = sealed.list(kind).await.expect("list");
                assert_eq!(above[0].body["headers"]["Authorization"], "Bearer top-secret");
            }
            // Only credential-bearing kinds are touched.
            assert_eq!(
                raw.list(Kind::Prompt).await.expect("list")[0].body["headers"]["Authorization"],
                "Bearer top-secret"
            );
            // Two seals of one value differ (fresh nonces).
            let first = raw.get(Kind::Tool, "t").await.expect("get").expect("t").body["headers"].clone();
            sealed
                .apply(vec![Op::Upsert(rec(Kind::Tool, "t"))])
                .await
                .expect("upsert");
            let again = raw.get(Kind::Tool, "t").await.expect("get").expect("t").body["headers"].clone();
            assert_ne!(first, again);
            // A seed upserts under an id of its own; the store keeps the record's: still opens.
            let mut reseeded = rec(Kind::Upstream, "g");
            reseeded.id = "a-fresh-id".into();
            sealed.apply(vec![Op::Upsert(reseeded)]).await.expect("upsert");
            let above = sealed.get(Kind::Upstream, "g").await.expect("get").expect("g");
            assert_eq!(above.body["headers"]["Authorization"], "Bearer top-secret");
            // A value of the first format is sealed again in this one on the next write.
            let mut legacy = rec(Kind::Tool, "v1");
            legacy.body["headers"]["Authorization"] =
                json!("enc:v1:BwcHBwcHBwcHBwcHRkoxGEdddoZx4pUzP6LDdD5kVvzSPqMeo2Q=");
            sealed.apply(vec![Op::Insert(legacy)]).await.expect("insert");
            let below =
                raw.get(Kind::Tool, "v1").await.expect("get").expect("v1").body["headers"]["Authorization"].clone();
            assert!(below.as_str().is_some_and(|v| v.starts_with(PREFIX)), "{below}");
            let above = sealed.get(Kind::Tool, "v1").await.expect("get").expect("v1");
            assert_eq!(above.body["headers"]["Authorization"], "Bearer abc");
        });
    }
}
