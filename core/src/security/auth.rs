//! Who is calling: the auth settings (JWT bearer tokens, HS256 by default; RS256, ES256 or EdDSA
//! by configuration; or an external OAuth issuer's keys), the [`Identity`] a credential proves
//! and its scopes, every [`AuthError`], admin passwords (PBKDF2) and the `Authorization` header
//! forms. Token verification itself is in [`super::jwt`]; what a credential proves, in
//! [`super::identity`].

use std::fmt;

use base64::Engine as _;
use subtle::ConstantTimeEq;

/// A secret string: never printed by `Debug`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

pub use super::identity::{Alg, AuthError, Identity};

/// Authentication settings (the adapters read them from `MCPGW_*` variables with
/// [`AuthConfig::from_vars`]; the library default is auth off).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AuthConfig {
    /// Every MCP and admin route needs credentials.
    pub required: bool,
    /// The accepted token algorithm.
    pub algorithm: Alg,
    /// The HS256 secret.
    pub jwt_secret: Option<Secret>,
    /// Verification keys for RS256/ES256/EdDSA: a JWK or a JWK set (JSON).
    pub jwt_public_keys: Option<String>,
    /// The signing key for `mcpgw token` with RS256/ES256/EdDSA: a private JWK (JSON).
    pub jwt_private_key: Option<Secret>,
    /// Required `iss` (empty: not checked).
    pub issuer: String,
    /// Accepted `aud` values (empty: not checked).
    pub audience: Vec<String>,
    /// Tolerated clock skew for `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
    /// The scope of the admin API (it also grants the client routes).
    pub admin_scope: String,
    /// The scope the MCP routes need (empty: any valid token).
    pub client_scope: String,
    /// Basic-auth user for the admin API.
    pub admin_user: Option<String>,
    /// Its password, as a PHC string (`$pbkdf2-sha256$…`, from `mcpgw hash-password`).
    pub admin_password_hash: Option<Secret>,
    /// Resource-server mode: the external issuer (its URL); tokens are checked against its JWKS.
    pub oauth_issuer: Option<String>,
    /// The issuer's JWKS URL (default: from its metadata).
    pub oauth_jwks_url: Option<String>,
    /// Fewest seconds between two fetches of the issuer's JWKS (a token with an unknown `kid`
    /// makes the gateway fetch it again, at most this often; default 10).
    pub oauth_jwks_refetch_secs: u64,
    /// This gateway's public base URL (for RFC 9728 metadata); default: from the request.
    pub public_url: Option<String>,
}

/// The smallest HS256 secret accepted (bytes): the hash output size, per RFC 7518 §3.2.
pub const MIN_SECRET_BYTES: usize = 32;

pub(crate) const MAKE_SECRET: &str = "make one with: openssl rand -base64 48  (or: head -c 48 /dev/urandom | base64)";

impl super::jwt::Checks for AuthConfig {
    fn algorithm(&self) -> Alg {
        self.algorithm
    }
    fn issuer(&self) -> &str {
        &self.issuer
    }
    fn audience(&self) -> &[String] {
        &self.audience
    }
    fn leeway_secs(&self) -> u64 {
        self.leeway_secs
    }
}

