//! Rate-limit buckets in Redis (`MCPGW_REDIS_URL`), so that every instance sharing the Redis
//! shares one budget. The bucket arithmetic runs in one Lua script per request (atomic, on
//! Redis's clock, so instances need not agree on the time); its outcome is turned into a
//! decision by the core's own formula.

use async_trait::async_trait;
use mcpgw_core::security::ratelimit::{decision, Decision, Limiter, LimiterError, Rule};
use std::time::Duration;

/// How long one bucket update may take before the request is let through without it.
const TAKE_TIMEOUT: Duration = Duration::from_millis(500);

/// The token bucket of `ratelimit::take`, in Lua: KEYS[1] the bucket; ARGV limit, window (ms),
/// cost (0: only look).
/// Returns {allowed (0/1), tokens left (as a string: Lua numbers would be truncated)}.
const SCRIPT: &str = r#"
local limit = tonumber(ARGV[1])
local window_ms = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local per_ms = limit / window_ms
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(b[1])
local at = tonumber(b[2])
if tokens == nil or at == nil then
  tokens = limit
else
  tokens = math.min(limit, tokens + math.max(0, now - at) * per_ms)
end
local cost = tonumber(ARGV[3])
local allowed = 0
if tokens >= math.max(cost, 1) then
  tokens = tokens - cost
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], window_ms * 2)
return {allowed, tostring(tokens)}
"#;

/// Buckets in Redis.
pub struct RedisLimiter {
    redis: crate::shared::Redis,
    script: redis::Script,
}

impl RedisLimiter {
    /// Buckets on `redis`.
    pub fn new(conn: crate::shared::Redis) -> Self {
        Self {
            redis: conn,
            script: redis::Script::new(SCRIPT),
        }
    }
}

#[async_trait]
impl Limiter for RedisLimiter {
    async fn take(&self, key: &str, rule: Rule, _now_ms: u64, cost: u32) -> Result<Decision, LimiterError> {
        let mut conn = self.redis.conn();
        let mut invocation = self.script.key(format!("mcpgw:rl:{key}"));
        let call = invocation
            .arg(rule.limit)
            .arg(u64::from(rule.window_secs) * 1000)
            .arg(cost)
            .invoke_async(&mut conn);
        let (allowed, tokens): (i64, String) = tokio::time::timeout(TAKE_TIMEOUT, call)
            .await
            .map_err(|_| "timed out".to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
            .map_err(|e| {
                tracing::warn!(error = %e, "rate limiter unreachable: letting the request through");
                LimiterError(e)
            })?;
        let tokens: f64 = tokens
            .parse()
            .map_err(|_| LimiterError(format!("bad bucket state '{tokens}'")))?;
        Ok(decision(rule, allowed == 1, tokens))
    }
}
