//! The stateless era (2026-07-28) on `/mcp`, beside the session era, on both runtimes: requests
//! with per-request `_meta` and mirrored headers, no `initialize` and no session; local members
//! and members federated from the fixture upstream (a session-era server, reached over the
//! gateway's shared upstream session).

use mcpgw_e2e::{http_client, seed_over_rest, start_target, Fixture, TempDir, TestGateway};
use reqwest::StatusCode;
use serde_json::{json, Value};

const ACCEPT: &str = "application/json, text/event-stream";
const V: &str = "2026-07-28";

pub(crate) fn meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": V,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "e2e", "version": "1"},
    })
}

/// What one stateless POST got: status, whether a session id came back, and every JSON-RPC
/// message (one for JSON; each event for SSE, the answer last).
pub(crate) struct Answer {
    pub status: StatusCode,
    pub session_header: bool,
    pub messages: Vec<Value>,
}

impl Answer {
    pub fn last(&self) -> &Value {
        self.messages.last().expect("a message")
    }
    pub fn code(&self) -> Option<i64> {
        self.last()["error"]["code"].as_i64()
    }
}

/// POSTs `method` with `params` (to which `_meta` is added unless `params` has one or is
/// null) and the standard headers, then `headers` (a value of "" removes that header).
pub(crate) async fn post(url: &str, id: Value, method: &str, params: Value, headers: &[(&str, &str)]) -> Answer {
    let mut params = params;
    if let Some(p) = params.as_object_mut() {
        p.entry("_meta").or_insert_with(meta);
    }
    let mut body = json!({"jsonrpc": "2.0", "id": id, "method": method});
    if !params.is_null() {
        body["params"] = params.clone();
    }
    let name = params
        .get("name")
        .or_else(|| params.get("uri"))
        .and_then(Value::as_str)
        .filter(|_| matches!(method, "tools/call" | "prompts/get" | "resources/read"));
    let mut std_headers: Vec<(String, String)> = vec![
        ("accept".into(), ACCEPT.into()),
        ("mcp-protocol-version".into(), V.into()),
        ("mcp-method".into(), method.into()),
    ];
    if let Some(n) = name {
        std_headers.push(("mcp-name".into(), n.into()));
    }
    for (k, v) in headers {
        std_headers.retain(|(name, _)| !name.eq_ignore_ascii_case(k));
        if !v.is_empty() {
            std_headers.push((k.to_string(), v.to_string()));
        }
    }
    let mut req = http_client().post(url).json(&body);
    for (k, v) in &std_headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let r = req.send().await.expect("POST");
    let status = r.status();
    let session_header = r.headers().contains_key("mcp-session-id");
    let sse = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("text/event-stream"));
    let text = r.text().await.expect("body");
    let messages = if sse {
        text.split("\n\n")
            .filter_map(|block| {
                let data: Vec<&str> = block.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
                (!data.is_empty()).then(|| serde_json::from_str(&data.join("\n")).expect("JSON event"))
            })
            .collect()
    } else if text.is_empty() {
        Vec::new()
    } else {
        vec![serde_json::from_str(&text).unwrap_or_else(|e| panic!("JSON body {text:?}: {e}"))]
    };
    Answer {
        status,
        session_header,
        messages,
    }
}

struct Stateless {
    gw: TestGateway,
    _fixture: Fixture,
    _dir: TempDir,
}

impl Stateless {
    fn mcp(&self) -> String {
        format!("{}/mcp", self.gw.url())
    }
}

/// A gateway with a local resource and prompt, and the fixture upstream registered as `fx`.
async fn start() -> Stateless {
    let dir = TempDir::new("stateless");
    let gw = start_target(&dir, &["--cache-ttl-ms", "4321"]).expect("gateway");
    let fixture = Fixture::start("streamable-http", None);
    seed_over_rest(
        gw.url(),
        r#"
[[resource]]
uri = "note://hello"
name = "hello"
mime_type = "text/plain"
text = "hello there"

[[prompt]]
name = "greet"
description = "Greets"
template = "Hello {{ who }}"
arguments = [{ name = "who", required = true }]
"#,
    )
    .await
    .expect("seed");
    let r = http_client()
        .post(format!("{}/gateways", gw.url()))
        .json(&json!({"name": "fx", "url": format!("{}/mcp", fixture.url)}))
        .send()
        .await
        .expect("register");
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    Stateless {
        gw,
        _fixture: fixture,
        _dir: dir,
    }
}

