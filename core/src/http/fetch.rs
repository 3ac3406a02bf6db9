//! One outbound request, its whole response read within a size limit and a timeout: for REST
//! tools and small documents (issuer metadata, JWKS). MCP upstreams stream and use
//! [`crate::ports::HttpClient`] directly.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{future::Either, StreamExt};

use crate::ports::{Clock, HttpClient, HttpError, InboundResponse, OutboundRequest};

/// Reads a response's whole body, at most `limit` bytes.
pub(crate) async fn read_body(resp: InboundResponse, limit: usize) -> Result<(InboundResponse, Bytes), HttpError> {
    let mut resp = resp;
    let mut buf = BytesMut::new();
    while let Some(chunk) = resp.body.next().await {
        let chunk = chunk?;
        if buf.len() + chunk.len() > limit {
            return Err(HttpError::TooLarge(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok((resp, buf.freeze()))
}

/// Sends `request` and reads the whole response (at most `limit` bytes) within `timeout`.
pub async fn fetch(
    http: &dyn HttpClient,
    clock: &dyn Clock,
    request: OutboundRequest,
    timeout: Duration,
    limit: usize,
) -> Result<(InboundResponse, Bytes), HttpError> {
    let work = Box::pin(async move {
        let resp = http.send(request).await?;
        read_body(resp, limit).await
    });
    match futures::future::select(work, clock.sleep(timeout)).await {
        Either::Left((r, _)) => r,
        Either::Right(_) => Err(HttpError::Timeout(timeout.as_millis() as u64)),
    }
}
