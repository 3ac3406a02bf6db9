//! What one client may hold of the listener: connections (per client and in all) and request
//! bodies being read (bytes per client), so that one address flooding the gateway with idle
//! sockets or stalled bodies runs into its own bounds while others are still served.
//!
//! A client is its address (an IPv6 address by its /64, which one host holds whole); a trusted
//! proxy's connections count only in the total (its clients are told apart by their
//! `X-Forwarded-For`, which the body budget uses).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use mcpgw_core::netguard::{client_key, Networks};

/// The bounds (0: none).
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Open connections in all.
    pub total: usize,
    /// Open connections per client.
    pub per_client: usize,
    /// Request body bytes being read per client.
    pub body_bytes: usize,
}

#[derive(Default)]
struct Tally {
    total: usize,
    conns: HashMap<String, usize>,
    bytes: HashMap<String, usize>,
}

/// The listener's count of connections and bodies.
pub struct Conns {
    bounds: Bounds,
    proxies: Networks,
    tally: Mutex<Tally>,
}

/// Held while a connection is open; counted down when dropped.
pub struct ConnSlot {
    conns: Arc<Conns>,
    key: Option<String>,
}

/// Held while a body is read; counted down when dropped.
pub struct BodySlot {
    conns: Arc<Conns>,
    key: String,
    bytes: usize,
}

impl Conns {
    /// A count under `bounds`, `proxies` counted in the total only.
    pub fn new(bounds: Bounds, proxies: Networks) -> Arc<Self> {
        Arc::new(Self {
            bounds,
            proxies,
            tally: Mutex::default(),
        })
    }

    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a connection from `peer`, or why not.
    pub fn open(self: &Arc<Self>, peer: IpAddr) -> Result<ConnSlot, &'static str> {
        let mut t = self.tally();
        if self.bounds.total > 0 && t.total >= self.bounds.total {
            return Err("the gateway holds as many connections as it may (MCPGW_MAX_CONNECTIONS)");
        }
        let key = (!self.proxies.contains(&peer.to_string())).then(|| client_key(&peer.to_string()));
        if let Some(k) = &key {
            let held = t.conns.get(k).copied().unwrap_or(0);
            if self.bounds.per_client > 0 && held >= self.bounds.per_client {
                return Err("this client holds as many connections as it may (MCPGW_MAX_CONNECTIONS_PER_CLIENT)");
            }
            t.conns.insert(k.clone(), held + 1);
        }
        t.total += 1;
        Ok(ConnSlot {
            conns: self.clone(),
            key,
        })
    }

    /// A slot for reading up to `bytes` of a body of `client`'s, or why not.
    pub fn body(self: &Arc<Self>, client: &str, bytes: usize) -> Result<BodySlot, &'static str> {
        let key = client_key(client);
        let mut t = self.tally();
        let held = t.bytes.get(&key).copied().unwrap_or(0);
        if self.bounds.body_bytes > 0 && held + bytes > self.bounds.body_bytes && held > 0 {
            return Err("this client has as many request bodies on their way as it may (MCPGW_MAX_CLIENT_BODY_BYTES)");
        }
        t.bytes.insert(key.clone(), held + bytes);
        Ok(BodySlot {
            conns: self.clone(),
            key,
            bytes,
        })
    }

    /// Open connections.
    #[cfg(test)]
    pub fn open_count(&self) -> usize {
        self.tally().total
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut t = self.conns.tally();
        t.total = t.total.saturating_sub(1);
        if let Some(k) = &self.key {
            if let Some(n) = t.conns.get_mut(k) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    t.conns.remove(k);
                }
            }
        }
    }
}

impl Drop for BodySlot {
    fn drop(&mut self) {
        let mut t = self.conns.tally();
        if let Some(n) = t.bytes.get_mut(&self.key) {
            *n = n.saturating_sub(self.bytes);
            if *n == 0 {
                t.bytes.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn one_client_runs_into_its_own_bound_and_the_total() {
        let proxies = Networks::parse(&["10.9.9.9".into()]).expect("cidr");
        let c = Conns::new(
            Bounds {
                total: 5,
                per_client: 2,
                body_bytes: 100,
            },
            proxies,
        );
        let a1 = c.open(ip("10.0.0.1")).expect("a1");
        let _a2 = c.open(ip("10.0.0.1")).expect("a2");
        assert!(c.open(ip("10.0.0.1")).is_err(), "a third from one client");
        let _b = c.open(ip("10.0.0.2")).expect("another client");
        // An IPv6 host is its /64.
        let _v6 = c.open(ip("2001:db8::1")).expect("v6");
        assert!(c.open(ip("2001:db8::2")).is_ok_and(|s| {
            drop(s);
            true
        }));
        drop(a1);
        let _a3 = c.open(ip("10.0.0.1")).expect("room again");
        assert_eq!(c.open_count(), 4);
        // The proxy is counted in the total only; the total holds.
        let _p = c.open(ip("10.9.9.9")).expect("proxy");
        assert!(c.open(ip("10.9.9.9")).is_err(), "the total");
        // Bodies: one may always be read; more only within the client's budget.
        let first = c.body("10.0.0.1", 80).expect("first");
        assert!(c.body("10.0.0.1", 30).is_err());
        let _other = c.body("10.0.0.2", 80).expect("another client's");
        drop(first);
        assert!(c.body("10.0.0.1", 30).is_ok());
    }
}
