//! The project's fixture upstream (`tests/fixture/server.mjs`), checked on its own: the official
//! conformance suite's 30 active scenarios pass against it directly over streamable HTTP, its
//! calls log proves the suite reached it, and its SSE and stdio transports serve the Python SDK.
//! The federation tests rely on it behaving exactly like this.

use std::process::Command;
use std::time::Duration;

use mcpgw_e2e::{
    assert_conformance, assert_fixture_reached, node_bin, repo_root, required_server_scenarios, run_conformance,
    run_conformance_of, run_with_timeout, Fixture, Suite, TempDir, ACTIVE_SUITE,
};

#[test]
fn conformance_suite_passes_against_the_fixture_itself() {
    let dir = TempDir::new("fixture");
    let calls = dir.join("calls.jsonl");
    let fixture = Fixture::start("streamable-http", Some(&calls));
    // The suite derives the valid Host for its DNS-rebinding check from the URL: use localhost.
    let url = format!("http://localhost:{}/mcp", fixture.port());
    let run = run_conformance(&url, &[], Duration::from_secs(300));
    assert_conformance(&run, ACTIVE_SUITE, &[], "the fixture");
    assert_fixture_reached(&calls);
}

/// The dual-era fixture (`tests/fixture/modern.mjs`) on its own: conformance 0.2.0-alpha.12
/// with `--requirements 2026-07-28` and with `--requirements 2025-11-25`, every required
/// scenario with 0 failed checks; in `--era modern` it refuses `initialize`.
#[test]
fn dual_era_fixture_passes_both_revisions_itself() {
    let fixture = Fixture::modern("dual", None);
    let url = format!("http://localhost:{}/mcp", fixture.port());
    for revision in ["2026-07-28", "2025-11-25"] {
        let run = run_conformance_of(
            Suite::Next,
            &url,
            &["--requirements", revision],
            Duration::from_secs(300),
        );
        let mut failed = Vec::new();
        for s in required_server_scenarios(revision) {
            match run.scenarios.get(&s) {
                None => failed.push(format!("{s}: did not run")),
                Some(checks) => failed.extend(
                    checks
                        .iter()
                        .filter(|(_, st)| st == "FAILURE")
                        .map(|(id, _)| format!("{s}: {id}")),
                ),
            }
        }
        assert!(failed.is_empty(), "{revision}:\n{}\n{}", failed.join("\n"), run.output);
    }
}

#[tokio::test]
async fn modern_only_fixture_refuses_initialize() {
    let modern = Fixture::modern("modern", None);
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let r = mcpgw_e2e::http_client()
        .post(format!("{}/mcp", modern.url))
        .header("accept", "application/json, text/event-stream")
        .json(&body)
        .send()
        .await
        .expect("post");
    let v: serde_json::Value = r.json().await.expect("json");
    assert!(v.get("error").is_some() && v.get("result").is_none(), "{v}");
}

fn python_smoke(args: &[&str]) {
    let mut cmd = Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()));
    cmd.arg(repo_root().join("tests/clients/fixture_smoke.py")).args(args);
    let (ok, out) = run_with_timeout(&mut cmd, Duration::from_secs(60)).expect("run python");
    assert!(ok && out.contains("PASS fixture"), "{out}");
}

#[test]
fn fixture_serves_legacy_sse() {
    let fixture = Fixture::start("sse", None);
    python_smoke(&["sse", &format!("{}/sse", fixture.url)]);
}

#[test]
fn fixture_serves_stdio() {
    let node = node_bin();
    let server = repo_root().join("tests/fixture/server.mjs");
    python_smoke(&["stdio", node.to_str().expect("utf-8"), server.to_str().expect("utf-8")]);
}
