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

/// An idle session's object sleeps until the session expires: no alarm wakes it before (the
/// object logs every alarm that finds no stream open); while a stream is open it gets
/// keep-alives; once idle past its TTL one alarm ends it.
#[tokio::test]
async fn an_idle_sessions_object_wakes_only_at_its_expiry() {
    let dir = TempDir::new("edge-alarm");
    let state = dir.join("edge");
    let http = http_client();
    let edge = EdgeProcess::start(&state, &[("MCPGW_SESSION_TTL_SECS", "8"), ("MCPGW_UPKEEP_SECS", "1")])
        .expect("wrangler dev");
    let alarms = || {
        std::fs::read_to_string(state.join("wrangler.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("mcpgw: object alarm"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let sid = initialize(&http, &edge.url).await.expect("initialize");
    let ping = json!({"jsonrpc": "2.0", "id": 2, "method": "ping"});
    let post = || {
        http.post(format!("{}/mcp", edge.url))
            .header("accept", ACCEPT)
            .header("mcp-session-id", &sid)
            .json(&ping)
            .send()
    };
    assert_eq!(post().await.expect("ping").status(), StatusCode::OK);
    // Idle for four upkeep periods: the old object woke every period.
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    assert_eq!(alarms(), Vec::<String>::new(), "an idle session's object was woken");
    assert_eq!(post().await.expect("ping").status(), StatusCode::OK);

    // A stream open: keep-alives every upkeep period.
    let mut stream = http
        .get(format!("{}/mcp", edge.url))
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &sid)
        .send()
        .await
        .expect("GET stream");
    assert_eq!(stream.status(), StatusCode::OK);
    let mut seen = String::new();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !seen.contains(": keepalive") && std::time::Instant::now() < until {
        match tokio::time::timeout(std::time::Duration::from_secs(3), stream.chunk()).await {
            Ok(Ok(Some(b))) => seen.push_str(&String::from_utf8_lossy(&b)),
            _ => break,
        }
    }
    assert!(
        seen.contains(": keepalive"),
        "no keep-alive on an open stream: {seen:?}"
    );
    drop(stream);

    // Idle past the TTL: the alarm at expiry ends the session.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !alarms().iter().any(|l| l.contains("1 session(s) expired")) {
        assert!(
            std::time::Instant::now() < until,
            "no expiry alarm within 30 s: {:?}",
            alarms()
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert_eq!(post().await.expect("ping").status(), StatusCode::NOT_FOUND);
}
