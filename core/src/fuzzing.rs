//! The bodies of the fuzz targets, shared by the coverage-guided campaign (`fuzz/`, AFL++ on
//! stable Rust) and the replay of its corpus in CI (`core/tests/corpus.rs`), so that every input
//! a campaign kept is checked on every run after. Each panics when a property fails: nothing
//! panics on its own, a client's mistake is never a 5xx, no forged token is accepted, and the
//! SSE parser's output does not depend on how the bytes arrive.

use std::sync::Arc;

use bytes::Bytes;
use futures::executor::block_on;

use crate::fixtures::{memory_ports, ManualClock};
use crate::security::jwt::{KeySet, Verdict, Verifier};
use crate::{Gateway, GatewayConfig, ServerInfo};

/// The HS256 secret of the JWT target (a forgery would have to find it).
const SECRET: &str = "fuzz-Q8vN3xk1Lr7Yt2Pw9Jm4Hs6Df0Gb5Ca3Ue8Io1Kn7";

/// JSON-RPC bodies: any bytes.
pub fn jsonrpc(data: &[u8]) {
    let _ = crate::proto::jsonrpc::parse(data);
}

/// The SSE parser: the first byte says where the rest is split; whole or in two parts, the
/// events are the same.
pub fn sse(data: &[u8]) {
    let Some((&at, rest)) = data.split_first() else { return };
    let at = usize::from(at) * rest.len() / 255;
    let whole = crate::proto::sse::Parser::default().push(rest).unwrap_or_default();
    let mut p = crate::proto::sse::Parser::default();
    let mut parts = p.push(&rest[..at]).unwrap_or_default();
    parts.extend(p.push(&rest[at..]).unwrap_or_default());
    assert_eq!(whole, parts, "split at {at}");
}

/// Bearer tokens: any text, checked against an HS256 key and an RS256 key; never accepted.
pub fn jwt(data: &[u8]) {
    let token = String::from_utf8_lossy(data);
    let cfg = crate::security::auth::AuthConfig::from_vars(|n| (n == "MCPGW_JWT_SECRET").then(|| SECRET.to_string()))
        .expect("auth config");
    let crypto = crate::security::RustCrypto;
    let verdict = block_on(Verifier::new(&cfg).verify(&token, &KeySet::hs256(SECRET), 1_000_000, &crypto));
    assert!(!matches!(verdict, Verdict::Ok(_)), "accepted {token}");
    let rs = crate::security::auth::AuthConfig {
        algorithm: crate::security::auth::Alg::RS256,
        ..cfg
    };
    let keys = KeySet::from_jwks(rs.algorithm, RS256_PUBLIC).expect("key");
    let verdict = block_on(Verifier::new(&rs).verify(&token, &keys, 1_000_000, &crypto));
    assert!(!matches!(verdict, Verdict::Ok(_)), "accepted {token} as RS256");
}

const RS256_PUBLIC: &str = include_str!("../../tests/fixtures/keys/rs256.public.json");

/// A gateway on memory ports for the HTTP target (build it once: it is the costly part).
pub fn http_gateway() -> Gateway {
    let ports = memory_ports(Arc::new(ManualClock::at(1_000_000)));
    let info = ServerInfo {
        name: "mcpgw".into(),
        version: "fuzz".into(),
    };
    Gateway::new(GatewayConfig::default(), ports, info).expect("gateway")
}

/// Whole HTTP requests, as text: `METHOD PATH`, header lines, a blank line, the body. Whatever
/// the request, the gateway answers it, and not with a 5xx of its own making (502 and 503 are an
/// upstream's or the store's state, never a parse failure).
pub fn http(gw: &Gateway, data: &[u8]) {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &b""[..]),
    };
    let head = String::from_utf8_lossy(head);
    let mut lines = head.lines();
    let mut first = lines.next().unwrap_or_default().splitn(2, ' ');
    let (method, path) = (first.next().unwrap_or("GET"), first.next().unwrap_or("/"));
    let mut b = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "127.0.0.1:4444");
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            b = b.header(name.trim(), value.trim());
        }
    }
    let Ok(req) = b.body(Bytes::copy_from_slice(body)) else {
        return;
    };
    let status = block_on(gw.handle(req)).status().as_u16();
    assert!(
        status < 500 || status == 502 || status == 503,
        "{method} {path} -> {status}"
    );
}

