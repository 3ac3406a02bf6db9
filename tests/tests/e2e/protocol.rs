//! Protocol behaviour over raw HTTP: version negotiation per revision, batches where the
//! revision allows them, 202 for notifications and responses, log filtering by level, and the
//! REST API's effect on what MCP clients see (on `/mcp` and on a virtual server).

use mcpgw_e2e::{http_client, initialize, read_events, start_seeded, start_target, TempDir};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

const ACCEPT: &str = "application/json, text/event-stream";

async fn init(http: &Client, url: &str, version: &str) -> (String, Value) {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let r = http
        .post(url)
        .header("accept", ACCEPT)
        .json(&body)
        .send()
        .await
        .expect("initialize");
    assert_eq!(r.status(), StatusCode::OK);
    let sid = r.headers()["mcp-session-id"].to_str().expect("ascii").to_string();
    (sid, r.json().await.expect("json"))
}

#[tokio::test]
async fn negotiates_every_supported_revision_and_offers_the_latest_otherwise() {
    let seeded = start_seeded("sdk.toml", &[]).await.expect("gateway");
    let http = http_client();
    let url = format!("{}/mcp", seeded.gw.url());
    for v in ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"] {
        let (_, r) = init(&http, &url, v).await;
        assert_eq!(r["result"]["protocolVersion"], v);
        assert!(r["result"]["capabilities"]["tools"].is_object());
        assert_eq!(r["result"]["serverInfo"]["name"], "mcpgw");
    }
    let (_, r) = init(&http, &url, "2099-01-01").await;
    assert_eq!(r["result"]["protocolVersion"], "2025-11-25");
    // A virtual server says who it is.
    let (_, r) = init(&http, &format!("{}/servers/docs/mcp", seeded.gw.url()), "2025-11-25").await;
    assert_eq!(r["result"]["serverInfo"]["name"], "mcpgw/docs");
    assert_eq!(r["result"]["instructions"], "Docs only");
}

#[tokio::test]
async fn batches_work_for_2025_03_26_sessions() {
    let seeded = start_seeded("sdk.toml", &[]).await.expect("gateway");
    let http = http_client();
    let url = format!("{}/mcp", seeded.gw.url());
    let (sid, _) = init(&http, &url, "2025-03-26").await;
    let batch = json!([
        {"jsonrpc": "2.0", "id": "a", "method": "ping"},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": "b", "method": "tools/call", "params": {"name": "weather", "arguments": {"city": "Bern"}}},
        {"jsonrpc": "2.0", "id": "c", "method": "nope"},
        {"jsonrpc": "2.0", "id": "d"}
    ]);
    let r = http
        .post(&url)
        .header("accept", ACCEPT)
        .header("mcp-session-id", &sid)
        .json(&batch)
        .send()
        .await
        .expect("batch");
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.expect("json");
    let answers = v.as_array().expect("a batch answer is an array");
    assert_eq!(
        answers.len(),
        4,
        "one answer per request, none for the notification: {v}"
    );
    let by_id = |id: &str| answers.iter().find(|a| a["id"] == id).cloned().expect("answer");
    assert_eq!(by_id("a")["result"], json!({}));
    assert!(by_id("b")["result"]["content"][0]["text"]
        .as_str()
        .expect("text")
        .contains("Bern"));
    assert_eq!(by_id("c")["error"]["code"], -32601);
    assert_eq!(by_id("d")["error"]["code"], -32600);
}

#[tokio::test]
async fn notifications_and_responses_get_202() {
    let seeded = start_seeded("sdk.toml", &[]).await.expect("gateway");
    let http = http_client();
    let url = format!("{}/mcp", seeded.gw.url());
    let (sid, _) = init(&http, &url, "2025-11-25").await;
    for body in [
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 3}}),
        json!({"jsonrpc": "2.0", "id": 99, "result": {}}),
    ] {
        let r = http
            .post(&url)
            .header("accept", ACCEPT)
            .header("mcp-session-id", &sid)
            .json(&body)
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), StatusCode::ACCEPTED, "{body}");
        assert!(r.bytes().await.expect("body").is_empty());
    }
}

