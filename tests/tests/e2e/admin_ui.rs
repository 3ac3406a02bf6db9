//! The admin UI in headless Chromium (`tests/clients/admin_ui.mjs`: Debian's chromium driven by
//! playwright-core, JavaScript off), on the selected target: login, a REST tool refused with the
//! error beside its field then created, called in the tool tester, an upstream's catalog
//! refreshed, forms without their CSRF token refused, logout ending the session. Screenshots of
//! each page are kept in `target/ui-screenshots/<target>/`.

use std::process::Command;
use std::time::Duration;

use mcpgw_e2e::*;

const ADMIN_PASSWORD: &str = "a long admin password for the ui";

#[tokio::test]
async fn an_administrator_works_through_the_admin_ui_in_chromium() {
    let backend = start_rest_backend().await.expect("backend");
    let fixture = Fixture::start("streamable-http", None);
    let dir = TempDir::new("admin-ui");
    let hash = mcpgw_core::security::auth::PasswordHash::create(ADMIN_PASSWORD, b"fixed-test-salt!", 10_000);
    let env = [
        ("MCPGW_AUTH_REQUIRED", "true"),
        ("MCPGW_JWT_SECRET", "k9Xr2mQv7LpT4sWz8NbY1cHf6JdG3aRu5EoK0iVn"),
        ("MCPGW_ADMIN_USER", "admin"),
        ("MCPGW_ADMIN_PASSWORD_HASH", hash.as_str()),
    ];
    let gw = start_target_with(&dir, &[], &env).expect("gateway");
    let url = gw.url().to_string();
    let r = http_client()
        .post(format!("{url}/gateways"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .json(&serde_json::json!({"name": "everything", "url": format!("{}/mcp", fixture.url)}))
        .send()
        .await
        .expect("register");
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    let target_name = if target() == Target::Edge { "edge" } else { "native" };
    let artifacts = repo_root().join("target/ui-screenshots").join(target_name);
    let _ = std::fs::remove_dir_all(&artifacts);
    let mut cmd = Command::new(node_bin());
    cmd.arg(repo_root().join("tests/clients/admin_ui.mjs"))
        .arg(&url)
        .arg(&backend.url)
        .arg("everything")
        .arg(&artifacts)
        .env("ADMIN_USER", "admin")
        .env("ADMIN_PASSWORD", ADMIN_PASSWORD)
        .current_dir(repo_root());
    let (ok, out) = run_blocking(cmd, Duration::from_secs(180)).await;
    assert!(ok && out.contains("PASS admin ui"), "{out}");
    let shots = std::fs::read_dir(&artifacts).map(|d| d.count()).unwrap_or(0);
    assert!(shots >= 12, "{shots} screenshots in {}", artifacts.display());
}
