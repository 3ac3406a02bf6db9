//! The one owner of what federation holds per client session ([`Links`]): its links (a slot
//! per upstream), its calls in flight, and the upstream requests relayed to its client that
//! wait for an answer. They live in one entry, so a session's end takes them all at once; the
//! shared links (sessionless calls, stdio upstreams) are kept apart.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::relay::Asked;
use super::{Back, Inflight, Slot};
use crate::proto::jsonrpc::RequestId;

/// Everything of one session.
#[derive(Default)]
struct SessionLinks {
    /// Its links, by upstream id.
    slots: HashMap<String, Arc<Slot>>,
    /// The upstream request serving each of its requests in flight, by the client's id.
    inflight: HashMap<RequestId, Inflight>,
    /// The upstream requests waiting for its client's answer.
    asked: Asked<Back>,
}

impl SessionLinks {
    fn is_empty(&self) -> bool {
        self.slots.is_empty() && self.inflight.is_empty() && self.asked.waiting() == 0
    }
}

/// What federation holds per session, and the shared links.
#[derive(Default)]
pub(super) struct Links {
    sessions: Mutex<HashMap<String, SessionLinks>>,
    shared: Mutex<HashMap<String, Arc<Slot>>>,
}

/// The shared slot key of `subject`'s link to `up`, an upstream that acts for each caller.
pub(super) fn per_caller(up: &str, subject: &str) -> String {
    format!("{up}\u{1f}{subject}")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Links {
    /// The slot of the link to upstream `up` for session `sid` (the shared one for none),
    /// made empty if there is none.
    pub fn slot(&self, sid: Option<&str>, up: &str) -> Arc<Slot> {
        match sid {
            Some(s) => lock(&self.sessions)
                .entry(s.to_string())
                .or_default()
                .slots
                .entry(up.to_string())
                .or_default()
                .clone(),
            None => lock(&self.shared).entry(up.to_string()).or_default().clone(),
        }
    }

    /// The slots of session `sid`.
    pub fn of_session(&self, sid: &str) -> Vec<Arc<Slot>> {
        lock(&self.sessions)
            .get(sid)
            .map(|s| s.slots.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Notes the upstream request serving the session's request `id`.
    pub fn call_started(&self, sid: &str, id: RequestId, serving: Inflight) {
        lock(&self.sessions)
            .entry(sid.to_string())
            .or_default()
            .inflight
            .insert(id, serving);
    }

    /// Forgets the upstream request serving the session's request `id` (it ended); a session
    /// left with nothing here is dropped (a call that started after the session ended).
    pub fn call_ended(&self, sid: &str, id: &RequestId) {
        let mut sessions = lock(&self.sessions);
        if let Some(s) = sessions.get_mut(sid) {
            s.inflight.remove(id);
            if s.is_empty() {
                sessions.remove(sid);
            }
        }
    }

    /// The upstream request serving the session's request `id`, if one is in flight.
    pub fn serving(&self, sid: &str, id: &RequestId) -> Option<Inflight> {
        lock(&self.sessions).get(sid)?.inflight.get(id).cloned()
    }

    /// Runs `f` on the session's waiting upstream requests. A session with nothing here that
    /// `f` leaves with nothing waiting (a notification of a link whose session just ended) is
    /// not kept.
    pub fn asked<R>(&self, sid: &str, f: impl FnOnce(&mut Asked<Back>) -> R) -> R {
        let mut sessions = lock(&self.sessions);
        let s = sessions.entry(sid.to_string()).or_default();
        let out = f(&mut s.asked);
        if s.is_empty() {
            sessions.remove(sid);
        }
        out
    }

    /// Runs `f` on the session's waiting upstream requests if it has any state here (an
    /// answer for a session that has none finds nothing, and leaves nothing behind).
    pub fn answered<R>(&self, sid: &str, f: impl FnOnce(&mut Asked<Back>) -> Option<R>) -> Option<R> {
        let mut sessions = lock(&self.sessions);
        let s = sessions.get_mut(sid)?;
        let out = f(&mut s.asked);
        if s.is_empty() {
            sessions.remove(sid);
        }
        out
    }

    /// Takes everything of session `sid` (it ended): its slots, to be closed; its calls and
    /// waiting requests are forgotten with it.
    pub fn end(&self, sid: &str) -> Vec<Arc<Slot>> {
        lock(&self.sessions)
            .remove(sid)
            .map(|s| s.slots.into_values().collect())
            .unwrap_or_default()
    }

    /// Takes the slots of upstream `up`, every session's and the shared ones (one per caller
    /// for an upstream that acts for each).
    pub fn take_upstream(&self, up: &str) -> Vec<Arc<Slot>> {
        let mut gone: Vec<Arc<Slot>> = lock(&self.sessions)
            .values_mut()
            .filter_map(|s| s.slots.remove(up))
            .collect();
        let prefix = per_caller(up, "");
        let mut shared = lock(&self.shared);
        let keys: Vec<String> = shared
            .keys()
            .filter(|k| *k == up || k.starts_with(&prefix))
            .cloned()
            .collect();
        gone.extend(keys.iter().filter_map(|k| shared.remove(k)));
        gone
    }

    /// Takes the shared slot of one caller's link to `up` (the caller disconnected).
    pub fn take_callers(&self, up: &str, subject: &str) -> Vec<Arc<Slot>> {
        lock(&self.shared)
            .remove(&per_caller(up, subject))
            .into_iter()
            .collect()
    }

    /// Takes every slot (shutdown).
    pub fn take_all(&self) -> Vec<Arc<Slot>> {
        let mut gone: Vec<Arc<Slot>> = lock(&self.sessions)
            .drain()
            .flat_map(|(_, s)| s.slots.into_values())
            .collect();
        gone.extend(lock(&self.shared).drain().map(|(_, slot)| slot));
        gone
    }

    /// How many sessions have state here.
    #[cfg(test)]
    fn sessions(&self) -> usize {
        lock(&self.sessions).len()
    }
}

#[cfg(test)]
mod tests {
    use super::super::relay::{Relay, Rewrite};
    use super::*;
    use serde_json::json;

    fn ask(links: &Links, relay: &Relay, sid: &str) -> RequestId {
        let (tx, _rx) = futures::channel::mpsc::unbounded();
        let msg = json!({"jsonrpc": "2.0", "id": 1, "method": "sampling/createMessage", "params": {}});
        match links.asked(sid, |a| relay.to_client(a, &Back::Round(tx), 9, msg)) {
            Rewrite::Deliver(m) => RequestId::of(&m["id"]).expect("an id"),
            _ => panic!("not delivered"),
        }
    }

    /// A session's end takes its links and its waiting requests at once; another session's
    /// and the shared links stay.
    #[test]
    fn a_session_that_ends_takes_everything_it_had() {
        let (links, relay) = (Links::default(), Relay::default());
        let a = links.slot(Some("s"), "up1");
        assert!(
            Arc::ptr_eq(&a, &links.slot(Some("s"), "up1")),
            "one slot per session and upstream"
        );
        links.slot(Some("s"), "up2");
        links.slot(Some("t"), "up1");
        let shared = links.slot(None, "up1");
        assert!(!Arc::ptr_eq(&a, &shared));
        let asked_s = ask(&links, &relay, "s");
        let asked_t = ask(&links, &relay, "t");
        assert_eq!(links.of_session("s").len(), 2);

        assert_eq!(links.end("s").len(), 2);
        assert!(links.of_session("s").is_empty());
        assert!(links.answered("s", |a| a.answer(&asked_s, Ok(json!({})))).is_none());
        assert_eq!(links.sessions(), 1, "nothing of the session is left");
        assert!(links.answered("t", |a| a.answer(&asked_t, Ok(json!({})))).is_some());
        assert!(Arc::ptr_eq(&shared, &links.slot(None, "up1")));

        // An upstream's removal takes its slot from every session and the shared ones.
        assert_eq!(links.take_upstream("up1").len(), 2);
        assert_eq!(links.take_all().len(), 0);
    }

    /// An answer, a notification or a call's end for a session with no state here (it ended)
    /// leaves none behind.
    #[test]
    fn an_unknown_sessions_answer_leaves_nothing() {
        let (links, relay) = (Links::default(), Relay::default());
        let note = json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {}});
        let (tx, _rx) = futures::channel::mpsc::unbounded();
        let r = links.asked("gone", |a| relay.to_client(a, &Back::Round(tx), 9, note));
        assert!(matches!(r, Rewrite::Deliver(_)));
        assert_eq!(links.sessions(), 0);
        assert!(links
            .answered("nobody", |a| a.answer(&RequestId::Number(1.into()), Ok(json!({}))))
            .is_none());
        links.call_ended("nobody", &RequestId::Number(1.into()));
        assert_eq!(links.sessions(), 0);
    }
}
