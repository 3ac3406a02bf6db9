//! Upstreams that behave unlike our own fixtures, each the way a server we did not write does:
//! one that takes only 2026-07-28 and refuses the first revision it is offered. Each case runs
//! on both targets, as a new user deploys (no optional setting).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mcpgw_e2e::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Registers an upstream through the REST API (201 expected).
async fn register(url: &str, upstream: Value) -> Value {
    let (status, body) = post_json(&http_client(), &format!("{url}/gateways"), None, &upstream).await;
    assert_eq!(status, StatusCode::CREATED, "{upstream}: {body}");
    body
}

/// A 2026-07-28-only upstream (streamable HTTP, JSON answers) that refuses the first request it
/// gets, whatever it is, with -32022 naming the revision it takes; `initialize` always so. It
/// notes every stateless request that lacks `MCP-Protocol-Version`, or `_meta` with the revision
/// and `clientInfo`, at `GET /faults`.
async fn picky_upstream() -> (String, tokio::task::JoinHandle<()>) {
    use axum::http::{HeaderMap, StatusCode as S};
    use axum::response::IntoResponse;
    #[derive(Default)]
    struct Seen {
        requests: usize,
        faults: Vec<String>,
    }
    let seen = Arc::new(Mutex::new(Seen::default()));
    let post = {
        let seen = seen.clone();
        move |headers: HeaderMap, body: axum::body::Bytes| {
            let seen = seen.clone();
            async move {
                let Ok(msg) = serde_json::from_slice::<Value>(&body) else {
                    return S::BAD_REQUEST.into_response();
                };
                let id = msg["id"].clone();
                let method = msg["method"].as_str().unwrap_or_default().to_string();
                if id.is_null() {
                    return S::ACCEPTED.into_response();
                }
                let refuse = || {
                    let e = json!({"jsonrpc": "2.0", "id": id.clone(), "error": {"code": -32022,
                        "message": "Unsupported protocol version",
                        "data": {"supported": ["2026-07-28"], "requested": "whatever came first"}}});
                    (S::BAD_REQUEST, axum::Json(e)).into_response()
                };
                let first = {
                    let mut s = seen.lock().expect("lock");
                    s.requests += 1;
                    s.requests == 1
                };
                if first || method == "initialize" {
                    return refuse();
                }
                let meta = &msg["params"]["_meta"];
                let header = headers.get("mcp-protocol-version").and_then(|v| v.to_str().ok());
                if header != Some("2026-07-28")
                    || meta["io.modelcontextprotocol/protocolVersion"] != "2026-07-28"
                    || !meta["io.modelcontextprotocol/clientInfo"].is_object()
                    || !meta["io.modelcontextprotocol/clientCapabilities"].is_object()
                {
                    seen.lock()
                        .expect("lock")
                        .faults
                        .push(format!("{method}: header {header:?}, _meta {meta}"));
                }
                let info = json!({"io.modelcontextprotocol/serverInfo": {"name": "picky", "version": "1"}});
                let result = match method.as_str() {
                    "server/discover" => json!({"supportedVersions": ["2026-07-28"],
                        "capabilities": {"tools": {}}, "_meta": info}),
                    "tools/list" => json!({"resultType": "complete", "_meta": info, "tools": [
                        {"name": "echo", "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}}}]}),
                    "tools/call" => json!({"resultType": "complete", "_meta": info, "content": [
                        {"type": "text", "text": msg["params"]["arguments"]["text"].clone()}]}),
                    _ => {
                        let e = json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "Method not found"}});
                        return (S::NOT_FOUND, axum::Json(e)).into_response();
                    }
                };
                axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response()
            }
        }
    };
    let faults = move || {
        let seen = seen.clone();
        async move { axum::Json(json!(seen.lock().expect("lock").faults.clone())) }
    };
    let app = axum::Router::new()
        .route(
            "/mcp",
            axum::routing::post(post).get(|| async { S::METHOD_NOT_ALLOWED }),
        )
        .route("/faults", axum::routing::get(faults));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), task)
}

