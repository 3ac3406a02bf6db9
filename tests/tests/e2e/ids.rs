//! JSON-RPC ids are strings or numbers, and whatever an upstream or a client uses must come back
//! exactly: a hand-written upstream that sends its sampling requests under a string id and under
//! a number beyond what a 64-bit float holds exactly, answered by a client that uses such ids for
//! its own requests too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mcpgw_e2e::{http_client, start_target, RawSession, TempDir, TestGateway};
use serde_json::{json, Value};

/// The ids the upstream uses for its own requests, in order (text as sent on the wire).
const UPSTREAM_IDS: [&str; 3] = [r#""srv ☃ 1""#, "9007199254740993", "18446744073709551615"];

type Waiting = Arc<Mutex<HashMap<String, tokio::sync::oneshot::Sender<Value>>>>;

/// An upstream (streamable HTTP) whose one tool, `ask`, sends three sampling requests in turn on
/// the call's SSE stream, under [`UPSTREAM_IDS`], each after the previous one was answered; its
/// result lists the texts of the answers, or says which answer came back under a wrong id.
async fn start_upstream() -> (String, tokio::task::JoinHandle<()>) {
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    let waiting: Waiting = Arc::default();
    let mcp = move |body: axum::body::Bytes| {
        let waiting = waiting.clone();
        async move {
            let Ok(msg) = serde_json::from_slice::<Value>(&body) else {
                return StatusCode::BAD_REQUEST.into_response();
            };
            let mut h = HeaderMap::new();
            h.insert("mcp-session-id", "ids-session".parse().expect("header"));
            if msg.get("method").is_none() {
                // The client's answer to one of this upstream's requests: by its id's exact text.
                let key = msg["id"].to_string();
                let found = waiting.lock().expect("lock").remove(&key);
                return match found {
                    Some(tx) => {
                        let _ = tx.send(msg);
                        (StatusCode::ACCEPTED, h).into_response()
                    }
                    None => (StatusCode::BAD_REQUEST, format!("no request has id {key}")).into_response(),
                };
            }
            let id = msg["id"].clone();
            let result = match msg["method"].as_str().unwrap_or_default() {
                _ if id.is_null() => return (StatusCode::ACCEPTED, h).into_response(),
                "initialize" => json!({"protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
                    "serverInfo": {"name": "ids", "version": "1"}}),
                "tools/list" => json!({"tools": [{"name": "ask", "inputSchema": {"type": "object"}}]}),
                "tools/call" => return (h, sampling_call(id, waiting)).into_response(),
                _ => json!({}),
            };
            (h, axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": result}))).into_response()
        }
    };
    let app = axum::Router::new().route(
        "/mcp",
        axum::routing::post(mcp).get(|| async { StatusCode::METHOD_NOT_ALLOWED }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/mcp"), task)
}

/// The SSE answer of a `tools/call`: the three sampling requests, then the result.
fn sampling_call(call_id: Value, waiting: Waiting) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        let mut texts = Vec::new();
        for (n, id) in UPSTREAM_IDS.iter().enumerate() {
            let (answer_tx, answer_rx) = tokio::sync::oneshot::channel();
            waiting.lock().expect("lock").insert(id.to_string(), answer_tx);
            let request = format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"sampling/createMessage","params":{{"messages":[{{"role":"user","content":{{"type":"text","text":"question {n}"}}}}],"maxTokens":5}}}}"#
            );
            if tx.send(format!("event: message\ndata: {request}\n\n")).is_err() {
                return;
            }
            let Ok(Ok(answer)) = tokio::time::timeout(Duration::from_secs(10), answer_rx).await else {
                texts.push(format!("no answer to {id}"));
                break;
            };
            texts.push(answer["result"]["content"]["text"].as_str().unwrap_or("?").to_string());
        }
        let result = json!({"content": [{"type": "text", "text": texts.join("|")}]});
        let done = json!({"jsonrpc": "2.0", "id": call_id, "result": result});
        let _ = tx.send(format!("event: message\ndata: {done}\n\n"));
    });
    let body = futures_lite::stream::unfold(rx, |mut rx| async move {
        let chunk = rx.recv().await?;
        Some((Ok::<_, std::convert::Infallible>(chunk), rx))
    });
    (
        [(axum::http::header::CONTENT_TYPE, "text/event-stream")],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}

