//! Client sessions: their state between requests (through the [`SessionStore`] port), the event
//! log a stream resumes from (`Last-Event-ID`, through the [`EventStore`] port), the live streams
//! of this process ([`hub`]), admission of new sessions, expiry, and the fan-out of
//! server-initiated messages (`list_changed` after the registry changed) to every open stream.
//!
//! Lives here: what a session is and how long it lasts. Not here: MCP methods (the engine), how
//! messages are framed for a transport (the faces), upstream sessions (federation, which hears
//! of a session's end through [`Sessions::on_end`]).

pub(crate) mod hub;
pub(crate) mod peers;
mod quota;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::platform::{MaybeSend, MaybeSync};
use crate::ports::{Clock, EventStore, Ids, Kind, SessionState, SessionStore, StoredEvent};
use crate::proto::jsonrpc;
use crate::proto::method::Listed;
use crate::registry::Registry;
use hub::{Frame, Hub};
use peers::{Note, Peers};

/// The stream name of standalone GET streams in the event log.
pub(crate) const STANDALONE: &str = "g";

/// Told the id of every session that ends (deleted, expired, or its legacy stream closed).
pub(crate) type EndHook = Box<dyn EndFn>;

/// What an [`EndHook`] is: `Send + Sync` on native targets.
pub(crate) trait EndFn: Fn(&str) + MaybeSend + MaybeSync {}
impl<F: Fn(&str) + MaybeSend + MaybeSync> EndFn for F {}

/// Why a new session is not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The gateway holds `max_sessions` and none is idle enough to go: try again later.
    Full,
    /// The client holds its quota of sessions, each with an open stream: it must close one.
    AtQuota,
}

/// How long sessions live and how many there may be.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Idle sessions expire after this long.
    pub ttl_ms: u64,
    /// At most this many sessions at once.
    pub max_sessions: usize,
    /// At most this many per client (subject, or address when anonymous) here; 0: no quota.
    pub per_client: usize,
    /// Frames a stream may have unread before it is closed.
    pub stream_queue: usize,
}

/// The session service of one gateway.
pub(crate) struct Sessions {
    store: Arc<dyn SessionStore>,
    events: Arc<dyn EventStore>,
    hub: Hub,
    registry: Arc<Registry>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn Ids>,
    limits: Limits,
    /// Sessions admitted so far (every 64th sweeps idle ones).
    admitted: AtomicU64,
    /// Names of POST streams in the event log.
    stream_seq: AtomicU64,
    /// The POST streams whose work runs in this process, (session, stream) → the last event a
    /// resumption of it has read.
    running: Mutex<HashMap<(String, String), u64>>,
    on_end: Mutex<Vec<EndHook>>,
    /// The other instances serving these sessions, if any.
    peers: Peers,
    /// Sessions per client here.
    quota: quota::Quota,
}

impl Sessions {
    /// Sessions kept in `store`, their streams logged in `events`, shared with other instances
    /// through `peers`.
    pub fn new(
        store: Arc<dyn SessionStore>,
        events: Arc<dyn EventStore>,
        registry: Arc<Registry>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn Ids>,
        limits: Limits,
        peers: Peers,
    ) -> Self {
        Self {
            peers,
            store,
            events,
            hub: Hub::new(limits.stream_queue),
            registry,
            clock,
            ids,
            quota: quota::Quota::new(limits.per_client),
            limits,
            admitted: AtomicU64::new(0),
            stream_seq: AtomicU64::new(0),
            running: Mutex::new(HashMap::new()),
            on_end: Mutex::new(Vec::new()),
        }
    }

    /// Calls `hook` with the id of every session that ends from now on.
    pub fn on_end(&self, hook: EndHook) {
        self.on_end.lock().unwrap_or_else(|e| e.into_inner()).push(hook);
    }

    /// This process's live streams.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The other instances serving these sessions.
    pub fn peers(&self) -> &Peers {
        &self.peers
    }

    /// A session as stored, untouched.
    pub async fn get(&self, id: &str) -> Option<SessionState> {
        self.store.get(id).await
    }

