//! PKCE (RFC 7636) with S256, the only method the gateway uses: a verifier of 43 characters from
//! 32 random bytes, and its challenge.

use base64::Engine;
use sha2::Digest;

use crate::ports::Ids;

/// One authorization's PKCE pair.
#[derive(Clone, PartialEq, Eq)]
pub struct Pkce {
    /// Kept by the gateway until the code is redeemed, once.
    pub verifier: String,
    /// Sent on the authorization request, with `code_challenge_method=S256`.
    pub challenge: String,
}

impl std::fmt::Debug for Pkce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pkce(challenge {})", self.challenge)
    }
}

/// The S256 challenge of a verifier.
pub fn challenge_of(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()))
}

impl Pkce {
    /// A fresh pair.
    pub fn new(ids: &dyn Ids) -> Self {
        let verifier =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(crate::registry::seal::random_bytes(ids));
        Self {
            challenge: challenge_of(&verifier),
            verifier,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::SeqIds;

    #[test]
    fn the_rfcs_example_and_fresh_pairs() {
        // RFC 7636 Appendix B.
        assert_eq!(
            challenge_of("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let ids = SeqIds::default();
        let (a, b) = (Pkce::new(&ids), Pkce::new(&ids));
        assert_eq!(a.verifier.len(), 43);
        assert!(a
            .verifier
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_ne!(a.verifier, b.verifier);
        assert_eq!(a.challenge, challenge_of(&a.verifier));
        assert!(!format!("{a:?}").contains(&a.verifier));
    }
}
