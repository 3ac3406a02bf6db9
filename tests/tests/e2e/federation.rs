//! Federation end to end: the gateway fronting the project's fixture upstream. The official
//! conformance suite's active scenarios run against a virtual server (`/servers/conf/mcp`,
//! `original_names = true`) whose only upstream is the fixture, connected over streamable HTTP,
//! legacy SSE and stdio; the fixture's calls log proves each run really reached it.

use std::process::Command;
use std::time::{Duration, Instant};

use mcpgw_e2e::{
    active_suite_through_gateway, assert_conformance, assert_fixture_reached, http_client, node_bin, repo_root,
    run_conformance, run_with_timeout, skip, start_target, start_target_with, target, Fixture, RawSession, Target,
    TempDir, TestGateway, Via,
};
use serde_json::{json, Value};

impl Federated {
    /// A hand-driven session on the virtual server, declaring `capabilities`.
    async fn session(&self, capabilities: Value) -> RawSession {
        let endpoint = format!("{}/servers/conf/mcp", self.gw.url());
        RawSession::open(&endpoint, capabilities).await.expect("session")
    }
}

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
    start_federated_as(transport, fixture_args, json!({})).await
}

/// [`start_federated_with`], the upstream's definition extended with `extra` fields.
async fn start_federated_as(transport: &str, fixture_args: &[&str], extra: Value) -> Federated {
    start_federated_full(transport, fixture_args, extra, &[]).await
}

/// [`start_federated_as`], the gateway started with `settings` too.
async fn start_federated_full(transport: &str, fixture_args: &[&str], extra: Value, settings: &[&str]) -> Federated {
    start_federated_env(transport, fixture_args, extra, settings, &[]).await
}

/// [`start_federated_full`], the gateway's environment with `env` too.
async fn start_federated_env(
    transport: &str,
    fixture_args: &[&str],
    extra: Value,
    settings: &[&str],
    env: &[(&str, &str)],
) -> Federated {
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
    } else if let Some(era) = transport.strip_prefix("v2-") {
        // The dual-era fixture: "v2-dual" or "v2-modern".
        let f = Fixture::modern(era, Some(&calls));
        let url = format!("{}/mcp", f.url);
        (
            Some(f),
            json!({"name": "fixture", "url": url, "transport": "streamable-http"}),
        )
    } else {
        let f = Fixture::start_with(transport, 0, Some(&calls), fixture_args);
        let url = if transport == "sse" {
            format!("{}/sse", f.url)
        } else {
            format!("{}/mcp", f.url)
        };
        (Some(f), json!({"name": "fixture", "url": url, "transport": transport}))
    };
    let mut upstream = upstream;
    if let (Some(u), Some(e)) = (upstream.as_object_mut(), extra.as_object()) {
        u.extend(e.clone());
    }
    let server = json!({"name": "conf", "upstreams": ["fixture"], "original_names": true});
    let gw = match target() {
        Target::Native => {
            let mut cfg = String::from("[[upstream]]\n");
            for (k, v) in upstream.as_object().expect("object") {
                match v {
                    Value::String(s) => cfg.push_str(&format!("{k} = {}\n", toml_str(s))),
                    Value::Number(n) => cfg.push_str(&format!("{k} = {n}\n")),
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
            let mut args = vec!["--config", path.to_str().expect("utf-8")];
            args.extend_from_slice(settings);
            start_target_with(&dir, &args, env).expect("start gateway")
        }
        Target::Edge => {
            let gw = start_target_with(&dir, settings, env).expect("start edge");
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

/// Runs the 0.2 suite's scenarios `revision` requires through the gateway fronting the
/// session-era fixture; returns the run and the required scenarios.
async fn next_suite_through(revision: &'static str) -> (mcpgw_e2e::ConformanceRun, Vec<String>, Federated) {
    next_suite_via("streamable-http", revision).await
}

/// [`next_suite_through`] with the fixture started as `transport` says (see
/// [`start_federated_full`]).
async fn next_suite_via(
    transport: &str,
    revision: &'static str,
) -> (mcpgw_e2e::ConformanceRun, Vec<String>, Federated) {
    let fed = start_federated_with(transport, &[]).await;
    // A second upstream beside it with the same resource URIs (outside the virtual server):
    // the suite's reads, subscriptions and completions still reach the fixture.
    let twin = Fixture::start("streamable-http", None);
    let r = http_client()
        .post(format!("{}/gateways", fed.gw.url()))
        .json(&json!({"name": "twin", "url": format!("{}/mcp", twin.url)}))
        .send()
        .await
        .expect("register the twin");
    assert_eq!(r.status(), 201, "twin: {}", r.text().await.unwrap_or_default());
    let url = format!("http://localhost:{}/servers/conf/mcp", fed.gw.addr().port());
    let run = tokio::task::spawn_blocking(move || {
        mcpgw_e2e::run_conformance_of(
            mcpgw_e2e::Suite::Next,
            &url,
            &["--requirements", revision],
            Duration::from_secs(600),
        )
    })
    .await
    .expect("join");
    (run, mcpgw_e2e::required_server_scenarios(revision), fed)
}

/// The failing checks of `scenarios` in `run` (a scenario that did not run counts as one).
fn failures_of(run: &mcpgw_e2e::ConformanceRun, scenarios: &[String]) -> Vec<String> {
    checks_of(run, scenarios, &["FAILURE"])
}

/// The checks of `scenarios` in `run` whose status is one of `statuses` (a scenario that did not
/// run counts as one).
fn checks_of(run: &mcpgw_e2e::ConformanceRun, scenarios: &[String], statuses: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for s in scenarios {
        match run.scenarios.get(s) {
            None => out.push(format!("{s}: did not run")),
            Some(checks) => out.extend(
                checks
                    .iter()
                    .filter(|(_, st)| statuses.contains(&st.as_str()))
                    .map(|(id, st)| format!("{s}: {id} ({st})")),
            ),
        }
    }
    out
}

/// Conformance 0.2.0-alpha.12 at 2025-11-25 through the gateway: every required scenario
/// passes (0 failed checks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_suite_session_era_through_the_gateway() {
    let (run, required, fed) = next_suite_through("2025-11-25").await;
    assert!(required.len() >= 30, "requirements read: {required:?}");
    let failed = failures_of(&run, &required);
    assert!(
        failed.is_empty(),
        "2025-11-25 failures:\n{}\n{}",
        failed.join("\n"),
        run.output
    );
    assert_fixture_reached(&fed.calls);
}

/// Conformance 0.2.0-alpha.12 at 2026-07-28 through a virtual server whose upstream speaks
/// only the session era (the fixture): every scenario carried over from 2025-11-25 passes, and
/// so do caching, resource not found and server-stateless (whose diagnostic tools ask for a
/// capability the client did not declare, elicit mid-call and log: -32021 with 400,
/// `input_required` instead of a request on the stream, no logs without logLevel). The
/// input-required-result-* scenarios expect a 2026-07-28 server's own input keys: reported by
/// the CLI's output, not asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_suite_stateless_era_through_a_session_era_upstream() {
    let (run, required, _fed) = next_suite_through("2026-07-28").await;
    let session_era = mcpgw_e2e::required_server_scenarios("2025-11-25");
    let must: Vec<String> = required
        .iter()
        .filter(|s| {
            session_era.contains(s)
                || ["caching", "sep-2164-resource-not-found", "server-stateless"].contains(&s.as_str())
        })
        .cloned()
        .collect();
    assert!(must.len() >= 20, "carried-over scenarios: {must:?}");
    let failed = failures_of(&run, &must);
    assert!(
        failed.is_empty(),
        "2026-07-28 failures:\n{}\n{}",
        failed.join("\n"),
        run.output
    );
}

/// The eras (`"modern"` or `"legacy"`) in which the fixture's calls log shows `name` served.
fn eras_serving(calls: &std::path::Path, name: &str) -> std::collections::BTreeSet<String> {
    let log = std::fs::read_to_string(calls).unwrap_or_default();
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["name"] == name)
        .filter_map(|v| v["era"].as_str().map(str::to_string))
        .collect()
}

/// Conformance 0.2.0-alpha.12 through a virtual server fronting the dual-era fixture (a second
/// upstream with the same resource URIs registered beside it), one run per revision: every
/// required scenario passes, with 0 failed checks and 0 warnings. A 2026-07-28 client is
/// served by the upstream's 2026-07-28 side (its input_required results passed through with
/// their requestState sealed by the gateway, a tampered one refused), a 2025-11-25 client by
/// its session side: the fixture's calls log says which era reached it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_suite_both_revisions_through_the_dual_era_fixture() {
    for (revision, era) in [("2026-07-28", "modern"), ("2025-11-25", "legacy")] {
        let (run, required, fed) = next_suite_via("v2-dual", revision).await;
        assert!(required.len() >= 20, "requirements read: {required:?}");
        // No warning either: the judged configuration (a second upstream with the same
        // resource URIs beside the virtual server's).
        let failed = checks_of(&run, &required, &["FAILURE", "WARNING"]);
        assert!(
            failed.is_empty(),
            "{revision} failures through the dual-era fixture:\n{}\n{}",
            failed.join("\n"),
            run.output
        );
        let not_required: Vec<String> = run
            .scenarios
            .iter()
            .filter(|(s, _)| !required.contains(s))
            .map(|(s, checks)| {
                let failed = checks.iter().filter(|(_, st)| st == "FAILURE").count();
                format!("{s} ({failed} of {} failed)", checks.len())
            })
            .collect();
        eprintln!("{revision}: not required: {}", not_required.join(", "));
        for name in ["test_simple_text", "test_tool_with_progress"] {
            assert_eq!(
                eras_serving(&fed.calls, name),
                [era.to_string()].into(),
                "{revision}: {name} must reach the fixture's {era} side"
            );
        }
        if revision == "2026-07-28" {
            for s in [
                "input-required-result-multi-round",
                "input-required-result-tampered-state",
            ] {
                assert!(run.scenarios.contains_key(s), "{s} did not run");
            }
            assert_eq!(
                eras_serving(&fed.calls, "test_input_required_result_multi_round"),
                ["modern".to_string()].into()
            );
        }
    }
}

