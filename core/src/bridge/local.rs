//! This process's own gateway as a bridge's endpoint: requests handed to
//! [`Gateway::handle`] without a network.

use bytes::Bytes;
use futures::StreamExt;

use crate::gateway::Gateway;
use crate::http::response::Body;
use crate::ports::{HttpClient, HttpError, InboundResponse, OutboundRequest};
use crate::security::admission::{Admitted, ClientIp};

/// This process's own gateway as an endpoint: a request goes to [`Gateway::handle`] without a
/// network, let in as `admitted` (the local operator, for `mcpgw stdio`) or, when that is none,
/// through the gateway's admission like any request (with the bridge's `Authorization` header).
pub struct LocalGateway {
    gateway: Gateway,
    admitted: Option<Admitted>,
    client_ip: String,
}

impl LocalGateway {
    /// The gateway as an endpoint.
    pub fn new(gateway: Gateway, admitted: Option<Admitted>) -> Self {
        Self {
            gateway,
            admitted,
            client_ip: "local".into(),
        }
    }

    /// The address the messages come from (a WebSocket client's; rate limits of anonymous
    /// callers are per address).
    pub fn with_client_ip(mut self, ip: impl Into<String>) -> Self {
        self.client_ip = ip.into();
        self
    }
}

#[cfg_attr(not(target_family = "wasm"), async_trait::async_trait)]
#[cfg_attr(target_family = "wasm", async_trait::async_trait(?Send))]
impl HttpClient for LocalGateway {
    async fn send(&self, r: OutboundRequest) -> Result<InboundResponse, HttpError> {
        // The path alone: no Host to check, as for a request that never crossed a network.
        let path = match r.url.find("://") {
            Some(i) => r.url[i + 3..]
                .find('/')
                .map_or("/", |p| &r.url[i + 3 + p..])
                .to_string(),
            None => r.url.clone(),
        };
        let mut req = http::Request::builder()
            .method(r.method)
            .uri(path.as_str())
            .body(r.body.unwrap_or_default())
            .map_err(|e| HttpError::InvalidUrl(e.to_string()))?;
        *req.headers_mut() = r.headers;
        req.extensions_mut().insert(ClientIp(self.client_ip.clone()));
        if let Some(a) = &self.admitted {
            req.extensions_mut().insert(a.clone());
        }
        let resp = self.gateway.handle(req).await;
        let (parts, body) = resp.into_parts();
        Ok(InboundResponse {
            status: parts.status,
            headers: parts.headers,
            body: body_stream(body),
        })
    }
}

fn body_stream(body: Body) -> crate::platform::BoxStream<'static, Result<Bytes, HttpError>> {
    match body {
        Body::Empty => Box::pin(futures::stream::empty()),
        Body::Full(b) => Box::pin(futures::stream::once(async move { Ok(b) })),
        Body::Stream(s) => Box::pin(s.map(Ok)),
    }
}
