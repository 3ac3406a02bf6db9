//! A soak: many sessions at once for a long time, each doing what a client does (federated and
//! REST calls, a standalone stream opened and dropped, the session ended and a new one opened),
//! paced so that the machine is busy but not saturated. It counts every answer that is not a
//! result and samples the gateway's RSS, so that growth after the warm-up shows a leak. The
//! bench runs the long one (`mcpgw-bench --soak`); the e2e suite a short one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{json, Value};

use crate::{start_rest_backend, Fixture, GatewayProcess, TempDir};

const ACCEPT: &str = "application/json, text/event-stream";

/// What a soak found.
#[derive(Debug, Clone)]
pub struct SoakReport {
    /// Sessions at once.
    pub sessions: usize,
    /// Its length.
    pub seconds: u64,
    /// Requests answered with a result.
    pub ok: u64,
    /// Requests that failed (status, error, timeout), with the first few reasons.
    pub errors: u64,
    pub first_errors: Vec<String>,
    /// Sessions opened (each worker ends its session and opens a new one now and then).
    pub sessions_opened: u64,
    /// Standalone streams opened.
    pub streams: u64,
    /// The gateway's RSS at the end of the warm-up (the first quarter) and at the end, KiB.
    pub rss_warm_kib: u64,
    pub rss_end_kib: u64,
    /// The largest RSS seen after the warm-up, KiB.
    pub rss_max_kib: u64,
}

impl SoakReport {
    /// RSS growth after the warm-up, as a fraction of the warm RSS.
    pub fn growth(&self) -> f64 {
        (self.rss_end_kib as f64 - self.rss_warm_kib as f64) / self.rss_warm_kib.max(1) as f64
    }

    /// Requests per second over the whole run.
    pub fn rps(&self) -> f64 {
        (self.ok + self.errors) as f64 / self.seconds.max(1) as f64
    }

    /// One line for a log or a note.
    pub fn summary(&self) -> String {
        format!(
            "soak: {} sessions for {} s: {} results, {} errors ({:.0} req/s), {} sessions opened, {} streams; RSS {:.1} MB after warm-up, {:.1} MB at the end ({:+.1} %), {:.1} MB at most",
            self.sessions,
            self.seconds,
            self.ok,
            self.errors,
            self.rps(),
            self.sessions_opened,
            self.streams,
            self.rss_warm_kib as f64 / 1024.0,
            self.rss_end_kib as f64 / 1024.0,
            self.growth() * 100.0,
            self.rss_max_kib as f64 / 1024.0,
        )
    }
}

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    errors: AtomicU64,
    opened: AtomicU64,
    streams: AtomicU64,
    first: std::sync::Mutex<Vec<String>>,
}

impl Counts {
    fn fail(&self, why: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first.lock().unwrap_or_else(|e| e.into_inner());
        if first.len() < 10 {
            first.push(why);
        }
    }
}

async fn post(http: &reqwest::Client, url: &str, sid: Option<&str>, body: &Value) -> anyhow::Result<reqwest::Response> {
    let mut r = http.post(url).header("accept", ACCEPT).json(body);
    if let Some(s) = sid {
        r = r
            .header("mcp-session-id", s)
            .header("mcp-protocol-version", "2025-11-25");
    }
    Ok(r.send().await?)
}

async fn open(http: &reqwest::Client, url: &str) -> anyhow::Result<String> {
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "soak", "version": "1"}}});
    let r = post(http, url, None, &init).await?;
    anyhow::ensure!(r.status() == 200, "initialize: {}", r.status());
    let sid = r
        .headers()
        .get("mcp-session-id")
        .context("no session id")?
        .to_str()?
        .to_string();
    r.bytes().await?;
    let done = post(
        http,
        url,
        Some(&sid),
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await?;
    anyhow::ensure!(done.status() == 202, "initialized: {}", done.status());
    Ok(sid)
}

/// A call's answer must hold `expect`.
async fn call(
    http: &reqwest::Client,
    url: &str,
    sid: &str,
    id: u64,
    tool: &str,
    args: Value,
    expect: &str,
) -> anyhow::Result<()> {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": args}});
    let r = post(http, url, Some(sid), &body).await?;
    anyhow::ensure!(r.status() == 200, "{tool}: {}", r.status());
    let text = r.text().await?;
    anyhow::ensure!(
        text.contains(expect) && !text.contains("\"isError\":true"),
        "{tool}: {text}"
    );
    Ok(())
}

