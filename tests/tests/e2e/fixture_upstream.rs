//! The project's fixture upstream (`tests/fixture/server.mjs`), checked on its own: the official
//! conformance suite's 30 active scenarios pass against it directly over streamable HTTP, its
//! calls log proves the suite reached it, and its SSE and stdio transports serve the Python SDK.
//! The federation tests rely on it behaving exactly like this.

use std::process::Command;
use std::time::Duration;

use mcpgw_e2e::{
    assert_conformance, assert_fixture_reached, node_bin, repo_root, run_conformance, run_with_timeout, Fixture,
    TempDir, ACTIVE_SUITE,
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
