//! Federation end to end: the gateway fronting the project's fixture upstream. The official
//! conformance suite's active scenarios run against a virtual server (`/servers/conf/mcp`,
//! `original_names = true`) whose only upstream is the fixture, connected over streamable HTTP,
//! legacy SSE and stdio; the fixture's calls log proves each run really reached it.

use std::process::Command;
use std::time::{Duration, Instant};

use mcpgw_e2e::{
    active_suite_through_gateway, assert_conformance, assert_fixture_reached, http_client, node_bin, repo_root,
    run_conformance, run_with_timeout, skip, start_target, target, Fixture, RawSession, Target, TempDir, TestGateway,
    Via,
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

/// A gateway fronting the fixture over `transport`, started with more `fixture_args`
/// (`--standalone-requests`, `--event-store`).
async fn start_federated_with(transport: &str, fixture_args: &[&str]) -> Federated {
    let dir = TempDir::new("federation");
    let calls = dir.join("calls.jsonl");
    let (fixture, upstream) = if transport == "stdio" {
        let server = repo_root().join("tests/fixture/server.mjs");
        let args: Vec<&str> = [
            server.to_str().expect("utf-8"),
            "--transport",
            "stdio",
            "--calls-log",
            calls.to_str().expect("utf-8"),
        ]
        .into_iter()
        .chain(fixture_args.iter().copied())
        .collect();
        let up = json!({
            "name": "fixture",
            "transport": "stdio",
            "command": node_bin().to_str().expect("utf-8"),
            "args": args,
        });
        (None, up)
    } else {
        let f = Fixture::start_with(transport, 0, Some(&calls), fixture_args);
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

async fn conformance_through(transport: &str, fixture_args: &[&str]) {
    let fed = start_federated_with(transport, fixture_args).await;
    // The suite derives the valid Host for its DNS-rebinding check from the URL: use localhost.
    let url = format!("http://localhost:{}/servers/conf/mcp", fed.gw.addr().port());
    let run = tokio::task::spawn_blocking(move || run_conformance(&url, &[], Duration::from_secs(600)))
        .await
        .expect("join");
    assert_conformance(
        &run,
        &active_suite_through_gateway(),
        &[],
        &format!("the gateway fronting the fixture over {transport} {fixture_args:?}"),
    );
    assert_fixture_reached(&fed.calls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_through_the_gateway_over_streamable_http() {
    conformance_through("streamable-http", &[]).await;
}

/// The whole suite through an upstream that sends sampling and elicitation on its standalone
/// stream and keeps events for replay (like the suite's own 0.1.16 fixture).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_through_the_gateway_with_standalone_stream_requests() {
    conformance_through("streamable-http", &["--standalone-requests", "--event-store"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_through_the_gateway_over_sse() {
    conformance_through("sse", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_through_the_gateway_over_stdio() {
    if target() == Target::Edge {
        return skip(
            "conformance_through_the_gateway_over_stdio",
            "stdio upstreams are native-only",
        );
    }
    conformance_through("stdio", &[]).await;
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

/// The sampling answer a raw client gives, naming the run so answers cannot be confused.
fn sampling_reply(run: usize) -> impl Fn(&Value) -> Value {
    move |req: &Value| match req["method"].as_str() {
        Some("sampling/createMessage") => {
            json!({"role": "assistant", "content": {"type": "text", "text": format!("reply-{run}")}, "model": "raw", "stopReason": "endTurn"})
        }
        Some("elicitation/create") => {
            json!({"action": "accept", "content": {"username": format!("user-{run}"), "email": "a@b.c"}})
        }
        _ => json!({}),
    }
}

/// An upstream that sends a tool's sampling and elicitation requests on its standalone GET
/// stream (no relatedRequestId, as servers on the TS SDK 1.x do, the conformance suite's own
/// fixture among them), with an event store: 20 sessions in a row, each must get both requests
/// and its own answers back in the results. Half keep a GET stream of their own open (the
/// request reaches them there), half do not (it comes on the call's stream). String ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_on_the_upstream_standalone_stream_reach_the_client_20_of_20() {
    let fed = start_federated_with("streamable-http", &["--standalone-requests", "--event-store"]).await;
    let endpoint = format!("{}/servers/conf/mcp", fed.gw.url());
    let mut vias = std::collections::BTreeSet::new();
    for run in 0..20 {
        let mut s = RawSession::open(&endpoint, json!({"sampling": {}, "elicitation": {}}))
            .await
            .expect("session");
        if run % 2 == 0 {
            s.open_standalone().await.expect("GET stream");
        }
        let (answer, seen) = s
            .call(
                json!(format!("s-{run}")),
                "tools/call",
                json!({"name": "test_sampling", "arguments": {"prompt": "hi"}}),
                sampling_reply(run),
            )
            .await
            .unwrap_or_else(|e| panic!("run {run}: {e}"));
        assert_eq!(
            answer["result"]["content"][0]["text"],
            format!("LLM response: reply-{run}"),
            "run {run}: {answer}"
        );
        let asked: Vec<&(Via, Value)> = seen
            .iter()
            .filter(|(_, m)| m["method"] == "sampling/createMessage")
            .collect();
        assert_eq!(asked.len(), 1, "run {run}: one sampling request: {seen:?}");
        vias.insert(format!("{:?}", asked[0].0));
        let (answer, _) = s
            .call(
                json!(format!("e-{run}")),
                "tools/call",
                json!({"name": "test_elicitation", "arguments": {"message": "who?"}}),
                sampling_reply(run),
            )
            .await
            .unwrap_or_else(|e| panic!("run {run}: {e}"));
        let text = answer["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(text.contains(&format!("user-{run}")), "run {run}: {answer}");
        assert_eq!(s.delete().await.expect("delete"), 200);
    }
    assert_eq!(
        vias.len(),
        2,
        "requests came both ways (standalone and call stream): {vias:?}"
    );
}

/// SEP-1699 polling towards an upstream: the fixture closes the POST stream of
/// `test_reconnection` mid-call (after a priming event with `retry:`); the gateway resumes it
/// with GET + Last-Event-ID and the client gets the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_stream_closed_mid_call_is_resumed() {
    let fed = start_federated_with("streamable-http", &["--event-store"]).await;
    let endpoint = format!("{}/servers/conf/mcp", fed.gw.url());
    let mut s = RawSession::open(&endpoint, json!({})).await.expect("session");
    let (answer, _) = s
        .call(
            json!(7),
            "tools/call",
            json!({"name": "test_reconnection", "arguments": {}}),
            |_| json!({}),
        )
        .await
        .expect("call");
    assert_eq!(
        answer["result"]["content"][0]["text"], "Reconnection test completed",
        "{answer}"
    );
    assert_eq!(answer["result"]["isError"], Value::Null, "{answer}");
}

/// The upstream logs on its standalone stream, closes it, then logs again: the gateway reopens
/// the stream with Last-Event-ID, so both messages reach the client's own GET stream, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_standalone_stream_is_reopened_after_it_closes() {
    let fed = start_federated_with("streamable-http", &["--event-store"]).await;
    let endpoint = format!("{}/servers/conf/mcp", fed.gw.url());
    let mut s = RawSession::open(&endpoint, json!({})).await.expect("session");
    s.open_standalone().await.expect("GET stream");
    for round in 0..2 {
        let notice = format!("notice-{round}");
        let (answer, seen) = s
            .call(
                json!(round),
                "tools/call",
                json!({"name": "mcpgw_standalone_notice", "arguments": {"text": notice}}),
                |_| json!({}),
            )
            .await
            .expect("call");
        assert_eq!(answer["result"]["content"][0]["text"], "noticed", "{answer}");
        // What came on the client's stream while the call ran, then after it.
        let mut got: Vec<Value> = seen
            .iter()
            .filter(|(via, m)| *via == Via::Standalone && m["method"] == "notifications/message")
            .map(|(_, m)| m["params"]["data"].clone())
            .collect();
        while got.len() < 2 {
            let Some(m) = s.next_standalone(Duration::from_secs(10)).await else {
                panic!("round {round}: the client's stream got only {got:?}");
            };
            if m["method"] == "notifications/message" {
                got.push(m["params"]["data"].clone());
            }
        }
        assert_eq!(
            got,
            vec![json!(format!("before-{notice}")), json!(notice)],
            "round {round}"
        );
    }
}
