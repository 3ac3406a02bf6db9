//! mcpgw-bench: whole-gateway figures, always as a ratio against a baseline in the same run.
//!
//! Starts a REST backend and the release `mcpgw` on 127.0.0.1, then measures, with the same
//! client and concurrency: the backend called directly (baseline), `tools/call` of a REST tool
//! through the gateway, and `tools/list` through the gateway. Also time-to-ready (fresh and
//! existing database) and idle RSS. Every loop is bounded in count and time.
//!
//! Also: tools/call through the gateway versus directly at a federated MCP upstream
//! (`--federation-only`), auth plus rate limiting versus both off (`--security-only`), the CPU
//! per federated call beside nginx proxying the same traffic (`--cpu-only`; skipped without
//! nginx), memory per registered tool over 10,000 REST tools (`--tools-only`), and stateless
//! (2026-07-28) versus session `tools/call` with the gateway's CPU per request (`--stateless-only`),
//! and with `--edge` the Worker's CPU per request to verify a bearer token of each algorithm
//! (`--edge-auth-only`), and metrics and tracing on versus off (`--telemetry-only`).
//!
//! `--contextforge` compares mcpgw with ContextForge instead (`contextforge.rs`; ContextForge from
//! `MCPGW_CONTEXTFORGE`, which `scripts/bench.sh --contextforge` installs and sets).
//!
//! `--soak` runs the long soak instead (`--sessions N`, default 1000, for `--seconds S`, default
//! 600; `mcpgw_e2e::soak`), failing on any error or on RSS growth past 10 % after the warm-up.
//!
//! usage: mcpgw-bench [--requests N] [--concurrency C] [--edge] [--out FILE]
//! (`--edge` also measures the Worker under `wrangler dev`; build it first with scripts/edge.sh)

mod contextforge;
mod cpu;
mod edge_auth;
mod stateless;
mod telemetry;
mod tool_memory;
mod vault;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use mcpgw_e2e::{initialize, start_rest_backend, EdgeProcess, Fixture, GatewayProcess, TempDir};
use serde_json::{json, Value};

const ACCEPT: &str = "application/json, text/event-stream";

struct Phase {
    name: &'static str,
    requests: usize,
    elapsed: Duration,
    latencies_us: Vec<u64>,
    /// CPU per request of the upstream and of the gateway over the phase, in µs, where measured.
    cpu_us: Option<[f64; 2]>,
}

impl Phase {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
    fn pct(&self, p: f64) -> f64 {
        let i = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        self.latencies_us.get(i).copied().unwrap_or(0) as f64 / 1000.0
    }
}

/// Runs `make(i)` requests with `concurrency` workers until `total` are done or `limit` passes.
async fn run_phase<F, Fut>(
    name: &'static str,
    total: usize,
    concurrency: usize,
    limit: Duration,
    make: F,
) -> anyhow::Result<Phase>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let make = Arc::new(make);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (make, next) = (make.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i as usize >= total || started.elapsed() > limit {
                    break;
                }
                let t = Instant::now();
                make(i).await?;
                lat.push(t.elapsed().as_micros() as u64);
            }
            anyhow::Ok(lat)
        }));
    }
    let mut latencies_us = Vec::new();
    for w in workers {
        latencies_us.extend(w.await??);
    }
    let elapsed = started.elapsed();
    latencies_us.sort_unstable();
    eprintln!(
        "  {name}: {} requests in {:.2} s at concurrency {concurrency}",
        latencies_us.len(),
        elapsed.as_secs_f64()
    );
    Ok(Phase {
        name,
        requests: latencies_us.len(),
        elapsed,
        latencies_us,
        cpu_us: None,
    })
}

const ROUNDS: usize = 3;

impl Phase {
    fn empty() -> Self {
        Phase {
            name: "",
            requests: 0,
            elapsed: Duration::from_secs(1),
            latencies_us: Vec::new(),
            cpu_us: None,
        }
    }
}

/// What the phases talk to.
struct Targets {
    http: reqwest::Client,
    direct_url: String,
    mcp_url: String,
    sid: String,
}

