//! Request ids come back exactly as the client wrote them, whatever the path an answer takes:
//! a result, an error of the engine, a refusal of the transport, a batch, a session's request,
//! `/rpc`, a 2026-07-28 request. Ids at the edges of what a 64-bit number holds, and a string.

use std::sync::Arc;

use bytes::Bytes;
use futures::executor::block_on;
use mcpgw_core::fixtures::{memory_ports, ManualClock};
use mcpgw_core::{Gateway, GatewayConfig, ServerInfo};

const IDS: [&str; 5] = [
    "18446744073709551615",
    "-9223372036854775808",
    "9007199254740993",
    "0",
    r#""id ☃ 1""#,
];

fn gateway() -> Gateway {
    let ports = memory_ports(Arc::new(ManualClock::at(1_000_000)));
    let info = ServerInfo {
        name: "mcpgw".into(),
        version: "ids".into(),
    };
    Gateway::new(GatewayConfig::default(), ports, info).expect("gateway")
}

fn post(path: &str, body: String, headers: &[(&str, &str)]) -> http::Request<Bytes> {
    let mut b = http::Request::post(path)
        .header("host", "127.0.0.1:4444")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Bytes::from(body)).expect("request")
}

/// The body of an answer, whole or streamed (SSE), as text.
fn text(resp: http::Response<mcpgw_core::Body>) -> String {
    use futures::StreamExt;
    match resp.into_body() {
        mcpgw_core::Body::Empty => String::new(),
        mcpgw_core::Body::Full(b) => String::from_utf8_lossy(&b).into_owned(),
        mcpgw_core::Body::Stream(s) => {
            let chunks: Vec<Bytes> = block_on(s.take(16).collect());
            chunks.iter().map(|c| String::from_utf8_lossy(c).into_owned()).collect()
        }
    }
}

/// `"id":<id>` as the answer must carry it.
fn carries(answer: &str, id: &str) -> bool {
    answer.contains(&format!("\"id\":{id}"))
}

#[test]
fn ids_come_back_exactly_on_every_path() {
    let gw = gateway();
    let init = |id: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"initialize","params":{{"protocolVersion":"2025-11-25","capabilities":{{}},"clientInfo":{{"name":"t","version":"1"}}}}}}"#
        )
    };
    let first = block_on(gw.handle(post("/mcp", init("1"), &[])));
    let sid = first.headers()["mcp-session-id"].to_str().expect("sid").to_string();
    let session = [("mcp-session-id", sid.as_str()), ("mcp-protocol-version", "2025-11-25")];
    let modern = |id: &str, method: &str, params: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{{{params}"_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{{}}}}}}}}"#
        )
    };
    for id in IDS {
        let cases: Vec<(&str, http::Request<Bytes>)> = vec![
            ("initialize", post("/mcp", init(id), &[])),
            (
                "ping in a session",
                post(
                    "/mcp",
                    format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#),
                    &session,
                ),
            ),
            (
                "an unknown method",
                post(
                    "/mcp",
                    format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"no/such"}}"#),
                    &session,
                ),
            ),
            (
                "an unknown tool",
                post(
                    "/mcp",
                    format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"nope"}}}}"#),
                    &session,
                ),
            ),
            (
                "bad params",
                post(
                    "/mcp",
                    format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":7}}"#),
                    &session,
                ),
            ),
            (
                "a batch",
                post(
                    "/rpc",
                    format!(
                        r#"[{{"jsonrpc":"2.0","id":{id},"method":"tools/list"}},{{"jsonrpc":"2.0","id":{id},"method":"x"}}]"#
                    ),
                    &[],
                ),
            ),
            (
                "/rpc",
                post(
                    "/rpc",
                    format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list"}}"#),
                    &[],
                ),
            ),
            (
                "no session",
                post(
                    "/mcp",
                    format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list"}}"#),
                    &[],
                ),
            ),
            (
                "2026-07-28",
                post(
                    "/mcp",
                    modern(id, "tools/list", ""),
                    &[("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/list")],
                ),
            ),
            (
                "2026-07-28 unknown tool",
                post(
                    "/mcp",
                    modern(id, "tools/call", r#""name":"nope","arguments":{},"#),
                    &[
                        ("mcp-protocol-version", "2026-07-28"),
                        ("mcp-method", "tools/call"),
                        ("mcp-name", "nope"),
                    ],
                ),
            ),
        ];
        for (what, req) in cases {
            let answer = text(block_on(gw.handle(req)));
            assert!(carries(&answer, id), "{what}, id {id}: {answer}");
        }
    }
}
