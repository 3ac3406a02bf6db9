//! Sessions shared by every instance on one Redis (`MCPGW_REDIS_URL`): their state
//! ([`RedisSessions`]), the event log a stream resumes from ([`RedisEvents`]), and the bus
//! ([`RedisBus`], pub/sub) on which an instance tells the others what it cannot deliver itself.
//! So any instance behind a balancer without affinity serves any request of any session, and
//! a session outlives the instance that opened it.
//!
//! Keys: `mcpgw:session:<id>` (the state as JSON, expiring a TTL after its last touch) and the
//! sorted set `mcpgw:sessions` (ids by last touch, for expiry and counts); per session
//! `mcpgw:ev:<id>:seq`, `:order` (its streams, oldest first) and `:s:<stream>` (a stream's last
//! events, `seq` and the message on one entry). Multi-key steps are Lua scripts, atomic in Redis.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use mcpgw_core::platform::BoxStream;
use mcpgw_core::ports::{Bus, Cache, EventStore, SessionState, SessionStore, StoredEvent};
use redis::aio::ConnectionManager;

/// How long one Redis step may take before it is given up (the request goes on without it).
const STEP_TIMEOUT: Duration = Duration::from_secs(2);
/// The sorted set of live sessions.
const SESSIONS: &str = "mcpgw:sessions";
/// The bus channel.
const CHANNEL: &str = "mcpgw:bus";

fn session_key(id: &str) -> String {
    format!("mcpgw:session:{id}")
}

fn manager_config() -> redis::aio::ConnectionManagerConfig {
    redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Duration::from_secs(2))
        .set_response_timeout(STEP_TIMEOUT)
        .set_number_of_retries(2)
}

/// The connection every Redis step of this process uses (a multiplexed connection manager),
/// opened again from scratch when steps fail: the manager's own reconnection can stay stuck
/// after Redis restarts (seen here with redis 0.32: every step timing out seconds after Redis
/// was back), so a failed step starts a fresh one (one at a time, retried every second), and
/// steps use it once it answers.
#[derive(Clone)]
pub struct Redis {
    client: redis::Client,
    conn: Arc<std::sync::RwLock<ConnectionManager>>,
    reopening: Arc<std::sync::atomic::AtomicBool>,
}

impl Redis {
    /// Connects (and checks the connection with a PING), within 5 s.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        let mut conn = tokio::time::timeout(
            Duration::from_secs(5),
            ConnectionManager::new_with_config(client.clone(), manager_config()),
        )
        .await
        .map_err(|_| anyhow::anyhow!("no answer within 5 s"))??;
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(Self {
            client,
            conn: Arc::new(std::sync::RwLock::new(conn)),
            reopening: Arc::default(),
        })
    }

    /// The connection for one step.
    pub fn conn(&self) -> ConnectionManager {
        self.conn.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Runs one step within [`STEP_TIMEOUT`]; a failure is logged, starts a fresh connection,
    /// and yields `None`.
    pub async fn step<T>(&self, what: &str, f: impl std::future::Future<Output = redis::RedisResult<T>>) -> Option<T> {
        let failure = match tokio::time::timeout(STEP_TIMEOUT, f).await {
            Ok(Ok(v)) => return Some(v),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out".to_string(),
        };
        tracing::warn!(error = %failure, step = what, "Redis step failed");
        self.reopen();
        None
    }

    fn reopen(&self) {
        use std::sync::atomic::Ordering;
        if self.reopening.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let fresh = ConnectionManager::new_with_config(me.client.clone(), manager_config());
                if let Ok(Ok(mut c)) = tokio::time::timeout(Duration::from_secs(5), fresh).await {
                    let pong: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut c).await;
                    if pong.is_ok() {
                        *me.conn.write().unwrap_or_else(|e| e.into_inner()) = c;
                        tracing::info!("Redis connection opened again");
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            me.reopening.store(false, Ordering::Release);
        });
    }

    /// The client, for connections of their own (pub/sub).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }
}