/// The multi round-trip scenarios of 2026-07-28 through the dual-era fixture, on a gateway
/// deployed as a new user does: no `MCPGW_ENCRYPTION_KEY` (on the edge the Worker, which seals
/// the upstream's requestState, and the object that may serve the retry, share the deployment's
/// key kept in D1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_round_input_required_works_without_an_encryption_key() {
    let fed = start_federated_env("v2-dual", &[], json!({}), &[], &[("MCPGW_ENCRYPTION_KEY", "")]).await;
    let url = format!("http://localhost:{}/servers/conf/mcp", fed.gw.addr().port());
    let scenarios = [
        "input-required-result-request-state",
        "input-required-result-multi-round",
        "input-required-result-multiple-input-requests",
    ];
    for scenario in scenarios {
        let u = url.clone();
        let run = tokio::task::spawn_blocking(move || {
            mcpgw_e2e::run_conformance_of(
                mcpgw_e2e::Suite::Next,
                &u,
                &["--spec-version", "2026-07-28", "--scenario", scenario],
                Duration::from_secs(300),
            )
        })
        .await
        .expect("join");
        let wanted = [scenario.to_string()];
        let failed = failures_of(&run, &wanted);
        assert!(
            failed.is_empty(),
            "{scenario} without a key:\n{}\n{}",
            failed.join("\n"),
            run.output
        );
        assert!(
            run.scenarios[scenario].len() >= 2,
            "{scenario} ran its checks: {}",
            run.output
        );
    }
}

/// A session-era client (TS SDK 1.32) calls the dual-era fixture's multi round-trip tools
/// through the gateway; its elicitation, sampling and roots handlers answer. In front of the
/// fixture's 2026-07-28-only mode the gateway translates (the upstream's input_required becomes
/// requests on the client's POST stream, the retry carries the answers and the upstream's
/// requestState); in front of its dual mode the gateway uses the upstream's session era. The
/// calls log says which era reached the fixture.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ts_session_client_answers_input_required_tools_of_either_upstream_mode() {
    for (mode, era) in [("v2-modern", "modern"), ("v2-dual", "legacy")] {
        let fed = start_federated_with(mode, &[]).await;
        let url = format!("{}/servers/conf/mcp", fed.gw.url());
        tokio::task::spawn_blocking(move || {
            let mut cmd = Command::new(node_bin());
            cmd.arg(repo_root().join("tests/clients/ts_input_required.mjs"))
                .arg(&url)
                .current_dir(repo_root());
            run_client(&mut cmd, "PASS typescript input_required");
        })
        .await
        .expect("join");
        assert_eq!(
            eras_serving(&fed.calls, "test_input_required_result_multi_round"),
            [era.to_string()].into(),
            "{mode}"
        );
    }
}

/// A session-era client in front of a 2026-07-28-only upstream: its `resources/subscribe` and
/// its GET stream become the upstream link's `subscriptions/listen` (reopened with the URI it
/// watches), so an update of the resource reaches the client's stream; a tool added upstream
/// reaches it as `tools/list_changed` and the new tool is listed (the catalog re-read).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_client_hears_a_modern_upstreams_updates_and_list_changes() {
    let fed = start_federated_with("v2-modern", &[]).await;
    let mut s = fed.session(json!({})).await;
    s.open_standalone().await.expect("GET stream");
    let params = json!({"uri": "test://watched-resource"});
    let (sub, _) = s
        .call(json!(1), "resources/subscribe", params, |_| None)
        .await
        .expect("subscribe");
    assert!(sub.get("result").is_some(), "{sub}");
    // The listen stream is reopened with the URI; touch until the update comes through.
    let mut heard = None;
    for i in 0..20 {
        let (r, _) = s
            .tool(json!(10 + i), "mcpgw_touch", json!({"uri": "test://watched-resource"}))
            .await
            .expect("touch");
        assert!(r.get("result").is_some(), "{r}");
        if let Some(m) = s.next_standalone(Duration::from_millis(500)).await {
            heard = Some(m);
            break;
        }
    }
    let m = heard.expect("notifications/resources/updated on the GET stream");
    assert_eq!(m["method"], "notifications/resources/updated", "{m}");
    assert_eq!(m["params"]["uri"], "test://watched-resource");
    let (r, _) = s
        .tool(json!(40), "test_trigger_tool_change", json!({}))
        .await
        .expect("trigger");
    assert!(r.get("result").is_some(), "{r}");
    let mut changed = false;
    for _ in 0..20 {
        match s.next_standalone(Duration::from_millis(500)).await {
            Some(m) if m["method"] == "notifications/tools/list_changed" => {
                changed = true;
                break;
            }
            _ => {}
        }
    }
    assert!(changed, "notifications/tools/list_changed on the GET stream");
    let (list, _) = s
        .call(json!(41), "tools/list", json!({}), |_| None)
        .await
        .expect("list");
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .map(|t| t.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();
    assert!(names.contains(&"added_tool_1"), "{names:?}");
}

