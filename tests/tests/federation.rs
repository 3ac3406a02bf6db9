//! Federation end to end: the gateway fronting the project's fixture upstream. The official
//! conformance suite's active scenarios run against a virtual server (`/servers/conf/mcp`,
//! `original_names = true`) whose only upstream is the fixture, connected over streamable HTTP,
//! legacy SSE and stdio; the fixture's calls log proves each run really reached it.

use std::process::Command;
use std::time::{Duration, Instant};

use mcpgw_e2e::{
    assert_fixture_reached, assert_suite_passed, http_client, node_bin, repo_root, run_with_timeout, start_target,
    target, Fixture, Target, TempDir, TestGateway,
};
use serde_json::{json, Value};

/// A gateway with the fixture registered as upstream `fixture` and virtual server `conf`.
struct Federated {
    gw: TestGateway,
    _fixture: Option<Fixture>,
    calls: std::path::PathBuf,
    _dir: TempDir,
}

fn toml_str(s: &str) -> String {
    serde_json::to_string(s).expect("string")
}

async fn start_federated(transport: &str) -> Federated {
    let dir = TempDir::new("federation");
    let calls = dir.join("calls.jsonl");
    let (fixture, upstream) = if transport == "stdio" {
        let server = repo_root().join("tests/fixture/server.mjs");
        let up = json!({
            "name": "fixture",
            "transport": "stdio",
            "command": node_bin().to_str().expect("utf-8"),
            "args": [server.to_str().expect("utf-8"), "--transport", "stdio", "--calls-log", calls.to_str().expect("utf-8")],
        });
        (None, up)
    } else {
        let f = Fixture::start(transport, Some(&calls));
        let url = if transport == "sse" {
            format!("{}/sse", f.url)
        } else {
            format!("{}/mcp", f.url)
        };
        (Some(f), json!({"name": "fixture", "url": url, "transport": transport}))
    };
    let server = json!({"name": "conf", "upstreams": ["fixture"], "original_names": true});
    let gw = match target() {
        Target::Native => {
            let mut cfg = String::from("[[upstream]]\n");
            for (k, v) in upstream.as_object().expect("object") {
                match v {
                    Value::String(s) => cfg.push_str(&format!("{k} = {}\n", toml_str(s))),
                    Value::Array(a) => {
                        let items: Vec<String> = a.iter().map(|i| toml_str(i.as_str().expect("str"))).collect();
                        cfg.push_str(&format!("{k} = [{}]\n", items.join(", ")));
                    }
                    other => panic!("unexpected {other}"),
                }
            }
            cfg.push_str("\n[[server]]\nname = \"conf\"\nupstreams = [\"fixture\"]\noriginal_names = true\n");
            let path = dir.join("federation.toml");
            std::fs::write(&path, cfg).expect("write config");
            start_target(&dir, &["--config", path.to_str().expect("utf-8")]).expect("start gateway")
        }
        Target::Edge => {
            let gw = start_target(&dir, &[]).expect("start edge");
            let http = http_client();
            for (collection, body) in [("gateways", &upstream), ("servers", &server)] {
                let r = http
                    .post(format!("{}/{collection}", gw.url()))
                    .json(body)
                    .send()
                    .await
                    .expect("register");
                let status = r.status();
                assert_eq!(status, 201, "{collection}: {}", r.text().await.unwrap_or_default());
            }
            gw
        }
    };
    wait_for_catalog(gw.url()).await;
    Federated {
        gw,
        _fixture: fixture,
        calls,
        _dir: dir,
    }
}