/// Session state in Redis.
pub struct RedisSessions {
    redis: Redis,
    /// A stored session's key expires this long after its last touch (the session TTL), so
    /// Redis forgets sessions even when no instance is left to expire them.
    ttl_ms: u64,
    expire: redis::Script,
}

/// KEYS[1] the set; ARGV the cutoff, the key prefix. Removes (at most 1000) sessions touched
/// before the cutoff and returns their ids.
const EXPIRE: &str = r#"
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, 1000)
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('DEL', ARGV[2] .. id)
end
return ids
"#;

impl RedisSessions {
    /// Sessions on `conn`, idle ones forgotten by Redis after `ttl_ms`.
    pub fn new(conn: Redis, ttl_ms: u64) -> Self {
        Self {
            redis: conn,
            ttl_ms: ttl_ms.max(1000),
            expire: redis::Script::new(EXPIRE),
        }
    }
}

#[async_trait]
impl SessionStore for RedisSessions {
    async fn get(&self, id: &str) -> Option<SessionState> {
        let mut c = self.redis.conn();
        let text: Option<String> = self
            .redis
            .step(
                "session get",
                redis::cmd("GET").arg(session_key(id)).query_async(&mut c),
            )
            .await
            .flatten()?;
        serde_json::from_str(&text?).ok()
    }

    async fn put(&self, state: SessionState) {
        let Ok(text) = serde_json::to_string(&state) else {
            return;
        };
        let mut c = self.redis.conn();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(session_key(&state.id))
            .arg(text)
            .arg("PX")
            .arg(self.ttl_ms)
            .ignore()
            .cmd("ZADD")
            .arg(SESSIONS)
            .arg(state.last_seen)
            .arg(&state.id)
            .ignore();
        self.redis.step::<()>("session put", pipe.query_async(&mut c)).await;
    }

    async fn remove(&self, id: &str) -> bool {
        let mut c = self.redis.conn();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("DEL")
            .arg(session_key(id))
            .cmd("ZREM")
            .arg(SESSIONS)
            .arg(id)
            .ignore();
        let (n,): (i64,) = self
            .redis
            .step("session remove", pipe.query_async(&mut c))
            .await
            .unwrap_or((0,));
        n > 0
    }

    async fn expire(&self, cutoff_ms: u64) -> Vec<String> {
        let mut c = self.redis.conn();
        let mut call = self.expire.key(SESSIONS);
        call.arg(cutoff_ms).arg("mcpgw:session:");
        self.redis
            .step("session expire", call.invoke_async(&mut c))
            .await
            .unwrap_or_default()
    }

    async fn count(&self) -> usize {
        let mut c = self.redis.conn();
        self.redis
            .step("session count", redis::cmd("ZCARD").arg(SESSIONS).query_async(&mut c))
            .await
            .unwrap_or(0)
    }

    async fn oldest_seen(&self) -> Option<u64> {
        let mut c = self.redis.conn();
        let first: Vec<(String, f64)> = self
            .redis
            .step(
                "session oldest",
                redis::cmd("ZRANGE")
                    .arg(SESSIONS)
                    .arg(0)
                    .arg(0)
                    .arg("WITHSCORES")
                    .query_async(&mut c),
            )
            .await?;
        first.first().map(|(_, score)| *score as u64)
    }
}

/// The event logs in Redis.
pub struct RedisEvents {
    redis: Redis,
    capacity: usize,
    max_streams: usize,
    ttl_ms: u64,
    append: redis::Script,
    forget: redis::Script,
}

/// KEYS: seq, order, the stream's list. ARGV: stream name, message, capacity, max streams, TTL,
/// the prefix of stream lists. Returns the event's sequence number.
const APPEND: &str = r#"
local seq = redis.call('INCR', KEYS[1])
if redis.call('LPOS', KEYS[2], ARGV[1]) == false then
  redis.call('RPUSH', KEYS[2], ARGV[1])
  while redis.call('LLEN', KEYS[2]) > tonumber(ARGV[4]) do
    local old = redis.call('LPOP', KEYS[2])
    redis.call('DEL', ARGV[6] .. old)
  end