/// A 2026-07-28 client's `subscriptions/listen` on a virtual server hears a list change made
/// at its 2026-07-28 upstream: the gateway's shared link listens to the upstream (opened by the
/// listen stream if no call opened it; on the edge in the stream's own Durable Object), re-reads
/// the catalog on its list change, and the listener gets `notifications/tools/list_changed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modern_listener_hears_list_changes_made_at_a_modern_upstream() {
    let fed = start_federated_with("v2-modern", &[]).await;
    let url = format!("{}/servers/conf/mcp", fed.gw.url());
    let mut params = json!({"notifications": {"toolsListChanged": true}});
    params["_meta"] = crate::stateless::meta();
    let r = http_client()
        .post(&url)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "subscriptions/listen")
        .json(&json!({"jsonrpc": "2.0", "id": "l-1", "method": "subscriptions/listen", "params": params}))
        .send()
        .await
        .expect("listen");
    assert_eq!(r.status(), 200);
    let mut events = Box::pin(crate::stateless::sse_messages(r));
    let ack = crate::stateless::next_message(&mut events).await;
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged", "{ack}");
    let mut p = json!({"name": "test_trigger_tool_change", "arguments": {}});
    p["_meta"] = crate::stateless::meta();
    let a = crate::stateless::post(
        &url,
        json!(2),
        "tools/call",
        p,
        &[("mcp-name", "test_trigger_tool_change")],
    )
    .await;
    assert!(a.last().get("result").is_some(), "{:?}", a.messages);
    let note = crate::stateless::next_message(&mut events).await;
    assert_eq!(note["method"], "notifications/tools/list_changed", "{note}");
}

/// `server/discover` on a virtual server is merged from what it serves: the capabilities its
/// upstreams offer or its own members need, not every capability the gateway has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_virtual_servers_discover_is_merged_from_what_it_serves() {
    let fed = start_federated_with("v2-modern", &[]).await;
    let http = http_client();
    for (collection, body) in [
        (
            "tools",
            json!({"name": "noted", "url": "http://127.0.0.1:9/x", "input_schema": {"type": "object"}}),
        ),
        (
            "servers",
            json!({"name": "solo", "tools": ["noted"], "description": "one REST tool"}),
        ),
    ] {
        let r = http
            .post(format!("{}/{collection}", fed.gw.url()))
            .json(&body)
            .send()
            .await
            .expect("create");
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    }
    let discover = |server: &'static str| {
        let url = format!("{}/servers/{server}/mcp", fed.gw.url());
        async move {
            let p = json!({"_meta": crate::stateless::meta()});
            let a = crate::stateless::post(&url, json!(1), "server/discover", p, &[]).await;
            a.last()["result"].clone()
        }
    };
    let conf = discover("conf").await;
    for kind in ["tools", "resources", "prompts", "completions", "logging"] {
        assert!(conf["capabilities"].get(kind).is_some(), "conf lacks {kind}: {conf}");
    }
    let solo = discover("solo").await;
    assert!(solo["capabilities"].get("tools").is_some(), "{solo}");
    for kind in ["resources", "prompts", "completions"] {
        assert!(solo["capabilities"].get(kind).is_none(), "solo has {kind}: {solo}");
    }
    assert_eq!(solo["instructions"], "one REST tool");
}

/// A 2026-07-28 client's `subscriptions/listen` naming a federated resource hears its updates,
/// from a session-era upstream (the shared session subscribes) and from a 2026-07-28 one (the
/// shared link's listen stream watches it): the acknowledgement names it, and each update comes
/// tagged. On the edge such a stream is served by a Durable Object of its own, where the link
/// may outlive the requests around it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modern_listener_hears_updates_of_federated_resources() {
    for mode in ["streamable-http", "v2-modern"] {
        let fed = start_federated_with(mode, &[]).await;
        let url = format!("{}/servers/conf/mcp", fed.gw.url());
        let uri = "test://watched-resource";
        let mut params = json!({"notifications": {"resourceSubscriptions": [uri]}});
        params["_meta"] = crate::stateless::meta();
        let r = http_client()
            .post(&url)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "subscriptions/listen")
            .json(&json!({"jsonrpc": "2.0", "id": "w-1", "method": "subscriptions/listen", "params": params}))
            .send()
            .await
            .expect("listen");
        assert_eq!(r.status(), 200);
        // Read on a task of its own, so that waiting with a deadline loses nothing.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
        let reader = tokio::spawn(async move {
            let mut events = Box::pin(crate::stateless::sse_messages(r));
            loop {
                let m = crate::stateless::next_message(&mut events).await;
                if tx.send(m).is_err() {
                    return;
                }
            }
        });
        let ack = rx.recv().await.expect("acknowledgement");
        assert_eq!(
            ack["params"]["notifications"]["resourceSubscriptions"],
            json!([uri]),
            "{mode}: {ack}"
        );
        let mut heard = None;
        for i in 0..20 {
            let mut p = json!({"name": "mcpgw_touch", "arguments": {"uri": uri}});
            p["_meta"] = crate::stateless::meta();
            let a = crate::stateless::post(&url, json!(10 + i), "tools/call", p, &[("mcp-name", "mcpgw_touch")]).await;
            assert!(a.last().get("result").is_some(), "{mode}: {:?}", a.messages);
            if let Ok(m) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
                heard = m;
                break;
            }
        }
        reader.abort();
        let m = heard.unwrap_or_else(|| {
            panic!(
                "{mode}: no update reached the listener: {}",
                std::fs::read_to_string(&fed.calls).unwrap_or_default()
            )
        });
        assert_eq!(m["method"], "notifications/resources/updated", "{mode}: {m}");
        assert_eq!(m["params"]["uri"], uri);
        assert_eq!(m["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], "w-1");
    }
}