/// One round: every phase once, with `n` requests at `c` concurrency. JSON-RPC ids start at
/// `id_base` so none repeats within the session.
async fn run_round(t: &Targets, n: usize, c: usize, limit: Duration, id_base: u64) -> anyhow::Result<Vec<Phase>> {
    let (h, u) = (t.http.clone(), t.direct_url.clone());
    let direct = run_phase("direct REST call (baseline)", n, c, limit, move |_| {
        let (h, u) = (h.clone(), u.clone());
        async move {
            let r = h.get(&u).send().await?;
            ensure!(r.status().is_success(), "direct {}", r.status());
            r.bytes().await?;
            Ok(())
        }
    })
    .await?;
    let (h, u) = (t.http.clone(), t.mcp_url.replace("/mcp", "/health"));
    let floor = run_phase("GET /health of mcpgw (HTTP floor, no MCP)", n, c, limit, move |_| {
        let (h, u) = (h.clone(), u.clone());
        async move {
            let r = h.get(&u).send().await?;
            ensure!(r.status().is_success(), "health {}", r.status());
            r.bytes().await?;
            Ok(())
        }
    })
    .await?;
    let mut phases = vec![direct, floor];
    for (name, body, check) in [
        (
            "tools/call through mcpgw",
            json!({"method": "tools/call", "params": {"name": "weather", "arguments": {"city": "Paris"}}}),
            "call" as &'static str,
        ),
        (
            "tools/list through mcpgw (21 tools)",
            json!({"method": "tools/list"}),
            "list",
        ),
        ("ping through mcpgw (fixed cost)", json!({"method": "ping"}), "ping"),
    ] {
        let (h, u, s) = (t.http.clone(), t.mcp_url.clone(), t.sid.clone());
        let base = id_base + phases.len() as u64 * 10_000_000;
        phases.push(
            run_phase(name, n, c, limit, move |i| {
                let (h, u, s) = (h.clone(), u.clone(), s.clone());
                let mut body = body.clone();
                body["jsonrpc"] = json!("2.0");
                body["id"] = json!(base + i);
                async move {
                    let r = h
                        .post(&u)
                        .header("accept", ACCEPT)
                        .header("mcp-session-id", &s)
                        .json(&body)
                        .send()
                        .await?;
                    let v: Value = r.json().await?;
                    let ok = match check {
                        "call" => v["result"]["isError"] == false,
                        "list" => v["result"]["tools"].as_array().map(Vec::len) == Some(21),
                        _ => v["result"].is_object(),
                    };
                    ensure!(ok, "{check} failed: {v}");
                    Ok(())
                }
            })
            .await?,
        );
    }
    Ok(phases)
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Registers the benchmark's tools (one REST tool and 20 fillers) and opens a session.
async fn prepare(http: &reqwest::Client, url: &str, backend: &str) -> anyhow::Result<String> {
    let tool = json!({"name": "weather", "description": "Weather", "url": format!("{backend}/weather"),
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}});
    let r = http.post(format!("{url}/tools")).json(&tool).send().await?;
    ensure!(r.status().as_u16() == 201, "register tool: {}", r.status());
    for i in 0..20 {
        let filler =
            json!({"name": format!("filler_{i:02}"), "description": "filler", "url": format!("{backend}/weather")});
        let r = http.post(format!("{url}/tools")).json(&filler).send().await?;
        ensure!(r.status().as_u16() == 201, "register filler: {}", r.status());
    }
    initialize(http, url).await
}

/// Warms up, then runs every phase over [`ROUNDS`] interleaved rounds at each concurrency, so
/// machine noise hits all phases alike; each phase reports its median round.
async fn measure(
    t: &Targets,
    total: usize,
    concurrencies: &[usize],
    limit: Duration,
) -> anyhow::Result<Vec<(usize, Vec<Phase>)>> {
    run_round(t, (total / 10).max(50), concurrencies[0], limit, 0).await?;
    let mut by_concurrency = Vec::new();
    for &c in concurrencies {
        let n = if c == 1 { (total / 5).max(100) } else { total };
        let mut rounds: Vec<Vec<Phase>> = Vec::new();
        for r in 0..ROUNDS {
            rounds.push(run_round(t, n, c, limit, (r as u64 + 1) * 100_000_000 * c as u64).await?);
        }
        by_concurrency.push((c, medians(rounds)));
    }
    Ok(by_concurrency)
}

