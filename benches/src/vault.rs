//! `--vault-only`: what a caller's own token costs (issue 30). One upstream that checks OAuth
//! tokens (the fixture with `--oauth`, against oidc-provider) registered twice: with a static
//! credential (a bearer token got beforehand, sealed in `headers`) and in `user` mode (the
//! caller's token from the vault, connected once through the provider's pages). The gateway's
//! CPU per `tools/call` of each, in interleaved rounds of the same run; the ratio is the cost of
//! the vault (target: within 10 %).

use anyhow::{ensure, Context};
use mcpgw_e2e::browser::Browser;
use mcpgw_e2e::{Fixture, GatewayProcess, TempDir};
use serde_json::{json, Value};

use crate::cpu::process_cpu_secs;
use crate::{load_client, open_session, tool_call_phase, ToolCall, ROUNDS};

/// A token of the provider's for `resource`, by client credentials (the static credential).
async fn static_token(http: &reqwest::Client, issuer: &str, resource: &str) -> anyhow::Result<String> {
    let r = http
        .post(format!("{issuer}/token"))
        .basic_auth("gw-basic", Some("basic-secret"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("resource", resource),
            ("scope", "read"),
        ])
        .send()
        .await?;
    ensure!(r.status().is_success(), "token: {}", r.status());
    let v: Value = r.json().await?;
    Ok(v["access_token"].as_str().context("access_token")?.to_string())
}

/// Connects the (anonymous: auth is off) caller to `up` through the connect link, as a browser.
async fn connect(http: &reqwest::Client, gw: &str, up: &str) -> anyhow::Result<()> {
    let r = http.post(format!("{gw}/me/connections/{up}")).send().await?;
    ensure!(r.status().as_u16() == 201, "connect link: {}", r.status());
    let link = r.json::<Value>().await?["url"].as_str().context("url")?.to_string();
    let mut b = Browser::new();
    let mut next = b.go(&link, None).await;
    for _ in 0..10 {
        if next.starts_with(&format!("{gw}/oauth/callback?")) {
            let v = b.visit(&next, None).await;
            ensure!(v.status == 200, "callback: {} {}", v.status, v.body);
            return Ok(());
        }
        let v = b.visit(&next, None).await;
        next = match (v.location, v.body.contains("name=\"password\"")) {
            (Some(l), _) => l,
            (None, true) => {
                let form = [("prompt", "login"), ("login", "bench"), ("password", "any")];
                b.go(&next, Some(&form)).await
            }
            (None, false) => b.go(&next, Some(&[("prompt", "consent")])).await,
        };
    }
    anyhow::bail!("never back at the gateway: {next}")
}

pub async fn vault_bench(total: usize, concurrency: usize) -> anyhow::Result<Value> {
    let oidc = Fixture::start_cmd("tests/fixture/oidc.mjs", &[]);
    let up = Fixture::start_with("streamable-http", 0, None, &["--oauth", &oidc.url]);
    let resource = format!("{}/mcp", up.url);
    let dir = TempDir::new("bench-vault");
    let db = dir.join("vault.db");
    let gw = GatewayProcess::start(
        &["--database", db.to_str().context("utf-8 path")?],
        &[("MCPGW_LOG", "warn,mcpgw=info"), ("MCPGW_SSRF_ALLOW", "loopback")],
    )?;
    let http = load_client(concurrency)?;
    let token = static_token(&http, &oidc.url, &resource).await?;
    for def in [
        json!({"name": "static", "url": resource, "headers": {"Authorization": format!("Bearer {token}")}}),
        json!({"name": "vault", "url": resource, "auth": {"mode": "user", "client_id": "gw-user", "method": "none", "scope": "openid read"}}),
    ] {
        let r = http.post(format!("{}/gateways", gw.url)).json(&def).send().await?;
        ensure!(
            r.status().as_u16() == 201,
            "register: {} {}",
            r.status(),
            r.text().await?
        );
    }
    connect(&http, &gw.url, "vault").await?;
    let via = format!("{}/mcp", gw.url);
    let sid = open_session(&http, &via).await?;
    let pid = gw.pid();
    let measure = |name: &'static str, tool: &'static str, base: u64| {
        let (http, via, sid) = (http.clone(), via.clone(), sid.clone());
        async move {
            let before = process_cpu_secs(pid)?;
            let call = ToolCall {
                session: (&via, &sid),
                tool,
                arguments: json!({}),
                expect: "sub",
            };
            let phase = tool_call_phase(
                name,
                &http,
                call,
                total,
                concurrency,
                std::time::Duration::from_secs(120),
                base,
            )
            .await?;
            let cpu = (process_cpu_secs(pid)? - before) * 1e6 / phase.requests as f64;
            anyhow::Ok((phase.rps(), cpu))
        }
    };
    // Warm-up: links, connections, the vault's token kept.
    measure("warm-up", "static__whoami", 0).await?;
    measure("warm-up", "vault__whoami", 1_000_000).await?;
    let (mut s_rows, mut v_rows) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let base = (round as u64 + 1) * 100_000_000;
        // Each goes first in every other round: the order's own effect cancels out.
        if round % 2 == 0 {
            s_rows.push(measure("static", "static__whoami", base).await?);
            v_rows.push(measure("vault", "vault__whoami", base + 50_000_000).await?);
        } else {
            v_rows.push(measure("vault", "vault__whoami", base + 50_000_000).await?);
            s_rows.push(measure("static", "static__whoami", base).await?);
        }
    }
    let med = |rows: &[(f64, f64)], f: fn(&(f64, f64)) -> f64| {
        let mut v: Vec<f64> = rows.iter().map(f).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (s_rps, s_cpu) = (med(&s_rows, |r| r.0), med(&s_rows, |r| r.1));
    let (v_rps, v_cpu) = (med(&v_rows, |r| r.0), med(&v_rows, |r| r.1));
    println!(
        "vault: tools/call of an OAuth-checking upstream at {concurrency} connections, {total} requests per phase, median of {ROUNDS} interleaved rounds\n"
    );
    println!("| credential | req/s | gateway CPU µs per request |\n| --- | ---: | ---: |");
    println!("| static (sealed header, baseline) | {s_rps:.0} | {s_cpu:.1} |");
    println!("| user (the caller's token from the vault) | {v_rps:.0} | {v_cpu:.1} |");
    println!(
        "\nvault / static CPU per request: {:.3} (target <= 1.10)\n",
        v_cpu / s_cpu
    );
    Ok(
        json!({"static": {"rps": s_rps, "cpu_us": s_cpu}, "vault": {"rps": v_rps, "cpu_us": v_cpu}, "ratio": v_cpu / s_cpu}),
    )
}
