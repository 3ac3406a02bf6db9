//! The WebSocket transport (`/ws`, subprotocol `mcp`), natively and under `wrangler dev`: the
//! official TypeScript SDK's WebSocket client through two federated upstreams (lists, calls,
//! progress, logs, sampling, elicitation, roots, cancellation, subscriptions); then what is
//! refused and how: no or a bad token (401), a token in the `access_token` query parameter
//! (taken), a foreign Origin (403), no `mcp` subprotocol (400), a plain GET (426), a frame over
//! the size limit (close 1009), a binary frame (close 1003), a virtual server that does not exist
//! (404).

use futures::{SinkExt, StreamExt};
use mcpgw_e2e::{sign_jwt, start_target_with, unix_now, TempDir};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::federation::{start_two, ts_federation};

const SECRET: &str = "Q2xvc2UtY29kZXMtYW5kLXRva2Vucy1mb3ItdGhlLXdlYnNvY2tldC10ZXN0";

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_sdk_uses_two_upstreams_over_websocket() {
    let two = start_two(&[]).await;
    ts_federation(&two, format!("{}/ws", two.gw.url().replacen("http", "ws", 1))).await;
    drop(two);
}

/// Opens a WebSocket at `url` offering `protocol`, with extra headers.
async fn open(url: &str, protocol: Option<&str>, headers: &[(&str, &str)]) -> Result<Socket, WsError> {
    let mut req = url.into_client_request().expect("request");
    if let Some(p) = protocol {
        req.headers_mut()
            .insert("sec-websocket-protocol", p.parse().expect("header"));
    }
    for (k, v) in headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
            v.parse().expect("value"),
        );
    }
    tokio::time::timeout(
        std::time::Duration::from_secs(20),
        tokio_tungstenite::connect_async(req),
    )
    .await
    .expect("connect in time")
    .map(|(s, _)| s)
}

