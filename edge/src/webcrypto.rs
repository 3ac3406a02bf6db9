//! The [`Crypto`] port on the platform's WebCrypto (`crypto.subtle`): JWT signature checks
//! (HMAC, RSA, P-256, Ed25519), AES-256-GCM and PBKDF2, so that the Worker carries none of that
//! arithmetic of its own and runs it at the platform's speed (a Worker's CPU time is billed and
//! bounded). Imported keys are kept per isolate (tokens are checked, and secrets sealed, with the
//! same few keys again and again).

use std::cell::RefCell;
use std::collections::HashMap;

use js_sys::{Array, Function, Object, Promise, Reflect, Uint8Array, JSON};
use mcpgw_core::platform::BoxFuture;
use mcpgw_core::ports::{Crypto, CryptoError, SignatureAlg};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

/// The most imported keys kept; past it the cache starts again (keys rotate rarely).
const MAX_KEYS: usize = 64;

/// What a key was imported from: a JWK for an algorithm, or raw AES-GCM key bytes.
#[derive(Clone, PartialEq, Eq, Hash)]
enum KeyId {
    Jwk(SignatureAlg, String),
    /// A private JWK, imported to sign.
    Signing(SignatureAlg, String),
    Aes([u8; 32]),
}

thread_local! {
    static KEYS: RefCell<HashMap<KeyId, JsValue>> = RefCell::new(HashMap::new());
}

/// [`Crypto`] by WebCrypto.
pub struct WebCrypto;

/// `{k: v, …}` as a JS object.
fn object(members: &[(&str, &str)]) -> Result<JsValue, String> {
    let o = Object::new();
    for (k, v) in members {
        Reflect::set(&o, &(*k).into(), &(*v).into()).map_err(js_error)?;
    }
    Ok(o.into())
}

fn js_error(e: JsValue) -> String {
    e.as_string()
        .or_else(|| Reflect::get(&e, &"message".into()).ok().and_then(|m| m.as_string()))
        .unwrap_or_else(|| format!("{e:?}"))
}

/// The algorithm WebCrypto imports the key as, and the one it verifies with.
fn params(alg: SignatureAlg) -> Result<(JsValue, JsValue), String> {
    Ok(match alg {
        SignatureAlg::Hs256 => (
            object(&[("name", "HMAC"), ("hash", "SHA-256")])?,
            object(&[("name", "HMAC")])?,
        ),
        SignatureAlg::Rs256 => (
            object(&[("name", "RSASSA-PKCS1-v1_5"), ("hash", "SHA-256")])?,
            object(&[("name", "RSASSA-PKCS1-v1_5")])?,
        ),
        SignatureAlg::Es256 => (
            object(&[("name", "ECDSA"), ("namedCurve", "P-256")])?,
            object(&[("name", "ECDSA"), ("hash", "SHA-256")])?,
        ),
        SignatureAlg::EdDsa => (object(&[("name", "Ed25519")])?, object(&[("name", "Ed25519")])?),
    })
}

/// `crypto.subtle` of the isolate.
fn subtle() -> Result<JsValue, String> {
    let crypto = Reflect::get(&js_sys::global(), &"crypto".into()).map_err(js_error)?;
    Reflect::get(&crypto, &"subtle".into()).map_err(js_error)
}

/// Calls `subtle[method](...args)` and awaits its promise.
async fn call(subtle: &JsValue, method: &str, args: &[JsValue]) -> Result<JsValue, String> {
    let f: Function = Reflect::get(subtle, &method.into())
        .map_err(js_error)?
        .dyn_into()
        .map_err(|_| format!("crypto.subtle.{method} is not a function"))?;
    let args: Array = args.iter().collect();
    let promise: Promise = f
        .apply(subtle, &args)
        .map_err(js_error)?
        .dyn_into()
        .map_err(|_| format!("crypto.subtle.{method} gave no promise"))?;
    JsFuture::from(promise).await.map_err(js_error)
}

/// The key `id` imported (from the cache when it was imported before).
async fn key(subtle: &JsValue, id: KeyId) -> Result<JsValue, String> {
    if let Some(k) = KEYS.with(|k| k.borrow().get(&id).cloned()) {
        return Ok(k);
    }
    let args = match &id {
        KeyId::Jwk(alg, jwk) | KeyId::Signing(alg, jwk) => {
            let (import, _) = params(*alg)?;
            let parsed = JSON::parse(jwk).map_err(js_error)?;
            let usage = if matches!(id, KeyId::Signing(..)) {
                "sign"
            } else {
                "verify"
            };
            // The members a private key is imported with: no `alg`, `use` or `key_ops` that
            // could disagree with what it is imported for.
            for member in ["alg", "use", "key_ops", "kid"] {
                let _ = Reflect::delete_property(&parsed.clone().into(), &member.into());
            }
            let usages: Array = [JsValue::from(usage)].iter().collect();
            ["jwk".into(), parsed, import, JsValue::FALSE, usages.into()]
        }
        KeyId::Aes(bytes) => {
            let usages: Array = ["encrypt", "decrypt"].iter().map(|u| JsValue::from(*u)).collect();
            let alg = object(&[("name", "AES-GCM")])?;
            let raw = Uint8Array::from(&bytes[..]).into();
            ["raw".into(), raw, alg, JsValue::FALSE, usages.into()]
        }
    };
    let k = call(subtle, "importKey", &args).await?;
    KEYS.with(|keys| {
        let mut keys = keys.borrow_mut();
        if keys.len() >= MAX_KEYS {
            keys.clear();
        }
        keys.insert(id, k.clone());
    });
    Ok(k)
}