/// A 2026-07-28 upstream's tool with a parameter marked `x-mcp-header` (SEP-2243) refuses a
/// request without the matching `Mcp-Param-*` header: the gateway sets it from the arguments,
/// for a session-era client and for a 2026-07-28 one alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modern_upstreams_header_parameters_are_set_by_the_gateway() {
    let fed = start_federated_with("v2-modern", &[]).await;
    let mut s = fed.session(json!({})).await;
    let (r, _) = s
        .tool(json!(1), "mcpgw_region", json!({"region": "eu-west"}))
        .await
        .expect("call");
    assert_eq!(first_text(&r), "region=eu-west header=eu-west", "{r}");
    let url = format!("{}/servers/conf/mcp", fed.gw.url());
    let mut p = json!({"name": "mcpgw_region", "arguments": {"region": "Zürich"}});
    p["_meta"] = crate::stateless::meta();
    let a = crate::stateless::post(&url, json!(2), "tools/call", p, &[("mcp-name", "mcpgw_region")]).await;
    let text = a.last()["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(text, "region=Zürich header=Zürich", "{:?}", a.messages);
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
pub(crate) struct TwoUpstreams {
    pub(crate) gw: TestGateway,
    /// The fixture's calls log.
    pub(crate) calls: std::path::PathBuf,
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

impl TwoUpstreams {
    /// The native gateway's registry file (another process may open it too).
    pub(crate) fn database(&self) -> std::path::PathBuf {
        self._dir.join("gw.db")
    }
}

/// A gateway with two upstreams registered: the fixture (`fixture__*`) and the reference server
/// (`everything__*`), both over streamable HTTP.
pub(crate) async fn start_two(settings: &[&str]) -> TwoUpstreams {
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

pub(crate) fn run_client(cmd: &mut Command, pass: &str) {
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

/// The Python SDK in the stateless era calls session-era upstreams' sampling and elicitation
/// tools: the gateway asks it with `input_required`, its callbacks answer (on the edge the call
/// is parked in a Durable Object of its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_in_the_stateless_era_answers_session_era_upstreams_through_input_required() {
    let two = start_two(&[]).await;
    let url = format!("{}/mcp", two.gw.url());
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()));
        cmd.arg(repo_root().join("tests/clients/mrtr_client.py")).arg(&url);
        run_client(&mut cmd, "PASS python mrtr");
    })
    .await
    .expect("join");
    drop(two);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_sdk_uses_two_upstreams_at_once() {
    let two = start_two(&[]).await;
    ts_federation(&two, format!("{}/mcp", two.gw.url())).await;
    drop(two);
}

/// The TS SDK's federation client (`tests/clients/ts_federation.mjs`) at `url` (its transport
/// chosen by the scheme) through the two upstreams of `two`.
pub(crate) async fn ts_federation(two: &TwoUpstreams, url: String) {
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
}

/// The sampling answer a raw client gives, naming the run so answers cannot be confused.
fn sampling_reply(run: usize) -> impl Fn(&Value) -> Option<Value> {
    move |req: &Value| {
        Some(match req["method"].as_str() {
            Some("sampling/createMessage") => {
                json!({"role": "assistant", "content": {"type": "text", "text": format!("reply-{run}")}, "model": "raw", "stopReason": "endTurn"})
            }
            Some("elicitation/create") => {
                json!({"action": "accept", "content": {"username": format!("user-{run}"), "name": format!("user-{run}"), "email": "a@b.c"}})
            }
            _ => json!({}),
        })
    }
}

/// Calls the fixture's `test_sampling` as request `s-{run}`, answering its sampling request
/// with `reply-{run}`: the result must carry that reply. What came before the answer.
async fn sample(s: &mut RawSession, run: usize) -> Vec<(Via, Value)> {
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
    seen
}

/// An upstream that sends a tool's sampling and elicitation requests on its standalone GET
/// stream (no relatedRequestId, as servers on the TS SDK 1.x do, the conformance suite's own
/// fixture among them), with an event store: 20 sessions in a row, each must get both requests
/// and its own answers back in the results. Half keep a GET stream of their own open (the
/// request reaches them there), half do not (it comes on the call's stream). String ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_on_the_upstream_standalone_stream_reach_the_client_20_of_20() {
    let vias = unrelated_requests_20_times("streamable-http", &["--standalone-requests", "--event-store"]).await;
    assert_eq!(
        vias.len(),
        2,
        "requests came both ways (standalone and call stream): {vias:?}"
    );
}

/// The same over the duplex transports, where the upstream's unrelated requests share its one
/// stream: they go with the call in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrelated_requests_over_legacy_sse_reach_the_client_20_of_20() {
    let vias = unrelated_requests_20_times("sse", &["--standalone-requests"]).await;
    assert_eq!(vias, ["Call".to_string()].into(), "{vias:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrelated_requests_over_stdio_reach_the_client_20_of_20() {
    if target() == Target::Edge {
        return skip(
            "unrelated_requests_over_stdio_reach_the_client_20_of_20",
            "stdio upstreams are native-only",
        );
    }
    let vias = unrelated_requests_20_times("stdio", &["--standalone-requests"]).await;
    assert_eq!(vias, ["Call".to_string()].into(), "{vias:?}");
}

/// 20 sessions, each calling test_sampling and test_elicitation through an upstream started
/// with `fixture_args`; where each sampling request arrived (call or standalone stream).
async fn unrelated_requests_20_times(transport: &str, fixture_args: &[&str]) -> std::collections::BTreeSet<String> {
    let fed = start_federated_with(transport, fixture_args).await;
    let endpoint = format!("{}/servers/conf/mcp", fed.gw.url());
    let mut vias = std::collections::BTreeSet::new();
    for run in 0..20 {
        let mut s = RawSession::open(&endpoint, json!({"sampling": {}, "elicitation": {}}))
            .await
            .expect("session");
        if run % 2 == 0 {
            s.open_standalone().await.expect("GET stream");
        }
        let seen = sample(&mut s, run).await;
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
    vias
}

/// SEP-1699 polling towards an upstream: the fixture closes the POST stream of
/// `test_reconnection` mid-call (after a priming event with `retry:`); the gateway resumes it
/// with GET + Last-Event-ID and the client gets the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_stream_closed_mid_call_is_resumed() {
    let fed = start_federated_with("streamable-http", &["--event-store"]).await;
    let mut s = fed.session(json!({})).await;
    let (answer, _) = s.tool(json!(7), "test_reconnection", json!({})).await.expect("call");
    assert_eq!(
        answer["result"]["content"][0]["text"], "Reconnection test completed",
        "{answer}"
    );
    assert_eq!(answer["result"]["isError"], Value::Null, "{answer}");
}

/// SEP-1699 towards clients, as the conformance suite checks it (`server-sse-polling`,
/// 0.2.0-alpha.12): through the gateway, the POST stream of `test_reconnection` opens with a
/// priming event, says `retry:`, closes where the upstream closed its own, and its answer comes
/// on the client's GET with Last-Event-ID. All three checks pass, and none warns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_polling_passes_through_the_gateway() {
    let fed = start_federated_with("streamable-http", &["--event-store"]).await;
    let url = format!("http://localhost:{}/servers/conf/mcp", fed.gw.addr().port());
    let run = tokio::task::spawn_blocking(move || {
        mcpgw_e2e::run_conformance_of(
            mcpgw_e2e::Suite::Next,
            &url,
            &["--scenario", "server-sse-polling", "--spec-version", "2025-11-25"],
            Duration::from_secs(120),
        )
    })
    .await
    .expect("join");
    let checks = run.scenarios.get("server-sse-polling").cloned().unwrap_or_default();
    let passed: Vec<&str> = checks
        .iter()
        .filter(|(_, st)| st == "SUCCESS")
        .map(|(id, _)| id.as_str())
        .collect();
    // On the edge, what the Worker logged says why.
    let worker_log = fed
        .gw
        .edge_state_dir()
        .and_then(|d| std::fs::read_to_string(d.join("wrangler.log")).ok())
        .unwrap_or_default();
    let must = [
        "server-sse-priming-event",
        "server-sse-retry-field",
        "server-sse-disconnect-resume",
    ];
    let bad: Vec<_> = checks
        .iter()
        .filter(|(_, st)| st == "FAILURE" || st == "WARNING")
        .collect();
    assert!(bad.is_empty(), "{bad:?}\n{}\n{worker_log}", run.output);
    for check in &must {
        assert!(
            passed.contains(check),
            "{check} did not pass: {checks:?}\n{}\n{worker_log}",
            run.output
        );
    }
}