fn assert_modern_result(a: &Answer) {
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.messages);
    assert!(!a.session_header, "a stateless answer names no session");
    let r = &a.last()["result"];
    assert_eq!(r["resultType"], "complete", "{:?}", a.messages);
    assert!(
        r["_meta"]["io.modelcontextprotocol/serverInfo"]["name"].is_string(),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_lists_and_reads_are_served_without_a_session() {
    let s = start().await;
    let url = s.mcp();

    let d = post(&url, json!("d-1"), "server/discover", json!({}), &[]).await;
    assert_modern_result(&d);
    let r = &d.last()["result"];
    assert_eq!(d.last()["id"], "d-1");
    assert_eq!(r["supportedVersions"][0], V);
    assert!(r["supportedVersions"]
        .as_array()
        .unwrap()
        .contains(&json!("2025-11-25")));
    assert!(r["capabilities"]["tools"].is_object() && r["capabilities"]["prompts"].is_object());
    assert_eq!(
        (r["ttlMs"].as_u64(), r["cacheScope"].as_str()),
        (Some(4321), Some("public"))
    );

    for (method, key) in [
        ("tools/list", "tools"),
        ("prompts/list", "prompts"),
        ("resources/list", "resources"),
        ("resources/templates/list", "resourceTemplates"),
    ] {
        let a = post(&url, json!(2), method, json!({}), &[]).await;
        assert_modern_result(&a);
        let r = &a.last()["result"];
        assert!(r[key].is_array(), "{method}: {r}");
        assert_eq!(
            (r["ttlMs"].as_u64(), r["cacheScope"].as_str()),
            (Some(4321), Some("public")),
            "{method}"
        );
    }
    let tools = post(&url, json!(3), "tools/list", json!({}), &[]).await;
    assert!(
        tools.last()["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "fx__test_simple_text"),
        "federated tools are listed"
    );

    let read = post(&url, json!(4), "resources/read", json!({"uri": "note://hello"}), &[]).await;
    assert_modern_result(&read);
    assert_eq!(read.last()["result"]["contents"][0]["text"], "hello there");
    assert_eq!(read.last()["result"]["ttlMs"], 4321);

    let missing = post(&url, json!(5), "resources/read", json!({"uri": "note://nothing"}), &[]).await;
    assert_eq!(missing.status, StatusCode::OK);
    assert_eq!(
        missing.code(),
        Some(-32602),
        "resource not found is invalid params in 2026-07-28"
    );
    assert_eq!(missing.last()["error"]["data"]["uri"], "note://nothing");

    let prompt = post(
        &url,
        json!(6),
        "prompts/get",
        json!({"name": "greet", "arguments": {"who": "Ada"}}),
        &[],
    )
    .await;
    assert_modern_result(&prompt);
    assert_eq!(prompt.last()["result"]["messages"][0]["content"]["text"], "Hello Ada");
}

/// What is wrong, the method, its params, headers to change, the status and code expected.
type Case = (
    &'static str,
    &'static str,
    Value,
    Vec<(&'static str, &'static str)>,
    StatusCode,
    i64,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_and_headers_are_checked_with_the_codes_the_specification_gives() {
    let s = start().await;
    let url = s.mcp();
    let bare = json!({"_meta": {"io.modelcontextprotocol/protocolVersion": V}});
    let cases: Vec<Case> = vec![
        (
            "no _meta",
            "server/discover",
            json!({"_meta": null}),
            vec![],
            StatusCode::BAD_REQUEST,
            -32602,
        ),
        (
            "no capabilities",
            "server/discover",
            bare,
            vec![],
            StatusCode::BAD_REQUEST,
            -32602,
        ),
        (
            "version header differs from _meta",
            "server/discover",
            json!({}),
            vec![("mcp-protocol-version", "2025-11-25")],
            StatusCode::BAD_REQUEST,
            -32020,
        ),
        (
            "no Mcp-Method",
            "tools/list",
            json!({}),
            vec![("mcp-method", "")],
            StatusCode::BAD_REQUEST,
            -32020,
        ),
        (
            "Mcp-Method differs",
            "tools/list",
            json!({}),
            vec![("mcp-method", "prompts/list")],
            StatusCode::BAD_REQUEST,
            -32020,
        ),
        (
            "no Mcp-Name",
            "tools/call",
            json!({"name": "fx__test_simple_text", "arguments": {}}),
            vec![("mcp-name", "")],
            StatusCode::BAD_REQUEST,
            -32020,
        ),
        (
            "Mcp-Name differs",
            "tools/call",
            json!({"name": "fx__test_simple_text", "arguments": {}}),
            vec![("mcp-name", "other")],
            StatusCode::BAD_REQUEST,
            -32020,
        ),
        (
            "initialize is removed",
            "initialize",
            json!({}),
            vec![],
            StatusCode::NOT_FOUND,
            -32601,
        ),
        (
            "ping is removed",
            "ping",
            json!({}),
            vec![],
            StatusCode::NOT_FOUND,
            -32601,
        ),
        (
            "logging/setLevel is removed",
            "logging/setLevel",
            json!({"level": "info"}),
            vec![],
            StatusCode::NOT_FOUND,
            -32601,
        ),
        (
            "resources/subscribe is removed",
            "resources/subscribe",
            json!({"uri": "note://hello"}),
            vec![],
            StatusCode::NOT_FOUND,
            -32601,
        ),
        (
            "unknown method",
            "unknown/method",
            json!({}),
            vec![],
            StatusCode::NOT_FOUND,
            -32601,
        ),
    ];
    for (i, (what, method, mut params, headers, status, code)) in cases.into_iter().enumerate() {
        if params.get("_meta").is_some_and(Value::is_null) {
            params.as_object_mut().unwrap().remove("_meta");
            // Keep `post` from adding one: a params object whose _meta is not an object.
            params = json!({"_meta": "none"});
        }
        let id = json!(100 + i);
        let a = post(&url, id.clone(), method, params, &headers).await;
        assert_eq!((a.status, a.code()), (status, Some(code)), "{what}: {:?}", a.messages);
        assert_eq!(a.last()["id"], id, "{what}: the error carries the request's id");
    }

    // An unknown revision in both places: -32022 with what is supported and what was asked.
    let future = json!({"_meta": {"io.modelcontextprotocol/protocolVersion": "v999.0.0", "io.modelcontextprotocol/clientCapabilities": {}}});
    let a = post(
        &url,
        json!(301),
        "server/discover",
        future,
        &[("mcp-protocol-version", "v999.0.0")],
    )
    .await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::BAD_REQUEST, Some(-32022)),
        "{:?}",
        a.messages
    );
    let data = &a.last()["error"]["data"];
    assert_eq!(data["requested"], "v999.0.0");
    assert!(data["supported"].as_array().unwrap().contains(&json!(V)));

    // A name outside plain ASCII travels base64-encoded in Mcp-Name.
    let a = post(
        &url,
        json!(302),
        "resources/read",
        json!({"uri": "note://hello"}),
        &[("mcp-name", "=?base64?bm90ZTovL2hlbGxv?=")],
    )
    .await;
    assert_modern_result(&a);

    // No standalone stream and no session to end in this era.
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let r = http_client()
            .request(method.clone(), &url)
            .header("accept", "text/event-stream")
            .header("mcp-protocol-version", V)
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn federated_calls_stream_progress_and_only_the_logs_asked_for() {
    let s = start().await;
    let url = s.mcp();
    let simple = post(
        &url,
        json!(1),
        "tools/call",
        json!({"name": "fx__test_simple_text", "arguments": {}}),
        &[],
    )
    .await;
    assert_modern_result(&simple);
    assert!(simple.last()["result"]["content"][0]["text"]
        .as_str()
        .is_some_and(|t| t.contains("simple text")));

    let mut p = json!({"name": "fx__test_tool_with_progress", "arguments": {}});
    p["_meta"] = meta();
    p["_meta"]["progressToken"] = json!("tok-1");
    let progress = post(&url, json!(2), "tools/call", p, &[]).await;
    assert_modern_result(&progress);
    let notes: Vec<&Value> = progress
        .messages
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .collect();
    assert!(
        notes.len() >= 3,
        "progress on the request's own stream: {:?}",
        progress.messages
    );
    assert!(notes.iter().all(|n| n["params"]["progressToken"] == "tok-1"));

    let quiet = post(
        &url,
        json!(3),
        "tools/call",
        json!({"name": "fx__test_tool_with_logging", "arguments": {}}),
        &[],
    )
    .await;
    assert_modern_result(&quiet);
    assert!(
        !quiet.messages.iter().any(|m| m["method"] == "notifications/message"),
        "no logs without logLevel: {:?}",
        quiet.messages
    );
    let mut p = json!({"name": "fx__test_tool_with_logging", "arguments": {}});
    p["_meta"] = meta();
    p["_meta"]["io.modelcontextprotocol/logLevel"] = json!("debug");
    let loud = post(&url, json!(4), "tools/call", p, &[]).await;
    assert_modern_result(&loud);
    let logs = loud
        .messages
        .iter()
        .filter(|m| m["method"] == "notifications/message")
        .count();
    assert!(logs >= 3, "logs at the level asked for: {:?}", loud.messages);
    assert!(
        loud.messages.iter().all(|m| m.get("id").is_none() || m["id"] == 4),
        "no requests of the upstream's on the stream"
    );
}

/// Every file under `dir`, recursively.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// On the edge, stateless requests are the Worker's alone: no session's Durable Object is
/// created for them (workerd persists each object it creates as a file of its own), while an
/// `initialize` creates one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_traffic_creates_no_session_object() {
    let s = start().await;
    let TestGateway::Edge(edge) = &s.gw else {
        mcpgw_e2e::skip(
            "stateless::stateless_traffic_creates_no_session_object",
            "Durable Objects are the edge's",
        );
        return;
    };
    let objects = || {
        files_under(&edge.state_dir.join("state"))
            .into_iter()
            .filter(|p| p.to_string_lossy().contains("McpSession"))
            .count()
    };
    let before = objects();
    let url = s.mcp();
    for (i, (method, params)) in [
        ("server/discover", json!({})),
        ("tools/list", json!({})),
        ("tools/call", json!({"name": "fx__test_simple_text", "arguments": {}})),
        ("resources/read", json!({"uri": "note://hello"})),
    ]
    .into_iter()
    .enumerate()
    {
        assert_modern_result(&post(&url, json!(i), method, params, &[]).await);
    }
    assert_eq!(objects(), before, "stateless requests created a session object");
    mcpgw_e2e::initialize(&http_client(), s.gw.url())
        .await
        .expect("initialize");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while objects() == before {
        assert!(
            std::time::Instant::now() < deadline,
            "an initialize creates a session object, seen as a file: {:?}",
            files_under(&edge.state_dir.join("state"))
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// `subscriptions/listen`: the acknowledgement first, then only the kinds asked for, each
/// tagged with the listen request's id; a registry write through the REST API is one change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listen_stream_hears_only_what_it_asked_for() {
    let s = start().await;
    let url = s.mcp();
    let mut params = json!({"notifications": {"promptsListChanged": true, "toolsListChanged": false}});
    params["_meta"] = meta();
    let r = http_client()
        .post(&url)
        .header("accept", ACCEPT)
        .header("mcp-protocol-version", V)
        .header("mcp-method", "subscriptions/listen")
        .json(&json!({"jsonrpc": "2.0", "id": "sub-1", "method": "subscriptions/listen", "params": params}))
        .send()
        .await
        .expect("listen");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(!r.headers().contains_key("mcp-session-id"));
    let mut events = Box::pin(sse_messages(r));
    let ack = next_message(&mut events).await;
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged", "{ack}");
    assert_eq!(
        ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "sub-1"
    );
    assert_eq!(ack["params"]["notifications"], json!({"promptsListChanged": true}));

    let create = |collection: &'static str, body: Value| {
        let gw = s.gw.url().to_string();
        async move {
            let r = http_client()
                .post(format!("{gw}/{collection}"))
                .json(&body)
                .send()
                .await
                .expect("create");
            assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
        }
    };
    // A tool change is not asked for; the prompt change after it is the next message.
    create(
        "tools",
        json!({"name": "noted", "url": "http://127.0.0.1:9/x", "input_schema": {"type": "object"}}),
    )
    .await;
    create("prompts", json!({"name": "later", "template": "hi"})).await;
    let note = next_message(&mut events).await;
    assert_eq!(note["method"], "notifications/prompts/list_changed", "{note}");
    assert_eq!(
        note["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "sub-1"
    );
}

/// The JSON-RPC messages of an SSE response, as they come (keep-alives skipped).
pub(crate) fn sse_messages(r: reqwest::Response) -> impl futures_lite::Stream<Item = Value> {
    use futures_lite::StreamExt;
    let bytes = r.bytes_stream();
    futures_lite::stream::unfold((bytes, String::new()), |(mut bytes, mut buf)| async move {
        loop {
            if let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                let data: Vec<&str> = block.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
                if data.is_empty() {
                    continue;
                }
                let v = serde_json::from_str(&data.join("\n")).expect("JSON event");
                return Some((v, (bytes, buf)));
            }
            let chunk = bytes.next().await?.ok()?;
            buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
}

pub(crate) async fn next_message(events: &mut std::pin::Pin<Box<impl futures_lite::Stream<Item = Value>>>) -> Value {
    use futures_lite::StreamExt;
    tokio::time::timeout(std::time::Duration::from_secs(10), events.next())
        .await
        .expect("a message in time")
        .expect("the stream stays open")
}

/// Many stateless calls at once on a gateway that has not yet reached the upstream: on the edge
/// they are all one isolate's requests, and none may wait on another's I/O (the link one of them
/// opens), or the runtime cancels it as hung.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_stateless_federated_calls_all_complete() {
    let s = start().await;
    let url = s.mcp();
    for round in 0..3u64 {
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..16u64 {
            let url = url.clone();
            calls.spawn(async move {
                post(
                    &url,
                    json!(round * 100 + i),
                    "tools/call",
                    json!({"name": "fx__test_simple_text", "arguments": {}}),
                    &[],
                )
                .await
            });
        }
        for a in calls.join_all().await {
            assert_modern_result(&a);
            assert!(a.last()["result"]["content"][0]["text"]
                .as_str()
                .is_some_and(|t| t.contains("simple text")));
        }
    }
}

/// `resourceSubscriptions` on a listen stream: the acknowledgement names the resources it will
/// watch (the gateway's own that exist), and a change to one is `notifications/resources/updated`
/// with its URI, tagged; list changes not asked for are not sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listen_stream_hears_updates_of_the_resources_it_named() {
    let s = start().await;
    let mut params = json!({"notifications": {"resourceSubscriptions": ["note://hello", "note://nowhere"]}});
    params["_meta"] = meta();
    let r = http_client()
        .post(s.mcp())
        .header("accept", ACCEPT)
        .header("mcp-protocol-version", V)
        .header("mcp-method", "subscriptions/listen")
        .json(&json!({"jsonrpc": "2.0", "id": 7, "method": "subscriptions/listen", "params": params}))
        .send()
        .await
        .expect("listen");
    assert_eq!(r.status(), StatusCode::OK);
    let mut events = Box::pin(sse_messages(r));
    let ack = next_message(&mut events).await;
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged", "{ack}");
    assert_eq!(
        ack["params"]["notifications"],
        json!({"resourceSubscriptions": ["note://hello"]}),
        "{ack}"
    );
    let gw = s.gw.url().to_string();
    // A new prompt (a list change not asked for), then the watched resource changes.
    let r = http_client()
        .post(format!("{gw}/prompts"))
        .json(&json!({"name": "later", "template": "hi"}))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), 201);
    let r = http_client()
        .patch(format!("{gw}/resources/hello"))
        .json(&json!({"text": "changed"}))
        .send()
        .await
        .expect("patch");
    assert!(r.status().is_success(), "{}", r.text().await.unwrap_or_default());
    let note = next_message(&mut events).await;
    assert_eq!(note["method"], "notifications/resources/updated", "{note}");
    assert_eq!(note["params"]["uri"], "note://hello");
    assert_eq!(note["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], 7);
}
