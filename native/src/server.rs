//! The HTTP server: hyper's HTTP/1.1 connections, every request to [`Gateway::handle`] (the core
//! parses the route itself, so no router sits in between). This file only converts types,
//! enforces the body limit while reading, and runs graceful shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use http_body_util::{BodyExt, Limited};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use mcpgw_core::{Body, Gateway, Unread};
use std::sync::Arc;

use crate::conns::{Bounds, Conns};
use tokio::net::TcpListener;
use tracing::Instrument;

/// A whole answer as HTTP/1.1 text, written by the listener itself before any request was read.
fn http1_text(r: &http::Response<Body>) -> Vec<u8> {
    let body = r.body().as_bytes();
    let mut text = format!(
        "HTTP/1.1 {} {}\r\n",
        r.status().as_str(),
        r.status().canonical_reason().unwrap_or("")
    );
    for (k, v) in r.headers() {
        if let Ok(v) = v.to_str() {
            text.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    text.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    let mut out = text.into_bytes();
    out.extend_from_slice(body);
    out
}

/// How many bytes a body may bring: its declared length, else (chunked, or an HTTP/2 stream
/// without a length) the most it may; none when the body is known to be empty.
fn body_size(headers: &http::HeaderMap, body: &Incoming, limit: usize) -> usize {
    use hyper::body::Body as _;
    if body.is_end_stream() {
        return 0;
    }
    match headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()) {
        Some(n) => n.trim().parse::<usize>().map_or(limit, |n| n.min(limit)),
        None => body.size_hint().exact().map_or(limit, |n| (n as usize).min(limit)),
    }
}

async fn handle(
    gw: Gateway,
    conns: Arc<Conns>,
    slot: Arc<crate::conns::ConnSlot>,
    peer: SocketAddr,
    mut req: http::Request<Incoming>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> http::Response<OutBody> {
    // A WebSocket upgrade: the core decides (routes, Origin, admission, subprotocol); a `101`
    // it answered is completed here and the connection runs on its own task.
    let upgrade = mcpgw_core::ws::is_upgrade(&req).then(|| {
        let key = req.headers().get("sec-websocket-key").map(|k| k.as_bytes().to_vec());
        (hyper::upgrade::on(&mut req), key)
    });
    let (parts, body) = req.into_parts();
    let started = std::time::Instant::now();
    let logged = tracing::enabled!(tracing::Level::DEBUG).then(|| (parts.method.clone(), parts.uri.path().to_string()));
    // Every log line of the request carries its id and trace id (the span's fields).
    let ctx = gw.request_ctx(&parts.headers);
    let span = tracing::info_span!("request", request_id = %ctx.request_id, trace_id = %ctx.trace.trace_id);
    let mut head = http::Request::from_parts(parts, Bytes::new());
    head.extensions_mut()
        .insert(mcpgw_core::ClientIp(peer.ip().to_string()));
    head.extensions_mut().insert(ctx);
    // Admission (Host, Origin, credentials, rate limits) before a byte of the body is read: a
    // refused client costs no memory for its body.
    let head = match gw.admit_head(head).instrument(span.clone()).await {
        Ok(h) => h,
        Err(refused) => return refused.map(OutBody),
    };
    let (parts, _) = head.into_parts();
    let limit = gw.config().max_body_bytes;
    // What one client may have of bodies on their way at once (its address as admission saw it).
    let client = parts
        .extensions
        .get::<mcpgw_core::ClientIp>()
        .map_or_else(|| peer.ip().to_string(), |c| c.0.clone());
    let reading = match body_size(&parts.headers, &body, limit) {
        0 => None,
        n => match conns.body(&client, n) {
            Ok(slot) => Some(slot),
            Err(why) => {
                return gw
                    .refuse(parts.uri.path(), &Unread::TooManyBodies(why.to_string()))
                    .map(OutBody)
            }
        },
    };
    let within = Duration::from_millis(gw.config().body_timeout_ms);
    let bytes = match tokio::time::timeout(within, Limited::new(body, limit).collect()).await {
        Ok(Ok(c)) => c.to_bytes(),
        Ok(Err(e)) => {
            let resp = if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                gw.payload_too_large(parts.uri.path())
            } else {
                // The client went away or sent a broken body; nothing useful to run.
                tracing::debug!(error = %e, "request body read failed");
                gw.refuse(parts.uri.path(), &Unread::BadBody)
            };
            return resp.map(OutBody);
        }
        Err(_) => {
            // A body that does not arrive in time holds no more of the gateway than that.
            let mut r = gw.refuse(parts.uri.path(), &Unread::BodyTimeout);
            if let Some(id) = parts
                .extensions
                .get::<mcpgw_core::observe::RequestCtx>()
                .and_then(|c| http::HeaderValue::from_str(&c.request_id).ok())
            {
                r.headers_mut().insert("x-request-id", id);
            }
            return r.map(OutBody);
        }
    };
    // The body is read: what it holds is the request's now, not the client's budget's.
    drop(reading);
    let req = http::Request::from_parts(parts, bytes);
    // The client's address as admission saw it (through a trusted proxy: the client's own).
    let client_ip = req
        .extensions()
        .get::<mcpgw_core::ClientIp>()
        .map_or_else(|| peer.ip().to_string(), |c| c.0.clone());
    let resp = async {
        let resp = gw.handle(req).await;
        if let Some((method, path)) = logged {
            tracing::debug!(%method, %path, status = resp.status().as_u16(), micros = started.elapsed().as_micros() as u64, "request");
        }
        resp
    }
    .instrument(span)
    .await;
    let mut resp = resp;
    if let (Some((on_upgrade, Some(key))), Some(accept)) =
        (upgrade, resp.extensions_mut().remove::<mcpgw_core::ws::WsAccept>())
    {
        crate::ws::complete(&mut resp, &key);
        tokio::spawn(async move {
            // The socket lives on here, past hyper's connection: it keeps its connection slot.
            let _slot = slot;
            match on_upgrade.await {
                Ok(upgraded) => crate::ws::run(gw, accept, client_ip, upgraded, stop).await,
                Err(e) => tracing::debug!(error = %e, "WebSocket upgrade failed"),
            }
        });
    }
    resp.map(OutBody)
}

/// The core's response body as a hyper body: a whole body keeps its length (sent as
/// `content-length`), a stream is sent chunked as it comes.
pub struct OutBody(Body);

impl hyper::body::Body for OutBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut self.0 {
            Body::Empty => Poll::Ready(None),
            Body::Full(b) => {
                let b = std::mem::take(b);
                self.0 = Body::Empty;
                Poll::Ready((!b.is_empty()).then(|| Ok(Frame::data(b))))
            }
            Body::Stream(s) => Pin::new(s).poll_next(cx).map(|c| c.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Body::Empty => true,
            Body::Full(b) => b.is_empty(),
            Body::Stream(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Body::Empty => SizeHint::with_exact(0),
            Body::Full(b) => SizeHint::with_exact(b.len() as u64),
            Body::Stream(_) => SizeHint::default(),
        }
    }
}

/// A request that came over TLS with its URI made absolute (`https://host/path`) where HTTP/1.1
/// sent only the path: the core sees that it came over https (the admin UI's cookie is then
/// `Secure`). HTTP/2 requests carry their scheme already.
fn absolute_https<B>(mut req: http::Request<B>) -> http::Request<B> {
    if req.uri().scheme().is_some() {
        return req;
    }
    let host = req.headers().get(http::header::HOST).and_then(|h| h.to_str().ok());
    let pq = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
    if let Some(uri) = host.and_then(|h| format!("https://{h}{pq}").parse().ok()) {
        *req.uri_mut() = uri;
    }
    req
}

/// Serves until `shutdown` resolves, then ends SSE streams and lets in-flight requests finish
/// (at most `grace`).
pub async fn serve(
    gw: Gateway,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    grace: Duration,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> anyhow::Result<()> {
    let cfg = gw.config();
    let idle = Duration::from_millis(cfg.idle_timeout_ms);
    let conns = Conns::new(
        Bounds {
            total: cfg.max_connections,
            per_client: cfg.max_connections_per_client,
            body_bytes: cfg.max_client_body_bytes,
        },
        mcpgw_core::netguard::Networks::parse(&cfg.trusted_proxies).unwrap_or_default(),
    );
    // Plain connections are HTTP/1.1 only (no preface sniffing), with upgrades for WebSockets.
    let mut http1 = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()).http1_only();
    // A connection has this long to send a request's head, idle between requests included.
    http1.http1().timer(TokioTimer::new()).header_read_timeout(idle);
    let graceful = GracefulShutdown::new();
    // WebSocket connections leave hyper once upgraded: they hear of shutdown here.
    let (stopping, stop) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, most likely: wait rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let slot = match conns.open(peer.ip()) {
            Ok(slot) => Arc::new(slot),
            Err(why) => {
                // Told why in a few bytes, then closed; never waited on. Nothing was read yet,
                // so the path is unknown: the REST API's style.
                let answer = http1_text(&gw.refuse("/", &Unread::TooManyConnections(why.to_string())));
                tokio::spawn(async move {
                    use tokio::io::AsyncWriteExt;
                    let mut stream = stream;
                    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&answer)).await;
                });
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let gw = gw.clone();
        let https = tls.is_some();
        let stop = stop.clone();
        let conns = conns.clone();
        let held = slot.clone();
        let service = hyper::service::service_fn(move |req| {
            let gw = gw.clone();
            let stop = stop.clone();
            let conns = conns.clone();
            let slot = held.clone();
            let req = if https { absolute_https(req) } else { req };
            async move { Ok::<_, Infallible>(handle(gw, conns, slot, peer, req, stop).await) }
        });
        if let Some(acceptor) = &tls {
            // TLS: the handshake (at most 10 s) on the connection's own task, then HTTP/2 or
            // HTTP/1.1 as ALPN chose.
            let (acceptor, watcher) = (acceptor.clone(), graceful.watcher());
            tokio::spawn(async move {
                let _slot = slot;
                let stream = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => return tracing::debug!(error = %e, "TLS handshake failed"),
                    Err(_) => return tracing::debug!("TLS handshake timed out"),
                };
                let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                builder.http1().timer(TokioTimer::new()).header_read_timeout(idle);
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                if let Err(e) = watcher.watch(conn).await {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
            });
            continue;
        }
        let (builder, watcher) = (http1.clone(), graceful.watcher());
        tokio::spawn(async move {
            let _slot = slot;
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("shutting down: closing SSE streams, finishing in-flight requests");
    gw.shutdown();
    let _ = stopping.send(true);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => tracing::warn!("grace period over; dropping remaining connections"),
    }
    Ok(())
}
