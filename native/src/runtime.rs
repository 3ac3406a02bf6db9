//! Native implementations of the core's platform ports: tokio time and tasks, OS randomness,
//! and outbound HTTP through reqwest with streamed bodies.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use mcpgw_core::platform::BoxFuture;
use mcpgw_core::ports::{Clock, HttpClient, HttpError, Ids, InboundResponse, OutboundRequest, Spawner};

/// Wall clock and tokio sleeps.
pub struct TokioClock;

impl Clock for TokioClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// Random v4 UUIDs as 32 hex digits.
pub struct RandomIds;

impl Ids for RandomIds {
    fn new_id(&self) -> String {
        uuid::Uuid::new_v4().simple().to_string()
    }
}

/// `tokio::spawn`.
pub struct TokioSpawner;

impl Spawner for TokioSpawner {
    fn spawn(&self, work: BoxFuture<'static, ()>) {
        tokio::spawn(work);
    }
}

/// reqwest, with connection pooling; redirects are not followed (a tool's URL is what it is).
pub struct ReqwestClient {
    client: reqwest::Client,
}

impl ReqwestClient {
    /// A client with sane connect timeouts.
    pub fn new() -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("mcpgw/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { client })
    }
}

#[async_trait]
impl HttpClient for ReqwestClient {
    async fn send(&self, request: OutboundRequest) -> Result<InboundResponse, HttpError> {
        let url =
            reqwest::Url::parse(&request.url).map_err(|e| HttpError::InvalidUrl(format!("{}: {e}", request.url)))?;
        let mut rb = self.client.request(request.method, url);
        for (k, v) in &request.headers {
            rb = rb.header(k, v);
        }
        if let Some(body) = request.body {
            rb = rb.body(body);
        }
        let resp = rb.send().await.map_err(|e| HttpError::Connect(error_chain(&e)))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .bytes_stream()
            .map_err(|e| HttpError::Body(error_chain(&e)))
            .boxed();
        Ok(InboundResponse { status, headers, body })
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
