//! List changes upstreams announce, told at once to this process's listen streams at the
//! endpoints that federate them. An upstream may announce a change its catalog does not show
//! (a diagnostic hook, a list filtered per caller): the catalog refresh that follows finds
//! nothing to store, so without this the announcement would be lost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use futures::channel::mpsc::{channel, Receiver, Sender};

use crate::proto::method::Listed;

/// Listeners by upstream id: (listener, sink).
type Listeners = HashMap<String, Vec<(u64, Sender<Listed>)>>;

/// Announcements a listener may have waiting: more say nothing new (each only says a list
/// changed), and are dropped.
const WAITING: usize = 8;

/// The listen streams hearing each upstream's announcements.
#[derive(Default)]
pub(crate) struct Announcements {
    by_upstream: Mutex<Listeners>,
    next: std::sync::atomic::AtomicU64,
}

/// Stops a listener hearing announcements when dropped.
pub(crate) struct Unhear {
    from: Weak<Announcements>,
    ups: Vec<String>,
    n: u64,
}

impl Drop for Unhear {
    fn drop(&mut self) {
        let Some(a) = self.from.upgrade() else { return };
        let mut all = a.lock();
        for up in &self.ups {
            if let Some(sinks) = all.get_mut(up) {
                sinks.retain(|(m, _)| *m != self.n);
                if sinks.is_empty() {
                    all.remove(up);
                }
            }
        }
    }
}

impl Announcements {
    fn lock(&self) -> std::sync::MutexGuard<'_, Listeners> {
        self.by_upstream.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A listener of the announcements of the upstreams `ups` (by id), until the guard drops.
    pub fn hear(self: &Arc<Self>, ups: Vec<String>) -> (Receiver<Listed>, Unhear) {
        let (tx, rx) = channel(WAITING);
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut all = self.lock();
        for up in &ups {
            all.entry(up.clone()).or_default().push((n, tx.clone()));
        }
        drop(all);
        let unhear = Unhear {
            from: Arc::downgrade(self),
            ups,
            n,
        };
        (rx, unhear)
    }

    /// Upstream `up` announced that `list` changed.
    pub fn announce(&self, up: &str, list: Listed) {
        if let Some(sinks) = self.lock().get_mut(up) {
            // A full queue keeps its listener; a closed one is let go.
            sinks.retain_mut(|(_, tx)| !matches!(tx.try_send(list), Err(e) if e.is_disconnected()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[test]
    fn a_listener_hears_its_upstreams_until_it_stops() {
        let a = Arc::new(Announcements::default());
        let (mut rx, unhear) = a.hear(vec!["u1".into(), "u2".into()]);
        a.announce("u2", Listed::Tools);
        a.announce("u3", Listed::Prompts);
        assert_eq!(futures::executor::block_on(rx.next()), Some(Listed::Tools));
        assert!(rx.try_recv().is_err(), "nothing from an upstream it does not hear");
        drop(unhear);
        assert!(a.lock().is_empty());
        a.announce("u1", Listed::Tools);
    }
}
