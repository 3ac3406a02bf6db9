//! Stateless (2026-07-28) versus session `tools/call` through the gateway, for a federated tool
//! (the fixture upstream, reached over the gateway's upstream session) and a REST tool (the REST
//! backend), natively and, with `--edge`, under `wrangler dev`; the CPU the gateway spends per
//! request in each phase (natively the gateway process; on the edge the wrangler process tree,
//! workerd included). The session phases use one client session; the stateless ones send the
//! 2026-07-28 headers and `_meta` on every request.

use std::time::Duration;

use anyhow::{ensure, Context};
use mcpgw_e2e::{start_rest_backend, EdgeProcess, Fixture, GatewayProcess, TempDir};
use serde_json::{json, Value};

use crate::{load_client, mcp_request, medians, prepare, register_upstream, run_phase, Phase, ACCEPT, ROUNDS};

const V: &str = "2026-07-28";

/// One stateless `tools/call`; checks that the answer is the tool's result.
async fn stateless_call(
    http: &reqwest::Client,
    url: &str,
    id: u64,
    tool: &str,
    args: &Value,
    expect: &str,
) -> anyhow::Result<()> {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
        "name": tool, "arguments": args,
        "_meta": {"io.modelcontextprotocol/protocolVersion": V, "io.modelcontextprotocol/clientCapabilities": {}}}});
    let r = http
        .post(url)
        .header("accept", ACCEPT)
        .header("mcp-protocol-version", V)
        .header("mcp-method", "tools/call")
        .header("mcp-name", tool)
        .json(&body)
        .send()
        .await?;
    let status = r.status();
    let text = r.text().await?;
    ensure!(status.is_success(), "stateless call {tool}: {status} {text}");
    ensure!(
        text.contains(expect) && text.contains("\"resultType\""),
        "stateless call failed: {text}"
    );
    Ok(())
}

/// The gateway's process tree, for CPU figures.
pub(crate) fn tree(root: u32) -> Vec<u32> {
    let mut all = vec![root];
    let mut i = 0;
    while i < all.len() {
        all.extend(crate::cpu::children_of(all[i]));
        i += 1;
    }
    all
}

pub(crate) fn cpu_of(pids: &[u32]) -> f64 {
    pids.iter().filter_map(|p| crate::cpu::process_cpu_secs(*p).ok()).sum()
}

