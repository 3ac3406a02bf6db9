//! JWT verification: the key sets of each algorithm (a static secret or keys, or an OAuth
//! issuer's JWKS) and the [`Verifier`], which takes the token, the time, the key set and the
//! platform's [`Crypto`] and answers an [`Identity`] or an [`AuthError`] that says exactly
//! what was wrong. Signatures of every algorithm, HS256's MAC too, are checked by the platform
//! (WebCrypto on the edge), so the core holds keys as JWK text and no HMAC or big-number
//! arithmetic.

use std::fmt;

use base64::Engine as _;
use jwt_compact::{Claims, TimeOptions, UntrustedToken, ValidationError};
use serde::Deserialize;
use serde_json::Value;

use super::identity::{Alg, AuthError, Identity};
use crate::ports::{Crypto, SignatureAlg};

/// The verification keys of one algorithm, each with its `kid` if it has one, as its JWK's key
/// members (JSON text; for HS256 the secret as an `oct` key).
#[derive(Clone)]
pub struct KeySet {
    sig: SignatureAlg,
    keys: Vec<(Option<String>, String)>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeySet({}, {} keys)", self.alg().name(), self.keys.len())
    }
}

/// The JWS algorithm of a configured one, when it is a public-key one.
fn signature_alg(alg: Alg) -> Option<SignatureAlg> {
    match alg {
        Alg::HS256 => None,
        Alg::RS256 => Some(SignatureAlg::Rs256),
        Alg::ES256 => Some(SignatureAlg::Es256),
        Alg::EdDSA => Some(SignatureAlg::EdDsa),
    }
}

fn b64url() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

/// The smallest RSA modulus accepted, in bytes (2048 bits).
const MIN_RSA_BYTES: usize = 256;

