//! The CPU time the gateway spends per federated `tools/call`, beside nginx proxying the same
//! traffic to the same upstream (the floor of a proxy that does no MCP work), in the same run:
//! the official reference server `@modelcontextprotocol/server-everything` as the upstream,
//! `echo` called at a fixed concurrency. CPU is the process's utime + stime (every thread; for
//! nginx the master and its workers) over the phase, divided by the requests.

use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context};
use mcpgw_e2e::{Fixture, GatewayProcess, TempDir};
use serde_json::{json, Value};

use crate::{load_client, open_session, register_upstream, tool_call_phase, Phase, ToolCall, ROUNDS};

/// (utime, stime) of one process (all its threads), in clock ticks.
fn cpu_ticks(pid: u32) -> anyhow::Result<Ticks> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at state (field 3).
    let rest = stat.rsplit_once(')').context("stat format")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    ensure!(f.len() > 13, "stat has {} fields", f.len());
    Ok(Ticks(f[11].parse()?, f[12].parse()?))
}

/// User and system CPU time, in clock ticks.
#[derive(Clone, Copy, Default)]
struct Ticks(u64, u64);

impl std::iter::Sum for Ticks {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self::default(), |a, b| Self(a.0 + b.0, a.1 + b.1))
    }
}

/// The processes whose parent is `pid`.
pub(crate) fn children_of(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')
                        .map(|(_, r)| r.split_whitespace().nth(1).map(str::to_string))
                })
                .flatten()
                .is_some_and(|ppid| ppid == pid.to_string())
        })
        .collect()
}

/// The CPU time (user + system) a process has used so far, in seconds.
pub(crate) fn process_cpu_secs(pid: u32) -> anyhow::Result<f64> {
    let Ticks(user, sys) = cpu_ticks(pid)?;
    Ok((user + sys) as f64 / clock_ticks_per_sec() as f64)
}

fn clock_ticks_per_sec() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100)
    })
}

/// nginx in front of one upstream, and the CPU ticks of its master and workers.
struct Nginx {
    inner: mcpgw_e2e::Nginx,
    pids: Vec<u32>,
}

impl Nginx {
    fn find() -> Option<String> {
        mcpgw_e2e::Nginx::find()
    }

    async fn start(bin: &str, upstream: &str) -> anyhow::Result<Self> {
        let inner = mcpgw_e2e::Nginx::start(bin, &[upstream]).await?;
        let master = inner.pid();
        let pids = std::iter::once(master).chain(children_of(master)).collect();
        Ok(Self { inner, pids })
    }

    fn url(&self) -> &str {
        &self.inner.url
    }

    fn ticks(&self) -> anyhow::Result<Ticks> {
        self.pids.iter().map(|p| cpu_ticks(*p)).sum()
    }
}

/// One measured phase: the requests, the throughput and the CPU microseconds per request
/// (user + system, and the system part alone).
struct CpuPhase {
    phase: Phase,
    cpu_us: f64,
    sys_us: f64,
}

