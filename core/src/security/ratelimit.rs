//! Rate limiting: one token bucket per identity and route class. The arithmetic is here, once
//! ([`take`]); where the buckets live is a port ([`Limiter`]): in memory, in Redis (native, so
//! that instances share a budget) or in a Durable Object (edge).

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Mutex;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::platform::{MaybeSend, MaybeSync};

/// `limit` requests per `window_secs`, refilled continuously (a burst of `limit` is allowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// Bucket size: requests allowed in one window.
    pub limit: u32,
    /// Seconds to refill an empty bucket.
    pub window_secs: u32,
}

impl FromStr for Rule {
    type Err = String;
    /// `N/SECONDS`, or `N/s`, `N/min`, `N/h` (e.g. `600/60`, `10/s`).
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("'{s}' is not N/SECONDS (like 600/60) or N/s, N/min, N/h");
        let (n, w) = s.trim().split_once('/').ok_or_else(bad)?;
        let limit: u32 = n.trim().parse().map_err(|_| bad())?;
        let window_secs: u32 = match w.trim() {
            "s" | "sec" | "second" => 1,
            "m" | "min" | "minute" => 60,
            "h" | "hour" => 3600,
            other => other.trim_end_matches('s').parse().map_err(|_| bad())?,
        };
        if limit == 0 || window_secs == 0 || window_secs > 86_400 {
            return Err(format!(
                "'{s}': the limit and the window (up to 86400 s) must be positive"
            ));
        }
        Ok(Rule { limit, window_secs })
    }
}

/// The rules per route class (none: not limited).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RateLimits {
    /// MCP routes (`/mcp`, `/servers/…`, legacy SSE, `/rpc`).
    pub mcp: Option<Rule>,
    /// The REST API.
    pub admin: Option<Rule>,
    /// Refused basic-auth passwords, per client address: past it, basic auth from that address
    /// gets 429 before the password is even looked at.
    pub auth_failures: Option<Rule>,
}

impl RateLimits {
    /// Reads `MCPGW_RATE_LIMIT_MCP`, `MCPGW_RATE_LIMIT_ADMIN` (like `600/60`; default none) and
    /// `MCPGW_RATE_LIMIT_AUTH_FAILURES` (default `20/60`; `off` turns it off) through `get`.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self, crate::settings::ConfigError> {
        let rule = |name: &str| -> Result<Option<Rule>, crate::settings::ConfigError> {
            let value = get(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
            let value = match (name, value) {
                ("MCPGW_RATE_LIMIT_AUTH_FAILURES", None) => Some("20/60".to_string()),
                (_, v) => v,
            };
            match value.filter(|v| v != "off") {
                None => Ok(None),
                Some(v) => v.parse().map(Some).map_err(|message| crate::settings::ConfigError {
                    setting: name.into(),
                    message,
                }),
            }
        };
        Ok(RateLimits {
            mcp: rule("MCPGW_RATE_LIMIT_MCP")?,
            admin: rule("MCPGW_RATE_LIMIT_ADMIN")?,
            auth_failures: rule("MCPGW_RATE_LIMIT_AUTH_FAILURES")?,
        })
    }
}

/// A bucket's state: tokens left at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    /// Tokens (fractional while refilling).
    pub tokens: f64,
    /// When `tokens` was computed, ms since the epoch.
    pub at_ms: u64,
}

/// The outcome of one request against its bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Let it through.
    pub allowed: bool,
    /// The rule's limit.
    pub limit: u32,
    /// Whole tokens left.
    pub remaining: u32,
    /// Seconds until the bucket is full again.
    pub reset_secs: u64,
    /// Seconds until one token is available (0 when allowed).
    pub retry_after_secs: u64,
    /// The rule's window.
    pub window_secs: u32,
}

/// Takes `cost` tokens from `bucket` (a full one if none) at `now_ms`: the new state and the
/// decision. A cost of 0 only looks: allowed while at least one token is left.
pub fn take(bucket: Option<Bucket>, rule: Rule, now_ms: u64, cost: u32) -> (Bucket, Decision) {
    let limit = f64::from(rule.limit);
    let per_ms = limit / (f64::from(rule.window_secs) * 1000.0);
    let mut tokens = match bucket {
        None => limit,
        Some(b) => (b.tokens + now_ms.saturating_sub(b.at_ms) as f64 * per_ms).min(limit),
    };
    let allowed = tokens >= f64::from(cost.max(1));
    if allowed {
        tokens -= f64::from(cost);
    }
    (Bucket { tokens, at_ms: now_ms }, decision(rule, allowed, tokens))
}

