//! Property-based fuzzing of everything that parses client input: JSON-RPC bodies (arbitrary
//! bytes and arbitrary JSON), the SSE parser (arbitrary bytes, split anywhere), whole HTTP
//! requests through `Gateway::handle` (arbitrary method, path, headers and body), and bearer
//! tokens (arbitrary bytes, and three base64url parts around arbitrary JSON) through the JWT
//! verifier and through a gateway with auth on. The properties: nothing panics, a client's
//! mistake is never a 5xx, no forged token is ever accepted, and the SSE parser's output does
//! not depend on how the bytes were chunked. Cases per property: `MCPGW_FUZZ_CASES`
//! (default 2000).

use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use futures::executor::block_on;
use mcpgw_core::fixtures::{memory_ports, ManualClock};
use mcpgw_core::proto::jsonrpc;
use mcpgw_core::security::auth::{AuthConfig, Secret};
use mcpgw_core::security::jwt::{KeySet, Verdict, Verifier};
use mcpgw_core::{Gateway, GatewayConfig, ServerInfo};
use proptest::prelude::*;
use serde_json::Value;

fn cases() -> u32 {
    std::env::var("MCPGW_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

fn gateway() -> Gateway {
    gateway_with(GatewayConfig::default())
}

fn gateway_with(config: GatewayConfig) -> Gateway {
    let ports = memory_ports(Arc::new(ManualClock::at(1_000_000)));
    let info = ServerInfo {
        name: "mcpgw".into(),
        version: "fuzz".into(),
    };
    Gateway::new(config, ports, info).expect("gateway")
}

const SECRET: &str = "fuzz-Q8vN3xk1Lr7Yt2Pw9Jm4Hs6Df0Gb5Ca3Ue8Io1Kn7";

fn auth_config() -> AuthConfig {
    AuthConfig::from_vars(|n| (n == "MCPGW_JWT_SECRET").then(|| SECRET.to_string())).expect("auth config")
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Token-shaped strings: three base64url parts around arbitrary JSON (headers naming real and
/// bogus algorithms), or arbitrary printable text with dots.
fn token() -> impl Strategy<Value = String> {
    let alg = prop_oneof![
        Just("HS256"),
        Just("none"),
        Just("None"),
        Just("RS256"),
        Just("ES256"),
        Just("EdDSA"),
        Just("HS512"),
        Just("")
    ];
    let header = (alg, json_value()).prop_map(|(alg, extra)| {
        let mut h = serde_json::json!({"alg": alg, "typ": "JWT"});
        if let Value::Object(m) = extra {
            for (k, v) in m {
                h[k] = v;
            }
        }
        h.to_string()
    });
    let payload = prop_oneof![
        json_value().prop_map(|v| v.to_string()),
        Just(r#"{"sub":"x","iss":"mcpgw","aud":"mcpgw","exp":99999999999,"scope":"mcpgw:admin"}"#.to_string()),
    ];
    let signature = prop::collection::vec(any::<u8>(), 0..80);
    prop_oneof![
        (header, payload, signature).prop_map(|(h, p, s)| format!(
            "{}.{}.{}",
            b64url(h.as_bytes()),
            b64url(p.as_bytes()),
            b64url(&s)
        )),
        "[ -~]{0,200}",
        "[A-Za-z0-9_-]{0,40}\\.[A-Za-z0-9_-]{0,60}\\.[A-Za-z0-9_.=+/-]{0,60}",
    ]
}

/// Arbitrary JSON, biased towards JSON-RPC-looking objects.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[a-z/_]{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("2.0"),
            Just("initialize"),
            Just("tools/call"),
            Just("tools/list"),
            Just("ping")
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("jsonrpc".to_string()),
                    Just("id".to_string()),
                    Just("method".to_string()),
                    Just("params".to_string()),
                    Just("result".to_string()),
                    Just("error".to_string()),
                    "[a-z]{1,8}"
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn jsonrpc_parse_never_panics_on_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = jsonrpc::parse(&body);
    }

    #[test]
    fn jsonrpc_parse_never_panics_on_json(v in json_value()) {
        let body = v.to_string();
        let _ = jsonrpc::parse(body.as_bytes());
    }

    #[test]
    fn sse_parsing_does_not_depend_on_chunking(
        data in prop::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), Just(b':'), Just(b' '), any::<u8>()], 0..400),
        split in any::<prop::sample::Index>(),
    ) {
        let whole = mcpgw_core::proto::sse::Parser::default().push(&data).unwrap_or_default();
        let at = split.index(data.len() + 1);
        let mut p = mcpgw_core::proto::sse::Parser::default();
        let mut parts = p.push(&data[..at]).unwrap_or_default();
        parts.extend(p.push(&data[at..]).unwrap_or_default());
        prop_assert_eq!(whole, parts);
    }

    #[test]
    fn http_requests_never_panic_or_fail_with_500(
        method in prop_oneof![Just("GET"), Just("POST"), Just("PUT"), Just("PATCH"), Just("DELETE"), Just("OPTIONS"), Just("HEAD")],
        path in prop_oneof![
            Just("/mcp".to_string()), Just("/rpc".to_string()), Just("/sse".to_string()),
            Just("/message?sessionId=x".to_string()), Just("/tools".to_string()), Just("/gateways".to_string()),
            Just("/servers/x/mcp".to_string()), Just("/gateways/x/refresh".to_string()),
            "/[a-z%/._-]{0,20}",
        ],
        accept in prop_oneof![Just("application/json, text/event-stream"), Just("*/*"), Just("text/html"), Just("")],
        session in prop_oneof![Just(None), Just(Some("1".to_string())), "[ -~]{0,40}".prop_map(Some)],
        version in prop_oneof![Just(None), Just(Some("2025-11-25".to_string())), "[ -~]{0,12}".prop_map(Some)],
        body in prop_oneof![
            json_value().prop_map(|v| v.to_string().into_bytes()),
            prop::collection::vec(any::<u8>(), 0..256),
        ],
    ) {
        let gw = gateway();
        let mut b = http::Request::builder()
            .method(method)
            .uri(path.as_str())
            .header("host", "127.0.0.1:4444")
            .header("content-type", "application/json");
        if !accept.is_empty() {
            b = b.header("accept", accept);
        }
        if let Some(s) = session.filter(|s| http::HeaderValue::from_str(s).is_ok()) {
            b = b.header("mcp-session-id", s);
        }
        if let Some(v) = version.filter(|v| http::HeaderValue::from_str(v).is_ok()) {
            b = b.header("mcp-protocol-version", v);
        }
        let Ok(req) = b.body(Bytes::from(body)) else { return Ok(()) };
        let status = block_on(gw.handle(req)).status().as_u16();
        // 502/503 are the gateway's own state (an upstream, the store), never a parse failure.
        prop_assert!(status < 500 || status == 502 || status == 503, "{} {} -> {}", method, path, status);
    }

    #[test]
    fn no_forged_token_is_ever_accepted(t in token()) {
        let cfg = auth_config();
        let rust = mcpgw_core::security::RustCrypto;
        let verdict = block_on(Verifier::new(&cfg).verify(&t, &KeySet::hs256(SECRET), 1_000_000, &rust));
        prop_assert!(!matches!(verdict, Verdict::Ok(_)), "accepted {}", t);
        // The same against RSA keys, whose checks go through the crypto port.
        let rs = mcpgw_core::security::auth::AuthConfig {
            algorithm: mcpgw_core::security::auth::Alg::RS256,
            ..cfg
        };
        let public = include_str!("../../tests/fixtures/keys/rs256.public.json");
        let keys = KeySet::from_jwks(rs.algorithm, public).expect("key");
        let verdict = block_on(Verifier::new(&rs).verify(&t, &keys, 1_000_000, &rust));
        prop_assert!(!matches!(verdict, Verdict::Ok(_)), "accepted {} as RS256", t);
    }

    #[test]
    fn authorization_headers_never_panic_and_forgeries_get_401(
        t in token(),
        scheme in prop_oneof![Just("Bearer "), Just("bearer "), Just("Basic "), Just(""), Just("Token ")],
        path in prop_oneof![Just("/mcp"), Just("/rpc"), Just("/tools"), Just("/auth/revocations"), Just("/servers/x/mcp")],
    ) {
        let mut config = GatewayConfig { auth: auth_config(), ..GatewayConfig::default() };
        config.auth.admin_user = Some("admin".into());
        static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let hash = HASH.get_or_init(|| mcpgw_core::security::auth::PasswordHash::create("right password 1", b"0123456789abcdef", 10_000));
        config.auth.admin_password_hash = Some(Secret(hash.clone()));
        let gw = gateway_with(config);
        let Ok(value) = http::HeaderValue::from_str(&format!("{scheme}{t}")) else { return Ok(()) };
        let req = http::Request::builder()
            .method("POST")
            .uri(path)
            .header("host", "127.0.0.1:4444")
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .header("authorization", value)
            .body(Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#))
            .expect("request");
        let status = block_on(gw.handle(req)).status().as_u16();
        prop_assert_eq!(status, 401, "{} {}{} -> {}", path, scheme, t, status);
    }
}
