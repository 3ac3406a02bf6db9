//! The official MCP SDK clients against the native gateway: Python (`mcp`) and TypeScript
//! (`@modelcontextprotocol/sdk`), over streamable HTTP and legacy SSE, on `/mcp` and on a
//! virtual server. Each client script asserts lists across pages, a REST-backed tool call that
//! reaches the backend, text/binary/templated resources and minijinja prompts.

use std::process::Command;
use std::time::Duration;

use mcpgw_e2e::{
    node_bin, render_fixture, repo_root, run_with_timeout, seed_over_rest_as, sign_jwt, start_rest_backend,
    start_seeded, start_target_with, target, unix_now, Target, TempDir,
};

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
    python_as(url, transport, extra, None)
}

fn python_as(url: &str, transport: &str, extra: &[&str], token: Option<&str>) -> anyhow::Result<()> {
    let script = repo_root().join("tests/clients/python_client.py");
    let mut cmd = Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()));
    cmd.arg(script).arg(url).arg(transport).args(extra);
    if let Some(t) = token {
        cmd.env("MCPGW_TOKEN", t);
    }
    let (ok, out) = run_with_timeout(&mut cmd, Duration::from_secs(60))?;
    // The default client negotiates 2026-07-28 over streamable HTTP (the legacy SSE transport
    // has only the session era).
    let era = if transport == "sse" {
        "version=2025-"
    } else {
        "version=2026-07-28"
    };
    anyhow::ensure!(
        ok && out.contains("PASS python") && out.contains(era),
        "python client failed:\n{out}"
    );
    Ok(())
}

fn typescript(url: &str, transport: &str, extra: &[&str]) -> anyhow::Result<()> {
    typescript_as(url, transport, extra, None)
}

fn typescript_as(url: &str, transport: &str, extra: &[&str], token: Option<&str>) -> anyhow::Result<()> {
    let script = repo_root().join("tests/clients/ts_client.mjs");
    let mut cmd = Command::new(node_bin());
    cmd.arg(script)
        .arg(url)
        .arg(transport)
        .args(extra)
        .current_dir(repo_root());
    if let Some(t) = token {
        cmd.env("MCPGW_TOKEN", t);
    }
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

const SECRET: &str = "s5Dk2Nq8Wv4Lm1Rz7Tb3Hy6Gf0Pc9Xa2Je5Uo8Ki1";

/// Both SDK clients against a gateway with auth on: with a client token they pass every check,
/// over both transports; without one the same client fails (the token is what lets it in).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_clients_with_auth_on() {
    let backend = start_rest_backend().await.expect("backend");
    let dir = TempDir::new("sdk-auth");
    let cfg = render_fixture("sdk.toml", &backend.url, &dir).expect("fixture");
    let env = [("MCPGW_AUTH_REQUIRED", "true"), ("MCPGW_JWT_SECRET", SECRET)];
    let now = unix_now();
    let admin = sign_jwt(
        "HS256",
        SECRET,
        serde_json::json!({"iss": "mcpgw", "aud": "mcpgw", "sub": "ops", "scope": "mcpgw:admin", "exp": now + 600}),
    );
    let client = sign_jwt(
        "HS256",
        SECRET,
        serde_json::json!({"iss": "mcpgw", "aud": "mcpgw", "sub": "agent", "scope": "mcpgw:client", "exp": now + 600}),
    );
    let gw = match target() {
        Target::Native => {
            let args = ["--config", cfg.to_str().expect("utf-8"), "--page-size", "2"];
            start_target_with(&dir, &args, &env).expect("gateway")
        }
        Target::Edge => {
            let gw = start_target_with(&dir, &["--page-size", "2"], &env).expect("gateway");
            seed_over_rest_as(gw.url(), &std::fs::read_to_string(&cfg).expect("seed"), Some(&admin))
                .await
                .expect("seed");
            gw
        }
    };
    let url = gw.url().to_string();
    let token = client.clone();
    tokio::task::spawn_blocking(move || {
        for transport in ["streamable", "sse"] {
            let endpoint = if transport == "sse" {
                format!("{url}/sse")
            } else {
                format!("{url}/mcp")
            };
            python_as(&endpoint, transport, &[], Some(&token)).expect("python with a token");
            typescript_as(&endpoint, transport, &[], Some(&token)).expect("typescript with a token");
        }
        let endpoint = format!("{url}/mcp");
        assert!(
            python_as(&endpoint, "streamable", &[], None).is_err(),
            "python without a token must fail"
        );
        assert!(
            typescript_as(&endpoint, "streamable", &[], None).is_err(),
            "typescript without a token must fail"
        );
    })
    .await
    .expect("join");
}
