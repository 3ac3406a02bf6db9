//! The process around the gateway: durability across SIGKILL, idempotent seeding, graceful
//! shutdown with open SSE streams, start-up validation, and SSE resumption by Last-Event-ID.

use std::process::Command;
use std::time::Duration;

use mcpgw_e2e::{
    gateway_bin, get_json, http_client, initialize, render_fixture, run_until_exit, start_rest_backend, start_seeded,
    GatewayProcess, TempDir,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

const ACCEPT: &str = "application/json, text/event-stream";

#[tokio::test]
async fn created_record_survives_sigkill() {
    let dir = TempDir::new("durable");
    let db = dir.join("gw.db");
    let db = db.to_str().expect("utf-8");
    let http = http_client();
    let gw = GatewayProcess::start(&["--database", db], &[]).expect("gateway");
    let body = json!({"name": "durable_tool", "description": "must survive", "url": "http://127.0.0.1:1/x"});
    let r = http
        .post(format!("{}/tools", gw.url))
        .json(&body)
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().await.expect("json");
    gw.signal("KILL").expect("kill");
    drop(gw);
    let gw = GatewayProcess::start(&["--database", db], &[]).expect("restart");
    let got = get_json(&format!("{}/tools/durable_tool", gw.url)).await;
    assert_eq!(got["id"], created["id"]);
    assert_eq!(got["description"], "must survive");
    // And it is served over MCP.
    let r = http
        .post(format!("{}/rpc", gw.url))
        .json(&json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}))
        .send()
        .await
        .expect("rpc");
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["result"]["tools"][0]["name"], "durable_tool");
}

#[tokio::test]
async fn seeding_twice_does_not_duplicate() {
    let backend = start_rest_backend().await.expect("backend");
    let dir = TempDir::new("seed");
    let cfg = render_fixture("sdk.toml", &backend.url, &dir).expect("fixture");
    let db = dir.join("gw.db");
    let args = [
        "--database",
        db.to_str().expect("utf-8"),
        "--config",
        cfg.to_str().expect("utf-8"),
    ];
    let mut snapshots = Vec::new();
    for _ in 0..2 {
        let gw = GatewayProcess::start(&args, &[]).expect("gateway");
        let mut counts = Vec::new();
        for c in ["tools", "resources", "prompts", "servers"] {
            let v = get_json(&format!("{}/{c}", gw.url)).await;
            counts.push((c, v.as_array().expect("array").len(), v[0]["id"].clone()));
        }
        snapshots.push(counts);
    }
    assert_eq!(
        snapshots[0], snapshots[1],
        "a second start with the same file changes nothing"
    );
    assert_eq!(snapshots[0][0].1, 5);
    assert_eq!(snapshots[0][1].1, 4);
}

#[tokio::test]
async fn sigterm_ends_sse_streams_and_exits_cleanly() {
    signal_ends_sse_streams_and_exits_cleanly("TERM").await;
}

#[tokio::test]
async fn sigint_ends_sse_streams_and_exits_cleanly() {
    signal_ends_sse_streams_and_exits_cleanly("INT").await;
}

async fn signal_ends_sse_streams_and_exits_cleanly(signal: &str) {
    let dir = TempDir::new("shutdown");
    let db = dir.join("gw.db");
    let mut gw = GatewayProcess::start(&["--database", db.to_str().expect("utf-8")], &[]).expect("gateway");
    let http = http_client();
    let sid = initialize(&http, &gw.url).await.expect("initialize");
    let standalone = http
        .get(format!("{}/mcp", gw.url))
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &sid)
        .send()
        .await
        .expect("get");
    assert_eq!(standalone.status(), StatusCode::OK);
    let legacy = http
        .get(format!("{}/sse", gw.url))
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("sse");
    assert_eq!(legacy.status(), StatusCode::OK);
    gw.signal(signal).expect("signal");
    let status = gw.wait_exit(Duration::from_secs(5)).expect("exits promptly");
    assert!(status.success(), "exit status {status}");
    // Both streams end cleanly (the body completes), rather than hanging or breaking off.
    for r in [standalone, legacy] {
        let done = tokio::time::timeout(Duration::from_secs(5), r.bytes()).await;
        let body = done.expect("stream did not end");
        assert!(body.is_ok(), "stream broke off instead of ending: {body:?}");
    }
}

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish() {
    let mut seeded = start_seeded("sdk.toml", &[]).await.expect("seeded gateway");
    let slow = serde_json::json!({"name": "slow", "url": format!("{}/slow", seeded.backend.url)});
    let http = http_client();
    let r = http
        .post(format!("{}/tools", seeded.gw.url()))
        .json(&slow)
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), StatusCode::CREATED);
    let sid = initialize(&http, seeded.gw.url()).await.expect("initialize");
    let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "slow", "arguments": {"ms": 1500}}});
    let pending = http
        .post(format!("{}/mcp", seeded.gw.url()))
        .header("accept", ACCEPT)
        .header("mcp-session-id", &sid)
        .json(&call)
        .send();
    let pending = tokio::spawn(pending);
    // Signal once the call is in flight: the backend has its request.
    seeded.backend.wait_for_slow_calls(1).await;
    seeded.gw.native().signal("TERM").expect("term");
    let answer: Value = pending
        .await
        .expect("join")
        .expect("response")
        .json()
        .await
        .expect("json");
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    assert!(answer["result"]["content"][0]["text"]
        .as_str()
        .expect("text")
        .contains("1500"));
    assert!(seeded
        .gw
        .native()
        .wait_exit(Duration::from_secs(5))
        .expect("exit")
        .success());
}