/// One simulated client until `stop`: a session of a few dozen requests, then a new one.
async fn client(http: reqwest::Client, url: String, n: usize, stop: Instant, counts: Arc<Counts>) {
    let mut id = 0u64;
    // Spread the starts over the first seconds, and pace each client to about a request a second.
    tokio::time::sleep(Duration::from_millis((n as u64 * 37) % 3000)).await;
    while Instant::now() < stop {
        let sid = match tokio::time::timeout(Duration::from_secs(30), open(&http, &url)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                counts.fail(format!("open: {e}"));
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(_) => {
                counts.fail("open: no answer in 30 s".into());
                continue;
            }
        };
        counts.opened.fetch_add(1, Ordering::Relaxed);
        for k in 0..8u64 {
            if Instant::now() >= stop {
                break;
            }
            id += 1;
            let step = async {
                match (k + n as u64) % 6 {
                    0 | 3 => {
                        call(
                            &http,
                            &url,
                            &sid,
                            id,
                            "fixture__test_simple_text",
                            json!({}),
                            "simple text",
                        )
                        .await
                    }
                    1 | 4 => call(&http, &url, &sid, id, "weather", json!({"city": "Paris"}), "Paris").await,
                    2 => {
                        let r = post(
                            &http,
                            &url,
                            Some(&sid),
                            &json!({"jsonrpc": "2.0", "id": id, "method": "tools/list"}),
                        )
                        .await?;
                        anyhow::ensure!(r.status() == 200, "tools/list: {}", r.status());
                        r.bytes().await?;
                        Ok(())
                    }
                    _ => {
                        // A standalone stream, held a moment and dropped (as a client that
                        // reconnects does).
                        let r = http
                            .get(&url)
                            .header("accept", "text/event-stream")
                            .header("mcp-session-id", &sid)
                            .header("mcp-protocol-version", "2025-11-25")
                            .send()
                            .await?;
                        anyhow::ensure!(r.status() == 200, "GET stream: {}", r.status());
                        counts.streams.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        drop(r);
                        Ok(())
                    }
                }
            };
            match tokio::time::timeout(Duration::from_secs(30), step).await {
                Ok(Ok(())) => {
                    counts.ok.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Err(e)) => counts.fail(e.to_string()),
                Err(_) => counts.fail("no answer in 30 s".into()),
            }
            tokio::time::sleep(Duration::from_millis(700 + (id * 131 + n as u64 * 17) % 600)).await;
        }
        let _ = http.delete(&url).header("mcp-session-id", &sid).send().await;
    }
}

/// Runs `sessions` clients for `seconds` against a fresh gateway (the `mcpgw` binary) fronting
/// the fixture upstream and a REST tool.
pub async fn soak(sessions: usize, seconds: u64) -> anyhow::Result<SoakReport> {
    let fixture = Fixture::start("streamable-http", None);
    let backend = start_rest_backend().await?;
    let dir = TempDir::new("soak");
    let db = dir.join("soak.db");
    let gw = GatewayProcess::start(
        &[
            "--database",
            db.to_str().context("utf-8 path")?,
            "--max-sessions",
            "100000",
            // Every session of the soak comes from one address; a deployment's come from many.
            "--max-sessions-per-client",
            "0",
            "--max-connections-per-client",
            "0",
        ],
        &[("MCPGW_LOG", "warn,mcpgw=info")],
    )?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(sessions.max(8))
        .timeout(Duration::from_secs(60))
        .build()?;
    let admin = |path: &str| format!("{}/{path}", gw.url);
    let r = http
        .post(admin("gateways"))
        .json(&json!({"name": "fixture", "url": format!("{}/mcp", fixture.url)}))
        .send()
        .await?;
    anyhow::ensure!(r.status() == 201, "register the fixture: {}", r.status());
    let r = http
        .post(admin("tools"))
        .json(
            &json!({"name": "weather", "url": format!("{}/weather", backend.url), "method": "GET",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}),
        )
        .send()
        .await?;
    anyhow::ensure!(r.status() == 201, "register the REST tool: {}", r.status());

    let url = format!("{}/mcp", gw.url);
    let started = Instant::now();
    let stop = started + Duration::from_secs(seconds);
    let counts = Arc::new(Counts::default());
    let workers: Vec<_> = (0..sessions)
        .map(|n| tokio::spawn(client(http.clone(), url.clone(), n, stop, counts.clone())))
        .collect();
    let warm_until = started + Duration::from_secs(seconds / 4);
    let (mut rss_warm, mut rss_max) = (0, 0);
    while Instant::now() < stop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss = gw.rss_kib().unwrap_or(0);
        if Instant::now() < warm_until {
            rss_warm = rss;
        } else {
            rss_max = rss_max.max(rss);
        }
    }
    for w in workers {
        w.await?;
    }
    let rss_end = gw.rss_kib().unwrap_or(0);
    let first_errors = counts.first.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok(SoakReport {
        sessions,
        seconds,
        ok: counts.ok.load(Ordering::Relaxed),
        errors: counts.errors.load(Ordering::Relaxed),
        first_errors,
        sessions_opened: counts.opened.load(Ordering::Relaxed),
        streams: counts.streams.load(Ordering::Relaxed),
        rss_warm_kib: rss_warm,
        rss_end_kib: rss_end,
        rss_max_kib: rss_max.max(rss_end),
    })
}
