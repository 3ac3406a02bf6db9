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

const PREFIX: &str = "enc:v1:";

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// An AES-256-GCM key, used through the platform's [`Crypto`] (WebCrypto on the edge).
pub struct Sealer {
    key: [u8; 32],
    crypto: Arc<dyn Crypto>,
}

impl Sealer {
    /// The 32 bytes of a key's text: base64 (standard or URL-safe) or 64 hex digits.
    pub fn parse_key(text: &str) -> Result<[u8; 32], String> {
        let t = text.trim();
        let bytes = if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&t[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|e| e.to_string())?
        } else {
            b64()
                .decode(t)
                .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(t))
                .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t))
                .map_err(|_| "not base64 or hex".to_string())?
        };
        bytes.try_into().map_err(|b: Vec<u8>| {
            format!(
                "the key must be 32 bytes (base64 or 64 hex digits), not {}; make one with: head -c 32 /dev/urandom | base64",
                b.len()
            )
        })
    }

    /// A key from its text (see [`Sealer::parse_key`]).
    pub fn from_key_text(text: &str, crypto: Arc<dyn Crypto>) -> Result<Self, String> {
        Ok(Self {
            key: Self::parse_key(text)?,
            crypto,
        })
    }

    /// A key of 32 random bytes (for what only this process opens again).
    pub fn random(ids: &dyn Ids, crypto: Arc<dyn Crypto>) -> Self {
        Self {
            key: random_bytes(ids),
            crypto,
        }
    }

    /// Seals `plain` under a 96-bit `nonce` (never reuse one with the same key).
    pub async fn seal(&self, plain: &str, nonce: [u8; 12]) -> Result<String, String> {
        let ct = self.crypto.seal(&self.key, nonce, plain.as_bytes()).await?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(format!("{PREFIX}{}", b64().encode(out)))
    }

    /// Opens a sealed value; a value that is not sealed is returned as it is.
    pub async fn open(&self, value: &str) -> Result<String, String> {
        let Some(rest) = value.strip_prefix(PREFIX) else {
            return Ok(value.to_string());
        };
        let raw = b64()
            .decode(rest)
            .map_err(|_| "sealed value is not base64".to_string())?;
        if raw.len() < 12 + 16 {
            return Err("sealed value too short".into());
        }
        let (nonce, ct) = raw.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| "bad nonce".to_string())?;
        let plain = self
            .crypto
            .open(&self.key, nonce, ct)
            .await
            .map_err(|_| "sealed with another key (MCPGW_ENCRYPTION_KEY changed?)".to_string())?;
        String::from_utf8(plain).map_err(|_| "sealed value is not UTF-8".into())
    }
}

/// True for the kinds whose `headers` hold credentials.
fn has_credentials(kind: Kind) -> bool {
    matches!(kind, Kind::Tool | Kind::Upstream)
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

/// Where a definition holds credentials, as JSON pointers: each string value of its `headers`
/// (API keys, bearer tokens) and an upstream's TLS client key. Sealed at rest, masked in answers.
pub fn credential_pointers(body: &Value) -> Vec<String> {
    let mut out: Vec<String> = body["headers"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, v)| v.is_string())
        .map(|(k, _)| format!("/headers/{}", k.replace('~', "~0").replace('/', "~1")))
        .collect();
    if body["tls"]["client_key"].is_string() {
        out.push("/tls/client_key".into());
    }
    out
}

impl SealedStore {
    /// Wraps `inner`; nonces come from `ids` (random).
    pub fn new(inner: Arc<dyn Store>, sealer: Sealer, ids: Arc<dyn Ids>) -> Self {
        Self { inner, sealer, ids }
    }

    /// `body` with its header values sealed (those sealed already stay as they are).
    async fn seal_body(&self, body: &mut Value) -> Result<(), StoreError> {
        for p in credential_pointers(body) {
            let Some(v) = body.pointer_mut(&p) else { continue };
            let s = v.as_str().unwrap_or_default();
            if !s.starts_with(PREFIX) {
                let sealed = self.sealer.seal(s, nonce(self.ids.as_ref())).await;
                *v = Value::String(sealed.map_err(StoreError::Backend)?);
            }
        }
        Ok(())
    }

    /// `body` with its header values opened. A value sealed under another key stays sealed:
    /// the request that uses it fails visibly at the upstream, and nothing else breaks.
    async fn open_body(&self, body: &mut Value) {
        for p in credential_pointers(body) {
            let Some(v) = body.pointer_mut(&p) else { continue };
            if let Ok(plain) = self.sealer.open(v.as_str().unwrap_or_default()).await {
                *v = Value::String(plain);
            }
        }
    }

    async fn seal_record(&self, mut r: Record) -> Result<Record, StoreError> {
        if has_credentials(r.kind) {
            self.seal_body(&mut r.body).await?;
        }
        Ok(r)
    }

    async fn open_record(&self, mut r: Record) -> Record {
        if has_credentials(r.kind) {
            self.open_body(&mut r.body).await;
        }
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
        if has_credentials(kind) {
            // Only bodies that carry credentials are opened (parsed, unsealed, written again).
            let carries = |b: &str| b.contains("\"headers\"") || b.contains("\"client_key\"");
            for r in out.iter_mut().filter(|r| carries(&r.body)) {
                if let Ok(mut body) = serde_json::from_str::<serde_json::Value>(&r.body) {
                    self.open_body(&mut body).await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{MemoryStore, SeqIds};
    use futures::executor::block_on;
    use serde_json::json;

    const KEY: &str = "6vL0Jm3bX9q2Rk7Tz1Wc5Yh8Nf4Pd6Sg0Ua2Ie9Ko3M=";

    fn sealer(text: &str) -> Sealer {
        Sealer::from_key_text(text, Arc::new(crate::security::RustCrypto)).expect("key")
    }

    #[test]
    fn keys_parse_in_base64_or_hex_and_nothing_else() {
        assert!(Sealer::parse_key(KEY).is_ok());
        assert_eq!(Sealer::parse_key(&"ab".repeat(32)), Ok([0xab; 32]));
        let e = Sealer::parse_key("c2hvcnQ=").expect_err("short");
        assert!(e.contains("32 bytes"), "{e}");
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
    }

    #[test]
    fn credentials_are_every_header_value_and_the_tls_client_key() {
        let body = json!({"headers": {"a/b~c": "1", "n": 2}, "tls": {"ca": "x", "client_key": "k"}});
        assert_eq!(credential_pointers(&body), ["/headers/a~1b~0c", "/tls/client_key"]);
        let mut r = crate::ports::Record {
            kind: Kind::Upstream,
            id: "u".into(),
            key: "u".into(),
            body,
            created_at: 0,
            updated_at: 0,
        };
        r.body = crate::registry::record_json(&r);
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
        });
    }
}