/// A client that drops its POST stream mid-call does not end the call: a GET with the last
/// event id it saw (the priming event's) replays what followed, then the answer when it comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_outlives_its_dropped_stream_and_is_resumed() {
    let fed = start_federated_with("streamable-http", &[]).await;
    let s = fed.session(json!({})).await;
    // Its progress first (the answer is then a stream, not JSON), then 1.5 s of work.
    let call = json!({"jsonrpc": "2.0", "id": "slow-1", "method": "tools/call",
        "params": {"name": "mcpgw_sleep", "arguments": {"ms": 1500, "progress": true},
                   "_meta": {"progressToken": "p"}}});
    let r = s.post(&call).await.expect("post");
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap_or_default()
        .starts_with("text/event-stream"));
    // Read up to the priming event's id, then hang up.
    let mut parser = mcpgw_core::proto::sse::Parser::default();
    let mut body = r.bytes_stream();
    let first_id = loop {
        use futures_lite::StreamExt;
        let chunk = tokio::time::timeout(Duration::from_secs(5), body.next())
            .await
            .expect("a first event in time")
            .expect("the stream is open")
            .expect("bytes");
        let _ = parser.push(&chunk);
        if let Some(id) = parser.last_event_id() {
            break id.to_string();
        }
    };
    assert!(parser.retry_ms().is_some(), "the priming event says when to resume");
    drop(body);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = http_client()
        .get(&s.endpoint)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &s.sid)
        .header("mcp-protocol-version", "2025-11-25")
        .header("last-event-id", &first_id)
        .send()
        .await
        .expect("resume");
    assert_eq!(r.status(), 200);
    let messages: Vec<Value> = tokio::time::timeout(Duration::from_secs(10), mcpgw_e2e::read_events(r, 2))
        .await
        .expect("the answer in time")
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    let answer = messages
        .iter()
        .find(|m| m["id"] == "slow-1")
        .unwrap_or_else(|| panic!("{messages:?}"));
    assert!(answer["result"].is_object(), "{answer}");
}

/// The upstream logs on its standalone stream, closes it, then logs again: the gateway reopens
/// the stream with Last-Event-ID, so both messages reach the client's own GET stream, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_standalone_stream_is_reopened_after_it_closes() {
    let fed = start_federated_with("streamable-http", &["--event-store"]).await;
    let mut s = fed.session(json!({})).await;
    s.open_standalone().await.expect("GET stream");
    for round in 0..2 {
        let notice = format!("notice-{round}");
        let (answer, seen) = s
            .tool(json!(round), "mcpgw_standalone_notice", json!({"text": notice}))
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

/// Waits (at most 10 s) until the fixture's calls log has `n` entries of `kind`; they are
/// returned (their names).
async fn wait_for_calls(calls: &std::path::Path, kind: &str, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found: Vec<String> = calls_of(calls)
            .into_iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, name)| name)
            .collect();
        if found.len() >= n {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "the calls log has {} '{kind}' entries, not {n}: {:?}",
            found.len(),
            calls_of(calls)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An idle session holds no upstream connection: once nothing keeps it (no call in flight, no
/// client stream, no subscription) the upstream's standalone stream is closed after the linger.
/// The next call reopens it and waits for it before going out: this upstream sends the call's
/// sampling request there and, with no event store, would drop it on a closed stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_sessions_upstream_stream_is_closed_and_reopened_for_the_next_call() {
    let fed = start_federated_full(
        "streamable-http",
        &["--standalone-requests"],
        json!({}),
        &["--standalone-linger-ms", "300"],
    )
    .await;
    let mut s = fed.session(json!({"sampling": {}})).await;
    for round in 0..2 {
        let (answer, _) = s.tool(json!(round), "test_simple_text", json!({})).await.expect("call");
        assert!(answer["result"].is_object(), "{answer}");
        wait_for_calls(&fed.calls, "standalone-closed", round + 1).await;
        let seen = sample(&mut s, round).await;
        assert!(seen
            .iter()
            .any(|(via, m)| *via == Via::Call && m["method"] == "sampling/createMessage"));
    }
    let opens = wait_for_calls(&fed.calls, "standalone-open", 3).await;
    assert_eq!(opens.len(), 3, "opened at start and once per round: {opens:?}");
    wait_for_calls(&fed.calls, "standalone-closed", 3).await;
    // A subscription keeps the stream that brings its updates open past the linger.
    let uri = "test://watched-resource";
    let (answer, _) = s
        .call(json!("sub"), "resources/subscribe", json!({"uri": uri}), |_| None)
        .await
        .expect("subscribe");
    assert!(answer["result"].is_object(), "{answer}");
    let args = json!({"ms": 1000, "text": "update", "uri": uri});
    let (answer, _) = s.tool(json!("later"), "mcpgw_later", args).await.expect("call");
    assert_eq!(answer["result"]["content"][0]["text"], "later", "{answer}");
    wait_for_calls(&fed.calls, "later", 1).await;
    let count = |kind: &str| calls_of(&fed.calls).iter().filter(|(k, _)| k == kind).count();
    assert_eq!(count("standalone-open"), 4, "{:?}", calls_of(&fed.calls));
    assert_eq!(
        count("standalone-closed"),
        3,
        "closed while subscribed: {:?}",
        calls_of(&fed.calls)
    );
    let (answer, _) = s
        .call(json!("unsub"), "resources/unsubscribe", json!({"uri": uri}), |_| None)
        .await
        .expect("unsubscribe");
    assert!(answer["result"].is_object(), "{answer}");
    wait_for_calls(&fed.calls, "standalone-closed", 4).await;
    // Only the stream closes, not the upstream session (both are named by its id).
    let log = calls_of(&fed.calls);
    let ours: Vec<&String> = log
        .iter()
        .filter(|(k, _)| k == "standalone-closed")
        .map(|(_, n)| n)
        .collect();
    assert!(ours.iter().all(|sid| *sid == ours[0]), "one upstream session: {log:?}");
    assert!(
        !log.contains(&("session-closed".to_string(), ours[0].clone())),
        "{log:?}"
    );
}

/// What an upstream with an event store says while its stream is parked is not lost: the client
/// opening a stream of its own wakes the link, which resumes with Last-Event-ID (the id of the
/// last event it had there) and relays the replayed message to the client's stream. While the
/// client's stream is open, the upstream stream stays open past the linger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_upstream_stream_resumes_when_the_client_opens_its_own() {
    let fed = start_federated_full(
        "streamable-http",
        &["--event-store"],
        json!({}),
        &["--standalone-linger-ms", "300"],
    )
    .await;
    let mut s = fed.session(json!({})).await;
    // A first message on the upstream's standalone stream gives the gateway an event id there.
    let (answer, _) = s
        .tool(json!(1), "mcpgw_later", json!({"ms": 50, "text": "first"}))
        .await
        .expect("call");
    assert_eq!(answer["result"]["content"][0]["text"], "later", "{answer}");
    wait_for_calls(&fed.calls, "standalone-closed", 1).await;
    let (answer, _) = s
        .tool(json!(2), "mcpgw_later", json!({"ms": 1500, "text": "while-parked"}))
        .await
        .expect("call");
    assert_eq!(answer["result"]["content"][0]["text"], "later", "{answer}");
    wait_for_calls(&fed.calls, "standalone-closed", 2).await;
    wait_for_calls(&fed.calls, "later", 2).await;
    s.open_standalone().await.expect("GET stream");
    let mut got = Vec::new();
    while let Some(data) = next_log(&mut s).await {
        got.push(data);
        if got.last() == Some(&json!("while-parked")) {
            break;
        }
    }
    assert_eq!(
        got.last(),
        Some(&json!("while-parked")),
        "{got:?} {:?}",
        calls_of(&fed.calls)
    );
    let opens = wait_for_calls(&fed.calls, "standalone-open", 3).await;
    assert!(!opens[2].is_empty(), "resumed without Last-Event-ID: {opens:?}");
    // Kept open past the linger while the client listens.
    let (answer, _) = s
        .tool(json!(3), "mcpgw_later", json!({"ms": 1000, "text": "kept"}))
        .await
        .expect("call");
    assert_eq!(answer["result"]["content"][0]["text"], "later", "{answer}");
    assert_eq!(next_log(&mut s).await, Some(json!("kept")));
    let closes = calls_of(&fed.calls)
        .into_iter()
        .filter(|(k, _)| k == "standalone-closed")
        .count();
    assert_eq!(closes, 2, "{:?}", calls_of(&fed.calls));
}

