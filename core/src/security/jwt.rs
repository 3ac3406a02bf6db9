//! JWT verification and minting: the key sets of each algorithm (a static secret or keys, or an
//! OAuth issuer's JWKS) and the [`Verifier`], which is pure: it takes the token, the time and the
//! key set and answers an [`Identity`] or an [`AuthError`] that says exactly what was wrong.

use std::fmt;

use jwt_compact::alg::{Ed25519, Es256, Hs256, Hs256Key, Rsa, RsaPublicKey};
use jwt_compact::jwk::JsonWebKey;
use jwt_compact::{Algorithm, AlgorithmExt, Claims, Header, TimeOptions, UntrustedToken, ValidationError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::auth::{weak_secret, Alg, AuthConfig, AuthError, Identity, MAKE_SECRET};

type EsKey = <Es256 as Algorithm>::VerifyingKey;
type EdKey = <Ed25519 as Algorithm>::VerifyingKey;
type EsSigningKey = <Es256 as Algorithm>::SigningKey;
type EdSigningKey = <Ed25519 as Algorithm>::SigningKey;
type RsaSigningKey = <Rsa as Algorithm>::SigningKey;

/// The verification keys of one algorithm, each with its `kid` if it has one.
#[derive(Clone)]
pub enum KeySet {
    /// The HS256 secret.
    Hs256(Hs256Key),
    /// RSA public keys.
    Rs256(Vec<(Option<String>, RsaPublicKey)>),
    /// P-256 public keys.
    Es256(Vec<(Option<String>, EsKey)>),
    /// Ed25519 public keys.
    EdDsa(Vec<(Option<String>, EdKey)>),
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeySet({}, {} keys)", self.alg().name(), self.len())
    }
}

impl KeySet {
    /// The algorithm these keys serve.
    pub fn alg(&self) -> Alg {
        match self {
            KeySet::Hs256(_) => Alg::HS256,
            KeySet::Rs256(_) => Alg::RS256,
            KeySet::Es256(_) => Alg::ES256,
            KeySet::EdDsa(_) => Alg::EdDSA,
        }
    }

    fn len(&self) -> usize {
        match self {
            KeySet::Hs256(_) => 1,
            KeySet::Rs256(k) => k.len(),
            KeySet::Es256(k) => k.len(),
            KeySet::EdDsa(k) => k.len(),
        }
    }

    /// True if some key may have signed a token with this `kid` header: a key with that
    /// `kid`, or one without a `kid` (or any key, for a token without one).
    pub fn fits(&self, kid: Option<&str>) -> bool {
        let hit = |k: &Option<String>| kid_matches(k, kid);
        match self {
            KeySet::Hs256(_) => true,
            KeySet::Rs256(v) => v.iter().any(|(k, _)| hit(k)),
            KeySet::Es256(v) => v.iter().any(|(k, _)| hit(k)),
            KeySet::EdDsa(v) => v.iter().any(|(k, _)| hit(k)),
        }
    }

    /// The HS256 key of a secret.
    pub fn hs256(secret: &str) -> Self {
        KeySet::Hs256(Hs256Key::new(secret.as_bytes()))
    }

    /// The keys of `alg` in a JWK (`{"kty":…}`) or JWK set (`{"keys":[…]}`); keys of other
    /// types in a set are skipped, and at least one must fit.
    pub fn from_jwks(alg: Alg, json: &str) -> Result<Self, String> {
        let v: Value = serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
        let items: Vec<Value> = match v.get("keys") {
            Some(Value::Array(keys)) => keys.clone(),
            Some(_) => return Err("'keys' is not an array".into()),
            None => vec![v],
        };
        let mut set = match alg {
            Alg::HS256 => return Err("HS256 uses MCPGW_JWT_SECRET, not a JWK".into()),
            Alg::RS256 => KeySet::Rs256(vec![]),
            Alg::ES256 => KeySet::Es256(vec![]),
            Alg::EdDSA => KeySet::EdDsa(vec![]),
        };
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
            let jwk: JsonWebKey<'_> = match serde_json::from_value(public_part(item)) {
                Ok(j) => j,
                Err(e) => {
                    errors.push(format!("key {}: {e}", kid.as_deref().unwrap_or("?")));
                    continue;
                }
            };
            let added = match &mut set {
                KeySet::Rs256(v) => RsaPublicKey::try_from(&jwk)
                    .map(|k| v.push((kid.clone(), k)))
                    .map_err(|e| e.to_string()),
                KeySet::Es256(v) => EsKey::try_from(&jwk)
                    .map(|k| v.push((kid.clone(), k)))
                    .map_err(|e| e.to_string()),
                KeySet::EdDsa(v) => EdKey::try_from(&jwk)
                    .map(|k| v.push((kid.clone(), k)))
                    .map_err(|e| e.to_string()),
                KeySet::Hs256(_) => Ok(()),
            };
            if let Err(e) = added {
                if items.len() == 1 {
                    errors.push(e);
                }
            }
        }
        if set.len() == 0 {
            let why = if errors.is_empty() {
                format!("no {} key in it", alg.name())
            } else {
                errors.join("; ")
            };
            return Err(why);
        }
        Ok(set)
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
fn key_members(jwk: &Value, private: bool) -> Value {
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

fn to_datetime(ms: u64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms as i64).unwrap_or_default()
}

