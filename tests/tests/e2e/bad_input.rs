//! Bad input gets a clear error, never a panic or a 500: one case per kind of mistake, sent raw
//! over HTTP to a real gateway process, which must still be serving at the end.

use std::time::Duration;

use mcpgw_e2e::{initialize, start_target, TempDir, TestGateway};
use reqwest::{Client, Response, StatusCode};
use serde_json::{json, Value};

const ACCEPT: &str = "application/json, text/event-stream";

struct Fixture {
    gw: TestGateway,
    http: Client,
    session: String,
    _dir: TempDir,
}

impl Fixture {
    async fn start() -> Self {
        let dir = TempDir::new("bad-input");
        let gw = start_target(&dir, &["--max-body-bytes", "65536"]).expect("gateway");
        let http = Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        let session = initialize(&http, gw.url()).await.expect("initialize");
        Self {
            gw,
            http,
            session,
            _dir: dir,
        }
    }

    async fn mcp_raw(&self, body: &str, headers: &[(&str, &str)]) -> Response {
        let mut rb = self
            .http
            .post(format!("{}/mcp", self.gw.url()))
            .header("content-type", "application/json")
            .body(body.to_string());
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        rb.send().await.expect("send")
    }

    async fn mcp(&self, body: &str) -> Response {
        self.mcp_raw(
            body,
            &[
                ("accept", ACCEPT),
                ("mcp-session-id", &self.session),
                ("mcp-protocol-version", "2025-11-25"),
            ],
        )
        .await
    }
}

