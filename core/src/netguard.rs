//! The SSRF guard: the gateway makes requests to URLs that people register (REST tools,
//! upstreams) and, through URL templates, to URLs that tool arguments help build. Unless
//! configuration allows them, loopback, private, link-local (cloud metadata), shared and other
//! special-purpose addresses are refused, by literal address and by well-known names here, and
//! natively also after DNS resolution (the native HTTP client resolves through
//! [`NetPolicy::check_ip`], which also defeats DNS rebinding).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use async_trait::async_trait;

use crate::ports::{HttpClient, HttpError, InboundResponse, OutboundRequest};

/// One entry of `MCPGW_SSRF_ALLOW`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Allow {
    /// An address range.
    Net(IpAddr, u8),
    /// A host name, exactly (case-insensitive).
    Host(String),
    /// Every address of a class (`loopback`, `private`, `link-local`, …).
    Class(&'static str),
}

/// Which special-purpose targets are allowed (default: none).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetPolicy {
    allow: Vec<Allow>,
}

const CLASSES: [&str; 7] = [
    "loopback",
    "private",
    "link-local",
    "shared",
    "unspecified",
    "multicast",
    "reserved",
];

/// The special-purpose class of an address, if it has one.
pub fn classify(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return classify_v4(v4);
            }
            let s = v6.segments();
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if (s[0] & 0xfe00) == 0xfc00 {
                Some("private")
            } else if (s[0] & 0xffc0) == 0xfe80 {
                Some("link-local")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if s[..6] == [0; 6] || (s[..4] == [0; 4] && s[4] == 0xffff && s[5] == 0) {
                // IPv4-compatible (::a.b.c.d, deprecated) and IPv4-translated (::ffff:0:a.b.c.d):
                // their address's class, and never a public one (nothing routes them).
                let v4 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
                classify_v4(v4).or(Some("reserved"))
            } else if s[0] == 0x64 && s[1] == 0xff9b || s[0] == 0x2002 {
                // NAT64 and 6to4 embed IPv4 addresses that may be internal.
                let v4 = if s[0] == 0x2002 {
                    Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8)
                } else {
                    Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8)
                };
                classify_v4(v4)
            } else {
                None
            }
        }
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        Some("shared")
    } else if o[0] == 0 {
        Some("unspecified")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if ip.is_broadcast()
        || o[0] >= 240
        || (o[0] == 192 && o[1] == 0 && o[2] == 0)
        || (o[0] == 198 && (o[1] & 0xfe) == 18)
    {
        Some("reserved")
    } else {
        None
    }
}

/// Names that always mean this host or an internal network.
fn internal_name(host: &str) -> Option<&'static str> {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    if h == "localhost" || h.ends_with(".localhost") {
        Some("loopback")
    } else if h.ends_with(".internal") || h.ends_with(".local") || h == "metadata" {
        Some("private")
    } else {
        None
    }
}

fn in_net(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix))
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix))
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V4(_)) => a.to_ipv4_mapped().is_some_and(|v4| in_net(IpAddr::V4(v4), net, prefix)),
        _ => false,
    }
}

/// The authority of an absolute URL, if the URL is one that every parser reads alike: parsers
/// disagree on backslashes (a browser's `fetch` ends the host there), on whitespace and control
/// characters and on several `@`, so a URL holding any of them has none (and is refused).
fn authority(url: &str) -> Option<&str> {
    if url.chars().any(|c| c == '\\' || c.is_whitespace() || c.is_control()) {
        return None;
    }
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    (authority.matches('@').count() <= 1).then_some(authority)
}

/// The host of an absolute http(s) URL (brackets removed from IPv6), if it has one.
pub fn url_host(url: &str) -> Option<&str> {
    let authority = authority(url)?;
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = hostport.strip_prefix('[') {
        return v6.split_once(']').map(|(h, _)| h);
    }
    Some(hostport.split_once(':').map_or(hostport, |(h, _)| h))
}

/// The key one client's address is counted under by quotas: the address itself, an IPv4-mapped
/// IPv6 address as its IPv4 one, another IPv6 address by its /64 (which one host holds whole, and
/// may rotate through); text that is no address as it is.
pub fn client_key(ip: &str) -> String {
    match ip.trim_matches(['[', ']']).parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        _ => ip.to_string(),
    }
}

