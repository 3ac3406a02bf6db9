//! mcpgw beside IBM's ContextForge (`mcp-contextforge-gateway`, the reference product), in one
//! run: the same upstream (the official reference server, server-everything, over streamable
//! HTTP), the same load (`tools/call` of its `echo` at a fixed concurrency), both gateways with
//! bearer-token auth on (HS256), each on its defaults otherwise. Phases, interleaved over
//! `ROUNDS` rounds: the upstream called directly (the baseline), then each gateway's MCP endpoint
//! (`/mcp`) and its plain JSON-RPC endpoint (`/rpc`). Reported: throughput, p50/p99, the CPU each
//! gateway's process tree spends per call, and its resident memory after the load.
//!
//! ContextForge comes from `MCPGW_CONTEXTFORGE`, the `mcpgateway` executable of a virtualenv
//! (`scripts/bench.sh --contextforge` makes one); it listens on 127.0.0.1 only, with its own
//! SQLite file, and is stopped by its process group.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use mcpgw_e2e::{sign_jwt, Fixture, GatewayProcess, TempDir};
use serde_json::{json, Value};

use crate::stateless::{cpu_of, tree};
use crate::{load_client, medians, open_session, open_session_as, run_phase, Phase, ACCEPT, ROUNDS};

const SECRET: &str = "bench-Zq8vN3xk1Lr7Yt2Pw9Jm4Hs6Df0Gb5Ca3Ue8Io1K";

/// A ContextForge process on 127.0.0.1, stopped with its children on drop.
struct ContextForge {
    child: Child,
    url: String,
    token: String,
}

