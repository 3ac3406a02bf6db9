//! Live SSE streams of this process, by session: where server-initiated messages (list_changed,
//! legacy SSE responses) are delivered. State that must survive the process lives in the
//! [`crate::ports::SessionStore`] and [`crate::ports::EventStore`]; this holds only open channels.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::channel::mpsc::{channel, Receiver, Sender};
use futures::Stream;

/// One SSE event, or a comment (which every SSE parser skips: used as a keep-alive).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Frame {
    /// The `event:` field (`message`, `endpoint`), if any.
    pub event: Option<&'static str>,
    /// The `id:` field, if any.
    pub id: Option<String>,
    /// The `data:` payload.
    pub data: String,
    /// A comment line instead of an event.
    pub comment: Option<&'static str>,
    /// The `retry:` field (ms), if any.
    pub retry: Option<u64>,
}

impl Frame {
    /// A `message` event carrying a JSON-RPC message.
    pub fn message(id: Option<String>, data: String) -> Self {
        Self {
            event: Some("message"),
            id,
            data,
            comment: None,
            retry: None,
        }
    }

    /// A stream's first event (SEP-1699): an id to resume from and no data, with how long a
    /// client waits before it resumes.
    pub fn priming(id: String, retry_ms: u64) -> Self {
        Self {
            event: None,
            id: Some(id),
            data: String::new(),
            comment: None,
            retry: Some(retry_ms),
        }
    }

    /// A stream's last words before it closes mid-work: when to resume it.
    pub fn retry(retry_ms: u64) -> Self {
        Self {
            event: None,
            id: None,
            data: String::new(),
            comment: None,
            retry: Some(retry_ms),
        }
    }

    /// The legacy transport's `endpoint` event: where to POST messages.
    pub fn endpoint(url: String) -> Self {
        Self {
            event: Some("endpoint"),
            id: None,
            data: url,
            comment: None,
            retry: None,
        }
    }

    /// A keep-alive comment.
    pub fn keepalive() -> Self {
        Self {
            event: None,
            id: None,
            data: String::new(),
            comment: Some("keepalive"),
            retry: None,
        }
    }

    /// The wire form: fields, one `data:` line per payload line, a blank line.
    pub fn to_bytes(&self) -> Bytes {
        if let Some(c) = self.comment {
            return Bytes::from(format!(": {c}\n\n"));
        }
        let mut s = String::with_capacity(self.data.len() + 48);
        if let Some(e) = self.event {
            s.push_str("event: ");
            s.push_str(e);
            s.push('\n');
        }
        if let Some(id) = &self.id {
            s.push_str("id: ");
            s.push_str(id);
            s.push('\n');
        }
        if let Some(ms) = self.retry {
            s.push_str(&format!("retry: {ms}\n"));
            // A field-only event: `data:` with nothing after it (no message to parse).
            if self.data.is_empty() {
                s.push_str("data:\n\n");
                return Bytes::from(s);
            }
        }
        for line in self.data.split('\n') {
            s.push_str("data: ");
            s.push_str(line.strip_suffix('\r').unwrap_or(line));
            s.push('\n');
        }
        s.push('\n');
        Bytes::from(s)
    }
}

/// One open `subscriptions/listen` stream: it finds its changes itself (see the engine); the
/// hub gives it keep-alives and ends it at shutdown.
struct Listener {
    conn: u64,
    tx: Sender<Frame>,
    held: Held,
}

/// The credential a stream was opened with: the stream lasts no longer than it does (its expiry,
/// or its revocation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Held {
    /// The token's `jti`, if it had one.
    pub jti: Option<String>,
    /// When the token expires (ms since the epoch).
    pub until: Option<u64>,
}

impl Held {
    /// The credential of `identity` (none when auth is off: nothing lapses).
    pub fn of(identity: Option<&crate::security::auth::Identity>) -> Self {
        identity.map_or_else(Self::default, |i| Self {
            jti: i.jti.clone(),
            until: i.expires_ms,
        })
    }