#[tokio::test]
async fn bad_settings_are_named_at_start_up() {
    let dir = TempDir::new("settings");
    let db = dir.join("gw.db");
    let db = db.to_str().expect("utf-8");
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case<'_>] = &[
        (&[], &[("MCPGW_PORT", "notaport")], "MCPGW_PORT"),
        (&["--page-size", "0"], &[], "MCPGW_PAGE_SIZE"),
        (&[], &[("MCPGW_HOST", "not-an-ip")], "MCPGW_HOST"),
        (&["--config", "/nonexistent/mcpgw.toml"], &[], "MCPGW_CONFIG"),
        (&["--max-body-bytes", "12"], &[], "MCPGW_MAX_BODY_BYTES"),
        (&["--max-sessions", "0"], &[], "MCPGW_MAX_SESSIONS"),
        // Auth is on by default: no secret, or a weak one, stops start-up with how to make one.
        (&[], &[("MCPGW_AUTH_REQUIRED", "true")], "MCPGW_JWT_SECRET"),
        (&[], &[("MCPGW_AUTH_REQUIRED", "true")], "openssl rand"),
        (
            &[],
            &[("MCPGW_AUTH_REQUIRED", "true"), ("MCPGW_JWT_SECRET", "hunter2")],
            "too short",
        ),
        (
            &[],
            &[("MCPGW_JWT_ALGORITHM", "RS256"), ("MCPGW_AUTH_REQUIRED", "true")],
            "MCPGW_JWT_PUBLIC_KEY",
        ),
        (&[], &[("MCPGW_AUTH_REQUIRED", "maybe")], "MCPGW_AUTH_REQUIRED"),
        // Values that do not parse, where a fallback to the default would start fine: each
        // must stop start-up naming its variable.
        (
            &[],
            &[
                ("MCPGW_AUTH_REQUIRED", "maybe"),
                ("MCPGW_JWT_SECRET", "Zq8wX2vB7nR4tY6uI1oP3aS5dF0gH9jKmL2nB4vC6xZ8qW1e"),
            ],
            "MCPGW_AUTH_REQUIRED",
        ),
        (&[], &[("MCPGW_ALLOW_STDIO_API", "maybe")], "MCPGW_ALLOW_STDIO_API"),
        (&[], &[("MCPGW_PAGE_SIZE", "many")], "MCPGW_PAGE_SIZE"),
        (&[], &[("MCPGW_MAX_STREAM_QUEUE", "-1")], "MCPGW_MAX_STREAM_QUEUE"),
        (
            &[],
            &[("MCPGW_TRUSTED_PROXIES", "10.0.0.0/33")],
            "MCPGW_TRUSTED_PROXIES",
        ),
        (&[], &[("MCPGW_SSRF_ALLOW", "not a host")], "MCPGW_SSRF_ALLOW"),
        (&[], &[("MCPGW_METRICS", "sometimes")], "MCPGW_METRICS"),
    ];
    for (args, env, expected) in cases {
        let mut cmd = Command::new(gateway_bin());
        cmd.args(["serve", "--database", db])
            .args(*args)
            .env("MCPGW_PORT", "0")
            .env("MCPGW_AUTH_REQUIRED", "false")
            .env_remove("MCPGW_JWT_SECRET");
        for (k, v) in *env {
            cmd.env(k, v);
        }
        let (status, out) = run_until_exit(&mut cmd, Duration::from_secs(10)).expect("run");
        let status = status.unwrap_or_else(|| panic!("{args:?} {env:?}: still running, not refused:\n{out}"));
        assert!(!status.success(), "{args:?} {env:?} must fail");
        assert!(
            out.contains(expected),
            "{args:?} {env:?}: message must name {expected}:\n{out}"
        );
    }
    // A config file with an unknown field is refused, naming the file.
    let cfg = dir.join("bad.toml");
    std::fs::write(
        &cfg,
        "[[tool]]\nname = \"x\"\nurl = \"http://127.0.0.1:1/\"\nbogus = 1\n",
    )
    .expect("write");
    let mut cmd = Command::new(gateway_bin());
    cmd.env("MCPGW_AUTH_REQUIRED", "false").args([
        "serve",
        "--port",
        "0",
        "--database",
        db,
        "--config",
        cfg.to_str().expect("utf-8"),
    ]);
    let (status, out) = run_until_exit(&mut cmd, Duration::from_secs(10)).expect("run");
    let status = status.unwrap_or_else(|| panic!("still running, not refused:\n{out}"));
    assert!(
        !status.success() && out.contains("MCPGW_CONFIG") && out.contains("bogus"),
        "{out}"
    );
}