impl ContextForge {
    fn start(bin: &Path, dir: &TempDir) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let db = format!("sqlite:///{}", dir.join("contextforge.db").display());
        let env: [(&str, &str); 13] = [
            ("HOST", "127.0.0.1"),
            ("DATABASE_URL", &db),
            ("JWT_SECRET_KEY", SECRET),
            ("AUTH_ENCRYPTION_SECRET", "bench-salt-Zq8vN3xk1Lr7Yt2Pw9Jm4Hs6Df0"),
            ("PLATFORM_ADMIN_PASSWORD", "Bench-Pass-1234567890"),
            ("MCPGATEWAY_UI_ENABLED", "false"),
            ("MCPGATEWAY_ADMIN_API_ENABLED", "true"),
            // The upstream is on loopback, which its SSRF guard refuses by default.
            ("SSRF_ALLOW_LOCALHOST", "true"),
            ("LOG_LEVEL", "ERROR"),
            ("MCPGATEWAY_BULK_IMPORT_ENABLED", "false"),
            ("OTEL_ENABLE_OBSERVABILITY", "false"),
            // Its default limits (100 tool calls a minute, then a lockout) would stop the load;
            // mcpgw has none unless configured.
            ("RATE_LIMITING_ENABLED", "false"),
            ("TOOL_RATE_LIMIT", "1000000000"),
        ];
        let log = std::fs::File::create(dir.join("contextforge.log"))?;
        let child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .envs(env)
            .current_dir(&dir.0)
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let python = bin.with_file_name("python");
        let out = Command::new(&python)
            .args([
                "-m",
                "mcpgateway.utils.create_jwt_token",
                "--username",
                "admin@example.com",
            ])
            .args(["--exp", "120", "--secret", SECRET])
            .env("JWT_SECRET_KEY", SECRET)
            .current_dir(&dir.0)
            .output()
            .with_context(|| format!("run {}", python.display()))?;
        let token = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .trim()
            .to_string();
        ensure!(token.split('.').count() == 3, "no token from create_jwt_token: {out:?}");
        Ok(Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            token,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ContextForge {
    fn drop(&mut self) {
        mcpgw_e2e::kill_group(self.child.id());
        let _ = self.child.wait();
    }
}

/// Waits for `GET {url}/health` to answer 200 (ContextForge migrates its database first).
async fn wait_healthy(http: &reqwest::Client, url: &str, log: &Path) -> anyhow::Result<()> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(120) {
        if let Ok(r) = http.get(format!("{url}/health")).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let tail = std::fs::read_to_string(log).unwrap_or_default();
    bail!(
        "ContextForge did not become healthy in 120 s; its log ends: {}",
        &tail[tail.len().saturating_sub(2000)..]
    )
}

/// Registers `url` as an upstream of the gateway at `gw` (`POST /gateways`, each gateway's own
/// API).
async fn register(http: &reqwest::Client, gw: &str, token: &str, body: Value) -> anyhow::Result<()> {
    let r = http
        .post(format!("{gw}/gateways"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await?;
    let status = r.status();
    ensure!(status.is_success(), "register at {gw}: {status} {}", r.text().await?);
    Ok(())
}

/// The name under which ContextForge lists the upstream's `echo` (its REST `/tools`).
async fn contextforge_echo(http: &reqwest::Client, gw: &str, token: &str) -> anyhow::Result<String> {
    let r = http.get(format!("{gw}/tools")).bearer_auth(token).send().await?;
    let tools: Value = r.json().await?;
    let list = tools
        .get("tools")
        .unwrap_or(&tools)
        .as_array()
        .cloned()
        .unwrap_or_default();
    list.iter()
        .filter_map(|t| t["name"].as_str())
        .find(|n| n.ends_with("echo"))
        .map(String::from)
        .with_context(|| format!("no echo tool listed at {gw}: {tools}"))
}

/// One phase's target: where to POST, with which session id and token, which tool.
#[derive(Clone)]
pub(crate) struct Target {
    pub name: &'static str,
    pub url: String,
    pub session: Option<String>,
    pub token: Option<String>,
    pub tool: String,
    pub pids: Vec<u32>,
}

/// `tools/call` of `echo` at `t`, checking the echo came back (JSON or SSE answers).
pub(crate) async fn echo(http: &reqwest::Client, t: &Target, id: u64) -> anyhow::Result<()> {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": t.tool, "arguments": {"message": format!("m{id}")}}});
    let mut r = http
        .post(&t.url)
        .header("accept", ACCEPT)
        .header("mcp-protocol-version", "2025-11-25")
        .json(&body);
    if let Some(s) = &t.session {
        r = r.header("mcp-session-id", s);
    }
    if let Some(k) = &t.token {
        r = r.bearer_auth(k);
    }
    let r = r.send().await?;
    let status = r.status();
    let text = r.text().await?;
    ensure!(status.is_success(), "{}: {status} {text}", t.name);
    ensure!(text.contains(&format!("Echo: m{id}")), "{}: no echo in {text}", t.name);
    Ok(())
}

/// Resident memory of a process tree, in MB.
pub(crate) fn rss_mb(pids: &[u32]) -> f64 {
    let kib: u64 = pids
        .iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .filter_map(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .sum();
    kib as f64 / 1024.0
}

/// `tools/call` of `echo` at every target in turn, `n` calls each at concurrency `c`, over a
/// warm-up round and `ROUNDS` measured ones: the median phase of each target, with the CPU its
/// process tree spent per call.
pub(crate) async fn interleaved(
    http: &reqwest::Client,
    targets: &[Target],
    n: usize,
    c: usize,
) -> anyhow::Result<Vec<Phase>> {
    let mut rounds: Vec<Vec<Phase>> = vec![];
    for round in 0..=ROUNDS {
        let mut phases = vec![];
        for (k, t) in targets.iter().enumerate() {
            let count = if round == 0 { (n / 10).max(50) } else { n };
            let base = (round * 10 + k) as u64 * 10_000_000;
            let before = cpu_of(&t.pids);
            let (h, t2) = (http.clone(), t.clone());
            let mut phase = run_phase(t.name, count, c, Duration::from_secs(300), move |i| {
                let (h, t) = (h.clone(), t2.clone());
                async move { echo(&h, &t, base + i).await }
            })
            .await?;
            let used = cpu_of(&t.pids) - before;
            phase.cpu_us = Some([used * 1e6 / phase.requests.max(1) as f64, 0.0]);
            phases.push(phase);
        }
        if round > 0 {
            rounds.push(phases); // round 0 warms up
        }
    }
    Ok(medians(rounds))
}

/// `--contextforge`: the comparison, `n` calls per phase per round at concurrency `c`.
pub async fn contextforge_bench(n: usize, c: usize) -> anyhow::Result<Value> {
    let bin: PathBuf = std::env::var("MCPGW_CONTEXTFORGE")
        .context("MCPGW_CONTEXTFORGE is not set (scripts/bench.sh --contextforge installs ContextForge and sets it)")?
        .into();
    let dir = TempDir::new("bench-contextforge");
    let http = load_client(c)?;
    let everything = Fixture::everything("streamableHttp");
    let up = format!("{}/mcp", everything.url);
    let cf = ContextForge::start(&bin, &dir)?;
    let db = dir.join("mcpgw.db");
    let gw = GatewayProcess::start(
        &["--database", db.to_str().context("utf-8 path")?],
        &[
            ("MCPGW_LOG", "warn,mcpgw=info"),
            ("MCPGW_AUTH_REQUIRED", "true"),
            ("MCPGW_JWT_SECRET", SECRET),
        ],
    )?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let token = sign_jwt(
        "HS256",
        SECRET,
        json!({"sub": "bench", "iss": "mcpgw", "aud": "mcpgw", "exp": now + 7200, "scope": "mcpgw:admin mcpgw:client", "jti": "bench-cf"}),
    );
    wait_healthy(&http, &cf.url, &dir.join("contextforge.log")).await?;
    let cf_body = json!({"name": "every", "url": up, "transport": "STREAMABLEHTTP"});
    register(&http, &cf.url, &cf.token, cf_body).await?;
    let cf_tool = contextforge_echo(&http, &cf.url, &cf.token).await?;
    register(&http, &gw.url, &token, json!({"name": "every", "url": up})).await?;
    // mcpgw names a federated tool <upstream>__<tool>.
    let gw_tool = "every__echo".to_string();
    let direct_sid = open_session(&http, &up).await?;
    let gw_sid = open_session_as(&http, &format!("{}/mcp", gw.url), Some(&token)).await?;
    let (gw_pids, cf_pids) = (tree(gw.pid()), tree(cf.pid()));
    let rss_idle = (rss_mb(&gw_pids), rss_mb(&cf_pids));
    let targets = [
        Target {
            name: "server-everything directly",
            url: up.clone(),
            session: Some(direct_sid),
            token: None,
            tool: "echo".into(),
            pids: vec![],
        },
        Target {
            name: "mcpgw /mcp",
            url: format!("{}/mcp", gw.url),
            session: Some(gw_sid),
            token: Some(token.clone()),
            tool: gw_tool.clone(),
            pids: gw_pids.clone(),
        },
        Target {
            name: "ContextForge /mcp",
            url: format!("{}/mcp", cf.url),
            session: None,
            token: Some(cf.token.clone()),
            tool: cf_tool.clone(),
            pids: cf_pids.clone(),
        },
        Target {
            name: "mcpgw /rpc",
            url: format!("{}/rpc", gw.url),
            session: None,
            token: Some(token.clone()),
            tool: gw_tool,
            pids: gw_pids.clone(),
        },
        Target {
            name: "ContextForge /rpc",
            url: format!("{}/rpc", cf.url),
            session: None,
            token: Some(cf.token.clone()),
            tool: cf_tool,
            pids: cf_pids.clone(),
        },
    ];
    let phases = interleaved(&http, &targets, n, c).await?;
    let rss_after = (rss_mb(&gw_pids), rss_mb(&cf_pids));
    let base = &phases[0];
    println!("\nmcpgw versus ContextForge ({}): tools/call of server-everything's echo, concurrency {c}, {} calls per phase per round, median of {ROUNDS} interleaved rounds:\n", cf_version(&bin), base.requests);
    println!("| phase | calls/s | ratio to direct | p50 ms | p99 ms | gateway CPU µs/call |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    let mut report = vec![];
    for (p, t) in phases.iter().zip(&targets) {
        let cpu = p.cpu_us.map_or(0.0, |c| c[0]);
        let cpu_text = if t.pids.is_empty() {
            "-".to_string()
        } else {
            format!("{cpu:.0}")
        };
        println!(
            "| {} | {:.0} | {:.3} | {:.2} | {:.2} | {cpu_text} |",
            p.name,
            p.rps(),
            p.rps() / base.rps(),
            p.pct(0.5),
            p.pct(0.99)
        );
        report.push(
            json!({"name": p.name, "rps": p.rps(), "ratio_to_direct": p.rps() / base.rps(),
            "p50_ms": p.pct(0.5), "p99_ms": p.pct(0.99), "cpu_us": (!t.pids.is_empty()).then_some(cpu)}),
        );
    }
    println!(
        "\nresident memory (process tree): mcpgw {:.1} MB idle, {:.1} MB after; ContextForge {:.1} MB idle, {:.1} MB after",
        rss_idle.0, rss_after.0, rss_idle.1, rss_after.1
    );
    Ok(
        json!({"phases": report, "concurrency": c, "calls": base.requests, "contextforge": cf_version(&bin),
        "rss_mb": {"mcpgw": [rss_idle.0, rss_after.0], "contextforge": [rss_idle.1, rss_after.1]}}),
    )
}

/// The installed ContextForge version (from pip's metadata).
fn cf_version(bin: &Path) -> String {
    Command::new(bin.with_file_name("python"))
        .args([
            "-c",
            "import importlib.metadata as m; print(m.version('mcp-contextforge-gateway'))",
        ])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|v| !v.is_empty())
        .map_or_else(|| "version unknown".into(), |v| format!("mcp-contextforge-gateway {v}"))
}