    /// Stores a session (new or changed); a new one counts in its client's quota from now.
    pub async fn put(&self, s: SessionState) {
        self.quota.confirm(&s.id);
        self.store.put(s).await
    }

    /// A live session, touched: `None` if unknown, expired (then it ends now), owned by another
    /// subject than `subject`, or bound to another virtual server than `server`.
    pub async fn load(&self, id: &str, subject: Option<&str>, server: Option<&str>) -> Option<SessionState> {
        let mut s = self.store.get(id).await?;
        // Another caller's session does not exist for this one.
        if s.owner.is_some() && s.owner.as_deref() != subject {
            return None;
        }
        let now = self.clock.now_ms();
        if now.saturating_sub(s.last_seen) > self.limits.ttl_ms {
            self.end(id).await;
            return None;
        }
        if s.server.as_deref() != server {
            return None;
        }
        if now.saturating_sub(s.last_seen) >= 1000 {
            s.last_seen = now;
            self.quota.touch(id, now);
            self.store.put(s.clone()).await;
        }
        Some(s)
    }

    /// A new session (not stored yet): named `id` when the adapter chose one, else at random.
    pub fn create(
        &self,
        id: Option<String>,
        owner: Option<String>,
        server: Option<String>,
        legacy_sse: bool,
    ) -> SessionState {
        let now = self.clock.now_ms();
        SessionState {
            id: id.unwrap_or_else(|| self.ids.new_id()),
            protocol_version: None,
            server,
            client_capabilities: json!({}),
            client_info: Value::Null,
            log_level: None,
            legacy_sse,
            created_at: now,
            last_seen: now,
            owner,
        }
    }

    /// Admits session `sid` of `client` (a subject, or an address when anonymous), counted in
    /// its quota from now (until it ends, or [`Sessions::abandon`]). A client at its quota first
    /// gives up its least recently used idle session (one without an open stream); with none
    /// idle it is refused. Idle sessions are swept now and then, and at once when the gateway
    /// holds `max_sessions`. The registry as the new session first sees it becomes the
    /// reference later `list_changed` are measured from.
    pub async fn admit(&self, client: &str, sid: &str) -> Result<(), Refused> {
        let now = self.clock.now_ms();
        let live = |s: &str| self.hub.has_stream(s);
        match self.quota.reserve(client, sid, now, live) {
            Ok(Some(idle)) => self.end(&idle).await,
            Ok(None) => {}
            Err(quota::AtQuota) => return Err(Refused::AtQuota),
        }
        if self.admitted.fetch_add(1, Ordering::Relaxed) % 64 == 63 {
            self.expire().await;
        }
        if self.store.count().await >= self.limits.max_sessions {
            self.expire().await;
        }
        if self.store.count().await < self.limits.max_sessions {
            let _ = self.registry.snapshot().await;
            return Ok(());
        }
        self.quota.release(sid);
        Err(Refused::Full)
    }

    /// A session admitted but never stored (its `initialize` failed): no longer counted.
    pub fn abandon(&self, sid: &str) {
        self.quota.release(sid);
    }

    /// Live sessions in the session store (every instance's, when it is shared).
    pub async fn count(&self) -> usize {
        self.store.count().await
    }

    /// Ends a session: its state, event log and streams go, and the end hooks hear of it, here
    /// and at the other instances.
    pub async fn end(&self, id: &str) {
        self.store.remove(id).await;
        self.forget(id).await;
        self.peers.tell(Note::End { sid: id.to_string() }).await;
    }