/// URLs an upstream or a registration names: an SSE upstream's `endpoint` event is kept only on
/// the stream's origin, and where the SSRF guard lets a URL through, the host it checked is the
/// host an HTTP client would dial (no parser differential: backslashes, `@`, brackets, ports).
pub fn url(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let base = "http://up.example:8080/a/sse";
    if let Ok(resolved) = crate::upstream::sse_endpoint(base, &text) {
        assert_eq!(
            crate::netguard::origin(&resolved),
            crate::netguard::origin(base),
            "{text:?} -> {resolved}"
        );
        if let Ok(uri) = resolved.parse::<http::Uri>() {
            assert_eq!(
                uri.host().map(str::to_ascii_lowercase).as_deref(),
                Some("up.example"),
                "{resolved}"
            );
        }
    }
    let policy = crate::netguard::NetPolicy::default();
    if policy.check_url(&text).is_ok() {
        let checked = crate::netguard::url_host(&text).map(|h| h.trim_end_matches('.').to_ascii_lowercase());
        if let Ok(uri) = text.parse::<http::Uri>() {
            let dialled = uri.host().map(|h| {
                h.trim_start_matches('[')
                    .trim_end_matches(']')
                    .trim_end_matches('.')
                    .to_ascii_lowercase()
            });
            if uri.scheme_str().is_some_and(|s| s == "http" || s == "https") {
                assert_eq!(
                    checked, dialled,
                    "{text:?}: checked one host, a client would dial another"
                );
                if let Some(ip) = dialled.as_deref().and_then(|h| h.parse::<std::net::IpAddr>().ok()) {
                    assert!(policy.check_ip(ip).is_ok(), "{text:?} reaches {ip}");
                }
            }
        }
    }
}

/// Names an upstream lists (one per line of the input), beside a local tool that takes one of
/// them: every name served keeps the MCP tool-name rules, and no name is served twice.
pub fn names(data: &[u8]) {
    use crate::ports::RawRecord;
    let text = String::from_utf8_lossy(data);
    let tools: Vec<serde_json::Value> = text.lines().take(64).map(|n| serde_json::json!({"name": n})).collect();
    let upstream = serde_json::json!({
        "name": "gh", "url": "https://mcp.example.com/mcp",
        "catalog": {"tools": tools, "prompts": text.lines().take(8).map(|n| serde_json::json!({"name": n})).collect::<Vec<_>>()},
    });
    let record = |id: &str, body: serde_json::Value| RawRecord {
        id: id.into(),
        key: id.into(),
        body: body.to_string(),
        updated_at: 0,
    };
    let local = record(
        "t1",
        serde_json::json!({"name": "gh__x", "url": "https://api.example.com/x"}),
    );
    let snap = crate::registry::Snapshot::build(
        [
            vec![local],
            vec![],
            vec![],
            vec![],
            vec![record("u1", upstream)],
            vec![],
        ],
        "__",
        "gw",
    );
    let mut seen = std::collections::HashSet::new();
    for t in &snap.tools {
        assert!(crate::model::is_tool_name(&t.def.name), "served {:?}", t.def.name);
        assert!(seen.insert(t.def.name.clone()), "{:?} served twice", t.def.name);
    }
    let mut seen = std::collections::HashSet::new();
    for p in &snap.prompts {
        assert!(seen.insert(p.def.name.clone()), "prompt {:?} served twice", p.def.name);
    }
}

/// Admin UI cookies: whatever a client sends does not open as a session, and whatever the
/// gateway sealed as a credential (its text chosen by whoever wrote the credential) does not
/// open as a cookie either.
pub fn cookie(data: &[u8]) {
    use crate::registry::seal::{Purpose, Sealer};
    let crypto = || -> Arc<dyn crate::ports::Crypto> { Arc::new(crate::security::RustCrypto) };
    let master = [7u8; 32];
    let cookies = Sealer::derive(&master, Purpose::AdminCookie, crypto());
    let text = String::from_utf8_lossy(data);
    let forged = block_on(cookies.open_in("mcpgw_admin", &Sealer::with_prefix(&text)));
    assert!(forged.is_err(), "a cookie opened without the key: {text:?}");
    let credentials = Sealer::derive(&master, Purpose::Credentials, crypto());
    let sealed = block_on(credentials.seal_in("Upstream/u/headers/Authorization", &text, [3; 12])).expect("seal");
    assert!(
        block_on(cookies.open_in("mcpgw_admin", &sealed)).is_err(),
        "a credential opened as a cookie"
    );
    assert!(block_on(cookies.open_in("mcpgw_admin", &Sealer::with_prefix(Sealer::strip_prefix(&sealed)))).is_err());
}