    fn lapsed(&self, now: u64, revoked: &dyn Fn(&str) -> bool) -> bool {
        self.until.is_some_and(|u| u <= now) || self.jti.as_deref().is_some_and(revoked)
    }
}

/// One open stream of a session.
struct Conn {
    conn: u64,
    tx: Sender<Frame>,
    held: Held,
}

#[derive(Default)]
struct HubState {
    next_conn: u64,
    closed: bool,
    conns: HashMap<String, Vec<Conn>>,
    listeners: Vec<Listener>,
}

/// Frames a stream may have waiting when none is given: its client reads them as they come, so
/// this many unread means it stopped reading.
pub(crate) const DEFAULT_QUEUE: usize = 1024;

/// Open streams by session id. Each stream's queue is bounded: a stream whose client does not
/// read it (its queue full) is closed rather than left to grow. A streamable HTTP client resumes
/// from the session's event log; a legacy SSE stream is its session, which ends with it.
pub(crate) struct Hub {
    state: Mutex<HubState>,
    queue: usize,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new(DEFAULT_QUEUE)
    }
}

/// Puts `frame` on `tx`: false when the stream is gone or its client has stopped reading (then
/// it is to be closed).
fn offer(tx: &mut Sender<Frame>, frame: Frame) -> bool {
    tx.try_send(frame).is_ok()
}