/// Why the SSRF guard refused something: a setting's entry, or a request's target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    /// An entry of `MCPGW_SSRF_ALLOW` or `MCPGW_TRUSTED_PROXIES` that is none of what it takes.
    #[error("'{entry}' is not {expected}")]
    Entry {
        /// The entry as written.
        entry: String,
        /// What it had to be.
        expected: String,
    },
    /// An address of a special-purpose class not allowed.
    #[error("{0} is a {1} address: refused by the SSRF guard (allow it with MCPGW_SSRF_ALLOW)")]
    Address(IpAddr, &'static str),
    /// A name of a special-purpose host not allowed.
    #[error("'{0}' names a {1} host: refused by the SSRF guard (allow it with MCPGW_SSRF_ALLOW)")]
    Host(String, &'static str),
    /// A host spelled with what parsers read differently.
    #[error(
        "'{0}' is not a plain host name (ASCII letters, digits, '-', '.'; IDNs as xn--): refused by the SSRF guard"
    )]
    NotPlain(String),
    /// A URL without a host it can be told by.
    #[error("'{0}' has no host, or characters parsers read differently (backslashes, spaces, control characters, several '@'): refused by the SSRF guard")]
    NoHost(String),
}

/// `item` as an address range: `10.0.0.0/8`, `::1/128`, or an address alone (all its bits); none
/// when it names no address; an error for a prefix out of range.
fn cidr(item: &str) -> Result<Option<(IpAddr, u8)>, NetError> {
    let (addr, prefix) = match item.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (item, None),
    };
    let Ok(ip) = addr.trim_matches(['[', ']']).parse::<IpAddr>() else {
        return Ok(None);
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| NetError::Entry {
                entry: item.to_string(),
                expected: format!("a CIDR: the prefix must be 0-{max}"),
            })?,
    };
    Ok(Some((ip, prefix)))
}

/// A set of address ranges (`MCPGW_TRUSTED_PROXIES`): CIDRs or single addresses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Networks(Vec<(IpAddr, u8)>);

impl Networks {
    /// Parses comma-split items: `10.0.0.0/8`, `::1`, `192.168.1.5`.
    pub fn parse(list: &[String]) -> Result<Self, NetError> {
        let ranges = list.iter().map(|s| s.trim()).filter(|s| !s.is_empty()).map(|item| {
            cidr(item)?.ok_or_else(|| NetError::Entry {
                entry: item.to_string(),
                expected: "an address or a CIDR".into(),
            })
        });
        Ok(Self(ranges.collect::<Result<_, _>>()?))
    }

    /// Whether `ip` (its text) is in one of the ranges.
    pub fn contains(&self, ip: &str) -> bool {
        ip.trim_matches(['[', ']'])
            .parse::<IpAddr>()
            .is_ok_and(|ip| self.0.iter().any(|(n, p)| in_net(ip, *n, *p)))
    }

    /// No range at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The origin of an absolute http(s) URL: its scheme, host and port (the scheme's default when
/// none is written), lower-cased, so that two spellings of one origin compare equal.
pub fn origin(url: &str) -> Option<(String, String, u16)> {
    let (scheme, _) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let host = url_host(url)?.to_ascii_lowercase();
    let authority = authority(url)?;
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let port_text = match hostport.strip_prefix('[') {
        Some(v6) => v6.split_once(']')?.1.strip_prefix(':'),
        None => hostport.split_once(':').map(|(_, p)| p),
    };
    let port = match port_text {
        None | Some("") => default,
        Some(p) => p.parse().ok()?,
    };
    (!host.is_empty()).then_some((scheme, host, port))
}

impl NetPolicy {
    /// Parses `MCPGW_SSRF_ALLOW`: comma-separated CIDRs (`10.0.0.0/8`, `::1/128`), addresses,
    /// host names, or classes (`loopback`, `private`, `link-local`, `shared`, `unspecified`,
    /// `multicast`, `reserved`).
    pub fn parse(list: &[String]) -> Result<Self, NetError> {
        let mut allow = vec![];
        for item in list.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
            if let Some(c) = CLASSES.iter().find(|c| c.eq_ignore_ascii_case(item)) {
                allow.push(Allow::Class(c));
                continue;
            }
            if let Some((ip, prefix)) = cidr(item)? {
                allow.push(Allow::Net(ip, prefix));
            } else if !item.contains('/')
                && item
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            {
                allow.push(Allow::Host(item.to_ascii_lowercase()));
            } else {
                return Err(NetError::Entry {
                    entry: item.to_string(),
                    expected: format!("a CIDR, an address, a host name or one of {}", CLASSES.join(", ")),
                });
            }
        }
        Ok(Self { allow })
    }

