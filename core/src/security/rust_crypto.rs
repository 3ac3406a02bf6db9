//! The [`Crypto`] port in Rust, for runtimes without a platform of their own (natively):
//! signatures over jwt-compact's algorithms (HS256 too), PBKDF2, AES-256-GCM; and minting tokens
//! (`mcpgw token`).
//!
//! Not on wasm: the edge does all of it with WebCrypto and mints nothing, so the Worker carries
//! no HMAC, AES or big-number arithmetic (that code is only built here).

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use jwt_compact::alg::{Ed25519, Es256, Hs256, Hs256Key, Rsa, RsaPublicKey};
use jwt_compact::jwk::JsonWebKey;
use jwt_compact::{Algorithm, AlgorithmExt, AlgorithmSignature, Claims, Header};
use serde::Serialize;
use serde_json::Value;

use super::auth::{weak_secret, Alg, AuthConfig, MAKE_SECRET};
use super::jwt::{key_members, to_datetime};
use crate::platform::BoxFuture;
use crate::ports::{Crypto, CryptoError, SignatureAlg};

type EsKey = <Es256 as Algorithm>::VerifyingKey;
type EdKey = <Ed25519 as Algorithm>::VerifyingKey;
type EsSigningKey = <Es256 as Algorithm>::SigningKey;
type EdSigningKey = <Ed25519 as Algorithm>::SigningKey;
type RsaSigningKey = <Rsa as Algorithm>::SigningKey;

/// [`Crypto`] computed in Rust (HMAC, RSA, P-256 and Ed25519 from jwt-compact's crates; PBKDF2;
/// AES-GCM).
#[derive(Debug, Default, Clone, Copy)]
pub struct RustCrypto;

/// Whether `signature` is `alg`'s over `message` under `key`.
fn check<A: Algorithm>(alg: &A, key: &A::VerifyingKey, message: &[u8], signature: &[u8]) -> bool {
    match A::Signature::try_from_slice(signature) {
        Ok(sig) => alg.verify_signature(&sig, key, message),
        Err(_) => false,
    }
}

impl RustCrypto {
    fn check(alg: SignatureAlg, jwk: &str, message: &[u8], signature: &[u8]) -> Result<bool, CryptoError> {
        let bad = |e: &dyn std::fmt::Display| CryptoError::Key(e.to_string());
        let jwk: JsonWebKey<'_> = serde_json::from_str(jwk).map_err(|e| CryptoError::Key(format!("not a JWK: {e}")))?;
        Ok(match alg {
            SignatureAlg::Hs256 => {
                let JsonWebKey::Symmetric { secret } = &jwk else {
                    return Err(CryptoError::Key("an HS256 key is a JWK of kty 'oct'".into()));
                };
                // The MAC's own type panics on another length (jwt-compact checks it first).
                signature.len() == 32 && check(&Hs256, &Hs256Key::new(secret.as_ref()), message, signature)
            }
            SignatureAlg::Rs256 => {
                let key = RsaPublicKey::try_from(&jwk).map_err(|e| bad(&e))?;
                check(&Rsa::rs256(), &key, message, signature)
            }
            SignatureAlg::Es256 => {
                let key = EsKey::try_from(&jwk).map_err(|e| bad(&e))?;
                check(&Es256, &key, message, signature)
            }
            SignatureAlg::EdDsa => {
                let key = EdKey::try_from(&jwk).map_err(|e| bad(&e))?;
                check(&Ed25519, &key, message, signature)
            }
        })
    }
}

impl RustCrypto {
    fn signed(alg: SignatureAlg, jwk: &str, message: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let bad = |e: &dyn std::fmt::Display| CryptoError::Key(e.to_string());
        let v: Value = serde_json::from_str(jwk).map_err(|e| CryptoError::Key(format!("not a JWK: {e}")))?;
        let jwk: JsonWebKey<'_> =
            serde_json::from_value(key_members(&v, true)).map_err(|e| CryptoError::Key(format!("not a JWK: {e}")))?;
        Ok(match alg {
            SignatureAlg::Hs256 => {
                let JsonWebKey::Symmetric { secret } = &jwk else {
                    return Err(CryptoError::Key("an HS256 key is a JWK of kty 'oct'".into()));
                };
                Hs256.sign(&Hs256Key::new(secret.as_ref()), message).as_bytes().to_vec()
            }
            SignatureAlg::Rs256 => {
                let key = RsaSigningKey::try_from(&jwk).map_err(|e| bad(&e))?;
                Rsa::rs256().sign(&key, message).as_bytes().to_vec()
            }
            SignatureAlg::Es256 => {
                let key = EsSigningKey::try_from(&jwk).map_err(|e| bad(&e))?;
                Es256.sign(&key, message).as_bytes().to_vec()
            }
            SignatureAlg::EdDsa => {
                let key = EdSigningKey::try_from(&jwk).map_err(|e| bad(&e))?;
                Ed25519.sign(&key, message).as_bytes().to_vec()
            }
        })
    }
}

