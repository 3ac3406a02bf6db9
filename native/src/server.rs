//! The axum adapter: every request goes to [`Gateway::handle`]; this file only converts types,
//! enforces the body limit while reading, and runs graceful shutdown.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body as AxumBody;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Limited};
use mcpgw_core::{Body, Gateway};
use tokio::net::TcpListener;

async fn handle(State(gw): State<Gateway>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let limit = gw.config().max_body_bytes;
    let bytes = match Limited::new(body, limit).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            let resp = if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                gw.payload_too_large(parts.uri.path())
            } else {
                // The client went away or sent a broken body; nothing useful to run.
                tracing::debug!(error = %e, "request body read failed");
                let mut r = http::Response::new(Body::Full(Bytes::from_static(
                    br#"{"error":{"code":"bad_body","message":"could not read the request body"}}"#,
                )));
                *r.status_mut() = http::StatusCode::BAD_REQUEST;
                r
            };
            return into_axum(resp);
        }
    };
    let started = std::time::Instant::now();
    let method = parts.method.clone();
    let path = parts.uri.path().to_string();
    let mut req = http::Request::from_parts(parts, bytes);
    if let Some(axum::extract::ConnectInfo(addr)) = req.extensions().get::<axum::extract::ConnectInfo<SocketAddr>>() {
        let ip = mcpgw_core::ClientIp(addr.ip().to_string());
        req.extensions_mut().insert(ip);
    }
    let resp = gw.handle(req).await;
    tracing::debug!(%method, %path, status = resp.status().as_u16(), micros = started.elapsed().as_micros() as u64, "request");
    into_axum(resp)
}

fn into_axum(resp: http::Response<Body>) -> Response {
    let (parts, body) = resp.into_parts();
    let body = match body {
        Body::Empty => AxumBody::empty(),
        Body::Full(b) => AxumBody::from(b),
        Body::Stream(s) => AxumBody::from_stream(s.map(Ok::<_, std::convert::Infallible>)),
    };
    Response::from_parts(parts, body)
}

/// Serves until `shutdown` resolves, then ends SSE streams and lets in-flight requests finish
/// (at most `grace`).
pub async fn serve(
    gw: Gateway,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> anyhow::Result<()> {
    let app = axum::Router::new().fallback(handle).with_state(gw.clone());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let gw_for_signal = gw.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: closing SSE streams, finishing in-flight requests");
        gw_for_signal.shutdown();
        let _ = stop_tx.send(());
    });
    let server = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).with_graceful_shutdown(
        async move {
            let _ = stop_rx.await;
        },
    );
    let mut server = Box::pin(server.into_future());
    tokio::select! {
        r = &mut server => r?,
        _ = async {
            // Starts counting only once shutdown has begun.
            while !gw.is_shutting_down() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            tokio::time::sleep(grace).await;
        } => tracing::warn!("grace period over; dropping remaining connections"),
    }
    Ok(())
}