    /// Allows everything (for tests of other things).
    pub fn allow_all() -> Self {
        Self {
            allow: CLASSES.iter().map(|c| Allow::Class(c)).collect(),
        }
    }

    fn class_allowed(&self, class: &str) -> bool {
        self.allow.iter().any(|a| matches!(a, Allow::Class(c) if *c == class))
    }

    /// Refuses an address of a special-purpose class unless allowed.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), NetError> {
        let Some(class) = classify(ip) else {
            return Ok(());
        };
        let allowed = self.class_allowed(class)
            || self
                .allow
                .iter()
                .any(|a| matches!(a, Allow::Net(n, p) if in_net(ip, *n, *p)));
        if allowed {
            Ok(())
        } else {
            Err(NetError::Address(ip, class))
        }
    }

    /// Refuses a host that is (or names) a special-purpose address unless allowed; other
    /// names pass here (natively they are checked again once resolved).
    pub fn check_host(&self, host: &str) -> Result<(), NetError> {
        let lower = host.trim_end_matches('.').to_ascii_lowercase();
        if self.allow.iter().any(|a| matches!(a, Allow::Host(h) if *h == lower)) {
            return Ok(());
        }
        if let Ok(ip) = lower.parse::<IpAddr>() {
            return self.check_ip(ip);
        }
        // URL parsers decode percent-escapes and map Unicode digits and dots in hosts, which
        // can spell an address this check would not see: only plain (punycode) names pass.
        if !lower
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        {
            return Err(NetError::NotPlain(host.to_string()));
        }
        // Decimal, octal or hex IPv4 spellings (http://2130706433/) that resolvers accept.
        if let Some(ip) = legacy_ipv4(&lower) {
            return self.check_ip(IpAddr::V4(ip));
        }
        match internal_name(&lower) {
            Some(class) if !self.class_allowed(class) => Err(NetError::Host(host.to_string(), class)),
            _ => Ok(()),
        }
    }

    /// Refuses an address that `host` resolved to, unless the policy names that host (an
    /// operator's allowed internal name reaches its internal addresses) or allows the address.
    pub fn check_resolved(&self, host: &str, ip: IpAddr) -> Result<(), NetError> {
        let lower = host.trim_end_matches('.').to_ascii_lowercase();
        if self.allow.iter().any(|a| matches!(a, Allow::Host(h) if *h == lower)) {
            return Ok(());
        }
        self.check_ip(ip)
    }

    /// Checks the host of an absolute URL (a URL without one is refused).
    pub fn check_url(&self, url: &str) -> Result<(), NetError> {
        match url_host(url) {
            Some(h) if !h.is_empty() => self.check_host(h),
            _ => Err(NetError::NoHost(url.to_string())),
        }
    }
}

/// Every outbound request of the gateway goes through this: its URL's host checked by the policy
/// before the platform's client sees it, whoever made the URL (a registration, a call's URL
/// template, an SSE upstream's endpoint, a peer's API, the issuer's keys). The native client
/// checks again each address it dials (names once resolved, literal ones as they are), and
/// neither client follows redirects, so no request reaches a refused address.
pub struct Guarded {
    inner: Arc<dyn HttpClient>,
    policy: NetPolicy,
}

impl Guarded {
    /// `inner`, guarded by `policy`.
    pub fn new(inner: Arc<dyn HttpClient>, policy: NetPolicy) -> Self {
        Self { inner, policy }
    }
}

#[cfg_attr(not(target_family = "wasm"), async_trait)]
#[cfg_attr(target_family = "wasm", async_trait(?Send))]
impl HttpClient for Guarded {
    async fn send(&self, request: OutboundRequest) -> Result<InboundResponse, HttpError> {
        self.policy
            .check_url(&request.url)
            .map_err(|e| HttpError::Connect(e.to_string()))?;
        self.inner.send(request).await
    }
}