/// Each phase's median round (by throughput).
fn medians(mut rounds: Vec<Vec<Phase>>) -> Vec<Phase> {
    let mut out = Vec::new();
    for i in 0..rounds[0].len() {
        let mut column: Vec<Phase> = rounds
            .iter_mut()
            .map(|r| std::mem::replace(&mut r[i], Phase::empty()))
            .collect();
        column.sort_by(|a, b| a.rps().total_cmp(&b.rps()));
        out.push(column.swap_remove(ROUNDS / 2));
    }
    out
}

/// Prints one phase table, ratios against the first phase.
fn print_table(title: &str, phases: &[Phase]) {
    let base = &phases[0];
    println!("{title}, {} requests per phase per round:\n", base.requests);
    println!("| phase | req/s | ratio to direct | p50 ms | p99 ms |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for p in phases {
        println!(
            "| {} | {:.0} | {:.2} | {:.3} | {:.3} |",
            p.name,
            p.rps(),
            p.rps() / base.rps(),
            p.pct(0.5),
            p.pct(0.99)
        );
    }
}

/// Prints one table per concurrency and returns the report rows.
fn report(label: &str, by_concurrency: &[(usize, Vec<Phase>)]) -> Vec<Value> {
    let mut rows = Vec::new();
    for (c, phases) in by_concurrency {
        let base = &phases[0];
        print_table(&format!("{label}, concurrency {c}"), phases);
        for p in phases {
            rows.push(
                json!({"target": label, "concurrency": c, "name": p.name, "requests": p.requests, "rps": p.rps(),
                "ratio_to_direct": p.rps() / base.rps(), "p50_ms": p.pct(0.5), "p99_ms": p.pct(0.99)}),
            );
        }
        let (floor, call, ping) = (&phases[1], &phases[2], &phases[4]);
        println!(
            "\np50: tools/call adds {:.3} ms over the direct call; reaching the gateway costs {:.3} ms \
             (/health minus direct); MCP handling costs {:.3} ms (ping minus /health)\n",
            call.pct(0.5) - base.pct(0.5),
            floor.pct(0.5) - base.pct(0.5),
            ping.pct(0.5) - floor.pct(0.5)
        );
    }
    rows
}

/// Sends one JSON-RPC request on an MCP session and returns the response, from a JSON body or
/// from the SSE stream the upstream answers with.
async fn mcp_request(http: &reqwest::Client, url: &str, sid: &str, body: &Value) -> anyhow::Result<Value> {
    let r = http
        .post(url)
        .header("accept", ACCEPT)
        .header("mcp-session-id", sid)
        .header("mcp-protocol-version", "2025-11-25")
        .json(body)
        .send()
        .await?;
    let sse = r
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap_or_default().starts_with("text/event-stream"));
    let text = r.text().await?;
    if !sse {
        return Ok(serde_json::from_str(&text)?);
    }
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find(|m| m.get("id") == body.get("id"))
        .context("no answer in the SSE stream")
}

/// The load generator's HTTP client: enough idle connections for `concurrency` callers.
fn load_client(concurrency: usize) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency * 2)
        .timeout(Duration::from_secs(30))
        .build()?)
}

/// Registers the MCP server at `{base}/mcp` as upstream `name` of the gateway at `gw`.
async fn register_upstream(http: &reqwest::Client, gw: &str, name: &str, base: &str) -> anyhow::Result<()> {
    let r = http
        .post(format!("{gw}/gateways"))
        .json(&json!({"name": name, "url": format!("{base}/mcp")}))
        .send()
        .await?;
    ensure!(r.status().as_u16() == 201, "register {name}: {}", r.status());
    Ok(())
}

/// `initialize` + `notifications/initialized` at an MCP endpoint; returns the session id.
async fn open_session(http: &reqwest::Client, url: &str) -> anyhow::Result<String> {
    open_session_as(http, url, None).await
}