/// The status and JSON body of an upgrade request to `url` (sent as plain HTTP: a refusal is
/// read whole), offering `protocol`, with extra headers.
async fn upgrade_answer(url: &str, protocol: Option<&str>, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut req = mcpgw_e2e::http_client()
        .get(url)
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
    if let Some(p) = protocol {
        req = req.header("sec-websocket-protocol", p);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.expect("upgrade request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The next message's JSON, skipping pings.
async fn next_json(s: &mut Socket) -> Value {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let m = tokio::time::timeout_at(deadline, s.next())
            .await
            .expect("a message within 20 s")
            .expect("open")
            .expect("frame");
        if let Message::Text(t) = m {
            return serde_json::from_str(&t).expect("JSON");
        }
    }
}

/// The close frame's code, once the gateway closes: within 10 s in all, whatever else comes
/// meanwhile (the gateway's pings would otherwise keep a per-frame timeout from ever firing, and a
/// frame accepted by mistake would hang the suite instead of failing it).
async fn close_code(s: &mut Socket) -> Option<CloseCode> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, s.next())
            .await
            .expect("closed within 10 s")
        {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_refusals_and_limits() {
    let dir = TempDir::new("ws-refusals");
    let gw = start_target_with(
        &dir,
        &["--max-body-bytes", "65536"],
        &[("MCPGW_AUTH_REQUIRED", "true"), ("MCPGW_JWT_SECRET", SECRET)],
    )
    .expect("gateway");
    let ws = format!("{}/ws", gw.url().replacen("http", "ws", 1));
    let now = unix_now();
    let token = sign_jwt(
        "HS256",
        SECRET,
        json!({"sub": "ws-user", "iss": "mcpgw", "aud": "mcpgw", "iat": now, "exp": now + 600,
               "scope": "mcpgw:client", "jti": "ws-1"}),
    );
    let bearer = format!("Bearer {token}");

    let http_ws = format!("{}/ws", gw.url());
    let (status, body) = upgrade_answer(&http_ws, Some("mcp"), &[]).await;
    assert_eq!(status, 401, "no token: {body}");
    assert_eq!(body["error"]["code"], -32040, "{body}");
    let (status, body) = upgrade_answer(&http_ws, Some("mcp"), &[("authorization", "Bearer not-a-token")]).await;
    assert_eq!(status, 401, "a bad token: {body}");
    let (status, body) = upgrade_answer(
        &http_ws,
        Some("mcp"),
        &[("authorization", &bearer), ("origin", "http://evil.example.com")],
    )
    .await;
    assert_eq!(status, 403, "a foreign Origin: {body}");
    let (status, body) = upgrade_answer(&http_ws, None, &[("authorization", &bearer)]).await;
    assert_eq!(status, 400, "no subprotocol: {body}");
    assert!(
        body["error"]["message"].as_str().is_some_and(|m| m.contains("'mcp'")),
        "{body}"
    );
    let (status, body) = upgrade_answer(
        &http_ws.replace("/ws", "/servers/nope/ws"),
        Some("mcp"),
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(status, 404, "no such virtual server: {body}");
    // The same refusal reaches a WebSocket client as the handshake's status.
    match open(&ws, Some("mcp"), &[]).await {
        Err(WsError::Http(resp)) => assert_eq!(resp.status().as_u16(), 401),
        Err(e) => panic!("refused without a status: {e}"),
        Ok(_) => panic!("taken without a token"),
    }
    let plain = mcpgw_e2e::http_client()
        .get(format!("{}/ws", gw.url()))
        .header("authorization", &bearer)
        .send()
        .await
        .expect("GET");
    assert_eq!(plain.status().as_u16(), 426, "a GET that is not an upgrade");

    // The token in the query parameter (what a browser can send), and a session over it.
    let mut s = open(&format!("{ws}?access_token={token}"), Some("mcp"), &[])
        .await
        .expect("a token in the query is taken");
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25",
        "capabilities": {}, "clientInfo": {"name": "ws-test", "version": "1"}}});
    s.send(Message::text(init.to_string())).await.expect("send");
    let answer = next_json(&mut s).await;
    assert_eq!(answer["result"]["protocolVersion"], "2025-11-25", "{answer}");
    s.send(Message::text(
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    ))
    .await
    .expect("send");
    s.send(Message::text(r#"{"jsonrpc":"2.0","id":"two","method":"ping"}"#))
        .await
        .expect("send");
    let pong = next_json(&mut s).await;
    assert_eq!(pong["id"], "two", "{pong}");
    assert!(pong["result"].is_object(), "{pong}");
    // A message over the limit closes the connection with 1009.
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":3,"method":"ping","params":{{"pad":"{}"}}}}"#,
        "x".repeat(70_000)
    );
    let _ = s.send(Message::text(big)).await;
    assert_eq!(close_code(&mut s).await, Some(CloseCode::Size), "too big");

    // A binary frame closes it with 1003.
    let mut s = open(&ws, Some("mcp"), &[("authorization", &bearer)])
        .await
        .expect("open");
    s.send(Message::Binary(b"{}".to_vec().into())).await.expect("send");
    assert_eq!(close_code(&mut s).await, Some(CloseCode::Unsupported), "binary");
    drop(gw);
}

/// On the edge the object behind a WebSocket sleeps between messages (the hibernation API) and
/// wakes with its state: the bridge is rebuilt from the socket's attachment and the session goes
/// on. Natively the connection's task simply stays; the same exchange must hold there too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_session_goes_on_after_a_quiet_spell() {
    let dir = TempDir::new("ws-quiet");
    let gw = start_target_with(&dir, &[], &[]).expect("gateway");
    let ws = format!("{}/ws", gw.url().replacen("http", "ws", 1));
    let mut s = open(&ws, Some("mcp"), &[]).await.expect("open");
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25",
        "capabilities": {}, "clientInfo": {"name": "ws-quiet", "version": "1"}}});
    s.send(Message::text(init.to_string())).await.expect("send");
    assert!(next_json(&mut s).await["result"].is_object());
    s.send(Message::text(
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    ))
    .await
    .expect("send");
    // workerd puts an object with only hibernatable sockets to sleep after about 10 s without
    // events.
    let quiet = if gw.edge_state_dir().is_some() { 20 } else { 2 };
    tokio::time::sleep(std::time::Duration::from_secs(quiet)).await;
    s.send(Message::text(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#))
        .await
        .expect("send");
    let listed = next_json(&mut s).await;
    assert!(listed["result"]["tools"].is_array(), "{listed}");
    if let Some(state_dir) = gw.edge_state_dir() {
        let log = std::fs::read_to_string(state_dir.join("wrangler.log")).unwrap_or_default();
        assert!(
            log.contains("WebSocket bridge restored from its attachment"),
            "the object never slept (or woke without its state):\n{log}"
        );
    }
    drop(gw);
}
