//! Moving requests and responses between `worker` types and the core's `http` types.

use bytes::Bytes;
use futures::StreamExt;
use mcpgw_core::Body;
use worker::{Headers, Method, Request, RequestInit, Response, Result};

/// A worker request's head as `http::Request<Bytes>`, with no body yet (see [`with_body`]).
pub fn head_of(req: &Request) -> Result<http::Request<Bytes>> {
    let url = req.url()?;
    // The URI is absolute: the core reads the scheme the client used from it (the audience of
    // tokens, cookies' `Secure`), never from a header a client could send.
    let path_and_query = match url.query() {
        Some(q) => format!("{}://{}{}?{q}", url.scheme(), url.authority(), url.path()),
        None => format!("{}://{}{}", url.scheme(), url.authority(), url.path()),
    };
    let mut builder = http::Request::builder()
        .method(req.method().to_string().as_str())
        .uri(path_and_query);
    for (k, v) in req.headers().entries() {
        builder = builder.header(k, v);
    }
    if url.host_str().is_some() && req.headers().get("host")?.is_none() {
        builder = builder.header("host", url.authority());
    }
    builder
        .body(Bytes::new())
        .map_err(|e| worker::Error::RustError(format!("bad request: {e}")))
}

/// `head` with `req`'s body read into it; `Ok(Err(path))` when the body is over `max_body`.
pub async fn with_body(
    mut req: Request,
    head: http::Request<Bytes>,
    max_body: usize,
) -> Result<std::result::Result<http::Request<Bytes>, String>> {
    let path = head.uri().path().to_string();
    let declared = req
        .headers()
        .get("content-length")?
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    if declared > max_body {
        return Ok(Err(path));
    }
    let body = req.bytes().await?;
    if body.len() > max_body {
        return Ok(Err(path));
    }
    let (parts, _) = head.into_parts();
    Ok(Ok(http::Request::from_parts(parts, Bytes::from(body))))
}

/// A worker request as `http::Request<Bytes>`; `Ok(Err(path))` when the body is over `max_body`.
pub async fn to_http(req: Request, max_body: usize) -> Result<std::result::Result<http::Request<Bytes>, String>> {
    let head = head_of(&req)?;
    with_body(req, head, max_body).await
}

/// An `http::Request<Bytes>` as a worker request to `url` (used to hand a request to a
/// Durable Object).
pub fn to_worker(req: &http::Request<Bytes>, url: &str, extra: &[(&str, &str)]) -> Result<Request> {
    let headers = Headers::new();
    for (k, v) in req.headers() {
        if let Ok(v) = v.to_str() {
            headers.append(k.as_str(), v)?;
        }
    }
    for (k, v) in extra {
        headers.set(k, v)?;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::from(req.method().as_str().to_string()))
        .with_headers(headers);
    if !req.body().is_empty() {
        init.with_body(Some(js_sys::Uint8Array::from(req.body().as_ref()).into()));
    }
    Request::new_with_init(url, &init)
}

/// The core's response as a worker response; streamed bodies stay streamed.
pub fn from_http(resp: http::Response<Body>) -> Result<Response> {
    let (parts, body) = resp.into_parts();
    let out = match body {
        Body::Empty => Response::empty()?,
        Body::Full(b) => Response::from_bytes(b.to_vec())?,
        Body::Stream(s) => Response::from_stream(s.map(|b| Ok::<Vec<u8>, worker::Error>(b.to_vec())))?,
    };
    let headers = Headers::new();
    for (k, v) in &parts.headers {
        if let Ok(v) = v.to_str() {
            headers.append(k.as_str(), v)?;
        }
    }
    Ok(out.with_status(parts.status.as_u16()).with_headers(headers))
}