/// [`open_session`] with a bearer token on both requests.
async fn open_session_as(http: &reqwest::Client, url: &str, token: Option<&str>) -> anyhow::Result<String> {
    let post = |body: &Value| {
        let r = http.post(url).header("accept", ACCEPT).json(body);
        match token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    };
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "mcpgw-bench", "version": "1"}}});
    let r = post(&init).send().await?;
    ensure!(r.status().is_success(), "initialize at {url}: {}", r.status());
    let sid = r
        .headers()
        .get("mcp-session-id")
        .context("no session id")?
        .to_str()?
        .to_string();
    r.bytes().await?;
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let r = post(&note)
        .header("mcp-session-id", &sid)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await?;
    ensure!(r.status().is_success(), "initialized: {}", r.status());
    Ok(sid)
}

/// A `tools/call` a phase repeats: on which session, which tool with which arguments, and what
/// the answer's first text must contain.
struct ToolCall<'a> {
    session: (&'a str, &'a str),
    tool: &'static str,
    arguments: Value,
    expect: &'static str,
}

/// `call` made `n` times by `c` callers (ids from `id_base`), each answer checked.
async fn tool_call_phase(
    name: &'static str,
    http: &reqwest::Client,
    call: ToolCall<'_>,
    n: usize,
    c: usize,
    limit: Duration,
    id_base: u64,
) -> anyhow::Result<Phase> {
    let (h, u, s) = (http.clone(), call.session.0.to_string(), call.session.1.to_string());
    let (tool, arguments, expect) = (call.tool, call.arguments, call.expect);
    run_phase(name, n, c, limit, move |i| {
        let (h, u, s) = (h.clone(), u.clone(), s.clone());
        let body = json!({"jsonrpc": "2.0", "id": id_base + i, "method": "tools/call",
            "params": {"name": tool, "arguments": arguments}});
        async move {
            let v = mcp_request(&h, &u, &s, &body).await?;
            ensure!(
                v["result"]["content"][0]["text"]
                    .as_str()
                    .is_some_and(|t| t.contains(expect)),
                "call failed: {v}"
            );
            Ok(())
        }
    })
    .await
}

/// What the federation phases call: (URL, session id) of the fixture and of the gateway, and
/// their process ids (fixture, gateway) for the CPU figures.
struct FedTargets<'a> {
    direct: (&'a str, &'a str),
    gateway: (&'a str, &'a str),
    pids: [u32; 2],
}

/// One round of the federation phases: `tools/call` of the fixture's `test_simple_text`
/// directly at the fixture (baseline) and through the gateway, with the CPU each phase cost the
/// fixture and the gateway per request.
async fn federation_round(
    http: &reqwest::Client,
    FedTargets { direct, gateway, pids }: &FedTargets<'_>,
    n: usize,
    c: usize,
    limit: Duration,
    id_base: u64,
) -> anyhow::Result<Vec<Phase>> {
    let mut phases = Vec::new();
    for (name, &(url, sid), tool) in [
        (
            "tools/call directly at the fixture upstream (baseline)",
            direct,
            "test_simple_text",
        ),
        (
            "tools/call through mcpgw to the fixture",
            gateway,
            "fixture__test_simple_text",
        ),
    ] {
        let base = id_base + phases.len() as u64 * 10_000_000;
        let call = ToolCall {
            session: (url, sid),
            tool,
            arguments: json!({}),
            expect: "simple text",
        };
        let before = pids.map(cpu::process_cpu_secs);
        let mut phase = tool_call_phase(name, http, call, n, c, limit, base).await?;
        let after = pids.map(cpu::process_cpu_secs);
        let per = |i: usize| match (&before[i], &after[i]) {
            (Ok(b), Ok(a)) => (a - b) * 1e6 / phase.requests.max(1) as f64,
            _ => f64::NAN,
        };
        phase.cpu_us = Some([per(0), per(1)]);
        phases.push(phase);
    }
    Ok(phases)
}

