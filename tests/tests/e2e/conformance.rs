//! The official MCP conformance suite (`@modelcontextprotocol/conformance`) against the gateway's
//! own `/mcp` (its registry seeded from `fixtures/sdk.toml`, no upstream): the scenarios the
//! gateway answers itself. Each must pass exactly its pinned number of checks
//! ([`mcpgw_e2e::ACTIVE_SUITE`]), with no failure and no warning.

use std::time::Duration;

use mcpgw_e2e::{active_suite_through_gateway, assert_conformance, run_conformance, start_seeded, ConformanceRun};

const SCENARIOS: &[&str] = &[
    "server-initialize",
    "ping",
    "logging-set-level",
    "tools-list",
    "resources-list",
    "prompts-list",
    "server-sse-multiple-streams",
    "dns-rebinding-protection",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_foundation_scenarios() {
    let seeded = start_seeded("sdk.toml", &[]).await.expect("seeded gateway");
    // The suite's DNS-rebinding scenario derives the valid Host from this URL: use "localhost".
    let url = format!("http://localhost:{}/mcp", seeded.gw.addr().port());
    let run = tokio::task::spawn_blocking(move || {
        // The CLI runs one named scenario or a whole suite: one invocation per scenario, merged.
        let mut all = ConformanceRun {
            ok: true,
            ..ConformanceRun::default()
        };
        for scenario in SCENARIOS {
            let one = run_conformance(&url, &["--scenario", scenario], Duration::from_secs(90));
            all.ok &= one.ok;
            all.output.push_str(&one.output);
            all.scenarios.extend(one.scenarios);
        }
        all
    })
    .await
    .expect("join");
    drop(seeded);
    let expected: Vec<(&str, usize)> = active_suite_through_gateway()
        .into_iter()
        .filter(|(s, _)| SCENARIOS.contains(s))
        .collect();
    assert_eq!(expected.len(), SCENARIOS.len(), "every scenario is pinned");
    assert_conformance(&run, &expected, &[], "the gateway's own /mcp");
}