impl Hub {
    /// A hub whose streams queue at most `queue` frames each.
    pub fn new(queue: usize) -> Self {
        Self {
            state: Mutex::default(),
            queue: queue.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a stream for `session`, opened with credential `held`; `None` once the gateway is
    /// shutting down.
    pub fn attach(&self, session: &str, held: Held) -> Option<(u64, Receiver<Frame>)> {
        let mut st = self.lock();
        if st.closed {
            return None;
        }
        st.next_conn += 1;
        let conn = st.next_conn;
        let (tx, rx) = channel(self.queue);
        st.conns
            .entry(session.to_string())
            .or_default()
            .push(Conn { conn, tx, held });
        Some((conn, rx))
    }

    /// Ends the streams whose credential has lapsed by `now` (expired, or `revoked`); returns
    /// how many.
    pub fn lapse(&self, now: u64, revoked: &dyn Fn(&str) -> bool) -> usize {
        let mut st = self.lock();
        let before = st.conns.values().map(Vec::len).sum::<usize>() + st.listeners.len();
        st.conns.retain(|_, list| {
            list.retain(|c| !c.held.lapsed(now, revoked));
            !list.is_empty()
        });
        st.listeners.retain(|l| !l.held.lapsed(now, revoked));
        before - (st.conns.values().map(Vec::len).sum::<usize>() + st.listeners.len())
    }

    /// Forgets one stream.
    pub fn detach(&self, session: &str, conn: u64) {
        let mut st = self.lock();
        if let Some(list) = st.conns.get_mut(session) {
            list.retain(|c| c.conn != conn);
            if list.is_empty() {
                st.conns.remove(session);
            }
        }
    }

    /// Delivers to one live stream of the session (each message goes on exactly one stream):
    /// the newest, because a client that reconnects has abandoned the older ones, which a runtime
    /// may not notice until it next writes to them.
    pub fn send(&self, session: &str, frame: Frame) -> bool {
        let mut st = self.lock();
        let Some(list) = st.conns.get_mut(session) else {
            return false;
        };
        list.retain(|c| !c.tx.is_closed());
        // The newest stream that takes it; one that cannot (its client stopped reading) closes.
        let mut delivered = false;
        let mut behind = vec![];
        for c in list.iter_mut().rev() {
            if offer(&mut c.tx, frame.clone()) {
                delivered = true;
                break;
            }
            behind.push(c.conn);
        }
        list.retain(|c| !behind.contains(&c.conn));
        delivered
    }

    /// Sends a keep-alive to every open stream and forgets the ones whose client is gone;
    /// returns how many are open.
    pub fn keepalive(&self) -> usize {
        let mut st = self.lock();
        let mut open = 0;
        st.conns.retain(|_, list| {
            list.retain_mut(|c| offer(&mut c.tx, Frame::keepalive()));
            open += list.len();
            !list.is_empty()
        });
        st.listeners.retain_mut(|l| offer(&mut l.tx, Frame::keepalive()));
        open + st.listeners.len()
    }

    /// Opens a `subscriptions/listen` stream, opened with credential `held`: its channel carries
    /// keep-alives and closes at shutdown or when the credential lapses; `None` once the gateway
    /// is shutting down.
    pub fn listen(&self, held: Held) -> Option<(u64, Receiver<Frame>)> {
        let mut st = self.lock();
        if st.closed {
            return None;
        }
        st.next_conn += 1;
        let conn = st.next_conn;
        let (tx, rx) = channel(self.queue);
        st.listeners.push(Listener { conn, tx, held });
        Some((conn, rx))
    }

    /// Forgets one listen stream.
    pub fn unlisten(&self, conn: u64) {
        self.lock().listeners.retain(|l| l.conn != conn);
    }

    /// Sessions with at least one live stream.
    pub fn sessions(&self) -> Vec<String> {
        self.lock().conns.keys().cloned().collect()
    }

    /// True when the session has an open stream.
    pub fn has_stream(&self, session: &str) -> bool {
        self.lock().conns.get(session).is_some_and(|c| !c.is_empty())
    }

    /// Ends every stream of a session.
    pub fn close(&self, session: &str) {
        self.lock().conns.remove(session);
    }

    /// Ends every stream and refuses new ones (graceful shutdown).
    pub fn shutdown(&self) {
        let mut st = self.lock();
        st.closed = true;
        st.conns.clear();
        st.listeners.clear();
    }

    /// True once [`Hub::shutdown`] has run.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Number of open streams (session streams and listen streams).
    pub fn open_streams(&self) -> usize {
        let st = self.lock();
        st.conns.values().map(Vec::len).sum::<usize>() + st.listeners.len()
    }
}

/// A stream that runs a clean-up when the client goes away (the body is dropped).
pub(crate) struct OnDrop<S> {
    inner: S,
    on_drop: Option<DropFn>,
}

#[cfg(not(target_family = "wasm"))]
pub(crate) type DropFn = Box<dyn FnOnce() + Send>;
#[cfg(target_family = "wasm")]
pub(crate) type DropFn = Box<dyn FnOnce()>;

impl<S> OnDrop<S> {
    pub fn new(inner: S, on_drop: DropFn) -> Self {
        Self {
            inner,
            on_drop: Some(on_drop),
        }
    }
}

impl<S: Stream + Unpin> Stream for OnDrop<S> {
    type Item = S::Item;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

impl<S> Drop for OnDrop<S> {
    fn drop(&mut self) {
        if let Some(f) = self.on_drop.take() {
            f();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[test]
    fn frames_split_multiline_data() {
        let f = Frame::message(Some("p1.2".into()), "a\nb".into());
        assert_eq!(
            f.to_bytes(),
            Bytes::from("event: message\nid: p1.2\ndata: a\ndata: b\n\n")
        );
    }

    #[test]
    fn keepalive_reaches_every_stream_and_drops_dead_ones() {
        let hub = Hub::default();
        let (_a, mut ra) = hub.attach("s", Held::default()).unwrap();
        let (_b, rb) = hub.attach("t", Held::default()).unwrap();
        drop(rb);
        assert_eq!(hub.keepalive(), 1, "the dropped stream is forgotten");
        let got = futures::executor::block_on(ra.next()).unwrap();
        assert_eq!(got.to_bytes(), Bytes::from(": keepalive\n\n"));
    }

    #[test]
    fn listen_streams_get_keepalives_and_end_at_shutdown() {
        let hub = Hub::default();
        let (_a, mut ra) = hub.listen(Held::default()).unwrap();
        let (b, rb) = hub.listen(Held::default()).unwrap();
        assert_eq!(hub.open_streams(), 2);
        hub.unlisten(b);
        drop(rb);
        assert_eq!(hub.keepalive(), 1);
        let got = futures::executor::block_on(ra.next()).unwrap();
        assert_eq!(got.comment, Some("keepalive"));
        hub.shutdown();
        assert!(
            futures::executor::block_on(ra.next()).is_none(),
            "shutdown ends listen streams"
        );
        assert!(hub.listen(Held::default()).is_none());
    }

    /// A stream lasts no longer than the token it was opened with: its expiry, its revocation.
    #[test]
    fn streams_end_with_their_credential() {
        let hub = Hub::default();
        let held = |jti: &str, until: u64| Held {
            jti: Some(jti.into()),
            until: Some(until),
        };
        let (_a, mut ra) = hub.attach("s", held("a", 1_000)).unwrap();
        let (_b, mut rb) = hub.attach("t", held("b", 5_000)).unwrap();
        let (_c, _rc) = hub.attach("u", Held::default()).unwrap();
        let (_l, mut rl) = hub.listen(held("c", 9_000)).unwrap();
        assert_eq!(hub.lapse(999, &|_| false), 0);
        assert_eq!(hub.lapse(1_000, &|_| false), 1, "a expired");
        assert!(futures::executor::block_on(ra.next()).is_none());
        assert_eq!(hub.lapse(2_000, &|j| j == "b" || j == "c"), 2, "b and c revoked");
        assert!(futures::executor::block_on(rb.next()).is_none());
        assert!(futures::executor::block_on(rl.next()).is_none());
        assert_eq!(hub.lapse(u64::MAX, &|_| true), 0, "without a credential nothing lapses");
        assert_eq!(hub.open_streams(), 1);
    }

    /// A client that never reads its stream: the queue stops at its bound and the stream is
    /// closed; the session's other stream, being read, goes on.
    #[test]
    fn a_stream_nobody_reads_is_closed_at_its_bound() {
        let hub = Hub::new(8);
        let (_reader, mut read) = hub.attach("s", Held::default()).unwrap();
        let (_stalled, stalled) = hub.attach("s", Held::default()).unwrap();
        let mut got = 0;
        for i in 0..100 {
            assert!(
                hub.send("s", Frame::message(None, format!("m{i}"))),
                "m{i} went somewhere"
            );
            // The reader reads as things come.
            while let Poll::Ready(Some(_)) = futures::executor::block_on(async { futures::poll!(read.next()) }) {
                got += 1;
            }
        }
        // The stalled (newest) stream took what it could, then was closed; the reader the rest.
        let mut stalled = stalled;
        let mut held = 0;
        while let Poll::Ready(Some(_)) = futures::executor::block_on(async { futures::poll!(stalled.next()) }) {
            held += 1;
        }
        assert!(held <= 8 + 2, "the stalled queue held {held}");
        assert!(
            futures::executor::block_on(stalled.next()).is_none(),
            "and it is closed"
        );
        assert_eq!(got + held, 100);
        assert_eq!(hub.open_streams(), 1);
    }

    #[test]
    fn delivers_to_one_stream_and_shuts_down() {
        let hub = Hub::default();
        let (_c1, mut r1) = hub.attach("s", Held::default()).unwrap();
        let (c2, mut r2) = hub.attach("s", Held::default()).unwrap();
        assert!(hub.send("s", Frame::message(None, "x".into())));
        assert!(!hub.send("other", Frame::message(None, "x".into())));
        let got2 = futures::executor::block_on(async { futures::poll!(r2.next()) });
        assert!(matches!(got2, Poll::Ready(Some(_))), "the newest stream gets it");
        assert!(
            futures::executor::block_on(async { futures::poll!(r1.next()) }).is_pending(),
            "and only it"
        );
        hub.detach("s", c2);
        assert!(futures::executor::block_on(async { futures::poll!(r2.next()) }).is_ready());
        assert!(hub.send("s", Frame::message(None, "y".into())));
        let got1 = futures::executor::block_on(async { futures::poll!(r1.next()) });
        assert!(matches!(got1, Poll::Ready(Some(_))), "then the remaining one");
        hub.shutdown();
        assert!(hub.attach("s", Held::default()).is_none());
        assert!(futures::executor::block_on(r1.next()).is_none());
    }
}
