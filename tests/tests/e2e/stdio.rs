//! Standard input and output, both directions of a desktop: `mcpgw stdio` (the gateway launched
//! by its client; native) and `mcpgw connect URL` (stdio bridged to a remote gateway, native or
//! the Worker), driven by the official Python and TypeScript SDKs' stdio clients and by the MCP
//! Inspector's CLI, through two federated upstreams (the fixture and the reference server):
//! tools, resources, prompts, progress, logs, sampling, elicitation, roots and cancellation.
//! Then the bridge itself: a new session when the remote restarts, an answer (not a hang) while
//! it is down, a bad token refused with the gateway's reason, and nothing but JSON-RPC on stdout.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use mcpgw_e2e::{
    gateway_bin, http_client, node_bin, python, repo_root, run_with_timeout, skip, target, Fixture, GatewayProcess,
    Target, TempDir,
};
use serde_json::{json, Value};

use crate::federation::{run_client, start_two};

/// The `mcpgw` command line that reaches the gateway of `two` over stdio: `stdio` on its
/// database natively; `connect` to its URL on either target.
fn launch(how: &str, two: &crate::federation::TwoUpstreams) -> Vec<String> {
    let bin = gateway_bin().display().to_string();
    match how {
        "stdio" => vec![
            bin,
            "stdio".into(),
            "--database".into(),
            two.database().display().to_string(),
        ],
        _ => vec![bin, "connect".into(), format!("{}/mcp", two.gw.url())],
    }
}

/// The variables the launched gateway needs (its upstreams are on loopback).
fn env(cmd: &mut Command) -> &mut Command {
    cmd.env("MCPGW_SSRF_ALLOW", "loopback").env("MCPGW_LOG", "warn")
}