/// The four phases once each, with the CPU each cost the gateway per request.
async fn round(
    http: &reqwest::Client,
    mcp: &str,
    sid: &str,
    pids: &[u32],
    n: usize,
    c: usize,
    base: u64,
) -> anyhow::Result<Vec<Phase>> {
    let limit = Duration::from_secs(60);
    let calls: [(&'static str, bool, &'static str, Value, &'static str); 5] = [
        (
            "REST tool, session",
            false,
            "weather",
            json!({"city": "Paris"}),
            "Paris",
        ),
        (
            "REST tool, stateless",
            true,
            "weather",
            json!({"city": "Paris"}),
            "Paris",
        ),
        (
            "federated tool, session",
            false,
            "fx__test_simple_text",
            json!({}),
            "simple text response",
        ),
        (
            "federated tool, stateless",
            true,
            "fx__test_simple_text",
            json!({}),
            "simple text response",
        ),
        (
            "federated tool, stateless, 2026-07-28 upstream",
            true,
            "fx2__test_simple_text",
            json!({}),
            "simple text response",
        ),
    ];
    let mut out = Vec::new();
    for (k, (name, modern, tool, args, expect)) in calls.into_iter().enumerate() {
        let (h, url, sid) = (http.clone(), mcp.to_string(), sid.to_string());
        let id0 = base + k as u64 * 10_000_000;
        let before = cpu_of(pids);
        let mut phase = run_phase(name, n, c, limit, move |i| {
            let (h, url, sid, args) = (h.clone(), url.clone(), sid.clone(), args.clone());
            async move {
                if modern {
                    return stateless_call(&h, &url, id0 + i, tool, &args, expect).await;
                }
                let body = json!({"jsonrpc": "2.0", "id": id0 + i, "method": "tools/call",
                    "params": {"name": tool, "arguments": args}});
                let v = mcp_request(&h, &url, &sid, &body).await?;
                ensure!(v.to_string().contains(expect), "session call failed: {v}");
                Ok(())
            }
        })
        .await?;
        let used = cpu_of(pids) - before;
        phase.cpu_us = Some([used * 1e6 / phase.requests.max(1) as f64, 0.0]);
        out.push(phase);
    }
    Ok(out)
}

async fn measure(
    label: &str,
    gw_url: &str,
    pids: Vec<u32>,
    backend: &str,
    (fixture, modern): (&str, &str),
    n: usize,
    c: usize,
) -> anyhow::Result<Value> {
    let http = load_client(c)?;
    let sid = prepare(&http, gw_url, backend).await?;
    register_upstream(&http, gw_url, "fx", fixture).await?;
    register_upstream(&http, gw_url, "fx2", modern).await?;
    let mcp = format!("{gw_url}/mcp");
    round(&http, &mcp, &sid, &pids, (n / 10).max(50), c, 0).await?; // warm-up
    let mut rounds = Vec::new();
    for r in 0..ROUNDS {
        rounds.push(round(&http, &mcp, &sid, &pids, n, c, (r as u64 + 1) * 100_000_000).await?);
    }
    let phases = medians(rounds);
    println!("\n{label}: stateless (2026-07-28) versus session tools/call, concurrency {c}, {n} requests per phase per round, median of {ROUNDS} interleaved rounds:\n");
    println!("| phase | req/s | p50 ms | p99 ms | gateway CPU µs/request |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    let cpu = |p: &Phase| p.cpu_us.map_or(f64::NAN, |c| c[0]);
    for p in &phases {
        println!(
            "| {} | {:.0} | {:.3} | {:.3} | {:.0} |",
            p.name,
            p.rps(),
            p.pct(0.5),
            p.pct(0.99),
            cpu(p)
        );
    }
    let mut rows = Vec::new();
    let pairs = [
        ("REST", &phases[0], &phases[1]),
        ("federated", &phases[2], &phases[3]),
        // Both stateless: a 2026-07-28 upstream (no session) against a session-era one.
        (
            "federated, 2026-07-28 upstream vs session-era upstream",
            &phases[3],
            &phases[4],
        ),
    ];
    for (kind, s, m) in pairs {
        println!(
            "{kind}: stateless/session throughput {:.2}, CPU per request {:.2}",
            m.rps() / s.rps(),
            cpu(m) / cpu(s)
        );
        rows.push(
            json!({"target": label, "tool": kind, "session_rps": s.rps(), "stateless_rps": m.rps(),
            "throughput_ratio": m.rps() / s.rps(), "session_cpu_us": cpu(s), "stateless_cpu_us": cpu(m),
            "cpu_ratio": cpu(m) / cpu(s), "session_p50_ms": s.pct(0.5), "stateless_p50_ms": m.pct(0.5)}),
        );
    }
    Ok(Value::Array(rows))
}

/// The phase (`--stateless-only`, `--edge` adds the Worker).
pub async fn stateless_bench(total: usize, concurrency: usize, edge: bool) -> anyhow::Result<Value> {
    let backend = start_rest_backend().await?;
    let fixture = Fixture::start("streamable-http", None);
    let modern = Fixture::modern("modern", None);
    let dir = TempDir::new("bench-stateless");
    let db = dir.join("stateless.db");
    let gw = GatewayProcess::start(
        &["--database", db.to_str().context("utf-8 path")?],
        &[("MCPGW_LOG", "warn,mcpgw=info")],
    )?;
    let mut rows = measure(
        "native",
        &gw.url,
        vec![gw.pid()],
        &backend.url,
        (&fixture.url, &modern.url),
        total,
        concurrency,
    )
    .await?;
    drop(gw);
    if edge {
        let worker = EdgeProcess::start(&dir.join("edge"), &[])?;
        let pids = tree(worker.pid());
        let more = measure(
            "edge (wrangler dev)",
            &worker.url,
            pids,
            &backend.url,
            (&fixture.url, &modern.url),
            (total / 5).max(500),
            concurrency,
        )
        .await?;
        if let (Value::Array(a), Value::Array(b)) = (&mut rows, more) {
            a.extend(b);
        }
    }
    Ok(rows)
}