/// Federation: a gateway fronting the fixture upstream over streamable HTTP, against the
/// fixture called directly, same client and concurrency; then the memory an idle client
/// session costs, with and without an upstream session of its own.
async fn federation_bench(total: usize, concurrency: usize, limit: Duration) -> anyhow::Result<Value> {
    eprintln!("federation: starting the fixture upstream");
    let fixture = Fixture::start("streamable-http", None);
    eprintln!("federation: fixture at {}", fixture.url);
    let dir = TempDir::new("bench-federation");
    let db = dir.join("fed.db");
    let gw = GatewayProcess::start(
        &[
            "--database",
            db.to_str().context("utf-8 path")?,
            "--max-sessions",
            "100000",
            "--max-sessions-per-client",
            "0",
            "--max-connections-per-client",
            "0",
        ],
        &[("MCPGW_LOG", "warn,mcpgw=info")],
    )?;
    let http = load_client(concurrency)?;
    register_upstream(&http, &gw.url, "fixture", &fixture.url).await?;
    let direct_url = format!("{}/mcp", fixture.url);
    let gw_url = format!("{}/mcp", gw.url);
    let direct_sid = open_session(&http, &direct_url).await?;
    let gw_sid = open_session(&http, &gw_url).await?;
    eprintln!("federation: sessions open");
    let targets = FedTargets {
        direct: (direct_url.as_str(), direct_sid.as_str()),
        gateway: (gw_url.as_str(), gw_sid.as_str()),
        pids: [fixture.pid(), gw.pid()],
    };
    // A warm-up round, not reported.
    federation_round(&http, &targets, (total / 10).max(200), concurrency, limit, 0).await?;
    let mut results = Vec::new();
    for c in [concurrency, 1] {
        let n = if c == 1 { (total / 5).max(200) } else { total };
        let mut rounds = Vec::new();
        for r in 0..ROUNDS {
            rounds.push(federation_round(&http, &targets, n, c, limit, (r as u64 + 1) * 100_000_000 * c as u64).await?);
        }
        results.push((c, medians(rounds)));
    }

    // Memory per idle session: RSS growth over many sessions, each initialized and then left
    // alone; then sessions that also made one federated call (so each holds an upstream session).
    const SESSIONS: usize = 2000;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss0 = gw.rss_kib().unwrap_or(0);
    let mut kept = Vec::new();
    for _ in 0..SESSIONS {
        kept.push(open_session(&http, &gw_url).await?);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss1 = gw.rss_kib().unwrap_or(0);
    // Sessions that made one federated call each hold an upstream session, and its standalone
    // stream while it lingers (10 s by default). Freed memory stays in the process (the
    // allocator keeps it), so the idle cost is what a second batch adds once the first has
    // parked: its streams reuse what the first batch's streams freed.
    let linked_batch = |base: usize| {
        let (http, gw_url) = (&http, &gw_url);
        async move {
            let mut sids = Vec::new();
            for i in 0..SESSIONS {
                let sid = open_session(http, gw_url).await?;
                let body = json!({"jsonrpc": "2.0", "id": base + i, "method": "tools/call", "params": {"name": "fixture__test_simple_text", "arguments": {}}});
                mcp_request(http, gw_url, &sid, &body).await?;
                sids.push(sid);
            }
            anyhow::Ok(sids)
        }
    };
    kept.extend(linked_batch(0).await?);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss2 = gw.rss_kib().unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(12_000)).await;
    let rss3 = gw.rss_kib().unwrap_or(0);
    kept.extend(linked_batch(SESSIONS).await?);
    tokio::time::sleep(Duration::from_millis(12_000)).await;
    let rss4 = gw.rss_kib().unwrap_or(0);
    let per = |from: u64, to: u64| (to.saturating_sub(from)) as f64 * 1024.0 / SESSIONS as f64;
    let (per_plain, per_lingering, per_linked) = (per(rss0, rss1), per(rss1, rss2), per(rss3, rss4));

    println!("federation: the fixture upstream (node, streamable HTTP) directly versus through mcpgw; median of {ROUNDS} interleaved rounds\n");
    let mut rows = Vec::new();
    for (c, phases) in &results {
        let base = &phases[0];
        print_table(&format!("concurrency {c}"), phases);
        let via = &phases[1];
        println!(
            "\nthroughput ratio {:.2} (target >= 0.8 at 32 callers); added p50 {:.3} ms (target <= 0.2 ms)\n",
            via.rps() / base.rps(),
            via.pct(0.5) - base.pct(0.5)
        );
        let cpu = |p: &Phase, i: usize| p.cpu_us.map_or(f64::NAN, |c| c[i]);
        // The ratio at many callers is set by how fast the fixture (one node thread) serves,
        // and its cost per request depends on how requests reach it: these figures show it.
        println!(
            "CPU per request: fixture {:.0} µs called directly, {:.0} µs behind mcpgw; mcpgw {:.0} µs\n",
            cpu(base, 0),
            cpu(via, 0),
            cpu(via, 1)
        );
        rows.push(json!({"concurrency": c, "direct_rps": base.rps(), "gateway_rps": via.rps(),
            "ratio": via.rps() / base.rps(), "direct_p50_ms": base.pct(0.5), "gateway_p50_ms": via.pct(0.5),
            "added_p50_ms": via.pct(0.5) - base.pct(0.5),
            "fixture_cpu_us_direct": base.cpu_us.map(|c| c[0]), "fixture_cpu_us_behind": via.cpu_us.map(|c| c[0]), "gateway_cpu_us": via.cpu_us.map(|c| c[1]), "direct_p99_ms": base.pct(0.99), "gateway_p99_ms": via.pct(0.99)}));
    }
    println!(
        "memory per idle client session ({SESSIONS} sessions each): {:.0} bytes initialized only; {:.0} bytes with an upstream session of its own, idle past the standalone linger (target <= 16384); {:.0} bytes within the linger (the upstream stream still open)\n",
        per_plain, per_linked, per_lingering
    );
    drop(kept);
    Ok(
        json!({"phases": rows, "bytes_per_idle_session": per_plain, "bytes_per_idle_session_with_upstream": per_linked,
        "bytes_per_session_within_linger": per_lingering}),
    )
}

