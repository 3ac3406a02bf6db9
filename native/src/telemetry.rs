//! The native recorder: metrics in memory (the core's `PromRegistry`) with this process's own
//! (`process_*`, read from /proc), spans batched and exported by OTLP/HTTP (JSON) when an
//! endpoint is set, and the separate metrics listener.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use mcpgw_core::observe::prom::PromRegistry;
use mcpgw_core::observe::{otlp, Recorder, Span};
use mcpgw_core::ports::{HttpClient, OutboundRequest};
use mcpgw_core::Gateway;

/// Spans waiting for export at most; more are dropped (counted in the log) rather than held.
const QUEUE: usize = 8192;
/// Spans per export request at most.
const BATCH: usize = 512;

/// Where spans go.
pub struct Otlp {
    /// The collector's base URL (`/v1/traces` is added unless the URL ends with it).
    pub endpoint: String,
    /// Extra headers (`key=value,key=value`, as `OTEL_EXPORTER_OTLP_HEADERS`).
    pub headers: Vec<(String, String)>,
    /// `service.name`.
    pub service: String,
}

/// Spans waiting for the exporter: pushed under a lock on the request path (no task is woken
/// per span), taken every [`FLUSH`] or as soon as a batch is full.
struct Pending {
    spans: std::sync::Mutex<Vec<Span>>,
    full: tokio::sync::Notify,
    dropped: std::sync::atomic::AtomicU64,
}

/// How often waiting spans are exported.
const FLUSH: Duration = Duration::from_millis(500);

/// The recorder for this process; with `otlp`, spans are exported from a background task.
pub fn recorder(otlp: Option<Otlp>) -> Arc<dyn Recorder> {
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let mut reg = PromRegistry::default().with_collector(Box::new(move |out| process_metrics(started, out)));
    if let Some(o) = otlp {
        let pending = Arc::new(Pending {
            spans: std::sync::Mutex::new(Vec::with_capacity(BATCH)),
            full: tokio::sync::Notify::new(),
            dropped: std::sync::atomic::AtomicU64::new(0),
        });
        tokio::spawn(export(o, pending.clone()));
        reg = reg.with_spans(Box::new(move |span| {
            let mut spans = pending.spans.lock().unwrap_or_else(|e| e.into_inner());
            if spans.len() >= QUEUE {
                pending.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return;
            }
            spans.push(span);
            if spans.len() == BATCH {
                pending.full.notify_one();
            }
        }));
    }
    Arc::new(reg)
}

/// Sends what is pending every [`FLUSH`], or at once when a batch is full, [`BATCH`] spans per
/// request at most.
async fn export(o: Otlp, pending: Arc<Pending>) {
    let any = ["0.0.0.0/0".to_string(), "::/0".to_string()];
    let http = crate::http_client::HyperClient::new(mcpgw_core::netguard::NetPolicy::parse(&any).unwrap_or_default());
    let url = if o.endpoint.trim_end_matches('/').ends_with("/v1/traces") {
        o.endpoint.clone()
    } else {
        format!("{}/v1/traces", o.endpoint.trim_end_matches('/'))
    };
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    for (k, v) in &o.headers {
        if let (Ok(k), Ok(v)) = (http::HeaderName::try_from(k.as_str()), http::HeaderValue::from_str(v)) {
            headers.insert(k, v);
        }
    }
    let version = env!("CARGO_PKG_VERSION");
    let mut failures = 0u32;
    loop {
        tokio::select! {
            () = tokio::time::sleep(FLUSH) => {}
            () = pending.full.notified() => {}
        }
        let spans = std::mem::take(&mut *pending.spans.lock().unwrap_or_else(|e| e.into_inner()));
        let dropped = pending.dropped.swap(0, std::sync::atomic::Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "span queue full: spans dropped (the collector is slow or away)"
            );
        }
        for batch in spans.chunks(BATCH) {
            let req = OutboundRequest {
                method: http::Method::POST,
                url: url.clone(),
                headers: headers.clone(),
                body: Some(Bytes::from(otlp::encode(batch, &o.service, version))),
                tls: None,
            };
            let ok = match tokio::time::timeout(Duration::from_secs(10), http.send(req)).await {
                Ok(Ok(resp)) => {
                    // Read the answer to the end so the connection goes back to the pool.
                    use futures::StreamExt;
                    let mut body = resp.body;
                    while body.next().await.is_some() {}
                    resp.status.is_success()
                }
                _ => false,
            };
            if ok {
                failures = 0;
            } else {
                failures += 1;
                // One line per run of failures, not one per batch.
                if failures == 1 {
                    tracing::warn!(url = %url, spans = batch.len(), "OTLP export failed; spans dropped until the collector answers");
                }
            }
        }
    }
}

/// `process_*` metrics from /proc (Linux); nothing elsewhere.
fn process_metrics(started: f64, out: &mut String) {
    use std::fmt::Write as _;
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return;
    };
    // Fields after the command name (which may hold spaces, so split after its ')').
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15 (1-based, so 11 and 12 after the name and state), in
    // clock ticks of 1/100 s (USER_HZ on Linux).
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let vsize = ticks(20);
    let page = 4096.0;
    let rss = ticks(21) * page;
    let fds = std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0);
    let max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).and_then(|v| v.parse::<f64>().ok()))
        })
        .unwrap_or(0.0);
    let families: [(&str, &str, &str, f64); 6] = [
        (
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time spent, in seconds.",
            cpu,
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            rss,
        ),
        (
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            vsize,
        ),
        ("process_open_fds", "gauge", "Open file descriptors.", fds as f64),
        (
            "process_max_fds",
            "gauge",
            "The most file descriptors the process may open.",
            max_fds,
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "When the process started, seconds since the epoch.",
            started,
        ),
    ];
    for (name, kind, help, v) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
    }
}

/// Serves `GET /metrics` (and `/health`) without credentials on `addr`: for a scraper on a
/// network the clients do not reach.
pub async fn serve_metrics(gw: Gateway, listener: tokio::net::TcpListener) {
    use hyper_util::rt::TokioIo;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let gw = gw.clone();
        let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let gw = gw.clone();
            async move {
                let (status, ctype, body) = match (req.method().as_str(), req.uri().path()) {
                    ("GET", "/metrics") => match gw.metrics_text().await {
                        Some(t) => (200, "text/plain; version=0.0.4; charset=utf-8", t),
                        None => (
                            404,
                            "application/json",
                            r#"{"error":{"code":"not_found","message":"metrics are off"}}"#.into(),
                        ),
                    },
                    ("GET", "/health") => (200, "application/json", r#"{"status":"ok"}"#.into()),
                    _ => (
                        404,
                        "application/json",
                        r#"{"error":{"code":"not_found","message":"only GET /metrics and /health here"}}"#.into(),
                    ),
                };
                let mut r = http::Response::new(http_body_util::Full::new(Bytes::from(body)));
                *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
                r.headers_mut()
                    .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(ctype));
                Ok::<_, std::convert::Infallible>(r)
            }
        });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// `key=value,key=value` pairs (values percent-decoded is not needed for the usual tokens).
pub fn header_pairs(v: &str) -> Vec<(String, String)> {
    v.split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}
