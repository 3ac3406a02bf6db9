//! What metrics and tracing cost on the hot path (`--telemetry-only`): `tools/call` of the
//! reference server's `echo` through three gateways in one run, interleaved over `ROUNDS`
//! rounds: metrics off (`MCPGW_METRICS=false`), metrics on (the default), and metrics with every
//! request traced and exported by OTLP to a receiver in this process (which reads and drops
//! the batches). Reported: throughput, its ratio to metrics off, p50/p99, and each gateway's CPU
//! per call; the baseline of the same run is the upstream called directly.

use anyhow::Context;
use mcpgw_e2e::{Fixture, GatewayProcess, TempDir};
use serde_json::{json, Value};

use crate::contextforge::{interleaved, rss_mb, Target};
use crate::stateless::tree;
use crate::{load_client, open_session, ROUNDS};

/// A sink for OTLP export requests on 127.0.0.1: counts spans, keeps nothing.
async fn otlp_sink() -> anyhow::Result<(String, std::sync::Arc<std::sync::atomic::AtomicU64>)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    let spans = std::sync::Arc::new(AtomicU64::new(0));
    let seen = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let seen = seen.clone();
            async move {
                let n = body.windows(8).filter(|w| w == b"\"spanId\"").count();
                seen.fetch_add(n as u64, Ordering::Relaxed);
                "{}"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((format!("http://{addr}"), spans))
}

/// `--telemetry-only`: `n` calls per phase per round at concurrency `c`.
pub async fn telemetry_bench(n: usize, c: usize) -> anyhow::Result<Value> {
    let dir = TempDir::new("bench-telemetry");
    let http = load_client(c)?;
    let everything = Fixture::everything("streamableHttp");
    let up = format!("{}/mcp", everything.url);
    let (sink, spans) = otlp_sink().await?;
    let log = ("MCPGW_LOG", "warn,mcpgw=info");
    let db = |name: &str| dir.join(name).to_str().map(str::to_string).context("utf-8 path");
    let gateways = [
        (
            "metrics off",
            GatewayProcess::start(&["--database", &db("off.db")?], &[log, ("MCPGW_METRICS", "false")])?,
        ),
        (
            "metrics on",
            GatewayProcess::start(&["--database", &db("on.db")?], &[log])?,
        ),
        (
            "metrics + traces (OTLP)",
            GatewayProcess::start(
                &["--database", &db("traced.db")?],
                &[log, ("MCPGW_OTLP_ENDPOINT", sink.as_str())],
            )?,
        ),
    ];
    let mut targets = vec![Target {
        name: "server-everything directly",
        url: up.clone(),
        session: Some(open_session(&http, &up).await?),
        token: None,
        tool: "echo".into(),
        pids: vec![],
    }];
    for (name, gw) in &gateways {
        let r = http
            .post(format!("{}/gateways", gw.url))
            .json(&json!({"name": "every", "url": up}))
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "register at {name}: {}", r.status());
        let mcp = format!("{}/mcp", gw.url);
        targets.push(Target {
            name,
            session: Some(open_session(&http, &mcp).await?),
            url: mcp,
            token: None,
            tool: "every__echo".into(),
            pids: tree(gw.pid()),
        });
    }
    let phases = interleaved(&http, &targets, n, c).await?;
    let off = &phases[1];
    println!(
        "\nmetrics and tracing on the hot path: tools/call of server-everything's echo through /mcp, concurrency {c}, {} calls per phase per round, median of {ROUNDS} interleaved rounds:\n",
        off.requests
    );
    println!("| phase | calls/s | ratio to metrics off | p50 ms | p99 ms | gateway CPU µs/call | RSS MB |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut report = vec![];
    for (p, t) in phases.iter().zip(&targets) {
        let cpu = p.cpu_us.map_or(0.0, |c| c[0]);
        let (cpu_text, rss) = if t.pids.is_empty() {
            ("-".to_string(), "-".to_string())
        } else {
            (format!("{cpu:.0}"), format!("{:.1}", rss_mb(&t.pids)))
        };
        println!(
            "| {} | {:.0} | {:.3} | {:.2} | {:.2} | {cpu_text} | {rss} |",
            p.name,
            p.rps(),
            p.rps() / off.rps(),
            p.pct(0.5),
            p.pct(0.99)
        );
        report.push(
            json!({"name": p.name, "rps": p.rps(), "ratio_to_off": p.rps() / off.rps(),
            "p50_ms": p.pct(0.5), "p99_ms": p.pct(0.99), "cpu_us": (!t.pids.is_empty()).then_some(cpu)}),
        );
    }
    let exported = spans.load(std::sync::atomic::Ordering::Relaxed);
    println!("\nspans received by the OTLP sink: {exported}");
    Ok(json!({"phases": report, "concurrency": c, "calls": off.requests, "spans_exported": exported}))
}