/// The data of the next log message on the client's standalone stream (10 s a message).
async fn next_log(s: &mut RawSession) -> Option<Value> {
    loop {
        let m = s.next_standalone(Duration::from_secs(10)).await?;
        if m["method"] == "notifications/message" {
            return Some(m["params"]["data"].clone());
        }
    }
}

/// The kinds and names in a fixture's calls log.
fn calls_of(calls: &std::path::Path) -> Vec<(String, String)> {
    std::fs::read_to_string(calls)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| {
            (
                v["kind"].as_str().unwrap_or_default().to_string(),
                v["name"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The first text content of a tools/call answer.
fn first_text(answer: &Value) -> String {
    answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// An upstream on the official Python SDK (server side), beside the TS ones: listing, a call
/// with a string id, sampling and elicitation relayed under the gateway's ids, progress for a
/// string token with logs, a resource and a prompt, each proven to reach it by its calls log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_on_the_python_sdk_is_federated() {
    let dir = TempDir::new("py-upstream");
    let calls = dir.join("calls.jsonl");
    let py = Fixture::python(Some(&calls));
    let gw = start_target(&dir, &[]).expect("gateway");
    register(
        gw.url(),
        "gateways",
        &json!({"name": "py", "url": format!("{}/mcp", py.url)}),
    )
    .await;
    let endpoint = format!("{}/mcp", gw.url());
    let mut s = RawSession::open(&endpoint, json!({"sampling": {}, "elicitation": {}}))
        .await
        .expect("session");
    let (listed, _) = s
        .call(json!("list-1"), "tools/list", json!({}), |_| None)
        .await
        .expect("list");
    let names: Vec<&str> = listed["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for n in ["py__py_echo", "py__py_sample", "py__py_elicit", "py__py_progress"] {
        assert!(names.contains(&n), "{n} in {names:?}");
    }
    let (answer, _) = s
        .tool(json!("echo-1"), "py__py_echo", json!({"text": "hi"}))
        .await
        .expect("echo");
    assert_eq!(answer["id"], "echo-1");
    assert_eq!(first_text(&answer), "py:hi", "{answer}");
    let (answer, seen) = s
        .call(
            json!("sample-1"),
            "tools/call",
            json!({"name": "py__py_sample", "arguments": {"prompt": "p"}}),
            sampling_reply(7),
        )
        .await
        .expect("sample");
    assert_eq!(first_text(&answer), "sampled: reply-7", "{answer}");
    let asked = seen
        .iter()
        .find(|(_, m)| m["method"] == "sampling/createMessage")
        .expect("a sampling request");
    assert!(
        asked.1["id"].as_str().is_some_and(|id| id.starts_with("mcpgw-")),
        "relayed under the gateway's id: {asked:?}"
    );
    let (answer, _) = s
        .call(
            json!("elicit-1"),
            "tools/call",
            json!({"name": "py__py_elicit", "arguments": {}}),
            sampling_reply(8),
        )
        .await
        .expect("elicit");
    assert_eq!(first_text(&answer), "elicited: accept user-8", "{answer}");
    let (answer, seen) = s
        .call(
            json!("prog-1"),
            "tools/call",
            json!({"name": "py__py_progress", "arguments": {}, "_meta": {"progressToken": "tok-1"}}),
            |_| None,
        )
        .await
        .expect("progress");
    assert_eq!(first_text(&answer), "progress done", "{answer}");
    let progress: Vec<&Value> = seen
        .iter()
        .filter(|(_, m)| m["method"] == "notifications/progress")
        .map(|(_, m)| &m["params"])
        .collect();
    assert_eq!(progress.len(), 3, "{seen:?}");
    assert!(progress.iter().all(|p| p["progressToken"] == "tok-1"), "{progress:?}");
    assert_eq!(
        progress
            .iter()
            .map(|p| p["progress"].as_f64().unwrap_or(-1.0))
            .collect::<Vec<_>>(),
        vec![1.0, 2.0, 3.0]
    );
    let logs = seen
        .iter()
        .filter(|(_, m)| m["method"] == "notifications/message")
        .count();
    assert_eq!(logs, 3, "{seen:?}");
    let (read, _) = s
        .call(json!(9), "resources/read", json!({"uri": "py://info"}), |_| None)
        .await
        .expect("read");
    assert_eq!(
        read["result"]["contents"][0]["text"], "served by the Python SDK",
        "{read}"
    );
    let (prompt, _) = s
        .call(
            json!(10),
            "prompts/get",
            json!({"name": "py__py_greet", "arguments": {"name": "Ada"}}),
            |_| None,
        )
        .await
        .expect("prompt");
    assert!(
        prompt["result"]["messages"][0]["content"]["text"]
            .as_str()
            .is_some_and(|t| t.contains("Hello, Ada")),
        "{prompt}"
    );
    let seen = calls_of(&calls);
    for (k, n) in [
        ("tool", "py_echo"),
        ("tool", "py_sample"),
        ("tool", "py_elicit"),
        ("tool", "py_progress"),
        ("resource", "py://info"),
        ("prompt", "py_greet"),
    ] {
        assert!(
            seen.iter().any(|(sk, sn)| sk == k && sn == n),
            "the Python upstream never got {k} {n}: {seen:?}"
        );
    }
    assert_eq!(s.delete().await.expect("delete"), 200);
}

/// An upstream whose own requests carry string ids (`srv-N`), with string client ids: the
/// sampling request and its answer cross under the gateway's ids, and a client's cancellation
/// (by its string id) reaches the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn string_ids_cross_the_gateway_both_ways() {
    let fed = start_federated_with("streamable-http", &["--string-ids"]).await;
    let mut s = fed.session(json!({"sampling": {}})).await;
    let (answer, seen) = s
        .call(
            json!("call-a"),
            "tools/call",
            json!({"name": "test_sampling", "arguments": {"prompt": "x"}}),
            sampling_reply(3),
        )
        .await
        .expect("call");
    assert_eq!(answer["id"], "call-a");
    assert_eq!(first_text(&answer), "LLM response: reply-3", "{answer}");
    assert!(
        seen.iter().any(|(_, m)| m["method"] == "sampling/createMessage"),
        "{seen:?}"
    );
    // Cancel a slow call by its string id; the fixture records the abort.
    let slow = json!({"jsonrpc": "2.0", "id": "slow-1", "method": "tools/call", "params": {"name": "mcpgw_sleep", "arguments": {"ms": 20000}}});
    let post = s.post(&slow);
    let cancel = async {
        // The call is in flight once the fixture logged it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !calls_of(&fed.calls)
            .iter()
            .any(|(k, n)| k == "tool" && n == "mcpgw_sleep")
        {
            assert!(Instant::now() < deadline, "the slow call never reached the fixture");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let c = json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "slow-1", "reason": "test"}});
        assert_eq!(s.post(&c).await.expect("cancel").status(), 202);
    };
    let (r, ()) = tokio::join!(post, cancel);
    drop(r);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !calls_of(&fed.calls)
        .iter()
        .any(|(k, n)| k == "cancelled" && n == "mcpgw_sleep")
    {
        assert!(Instant::now() < deadline, "the cancellation never reached the upstream");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An upstream that lists everything 3 items a page: the gateway follows every cursor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paginated_upstream_catalog_is_read_whole() {
    let paged = start_federated_with("streamable-http", &["--paginate", "3"]).await;
    let whole = start_federated_with("streamable-http", &[]).await;
    let names = |url: String| async move {
        let v: Value = http_client()
            .get(url)
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        let mut n: Vec<String> = ["tools", "resources", "resource_templates", "prompts"]
            .iter()
            .flat_map(|k| v["catalog"][k].as_array().cloned().unwrap_or_default())
            .map(|i| i["name"].as_str().unwrap_or_default().to_string())
            .collect();
        n.sort();
        n
    };
    let a = names(format!("{}/gateways/fixture", paged.gw.url())).await;
    let b = names(format!("{}/gateways/fixture", whole.gw.url())).await;
    assert!(a.len() > 20, "{a:?}");
    assert_eq!(a, b, "the paged catalog equals the unpaged one");
    let pages = calls_of(&paged.calls)
        .iter()
        .filter(|(k, n)| k == "page" && n.starts_with("tools/list@"))
        .count();
    assert!(pages >= 7, "tools listed in pages of 3: {pages} pages");
}

/// The upstream adds a tool at run time (it sends tools/list_changed): a client with a stream
/// hears tools/list_changed from the gateway, and the new tool is listed and callable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_list_change_reaches_clients() {
    let fed = start_federated_with("streamable-http", &[]).await;
    let mut watcher = fed.session(json!({})).await;
    watcher.open_standalone().await.expect("GET stream");
    let mut s = fed.session(json!({})).await;
    let (answer, _) = s
        .tool(json!(1), "mcpgw_add_tool", json!({"name": "late_tool"}))
        .await
        .expect("add");
    assert_eq!(first_text(&answer), "added late_tool", "{answer}");
    let mut changed = false;
    // On the edge the watcher's Durable Object sees the registry change on its next check.
    while let Some(m) = watcher.next_standalone(Duration::from_secs(30)).await {
        if m["method"] == "notifications/tools/list_changed" {
            changed = true;
            break;
        }
    }
    assert!(changed, "no tools/list_changed reached the watching client");
    let (listed, _) = watcher
        .call(json!(2), "tools/list", json!({}), |_| None)
        .await
        .expect("list");
    assert!(
        listed["result"]["tools"]
            .as_array()
            .expect("tools")
            .iter()
            .any(|t| t["name"] == "late_tool"),
        "{listed}"
    );
    let (answer, _) = watcher.tool(json!(3), "late_tool", json!({})).await.expect("call");
    assert_eq!(first_text(&answer), "I am late_tool", "{answer}");
}

/// The upstream asks the client something, then cancels its own request: the client gets the
/// cancellation under the id it was asked with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_cancelling_its_request_is_relayed() {
    let fed = start_federated_with("streamable-http", &[]).await;
    let mut s = fed.session(json!({"sampling": {}})).await;
    let (answer, seen) = s
        .tool(json!(1), "mcpgw_ask_then_cancel", json!({}))
        .await
        .expect("call");
    assert_eq!(first_text(&answer), "cancelled its request", "{answer}");
    let asked = seen
        .iter()
        .find(|(_, m)| m["method"] == "sampling/createMessage")
        .expect("asked");
    let cancelled = seen
        .iter()
        .find(|(_, m)| m["method"] == "notifications/cancelled")
        .expect("cancelled");
    assert_eq!(cancelled.1["params"]["requestId"], asked.1["id"], "{seen:?}");
}

/// A 10 MB tool result and a 10 MB blob resource (13.3 MB of base64) come through whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_megabytes_through_federation() {
    let fed = start_federated_with("streamable-http", &[]).await;
    let mut s = fed.session(json!({})).await;
    let (answer, _) = s
        .tool(json!(1), "mcpgw_big", json!({"mb": 10}))
        .await
        .expect("big result");
    let text = first_text(&answer);
    assert_eq!(
        text.len(),
        10_000_000,
        "{}",
        answer.to_string().chars().take(300).collect::<String>()
    );
    assert!(text.bytes().all(|b| b == b'x'));
    let (read, _) = s
        .call(json!(2), "resources/read", json!({"uri": "test://big-blob"}), |_| None)
        .await
        .expect("big blob");
    let blob = read["result"]["contents"][0]["blob"].as_str().unwrap_or_default();
    assert_eq!(
        blob.len(),
        13_333_336,
        "{}",
        read.to_string().chars().take(300).collect::<String>()
    );
    assert!(blob.starts_with("BwcH"), "the bytes are 7s");
}