impl AuthConfig {
    /// Reads the settings from `MCPGW_*` variables through `get` (the process environment
    /// natively, Worker vars and secrets on the edge). Auth is on unless
    /// `MCPGW_AUTH_REQUIRED=false`.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self, crate::settings::ConfigError> {
        let var = |n: &str| get(n).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let bad = |setting: &str, message: String| crate::settings::ConfigError {
            setting: setting.into(),
            message,
        };
        let required = match var("MCPGW_AUTH_REQUIRED").as_deref() {
            None => true,
            Some(v) => {
                parse_bool(v).ok_or_else(|| bad("MCPGW_AUTH_REQUIRED", format!("'{v}' is not true or false")))?
            }
        };
        let algorithm = match var("MCPGW_JWT_ALGORITHM") {
            None => Alg::HS256,
            Some(v) => v.parse().map_err(|e| bad("MCPGW_JWT_ALGORITHM", e))?,
        };
        let list = |n: &str| var(n).map(|v| crate::settings::split_list(&v)).unwrap_or_default();
        let oauth_issuer = var("MCPGW_OAUTH_ISSUER").map(|s| s.trim_end_matches('/').to_string());
        let cfg = AuthConfig {
            required,
            algorithm: if oauth_issuer.is_some() && var("MCPGW_JWT_ALGORITHM").is_none() {
                Alg::RS256
            } else {
                algorithm
            },
            jwt_secret: var("MCPGW_JWT_SECRET").map(Secret),
            jwt_public_keys: var("MCPGW_JWT_PUBLIC_KEY"),
            jwt_private_key: var("MCPGW_JWT_PRIVATE_KEY").map(Secret),
            issuer: var("MCPGW_JWT_ISSUER").unwrap_or_else(|| oauth_issuer.clone().unwrap_or_else(|| "mcpgw".into())),
            audience: match var("MCPGW_JWT_AUDIENCE") {
                Some(_) => list("MCPGW_JWT_AUDIENCE"),
                None if oauth_issuer.is_some() => vec![],
                None => vec!["mcpgw".into()],
            },
            leeway_secs: match var("MCPGW_JWT_LEEWAY_SECS") {
                None => 30,
                Some(v) => v.parse().ok().filter(|n| *n <= 600).ok_or_else(|| {
                    bad(
                        "MCPGW_JWT_LEEWAY_SECS",
                        format!("'{v}' is not a number of seconds up to 600"),
                    )
                })?,
            },
            admin_scope: var("MCPGW_ADMIN_SCOPE").unwrap_or_else(|| "mcpgw:admin".into()),
            client_scope: get("MCPGW_CLIENT_SCOPE")
                .map(|v| v.trim().to_string())
                .unwrap_or_else(|| "mcpgw:client".into()),
            admin_user: var("MCPGW_ADMIN_USER"),
            admin_password_hash: var("MCPGW_ADMIN_PASSWORD_HASH").map(Secret),
            oauth_issuer,
            oauth_jwks_url: var("MCPGW_OAUTH_JWKS_URL"),
            oauth_jwks_refetch_secs: match var("MCPGW_OAUTH_JWKS_REFETCH_SECS") {
                None => 10,
                Some(v) => v.parse().ok().filter(|n| *n <= 86_400).ok_or_else(|| {
                    bad(
                        "MCPGW_OAUTH_JWKS_REFETCH_SECS",
                        format!("'{v}' is not a number of seconds up to 86400"),
                    )
                })?,
            },
            public_url: var("MCPGW_PUBLIC_URL").map(|s| s.trim_end_matches('/').to_string()),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the settings: with auth on, a usable key must be configured (a strong HS256
    /// secret, or public keys, or an OAuth issuer); an admin user needs a password hash.
    pub fn validate(&self) -> Result<(), crate::settings::ConfigError> {
        let bad = |setting: &str, message: String| crate::settings::ConfigError {
            setting: setting.into(),
            message,
        };
        if self.admin_user.is_some() != self.admin_password_hash.is_some() {
            return Err(bad(
                "MCPGW_ADMIN_PASSWORD_HASH",
                "MCPGW_ADMIN_USER and MCPGW_ADMIN_PASSWORD_HASH go together (make a hash with: mcpgw hash-password)"
                    .into(),
            ));
        }
        if let Some(h) = &self.admin_password_hash {
            PasswordHash::parse(&h.0).map_err(|e| bad("MCPGW_ADMIN_PASSWORD_HASH", e.to_string()))?;
        }
        if let Some(s) = &self.jwt_secret {
            if let Some(why) = weak_secret(&s.0) {
                if self.required && self.algorithm == Alg::HS256 && self.oauth_issuer.is_none() {
                    return Err(bad("MCPGW_JWT_SECRET", format!("{why}; {MAKE_SECRET}")));
                }
            }
        }
        if !self.required {
            return Ok(());
        }
        if self.oauth_issuer.is_some() {
            return Ok(());
        }
        match self.algorithm {
            Alg::HS256 => {
                if self.jwt_secret.is_none() {
                    return Err(bad(
                        "MCPGW_JWT_SECRET",
                        format!("auth is on (MCPGW_AUTH_REQUIRED) and no HS256 secret is set; {MAKE_SECRET}"),
                    ));
                }
            }
            alg => {
                let keys = self.jwt_public_keys.as_deref().ok_or_else(|| {
                    bad(
                        "MCPGW_JWT_PUBLIC_KEY",
                        format!("{} needs the verification key(s) as a JWK or JWK set", alg.name()),
                    )
                })?;
                super::jwt::KeySet::from_jwks(alg, keys).map_err(|e| bad("MCPGW_JWT_PUBLIC_KEY", e.to_string()))?;
            }
        }
        Ok(())
    }
}

use crate::settings::flag as parse_bool;

/// Why a secret is too weak to sign tokens with, if it is.
pub fn weak_secret(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    if bytes.len() < MIN_SECRET_BYTES {
        return Some(format!(
            "MCPGW_JWT_SECRET is too short ({} bytes; at least {MIN_SECRET_BYTES})",
            bytes.len()
        ));
    }
    let mut distinct = bytes.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < 8 {
        return Some("MCPGW_JWT_SECRET is not random (fewer than 8 distinct characters)".into());
    }
    let lower = s.to_ascii_lowercase();
    for word in [
        "changeme",
        "change-me",
        "change_me",
        "password",
        "secret",
        "example",
        "my-test-key",
    ] {
        if lower.contains(word) {
            return Some(format!("MCPGW_JWT_SECRET contains the word '{word}'"));
        }
    }
    None
}

/// A parsed `$pbkdf2-sha256$i=N$salt$hash` password hash (salt and hash in unpadded base64).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordHash {
    iterations: u32,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

const PBKDF2_PREFIX: &str = "$pbkdf2-sha256$";
/// Iterations of new password hashes.
pub const PBKDF2_ITERATIONS: u32 = 210_000;

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD_NO_PAD
}

/// Why a stored password hash is not one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    /// Not of the scheme.
    #[error("not a '$pbkdf2-sha256$i=N$salt$hash' string (make one with: mcpgw hash-password)")]
    Scheme,
    /// Of the scheme, without its three parts.
    #[error("expected '$pbkdf2-sha256$i=N$salt$hash'")]
    Shape,
    /// Too few iterations, or not a number.
    #[error("iterations must be given as i=N with N at least 10000")]
    Iterations,
    /// The salt or the hash is not base64.
    #[error("the {0} is not base64")]
    Encoding(&'static str),
    /// The salt or the hash is too short.
    #[error("salt (8+ bytes) or hash (16+ bytes) too short")]
    TooShort,
}

impl PasswordHash {
    /// Parses a stored hash.
    pub fn parse(s: &str) -> Result<Self, HashError> {
        let rest = s.strip_prefix(PBKDF2_PREFIX).ok_or(HashError::Scheme)?;
        let parts: Vec<&str> = rest.split('$').collect();
        let [params, salt, hash] = parts.as_slice() else {
            return Err(HashError::Shape);
        };
        let iterations: u32 = params
            .strip_prefix("i=")
            .and_then(|n| n.parse().ok())
            .filter(|n| *n >= 10_000)
            .ok_or(HashError::Iterations)?;
        let salt = b64()
            .decode(salt.trim_end_matches('='))
            .map_err(|_| HashError::Encoding("salt"))?;
        let hash = b64()
            .decode(hash.trim_end_matches('='))
            .map_err(|_| HashError::Encoding("hash"))?;
        if salt.len() < 8 || hash.len() < 16 {
            return Err(HashError::TooShort);
        }
        Ok(Self { iterations, salt, hash })
    }