end
redis.call('RPUSH', KEYS[3], seq .. '\n' .. ARGV[2])
redis.call('LTRIM', KEYS[3], -tonumber(ARGV[3]), -1)
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[5]) end
return seq
"#;

/// KEYS: seq, order. ARGV: the prefix of stream lists. Deletes a session's logs.
const FORGET: &str = r#"
for _, s in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
  redis.call('DEL', ARGV[1] .. s)
end
redis.call('DEL', KEYS[1], KEYS[2])
return 1
"#;

fn ev(session: &str, what: &str) -> String {
    format!("mcpgw:ev:{session}:{what}")
}

impl RedisEvents {
    /// Logs keeping the last `capacity` events of each stream and the last `max_streams`
    /// streams of each session, forgotten `ttl_ms` after the session's last event.
    pub fn new(conn: Redis, capacity: usize, max_streams: usize, ttl_ms: u64) -> Self {
        Self {
            redis: conn,
            capacity: capacity.max(1),
            max_streams: max_streams.max(1),
            ttl_ms: ttl_ms.max(1000),
            append: redis::Script::new(APPEND),
            forget: redis::Script::new(FORGET),
        }
    }
}

#[async_trait]
impl EventStore for RedisEvents {
    async fn append(&self, session: &str, stream: &str, data: String) -> u64 {
        let mut c = self.redis.conn();
        let mut call = self.append.key(ev(session, "seq"));
        call.key(ev(session, "order"))
            .key(ev(session, &format!("s:{stream}")))
            .arg(stream)
            .arg(data)
            .arg(self.capacity)
            .arg(self.max_streams)
            .arg(self.ttl_ms)
            .arg(ev(session, "s:"));
        // Without Redis the event goes out unlogged (not resumable), under no usable number.
        self.redis
            .step("event append", call.invoke_async(&mut c))
            .await
            .unwrap_or(0)
    }

    async fn replay(&self, session: &str, stream: &str, after_seq: u64) -> Vec<StoredEvent> {
        let mut c = self.redis.conn();
        let entries: Vec<String> = self
            .redis
            .step(
                "event replay",
                redis::cmd("LRANGE")
                    .arg(ev(session, &format!("s:{stream}")))
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut c),
            )
            .await
            .unwrap_or_default();
        entries
            .into_iter()
            .filter_map(|e| {
                let (seq, data) = e.split_once('\n')?;
                let seq: u64 = seq.parse().ok()?;
                (seq > after_seq).then(|| StoredEvent {
                    seq,
                    data: data.to_string(),
                })
            })
            .collect()
    }

    async fn forget(&self, session: &str) {
        let mut c = self.redis.conn();
        let mut call = self.forget.key(ev(session, "seq"));
        call.key(ev(session, "order")).arg(ev(session, "s:"));
        self.redis.step::<i64>("event forget", call.invoke_async(&mut c)).await;
    }
}

/// The bus on Redis pub/sub: one subscription per process, fanned out to every holder of
/// [`Bus::messages`], re-established (after a second) whenever it drops.
pub struct RedisBus {
    redis: Redis,
    subscribers: Arc<Mutex<Vec<futures::channel::mpsc::UnboundedSender<String>>>>,
}