/// Two instances on one database file: a token revoked through one is refused by the other
/// within the registry cache time (2 s), and a tool created through one is announced with
/// tools/list_changed to a client of the other (at its next upkeep, 1 s here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_database_see_each_others_writes() {
    const SECRET: &str = "t2Gm8Qx4Vn1Rk7Yp3Lw9Hd6Sb0Fc5Ja2Ue8Io4Zt1";
    let dir = TempDir::new("two-instances");
    let db = dir.join("gw.db");
    let env = [("MCPGW_AUTH_REQUIRED", "true"), ("MCPGW_JWT_SECRET", SECRET)];
    let args = ["--database", db.to_str().expect("utf-8"), "--upkeep-secs", "1"];
    let a = GatewayProcess::start(&args, &env).expect("instance a");
    let b = GatewayProcess::start(&args, &env).expect("instance b");
    let now = mcpgw_e2e::unix_now();
    let token = |sub: &str, scope: &str, jti: &str| {
        mcpgw_e2e::sign_jwt(
            "HS256",
            SECRET,
            json!({"iss": "mcpgw", "aud": "mcpgw", "sub": sub, "scope": scope, "jti": jti, "exp": now + 600}),
        )
    };
    let admin = token("ops", "mcpgw:admin", "adm");
    let client = token("agent", "mcpgw:client", "c-1");
    let http = http_client();
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
    let ping_b = || {
        http.post(format!("{}/rpc", b.url))
            .bearer_auth(&client)
            .json(&ping)
            .send()
    };
    assert_eq!(ping_b().await.expect("ping").status(), StatusCode::OK);

    // A client of b listening on its stream.
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let r = http
        .post(format!("{}/mcp", b.url))
        .bearer_auth(&admin)
        .header("accept", ACCEPT)
        .json(&init)
        .send()
        .await
        .expect("initialize");
    let sid = r.headers()["mcp-session-id"].to_str().expect("sid").to_string();
    let stream = http
        .get(format!("{}/mcp", b.url))
        .bearer_auth(&admin)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &sid)
        .send()
        .await
        .expect("GET");
    assert_eq!(stream.status(), StatusCode::OK);

    // Writes through a.
    let r = http
        .post(format!("{}/tools", a.url))
        .bearer_auth(&admin)
        .json(&json!({"name": "made_on_a", "url": "http://127.0.0.1:9/x"}))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = http
        .post(format!("{}/auth/revocations", a.url))
        .bearer_auth(&admin)
        .json(&json!({"jti": "c-1"}))
        .send()
        .await
        .expect("revoke");
    assert_eq!(r.status(), StatusCode::CREATED);
    let revoked_at = std::time::Instant::now();
    loop {
        let r = ping_b().await.expect("ping");
        if r.status() == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_millis(2500),
            "b still accepts the revoked token"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let events = mcpgw_e2e::read_events(stream, 1).await;
    assert_eq!(events[0].1["method"], "notifications/tools/list_changed", "{events:?}");
}
