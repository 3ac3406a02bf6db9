//! mDNS (native only): the gateway advertises itself as `_mcp-gateway._tcp.local.` (TXT: `id`,
//! `version`, `path`, `auth`, `scheme`) and browses for the others, which `GET /peers/discovered`
//! lists. `MCPGW_MDNS=loopback` keeps it on the loopback interface (tests, one machine); `on`
//! uses every interface; `off` (the default) does neither.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};
use serde_json::{json, Value};

/// The service type.
pub const SERVICE: &str = "_mcp-gateway._tcp.local.";

/// Where mDNS runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Not at all.
    Off,
    /// On the loopback interface only.
    Loopback,
    /// On every interface.
    On,
}

impl Mode {
    /// Reads `MCPGW_MDNS`.
    pub fn parse(v: &str) -> anyhow::Result<Self> {
        match v.trim().to_ascii_lowercase().as_str() {
            "" | "off" | "false" | "0" | "no" => Ok(Mode::Off),
            "loopback" => Ok(Mode::Loopback),
            "on" | "true" | "1" | "yes" => Ok(Mode::On),
            other => anyhow::bail!("invalid setting MCPGW_MDNS (--mdns): '{other}' is not off, on or loopback"),
        }
    }
}

/// The gateways found so far, by mDNS instance name.
#[derive(Clone, Default)]
pub struct Found(Arc<Mutex<BTreeMap<String, Value>>>);

impl mcpgw_core::ports::Discovery for Found {
    fn discovered(&self) -> Vec<Value> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

/// This gateway on mDNS: advertised, and browsing.
pub struct Mdns {
    daemon: ServiceDaemon,
    fullname: String,
}

/// What this gateway says of itself.
pub struct Advert<'a> {
    /// Its id (TXT `id`): what the others know it by, and how it knows itself when browsing.
    pub id: &'a str,
    /// Where it listens.
    pub addr: SocketAddr,
    /// `http` or `https`.
    pub scheme: &'a str,
    /// Whether it asks for credentials.
    pub auth: bool,
}

impl Mdns {
    /// Advertises `me` and starts browsing; what is found goes to the returned [`Found`], and
    /// each gateway found to `tell`, if given.
    pub fn start(
        mode: Mode,
        me: &Advert<'_>,
        tell: Option<tokio::sync::mpsc::UnboundedSender<Value>>,
    ) -> anyhow::Result<(Self, Found)> {
        let daemon = ServiceDaemon::new()?;
        if mode == Mode::Loopback {
            daemon.disable_interface(IfKind::All)?;
            daemon.enable_interface(IfKind::LoopbackV4)?;
        }
        let instance = format!("mcpgw-{}", me.id);
        let host = format!("{instance}.local.");
        let props = [
            ("id", me.id),
            ("version", env!("CARGO_PKG_VERSION")),
            ("path", "/mcp"),
            ("auth", if me.auth { "true" } else { "false" }),
            ("scheme", me.scheme),
        ];
        let ip = me.addr.ip();
        let info = if ip.is_unspecified() {
            ServiceInfo::new(SERVICE, &instance, &host, "", me.addr.port(), &props[..])?.enable_addr_auto()
        } else {
            ServiceInfo::new(SERVICE, &instance, &host, ip.to_string(), me.addr.port(), &props[..])?
        };
        let fullname = info.get_fullname().to_string();
        daemon.register(info)?;
        let events = daemon.browse(SERVICE)?;
        let found = Found::default();
        let (list, own) = (found.0.clone(), me.id.to_string());
        std::thread::Builder::new().name("mdns-browse".into()).spawn(move || {
            while let Ok(event) = events.recv() {
                match event {
                    ServiceEvent::ServiceResolved(s) => {
                        let prop = |k: &str| s.txt_properties.get_property_val_str(k).map(str::to_string);
                        let Some(id) = prop("id").filter(|id| *id != own) else {
                            continue;
                        };
                        let mut addresses: Vec<String> = s.get_addresses_v4().iter().map(|a| a.to_string()).collect();
                        addresses.sort();
                        let host = addresses
                            .first()
                            .cloned()
                            .unwrap_or_else(|| s.host.trim_end_matches('.').to_string());
                        let scheme = prop("scheme").unwrap_or_else(|| "http".into());
                        let path = prop("path").unwrap_or_else(|| "/mcp".into());
                        let peer = json!({
                            "id": id,
                            "name": s.fullname.trim_end_matches(SERVICE).trim_end_matches('.'),
                            "version": prop("version"),
                            "url": format!("{scheme}://{host}:{}{path}", s.port),
                            "auth": prop("auth").as_deref() == Some("true"),
                            "addresses": addresses,
                        });
                        tracing::info!(peer = %peer["url"], id = %peer["id"], "mDNS: found a gateway");
                        if let Some(t) = &tell {
                            let _ = t.send(peer.clone());
                        }
                        list.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(s.fullname.clone(), peer);
                    }
                    ServiceEvent::ServiceRemoved(_, fullname) => {
                        let gone = list.lock().unwrap_or_else(|e| e.into_inner()).remove(&fullname);
                        if gone.is_some() {
                            tracing::info!(name = %fullname, "mDNS: a gateway left");
                        }
                    }
                    _ => {}
                }
            }
        })?;
        tracing::info!(name = %fullname, mode = ?mode, "mDNS: advertising {SERVICE}");
        Ok((Self { daemon, fullname }, found))
    }