async fn sdks_through(how: &'static str) {
    let two = start_two(&[]).await;
    let line = launch(how, &two);
    let calls = two.calls.clone();
    tokio::task::spawn_blocking(move || {
        let mut py = python();
        py.arg(repo_root().join("tests/clients/federation_client.py"))
            .arg("--stdio")
            .args(&line);
        run_client(env(&mut py), "PASS python federation");
        let mut ts = Command::new(node_bin());
        ts.arg(repo_root().join("tests/clients/ts_federation.mjs"))
            .arg("--stdio")
            .arg(&calls)
            .args(&line)
            .current_dir(repo_root());
        run_client(env(&mut ts), "PASS typescript federation");
        // The MCP Inspector's CLI lists the tools through it.
        let mut inspector = Command::new(node_bin());
        inspector
            .arg(repo_root().join("node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js"))
            .arg("--cli")
            .args(&line)
            .args(["--method", "tools/list"])
            .current_dir(repo_root());
        let (ok, out) = run_with_timeout(env(&mut inspector), Duration::from_secs(90)).expect("inspector");
        assert!(ok, "inspector failed:\n{out}");
        for name in ["everything__echo", "fixture__test_simple_text"] {
            assert!(
                out.contains(&format!("\"{name}\"")),
                "{name} not listed by the inspector:\n{out}"
            );
        }
    })
    .await
    .expect("join");
    drop(two);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdks_and_the_inspector_use_mcpgw_stdio() {
    if target() == Target::Edge {
        return skip(
            "sdks_and_the_inspector_use_mcpgw_stdio",
            "mcpgw stdio runs the native gateway (connect covers the edge)",
        );
    }
    sdks_through("stdio").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdks_and_the_inspector_use_mcpgw_connect() {
    sdks_through("connect").await;
}

/// A client's side of `mcpgw connect` or `mcpgw stdio`, driven line by line.
struct Bridge {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Bridge {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(gateway_bin());
        cmd.args(args)
            .env("MCPGW_SSRF_ALLOW", "loopback")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn mcpgw");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Bridge { child, stdin, lines }
    }

    fn send(&mut self, msg: Value) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{msg}").expect("write");
        stdin.flush().expect("flush");
    }

    /// The answer to request `id`; every line before it must be JSON-RPC too.
    fn answer(&mut self, id: &Value, wait: Duration) -> Value {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no answer to {id} within {wait:?}"));
            let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON on stdout ({e}): {line}"));
            assert_eq!(v["jsonrpc"], "2.0", "not JSON-RPC on stdout: {line}");
            if &v["id"] == id && v.get("method").is_none() {
                return v;
            }
        }
    }

    fn request(&mut self, id: Value, method: &str, params: Value) -> Value {
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        self.answer(&id, Duration::from_secs(20))
    }

    fn initialize(&mut self) -> Value {
        let r = self.request(
            json!(1),
            "initialize",
            json!({"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "e2e-bridge", "version": "1"}}),
        );
        if r.get("result").is_some() {
            self.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        }
        r
    }

    /// Closes stdin; the process must exit by itself, successfully.
    fn finish(mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "did not exit after stdin closed");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn text(answer: &Value) -> String {
    answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The remote gateway restarts (its sessions are in memory, so the bridge's is gone): a call
/// while it is down gets an error answer; the next call after it is back opens a new session
/// without the client knowing, and is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_opens_a_new_session_when_the_remote_restarts() {
    if target() == Target::Edge {
        return skip(
            "connect_opens_a_new_session_when_the_remote_restarts",
            "restarts a native gateway on the same port",
        );
    }
    let dir = TempDir::new("connect-restart");
    let fixture = Fixture::start("streamable-http", None);
    let db = dir.join("gw.db").display().to_string();
    let mut gw = GatewayProcess::start(&["--database", &db], &[]).expect("gateway");
    let port = gw.addr.port().to_string();
    let r = http_client()
        .post(format!("{}/gateways", gw.url))
        .json(&json!({"name": "fixture", "url": format!("{}/mcp", fixture.url)}))
        .send()
        .await
        .expect("register");
    assert!(r.status().is_success(), "{}", r.text().await.unwrap_or_default());
    let url = format!("{}/mcp", gw.url);

    let calls = tokio::task::spawn_blocking(move || {
        let mut b = Bridge::start(&["connect", &url], &[]);
        let init = b.initialize();
        assert_eq!(init["result"]["protocolVersion"], "2025-11-25", "{init}");
        let first = b.request(json!(2), "tools/call", json!({"name": "fixture__test_simple_text"}));
        assert!(text(&first).contains("simple text"), "{first}");

        gw.signal("TERM").expect("TERM");
        gw.wait_exit(Duration::from_secs(20)).expect("stopped");
        let down = b.request(
            json!("while-down"),
            "tools/call",
            json!({"name": "fixture__test_simple_text"}),
        );
        let message = down["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("cannot reach"), "{down}");

        let _again = GatewayProcess::start(&["--database", &db, "--port", &port], &[]).expect("restart");
        let after = b.request(json!(3), "tools/call", json!({"name": "fixture__test_simple_text"}));
        assert!(
            text(&after).contains("simple text"),
            "answered on a new session: {after}"
        );
        let listed = b.request(json!(4), "tools/list", json!({}));
        assert!(
            listed["result"]["tools"].as_array().is_some_and(|t| !t.is_empty()),
            "{listed}"
        );
        b.finish();
    });
    calls.await.expect("join");
    drop(fixture);
}

/// `mcpgw connect` to a gateway with auth on: without the right token every request is answered
/// with the gateway's own refusal (its code and reason); with `MCPGW_TOKEN` it is let in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_sends_the_token_and_passes_on_a_refusal() {
    if target() == Target::Edge {
        return skip(
            "connect_sends_the_token_and_passes_on_a_refusal",
            "mints its token with the native CLI",
        );
    }
    const SECRET: &str = "Zm9yLXRoZS1zdGRpby1icmlkZ2UtdGVzdC1vbmx5LTQ4Ynl0ZXMhIQ==";
    let dir = TempDir::new("connect-auth");
    let db = dir.join("gw.db").display().to_string();
    let auth = [("MCPGW_AUTH_REQUIRED", "true"), ("MCPGW_JWT_SECRET", SECRET)];
    let gw = GatewayProcess::start(&["--database", &db], &auth).expect("gateway");
    let url = format!("{}/mcp", gw.url);
    let out = Command::new(gateway_bin())
        .args(["token", "--sub", "desktop", "--exp", "300"])
        .env("MCPGW_JWT_SECRET", SECRET)
        .output()
        .expect("mcpgw token");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).expect("utf-8").trim().to_string();

    tokio::task::spawn_blocking(move || {
        let mut bad = Bridge::start(&["connect", &url], &[("MCPGW_TOKEN", "not-a-token")]);
        let refused = bad.initialize();
        assert_eq!(refused["error"]["code"], -32040, "{refused}");
        assert!(
            refused["error"]["message"].as_str().is_some_and(|m| m.contains("401")),
            "{refused}"
        );
        bad.finish();

        let mut good = Bridge::start(&["connect", &url], &[("MCPGW_TOKEN", &token)]);
        let init = good.initialize();
        assert!(init.get("result").is_some(), "{init}");
        let listed = good.request(json!(2), "tools/list", json!({}));
        assert!(listed["result"]["tools"].is_array(), "{listed}");
        good.finish();
    })
    .await
    .expect("join");
    drop(gw);
}

/// `mcpgw stdio` answers bad input on stdout as JSON-RPC errors (never a crash), keeps its
/// logs off stdout, and serves one virtual server with `--server`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_answers_bad_input_and_serves_one_virtual_server() {
    if target() == Target::Edge {
        return skip(
            "stdio_answers_bad_input_and_serves_one_virtual_server",
            "mcpgw stdio runs the native gateway",
        );
    }
    let dir = TempDir::new("stdio-server");
    let db = dir.join("gw.db").display().to_string();
    let fixture = Fixture::start("streamable-http", None);
    let gw = GatewayProcess::start(&["--database", &db], &[]).expect("gateway");
    let http = http_client();
    for (path, body) in [
        (
            "gateways",
            json!({"name": "fixture", "url": format!("{}/mcp", fixture.url)}),
        ),
        (
            "servers",
            json!({"name": "one", "tools": ["fixture__test_simple_text"]}),
        ),
    ] {
        let r = http
            .post(format!("{}/{path}", gw.url))
            .json(&body)
            .send()
            .await
            .expect("post");
        assert!(
            r.status().is_success(),
            "{path}: {}",
            r.text().await.unwrap_or_default()
        );
    }
    let db2 = db.clone();
    tokio::task::spawn_blocking(move || {
        let mut b = Bridge::start(
            &["stdio", "--database", &db2, "--server", "one"],
            &[("MCPGW_LOG", "debug")],
        );
        // Not JSON: a parse error with a null id.
        b.stdin
            .as_mut()
            .expect("stdin")
            .write_all(b"{not json\n")
            .expect("write");
        let parse = b.answer(&Value::Null, Duration::from_secs(20));
        assert_eq!(parse["error"]["code"], -32700, "{parse}");
        let init = b.initialize();
        assert!(init.get("result").is_some(), "{init}");
        let tools = b.request(json!(2), "tools/list", json!({}));
        let names: Vec<&str> = tools["result"]["tools"]
            .as_array()
            .expect("tools")
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        assert_eq!(
            names,
            ["fixture__test_simple_text"],
            "only the server's members: {tools}"
        );
        let unknown = b.request(json!(3), "no/such/method", json!({}));
        assert_eq!(unknown["error"]["code"], -32601, "{unknown}");
        let called = b.request(json!(4), "tools/call", json!({"name": "fixture__test_simple_text"}));
        assert!(text(&called).contains("simple text"), "{called}");
        b.finish();
    })
    .await
    .expect("join");
    drop(gw);
    drop(fixture);
}

/// `mcpgw stdio` in front of an upstream that acts for each caller (`auth.mode = "user"`): it
/// has no web address of its own, so without MCPGW_PUBLIC_URL a call that needs the caller's
/// authorization says how to give it; with MCPGW_PUBLIC_URL naming an `mcpgw serve` on the same
/// database, the call gets that server's connect link, the caller connects there, and the next
/// call over stdio goes through with the caller's own token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_gives_a_connect_link_at_the_public_url_for_an_upstream_acting_for_each_caller() {
    use crate::upstream_user_oauth::{connect_link, who, Person};
    use mcpgw_e2e::browser::hidden;
    if target() == Target::Edge {
        return skip(
            "stdio_gives_a_connect_link_at_the_public_url_for_an_upstream_acting_for_each_caller",
            "mcpgw stdio runs the native gateway",
        );
    }
    let dir = TempDir::new("stdio-user");
    let db = dir.join("gw.db").display().to_string();
    let oidc = Fixture::start_cmd("tests/fixture/oidc.mjs", &[]);
    let up = Fixture::start_with("streamable-http", 0, None, &["--oauth", &oidc.url]);
    let gw = GatewayProcess::start(&["--database", &db], &[]).expect("gateway");
    let g = gw.url.clone();
    let def = json!({"name": "drive", "url": format!("{}/mcp", up.url), "auth": {
        "mode": "user", "client_id": "gw-user", "method": "none", "scope": "openid read"}});
    let r = http_client()
        .post(format!("{g}/gateways"))
        .json(&def)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status().as_u16(), 201);
    // Auth is off: the one caller is anonymous, on every transport. It connects once from its
    // page (the gateway reads the catalog), then disconnects.
    let mut anon = Person::new("carol");
    let me = anon.browser.visit(&format!("{g}/me"), None).await;
    let csrf = hidden(&me.body, "_csrf").expect("csrf");
    let link = anon
        .browser
        .go(&format!("{g}/me/connect/drive"), Some(&[("_csrf", &csrf)]))
        .await;
    anon.connect(&g, &link).await;
    let me = anon.browser.visit(&format!("{g}/me"), None).await;
    let csrf = hidden(&me.body, "_csrf").expect("csrf");
    let v = anon
        .browser
        .visit(&format!("{g}/me/disconnect/drive"), Some(&[("_csrf", &csrf)]))
        .await;
    assert!(v.body.contains("Disconnected"), "{}", v.body);

    let db2 = db.clone();
    let link = tokio::task::spawn_blocking(move || {
        let mut b = Bridge::start(&["stdio", "--database", &db2], &[]);
        assert!(b.initialize().get("result").is_some());
        let a = b.request(json!(2), "tools/call", json!({"name": "drive__whoami"}));
        let says = a["error"]["message"].as_str().unwrap_or_default();
        assert!(
            says.contains("MCPGW_PUBLIC_URL") && says.contains("/oauth/connect/"),
            "{a}"
        );
        b.finish();
        let mut b = Bridge::start(&["stdio", "--database", &db2], &[("MCPGW_PUBLIC_URL", &g)]);
        assert!(b.initialize().get("result").is_some());
        let a = b.request(json!(2), "tools/call", json!({"name": "drive__whoami"}));
        let link = connect_link(&a);
        assert!(link.starts_with(&format!("{g}/oauth/connect/")), "{link}");
        (b, link)
    })
    .await
    .expect("join");
    let (mut b, link) = link;
    anon.connect(&gw.url, &link).await;
    let answer = tokio::task::spawn_blocking(move || {
        let a = b.request(json!(3), "tools/call", json!({"name": "drive__whoami"}));
        b.finish();
        a
    })
    .await
    .expect("join");
    assert_eq!(who(&answer)["sub"], "carol", "{answer}");
    drop(gw);
    drop(up);
    drop(oidc);
}