impl Verifier {
    /// A verifier for the configured algorithm, issuer, audience and leeway.
    pub fn new(cfg: &AuthConfig) -> Self {
        Self {
            alg: cfg.algorithm,
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            leeway_secs: cfg.leeway_secs,
        }
    }

    /// Verifies `token` at `now_ms` with `keys`; revocation is the caller's (see `jti`).
    pub fn verify(&self, token: &str, keys: &KeySet, now_ms: u64) -> Verdict {
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
        let pick = |k: &Option<String>| kid_matches(k, kid.as_deref());
        let checked: Result<Claims<Custom>, ValidationError> = match keys {
            KeySet::Hs256(key) => Hs256
                .validator::<Custom>(key)
                .validate(&untrusted)
                .map(|t| t.into_parts().1),
            KeySet::Rs256(v) => first_valid(v.iter().filter(|(k, _)| pick(k)), |key| {
                Rsa::rs256().validator::<Custom>(key).validate(&untrusted)
            }),
            KeySet::Es256(v) => first_valid(v.iter().filter(|(k, _)| pick(k)), |key| {
                Es256.validator::<Custom>(key).validate(&untrusted)
            }),
            KeySet::EdDsa(v) => first_valid(v.iter().filter(|(k, _)| pick(k)), |key| {
                Ed25519.validator::<Custom>(key).validate(&untrusted)
            }),
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
        Verdict::Ok(Identity {
            subject,
            scopes,
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

/// The claims of the first key that verifies the token, or the last key's refusal.
fn first_valid<'k, K: 'k, I, F>(keys: I, mut check: F) -> Result<Claims<Custom>, ValidationError>
where
    I: Iterator<Item = &'k (Option<String>, K)>,
    F: FnMut(&K) -> Result<jwt_compact::Token<Custom>, ValidationError>,
{
    // `KeySet::fits` was checked: at least one key is tried.
    let mut last = Err(ValidationError::InvalidSignature);
    for (_, key) in keys {
        match check(key) {
            Ok(t) => return Ok(t.into_parts().1),
            Err(e) => last = Err(e),
        }
    }
    last
}

/// The claims of a token mcpgw mints.
#[derive(Debug, Serialize)]
struct Minted<'a> {
    sub: &'a str,
    iss: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    jti: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    scope: &'a str,
}

/// Signs a token with the configured key: `sub`, `scope` (space-separated), `iss` and `aud`
/// from the settings, `jti`, `iat`, and `exp` after `ttl_secs`.
pub fn mint(
    cfg: &AuthConfig,
    sub: &str,
    scopes: &[String],
    ttl_secs: u64,
    jti: &str,
    now_ms: u64,
) -> Result<String, String> {
    if sub.is_empty() {
        return Err("--sub must not be empty".into());
    }
    if ttl_secs == 0 {
        return Err("--exp must be at least 1 second".into());
    }
    let scope = scopes.join(" ");
    let mut claims = Claims::new(Minted {
        sub,
        iss: &cfg.issuer,
        aud: cfg.audience.first().map(String::as_str),
        jti,
        scope: &scope,
    });
    claims.issued_at = Some(to_datetime(now_ms));
    claims.expiration = Some(to_datetime(now_ms + ttl_secs * 1000));
    let header = Header::empty().with_token_type("JWT");
    let err = |e: jwt_compact::CreationError| e.to_string();
    match cfg.algorithm {
        Alg::HS256 => {
            let secret = cfg
                .jwt_secret
                .as_ref()
                .ok_or_else(|| format!("MCPGW_JWT_SECRET is not set; {MAKE_SECRET}"))?;
            if let Some(why) = weak_secret(&secret.0) {
                return Err(format!("{why}; {MAKE_SECRET}"));
            }
            Hs256
                .token(&header, &claims, &Hs256Key::new(secret.0.as_bytes()))
                .map_err(err)
        }
        alg => {
            let pk = cfg
                .jwt_private_key
                .as_ref()
                .ok_or_else(|| format!("{} tokens need MCPGW_JWT_PRIVATE_KEY (a private JWK)", alg.name()))?;
            let v: Value =
                serde_json::from_str(&pk.0).map_err(|e| format!("MCPGW_JWT_PRIVATE_KEY is not JSON: {e}"))?;
            let header = match v.get("kid").and_then(Value::as_str) {
                Some(kid) => header.with_key_id(kid),
                None => header,
            };
            let jwk: JsonWebKey<'_> = serde_json::from_value(key_members(&v, true))
                .map_err(|e| format!("MCPGW_JWT_PRIVATE_KEY is not a JWK: {e}"))?;
            let bad_key = |e: String| format!("MCPGW_JWT_PRIVATE_KEY: {e}");
            match alg {
                Alg::RS256 => {
                    let key = RsaSigningKey::try_from(&jwk).map_err(|e| bad_key(e.to_string()))?;
                    Rsa::rs256().token(&header, &claims, &key).map_err(err)
                }
                Alg::ES256 => {
                    let key = EsSigningKey::try_from(&jwk).map_err(|e| bad_key(e.to_string()))?;
                    Es256.token(&header, &claims, &key).map_err(err)
                }
                _ => {
                    let key = EdSigningKey::try_from(&jwk).map_err(|e| bad_key(e.to_string()))?;
                    Ed25519.token(&header, &claims, &key).map_err(err)
                }
            }
        }
    }
}