    /// Says goodbye (the others drop this gateway at once) and stops.
    pub fn stop(&self) {
        if let Ok(done) = self.daemon.unregister(&self.fullname) {
            let _ = done.recv_timeout(Duration::from_secs(1));
        }
        if let Ok(done) = self.daemon.shutdown() {
            let _ = done.recv_timeout(Duration::from_secs(1));
        }
    }
}

/// Whether gateway `id` is on the allow-list of `MCPGW_PEERS_AUTO` (comma-separated ids; `*` at
/// the end of one matches any rest, a lone `*` every gateway).
pub fn allowed(list: &str, id: &str) -> bool {
    list.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .any(|p| match p.strip_suffix('*') {
            Some(prefix) => id.starts_with(prefix),
            None => p == id,
        })
}

/// Registers each gateway found that the allow-list names as a peer (`mdns-{id}`), through the
/// gateway's own REST API, once.
pub async fn register_found(
    gw: mcpgw_core::Gateway,
    list: String,
    mut found: tokio::sync::mpsc::UnboundedReceiver<Value>,
) {
    let mut done = std::collections::HashSet::new();
    while let Some(peer) = found.recv().await {
        let (Some(id), Some(url)) = (peer["id"].as_str(), peer["url"].as_str()) else {
            continue;
        };
        if !allowed(&list, id) || done.contains(id) {
            continue;
        }
        let name: String = format!("mdns-{id}")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let mut body = json!({"name": name, "kind": "peer", "url": url,
            "description": format!("found by mDNS ({})", peer["name"].as_str().unwrap_or(id))});
        if let Ok(t) = std::env::var("MCPGW_PEERS_TOKEN") {
            body["headers"] = json!({"Authorization": format!("Bearer {}", t.trim())});
        }
        let mut req = http::Request::new(bytes::Bytes::from(body.to_string()));
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = http::Uri::from_static("/gateways");
        req.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        // The gateway registering a peer for itself: let in as its own operator.
        req.extensions_mut().insert(mcpgw_core::Admitted::default());
        let status = gw.handle(req).await.status();
        if status.is_success() || status == http::StatusCode::CONFLICT {
            tracing::info!(peer = %url, name = %name, "mDNS: registered as a peer (MCPGW_PEERS_AUTO)");
            done.insert(id.to_string());
        } else {
            tracing::warn!(peer = %url, status = status.as_u16(), "mDNS: could not register the gateway found as a peer");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_allow_list_names_ids_or_prefixes() {
        assert!(super::allowed("gw-b, team-*", "gw-b"));
        assert!(super::allowed("gw-b, team-*", "team-7"));
        assert!(!super::allowed("gw-b, team-*", "gw-c"));
        assert!(super::allowed("*", "anything"));
        assert!(!super::allowed("", "gw-b"));
    }
}