/// The decision for a bucket left with `tokens` after a request that was (or was not) allowed;
/// for stores that run the bucket arithmetic themselves (the Redis script).
pub fn decision(rule: Rule, allowed: bool, tokens: f64) -> Decision {
    let limit = f64::from(rule.limit);
    let per_ms = limit / (f64::from(rule.window_secs) * 1000.0);
    let secs = |missing: f64| ((missing / per_ms) / 1000.0).ceil().max(0.0) as u64;
    Decision {
        allowed,
        limit: rule.limit,
        remaining: tokens.floor().max(0.0) as u32,
        reset_secs: secs(limit - tokens),
        retry_after_secs: if allowed { 0 } else { secs(1.0 - tokens).max(1) },
        window_secs: rule.window_secs,
    }
}

/// Where buckets live.
#[cfg_attr(not(target_family = "wasm"), async_trait)]
#[cfg_attr(target_family = "wasm", async_trait(?Send))]
pub trait Limiter: MaybeSend + MaybeSync {
    /// Takes `cost` tokens from the bucket `key` under `rule` (0: only look). An error means
    /// the store is not reachable; the gateway then lets the request through.
    async fn take(&self, key: &str, rule: Rule, now_ms: u64, cost: u32) -> Result<Decision, LimiterError>;
}

/// The buckets' store could not be reached (the request is let through).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rate limiter unreachable: {0}")]
pub struct LimiterError(pub String);

/// Buckets in this process's memory (one instance; on the edge, inside one Durable Object).
#[derive(Default)]
pub struct MemoryLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl MemoryLimiter {
    /// Takes a token now; synchronous, for the Durable Object that wraps it.
    pub fn take_now(&self, key: &str, rule: Rule, now_ms: u64, cost: u32) -> Decision {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= 100_000 {
            // Full buckets carry no information: drop them rather than grow without bound.
            let full = |b: &Bucket| now_ms.saturating_sub(b.at_ms) > 86_400_000;
            buckets.retain(|_, b| !full(b));
        }
        let (state, decision) = take(buckets.get(key).copied(), rule, now_ms, cost);
        buckets.insert(key.to_string(), state);
        decision
    }
}

#[cfg_attr(not(target_family = "wasm"), async_trait)]
#[cfg_attr(target_family = "wasm", async_trait(?Send))]
impl Limiter for MemoryLimiter {
    async fn take(&self, key: &str, rule: Rule, now_ms: u64, cost: u32) -> Result<Decision, LimiterError> {
        Ok(self.take_now(key, rule, now_ms, cost))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_with_units() {
        assert_eq!(
            "600/60".parse::<Rule>(),
            Ok(Rule {
                limit: 600,
                window_secs: 60
            })
        );
        assert_eq!(
            "10/s".parse::<Rule>(),
            Ok(Rule {
                limit: 10,
                window_secs: 1
            })
        );
        assert_eq!(
            "100/min".parse::<Rule>(),
            Ok(Rule {
                limit: 100,
                window_secs: 60
            })
        );
        assert_eq!(
            "5/30s".parse::<Rule>(),
            Ok(Rule {
                limit: 5,
                window_secs: 30
            })
        );
        for bad in ["", "10", "0/60", "10/0", "x/60", "10/fortnight"] {
            assert!(bad.parse::<Rule>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bucket_allows_a_burst_then_refills_at_the_rule_rate() {
        let rule = Rule {
            limit: 3,
            window_secs: 60,
        };
        let l = MemoryLimiter::default();
        let d: Vec<Decision> = (0..4).map(|_| l.take_now("k", rule, 1_000, 1)).collect();
        assert_eq!(
            d.iter().map(|d| d.allowed).collect::<Vec<_>>(),
            [true, true, true, false]
        );
        assert_eq!(d.iter().map(|d| d.remaining).collect::<Vec<_>>(), [2, 1, 0, 0]);
        // One token every 20 s.
        assert_eq!(d[3].retry_after_secs, 20);
        assert_eq!(d[3].reset_secs, 60);
        assert!(!l.take_now("k", rule, 20_999, 1).allowed);
        assert!(l.take_now("k", rule, 21_000, 1).allowed);
        // Other keys have their own buckets.
        assert!(l.take_now("other", rule, 21_000, 1).allowed);
        // Looking costs nothing.
        let one = Rule {
            limit: 1,
            window_secs: 60,
        };
        assert!(l.take_now("peek", one, 0, 0).allowed);
        assert!(l.take_now("peek", one, 0, 0).allowed);
        assert!(l.take_now("peek", one, 0, 1).allowed);
        assert!(!l.take_now("peek", one, 0, 0).allowed);
        // A long pause refills to the limit, not beyond.
        let d = l.take_now("k", rule, 10_000_000, 1);
        assert_eq!((d.allowed, d.remaining), (true, 2));
    }
}
