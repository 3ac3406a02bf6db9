//! The edge across a `wrangler dev` restart on the same persist dir. Registry data lives in D1
//! and survives; a session's state lives in its Durable Object's storage, so an open session's
//! next request is served by the object rebuilt from it. This file always runs the edge,
//! whatever `MCPGW_TARGET` says.

use mcpgw_e2e::{get_json, http_client, initialize, EdgeProcess, TempDir};
use reqwest::StatusCode;
use serde_json::{json, Value};

const ACCEPT: &str = "application/json, text/event-stream";

#[tokio::test]
async fn the_registry_and_open_sessions_survive_a_restart() {
    let dir = TempDir::new("edge-restart");
    let state = dir.join("edge");
    let http = http_client();
    let mut edge = EdgeProcess::start(&state, &[]).expect("wrangler dev");
    let tool = json!({"name": "kept", "description": "survives restarts", "url": "http://127.0.0.1:9/x"});
    let r = http
        .post(format!("{}/tools", edge.url))
        .json(&tool)
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().await.expect("json");
    let sid = initialize(&http, &edge.url).await.expect("initialize");
    let ping = json!({"jsonrpc": "2.0", "id": 2, "method": "ping"});
    let post = |url: &str, sid: &str| {
        http.post(format!("{url}/mcp"))
            .header("accept", ACCEPT)
            .header("mcp-session-id", sid)
            .json(&ping)
            .send()
    };
    assert_eq!(post(&edge.url, &sid).await.expect("ping").status(), StatusCode::OK);

    edge.stop();
    let edge = EdgeProcess::start(&state, &[]).expect("wrangler dev again");
    let got = get_json(&format!("{}/tools/kept", edge.url)).await;
    assert_eq!(got["id"], created["id"], "the registry survives in D1");
    let r = post(&edge.url, &sid).await.expect("ping after restart");
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "the open session is served after the restart"
    );
    // Its state came back whole: the tools it lists are the registry's, under its own id.
    let list = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"});
    let r = http
        .post(format!("{}/mcp", edge.url))
        .header("accept", ACCEPT)
        .header("mcp-session-id", &sid)
        .json(&list)
        .send()
        .await
        .expect("list after restart");
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.expect("body");
    assert!(text.contains("\"kept\""), "{text}");
    // A session that was never opened is still unknown.
    let r = post(&edge.url, "0123456789abcdef0123456789abcdef").await.expect("ping");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.json::<Value>().await.expect("json")["error"]["code"], -32001);
    let sid2 = initialize(&http, &edge.url).await.expect("initialize again");
    assert_eq!(post(&edge.url, &sid2).await.expect("ping").status(), StatusCode::OK);
}
