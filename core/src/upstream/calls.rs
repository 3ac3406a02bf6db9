//! The calls in flight on one link, and where what the upstream says outside them goes.

use std::sync::Mutex;

use serde_json::Value;

use super::Sink;

/// The sinks of the calls in flight on a link, oldest first: what the upstream says outside any
/// call goes with the newest (a duplex link's unrelated messages; a streamable link's standalone
/// stream when the client has none of its own). On a link shared by several clients' sessions
/// (a stdio upstream's one process), only while a single call is in flight: with two, a request
/// the upstream sends outside them belongs to no one it can be told from, and a guess could hand
/// one user's sampling or elicitation to another.
#[derive(Default)]
pub(super) struct CallSinks {
    calls: Mutex<Vec<(u64, Sink, Option<Value>)>>,
    pub shared: std::sync::atomic::AtomicBool,
}

impl CallSinks {
    fn list(&self) -> std::sync::MutexGuard<'_, Vec<(u64, Sink, Option<Value>)>> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers call `id`'s sink (and the progress token it sent, if any) until the returned
    /// guard drops (however the call ends).
    pub(super) fn enter(&self, id: u64, sink: Option<&Sink>, progress: Option<Value>) -> CallGuard<'_> {
        if let Some(s) = sink {
            self.list().push((id, s.clone(), progress));
        }
        CallGuard(self, id)
    }

    /// Where `msg`, said outside any call, goes: the newest call's sink; on a shared link with
    /// several calls in flight, only the call a progress notification names by its token (if
    /// one call alone sent it), else none (a request is then refused, other messages dropped).
    pub(super) fn target(&self, msg: &Value) -> Option<Sink> {
        let list = self.list();
        if !self.shared.load(std::sync::atomic::Ordering::Relaxed) || list.len() <= 1 {
            return list.last().map(|(_, s, _)| s.clone());
        }
        let token = msg.get("params").and_then(|p| p.get("progressToken"))?;
        let mut naming = list.iter().filter(|(_, _, t)| t.as_ref() == Some(token));
        match (naming.next(), naming.next()) {
            (Some((_, s, _)), None) => Some(s.clone()),
            _ => None,
        }
    }

    pub(super) fn clear(&self) {
        self.list().clear();
    }

    pub(super) fn is_empty(&self) -> bool {
        self.list().is_empty()
    }
}

/// Removes its call's sink from [`CallSinks`] when dropped.
pub(super) struct CallGuard<'a>(&'a CallSinks, u64);

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        self.0.list().retain(|(i, _, _)| *i != self.1);
    }
}

/// The progress token a request's params carry, if any.
pub(super) fn progress_token(params: Option<&Value>) -> Option<Value> {
    params?.get("_meta")?.get("progressToken").cloned()
}
