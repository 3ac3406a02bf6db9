//! The gateway's client assertion for `private_key_jwt` (RFC 7523 §2.2, as the MCP
//! client-credentials extension uses it): a short-lived JWT it signs with its private key,
//! naming itself (`iss` = `sub` = its client id) to the authorization server (`aud`), with a
//! unique `jti`. Signed through the `Crypto` port: WebCrypto on the edge.

use base64::Engine;
use serde_json::{json, Value};

use crate::ports::{Crypto, CryptoError, Ids, SignatureAlg};

/// How long an assertion is good for.
const LIFETIME_SECS: u64 = 60;

/// Why no assertion could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssertionError {
    /// The key is not a private JWK of a kind the gateway signs with.
    #[error("the private key is not a private RSA, P-256 or Ed25519 JWK ({0})")]
    Key(String),
    /// Signing failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// The algorithm a private JWK signs with.
pub fn alg_of(jwk: &Value) -> Result<(SignatureAlg, &'static str), AssertionError> {
    let has_d = jwk.get("d").and_then(Value::as_str).is_some_and(|d| !d.is_empty());
    let kind = (jwk["kty"].as_str(), jwk["crv"].as_str());
    let alg = match kind {
        (Some("RSA"), _) => (SignatureAlg::Rs256, "RS256"),
        (Some("EC"), Some("P-256")) => (SignatureAlg::Es256, "ES256"),
        (Some("OKP"), Some("Ed25519")) => (SignatureAlg::EdDsa, "EdDSA"),
        _ => return Err(AssertionError::Key(format!("kty {:?}, crv {:?}", kind.0, kind.1))),
    };
    if !has_d {
        return Err(AssertionError::Key("no private part 'd'".into()));
    }
    Ok(alg)
}

/// A client assertion of `client_id` for `audience`, signed with `private_jwk` (JSON text).
pub async fn client_assertion(
    crypto: &dyn Crypto,
    ids: &dyn Ids,
    now_ms: u64,
    client_id: &str,
    audience: &str,
    private_jwk: &str,
) -> Result<String, AssertionError> {
    let jwk: Value = serde_json::from_str(private_jwk).map_err(|e| AssertionError::Key(e.to_string()))?;
    let (alg, name) = alg_of(&jwk)?;
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let mut header = json!({"alg": name, "typ": "JWT"});
    if let Some(kid) = jwk.get("kid").and_then(Value::as_str) {
        header["kid"] = json!(kid);
    }
    let iat = now_ms / 1000;
    let claims = json!({"iss": client_id, "sub": client_id, "aud": audience, "iat": iat,
        "exp": iat + LIFETIME_SECS, "jti": ids.new_id()});
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let members = crate::security::jwt::key_members(&jwk, true).to_string();
    let signature = crypto.sign(alg, &members, input.as_bytes()).await?;
    Ok(format!("{input}.{}", b64(&signature)))
}

#[cfg(all(test, not(target_family = "wasm")))]
mod tests {
    use super::*;
    use crate::fixtures::SeqIds;
    use crate::security::RustCrypto;

    const ES256: &str = r#"{"kty":"EC","crv":"P-256","x":"OXxrGN3VqV6EmYgq3ITirPpCgeARrC0Ar_osUdYBEkM","y":"5dUpNhDmoZp6Iku36tuAE4oA7TR36-BhNug1fL2_hQ0","d":"R5YSY5QhBIfeKq7R3iQ19EFGNmlhV5ibUZAQqnKIGfY","kid":"test-es-1"}"#;

    #[test]
    fn an_assertion_names_the_client_to_the_server_and_verifies_with_its_public_key() {
        let ids = SeqIds::default();
        let make = || {
            futures::executor::block_on(client_assertion(
                &RustCrypto,
                &ids,
                1_000_000,
                "gw",
                "https://as.example",
                ES256,
            ))
            .expect("assertion")
        };
        let jwt = make();
        let parts: Vec<&str> = jwt.split('.').collect();
        let decode = |p: &str| -> Value {
            serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()
        };
        assert_eq!(
            decode(parts[0]),
            json!({"alg": "ES256", "typ": "JWT", "kid": "test-es-1"})
        );
        let c = decode(parts[1]);
        assert_eq!(
            (c["iss"].clone(), c["sub"].clone(), c["aud"].clone()),
            (json!("gw"), json!("gw"), json!("https://as.example"))
        );
        assert_eq!(c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(), LIFETIME_SECS);
        let public = crate::security::jwt::key_members(&serde_json::from_str(ES256).unwrap(), false).to_string();
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[2])
            .unwrap();
        let message = format!("{}.{}", parts[0], parts[1]);
        assert!(
            futures::executor::block_on(RustCrypto.verify(SignatureAlg::Es256, &public, message.as_bytes(), &sig))
                .unwrap()
        );
        let other = make();
        assert_ne!(
            decode(other.split('.').nth(1).unwrap())["jti"],
            c["jti"],
            "a fresh jti each time"
        );
        // A public key, or a key of another kind, is refused saying why.
        let public_only = r#"{"kty":"EC","crv":"P-256","x":"a","y":"b"}"#;
        assert!(futures::executor::block_on(client_assertion(&RustCrypto, &ids, 0, "gw", "a", public_only)).is_err());
        assert!(alg_of(&json!({"kty": "oct", "k": "x"})).is_err());
    }
}
