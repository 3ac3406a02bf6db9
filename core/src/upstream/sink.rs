//! Where an upstream's messages go while someone waits for them (a call's progress, logs and
//! requests; a listener's notifications): a queue with a bound. An upstream that sends without
//! end to a client that reads slowly (or not at all) fills the queue to its bound; what comes
//! after is dropped and counted, never held, so a hostile upstream cannot grow the gateway's
//! memory through a call.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::channel::mpsc::{unbounded, UnboundedReceiver, UnboundedSender};
use futures::stream::{FusedStream, Stream};
use serde_json::Value;

/// The sending half: cheap to clone; every clone shares the bound.
#[derive(Clone, Debug)]
pub(crate) struct Sink {
    tx: UnboundedSender<Value>,
    queued: Arc<AtomicUsize>,
    max: usize,
}

/// The receiving half.
pub(crate) struct SinkRx {
    rx: UnboundedReceiver<Value>,
    queued: Arc<AtomicUsize>,
}

/// A queue of at most `max` messages not yet taken.
pub(crate) fn sink(max: usize) -> (Sink, SinkRx) {
    let (tx, rx) = unbounded();
    let queued = Arc::new(AtomicUsize::new(0));
    (
        Sink {
            tx,
            queued: queued.clone(),
            max: max.max(1),
        },
        SinkRx { rx, queued },
    )
}

/// Why a message was not queued.
#[derive(Debug)]
pub(crate) enum SinkError {
    /// Nobody takes messages any more: the message comes back.
    Closed(Value),
    /// The queue is at its bound: the message is dropped.
    Full,
}

impl Sink {
    /// Queues `msg` unless the queue is at its bound or closed.
    pub fn send(&self, msg: Value) -> Result<(), SinkError> {
        if self.tx.is_closed() {
            return Err(SinkError::Closed(msg));
        }
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(SinkError::Full);
        }
        self.tx.unbounded_send(msg).map_err(|e| {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            SinkError::Closed(e.into_inner())
        })
    }

    /// Whether nobody takes messages any more.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

impl SinkRx {
    /// The next message if one is queued now.
    pub fn try_recv(&mut self) -> Result<Value, futures::channel::mpsc::TryRecvError> {
        let v = self.rx.try_recv()?;
        self.queued.fetch_sub(1, Ordering::AcqRel);
        Ok(v)
    }
}

impl Stream for SinkRx {
    type Item = Value;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Value>> {
        let next = Pin::new(&mut self.rx).poll_next(cx);
        if let Poll::Ready(Some(_)) = &next {
            self.queued.fetch_sub(1, Ordering::AcqRel);
        }
        next
    }
}

impl FusedStream for SinkRx {
    fn is_terminated(&self) -> bool {
        self.rx.is_terminated()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use serde_json::json;

    #[test]
    fn the_queue_stops_at_its_bound_and_makes_room_as_it_is_read() {
        let (tx, mut rx) = sink(3);
        for i in 0..3 {
            tx.send(json!(i)).expect("room");
        }
        assert!(matches!(tx.send(json!(3)), Err(SinkError::Full)));
        assert_eq!(futures::executor::block_on(rx.next()), Some(json!(0)));
        tx.clone().send(json!(4)).expect("room again");
        drop(rx);
        assert!(matches!(tx.send(json!(5)), Err(SinkError::Closed(_))));
    }
}
