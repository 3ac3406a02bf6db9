//! Memory per registered tool: 10,000 REST tools (a name, an 80-character description, a small
//! input schema, a URL) seeded from a TOML config, measured as RSS after a restart on the seeded
//! database against the same gateway with an empty registry; and `tools/list` (the first page)
//! over them.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{ensure, Context};
use mcpgw_e2e::{GatewayProcess, TempDir};
use serde_json::{json, Value};

use crate::{mcp_request, open_session, run_phase};

const TOOLS: usize = 10_000;

fn seed_toml() -> String {
    let mut s = String::new();
    for i in 0..TOOLS {
        // 80 characters of description.
        let description = format!(
            "{:<80}",
            format!("Looks up record {i} in the inventory and returns its fields as JSON")
        );
        let _ = write!(
            s,
            "[[tool]]\nname = \"tool_{i:05}\"\ndescription = \"{description}\"\nurl = \"http://127.0.0.1:9/records/{i}\"\n\
             method = \"POST\"\ninput_schema = {{ type = \"object\", properties = {{ id = {{ type = \"string\" }} }}, required = [\"id\"] }}\n\n"
        );
    }
    s
}

/// RSS once the gateway has been up for a moment (start-up allocations settled).
async fn settled_rss_kib(gw: &GatewayProcess) -> u64 {
    tokio::time::sleep(Duration::from_millis(500)).await;
    gw.rss_kib().unwrap_or(0)
}

/// `--tools-only`: RSS per registered tool and `tools/list` latency over 10,000 tools.
pub async fn tool_memory_bench(requests: usize) -> anyhow::Result<Value> {
    let env = [("MCPGW_LOG", "warn,mcpgw=info")];
    let dir = TempDir::new("bench-tools");
    let empty_db = dir.join("empty.db");
    let empty = GatewayProcess::start(&["--database", empty_db.to_str().context("utf-8")?], &env)?;
    let rss_empty = settled_rss_kib(&empty).await;
    drop(empty);

    let config = dir.join("tools.toml");
    std::fs::write(&config, seed_toml())?;
    let db = dir.join("tools.db");
    let args = [
        "--database",
        db.to_str().context("utf-8")?,
        "--config",
        config.to_str().context("utf-8")?,
    ];
    let seeding = GatewayProcess::start(&args, &env)?;
    drop(seeding);
    // After a restart on the seeded database (the config seeds nothing twice).
    let gw = GatewayProcess::start(&args, &env)?;
    let rss_full = settled_rss_kib(&gw).await;
    let http = reqwest::Client::new();
    let url = format!("{}/mcp", gw.url);
    let sid = open_session(&http, &url).await?;
    let first = mcp_request(
        &http,
        &url,
        &sid,
        &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
    )
    .await?;
    let page = first["result"]["tools"].as_array().map_or(0, Vec::len);
    ensure!(
        page > 0 && first["result"]["nextCursor"].is_string(),
        "tools/list: {first}"
    );
    let (h, u, s) = (http.clone(), url.clone(), sid.clone());
    let phase = run_phase(
        "tools/list, first page of 10,000",
        requests,
        1,
        Duration::from_secs(60),
        move |i| {
            let (h, u, s) = (h.clone(), u.clone(), s.clone());
            async move {
                let v = mcp_request(
                    &h,
                    &u,
                    &s,
                    &json!({"jsonrpc": "2.0", "id": i + 2, "method": "tools/list"}),
                )
                .await?;
                ensure!(v["result"]["tools"].as_array().is_some_and(|t| !t.is_empty()), "{v}");
                Ok(())
            }
        },
    )
    .await?;
    let per_tool = rss_full.saturating_sub(rss_empty) as f64 * 1024.0 / TOOLS as f64;
    println!(
        "tools: {TOOLS} REST tools seeded from TOML, RSS after a restart {:.1} MB against {:.1} MB with none: {per_tool:.0} bytes per tool (target <= 2048)",
        rss_full as f64 / 1024.0,
        rss_empty as f64 / 1024.0
    );
    println!(
        "tools/list first page ({page} tools): p50 {:.3} ms, p99 {:.3} ms (target p50 < 1 ms); {} bytes of definition per tool in the seed\n",
        phase.pct(0.5),
        phase.pct(0.99),
        seed_toml().len() / TOOLS
    );
    Ok(
        json!({"tools": TOOLS, "rss_empty_mb": rss_empty as f64 / 1024.0, "rss_seeded_mb": rss_full as f64 / 1024.0,
        "bytes_per_tool": per_tool, "list_p50_ms": phase.pct(0.5), "list_p99_ms": phase.pct(0.99), "page": page}),
    )
}