impl RedisBus {
    /// Subscribes (the first time within 5 s, or fails) and keeps subscribing.
    pub async fn start(conn: Redis) -> anyhow::Result<Self> {
        let client = conn.client().clone();
        let subscribers: Arc<Mutex<Vec<futures::channel::mpsc::UnboundedSender<String>>>> = Arc::default();
        let first = tokio::time::timeout(Duration::from_secs(5), subscribe(&client))
            .await
            .map_err(|_| anyhow::anyhow!("no subscription within 5 s"))??;
        let fan = subscribers.clone();
        tokio::spawn(async move {
            let mut pubsub = Some(first);
            loop {
                if let Some(p) = pubsub.take() {
                    let mut messages = p.into_on_message();
                    while let Some(msg) = messages.next().await {
                        let Ok(text) = msg.get_payload::<String>() else {
                            continue;
                        };
                        fan.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .retain(|tx| tx.unbounded_send(text.clone()).is_ok());
                    }
                    tracing::warn!("the Redis bus subscription dropped; subscribing again");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                match subscribe(&client).await {
                    Ok(p) => pubsub = Some(p),
                    Err(e) => tracing::warn!(error = %e, "cannot subscribe to the Redis bus"),
                }
            }
        });
        Ok(Self {
            redis: conn,
            subscribers,
        })
    }
}

async fn subscribe(client: &redis::Client) -> redis::RedisResult<redis::aio::PubSub> {
    let mut p = client.get_async_pubsub().await?;
    p.subscribe(CHANNEL).await?;
    Ok(p)
}

#[async_trait]
impl Bus for RedisBus {
    async fn publish(&self, message: String) {
        let mut c = self.redis.conn();
        self.redis
            .step::<i64>(
                "bus publish",
                redis::cmd("PUBLISH").arg(CHANNEL).arg(message).query_async(&mut c),
            )
            .await;
    }

    fn messages(&self) -> BoxStream<'static, String> {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        self.subscribers.lock().unwrap_or_else(|e| e.into_inner()).push(tx);
        Box::pin(rx)
    }
}

/// The cache in Redis (keys under `mcpgw:cache:`), shared by every instance on it.
pub struct RedisCache {
    redis: Redis,
}

impl RedisCache {
    /// The cache on `conn`.
    pub fn new(conn: Redis) -> Self {
        Self { redis: conn }
    }
}

fn cache_key(key: &str) -> String {
    format!("mcpgw:cache:{key}")
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &str) -> Option<String> {
        let mut c = self.redis.conn();
        self.redis
            .step("cache get", redis::cmd("GET").arg(cache_key(key)).query_async(&mut c))
            .await
            .flatten()
    }

    async fn put(&self, key: &str, value: String, ttl_ms: u64) {
        let mut c = self.redis.conn();
        let mut set = redis::cmd("SET");
        set.arg(cache_key(key)).arg(value).arg("PX").arg(ttl_ms.max(1));
        self.redis.step::<()>("cache put", set.query_async(&mut c)).await;
    }

    async fn incr(&self, key: &str) -> u64 {
        let mut c = self.redis.conn();
        self.redis
            .step("cache incr", redis::cmd("INCR").arg(cache_key(key)).query_async(&mut c))
            .await
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn redis_sessions_and_event_logs_pass_the_suite() {
        let redis = mcpgw_e2e::RedisServer::start().expect("redis-server");
        let conn = Redis::connect(&redis.url).await.expect("connect");
        mcpgw_core::store_suite::sessions(&RedisSessions::new(conn.clone(), 60_000)).await;
        mcpgw_core::store_suite::events(&RedisEvents::new(conn.clone(), 3, 2, 60_000)).await;
        let sleep = |ms: u64| -> mcpgw_core::platform::BoxFuture<'static, ()> {
            Box::pin(tokio::time::sleep(Duration::from_millis(ms)))
        };
        mcpgw_core::store_suite::cache(&RedisCache::new(conn.clone()), &sleep).await;
        // The bus: a message published is heard, by every holder.
        let bus = RedisBus::start(conn).await.expect("bus");
        let (mut one, mut two) = (bus.messages(), bus.messages());
        bus.publish("hello ✓".into()).await;
        for m in [&mut one, &mut two] {
            let got = tokio::time::timeout(Duration::from_secs(5), m.next()).await;
            assert_eq!(got.ok().flatten().as_deref(), Some("hello ✓"));
        }
    }
}