impl Crypto for WebCrypto {
    fn sign<'a>(
        &'a self,
        alg: SignatureAlg,
        jwk: &'a str,
        message: &'a [u8],
    ) -> BoxFuture<'a, Result<Vec<u8>, CryptoError>> {
        Box::pin(async move {
            let subtle = subtle().map_err(CryptoError::Platform)?;
            let key = key(&subtle, KeyId::Signing(alg, jwk.to_string()))
                .await
                .map_err(CryptoError::Key)?;
            let (_, sign) = params(alg).map_err(CryptoError::Key)?;
            let signed = call(&subtle, "sign", &[sign, key, Uint8Array::from(message).into()])
                .await
                .map_err(CryptoError::Platform)?;
            Ok(Uint8Array::new(&signed).to_vec())
        })
    }

    fn verify<'a>(
        &'a self,
        alg: SignatureAlg,
        jwk: &'a str,
        message: &'a [u8],
        signature: &'a [u8],
    ) -> BoxFuture<'a, Result<bool, CryptoError>> {
        Box::pin(async move {
            let subtle = subtle().map_err(CryptoError::Platform)?;
            let key = key(&subtle, KeyId::Jwk(alg, jwk.to_string()))
                .await
                .map_err(CryptoError::Key)?;
            let (_, verify) = params(alg).map_err(CryptoError::Key)?;
            let args = [
                verify,
                key,
                Uint8Array::from(signature).into(),
                Uint8Array::from(message).into(),
            ];
            let verified = call(&subtle, "verify", &args).await.map_err(CryptoError::Platform)?;
            Ok(verified.as_bool() == Some(true))
        })
    }

    fn pbkdf2_sha256<'a>(
        &'a self,
        password: &'a [u8],
        salt: &'a [u8],
        iterations: u32,
        len: usize,
    ) -> BoxFuture<'a, Result<Vec<u8>, CryptoError>> {
        let derived = async move {
            let subtle = subtle()?;
            let usages: Array = [JsValue::from("deriveBits")].iter().collect();
            let args = [
                "raw".into(),
                Uint8Array::from(password).into(),
                object(&[("name", "PBKDF2")])?,
                JsValue::FALSE,
                usages.into(),
            ];
            let key = call(&subtle, "importKey", &args).await?;
            let derive = object(&[("name", "PBKDF2"), ("hash", "SHA-256")])?;
            Reflect::set(&derive, &"salt".into(), &Uint8Array::from(salt)).map_err(js_error)?;
            Reflect::set(&derive, &"iterations".into(), &JsValue::from(iterations)).map_err(js_error)?;
            let bits = JsValue::from((len * 8) as u32);
            let out = call(&subtle, "deriveBits", &[derive, key, bits]).await?;
            Ok(Uint8Array::new(&out).to_vec())
        };
        Box::pin(async move { derived.await.map_err(CryptoError::Platform) })
    }

    fn seal<'a>(
        &'a self,
        key: &'a [u8; 32],
        nonce: [u8; 12],
        aad: &'a [u8],
        plain: &'a [u8],
    ) -> BoxFuture<'a, Result<Vec<u8>, CryptoError>> {
        Box::pin(async move {
            aes_gcm("encrypt", key, nonce, aad, plain)
                .await
                .map_err(CryptoError::Platform)
        })
    }

    fn open<'a>(
        &'a self,
        key: &'a [u8; 32],
        nonce: [u8; 12],
        aad: &'a [u8],
        sealed: &'a [u8],
    ) -> BoxFuture<'a, Result<Vec<u8>, CryptoError>> {
        // The tag not matching is the only way a well-formed decryption fails.
        Box::pin(async move {
            aes_gcm("decrypt", key, nonce, aad, sealed)
                .await
                .map_err(|_| CryptoError::Rejected)
        })
    }
}

/// `subtle.encrypt` or `subtle.decrypt` with AES-GCM (a 128-bit tag after the ciphertext),
/// `aad` as its additional data.
async fn aes_gcm(
    method: &str,
    key_bytes: &[u8; 32],
    nonce: [u8; 12],
    aad: &[u8],
    data: &[u8],
) -> Result<Vec<u8>, String> {
    let subtle = subtle()?;
    let key = key(&subtle, KeyId::Aes(*key_bytes)).await?;
    let alg = object(&[("name", "AES-GCM")])?;
    Reflect::set(&alg, &"iv".into(), &Uint8Array::from(&nonce[..])).map_err(js_error)?;
    if !aad.is_empty() {
        Reflect::set(&alg, &"additionalData".into(), &Uint8Array::from(aad)).map_err(js_error)?;
    }
    let out = call(&subtle, method, &[alg, key, Uint8Array::from(data).into()]).await?;
    Ok(Uint8Array::new(&out).to_vec())
}