/// An upstream that takes only 2026-07-28 and refuses the first revision it is offered (with
/// -32022 naming the one it takes) is offered that one again, not a session; every request to
/// it carries the revision in its header and `_meta` with `clientInfo`; a session client calls
/// its tool through the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_refusing_the_first_revision_offered_is_offered_one_it_takes() {
    let (base, _task) = picky_upstream().await;
    let dir = TempDir::new("picky-upstream");
    let gw = start_target(&dir, &[]).expect("start");
    let url = gw.url().to_string();
    let up = register(&url, json!({"name": "picky", "url": format!("{base}/mcp")})).await;
    assert_eq!(up["catalog"]["protocol_version"], "2026-07-28", "{up}");
    let mut session = RawSession::open(&format!("{url}/mcp"), json!({}))
        .await
        .expect("session");
    let (answer, _) = session
        .call(
            json!(1),
            "tools/call",
            json!({"name": "picky__echo", "arguments": {"text": "taken"}}),
            |_| None,
        )
        .await
        .expect("call");
    assert_eq!(answer["result"]["content"][0]["text"], "taken", "{answer}");
    let faults = tokio::time::timeout(Duration::from_secs(5), get_json(&format!("{base}/faults")))
        .await
        .expect("faults");
    assert_eq!(faults, json!([]), "requests without the revision's header or _meta");
}

/// The names of the tools `session` is listed.
async fn tool_names(session: &mut RawSession) -> Vec<String> {
    let (answer, _) = session
        .call(json!("list"), "tools/list", json!({}), |_| None)
        .await
        .expect("tools/list");
    answer["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools: {answer}"))
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_string))
        .collect()
}

/// The reference server-everything lists `trigger-sampling-request` only to a client that
/// declares sampling (and `get-roots-list` only with roots): through the gateway a client sees
/// what it can call, and one without sampling that calls the tool anyway is told so under the
/// name it knows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_a_client_cannot_use_are_neither_listed_nor_called() {
    let everything = Fixture::everything("streamableHttp");
    let dir = TempDir::new("capability-tools");
    let gw = start_target(&dir, &[]).expect("start");
    let url = gw.url().to_string();
    let up = register(
        &url,
        json!({"name": "everything", "url": format!("{}/mcp", everything.url)}),
    )
    .await;
    assert_eq!(
        up["catalog"]["needs"]["trigger-sampling-request"],
        json!(["sampling"]),
        "the catalog notes what each such tool needs: {}",
        up["catalog"]["needs"]
    );
    let endpoint = format!("{url}/mcp");

    let mut bare = RawSession::open(&endpoint, json!({})).await.expect("session");
    let names = tool_names(&mut bare).await;
    assert!(names.iter().any(|n| n == "everything__echo"), "{names:?}");
    for hidden in ["everything__trigger-sampling-request", "everything__get-roots-list"] {
        assert!(
            !names.iter().any(|n| n == hidden),
            "{hidden} listed to a client without it: {names:?}"
        );
    }
    let (answer, _) = bare
        .call(
            json!(2),
            "tools/call",
            json!({"name": "everything__trigger-sampling-request", "arguments": {"prompt": "hi"}}),
            |_| None,
        )
        .await
        .expect("call");
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("everything__trigger-sampling-request") && message.contains("sampling"),
        "the refusal names the tool as served and what it needs: {answer}"
    );

    let mut sampler = RawSession::open(&endpoint, json!({"sampling": {}}))
        .await
        .expect("session");
    let names = tool_names(&mut sampler).await;
    assert!(
        names.iter().any(|n| n == "everything__trigger-sampling-request"),
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n == "everything__get-roots-list"), "{names:?}");
}