/// Why a JWK or JWK set gives no key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwkError {
    /// Not JSON.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// `keys` is there and is not an array.
    #[error("'keys' is not an array")]
    KeysNotArray,
    /// HS256 keys are secrets.
    #[error("HS256 uses MCPGW_JWT_SECRET, not a JWK")]
    Hmac,
    /// A member the key type needs is missing.
    #[error("no '{0}'")]
    Missing(&'static str),
    /// A member is not base64url.
    #[error("'{0}' is not base64url")]
    NotBase64(&'static str),
    /// `kty` or `crv` is not the algorithm's (the member and what it must be).
    #[error("'{0}' is not {1}")]
    Mismatch(&'static str, &'static str),
    /// An RSA modulus under the minimum.
    #[error("the RSA modulus has fewer than {} bits", MIN_RSA_BYTES * 8)]
    SmallModulus,
    /// An empty RSA exponent.
    #[error("'e' is empty")]
    EmptyExponent,
    /// A P-256 point of the wrong size.
    #[error("a P-256 point needs 32-byte 'x' and 'y'")]
    PointSize,
    /// An Ed25519 key of the wrong size.
    #[error("an Ed25519 key needs a 32-byte 'x'")]
    EdSize,
    /// A set without a key of the algorithm (its name).
    #[error("no {0} key in it")]
    NoKey(&'static str),
}

/// The key members of `jwk` as JSON text, if it is a well-formed public key for `alg` (the
/// members present, of the sizes the algorithm needs); why not otherwise.
fn public_jwk(alg: SignatureAlg, jwk: &Value) -> Result<String, JwkError> {
    let text = |k: &'static str| jwk.get(k).and_then(Value::as_str).ok_or(JwkError::Missing(k));
    let bytes = |k: &'static str| {
        b64url()
            .decode(text(k)?.trim_end_matches('='))
            .map_err(|_| JwkError::NotBase64(k))
    };
    let (kty, crv) = match alg {
        SignatureAlg::Hs256 => return Err(JwkError::Hmac),
        SignatureAlg::Rs256 => ("RSA", None),
        SignatureAlg::Es256 => ("EC", Some("P-256")),
        SignatureAlg::EdDsa => ("OKP", Some("Ed25519")),
    };
    if text("kty")? != kty {
        return Err(JwkError::Mismatch("kty", kty));
    }
    if let Some(crv) = crv {
        if text("crv")? != crv {
            return Err(JwkError::Mismatch("crv", crv));
        }
    }
    match alg {
        SignatureAlg::Hs256 => {}
        SignatureAlg::Rs256 => {
            let n = bytes("n")?;
            let significant = n.iter().skip_while(|b| **b == 0).count();
            if significant < MIN_RSA_BYTES {
                return Err(JwkError::SmallModulus);
            }
            if bytes("e")?.is_empty() {
                return Err(JwkError::EmptyExponent);
            }
        }
        SignatureAlg::Es256 => {
            if bytes("x")?.len() != 32 || bytes("y")?.len() != 32 {
                return Err(JwkError::PointSize);
            }
        }
        SignatureAlg::EdDsa => {
            if bytes("x")?.len() != 32 {
                return Err(JwkError::EdSize);
            }
        }
    }
    Ok(public_part(jwk).to_string())
}

impl KeySet {
    /// The algorithm these keys serve.
    pub fn alg(&self) -> Alg {
        match self.sig {
            SignatureAlg::Hs256 => Alg::HS256,
            SignatureAlg::Rs256 => Alg::RS256,
            SignatureAlg::Es256 => Alg::ES256,
            SignatureAlg::EdDsa => Alg::EdDSA,
        }
    }

    /// True if some key may have signed a token with this `kid` header: a key with that
    /// `kid`, or one without a `kid` (or any key, for a token without one).
    pub fn fits(&self, kid: Option<&str>) -> bool {
        self.keys.iter().any(|(k, _)| kid_matches(k, kid))
    }

    /// The HS256 key of a secret.
    pub fn hs256(secret: &str) -> Self {
        let jwk = serde_json::json!({"kty": "oct", "k": b64url().encode(secret.as_bytes())});
        KeySet {
            sig: SignatureAlg::Hs256,
            keys: vec![(None, jwk.to_string())],
        }
    }

    /// The keys of `alg` in a JWK (`{"kty":…}`) or JWK set (`{"keys":[…]}`); keys of other
    /// types in a set are skipped, and at least one must fit.
    pub fn from_jwks(alg: Alg, json: &str) -> Result<Self, JwkError> {
        let v: Value = serde_json::from_str(json).map_err(|e| JwkError::NotJson(e.to_string()))?;
        let items: Vec<Value> = match v.get("keys") {
            Some(Value::Array(keys)) => keys.clone(),
            Some(_) => return Err(JwkError::KeysNotArray),
            None => vec![v],
        };
        let Some(sig) = signature_alg(alg) else {
            return Err(JwkError::Hmac);
        };
        let mut keys = vec![];
        let mut errors = vec![];
        for item in &items {
            let kid = item.get("kid").and_then(Value::as_str).map(String::from);
            if let Some(a) = item.get("alg").and_then(Value::as_str) {
                if a != alg.name() {
                    continue;
                }
            }
            if item.get("use").and_then(Value::as_str).is_some_and(|u| u != "sig") {
                continue;
            }
            match public_jwk(sig, item) {
                Ok(jwk) => keys.push((kid, jwk)),
                // In a set, keys of other types are skipped; a lone key must fit.
                Err(e) if items.len() == 1 => errors.push(e),
                Err(_) => {}
            }
        }
        if keys.is_empty() {
            return Err(errors.pop().unwrap_or(JwkError::NoKey(alg.name())));
        }
        Ok(KeySet { sig, keys })
    }
}

/// True if a key with `key_kid` may have signed a token with `token_kid` (either may be absent).
fn kid_matches(key_kid: &Option<String>, token_kid: Option<&str>) -> bool {
    token_kid.is_none() || key_kid.is_none() || key_kid.as_deref() == token_kid
}

/// A JWK without its private members (a private JWK also serves as the public one).
fn public_part(jwk: &Value) -> Value {
    key_members(jwk, false)
}

/// A JWK with only the members that make up the key (no `kid`, `alg`, `use`, …), with or
/// without its private parts.
pub(crate) fn key_members(jwk: &Value, private: bool) -> Value {
    let mut v = jwk.clone();
    if let Some(o) = v.as_object_mut() {
        let kty = o.get("kty").and_then(Value::as_str).unwrap_or("").to_string();
        let (public, secret): (&[&str], &[&str]) = match kty.as_str() {
            "RSA" => (&["kty", "n", "e"], &["d", "p", "q", "dp", "dq", "qi"]),
            "EC" => (&["kty", "crv", "x", "y"], &["d"]),
            "OKP" => (&["kty", "crv", "x"], &["d"]),
            _ => (&["kty"], &[]),
        };
        o.retain(|k, _| public.contains(&k.as_str()) || (private && secret.contains(&k.as_str())));
    }
    v
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn items(&self) -> Vec<&str> {
        match self {
            OneOrMany::One(s) => s.split(' ').filter(|s| !s.is_empty()).collect(),
            OneOrMany::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// The claims mcpgw reads besides `exp`, `nbf` and `iat`.
#[derive(Debug, Deserialize)]
struct Custom {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    aud: Option<OneOrMany>,
    #[serde(default)]
    jti: Option<String>,
    /// Space-separated scopes (RFC 8693 / RFC 9068).
    #[serde(default)]
    scope: Option<OneOrMany>,
    /// Scopes as some issuers send them.
    #[serde(default)]
    scp: Option<OneOrMany>,
}

/// What a [`Verifier`] checks tokens against (the auth settings say).
pub trait Checks {
    /// The one accepted algorithm.
    fn algorithm(&self) -> Alg;
    /// The issuer a token must name (empty: any).
    fn issuer(&self) -> &str;
    /// The audiences a token may name one of (empty: any).
    fn audience(&self) -> &[String];
    /// Leeway on `exp` and `nbf`, in seconds.
    fn leeway_secs(&self) -> u64;
}

/// Checks bearer tokens against one configuration.
#[derive(Debug, Clone)]
pub struct Verifier {
    alg: Alg,
    issuer: String,
    audience: Vec<String>,
    leeway_secs: u64,
}

/// What a verification needs to look up more keys for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Let in.
    Ok(Identity),
    /// Refused.
    Refused(AuthError),
    /// Signed with a `kid` the key set does not have (fetch the JWKS again, then retry).
    UnknownKey(String),
}

pub(super) fn to_datetime(ms: u64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms as i64).unwrap_or_default()
}

impl Verifier {
    /// A verifier for the configured algorithm, issuer, audience and leeway.
    pub fn new(cfg: &impl Checks) -> Self {
        Self {
            alg: cfg.algorithm(),
            issuer: cfg.issuer().to_string(),
            audience: cfg.audience().to_vec(),
            leeway_secs: cfg.leeway_secs(),
        }
    }

    /// Verifies `token` at `now_ms` with `keys`, public-key signatures by `crypto`;
    /// revocation is the caller's (see `jti`).
    pub async fn verify(&self, token: &str, keys: &KeySet, now_ms: u64, crypto: &dyn Crypto) -> Verdict {
        let invalid = |m: String| Verdict::Refused(AuthError::Invalid(m));
        let untrusted = match UntrustedToken::new(token) {
            Ok(t) => t,
            Err(e) => return invalid(format!("malformed ({e})")),
        };
        let alg = untrusted.algorithm();
        if alg != self.alg.name() || keys.alg() != self.alg {
            return invalid(format!(
                "algorithm '{alg}' is not accepted (expected {})",
                self.alg.name()
            ));
        }
        let kid = untrusted.header().key_id.clone();
        if !keys.fits(kid.as_deref()) {
            return Verdict::UnknownKey(kid.unwrap_or_default());
        }
        // What was signed: the token up to its last dot.
        let message = token.rsplit_once('.').map_or("", |(m, _)| m).as_bytes();
        let signature = untrusted.signature_bytes();
        let mut signed = false;
        for (_, jwk) in keys.keys.iter().filter(|(k, _)| kid_matches(k, kid.as_deref())) {
            if crypto.verify(keys.sig, jwk, message, signature).await == Ok(true) {
                signed = true;
                break;
            }
        }
        let checked: Result<Claims<Custom>, ValidationError> = if signed {
            untrusted.deserialize_claims_unchecked::<Custom>()
        } else {
            Err(ValidationError::InvalidSignature)
        };
        let claims = match checked {
            Ok(c) => c,
            Err(ValidationError::InvalidSignature) | Err(ValidationError::InvalidSignatureLen { .. }) => {
                return invalid("bad signature".into())
            }
            Err(ValidationError::MalformedClaims(e)) => return invalid(format!("malformed claims ({e})")),
            Err(e) => return invalid(e.to_string()),
        };
        let now = to_datetime(now_ms);
        let opts = TimeOptions::new(chrono::Duration::seconds(self.leeway_secs as i64), move || now);
        match claims.validate_expiration(&opts) {
            Ok(_) => {}
            Err(ValidationError::Expired) => return Verdict::Refused(AuthError::Expired),
            Err(_) => return invalid("no 'exp' claim (tokens must expire)".into()),
        }
        if claims.not_before.is_some() && claims.validate_maturity(&opts).is_err() {
            return Verdict::Refused(AuthError::NotYetValid);
        }
        let c = claims.custom;
        if !self.issuer.is_empty() && c.iss.as_deref() != Some(self.issuer.as_str()) {
            return invalid(format!("issuer {:?} is not accepted", c.iss.as_deref().unwrap_or("")));
        }
        if !self.audience.is_empty() {
            let auds = c.aud.as_ref().map(OneOrMany::items).unwrap_or_default();
            if !auds.iter().any(|a| self.audience.iter().any(|x| x == a)) {
                return invalid(format!("audience {auds:?} is not accepted"));
            }
        }
        let Some(subject) = c.sub.filter(|s| !s.is_empty()) else {
            return invalid("no 'sub' claim".into());
        };
        let mut scopes: Vec<String> = vec![];
        for s in c.scope.iter().chain(c.scp.iter()) {
            scopes.extend(s.items().into_iter().map(String::from));
        }
        let expires_ms = claims.expiration.map(|e| e.timestamp_millis().max(0) as u64);
        Verdict::Ok(Identity {
            subject,
            scopes,
            expires_ms,
            jti: c.jti,
            audience: c
                .aud
                .as_ref()
                .map(OneOrMany::items)
                .unwrap_or_default()
                .into_iter()
                .map(String::from)
                .collect(),
        })
    }
}
