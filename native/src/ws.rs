//! WebSocket connections natively: the upgrade the core took ([`WsAccept`] in its `101`),
//! completed over hyper's upgraded connection with tokio-tungstenite, then each text frame
//! handed to the core's bridge over this gateway's own streamable HTTP endpoint and everything
//! it says sent back as text frames. Pings every [`PING_SECS`]; the close codes are the core's.

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use mcpgw_core::bridge::{Bridge, BridgePorts, LocalGateway};
use mcpgw_core::ws::{WsAccept, CLOSE_GOING_AWAY, CLOSE_POLICY, CLOSE_TOO_BIG, CLOSE_UNSUPPORTED, PING_SECS};

/// How long one message may take to be written to the client.
const WRITE_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);
use mcpgw_core::Gateway;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::runtime;

/// The largest answer or event read from the gateway for one connection.
const MAX_ANSWER_BYTES: usize = 64 << 20;

/// The headers that complete the handshake of a `101` the core answered.
pub fn complete(resp: &mut http::Response<mcpgw_core::Body>, key: &[u8]) {
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key);
    let h = resp.headers_mut();
    h.insert(http::header::UPGRADE, http::HeaderValue::from_static("websocket"));
    h.insert(http::header::CONNECTION, http::HeaderValue::from_static("Upgrade"));
    if let Ok(v) = http::HeaderValue::from_str(&accept) {
        h.insert("sec-websocket-accept", v);
    }
}

/// Runs one connection until either side closes it, or `stop` says the gateway shuts down.
pub async fn run(
    gw: Gateway,
    accept: WsAccept,
    peer_ip: String,
    upgraded: hyper::upgrade::Upgraded,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let config = WebSocketConfig::default()
        .max_message_size(Some(accept.max_message))
        .max_frame_size(Some(accept.max_message));
    let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
    let (mut tx, mut rx) = ws.split();
    let local = LocalGateway::new(gw, None).with_client_ip(peer_ip);
    let ports = BridgePorts {
        http: Arc::new(local),
        clock: Arc::new(runtime::TokioClock),
        spawner: Arc::new(runtime::TokioSpawner),
    };
    let (bridge, mut out) = Bridge::new(ports, accept.path, accept.headers, MAX_ANSWER_BYTES);
    let mut ping = tokio::time::interval(Duration::from_secs(PING_SECS));
    ping.tick().await;
    let mut unanswered = 0u32;
    let too_big = format!("a message is at most {} bytes", accept.max_message);
    let close: Option<(u16, String)> = loop {
        tokio::select! {
            frame = rx.next() => match frame {
                Some(Ok(Message::Text(text))) => bridge.accept(text.to_string()),
                Some(Ok(Message::Binary(_))) => {
                    break Some((CLOSE_UNSUPPORTED, "MCP messages are text frames".into()))
                }
                Some(Ok(Message::Pong(_))) => unanswered = 0,
                Some(Ok(Message::Ping(_) | Message::Frame(_))) => {}
                // The client's close is answered by tungstenite itself.
                Some(Ok(Message::Close(_))) | None => break None,
                Some(Err(WsError::Capacity(_))) => break Some((CLOSE_TOO_BIG, too_big.clone())),
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "WebSocket read failed");
                    break None;
                }
            },
            line = out.next() => {
                let Some(line) = line else {
                    // The bridge's channel ended: its client fell too far behind reading.
                    break Some((CLOSE_POLICY, "the client stopped reading its messages".into()));
                };
                // A client that stops reading does not hold a write (and this task) forever.
                match tokio::time::timeout(WRITE_WITHIN, tx.send(Message::text(line))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break None,
                    Err(_) => break Some((CLOSE_POLICY, "the client stopped reading its messages".into())),
                }
            }
            _ = ping.tick() => {
                if unanswered >= 2 {
                    break Some((CLOSE_GOING_AWAY, "no answer to two pings".into()));
                }
                unanswered += 1;
                if tx.send(Message::Ping(Default::default())).await.is_err() {
                    break None;
                }
            }
            _ = stop.changed() => break Some((CLOSE_GOING_AWAY, "the gateway is shutting down".into())),
        }
    };
    if let Some((code, reason)) = close {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        };
        let _ = tx.send(Message::Close(Some(frame))).await;
        let _ = tx.flush().await;
    }
    bridge.close().await;
}
