//! [`HttpClient`] on the Workers `fetch` API, with the response body streamed.

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use mcpgw_core::ports::{HttpClient, HttpError, InboundResponse, OutboundRequest};
use worker::{Fetch, Headers, Method, Request, RequestInit, RequestRedirect};

/// Outbound HTTP through `fetch`.
pub struct FetchClient;

fn method(m: &http::Method) -> Method {
    Method::from(m.as_str().to_string())
}

#[async_trait(?Send)]
impl HttpClient for FetchClient {
    async fn send(&self, r: OutboundRequest) -> Result<InboundResponse, HttpError> {
        if r.tls.is_some() {
            // fetch trusts the platform's roots only and cannot present a client certificate.
            return Err(HttpError::Connect(
                "an upstream's own TLS settings (tls: a CA bundle, a client certificate) need the native gateway; Workers' fetch cannot use them".into(),
            ));
        }
        let headers = Headers::new();
        for (k, v) in &r.headers {
            let value = v.to_str().map_err(|_| HttpError::InvalidHeader(k.to_string()))?;
            headers
                .append(k.as_str(), value)
                .map_err(|_| HttpError::InvalidHeader(k.to_string()))?;
        }
        let mut init = RequestInit::new();
        // A redirect is answered as it is, never followed: its target was not checked by the
        // SSRF policy (core's `Guarded`), and the upstream's credentials would go with it.
        init.with_method(method(&r.method))
            .with_headers(headers)
            .with_redirect(RequestRedirect::Manual);
        if let Some(body) = &r.body {
            init.with_body(Some(js_sys::Uint8Array::from(body.as_ref()).into()));
        }
        let req =
            Request::new_with_init(&r.url, &init).map_err(|e| HttpError::InvalidUrl(format!("{}: {e}", r.url)))?;
        let mut resp = Fetch::Request(req)
            .send()
            .await
            // workerd reports a refused connection and one lost mid-request alike ("Network
            // connection lost."): it cannot be told which, so it counts as not sent.
            .map_err(|e| HttpError::Connect(e.to_string()))?;
        let status = http::StatusCode::from_u16(resp.status_code()).map_err(|e| HttpError::Body(e.to_string()))?;
        let mut out_headers = http::HeaderMap::new();
        for (k, v) in resp.headers().entries() {
            if let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(k.as_bytes()),
                http::HeaderValue::from_str(&v),
            ) {
                out_headers.append(name, value);
            }
        }
        let body = resp.stream().map_err(|e| HttpError::Body(e.to_string()))?;
        let body = body.map(|chunk| chunk.map(Bytes::from).map_err(|e| HttpError::Body(e.to_string())));
        Ok(InboundResponse {
            status,
            headers: out_headers,
            body: Box::pin(body),
        })
    }
}