#[tokio::test]
async fn log_notifications_respect_the_level() {
    let seeded = start_seeded("sdk.toml", &[]).await.expect("gateway");
    let http = http_client();
    let url = format!("{}/mcp", seeded.gw.url());
    let (sid, _) = init(&http, &url, "2025-11-25").await;
    let post = |body: Value| {
        http.post(&url)
            .header("accept", ACCEPT)
            .header("mcp-session-id", &sid)
            .json(&body)
    };
    let call = |id: u32, tool: &str| json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": {"city": "x"}}});
    // No level set: no log notifications, a plain JSON answer.
    let r = post(call(2, "weather")).send().await.expect("call");
    assert_eq!(r.headers()["content-type"], "application/json");
    let answer: Value = r.json().await.expect("json");
    assert!(answer["id"] == 2 && answer["result"]["content"].is_array(), "{answer}");
    // At "warning": a success logs only at debug, so nothing arrives...
    let r = post(json!({"jsonrpc": "2.0", "id": 3, "method": "logging/setLevel", "params": {"level": "warning"}}))
        .send()
        .await
        .expect("level");
    let answer: Value = r.json().await.expect("json");
    assert_eq!(answer, json!({"jsonrpc": "2.0", "id": 3, "result": {}}));
    let r = post(call(4, "weather")).send().await.expect("call");
    assert_eq!(
        r.headers()["content-type"],
        "application/json",
        "debug messages are below warning"
    );
    let answer: Value = r.json().await.expect("json");
    assert!(answer["id"] == 4 && answer["result"]["content"].is_array(), "{answer}");
    // ...while an upstream failure logs a warning, which does.
    let r = post(call(5, "broken")).send().await.expect("call");
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let text = r.text().await.expect("sse");
    assert!(
        text.contains("\"level\":\"warning\"") && !text.contains("\"level\":\"debug\""),
        "{text}"
    );
    assert!(text.contains("\"isError\":true"), "{text}");
}

#[tokio::test]
async fn rest_crud_is_what_mcp_clients_see() {
    let seeded = start_seeded("sdk.toml", &[]).await.expect("gateway");
    let gw = &seeded.gw;
    let http = http_client();
    let rpc = |method: &str, params: Value| {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let req = http.post(format!("{}/rpc", gw.url())).json(&body);
        async move { req.send().await.expect("rpc").json::<Value>().await.expect("json") }
    };
    let tool_names = |v: &Value| -> Vec<String> {
        v["result"]["tools"]
            .as_array()
            .expect("tools")
            .iter()
            .map(|t| t["name"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let create =
        json!({"name": "forecast", "description": "Forecast", "url": format!("{}/weather", seeded.backend.url)});
    let r = http
        .post(format!("{}/tools", gw.url()))
        .json(&create)
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), StatusCode::CREATED);
    let location = r.headers()["location"].to_str().expect("ascii").to_string();
    let created: Value = r.json().await.expect("json");
    assert!(location.ends_with(created["id"].as_str().expect("id")));
    assert!(tool_names(&rpc("tools/list", json!({})).await).contains(&"forecast".to_string()));

    // PATCH merges, PUT replaces; both keep the id.
    let r = http
        .patch(format!("{}/tools/forecast", gw.url()))
        .json(&json!({"description": "Five days"}))
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), StatusCode::OK);
    let listed = rpc("tools/list", json!({})).await;
    let entry = listed["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .find(|t| t["name"] == "forecast")
        .cloned()
        .expect("listed");
    assert_eq!(entry["description"], "Five days");
    let put = json!({"name": "forecast2", "url": format!("{}/weather", seeded.backend.url)});
    let r = http
        .put(format!("{}{location}", gw.url()))
        .json(&put)
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), StatusCode::OK);
    let replaced: Value = r.json().await.expect("json");
    assert_eq!(
        (replaced["id"].clone(), replaced["description"].clone()),
        (created["id"].clone(), Value::Null)
    );
    let names = tool_names(&rpc("tools/list", json!({})).await);
    assert!(names.contains(&"forecast2".to_string()) && !names.contains(&"forecast".to_string()));

    // Add it to the virtual server: its endpoint lists it; /mcp still lists everything.
    let r = http
        .patch(format!("{}/servers/docs", gw.url()))
        .json(&json!({"tools": ["weather", "forecast2"]}))
        .send()
        .await
        .expect("patch server");
    assert_eq!(r.status(), StatusCode::OK);
    let (sid, _) = init(&http, &format!("{}/servers/docs/mcp", gw.url()), "2025-11-25").await;
    let r = http
        .post(format!("{}/servers/docs/mcp", gw.url()))
        .header("accept", ACCEPT)
        .header("mcp-session-id", &sid)
        .json(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
        .send()
        .await
        .expect("list");
    assert_eq!(tool_names(&r.json().await.expect("json")), ["forecast2", "weather"]);
    // A tool outside the server cannot be called through it.
    let r = http
        .post(format!("{}/servers/docs/mcp", gw.url()))
        .header("accept", ACCEPT)
        .header("mcp-session-id", &sid)
        .json(&json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "echo", "arguments": {}}}))
        .send()
        .await
        .expect("call");
    assert_eq!(r.json::<Value>().await.expect("json")["error"]["code"], -32602);

    // DELETE, then it is gone everywhere.
    let r = http
        .delete(format!("{}/tools/forecast2", gw.url()))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        http.get(format!("{}/tools/forecast2", gw.url()))
            .send()
            .await
            .expect("get")
            .status(),
        StatusCode::NOT_FOUND
    );
    assert!(!tool_names(&rpc("tools/list", json!({})).await).contains(&"forecast2".to_string()));
    let v = rpc("tools/call", json!({"name": "forecast2", "arguments": {}})).await;
    assert_eq!(v["error"]["code"], -32602);
}

