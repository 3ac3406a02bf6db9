//! WebSockets on the edge, through the Durable Object hibernation API. The Worker admits the
//! upgrade and hands it to a fresh `McpSession` object; the object's gateway takes it (Origin,
//! virtual server, subprotocol: a `101` with a [`WsAccept`]) and the object accepts the socket
//! with `state.acceptWebSocket`, so it may sleep between messages while the runtime keeps the
//! connection. Each text message wakes it: the core's bridge (kept in memory while the object
//! is awake, rebuilt from the socket's attachment after it slept) sends it to the object's own
//! streamable HTTP endpoint, where the session lives in the object's storage, and everything
//! said goes back on the socket. The attachment holds the endpoint, the credentials each
//! message carries and the bridge's session, written again whenever the session changes.
//! The runtime answers the client's pings itself; the gateway sends none here.

use std::cell::RefCell;
use std::sync::Arc;

use futures::StreamExt;
use mcpgw_core::bridge::{Bridge, BridgePorts, BridgeState, LocalGateway};
use mcpgw_core::ws::{WsAccept, CLOSE_NORMAL, CLOSE_TOO_BIG, CLOSE_UNSUPPORTED, SUBPROTOCOL};
use mcpgw_core::Gateway;
use serde::{Deserialize, Serialize};
use worker::{Headers, Response, Result, State, WebSocket, WebSocketIncomingMessage, WebSocketPair};

/// The largest answer or event read from the object's gateway for one connection.
const MAX_ANSWER_BYTES: usize = 32 << 20;

/// What a socket carries across the object's sleep.
#[derive(Clone, Serialize, Deserialize)]
struct Attachment {
    path: String,
    #[serde(default)]
    authorization: Option<String>,
    max_message: usize,
    #[serde(default)]
    client_ip: Option<String>,
    #[serde(default)]
    state: BridgeState,
}

/// Accepts the socket of an upgrade the core took, as a hibernatable one.
pub fn accept(state: &State, accept: WsAccept, client_ip: Option<String>) -> Result<Response> {
    let pair = WebSocketPair::new()?;
    state.accept_web_socket(&pair.server);
    let attachment = Attachment {
        path: accept.path,
        authorization: accept
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        max_message: accept.max_message,
        client_ip,
        state: BridgeState::default(),
    };
    pair.server.serialize_attachment(&attachment)?;
    let headers = Headers::new();
    headers.set("sec-websocket-protocol", SUBPROTOCOL)?;
    Ok(Response::from_websocket(pair.client)?.with_headers(headers))
}

/// The bridge of `ws`: the one of this life of the object, or one rebuilt from the attachment
/// (taking up its session).
#[allow(clippy::arc_with_non_send_sync)]
fn bridge(slot: &RefCell<Option<Bridge>>, gw: &Gateway, ws: &WebSocket) -> Result<Bridge> {
    if let Some(b) = slot.borrow().clone() {
        return Ok(b);
    }
    let attachment: Attachment = ws
        .deserialize_attachment()?
        .ok_or_else(|| worker::Error::RustError("a WebSocket without its attachment".into()))?;
    let mut headers = http::HeaderMap::new();
    if let Some(v) = attachment
        .authorization
        .as_deref()
        .and_then(|a| http::HeaderValue::from_str(a).ok())
    {
        headers.insert(http::header::AUTHORIZATION, v);
    }
    let mut local = LocalGateway::new(gw.clone(), None);
    if let Some(ip) = &attachment.client_ip {
        local = local.with_client_ip(ip.clone());
    }
    let ports = BridgePorts {
        http: Arc::new(local),
        clock: Arc::new(crate::JsClock),
        spawner: Arc::new(crate::LocalSpawner { in_object: true }),
    };
    let (bridge, mut out) = Bridge::new(ports, attachment.path.clone(), headers, MAX_ANSWER_BYTES);
    let (keep, base) = (ws.clone(), attachment.clone());
    bridge.on_change(Arc::new(move |state| {
        let mut a = base.clone();
        a.state = state;
        if let Err(e) = keep.serialize_attachment(&a) {
            worker::console_error!("mcpgw: WebSocket attachment not written: {e}");
        }
    }));
    let socket = ws.clone();
    wasm_bindgen_futures::spawn_local(async move {
        while let Some(line) = out.next().await {
            if socket.send_with_str(line).is_err() {
                return;
            }
        }
        // The bridge ended its channel: its client fell too far behind reading. (The channel
        // also ends when the bridge goes with the object's sleep: the socket lives on then.)
        if out.was_closed() {
            let _ = socket.close(
                Some(mcpgw_core::ws::CLOSE_POLICY),
                Some("the client stopped reading its messages"),
            );
        }
    });
    if attachment.state.session.is_some() {
        worker::console_log!("mcpgw: WebSocket bridge restored from its attachment after the object slept");
        bridge.restore(attachment.state);
    }
    *slot.borrow_mut() = Some(bridge.clone());
    Ok(bridge)
}

/// One message of the client.
pub fn message(
    slot: &RefCell<Option<Bridge>>,
    gw: &Gateway,
    ws: &WebSocket,
    message: WebSocketIncomingMessage,
) -> Result<()> {
    match message {
        WebSocketIncomingMessage::String(text) => {
            let max = gw.config().max_body_bytes;
            if text.len() > max {
                return ws.close(Some(CLOSE_TOO_BIG), Some(format!("a message is at most {max} bytes")));
            }
            bridge(slot, gw, ws)?.accept(text);
            Ok(())
        }
        WebSocketIncomingMessage::Binary(_) => ws.close(Some(CLOSE_UNSUPPORTED), Some("MCP messages are text frames")),
    }
}

/// The client closed: the session at the gateway ends too.
pub async fn closed(slot: &RefCell<Option<Bridge>>, gw: &Gateway, ws: &WebSocket) -> Result<()> {
    let live = slot.borrow_mut().take();
    let bridge = match live {
        Some(b) => b,
        None => bridge(slot, gw, ws)?,
    };
    slot.borrow_mut().take();
    bridge.close().await;
    let _ = ws.close(Some(CLOSE_NORMAL), Some("closed"));
    Ok(())
}