/// Two clients call one upstream at once: each gets exactly its own sampling request and its
/// own answer back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_through_one_upstream_get_only_their_own_requests() {
    let fed = start_federated_with("streamable-http", &[]).await;
    let endpoint = format!("{}/servers/conf/mcp", fed.gw.url());
    let run = |n: usize| {
        let endpoint = endpoint.clone();
        async move {
            let mut s = RawSession::open(&endpoint, json!({"sampling": {}}))
                .await
                .expect("session");
            s.open_standalone().await.expect("GET");
            let mut results = Vec::new();
            for i in 0..5 {
                let (answer, seen) = s
                    .call(
                        json!(i),
                        "tools/call",
                        json!({"name": "test_sampling", "arguments": {"prompt": format!("from {n}")}}),
                        sampling_reply(n),
                    )
                    .await
                    .expect("call");
                let asked: Vec<&Value> = seen
                    .iter()
                    .filter(|(_, m)| m["method"] == "sampling/createMessage")
                    .map(|(_, m)| m)
                    .collect();
                assert_eq!(asked.len(), 1, "client {n}: {seen:?}");
                assert_eq!(
                    asked[0]["params"]["messages"][0]["content"]["text"],
                    format!("from {n}"),
                    "client {n} got another's request"
                );
                results.push(first_text(&answer));
            }
            results
        }
    };
    let (a, b) = tokio::join!(run(1), run(2));
    assert!(a.iter().all(|t| t == "LLM response: reply-1"), "{a:?}");
    assert!(b.iter().all(|t| t == "LLM response: reply-2"), "{b:?}");
}