/// Sends a raw HTTP/1.1 request; returns the status line.
async fn raw_http(addr: std::net::SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read");
    String::from_utf8_lossy(&out)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

async fn json_of(r: Response) -> Value {
    let text = r.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

async fn rpc_code(r: Response) -> i64 {
    json_of(r).await["error"]["code"]
        .as_i64()
        .expect("a JSON-RPC error code")
}

#[tokio::test]
async fn malformed_json_is_parse_error() {
    let f = Fixture::start().await;
    let r = f.mcp(r#"{"jsonrpc": "2.0", "id": 1, "method": "ping""#).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(rpc_code(r).await, -32700);
}

#[tokio::test]
async fn invalid_request_is_32600() {
    let f = Fixture::start().await;
    for body in [
        r#"{"jsonrpc": "1.0", "id": 1, "method": "ping"}"#,
        r#"{"id": 1}"#,
        r#"[]"#,
        r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#,
    ] {
        let r = f.mcp(body).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(rpc_code(r).await, -32600, "{body}");
    }
    // A batch in a 2025-11-25 session is not allowed.
    let r = f.mcp(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(rpc_code(r).await, -32600);
}

#[tokio::test]
async fn unknown_method_is_32601() {
    let f = Fixture::start().await;
    let r = f.mcp(r#"{"jsonrpc":"2.0","id":5,"method":"tools/frobnicate"}"#).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v = json_of(r).await;
    assert_eq!((v["error"]["code"].as_i64(), v["id"].as_i64()), (Some(-32601), Some(5)));
}

#[tokio::test]
async fn bad_params_are_32602() {
    let f = Fixture::start().await;
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"nope"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"cursor":"not-a-cursor"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"logging/setLevel","params":{"level":"loud"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":[1,2]}"#,
    ] {
        assert_eq!(rpc_code(f.mcp(body).await).await, -32602, "{body}");
    }
}

#[tokio::test]
async fn missing_or_wrong_accept_is_406() {
    let f = Fixture::start().await;
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    // reqwest always adds `Accept: */*`, so the request without any Accept goes out raw.
    let raw = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nMcp-Session-Id: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{ping}",
        f.session,
        ping.len()
    );
    let status_line = raw_http(f.gw.addr(), &raw).await;
    assert!(status_line.starts_with("HTTP/1.1 406"), "no Accept: {status_line}");
    let r = f
        .mcp_raw(ping, &[("accept", "text/html"), ("mcp-session-id", &f.session)])
        .await;
    assert_eq!(r.status(), StatusCode::NOT_ACCEPTABLE, "wrong Accept");
    let r = f
        .mcp_raw(ping, &[("accept", "application/json"), ("mcp-session-id", &f.session)])
        .await;
    assert_eq!(r.status(), StatusCode::NOT_ACCEPTABLE, "JSON only");
    assert!(json_of(r).await["error"]["message"]
        .as_str()
        .expect("message")
        .contains("Accept"));
    let r = f
        .http
        .get(format!("{}/mcp", f.gw.url()))
        .header("accept", "application/json")
        .header("mcp-session-id", &f.session)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::NOT_ACCEPTABLE, "GET without text/event-stream");
}

#[tokio::test]
async fn unknown_session_is_404() {
    let f = Fixture::start().await;
    let r = f
        .mcp_raw(
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
            &[("accept", ACCEPT), ("mcp-session-id", "deadbeef")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(rpc_code(r).await, -32001);
    // A deleted session is gone too.
    let d = f
        .http
        .delete(format!("{}/mcp", f.gw.url()))
        .header("mcp-session-id", &f.session)
        .send()
        .await
        .expect("delete");
    assert_eq!(d.status(), StatusCode::OK);
    assert_eq!(
        f.mcp(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn invalid_protocol_version_header_is_400() {
    let f = Fixture::start().await;
    let r = f
        .mcp_raw(
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
            &[
                ("accept", ACCEPT),
                ("mcp-session-id", &f.session),
                ("mcp-protocol-version", "1999-01-01"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(json_of(r).await["error"]["message"]
        .as_str()
        .expect("message")
        .contains("MCP-Protocol-Version"));
}

#[tokio::test]
async fn a_batch_over_the_message_limit_is_refused_whole() {
    let dir = TempDir::new("bad-input-batch");
    let gw = start_target(&dir, &["--max-batch", "5"]).expect("gateway");
    let batch = |n: usize| {
        let items: Vec<String> = (0..n)
            .map(|i| format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"ping"}}"#))
            .collect();
        format!("[{}]", items.join(","))
    };
    let post = |body: String| {
        Client::new()
            .post(format!("{}/rpc", gw.url()))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let r = post(batch(5)).await.expect("rpc");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(json_of(r).await.as_array().map(Vec::len), Some(5));
    let r = post(batch(6)).await.expect("rpc");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v = json_of(r).await;
    assert_eq!(v["error"]["code"], -32600, "{v}");
    assert!(
        v["error"]["message"].as_str().is_some_and(|m| m.contains("limit of 5")),
        "{v}"
    );
}

#[tokio::test]
async fn oversize_body_is_413() {
    let f = Fixture::start().await;
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"pad":"{}"}}}}"#,
        "x".repeat(70_000)
    );
    let r = f.mcp(&big).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(rpc_code(r).await, -32600);
    let r = f
        .http
        .post(format!("{}/tools", f.gw.url()))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(json_of(r).await["error"]["code"], "payload_too_large");
}

#[tokio::test]
async fn bad_rest_payloads_name_the_field() {
    let f = Fixture::start().await;
    let post = |path: &'static str, body: String| {
        let url = format!("{}{path}", f.gw.url());
        let http = f.http.clone();
        async move {
            http.post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("post")
        }
    };
    let r = post("/tools", "{not json".into()).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_of(r).await["error"]["code"], "invalid_json");
    let cases = [
        ("/tools", json!({"name": "w"}), "url"),
        ("/tools", json!({"name": "w", "url": "not a url"}), "url"),
        (
            "/tools",
            json!({"name": "w", "url": "http://127.0.0.1:1/x", "method": "FETCH"}),
            "method",
        ),
        (
            "/tools",
            json!({"name": "bad name!", "url": "http://127.0.0.1:1/x"}),
            "name",
        ),
        (
            "/tools",
            json!({"name": "w", "url": "http://127.0.0.1:1/x", "input_schema": {"type": "string"}}),
            "input_schema",
        ),
        ("/resources", json!({"name": "r", "uri": "docs://a"}), "text"),
        (
            "/resources",
            json!({"name": "r", "uri_template": "docs://a/{x}", "text": "{{ x"}),
            "text",
        ),
        (
            "/prompts",
            json!({"name": "p", "template": "x", "arguments": [{"name": "a"}, {"name": "a"}]}),
            "arguments[1].name",
        ),
        ("/servers", json!({"name": "s", "tools": ["ghost"]}), "tools[0]"),
    ];
    for (path, body, field) in cases {
        let r = post(path, body.to_string()).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{path} {body}");
        let v = json_of(r).await;
        assert_eq!(v["error"]["field"], field, "{path} {body}: {v}");
    }
    // Duplicate names conflict.
    let ok = json!({"name": "w", "url": "http://127.0.0.1:1/x"}).to_string();
    assert_eq!(post("/tools", ok.clone()).await.status(), StatusCode::CREATED);
    assert_eq!(post("/tools", ok).await.status(), StatusCode::CONFLICT);
}

#[tokio::test]
async fn hostile_requests_never_crash_the_gateway() {
    let f = Fixture::start().await;
    let bodies = [
        "",
        "null",
        "[null]",
        "[1,2,3]",
        r#"{"jsonrpc":"2.0"}"#,
        r#"{"jsonrpc":"2.0","method":7}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":[]}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":123}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/zzz"}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":5}}"#,
        "\u{0}\u{1}\u{2}",
        r#"{"a":"\ud800"}"#,
        &"[".repeat(10_000),
    ];
    for b in bodies {
        let r = f.mcp(b).await;
        assert!(
            r.status().is_client_error() || r.status() == StatusCode::OK || r.status() == StatusCode::ACCEPTED,
            "{b:?} -> {}",
            r.status()
        );
    }
    for (method, path) in [
        ("PUT", "/mcp"),
        ("PATCH", "/sse"),
        ("GET", "/rpc"),
        ("POST", "/health"),
        ("DELETE", "/tools"),
    ] {
        let r = f
            .http
            .request(method.parse().expect("method"), format!("{}{path}", f.gw.url()))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
    }
    assert_eq!(
        f.http
            .get(format!("{}/nowhere", f.gw.url()))
            .send()
            .await
            .expect("get")
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        f.http
            .get(format!("{}/health", f.gw.url()))
            .send()
            .await
            .expect("health")
            .status(),
        StatusCode::OK,
        "still serving"
    );
}

#[tokio::test]
async fn foreign_host_or_origin_is_403() {
    let f = Fixture::start().await;
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    for (header, value, status) in [
        ("host", "evil.example.com", StatusCode::FORBIDDEN),
        ("origin", "http://evil.example.com", StatusCode::FORBIDDEN),
        ("origin", "http://localhost:3000", StatusCode::OK),
    ] {
        let r = f
            .mcp_raw(
                ping,
                &[("accept", ACCEPT), ("mcp-session-id", &f.session), (header, value)],
            )
            .await;
        assert_eq!(r.status(), status, "{header}: {value}");
    }
}

#[tokio::test]
async fn server_discover_probe_gets_a_prompt_clean_error() {
    let f = Fixture::start().await;
    let r = f
        .mcp_raw(
            r#"{"jsonrpc":"2.0","id":9,"method":"server/discover","params":{}}"#,
            &[("accept", ACCEPT)],
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v = json_of(r).await;
    assert_eq!((v["error"]["code"].as_i64(), v["id"].as_i64()), (Some(-32601), Some(9)));
}