impl Crypto for RustCrypto {
    fn sign<'a>(
        &'a self,
        alg: SignatureAlg,
        jwk: &'a str,
        message: &'a [u8],
    ) -> BoxFuture<'a, Result<Vec<u8>, CryptoError>> {
        Box::pin(std::future::ready(Self::signed(alg, jwk, message)))
    }

    fn verify<'a>(
        &'a self,
        alg: SignatureAlg,
        jwk: &'a str,
        message: &'a [u8],
        signature: &'a [u8],
    ) -> BoxFuture<'a, Result<bool, CryptoError>> {
        let checked = Self::check(alg, jwk, message, signature);
        Box::pin(std::future::ready(checked))
    }

    fn pbkdf2_sha256<'a>(
        &'a self,
        password: &'a [u8],
        salt: &'a [u8],
        iterations: u32,
        len: usize,
    ) -> BoxFuture<'a, Result<Vec<u8>, CryptoError>> {
        let mut out = vec![0u8; len];
        pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, salt, iterations, &mut out);
        Box::pin(std::future::ready(Ok(out)))
    }

    fn seal<'a>(
        &'a self,
        key: &'a [u8; 32],
        nonce: [u8; 12],
        aad: &'a [u8],
        plain: &'a [u8],
    ) -> BoxFuture<'a, Result<Vec<u8>, CryptoError>> {
        let out = Aes256Gcm::new(key.into())
            .encrypt(&Nonce::from(nonce), aes_gcm::aead::Payload { msg: plain, aad })
            .map_err(|_| CryptoError::Platform("AES-GCM could not seal".into()));
        Box::pin(std::future::ready(out))
    }

    fn open<'a>(
        &'a self,
        key: &'a [u8; 32],
        nonce: [u8; 12],
        aad: &'a [u8],
        sealed: &'a [u8],
    ) -> BoxFuture<'a, Result<Vec<u8>, CryptoError>> {
        let out = Aes256Gcm::new(key.into())
            .decrypt(&Nonce::from(nonce), aes_gcm::aead::Payload { msg: sealed, aad })
            .map_err(|_| CryptoError::Rejected);
        Box::pin(std::future::ready(out))
    }
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

/// Why a token could not be minted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MintError {
    /// An empty subject.
    #[error("--sub must not be empty")]
    NoSubject,
    /// A lifetime of 0.
    #[error("--exp must be at least 1 second")]
    NoLifetime,
    /// HS256 without a secret.
    #[error("MCPGW_JWT_SECRET is not set; {MAKE_SECRET}")]
    NoSecret,
    /// HS256 with a secret too weak to sign with (why).
    #[error("{0}; {MAKE_SECRET}")]
    WeakSecret(String),
    /// An asymmetric algorithm without its private key (the algorithm).
    #[error("{0} tokens need MCPGW_JWT_PRIVATE_KEY (a private JWK)")]
    NoPrivateKey(&'static str),
    /// A private key that cannot sign.
    #[error("MCPGW_JWT_PRIVATE_KEY: {0}")]
    BadPrivateKey(String),
    /// The signature failed.
    #[error("{0}")]
    Sign(String),
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
) -> Result<String, MintError> {
    if sub.is_empty() {
        return Err(MintError::NoSubject);
    }
    if ttl_secs == 0 {
        return Err(MintError::NoLifetime);
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
    let err = |e: jwt_compact::CreationError| MintError::Sign(e.to_string());
    match cfg.algorithm {
        Alg::HS256 => {
            let secret = cfg.jwt_secret.as_ref().ok_or(MintError::NoSecret)?;
            if let Some(why) = weak_secret(&secret.0) {
                return Err(MintError::WeakSecret(why));
            }
            Hs256
                .token(&header, &claims, &Hs256Key::new(secret.0.as_bytes()))
                .map_err(err)
        }
        alg => {
            let pk = cfg
                .jwt_private_key
                .as_ref()
                .ok_or(MintError::NoPrivateKey(alg.name()))?;
            let bad_key = |e: &dyn std::fmt::Display| MintError::BadPrivateKey(e.to_string());
            let v: Value = serde_json::from_str(&pk.0).map_err(|e| bad_key(&format!("not JSON: {e}")))?;
            let header = match v.get("kid").and_then(Value::as_str) {
                Some(kid) => header.with_key_id(kid),
                None => header,
            };
            let jwk: JsonWebKey<'_> =
                serde_json::from_value(key_members(&v, true)).map_err(|e| bad_key(&format!("not a JWK: {e}")))?;
            match alg {
                Alg::RS256 => {
                    let key = RsaSigningKey::try_from(&jwk).map_err(|e| bad_key(&e))?;
                    Rsa::rs256().token(&header, &claims, &key).map_err(err)
                }
                Alg::ES256 => {
                    let key = EsSigningKey::try_from(&jwk).map_err(|e| bad_key(&e))?;
                    Es256.token(&header, &claims, &key).map_err(err)
                }
                _ => {
                    let key = EdSigningKey::try_from(&jwk).map_err(|e| bad_key(&e))?;
                    Ed25519.token(&header, &claims, &key).map_err(err)
                }
            }
        }
    }
}