/// A client's DELETE ends its upstream session too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_delete_reaches_the_upstream() {
    let fed = start_federated_with("streamable-http", &[]).await;
    let mut s = fed.session(json!({})).await;
    let (answer, _) = s.tool(json!(1), "test_simple_text", json!({})).await.expect("call");
    assert!(first_text(&answer).contains("simple text"), "{answer}");
    let closed = || {
        calls_of(&fed.calls)
            .iter()
            .filter(|(k, _)| k == "session-closed")
            .count()
    };
    let before = closed();
    assert_eq!(s.delete().await.expect("delete"), 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while closed() == before {
        assert!(Instant::now() < deadline, "the upstream session was never closed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A call's timeout is an idle timeout: a call that reports progress every 200 ms runs for
/// 2.5 s through an upstream whose timeout is 1 s, while a silent one is cut off at 1 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_call_outlives_its_idle_timeout() {
    let fed = start_federated_as("streamable-http", &[], json!({"timeout_ms": 1000})).await;
    let mut s = fed.session(json!({})).await;
    let (answer, seen) = s
        .call(
            json!(1),
            "tools/call",
            json!({"name": "mcpgw_slow_progress", "arguments": {"ms": 2500, "every": 200}, "_meta": {"progressToken": "p"}}),
            |_| None,
        )
        .await
        .expect("call");
    assert_eq!(first_text(&answer), "busy for 2500 ms", "{answer}");
    assert!(seen.len() >= 10, "progress relayed as it came: {}", seen.len());
    let (answer, _) = s
        .tool(json!(2), "mcpgw_sleep", json!({"ms": 2500}))
        .await
        .expect("call");
    assert_eq!(answer["error"]["data"]["reason"], "timeout", "{answer}");
}

/// Upstream resource reads kept for reuse (`--resource-cache-ms`): a second read within the
/// time is answered without reaching the upstream; past it, the upstream is read again; an
/// update the upstream announces makes the next read reach it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_reads_are_cached_until_they_expire_or_the_upstream_changes() {
    const TTL_MS: u64 = 4000;
    let ttl = TTL_MS.to_string();
    let fed = start_federated_full("streamable-http", &[], json!({}), &["--resource-cache-ms", &ttl]).await;
    let mut s = fed.session(json!({})).await;
    let reads = |uri: &str| {
        calls_of(&fed.calls)
            .iter()
            .filter(|(k, n)| k == "resource" && n == uri)
            .count()
    };
    async fn read(s: &mut RawSession, id: u64, uri: &str) -> Value {
        let (answer, _) = s
            .call(json!(id), "resources/read", json!({"uri": uri}), |_| None)
            .await
            .expect("read");
        assert!(answer["result"]["contents"].is_array(), "{answer}");
        answer["result"].clone()
    }
    let static_text = "test://static-text";
    let first = read(&mut s, 1, static_text).await;
    let again = read(&mut s, 2, static_text).await;
    assert_eq!(first, again, "the same contents");
    assert_eq!(reads(static_text), 1, "the second read came from the cache");
    tokio::time::sleep(Duration::from_millis(TTL_MS + 300)).await;
    read(&mut s, 3, static_text).await;
    assert_eq!(reads(static_text), 2, "expired: the upstream is read again");

    // Invalidation: the gateway's upstream session subscribes; the upstream's update passes
    // over what was kept, well within the time.
    let watched = "test://watched-resource";
    s.open_standalone().await.expect("GET stream");
    let (sub, _) = s
        .call(json!(4), "resources/subscribe", json!({"uri": watched}), |_| None)
        .await
        .expect("subscribe");
    assert!(sub.get("result").is_some(), "{sub}");
    let kept_at = std::time::Instant::now();
    read(&mut s, 5, watched).await;
    read(&mut s, 6, watched).await;
    assert_eq!(reads(watched), 1, "kept");
    let mut heard = false;
    for i in 0..6 {
        let (r, _) = s
            .tool(json!(10 + i), "mcpgw_touch", json!({"uri": watched}))
            .await
            .expect("touch");
        assert!(r.get("result").is_some(), "{r}");
        if let Some(m) = s.next_standalone(Duration::from_millis(500)).await {
            assert_eq!(m["method"], "notifications/resources/updated", "{m}");
            heard = true;
            break;
        }
    }
    assert!(heard, "the update reached the client");
    read(&mut s, 20, watched).await;
    assert!(
        kept_at.elapsed() < Duration::from_millis(TTL_MS),
        "too slow to tell invalidation from expiry"
    );
    assert_eq!(reads(watched), 2, "the update made the next read reach the upstream");
}

/// Four sessions side by side, each calling `test_sampling` with a prompt of its own while the
/// upstream sends its sampling requests without saying which call they are for: a request
/// reaches only the session whose call it is for, and a result carries only that session's own
/// reply. (A stdio upstream is one process shared by every session: with several calls in
/// flight it cannot be told whose a request is, so the gateway refuses it and those calls fail;
/// they never cross.)
async fn concurrent_sampling_stays_with_its_session(transport: &str, fixture_args: &[&str]) -> usize {
    let fed = start_federated_with(transport, fixture_args).await;
    let endpoint = format!("{}/servers/conf/mcp", fed.gw.url());
    let mut sessions = vec![];
    for i in 0..4 {
        let mut s = RawSession::open(&endpoint, json!({"sampling": {}, "elicitation": {}}))
            .await
            .expect("session");
        if i % 2 == 0 {
            s.open_standalone().await.expect("GET stream");
        }
        sessions.push(s);
    }
    let calls = sessions.iter_mut().enumerate().map(|(i, s)| async move {
        let prompt = format!("prompt-of-session-{i}");
        let r = tokio::time::timeout(
            Duration::from_secs(60),
            s.call(
                json!(format!("c-{i}")),
                "tools/call",
                json!({"name": "test_sampling", "arguments": {"prompt": prompt}}),
                sampling_reply(i),
            ),
        )
        .await
        .expect("answered in time")
        .expect("call");
        (i, r)
    });
    let mut own_replies = 0;
    for (i, (answer, seen)) in futures::future::join_all(calls).await {
        for (_, m) in seen.iter().filter(|(_, m)| m["method"] == "sampling/createMessage") {
            let asked = m["params"]["messages"][0]["content"]["text"]
                .as_str()
                .unwrap_or_default();
            assert_eq!(
                asked,
                format!("prompt-of-session-{i}"),
                "session {i} was asked another's question: {m}"
            );
        }
        let text = answer["result"]["content"][0]["text"].as_str().unwrap_or_default();
        if answer["result"]["isError"] != json!(true) && answer.get("error").is_none() {
            assert_eq!(text, format!("LLM response: reply-{i}"), "session {i}: {answer}");
            own_replies += 1;
        }
    }
    own_replies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sessions_get_only_their_own_requests_streamable() {
    let own =
        concurrent_sampling_stays_with_its_session("streamable-http", &["--standalone-requests", "--event-store"])
            .await;
    // Each session has a link of its own: every call is answered with its own reply.
    assert_eq!(own, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sessions_get_only_their_own_requests_stdio() {
    if target() == Target::Edge {
        return skip(
            "concurrent_sessions_get_only_their_own_requests_stdio",
            "stdio upstreams are native-only",
        );
    }
    concurrent_sampling_stays_with_its_session("stdio", &["--standalone-requests"]).await;
}