/// The per-request cost of auth (an HS256 bearer token verified, revocation list checked) plus
/// rate limiting (a bucket taken: in memory, and in Redis when redis-server is installed),
/// against a gateway with both off, in the same run: `ping` over `POST /rpc`, the cheapest MCP
/// request, so the guard's share is as large as it gets.
async fn security_bench(total: usize, concurrency: usize, limit: Duration) -> anyhow::Result<Value> {
    const SECRET: &str = "bench-Zq8vN3xk1Lr7Yt2Pw9Jm4Hs6Df0Gb5Ca3Ue8Io1K";
    let dir = TempDir::new("bench-security");
    let redis = mcpgw_e2e::RedisServer::start().ok();
    let log = ("MCPGW_LOG", "warn,mcpgw=info");
    let on = [
        log,
        ("MCPGW_AUTH_REQUIRED", "true"),
        ("MCPGW_JWT_SECRET", SECRET),
        // Never reached: every request takes a token, none is refused.
        ("MCPGW_RATE_LIMIT_MCP", "1000000000/1"),
    ];
    let mut variants: Vec<(&'static str, GatewayProcess)> = vec![];
    let db = |n: &str| dir.join(n).to_str().map(String::from).context("utf-8 path");
    variants.push((
        "auth and rate limit off",
        GatewayProcess::start(&["--database", &db("off.db")?], &[log])?,
    ));
    variants.push((
        "auth on, rate limit in memory",
        GatewayProcess::start(&["--database", &db("on.db")?], &on)?,
    ));
    if let Some(r) = &redis {
        let mut env = on.to_vec();
        env.push(("MCPGW_REDIS_URL", r.url.as_str()));
        variants.push((
            "auth on, rate limit in Redis",
            GatewayProcess::start(&["--database", &db("redis.db")?], &env)?,
        ));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let token = mcpgw_e2e::sign_jwt(
        "HS256",
        SECRET,
        json!({"sub": "bench", "iss": "mcpgw", "aud": "mcpgw", "exp": now + 3600, "scope": "mcpgw:client", "jti": "bench-1"}),
    );
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency * 2)
        .timeout(Duration::from_secs(30))
        .build()?;
    let mut report = vec![];
    for c in [concurrency, 1] {
        let n = if c == 1 { (total / 5).max(100) } else { total };
        let mut rounds: Vec<Vec<Phase>> = vec![];
        for round in 0..=ROUNDS {
            let mut phases = vec![];
            for (name, gw) in &variants {
                let (h, u, t) = (http.clone(), format!("{}/rpc", gw.url), format!("Bearer {token}"));
                let count = if round == 0 { (n / 10).max(50) } else { n };
                phases.push(
                    run_phase(name, count, c, limit, move |i| {
                        let (h, u, t) = (h.clone(), u.clone(), t.clone());
                        async move {
                            let body = json!({"jsonrpc": "2.0", "id": i, "method": "ping"});
                            let r = h.post(&u).header("authorization", t).json(&body).send().await?;
                            ensure!(r.status().is_success(), "ping {}", r.status());
                            r.bytes().await?;
                            Ok(())
                        }
                    })
                    .await?,
                );
            }
            if round > 0 {
                rounds.push(phases); // round 0 warms up
            }
        }
        let phases = medians(rounds);
        let base = &phases[0];
        println!("\nauth + rate limiting versus both off: ping over POST /rpc, concurrency {c}, {} requests per phase per round, median of {ROUNDS} interleaved rounds:\n", base.requests);
        println!("| gateway | req/s | ratio to off | p50 ms | p99 ms | added p50 ms |");
        println!("| --- | ---: | ---: | ---: | ---: | ---: |");
        for p in &phases {
            println!(
                "| {} | {:.0} | {:.2} | {:.3} | {:.3} | {:.3} |",
                p.name,
                p.rps(),
                p.rps() / base.rps(),
                p.pct(0.5),
                p.pct(0.99),
                p.pct(0.5) - base.pct(0.5)
            );
            report.push(
                json!({"concurrency": c, "name": p.name, "rps": p.rps(), "ratio_to_off": p.rps() / base.rps(),
                "p50_ms": p.pct(0.5), "p99_ms": p.pct(0.99), "added_p50_ms": p.pct(0.5) - base.pct(0.5)}),
            );
        }
    }
    if redis.is_none() {
        println!("(redis-server not found: the Redis variant was skipped)");
    }
    Ok(Value::Array(report))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let total = arg("--requests", 20_000);
    let concurrency = arg("--concurrency", 16);
    let edge = std::env::args().any(|a| a == "--edge");
    let limit = Duration::from_secs(60);
    let out_file = std::env::args().skip_while(|a| a != "--out").nth(1);
    if std::env::args().any(|a| a == "--security-only") {
        security_bench(total, concurrency, limit).await?;
        return Ok(());
    }
    if std::env::args().any(|a| a == "--federation-only") {
        federation_bench(total, arg("--federation-concurrency", 32), limit).await?;
        return Ok(());
    }
    if std::env::args().any(|a| a == "--cpu-only") {
        cpu::cpu_bench(total, arg("--federation-concurrency", 32)).await?;
        return Ok(());
    }
    if std::env::args().any(|a| a == "--telemetry-only") {
        telemetry::telemetry_bench(total / 4, arg("--federation-concurrency", 32)).await?;
        return Ok(());
    }
    if std::env::args().any(|a| a == "--contextforge") {
        contextforge::contextforge_bench((total / 4).max(500), arg("--federation-concurrency", 32)).await?;
        return Ok(());
    }
    if std::env::args().any(|a| a == "--edge-auth-only") {
        edge_auth::edge_auth_bench((total / 5).max(500), concurrency).await?;
        return Ok(());
    }
    if std::env::args().any(|a| a == "--stateless-only") {
        stateless::stateless_bench(total, concurrency, edge).await?;
        return Ok(());
    }
    if std::env::args().any(|a| a == "--soak") {
        let report = mcpgw_e2e::soak::soak(arg("--sessions", 1000), arg("--seconds", 600) as u64).await?;
        println!("{}", report.summary());
        ensure!(report.errors == 0, "errors: first ones {:?}", report.first_errors);
        ensure!(report.growth() <= 0.10, "RSS grew by more than 10 % after the warm-up");
        return Ok(());
    }
    if std::env::args().any(|a| a == "--vault-only") {
        vault::vault_bench((total / 4).max(500), arg("--federation-concurrency", 32)).await?;
        return Ok(());
    }
    if std::env::args().any(|a| a == "--tools-only") {
        tool_memory::tool_memory_bench(2000).await?;
        return Ok(());
    }

    let backend = start_rest_backend().await?;
    let dir = TempDir::new("bench");
    let db = dir.join("bench.db");
    let db = db.to_str().context("utf-8 path")?.to_string();
    let env = [("MCPGW_LOG", "warn,mcpgw=info")];

    // Time to ready: a fresh database (created and migrated), then the existing one, 5 times.
    let fresh = GatewayProcess::start(&["--database", &db], &env)?;
    let ready_fresh = fresh.ready_after;
    drop(fresh);
    let mut ready_existing = Vec::new();
    for _ in 0..5 {
        let gw = GatewayProcess::start(&["--database", &db], &env)?;
        ready_existing.push(gw.ready_after);
    }
    ready_existing.sort();
    let gw = GatewayProcess::start(&["--database", &db], &env)?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_idle_kib = gw.rss_kib().unwrap_or(0);

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency * 2)
        .timeout(Duration::from_secs(30))
        .build()?;
    let direct_url = format!("{}/weather?city=Paris", backend.url);
    let sid = prepare(&http, &gw.url, &backend.url).await?;
    let native = Targets {
        http: http.clone(),
        direct_url: direct_url.clone(),
        mcp_url: format!("{}/mcp", gw.url),
        sid,
    };
    let native_results = measure(&native, total, &[concurrency, 1], limit).await?;
    let rss_after_kib = gw.rss_kib().unwrap_or(0);
    drop(gw);

    // The same phases through the Worker under wrangler dev (local workerd is not production;
    // the figure is there to catch regressions).
    let edge_results = if edge {
        let worker = EdgeProcess::start(&dir.join("edge"), &[])?;
        let sid = prepare(&http, &worker.url, &backend.url).await?;
        let t = Targets {
            http: http.clone(),
            direct_url,
            mcp_url: format!("{}/mcp", worker.url),
            sid,
        };
        Some(measure(&t, (total / 5).max(500), &[concurrency, 1], limit).await?)
    } else {
        None
    };

    println!("mcpgw bench: REST backend, gateway and load generator on one machine (127.0.0.1); median of {ROUNDS} interleaved rounds\n");
    let mut rows = report("native", &native_results);
    if let Some(r) = &edge_results {
        rows.extend(report("edge (wrangler dev)", r));
    }
    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    println!(
        "time to ready (spawn to listening): fresh database {:.1} ms; existing database median {:.1} ms (min {:.1}, max {:.1})",
        ms(&ready_fresh),
        ms(&ready_existing[2]),
        ms(&ready_existing[0]),
        ms(&ready_existing[4])
    );
    println!(
        "RSS (native): idle {:.1} MB; after load {:.1} MB",
        rss_idle_kib as f64 / 1024.0,
        rss_after_kib as f64 / 1024.0
    );
    let federation = federation_bench(total, arg("--federation-concurrency", 32), limit).await?;
    let security = security_bench(total, concurrency, limit).await?;
    let cpu = cpu::cpu_bench(total, arg("--federation-concurrency", 32)).await?;
    let tools = tool_memory::tool_memory_bench(2000).await?;
    let stateless = stateless::stateless_bench(total, concurrency, edge).await?;
    let edge_auth = if edge {
        edge_auth::edge_auth_bench((total / 5).max(500), concurrency).await?
    } else {
        Value::Null
    };
    let report = json!({
        "rounds": ROUNDS, "phases": rows, "federation": federation, "security": security, "cpu": cpu, "tools": tools,
        "stateless": stateless, "edge_auth": edge_auth,
        "ready_ms_fresh_db": ms(&ready_fresh), "ready_ms_existing_db_median": ms(&ready_existing[2]),
        "rss_idle_mb": rss_idle_kib as f64 / 1024.0, "rss_after_load_mb": rss_after_kib as f64 / 1024.0,
    });
    if let Some(path) = out_file {
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
        println!("\nwrote {path}");
    }
    Ok(())
}
