//! Sessions per client: each subject (or, anonymous, each address) holds at most a quota of
//! this instance's sessions, so that one client can never fill `max_sessions` and leave the rest
//! with 503. At the quota, the client's own least recently used session makes room.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

/// Who holds which sessions here, and when each was last used.
#[derive(Default)]
pub(crate) struct Quota {
    per_client: usize,
    inner: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    /// Each client's sessions, by last use then id.
    by_client: HashMap<String, BTreeSet<(u64, String)>>,
    /// Each session's client and last use.
    by_session: HashMap<String, (String, u64)>,
}

impl Quota {
    /// At most `per_client` sessions per client (0: no quota).
    pub fn new(per_client: usize) -> Self {
        Self {
            per_client,
            inner: Mutex::default(),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The session `client` must give up before it opens another, if it holds its quota: its
    /// least recently used.
    pub fn over(&self, client: &str) -> Option<String> {
        if self.per_client == 0 {
            return None;
        }
        let t = self.table();
        let held = t.by_client.get(client)?;
        (held.len() >= self.per_client).then(|| held.first().map(|(_, sid)| sid.clone()))?
    }

    /// `sid` is `client`'s, used at `now`.
    pub fn hold(&self, client: &str, sid: &str, now: u64) {
        let mut t = self.table();
        t.by_session.insert(sid.to_string(), (client.to_string(), now));
        t.by_client
            .entry(client.to_string())
            .or_default()
            .insert((now, sid.to_string()));
    }

    /// `sid` was used at `now`.
    pub fn touch(&self, sid: &str, now: u64) {
        let mut t = self.table();
        let Table { by_client, by_session } = &mut *t;
        let Some((client, at)) = by_session.get_mut(sid) else {
            return;
        };
        if let Some(set) = by_client.get_mut(client.as_str()) {
            set.remove(&(*at, sid.to_string()));
            set.insert((now, sid.to_string()));
        }
        *at = now;
    }

    /// `sid` is gone.
    pub fn release(&self, sid: &str) {
        let mut t = self.table();
        let Some((client, at)) = t.by_session.remove(sid) else {
            return;
        };
        if let Some(set) = t.by_client.get_mut(&client) {
            set.remove(&(at, sid.to_string()));
            if set.is_empty() {
                t.by_client.remove(&client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_at_its_quota_gives_up_its_least_recently_used_session() {
        let q = Quota::new(2);
        q.hold("ip:a", "s1", 1);
        assert_eq!(q.over("ip:a"), None);
        q.hold("ip:a", "s2", 2);
        q.hold("ip:b", "s3", 3);
        assert_eq!(q.over("ip:a").as_deref(), Some("s1"));
        q.touch("s1", 4);
        assert_eq!(q.over("ip:a").as_deref(), Some("s2"), "s1 was used since");
        assert_eq!(q.over("ip:b"), None, "others keep theirs");
        q.release("s2");
        assert_eq!(q.over("ip:a"), None);
        q.release("s1");
        q.release("s3");
        let t = q.table();
        assert!(
            t.by_client.is_empty() && t.by_session.is_empty(),
            "nothing is left behind"
        );
        drop(t);
        assert_eq!(Quota::new(0).over("ip:a"), None);
    }
}
