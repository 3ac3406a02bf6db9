//! The project's fixture upstream (`tests/fixture/server.mjs`), checked on its own: the official
//! conformance suite's 30 active scenarios pass against it directly over streamable HTTP, its
//! calls log proves the suite reached it, and its SSE and stdio transports serve the Python SDK.
//! The federation tests rely on it behaving exactly like this.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mcpgw_e2e::{node_bin, repo_root, run_with_timeout, TempDir};

/// A running fixture, killed on drop.
struct Fixture {
    child: Child,
    url: String,
}

impl Fixture {
    fn start(transport: &str, calls_log: Option<&std::path::Path>) -> Self {
        let mut cmd = Command::new(node_bin());
        cmd.arg(repo_root().join("tests/fixture/server.mjs"))
            .args(["--transport", transport, "--port", "0"]);
        if let Some(log) = calls_log {
            cmd.arg("--calls-log").arg(log);
        }
        let mut child = cmd
            .current_dir(repo_root())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn fixture");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("listening line");
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad listening line {line:?}: {e}"));
        let url = v["listening"].as_str().expect("listening url").to_string();
        Self { child, url }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn conformance_suite_passes_against_the_fixture_itself() {
    let dir = TempDir::new("fixture");
    let calls = dir.join("calls.jsonl");
    let fixture = Fixture::start("streamable-http", Some(&calls));
    // The suite derives the valid Host for its DNS-rebinding check from the URL: use localhost.
    let port = fixture.url.rsplit(':').next().expect("port");
    let url = format!("http://localhost:{port}/mcp");
    let mut cmd = Command::new(node_bin());
    cmd.arg(repo_root().join("node_modules/.bin/conformance"))
        .args(["server", "--url", &url])
        .current_dir(repo_root());
    let (ok, out) = run_with_timeout(&mut cmd, Duration::from_secs(300)).expect("run conformance");
    let total = out
        .lines()
        .rev()
        .find(|l| l.starts_with("Total:"))
        .unwrap_or_default()
        .to_string();
    assert!(
        ok && total.ends_with(" 0 failed") && !total.starts_with("Total: 0 "),
        "conformance against the fixture: {total}\n{out}"
    );
    // Some scenarios pass even when a tool is missing: prove the fixture was really used.
    let log = std::fs::read_to_string(&calls).expect("calls log");
    for name in [
        "test_simple_text",
        "test_error_handling",
        "test_sampling",
        "test_elicitation",
        "test_tool_with_progress",
        "test://static-text",
        "test_prompt_with_arguments",
    ] {
        assert!(
            log.contains(&format!("\"{name}\"")),
            "the suite never reached {name}:\n{log}"
        );
    }
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
