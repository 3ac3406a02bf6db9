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
use crate::proto::jsonrpc::{self, Json, RequestId, RpcError};
use crate::session::hub::Frame;
use crate::session::Sessions;

/// How long a client waits before it resumes a stream that broke (the priming event's
/// `retry:`).
pub(super) const RETRY_MS: u64 = 1_000;

/// Frames a client may have waiting before the work waits for it.
const QUEUE: usize = 64;

/// Messages a stream's work may say beyond what has been read, once nobody reads it live (what
/// an event log keeps of a stream): past them, the work ends.
const UNREAD: u64 = 256;

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
    /// The ids of the POST's requests (told if their work is stopped).
    pub ids: Vec<RequestId>,
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
        // The priming event (empty data) only for clients that know it (2025-11-25 and later).
        let priming = match self.polls {
            true => Frame::priming(format!("{}.0", self.name), RETRY_MS).to_bytes(),
            false => Frame::keepalive().to_bytes(),
        };
        let Self {
            sessions,
            spawner,
            sid,
            name,
            polls,
            outlives,
            ids,
        } = self;
        let work = stream::once(futures::future::ready(first)).chain(rest);
        // Where work stops with its request, or the session has enough running already, the
        // stream is the work.
        let running = outlives.then(|| sessions.stream_running(&sid, &name)).flatten();
        let Some(running) = running else {
            return drive(sessions, sid, name, priming, work, pack);
        };
        // The client's frames wait for it to read them (its pace is the work's); once it has
        // gone (or was told to poll) the work goes on unread, for at most what a log keeps
        // beyond what a resumption has read; its session's end ends it too.
        let (mut tx, rx) = futures::channel::mpsc::channel::<Bytes>(QUEUE);
        let _ = tx.try_send(priming);
        spawner.spawn(boxed(async move {
            use futures::SinkExt;
            let _running = running;
            let mut live = Some(tx);
            let mut work = work;
            // Sequence numbers run across the session's streams: this stream's first is its floor.
            let mut floor = None;
            while let Some(o) = work.next().await {
                let Some(read) = sessions.stream_read(&sid, &name) else {
                    return; // the session ended
                };
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
                        let floor = *floor.get_or_insert(seq.saturating_sub(1));
                        if live.is_none() && seq.saturating_sub(read.max(floor)) > UNREAD {
                            // Nobody reads, and a resumption could not replay more: the work
                            // ends, and each request is told so.
                            let e = RpcError::internal(
                                "the call's stream went unread past what the gateway keeps of it; the call was stopped",
                            );
                            let answers = ids
                                .iter()
                                .map(|id| Json::from_value(&jsonrpc::error_response(Some(id), &e)));
                            sessions.append(&sid, &name, pack(answers.collect())).await;
                            break;
                        }
                        Frame::message(Some(format!("{name}.{seq}")), m.0)
                    }
                    Outbound::Done(answers) => {
                        let data = pack(answers);
                        let seq = sessions.append(&sid, &name, data.clone()).await;
                        Frame::message(Some(format!("{name}.{seq}")), data)
                    }
                };
                if let Some(t) = live.as_mut() {
                    if t.send(frame.to_bytes()).await.is_err() {
                        live = None;
                    }
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
