//! Tokens kept in memory until shortly before they expire (the gateway's own, and those got by
//! exchange for a caller), by a key their holder makes; bounded.

use std::collections::HashMap;
use std::sync::Mutex;

use http::HeaderValue;

use super::token::{TokenError, Tokens};

/// A token is renewed this long before it expires (at most half its life).
const EARLY_MS: u64 = 30_000;
/// The lifetime assumed for a token whose answer said none.
const DEFAULT_LIFETIME_MS: u64 = 300_000;

struct Kept {
    header: HeaderValue,
    renew_at_ms: u64,
}

/// The tokens kept, at most `max`.
pub(crate) struct KeptTokens {
    map: Mutex<HashMap<String, Kept>>,
    max: usize,
}

impl KeptTokens {
    /// None kept yet.
    pub fn new(max: usize) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            max,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Kept>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The `Authorization` value kept under `key`, unless it is due for renewal at `now_ms`.
    pub fn get(&self, key: &str, now_ms: u64) -> Option<HeaderValue> {
        self.lock()
            .get(key)
            .filter(|t| t.renew_at_ms > now_ms)
            .map(|t| t.header.clone())
    }

    /// Keeps what a token endpoint gave under `key`: its `Authorization` value.
    pub fn keep(&self, key: String, tokens: &Tokens, now_ms: u64) -> Result<HeaderValue, TokenError> {
        let header = HeaderValue::from_str(&format!("Bearer {}", tokens.access_token))
            .map_err(|_| TokenError::Malformed("the access token cannot be sent in a header".into()))?;
        let lifetime = tokens
            .expires_in
            .map_or(DEFAULT_LIFETIME_MS, |s| s.saturating_mul(1000));
        let renew_at_ms = now_ms + lifetime.saturating_sub(EARLY_MS.min(lifetime / 2));
        let mut kept = self.lock();
        if kept.len() >= self.max {
            kept.retain(|_, t| t.renew_at_ms > now_ms);
            if kept.len() >= self.max {
                kept.clear();
            }
        }
        kept.insert(
            key,
            Kept {
                header: header.clone(),
                renew_at_ms,
            },
        );
        Ok(header)
    }

    /// Drops the token kept under `key` (it was refused).
    pub fn remove(&self, key: &str) {
        self.lock().remove(key);
    }
}
