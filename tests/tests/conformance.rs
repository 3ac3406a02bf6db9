//! The official MCP conformance suite (`@modelcontextprotocol/conformance`) against the native
//! gateway's `/mcp`: the scenarios the foundation must pass. Each scenario's summary line must
//! report every check passed and none failed.

use std::process::Command;
use std::time::Duration;

use mcpgw_e2e::{node_bin, repo_root, run_with_timeout, start_seeded};

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

fn summary(output: &str) -> Option<(u32, u32, u32)> {
    // "Passed: 2/2, 0 failed, 0 warnings"
    let line = output.lines().rev().find(|l| l.trim_start().starts_with("Passed:"))?;
    let rest = line.trim_start().strip_prefix("Passed:")?.trim();
    let (passed, rest) = rest.split_once('/')?;
    let (total, rest) = rest.split_once(',')?;
    let failed = rest.split_whitespace().next()?;
    Some((
        passed.trim().parse().ok()?,
        total.trim().parse().ok()?,
        failed.parse().ok()?,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_foundation_scenarios() {
    let seeded = start_seeded("sdk.toml", &[]).await.expect("seeded gateway");
    let gw = &seeded.gw;
    // The suite's DNS-rebinding scenario derives the valid Host from this URL: use "localhost".
    let url = format!("http://localhost:{}/mcp", gw.addr().port());
    let conformance = repo_root().join("node_modules/.bin/conformance");
    let results = tokio::task::spawn_blocking(move || {
        let mut failures = Vec::new();
        for scenario in SCENARIOS {
            let mut cmd = Command::new(node_bin());
            cmd.arg(&conformance)
                .args(["server", "--url", &url, "--scenario", scenario])
                .current_dir(repo_root());
            let (ok, out) = run_with_timeout(&mut cmd, Duration::from_secs(90)).expect("run conformance");
            match summary(&out) {
                Some((passed, total, 0)) if ok && passed == total && total > 0 => {
                    println!("{scenario}: {passed}/{total} passed")
                }
                other => failures.push(format!("{scenario}: exit ok={ok}, summary={other:?}\n{out}")),
            }
        }
        failures
    })
    .await
    .expect("join");
    drop(seeded);
    assert!(results.is_empty(), "conformance failures:\n{}", results.join("\n"));
}

#[test]
fn summary_parsing() {
    assert_eq!(summary("x\nPassed: 2/2, 0 failed, 0 warnings\n"), Some((2, 2, 0)));
    assert_eq!(summary("Passed: 1/3, 2 failed, 1 warnings"), Some((1, 3, 2)));
    assert_eq!(summary("nothing"), None);
}