async fn echo_phase(
    name: &'static str,
    http: &reqwest::Client,
    (url, sid, tool): (&str, &str, &'static str),
    n: usize,
    c: usize,
    id_base: u64,
    ticks: &dyn Fn() -> anyhow::Result<Ticks>,
) -> anyhow::Result<CpuPhase> {
    let per_tick_us = 1e6 / clock_ticks_per_sec() as f64;
    let before = ticks()?;
    let call = ToolCall {
        session: (url, sid),
        tool,
        arguments: json!({"message": "hi"}),
        expect: "hi",
    };
    let phase = tool_call_phase(name, http, call, n, c, Duration::from_secs(120), id_base).await?;
    let after = ticks()?;
    let per_request = |t: u64| t as f64 * per_tick_us / phase.requests as f64;
    let (user, sys) = (after.0.saturating_sub(before.0), after.1.saturating_sub(before.1));
    Ok(CpuPhase {
        cpu_us: per_request(user + sys),
        sys_us: per_request(sys),
        phase,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// `--cpu-only`: mcpgw and nginx in front of server-everything, `ROUNDS` interleaved rounds.
pub async fn cpu_bench(total: usize, concurrency: usize) -> anyhow::Result<Value> {
    let Some(nginx_bin) = Nginx::find() else {
        println!("cpu: nginx not installed (apt-get install nginx-light): the CPU phase was skipped");
        return Ok(Value::Null);
    };
    let everything = Fixture::everything("streamableHttp");
    let nginx = Nginx::start(&nginx_bin, &everything.url).await?;
    let dir = TempDir::new("bench-cpu");
    let db = dir.join("cpu.db");
    let gw = GatewayProcess::start(
        &["--database", db.to_str().context("utf-8 path")?],
        &[("MCPGW_LOG", "warn,mcpgw=info")],
    )?;
    let http = load_client(concurrency)?;
    register_upstream(&http, &gw.url, "every", &everything.url).await?;
    let via_nginx = format!("{}/mcp", nginx.url());
    let via_gw = format!("{}/mcp", gw.url);
    let nginx_sid = open_session(&http, &via_nginx).await?;
    let gw_sid = open_session(&http, &via_gw).await?;
    let gw_pid = gw.pid();
    let nginx_ticks = || nginx.ticks();
    let gw_ticks = || cpu_ticks(gw_pid);
    // Warm-up: connections, the gateway's upstream session.
    for (url, sid, tool) in [(&via_nginx, &nginx_sid, "echo"), (&via_gw, &gw_sid, "every__echo")] {
        echo_phase("warm-up", &http, (url, sid, tool), 500, concurrency, 0, &|| {
            Ok(Ticks::default())
        })
        .await?;
    }
    let (mut rows_n, mut rows_g) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let base = (round as u64 + 1) * 100_000_000;
        rows_n.push(
            echo_phase(
                "nginx",
                &http,
                (&via_nginx, &nginx_sid, "echo"),
                total,
                concurrency,
                base,
                &nginx_ticks,
            )
            .await?,
        );
        rows_g.push(
            echo_phase(
                "mcpgw",
                &http,
                (&via_gw, &gw_sid, "every__echo"),
                total,
                concurrency,
                base + 50_000_000,
                &gw_ticks,
            )
            .await?,
        );
    }
    let summary = |rows: &[CpuPhase]| {
        (
            median(rows.iter().map(|r| r.phase.rps()).collect()),
            median(rows.iter().map(|r| r.cpu_us).collect()),
            median(rows.iter().map(|r| r.phase.pct(0.5)).collect()),
            median(rows.iter().map(|r| r.sys_us).collect()),
        )
    };
    let (n_rps, n_cpu, n_p50, n_sys) = summary(&rows_n);
    let (g_rps, g_cpu, g_p50, g_sys) = summary(&rows_g);
    println!(
        "cpu: tools/call of server-everything's echo at {concurrency} connections, {total} requests per phase, median of {ROUNDS} interleaved rounds\n"
    );
    println!("| proxy | req/s | CPU µs per request | of which system | p50 ms |\n| --- | ---: | ---: | ---: | ---: |");
    println!("| nginx (plain reverse proxy, baseline) | {n_rps:.0} | {n_cpu:.1} | {n_sys:.1} | {n_p50:.3} |");
    println!("| mcpgw (federated upstream) | {g_rps:.0} | {g_cpu:.1} | {g_sys:.1} | {g_p50:.3} |");
    println!(
        "\nCPU per request {:.2}x nginx (target <= 1.5); throughput {:.2}x nginx (target >= 1.0)\n",
        g_cpu / n_cpu,
        g_rps / n_rps
    );
    drop(nginx);
    Ok(json!({"concurrency": concurrency, "requests": total,
        "nginx": {"rps": n_rps, "cpu_us_per_request": n_cpu, "sys_us_per_request": n_sys, "p50_ms": n_p50},
        "mcpgw": {"rps": g_rps, "cpu_us_per_request": g_cpu, "sys_us_per_request": g_sys, "p50_ms": g_p50},
        "cpu_ratio": g_cpu / n_cpu, "throughput_ratio": g_rps / n_rps}))
}