/// Opens a 2026-07-28 listen stream at `endpoint` asking for `notifications`, and reads its
/// acknowledgement.
async fn listen(
    endpoint: &str,
    id: &str,
    notifications: Value,
) -> std::pin::Pin<Box<impl futures_lite::Stream<Item = Value>>> {
    let mut params = json!({ "notifications": notifications });
    params["_meta"] = crate::stateless::meta();
    let r = http_client()
        .post(endpoint)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "subscriptions/listen")
        .json(&json!({"jsonrpc": "2.0", "id": id, "method": "subscriptions/listen", "params": params}))
        .send()
        .await
        .expect("listen");
    assert_eq!(r.status(), StatusCode::OK);
    let mut events = Box::pin(crate::stateless::sse_messages(r));
    let ack = crate::stateless::next_message(&mut events).await;
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged", "{ack}");
    events
}

/// The next message of `events` within `ms` that is not a keep-alive, if any.
async fn within(events: &mut std::pin::Pin<Box<impl futures_lite::Stream<Item = Value>>>, ms: u64) -> Option<Value> {
    use futures_lite::StreamExt;
    tokio::time::timeout(Duration::from_millis(ms), events.next())
        .await
        .ok()
        .flatten()
}

/// An upstream that says its tool list changed without changing it (as the conformance suite's
/// own server does): a 2026-07-28 listen stream at a virtual server fronting it hears
/// `tools/list_changed` at once (within the suite's 1.5 s), tagged; one that asked only for
/// prompt changes does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_change_an_upstream_announces_reaches_listen_streams_at_once() {
    let fixture = Fixture::modern("dual", None);
    let dir = TempDir::new("announced-lists");
    let gw = start_target(&dir, &[]).expect("start");
    let url = gw.url().to_string();
    register(&url, json!({"name": "fx", "url": format!("{}/mcp", fixture.url)})).await;
    let (status, body) = post_json(
        &http_client(),
        &format!("{url}/servers"),
        None,
        &json!({"name": "v", "upstreams": ["fx"]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let endpoint = format!("{url}/servers/v/mcp");
    let mut tools = listen(&endpoint, "t", json!({"toolsListChanged": true})).await;
    let mut prompts = listen(&endpoint, "p", json!({"promptsListChanged": true})).await;

    let called = crate::stateless::post(
        &format!("{url}/mcp"),
        json!(1),
        "tools/call",
        json!({"name": "fx__mcpgw_announce_tools", "arguments": {}}),
        &[],
    )
    .await;
    assert_eq!(
        called.last()["result"]["content"][0]["text"],
        "announced",
        "{:?}",
        called.messages
    );
    let note = within(&mut tools, 1500).await.expect("tools/list_changed within 1.5 s");
    assert_eq!(note["method"], "notifications/tools/list_changed", "{note}");
    assert_eq!(
        note["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], "t",
        "{note}"
    );
    if let Some(leak) = within(&mut prompts, 1000).await {
        assert_ne!(
            leak["method"], "notifications/tools/list_changed",
            "not asked for: {leak}"
        );
    }
}

/// `method` with `params` in `session`; the answer.
async fn ask(session: &mut RawSession, method: &str, params: Value) -> Value {
    let (answer, _) = session.call(json!("q"), method, params, |_| None).await.expect(method);
    answer
}

/// The URIs (or URI templates) of a list answer's `field` entries.
fn uris_of(answer: &Value, field: &str, key: &str) -> Vec<String> {
    answer["result"][field]
        .as_array()
        .unwrap_or_else(|| panic!("no {field}: {answer}"))
        .iter()
        .filter_map(|r| r[key].as_str().map(str::to_string))
        .collect()
}

/// Two upstreams serving the same resource URIs (two copies of one server): at the gateway's
/// own endpoint the first keeps each URI and the second's are served under an alias that reads
/// back (the contents say the alias), subscribes and completes, reported in its
/// `name_conflicts`; a virtual server fronting only the second serves them under their own URIs,
/// as if the first were not there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstreams_sharing_resource_uris_are_each_reached_at_every_endpoint() {
    let dir = TempDir::new("shared-uris");
    let (calls_a, calls_b) = (dir.join("a.jsonl"), dir.join("b.jsonl"));
    let a = Fixture::start("streamable-http", Some(&calls_a));
    let b = Fixture::start("streamable-http", Some(&calls_b));
    let gw = start_target(&dir, &[]).expect("start");
    let url = gw.url().to_string();
    register(&url, json!({"name": "a", "url": format!("{}/mcp", a.url)})).await;
    let up_b = register(&url, json!({"name": "b", "url": format!("{}/mcp", b.url)})).await;
    let (status, body) = post_json(
        &http_client(),
        &format!("{url}/servers"),
        None,
        &json!({"name": "only-b", "upstreams": ["b"]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let alias = "mcpgw:b/test://static-text";
    let reads_of = |path: &std::path::Path, uri: &str| {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(uri))
            .count()
    };

    // The gateway's own endpoint: each URI once, the second copy under its alias.
    let mut all = RawSession::open(&format!("{url}/mcp"), json!({}))
        .await
        .expect("session");
    let listed = uris_of(&ask(&mut all, "resources/list", json!({})).await, "resources", "uri");
    assert_eq!(
        listed.iter().filter(|u| *u == "test://static-text").count(),
        1,
        "{listed:?}"
    );
    assert!(listed.iter().any(|u| u == alias), "{listed:?}");
    let templates = uris_of(
        &ask(&mut all, "resources/templates/list", json!({})).await,
        "resourceTemplates",
        "uriTemplate",
    );
    assert!(
        templates.iter().any(|t| t == "mcpgw:b/test://template/{id}/data"),
        "{templates:?}"
    );
    let read = ask(&mut all, "resources/read", json!({"uri": alias})).await;
    assert_eq!(read["result"]["contents"][0]["uri"], alias, "{read}");
    assert!(
        reads_of(&calls_b, "test://static-text") >= 1,
        "the alias reached the second upstream"
    );
    let plain_before = reads_of(&calls_a, "test://static-text");
    let read = ask(&mut all, "resources/read", json!({"uri": "test://static-text"})).await;
    assert_eq!(read["result"]["contents"][0]["uri"], "test://static-text", "{read}");
    assert_eq!(
        reads_of(&calls_a, "test://static-text"),
        plain_before + 1,
        "the URI reached the first upstream"
    );
    let templated = ask(
        &mut all,
        "resources/read",
        json!({"uri": "mcpgw:b/test://template/7/data"}),
    )
    .await;
    assert_eq!(
        templated["result"]["contents"][0]["uri"], "mcpgw:b/test://template/7/data",
        "{templated}"
    );
    let subscribed = ask(
        &mut all,
        "resources/subscribe",
        json!({"uri": "mcpgw:b/test://watched-resource"}),
    )
    .await;
    assert!(subscribed["result"].is_object(), "{subscribed}");
    let id = up_b["id"].as_str().expect("id");
    let shown = get_json(&format!("{url}/gateways/{id}")).await;
    let conflicts = shown["name_conflicts"].to_string();
    assert!(conflicts.contains(alias), "{conflicts}");

    // A virtual server of the second alone: its own URIs, read from it.
    let mut only_b = RawSession::open(&format!("{url}/servers/only-b/mcp"), json!({}))
        .await
        .expect("session");
    let listed = uris_of(&ask(&mut only_b, "resources/list", json!({})).await, "resources", "uri");
    assert!(listed.iter().any(|u| u == "test://static-text"), "{listed:?}");
    assert!(!listed.iter().any(|u| u.starts_with("mcpgw:")), "{listed:?}");
    let read = ask(&mut only_b, "resources/read", json!({"uri": "test://static-binary"})).await;
    assert_eq!(read["result"]["contents"][0]["uri"], "test://static-binary", "{read}");
    assert_eq!(
        reads_of(&calls_b, "test://static-binary"),
        1,
        "read from the second upstream"
    );
    assert_eq!(reads_of(&calls_a, "test://static-binary"), 0, "not from the first");
}