/// `a.b.c.d` with decimal, octal (`0177`) or hex (`0x7f`) parts, or fewer parts
/// (`127.1`, `2130706433`), as `inet_aton` reads them.
fn legacy_ipv4(s: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let num = |p: &str| -> Option<u64> {
        if let Some(h) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
            u64::from_str_radix(h, 16).ok()
        } else if p.len() > 1 && p.starts_with('0') {
            u64::from_str_radix(&p[1..], 8).ok()
        } else {
            p.parse().ok()
        }
    };
    let nums: Vec<u64> = parts.iter().map(|p| num(p)).collect::<Option<_>>()?;
    let (last, head) = nums.split_last()?;
    if head.iter().any(|n| *n > 255) {
        return None;
    }
    let max_last = 1u64 << (8 * (4 - head.len()));
    if *last >= max_last {
        return None;
    }
    let mut v: u64 = 0;
    for (i, n) in head.iter().enumerate() {
        v |= n << (24 - 8 * i);
    }
    Some(Ipv4Addr::from((v | last) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_counted_by_address_and_ipv6_by_its_64() {
        assert_eq!(client_key("10.0.0.1"), "10.0.0.1");
        assert_eq!(client_key("::ffff:10.0.0.1"), "10.0.0.1");
        assert_eq!(client_key("2001:db8:1:2:aaaa::1"), client_key("[2001:db8:1:2:bbbb::9]"));
        assert_eq!(client_key("2001:db8:1:2::1"), "2001:db8:1:2::/64");
        assert_eq!(client_key("anonymous"), "anonymous");
    }

    #[test]
    fn special_addresses_are_refused_unless_allowed() {
        let p = NetPolicy::default();
        for url in [
            "http://127.0.0.1:8080/x",
            "http://localhost/x",
            "http://api.localhost/x",
            "http://10.1.2.3/x",
            "http://172.20.0.1/x",
            "http://192.168.1.1/x",
            "http://169.254.169.254/latest/meta-data/",
            "http://metadata.google.internal/",
            "http://100.64.0.1/",
            "http://0.0.0.0:80/",
            "http://[::1]:3000/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:a9fe:a9fe]/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://0177.0.0.1/",
            "http://user:pw@127.0.0.1/",
            "http://%31%32%37.0.0.1/",
            "http://\u{ff11}\u{ff12}\u{ff17}.0.0.1/",
            "http://127\u{3002}0.0.1/",
            "https:///nohost",
            "http://[::127.0.0.1]/",
            "http://[::10.0.0.1]/",
            "http://[::ffff:0:127.0.0.1]/",
            "http://[::ffff:0:a9fe:a9fe]/",
            "http://[::5db8:d822]/",
            "http://example.com\\@127.0.0.1/",
            "http://a@b@127.0.0.1/",
            "http://exa mple.com/",
        ] {
            assert!(p.check_url(url).is_err(), "{url} must be refused");
        }
        for url in [
            "https://api.example.com/v1",
            "http://93.184.216.34/",
            "http://[2606:4700::1111]/",
        ] {
            assert!(p.check_url(url).is_ok(), "{url} must pass");
        }
        let msg = p.check_url("http://10.0.0.1/").unwrap_err().to_string();
        assert!(msg.contains("private") && msg.contains("MCPGW_SSRF_ALLOW"), "{msg}");
    }

    #[test]
    fn the_allow_list_takes_cidrs_addresses_names_and_classes() {
        let list = |s: &str| s.split(',').map(String::from).collect::<Vec<_>>();
        let p = NetPolicy::parse(&list("10.1.0.0/16, 192.168.5.5, build.internal, loopback")).expect("parse");
        assert!(p.check_url("http://10.1.200.3/").is_ok());
        assert!(p.check_url("http://10.2.0.1/").is_err());
        assert!(p.check_url("http://192.168.5.5/").is_ok());
        assert!(p.check_url("http://192.168.5.6/").is_err());
        assert!(p.check_url("http://build.internal/").is_ok());
        assert!(p.check_url("http://other.internal/").is_err());
        assert!(p.check_url("http://127.0.0.1:9/").is_ok());
        assert!(p.check_url("http://localhost:9/").is_ok());
        assert!(p.check_url("http://[::1]:9/").is_ok());
        assert!(p.check_url("http://169.254.169.254/").is_err());
        assert!(
            p.check_url("http://[::127.0.0.1]/").is_ok(),
            "IPv4-compatible loopback is loopback"
        );
        for bad in ["10.0.0.0/33", "not a host", "::1/129"] {
            assert!(NetPolicy::parse(&[bad.to_string()]).is_err(), "{bad}");
        }
    }
}
