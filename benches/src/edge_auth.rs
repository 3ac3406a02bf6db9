//! What verifying a bearer token costs the Worker per request, under `wrangler dev`: `ping` over
//! `POST /rpc` (the cheapest request, so the check's share is as large as it gets) at a Worker
//! with auth off, and at Workers checking an HS256, RS256, ES256 and EdDSA token on every
//! request, interleaved in the same run. CPU is the wrangler process tree's (workerd included)
//! over each phase, divided by its requests; the added CPU is the variant's minus auth off.
//! With `MCPGW_EDGE_BUILD_BEFORE=<a copy of edge/build from another commit>`, an HS256 Worker of
//! that build is measured beside this one's.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{ensure, Context};
use mcpgw_e2e::{sign_jwt, EdgeProcess, TempDir};
use serde_json::{json, Value};

use crate::{load_client, medians, run_phase, Phase, ROUNDS};

const SECRET: &str = "bench-Zq8vN3xk1Lr7Yt2Pw9Jm4Hs6Df0Gb5Ca3Ue8Io1K";

fn key_file(name: &str) -> anyhow::Result<String> {
    let path: PathBuf = mcpgw_e2e::repo_root().join("tests/fixtures/keys").join(name);
    std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))
}

/// A Worker and the token its requests carry (none with auth off).
struct Variant {
    name: &'static str,
    worker: EdgeProcess,
    token: Option<String>,
}

pub async fn edge_auth_bench(total: usize, concurrency: usize) -> anyhow::Result<Value> {
    let dir = TempDir::new("bench-edge-auth");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let claims = json!({"sub": "bench", "iss": "mcpgw", "aud": "mcpgw", "exp": now + 3600, "scope": "mcpgw:client", "jti": "bench-1"});
    let mut variants = vec![Variant {
        name: "auth off",
        worker: EdgeProcess::start(&dir.join("off"), &[])?,
        token: None,
    }];
    let on = [("MCPGW_AUTH_REQUIRED", "true"), ("MCPGW_JWT_SECRET", SECRET)];
    variants.push(Variant {
        name: "HS256",
        worker: EdgeProcess::start(&dir.join("hs256"), &on)?,
        token: Some(sign_jwt("HS256", SECRET, claims.clone())),
    });
    // The same, built from another commit (a copy of its edge/build), for a before and after.
    if let Ok(before) = std::env::var("MCPGW_EDGE_BUILD_BEFORE") {
        variants.push(Variant {
            name: "HS256, MCPGW_EDGE_BUILD_BEFORE",
            worker: EdgeProcess::start_build(std::path::Path::new(&before), &dir.join("hs256-before"), &on)?,
            token: Some(sign_jwt("HS256", SECRET, claims.clone())),
        });
    }
    for (name, alg, file) in [
        ("RS256", "RS256", "rs256"),
        ("ES256", "ES256", "es256"),
        ("EdDSA", "EdDSA", "ed25519"),
    ] {
        let public = key_file(&format!("{file}.public.json"))?;
        let private = key_file(&format!("{file}.private.json"))?;
        let vars = [
            ("MCPGW_AUTH_REQUIRED", "true"),
            ("MCPGW_JWT_ALGORITHM", alg),
            ("MCPGW_JWT_PUBLIC_KEY", public.trim()),
        ];
        variants.push(Variant {
            name,
            worker: EdgeProcess::start(&dir.join(file), &vars)?,
            token: Some(sign_jwt(alg, &private, claims.clone())),
        });
    }
    let trees: Vec<Vec<u32>> = variants
        .iter()
        .map(|v| crate::stateless::tree(v.worker.pid()))
        .collect();
    let http = load_client(concurrency)?;
    let mut rounds: Vec<Vec<Phase>> = vec![];
    for round in 0..=ROUNDS {
        let mut phases = vec![];
        for (v, pids) in variants.iter().zip(&trees) {
            let (h, u, t) = (http.clone(), format!("{}/rpc", v.worker.url), v.token.clone());
            let count = if round == 0 { (total / 10).max(50) } else { total };
            let before = crate::stateless::cpu_of(pids);
            let mut phase = run_phase(v.name, count, concurrency, Duration::from_secs(60), move |i| {
                let (h, u, t) = (h.clone(), u.clone(), t.clone());
                async move {
                    let body = json!({"jsonrpc": "2.0", "id": i, "method": "ping"});
                    let mut r = h.post(&u).json(&body);
                    if let Some(t) = t {
                        r = r.bearer_auth(t);
                    }
                    let r = r.send().await?;
                    ensure!(r.status().is_success(), "ping {}", r.status());
                    r.bytes().await?;
                    Ok(())
                }
            })
            .await?;
            let used = crate::stateless::cpu_of(pids) - before;
            phase.cpu_us = Some([used * 1e6 / phase.requests.max(1) as f64, 0.0]);
            phases.push(phase);
        }
        if round > 0 {
            rounds.push(phases); // round 0 warms up
        }
    }
    let phases = medians(rounds);
    let cpu = |p: &Phase| p.cpu_us.map_or(f64::NAN, |c| c[0]);
    let base = &phases[0];
    println!("\nedge (wrangler dev): a bearer token verified per request versus auth off, ping over POST /rpc, concurrency {concurrency}, {} requests per phase per round, median of {ROUNDS} interleaved rounds:\n", base.requests);
    println!("| token | req/s | ratio to off | p50 ms | p99 ms | CPU µs/request | added CPU µs |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut report = vec![];
    for p in &phases {
        println!(
            "| {} | {:.0} | {:.2} | {:.3} | {:.3} | {:.0} | {:.0} |",
            p.name,
            p.rps(),
            p.rps() / base.rps(),
            p.pct(0.5),
            p.pct(0.99),
            cpu(p),
            cpu(p) - cpu(base)
        );
        report.push(
            json!({"name": p.name, "rps": p.rps(), "ratio_to_off": p.rps() / base.rps(),
            "p50_ms": p.pct(0.5), "p99_ms": p.pct(0.99), "cpu_us": cpu(p), "added_cpu_us": cpu(p) - cpu(base)}),
        );
    }
    Ok(Value::Array(report))
}
