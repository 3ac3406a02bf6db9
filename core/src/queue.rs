//! A queue with a bound, for messages whose producer must never wait on their consumer: an
//! upstream's messages for a call or a listener (an upstream that sends without end to a client
//! that reads slowly fills the queue to its bound), a bridge's lines for its client (a WebSocket
//! client that stops reading). What comes past the bound is refused, never held, so no one at
//! either end can grow the gateway's memory through it. A leaf: it imports nothing of the crate.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::channel::mpsc::{unbounded, UnboundedReceiver, UnboundedSender};
use futures::stream::{FusedStream, Stream};

/// The sending half: cheap to clone; every clone shares the bound.
#[derive(Debug)]
pub struct Sender<T> {
    tx: UnboundedSender<T>,
    queued: Arc<AtomicUsize>,
    max: usize,
    closed: Arc<std::sync::atomic::AtomicBool>,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            queued: self.queued.clone(),
            max: self.max,
            closed: self.closed.clone(),
        }
    }
}

/// The receiving half.
#[derive(Debug)]
pub struct Receiver<T> {
    rx: UnboundedReceiver<T>,
    queued: Arc<AtomicUsize>,
    closed: Arc<std::sync::atomic::AtomicBool>,
}

/// A queue of at most `max` messages not yet taken.
pub fn bounded<T>(max: usize) -> (Sender<T>, Receiver<T>) {
    let (tx, rx) = unbounded();
    let queued = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    (
        Sender {
            tx,
            queued: queued.clone(),
            max: max.max(1),
            closed: closed.clone(),
        },
        Receiver { rx, queued, closed },
    )
}

/// Why a message was not queued.
#[derive(Debug)]
pub enum Refused<T> {
    /// Nobody takes messages any more: the message comes back.
    Closed(T),
    /// The queue is at its bound: the message is dropped.
    Full,
}

impl<T> Sender<T> {
    /// Queues `msg` unless the queue is at its bound or closed.
    pub fn send(&self, msg: T) -> Result<(), Refused<T>> {
        if self.tx.is_closed() {
            return Err(Refused::Closed(msg));
        }
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::Full);
        }
        self.tx.unbounded_send(msg).map_err(|e| {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            Refused::Closed(e.into_inner())
        })
    }

    /// Ends the queue: what is queued can still be taken, nothing more is queued (and the
    /// receiver can tell it was ended so, not by its senders going away).
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.tx.close_channel();
    }

    /// Whether nobody takes messages any more.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

impl<T> Receiver<T> {
    /// Whether a sender ended the queue ([`Sender::close`]) rather than all of them going away.
    pub fn was_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The next message if one is queued now.
    pub fn try_recv(&mut self) -> Result<T, futures::channel::mpsc::TryRecvError> {
        let v = self.rx.try_recv()?;
        self.queued.fetch_sub(1, Ordering::AcqRel);
        Ok(v)
    }
}

impl<T> Stream for Receiver<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let next = Pin::new(&mut self.rx).poll_next(cx);
        if let Poll::Ready(Some(_)) = &next {
            self.queued.fetch_sub(1, Ordering::AcqRel);
        }
        next
    }
}

impl<T> FusedStream for Receiver<T> {
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
        let (tx, mut rx) = bounded(3);
        for i in 0..3 {
            tx.send(json!(i)).expect("room");
        }
        assert!(matches!(tx.send(json!(3)), Err(Refused::Full)));
        assert_eq!(futures::executor::block_on(rx.next()), Some(json!(0)));
        tx.clone().send(json!(4)).expect("room again");
        drop(rx);
        assert!(matches!(tx.send(json!(5)), Err(Refused::Closed(_))));
    }

    /// Closed at its bound (a client that stopped reading): what was queued is still read, then
    /// the queue ends.
    #[test]
    fn a_closed_queue_gives_what_it_held_then_ends() {
        let (tx, mut rx) = bounded::<u32>(2);
        tx.send(1).expect("room");
        tx.send(2).expect("room");
        assert!(matches!(tx.send(3), Err(Refused::Full)));
        assert!(!rx.was_closed());
        tx.close();
        assert!(matches!(tx.send(4), Err(Refused::Closed(4))));
        let got: Vec<u32> = futures::executor::block_on(rx.by_ref().collect());
        assert_eq!(got, [1, 2]);
        assert!(rx.was_closed());
    }
}
