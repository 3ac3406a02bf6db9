//! Sessions per client: each subject (or, anonymous, each address) holds at most a quota of
//! this instance's sessions, so that one client can never fill `max_sessions` and leave the rest
//! with 503. At the quota, the client's own least recently used session makes room.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

/// A client holds its quota of sessions, each with an open stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AtQuota;

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
    /// Sessions reserved and not stored yet: never chosen to make room.
    pending: std::collections::HashSet<String>,
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

    /// Counts `sid` as `client`'s from `now`, in one step with what makes room for it: under
    /// its quota, nothing; at it, the client's least recently used session that is idle (not
    /// `live`: no open stream), which it gives up (`Some`: to be ended); none idle, `Err` (the
    /// client must close one first). Two callers never pick the same session.
    pub fn reserve(
        &self,
        client: &str,
        sid: &str,
        now: u64,
        live: impl Fn(&str) -> bool,
    ) -> Result<Option<String>, AtQuota> {
        if self.per_client == 0 {
            return Ok(None);
        }
        let mut t = self.table();
        let mut victim = None;
        if let Some(held) = t.by_client.get(client).filter(|h| h.len() >= self.per_client) {
            let idle = held
                .iter()
                .find(|(_, s)| !t.pending.contains(s) && !live(s))
                .cloned()
                .ok_or(AtQuota)?;
            victim = Some(idle.1);
        }
        if let Some(v) = &victim {
            Self::remove(&mut t, v);
        }
        t.by_session.insert(sid.to_string(), (client.to_string(), now));
        t.pending.insert(sid.to_string());
        t.by_client
            .entry(client.to_string())
            .or_default()
            .insert((now, sid.to_string()));
        Ok(victim)
    }

    /// `sid` is stored: from now on it may be chosen to make room.
    pub fn confirm(&self, sid: &str) {
        self.table().pending.remove(sid);
    }

    /// `sid` was used at `now`.
    pub fn touch(&self, sid: &str, now: u64) {
        let mut t = self.table();
        let Table {
            by_client, by_session, ..
        } = &mut *t;
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
        Self::remove(&mut self.table(), sid);
    }

    fn remove(t: &mut Table, sid: &str) {
        t.pending.remove(sid);
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
    fn a_client_at_its_quota_gives_up_its_least_recently_used_idle_session() {
        let q = Quota::new(2);
        let none = |_: &str| false;
        assert_eq!(q.reserve("ip:a", "s1", 1, none), Ok(None));
        assert_eq!(q.reserve("ip:a", "s2", 2, none), Ok(None));
        // Not stored yet: neither makes room for a third.
        assert_eq!(q.reserve("ip:a", "sx", 2, none), Err(AtQuota));
        for s in ["s1", "s2"] {
            q.confirm(s);
        }
        assert_eq!(q.reserve("ip:b", "s3", 3, none), Ok(None), "others have their own");
        q.touch("s1", 4);
        assert_eq!(
            q.reserve("ip:a", "s4", 5, none),
            Ok(Some("s2".into())),
            "s1 was used since"
        );
        q.confirm("s4");
        // s1 and s4 held; s1 streaming: s4 goes.
        assert_eq!(q.reserve("ip:a", "s5", 6, |s| s == "s1"), Ok(Some("s4".into())));
        q.confirm("s5");
        // Both streaming: no room, and nothing changes.
        assert_eq!(q.reserve("ip:a", "s6", 7, |_| true), Err(AtQuota));
        assert_eq!(q.reserve("ip:a", "s8", 8, |s| s == "s1"), Ok(Some("s5".into())));
        for s in ["s1", "s3", "s8", "s6"] {
            q.release(s);
        }
        let t = q.table();
        assert!(
            t.by_client.is_empty() && t.by_session.is_empty(),
            "nothing is left behind"
        );
        drop(t);
        assert_eq!(Quota::new(0).reserve("ip:a", "x", 1, |_| true), Ok(None), "no quota");
    }
}