#[tokio::test]
async fn post_sse_stream_is_resumable() {
    let seeded = start_seeded("sdk.toml", &[]).await.expect("seeded gateway");
    let gw = &seeded.gw;
    let http = http_client();
    let sid = initialize(&http, gw.url()).await.expect("initialize");
    let post = |body: Value| {
        http.post(format!("{}/mcp", gw.url()))
            .header("accept", ACCEPT)
            .header("mcp-session-id", &sid)
            .json(&body)
    };
    let r = post(json!({"jsonrpc":"2.0","id":2,"method":"logging/setLevel","params":{"level":"debug"}}))
        .send()
        .await
        .expect("level");
    let answer: Value = r.json().await.expect("json");
    assert_eq!(answer, json!({"jsonrpc": "2.0", "id": 2, "result": {}}));
    let r = post(
        json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"weather","arguments":{"city":"Rome"}}}),
    )
    .send()
    .await
    .expect("call");
    assert_eq!(
        r.headers()["content-type"],
        "text/event-stream",
        "notifications turn the response into SSE"
    );
    let events = read_events(r, 2).await;
    assert_eq!(events[0].1["method"], "notifications/message");
    assert_eq!(events[1].1["id"], 3);
    assert!(events[1].1["result"]["content"][0]["text"]
        .as_str()
        .expect("text")
        .contains("Rome"));
    // A client that lost the stream after the first event gets the rest by Last-Event-ID.
    let resumed = http
        .get(format!("{}/mcp", gw.url()))
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &sid)
        .header("last-event-id", events[0].0.as_str())
        .send()
        .await
        .expect("resume");
    let body = resumed.text().await.expect("finite replay");
    assert!(body.contains("\"id\":3") && body.contains("Rome"), "{body}");
}

#[tokio::test]
async fn registry_writes_reach_open_streams_as_list_changed_and_replay() {
    // Natively the write announces at once; on the edge the session's Durable Object notices it
    // at its next upkeep round (1 s here).
    let dir = TempDir::new("list-changed");
    let gw = start_target(&dir, &["--upkeep-secs", "1"]).expect("gateway");
    let http = http_client();
    let sid = initialize(&http, gw.url()).await.expect("initialize");
    let get = |last: Option<&str>| {
        let mut rb = http
            .get(format!("{}/mcp", gw.url()))
            .header("accept", "text/event-stream")
            .header("mcp-session-id", &sid);
        if let Some(id) = last {
            rb = rb.header("last-event-id", id);
        }
        rb.send()
    };
    let create = |name: &str| {
        let body = json!({"name": name, "url": "http://127.0.0.1:9/x"});
        http.post(format!("{}/tools", gw.url())).json(&body).send()
    };
    let stream = get(None).await.expect("get");
    assert_eq!(create("t1").await.expect("create").status(), StatusCode::CREATED);
    let first = read_events(stream, 1).await;
    assert_eq!(first[0].1["method"], "notifications/tools/list_changed");
    assert_eq!(first[0].0, "g.1");
    // Reconnect after the first event: the stream goes on live from there.
    let resumed = get(Some("g.1")).await.expect("resume");
    assert_eq!(create("t2").await.expect("create").status(), StatusCode::CREATED);
    let second = read_events(resumed, 1).await;
    assert_eq!(
        (second[0].0.as_str(), &second[0].1["method"]),
        ("g.2", &json!("notifications/tools/list_changed"))
    );
    // And a client that missed it gets it replayed.
    let replayed = read_events(get(Some("g.1")).await.expect("resume again"), 1).await;
    assert_eq!(replayed[0].0, "g.2");
}