    /// What remains of a session whose state is gone already (here: another instance ended it,
    /// or expiry).
    pub async fn forget(&self, id: &str) {
        // Work still running for its streams stops (it looks before each message).
        self.running_streams().retain(|(sid, _), _| sid != id);
        self.quota.release(id);
        self.events.forget(id).await;
        self.hub.close(id);
        for hook in self.on_end.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            hook(id);
        }
    }

    /// Ends the sessions idle for longer than the TTL; returns how many.
    pub async fn expire(&self) -> usize {
        let cutoff = self.clock.now_ms().saturating_sub(self.limits.ttl_ms);
        let gone = self.store.expire(cutoff).await;
        for id in &gone {
            self.forget(id).await;
            self.peers.tell(Note::End { sid: id.clone() }).await;
        }
        gone.len()
    }

    /// When the next session expires if no request touches it first (ms since the epoch).
    pub async fn next_expiry(&self) -> Option<u64> {
        let oldest = self.store.oldest_seen().await?;
        Some(oldest.saturating_add(self.limits.ttl_ms))
    }

    /// A name for a new POST stream in the event log (with this instance's name when others
    /// log into the same one).
    pub fn next_stream(&self) -> String {
        let n = self.stream_seq.fetch_add(1, Ordering::Relaxed) + 1;
        if self.peers.shared() {
            format!("p{n}-{}", self.peers.me())
        } else {
            format!("p{n}")
        }
    }

    /// Logs a message of stream `stream` for replay; its sequence number.
    pub async fn append(&self, sid: &str, stream: &str, data: String) -> u64 {
        self.events.append(sid, stream, data).await
    }

    /// The logged messages of `stream` after `after`.
    pub async fn replay(&self, sid: &str, stream: &str, after: u64) -> Vec<StoredEvent> {
        self.events.replay(sid, stream, after).await
    }

    /// Notes that the work of POST stream `stream` runs here until the guard drops (however
    /// the work ends: finished, or stopped with the request that started it).
    /// None when the session has `MAX_RUNNING` such streams already (the next is read as it is
    /// worked, and ends with its connection).
    pub fn stream_running(self: &Arc<Self>, sid: &str, stream: &str) -> Option<RunningStream> {
        const MAX_RUNNING: usize = 16;
        let key = (sid.to_string(), stream.to_string());
        let mut running = self.running_streams();
        if running.keys().filter(|(s, _)| s == sid).count() >= MAX_RUNNING {
            return None;
        }
        running.insert(key.clone(), 0);
        Some(RunningStream {
            sessions: self.clone(),
            key,
        })
    }

    /// The last event of a running POST stream a resumption has read (none: its session ended,
    /// or the stream does not run here).
    pub fn stream_read(&self, sid: &str, stream: &str) -> Option<u64> {
        self.running_streams()
            .get(&(sid.to_string(), stream.to_string()))
            .copied()
    }

    fn running_streams(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), u64>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What followed event `after` of POST stream `stream`, as it is logged (see
    /// `face::post_stream`): what is there now, then, polling the log, what comes, until the
    /// stream's end (an empty event, not passed on) or `within_ms`. `None` items are
    /// keep-alives while it waits.
    pub fn resume(
        self: &Arc<Self>,
        sid: &str,
        stream: &str,
        after: u64,
        within_ms: u64,
    ) -> crate::platform::BoxStream<'static, Option<StoredEvent>> {
        use futures::StreamExt;
        const POLL_MS: u64 = 200;
        const KEEPALIVE_EVERY: u64 = 15_000 / POLL_MS;
        let (me, sid, stream) = (self.clone(), sid.to_string(), stream.to_string());
        let state = (after, 0u64, false);
        let polled = futures::stream::unfold(state, move |(after, polls, done)| {
            let (me, sid, stream) = (me.clone(), sid.clone(), stream.clone());
            async move {
                if done || polls * POLL_MS > within_ms {
                    return None;
                }
                if polls > 0 {
                    me.clock.sleep(std::time::Duration::from_millis(POLL_MS)).await;
                }
                // Work that no longer runs anywhere (it runs here, or, with other instances, may
                // run there) says nothing more: what is logged is all there is.
                let key = (sid.clone(), stream.clone());
                let alive = me.peers.shared() || me.running_streams().contains_key(&key);
                let events = me.events.replay(&sid, &stream, after).await;
                let last = events.last().map_or(after, |e| e.seq);
                // What has been read: the work may say that much more unread.
                if let Some(read) = me.running_streams().get_mut(&key) {
                    *read = (*read).max(last);
                }
                let ended = !alive || events.iter().any(|e| e.data.is_empty());
                let mut out: Vec<Option<StoredEvent>> =
                    events.into_iter().filter(|e| !e.data.is_empty()).map(Some).collect();
                if out.is_empty() && polls > 0 && polls % KEEPALIVE_EVERY == 0 {
                    out.push(None);
                }
                Some((futures::stream::iter(out), (last, polls + 1, ended)))
            }
        });
        crate::platform::boxed_stream(polled.flatten())
    }

    /// Sends a server-initiated message on a session's stream (its standalone GET stream, logged
    /// for replay, or its legacy SSE stream).
    pub async fn send(&self, sid: &str, data: String) {
        let legacy = self.store.get(sid).await.is_some_and(|s| s.legacy_sse);
        let id = if legacy {
            None
        } else {
            Some(format!(
                "{STANDALONE}.{}",
                self.events.append(sid, STANDALONE, data.clone()).await
            ))
        };
        self.deliver(sid, id, data).await;
    }

    /// Puts a message on the session's stream if this instance holds it; true if it did.
    pub fn deliver_here(&self, sid: &str, id: Option<String>, data: String) -> bool {
        self.hub.send(sid, Frame::message(id, data))
    }

    /// Puts a message on the session's stream: here if this instance holds it, else at the
    /// instance that does (the message is logged already, under `id`, if it is to be).
    pub async fn deliver(&self, sid: &str, id: Option<String>, data: String) {
        // Alone, the message is copied for nobody.
        if !self.peers.shared() {
            self.deliver_here(sid, id, data);
            return;
        }
        if self.deliver_here(sid, id.clone(), data.clone()) {
            return;
        }
        let sid = sid.to_string();
        self.peers.tell(Note::Stream { sid, id, data }).await;
    }

    /// Sends a server-initiated message to every session with a live stream.
    pub async fn broadcast(&self, message: Value) {
        let data = message.to_string();
        for sid in self.hub.sessions() {
            self.send(&sid, data.clone()).await;
        }
    }

    /// Reloads the registry and tells connected clients which lists changed since the last
    /// refresh; returns how many notifications went out per stream.
    pub async fn refresh_registry(&self) -> usize {
        let refreshed = self.registry.refresh().await;
        // A stream lasts no longer than the token it was opened with (its expiry holds even
        // while the store, with the revocations, cannot be read).
        let now = self.clock.now_ms();
        match self.registry.snapshot().await {
            Ok(snap) => self.hub.lapse(now, &|jti| snap.is_revoked(jti)),
            Err(_) => self.hub.lapse(now, &|_| false),
        };
        let kinds = match refreshed {
            Ok(k) => k,
            // The store is unreachable: nothing to announce; the next refresh will see it.
            Err(_) => return 0,
        };
        let lists = list_changes(kinds);
        for l in &lists {
            self.broadcast(jsonrpc::notification(l.changed(), None)).await;
        }
        lists.len()
    }
}

/// A POST stream's work running here (see [`Sessions::stream_running`]).
pub(crate) struct RunningStream {
    sessions: Arc<Sessions>,
    key: (String, String),
}

impl Drop for RunningStream {
    fn drop(&mut self) {
        self.sessions.running_streams().remove(&self.key);
    }
}

/// The `list_changed` notifications that changes of these kinds call for: a change of a
/// virtual server (membership) or an upstream (its catalog) may change every list.
pub(crate) fn list_changes(kinds: impl IntoIterator<Item = Kind>) -> std::collections::BTreeSet<Listed> {
    let mut methods = std::collections::BTreeSet::new();
    for kind in kinds {
        match kind {
            Kind::Tool => methods.insert(Listed::Tools),
            Kind::Resource => methods.insert(Listed::Resources),
            Kind::Prompt => methods.insert(Listed::Prompts),
            _ => {
                methods.extend(Listed::ALL);
                true
            }
        };
    }
    methods
}