    /// Hashes a password with a random `salt` (natively: `mcpgw hash-password`).
    #[cfg(not(target_family = "wasm"))]
    pub fn create(password: &str, salt: &[u8], iterations: u32) -> String {
        let mut out = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password.as_bytes(), salt, iterations, &mut out);
        format!(
            "{PBKDF2_PREFIX}i={iterations}${}${}",
            b64().encode(salt),
            b64().encode(out)
        )
    }

    /// True if `password` matches (derived by `crypto`, compared in constant time).
    pub async fn verify(&self, password: &str, crypto: &dyn crate::ports::Crypto) -> bool {
        let derived = crypto
            .pbkdf2_sha256(password.as_bytes(), &self.salt, self.iterations, self.hash.len())
            .await;
        derived.is_ok_and(|out| out.ct_eq(&self.hash).into())
    }
}

/// Constant-time equality of two strings (length may leak; content does not).
pub fn ct_eq_str(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// A `Basic` header's user and password.
pub fn parse_basic(value: &str) -> Option<(String, String)> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD.decode(rest.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// A `Bearer` header's token.
pub fn parse_bearer(value: &str) -> Option<&str> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::jwt::*;
    use crate::security::mint;

    const SECRET: &str = "Zq8vN3xk1Lr7Yt2Pw9Jm4Hs6Df0Gb5Ca3Ue8Io1Kn7Rl2";

    fn cfg() -> AuthConfig {
        AuthConfig::from_vars(|n| match n {
            "MCPGW_JWT_SECRET" => Some(SECRET.into()),
            _ => None,
        })
        .expect("valid")
    }

    fn verdict(token: &str, now_ms: u64) -> Verdict {
        let c = cfg();
        check(&Verifier::new(&c), token, &KeySet::hs256(SECRET), now_ms)
    }

    /// [`Verifier::verify`] with the Rust crypto, run to its end.
    fn check(v: &Verifier, token: &str, keys: &KeySet, now_ms: u64) -> Verdict {
        futures::executor::block_on(v.verify(token, keys, now_ms, &crate::security::RustCrypto))
    }

    #[test]
    fn defaults_turn_auth_on_and_refuse_a_weak_or_missing_secret() {
        let c = cfg();
        assert!(c.required);
        assert_eq!(c.client_scope, "mcpgw:client");
        let missing = AuthConfig::from_vars(|_| None).expect_err("no secret");
        assert_eq!(missing.setting, "MCPGW_JWT_SECRET");
        assert!(missing.message.contains("openssl rand"), "{}", missing.message);
        let weak = AuthConfig::from_vars(|n| (n == "MCPGW_JWT_SECRET").then(|| "changeme".to_string()))
            .expect_err("weak secret");
        assert!(weak.message.contains("too short"), "{}", weak.message);
        let words = AuthConfig::from_vars(|n| {
            (n == "MCPGW_JWT_SECRET").then(|| "my-super-secret-value-that-is-long-enough".to_string())
        })
        .expect_err("dictionary secret");
        assert!(words.message.contains("secret"), "{}", words.message);
        let off = AuthConfig::from_vars(|n| (n == "MCPGW_AUTH_REQUIRED").then(|| "false".to_string())).expect("off");
        assert!(!off.required);
    }

    #[test]
    fn minted_tokens_verify_until_they_expire() {
        let c = cfg();
        let t = mint(&c, "alice", &["mcpgw:client".into()], 60, "j1", 1_000_000).expect("mint");
        match verdict(&t, 1_000_000) {
            Verdict::Ok(id) => {
                assert_eq!(id.subject, "alice");
                assert_eq!(id.scopes, vec!["mcpgw:client".to_string()]);
                assert_eq!(id.jti.as_deref(), Some("j1"));
            }
            other => panic!("{other:?}"),
        }
        // Within the 30 s leeway, then past it.
        assert!(matches!(verdict(&t, 1_000_000 + 80_000), Verdict::Ok(_)));
        assert_eq!(verdict(&t, 1_000_000 + 91_000), Verdict::Refused(AuthError::Expired));
    }

    #[test]
    fn wrong_algorithm_signature_issuer_and_audience_are_refused() {
        let mut other = cfg();
        other.jwt_secret = Some(Secret("A".repeat(10) + "bcdefghijklmnopqrstuvwxyz0123456789"));
        let forged = mint(&other, "eve", &[], 60, "x", 0).expect("mint");
        assert!(matches!(verdict(&forged, 0), Verdict::Refused(AuthError::Invalid(m)) if m.contains("signature")));
        let mut iss = cfg();
        iss.issuer = "someone-else".into();
        let t = mint(&iss, "eve", &[], 60, "x", 0).expect("mint");
        assert!(matches!(verdict(&t, 0), Verdict::Refused(AuthError::Invalid(m)) if m.contains("issuer")));
        let mut aud = cfg();
        aud.audience = vec!["elsewhere".into()];
        let t = mint(&aud, "eve", &[], 60, "x", 0).expect("mint");
        assert!(matches!(verdict(&t, 0), Verdict::Refused(AuthError::Invalid(m)) if m.contains("audience")));
        // alg: none, with a valid payload.
        let good = mint(&cfg(), "eve", &[], 60, "x", 0).expect("mint");
        let payload = good.split('.').nth(1).expect("payload");
        let none = format!("{}.{payload}.", b64url(r#"{"alg":"none","typ":"JWT"}"#));
        assert!(matches!(verdict(&none, 0), Verdict::Refused(AuthError::Invalid(m)) if m.contains("algorithm")));
        assert!(matches!(verdict("garbage", 0), Verdict::Refused(AuthError::Invalid(m)) if m.contains("malformed")));
        // A MAC one byte short, or long, is a bad signature (not a panic).
        let (signed, mac) = good.rsplit_once('.').expect("three parts");
        let mac = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(mac)
            .expect("base64url");
        for len in [31, 33, 0] {
            let mut m = mac.clone();
            m.resize(len, 7);
            let t = format!(
                "{signed}.{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&m)
            );
            assert!(
                matches!(verdict(&t, 0), Verdict::Refused(AuthError::Invalid(m)) if m.contains("signature")),
                "{len}"
            );
        }
    }

    fn b64url(s: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn asymmetric_keys_sign_and_verify_and_refuse_other_keys() {
        let cases = [
            (
                Alg::RS256,
                include_str!("../../../tests/fixtures/keys/rs256.private.json"),
                include_str!("../../../tests/fixtures/keys/rs256.public.json"),
            ),
            (
                Alg::ES256,
                include_str!("../../../tests/fixtures/keys/es256.private.json"),
                include_str!("../../../tests/fixtures/keys/es256.public.json"),
            ),
            (
                Alg::EdDSA,
                include_str!("../../../tests/fixtures/keys/ed25519.private.json"),
                include_str!("../../../tests/fixtures/keys/ed25519.public.json"),
            ),
        ];
        let other = KeySet::from_jwks(
            Alg::RS256,
            include_str!("../../../tests/fixtures/keys/rs256-other.public.json"),
        )
        .expect("other key");
        for (alg, private, public) in cases {
            let c = AuthConfig {
                algorithm: alg,
                jwt_private_key: Some(Secret(private.into())),
                issuer: "mcpgw".into(),
                audience: vec!["mcpgw".into()],
                leeway_secs: 30,
                ..AuthConfig::default()
            };
            let keys = KeySet::from_jwks(alg, public).expect("public keys");
            let t = mint(&c, "bob", &[], 60, "j", 5_000).expect("mint");
            let v = Verifier::new(&c);
            assert!(
                matches!(check(&v, &t, &keys, 5_000), Verdict::Ok(ref id) if id.subject == "bob"),
                "{alg:?}"
            );
            // One bit of the signature changed: refused.
            let (signed, sig) = t.rsplit_once('.').expect("three parts");
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            let mut sig = b64.decode(sig).expect("base64url");
            sig[7] ^= 1;
            let altered = format!("{signed}.{}", b64.encode(sig));
            assert!(
                matches!(check(&v, &altered, &keys, 5_000), Verdict::Refused(AuthError::Invalid(ref m)) if m.contains("signature")),
                "{alg:?}"
            );
            if alg == Alg::RS256 {
                // Same kid-less check against a key that did not sign it.
                assert!(matches!(
                    check(&v, &t, &other, 5_000),
                    Verdict::UnknownKey(_) | Verdict::Refused(_)
                ));
                // Key confusion: HS256 signed with the public key's text is refused.
                let mut hs = c.clone();
                hs.algorithm = Alg::HS256;
                hs.jwt_secret = Some(Secret(public.into()));
                let forged = mint(&hs, "eve", &[], 60, "j", 5_000).expect("mint");
                assert!(
                    matches!(check(&v, &forged, &keys, 5_000), Verdict::Refused(AuthError::Invalid(ref m)) if m.contains("algorithm"))
                );
            }
        }
    }

    #[test]
    fn public_keys_of_the_wrong_shape_are_refused_when_read() {
        let refused = |alg: Alg, jwk: &str| KeySet::from_jwks(alg, jwk).expect_err(jwk).to_string();
        let p384 = r#"{"kty":"EC","crv":"P-384","x":"AAAA","y":"AAAA"}"#;
        assert!(refused(Alg::ES256, p384).contains("crv"));
        let short_x = r#"{"kty":"OKP","crv":"Ed25519","x":"AAAA"}"#;
        assert!(refused(Alg::EdDSA, short_x).contains("32-byte"));
        let small_rsa = r#"{"kty":"RSA","n":"AQAB","e":"AQAB"}"#;
        assert!(refused(Alg::RS256, small_rsa).contains("2048"));
        assert!(refused(Alg::RS256, p384).contains("kty"));
        // In a set, a key of another type is skipped, not an error.
        let rsa: serde_json::Value =
            serde_json::from_str(include_str!("../../../tests/fixtures/keys/rs256.public.json")).expect("JSON");
        let set = format!(r#"{{"keys":[{p384},{}]}}"#, rsa["keys"][0]);
        assert!(KeySet::from_jwks(Alg::RS256, &set).is_ok());
    }

    #[test]
    fn password_hashes_round_trip_and_parse_strictly() {
        let h = PasswordHash::create("hunter2-but-longer", b"0123456789abcdef", 10_000);
        let p = PasswordHash::parse(&h).expect("parse");
        let rust = crate::security::RustCrypto;
        assert!(futures::executor::block_on(p.verify("hunter2-but-longer", &rust)));
        assert!(!futures::executor::block_on(p.verify("hunter2-but-longeR", &rust)));
        assert!(PasswordHash::parse("plain").is_err());
        assert!(PasswordHash::parse("$pbkdf2-sha256$i=5$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA").is_err());
        assert_eq!(
            parse_basic("Basic YWRtaW46cHc6eA=="),
            Some(("admin".into(), "pw:x".into()))
        );
        assert_eq!(parse_bearer("bearer abc"), Some("abc"));
        assert_eq!(parse_bearer("Bearer "), None);
    }
}
