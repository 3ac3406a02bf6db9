//! The official MCP SDK clients against the native gateway: Python (`mcp`) and TypeScript
//! (`@modelcontextprotocol/sdk`), over streamable HTTP and legacy SSE, on `/mcp` and on a
//! virtual server. Each client script asserts lists across pages, a REST-backed tool call that
//! reaches the backend, text/binary/templated resources and minijinja prompts.

use std::process::Command;
use std::time::Duration;

use mcpgw_e2e::{node_bin, repo_root, run_with_timeout, start_seeded};

async fn with_gateway(run: impl Fn(&str) -> anyhow::Result<()> + Send + 'static) {
    let seeded = start_seeded("sdk.toml", &["--page-size", "2"])
        .await
        .expect("seeded gateway");
    let gw = &seeded.gw;
    let url = gw.url().to_string();
    // Client scripts block; the backend keeps running on the runtime's other worker.
    tokio::task::spawn_blocking(move || run(&url))
        .await
        .expect("join")
        .expect("client run");
    drop(seeded);
}

fn python(url: &str, transport: &str, extra: &[&str]) -> anyhow::Result<()> {
    let script = repo_root().join("tests/clients/python_client.py");
    let mut cmd = Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()));
    cmd.arg(script).arg(url).arg(transport).args(extra);
    let (ok, out) = run_with_timeout(&mut cmd, Duration::from_secs(60))?;
    anyhow::ensure!(ok && out.contains("PASS python"), "python client failed:\n{out}");
    Ok(())
}

fn typescript(url: &str, transport: &str, extra: &[&str]) -> anyhow::Result<()> {
    let script = repo_root().join("tests/clients/ts_client.mjs");
    let mut cmd = Command::new(node_bin());
    cmd.arg(script)
        .arg(url)
        .arg(transport)
        .args(extra)
        .current_dir(repo_root());
    let (ok, out) = run_with_timeout(&mut cmd, Duration::from_secs(60))?;
    anyhow::ensure!(
        ok && out.contains("PASS typescript"),
        "typescript client failed:\n{out}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_streamable_http() {
    with_gateway(|url| python(&format!("{url}/mcp"), "streamable", &[])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_legacy_sse() {
    with_gateway(|url| python(&format!("{url}/sse"), "sse", &[])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_virtual_server() {
    with_gateway(|url| {
        python(&format!("{url}/servers/docs/mcp"), "streamable", &["--server"])?;
        python(&format!("{url}/servers/docs/sse"), "sse", &["--server"])
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_sdk_streamable_http() {
    with_gateway(|url| typescript(&format!("{url}/mcp"), "streamable", &[])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_sdk_legacy_sse() {
    with_gateway(|url| typescript(&format!("{url}/sse"), "sse", &[])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_sdk_virtual_server() {
    with_gateway(|url| typescript(&format!("{url}/servers/docs/mcp"), "streamable", &["--server"])).await;
}