/// Waits until the gateway has read the fixture's catalog (natively it is read in the
/// background after start-up).
async fn wait_for_catalog(url: &str) {
    let http = http_client();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(format!("{url}/gateways/fixture")).send().await {
            if let Ok(v) = r.json::<Value>().await {
                if v["catalog"]["tools"].as_array().is_some_and(|t| !t.is_empty()) {
                    return;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "the gateway never read the fixture's catalog"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn conformance_through(transport: &str) {
    let fed = start_federated(transport).await;
    // The suite derives the valid Host for its DNS-rebinding check from the URL: use localhost.
    let url = format!("http://localhost:{}/servers/conf/mcp", fed.gw.addr().port());
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(node_bin());
        cmd.arg(repo_root().join("node_modules/.bin/conformance"))
            .args(["server", "--url", &url])
            .current_dir(repo_root());
        run_with_timeout(&mut cmd, Duration::from_secs(600)).expect("run conformance")
    })
    .await
    .expect("join");
    assert_suite_passed(
        out.0,
        &out.1,
        &format!("the gateway fronting the fixture over {transport}"),
    );
    let total = out
        .1
        .lines()
        .rev()
        .find(|l| l.starts_with("Total:"))
        .unwrap_or_default();
    println!("conformance through the gateway over {transport}: {total}");
    if std::env::var("MCPGW_SHOW_CONFORMANCE").is_ok() {
        println!("{}", out.1);
    }
    assert_fixture_reached(&fed.calls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_through_the_gateway_over_streamable_http() {
    conformance_through("streamable-http").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_through_the_gateway_over_sse() {
    conformance_through("sse").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_through_the_gateway_over_stdio() {
    if target() == Target::Edge {
        return; // stdio upstreams are native-only
    }
    conformance_through("stdio").await;
}

/// A gateway with two upstreams: the fixture (`fixture__*`) and the reference server
/// `@modelcontextprotocol/server-everything` (`everything__*`), both over streamable HTTP.
struct TwoUpstreams {
    gw: TestGateway,
    /// The fixture's calls log.
    calls: std::path::PathBuf,
    _fixture: Fixture,
    _everything: Fixture,
    _dir: TempDir,
}

async fn register(url: &str, collection: &str, body: &Value) -> Value {
    let r = http_client()
        .post(format!("{url}/{collection}"))
        .json(body)
        .send()
        .await
        .expect("register");
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 201, "{collection}: {v}");
    v
}

async fn start_two(settings: &[&str]) -> TwoUpstreams {
    let dir = TempDir::new("two-upstreams");
    let calls = dir.join("calls.jsonl");
    let fixture = Fixture::start("streamable-http", Some(&calls));
    let everything = Fixture::everything("streamableHttp");
    let gw = start_target(&dir, settings).expect("start gateway");
    register(
        gw.url(),
        "gateways",
        &json!({"name": "fixture", "url": format!("{}/mcp", fixture.url)}),
    )
    .await;
    register(
        gw.url(),
        "gateways",
        &json!({"name": "everything", "url": format!("{}/mcp", everything.url)}),
    )
    .await;
    TwoUpstreams {
        gw,
        calls,
        _fixture: fixture,
        _everything: everything,
        _dir: dir,
    }
}

fn run_client(cmd: &mut Command, pass: &str) {
    let (ok, out) = run_with_timeout(cmd, Duration::from_secs(120)).expect("run client");
    assert!(ok && out.contains(pass), "client failed:\n{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_uses_two_upstreams_at_once() {
    let two = start_two(&[]).await;
    let url = format!("{}/mcp", two.gw.url());
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()));
        cmd.arg(repo_root().join("tests/clients/federation_client.py"))
            .arg(&url);
        run_client(&mut cmd, "PASS python federation");
    })
    .await
    .expect("join");
    drop(two);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_sdk_uses_two_upstreams_at_once() {
    let two = start_two(&[]).await;
    let url = format!("{}/mcp", two.gw.url());
    let calls = two.calls.clone();
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(node_bin());
        cmd.arg(repo_root().join("tests/clients/ts_federation.mjs"))
            .arg(&url)
            .arg(&calls)
            .current_dir(repo_root());
        run_client(&mut cmd, "PASS typescript federation");
    })
    .await
    .expect("join");
    drop(two);
}