/// A gateway with [`start_upstream`]'s upstream registered as `ids`; its `/mcp` endpoint last.
async fn with_upstream(tag: &str) -> (TempDir, TestGateway, tokio::task::JoinHandle<()>, String) {
    let dir = TempDir::new(tag);
    let gw = start_target(&dir, &[]).expect("gateway");
    let (url, upstream) = start_upstream().await;
    let r = http_client()
        .post(format!("{}/gateways", gw.url()))
        .json(&json!({"name": "ids", "url": url}))
        .send()
        .await
        .expect("register");
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    let endpoint = format!("{}/mcp", gw.url());
    (dir, gw, upstream, endpoint)
}

/// Both ways at once: the upstream's string and large-number ids reach the client as the
/// gateway's own and go back as they were; the client's string and large-number request ids
/// come back on its answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn string_and_large_number_ids_are_relayed_exactly() {
    let (_dir, _gw, _upstream, endpoint) = with_upstream("ids").await;
    let mut s = RawSession::open(&endpoint, json!({"sampling": {}}))
        .await
        .expect("session");
    for client_id in [json!("call ✓ α"), json!(9_007_199_254_740_993u64), json!(u64::MAX)] {
        let mut asked = Vec::new();
        let (answer, _) = s
            .call(
                client_id.clone(),
                "tools/call",
                json!({"name": "ids__ask", "arguments": {}}),
                |m| {
                    (m["method"] == "sampling/createMessage").then(|| {
                        asked.push(m["id"].clone());
                        let n = asked.len();
                        json!({"role": "assistant", "content": {"type": "text", "text": format!("a{n}")}, "model": "m"})
                    })
                },
            )
            .await
            .unwrap_or_else(|e| panic!("call {client_id}: {e}"));
        assert_eq!(answer["id"], client_id, "the client's id, exactly: {answer}");
        assert_eq!(
            answer["result"]["content"][0]["text"], "a1|a2|a3",
            "every answer reached the upstream under its own id: {answer}"
        );
        assert_eq!(asked.len(), 3, "{asked:?}");
        // The client saw the gateway's ids, never the upstream's (which could clash with another's).
        for id in &asked {
            assert!(id.as_str().is_some_and(|i| i.starts_with("mcpgw-")), "{asked:?}");
        }
    }
}

/// The same upstream in front of a 2026-07-28 client: each of its sampling requests reaches the
/// client in an `input_required` result, and the answer the retry carries goes back to the
/// upstream under the upstream's own id (its string and beyond-`f64` ids), round after round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstreams_odd_ids_survive_translation_for_a_stateless_client() {
    let (_dir, _gw, _upstream, endpoint) = with_upstream("ids-stateless").await;
    let mut meta = crate::stateless::meta();
    meta["io.modelcontextprotocol/clientCapabilities"] = json!({"sampling": {}});
    let mut params = json!({"name": "ids__ask", "arguments": {}, "_meta": meta});
    let mut answered = 0;
    for round in 0..6 {
        let a = crate::stateless::post(&endpoint, json!(format!("r{round}")), "tools/call", params.clone(), &[]).await;
        let r = &a.last()["result"];
        if r["resultType"] == "complete" {
            assert_eq!(r["content"][0]["text"], "a1|a2|a3", "{r}");
            assert_eq!(answered, 3);
            return;
        }
        assert_eq!(r["resultType"], "input_required", "round {round}: {:?}", a.messages);
        let mut responses = serde_json::Map::new();
        for (key, request) in r["inputRequests"].as_object().expect("inputRequests") {
            assert_eq!(request["method"], "sampling/createMessage", "{request}");
            answered += 1;
            let text = format!("a{answered}");
            let answer = json!({"role": "assistant", "content": {"type": "text", "text": text}, "model": "m"});
            responses.insert(key.clone(), answer);
        }
        params["inputResponses"] = Value::Object(responses);
        params["requestState"] = r["requestState"].clone();
    }
    panic!("no complete result in 6 rounds");
}
