//! A session's POST answered as an SSE stream that its work outlives (SEP-1699): the stream
//! opens with a priming event (an id to resume from, no data, and `retry:`); each message is
//! logged for replay as it is sent; where an upstream closed its own stream to be polled, a
//! client that speaks 2025-11-25 or later is asked to poll likewise (`retry:`, then the end of
//! the stream); and the work runs to its end whether or not anyone still reads, its answer
//! logged, then an empty event that marks the stream's end in the log. A GET with
//! `Last-Event-ID` replays what followed and goes on until that mark (see
//! [`crate::session::Sessions::resume`]).

use std::sync::Arc;

use bytes::Bytes;
use futures::{stream, StreamExt};

use super::Outbound;
use crate::platform::{boxed, BoxStream, MaybeSend, MaybeSync};
use crate::ports::Spawner;
use crate::proto::jsonrpc::Json;
use crate::session::hub::Frame;
use crate::session::Sessions;

/// How long a client waits before it resumes a stream that broke (the priming event's
/// `retry:`).
pub(super) const RETRY_MS: u64 = 1_000;

/// Frames a client may have waiting before the work waits for it.
const QUEUE: usize = 64;

/// Messages a stream's work may say once nobody reads it (what an event log keeps of a stream):
/// past them, the work ends.
const UNREAD: usize = 256;

/// Where a POST stream's work goes.
pub(super) struct PostStream {
    pub sessions: Arc<Sessions>,
    pub spawner: Arc<dyn Spawner>,
    /// The session.
    pub sid: String,
    /// The stream's name in the event log.
    pub name: String,
    /// Whether the client polls as SEP-1699 says (it speaks 2025-11-25 or later).
    pub polls: bool,
    /// Whether work spawned for the request goes on after its response ends (natively; not in
    /// a Worker, where the stream then stays the work, read to its end).
    pub outlives: bool,
}

impl PostStream {
    /// The SSE body of a POST whose work is `first` then `rest`; `pack` makes the final event
    /// of the answers.
    pub fn serve(
        self,
        first: Outbound,
        rest: BoxStream<'static, Outbound>,
        pack: impl Fn(Vec<Json>) -> String + MaybeSend + MaybeSync + 'static,
    ) -> BoxStream<'static, Bytes> {
        let priming = Frame::priming(format!("{}.0", self.name), RETRY_MS).to_bytes();
        let Self {
            sessions,
            spawner,
            sid,
            name,
            polls,
            outlives,
        } = self;
        if !outlives {
            return drive(
                sessions,
                sid,
                name,
                priming,
                stream::once(futures::future::ready(first)).chain(rest),
                pack,
            );
        }
        // The client's frames wait for it to read them (its pace is the work's); once it has
        // gone (or was told to poll) the work goes on unread, for at most what the log keeps.
        let (mut tx, rx) = futures::channel::mpsc::channel::<Bytes>(QUEUE);
        let _ = tx.try_send(priming);
        let running = sessions.stream_running(&sid, &name);
        spawner.spawn(boxed(async move {
            use futures::SinkExt;
            let _running = running;
            let mut live = Some(tx);
            let mut unread = 0;
            let mut work = stream::once(futures::future::ready(first)).chain(rest);
            while let Some(o) = work.next().await {
                // Nobody reads, and a resumption could not replay more: the work ends here.
                if live.is_none() && unread >= UNREAD && matches!(o, Outbound::Message(_)) {
                    break;
                }
                let frame = match o {
                    Outbound::KeepAlive => Frame::keepalive(),
                    Outbound::Poll { retry_ms } => {
                        if let (true, Some(mut t)) = (polls, live.take()) {
                            let _ = t.send(Frame::retry(retry_ms).to_bytes()).await;
                        }
                        continue;
                    }
                    Outbound::Message(m) => {
                        let seq = sessions.append(&sid, &name, m.0.clone()).await;
                        Frame::message(Some(format!("{name}.{seq}")), m.0)
                    }
                    Outbound::Done(answers) => {
                        let data = pack(answers);
                        let seq = sessions.append(&sid, &name, data.clone()).await;
                        Frame::message(Some(format!("{name}.{seq}")), data)
                    }
                };
                match live.as_mut() {
                    Some(t) => {
                        if t.send(frame.to_bytes()).await.is_err() {
                            live = None;
                        }
                    }
                    None => unread += 1,
                }
            }
            sessions.append(&sid, &name, String::new()).await;
        }));
        Box::pin(rx)
    }
}

/// The stream as the work itself, logged as it is read (where spawned work would stop with
/// the request): the priming event, each message, the answer, then the end mark in the log.
fn drive(
    sessions: Arc<Sessions>,
    sid: String,
    name: String,
    priming: Bytes,
    work: impl futures::Stream<Item = Outbound> + MaybeSend + 'static,
    pack: impl Fn(Vec<Json>) -> String + MaybeSend + MaybeSync + 'static,
) -> BoxStream<'static, Bytes> {
    let pack = Arc::new(pack);
    let frames = work.then(move |o| {
        let (sessions, sid, name, pack) = (sessions.clone(), sid.clone(), name.clone(), pack.clone());
        async move {
            let (data, last) = match o {
                Outbound::KeepAlive | Outbound::Poll { .. } => return Frame::keepalive().to_bytes(),
                Outbound::Message(m) => (m.0, false),
                Outbound::Done(answers) => (pack(answers), true),
            };
            let seq = sessions.append(&sid, &name, data.clone()).await;
            if last {
                sessions.append(&sid, &name, String::new()).await;
            }
            Frame::message(Some(format!("{name}.{seq}")), data).to_bytes()
        }
    });
    Box::pin(stream::once(futures::future::ready(priming)).chain(frames))
}
