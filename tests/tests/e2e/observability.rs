//! What an operator sees: metrics after real traffic (natively scraped by a real Prometheus and
//! read back through its HTTP API; on the edge the Analytics Engine data points, seen through the
//! log lines `MCPGW_METRICS_LOG` adds under `wrangler dev`, whose local dataset keeps nothing),
//! the shipped alert rules checked by `promtool`, request ids on every answer and log line, and
//! traces: the request span and the upstream call's span under it reach an OTLP receiver, and
//! the upstream gets the same trace in `traceparent`.

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mcpgw_e2e::prometheus::{Prometheus, Target as Scrape};
use mcpgw_e2e::*;
use serde_json::{json, Value};

const SECRET: &str = "o7Hq2Wd5Lm9Xc1Vb4Nz8Ks3Jt6Rf0Gy2Pa5Ue8Ih1";
const FEDERATED: &str = "fixture__test_simple_text";

fn token(sub: &str, scope: &str) -> String {
    sign_jwt(
        "HS256",
        SECRET,
        json!({"sub": sub, "iss": "mcpgw", "aud": "mcpgw", "exp": unix_now() + 600, "scope": scope}),
    )
}

async fn rpc(url: &str, bearer: Option<&str>, body: &Value, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut r = http_client().post(format!("{url}/rpc")).json(body);
    if let Some(b) = bearer {
        r = r.bearer_auth(b);
    }
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.expect("rpc")
}

async fn create(url: &str, admin: &str, collection: &str, body: &Value) {
    let r = http_client()
        .post(format!("{url}/{collection}"))
        .bearer_auth(admin)
        .json(body)
        .send()
        .await
        .expect("create");
    let status = r.status();
    assert_eq!(status, 201, "{collection}: {}", r.text().await.unwrap_or_default());
}

/// The traffic both runtimes count: the Python SDK's session (a federated call, a REST call, an
/// unknown tool), a refused token, a missing one, and one rate-limit refusal. Returns how many
/// tools the upstream federates.
async fn traffic(url: &str, admin: &str) -> usize {
    let alice = token("alice", "mcpgw:client");
    let mut cmd = python();
    cmd.arg(repo_root().join("tests/clients/metrics_client.py"))
        .arg(format!("{url}/mcp"))
        .arg(FEDERATED)
        .arg("weather")
        .env("MCPGW_TOKEN", &alice);
    // The REST backend runs on this test's runtime: the client is waited for off it.
    let (ok, out) = run_blocking(cmd, Duration::from_secs(120)).await;
    assert!(ok && out.contains("PASS"), "python client:\n{out}");

    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
    let mut forged = token("eve", "mcpgw:client");
    forged.push('x');
    assert_eq!(rpc(url, Some(&forged), &ping, &[]).await.status(), 401);
    assert_eq!(rpc(url, None, &ping, &[]).await.status(), 401);
    // Mallory's budget is 20 requests a minute: the 21st is refused.
    let mallory = token("mallory", "mcpgw:client");
    for i in 0..20 {
        assert_eq!(rpc(url, Some(&mallory), &ping, &[]).await.status(), 200, "ping {i}");
    }
    assert_eq!(rpc(url, Some(&mallory), &ping, &[]).await.status(), 429);

    // Every answer has a request id; a safe one the client sent comes back.
    let r = rpc(url, Some(admin), &ping, &[]).await;
    let id = r.headers()["x-request-id"].to_str().expect("ascii").to_string();
    assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    let r = rpc(url, Some(admin), &ping, &[("x-request-id", "client-chosen-42")]).await;
    assert_eq!(r.headers()["x-request-id"], "client-chosen-42");
    let r = rpc(url, Some(admin), &ping, &[("x-request-id", "no spaces allowed")]).await;
    assert_ne!(r.headers()["x-request-id"], "no spaces allowed");
    let r = http_client()
        .get(format!("{url}/no-such-route"))
        .send()
        .await
        .expect("get");
    assert!(r.headers().contains_key("x-request-id"), "a 404 has one too");

    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let v: Value = rpc(url, Some(admin), &list, &[]).await.json().await.expect("json");
    let tools = v["result"]["tools"].as_array().expect("tools");
    tools
        .iter()
        .filter(|t| t["name"].as_str().is_some_and(|n| n.starts_with("fixture__")))
        .count()
}

/// A gateway with auth on, a budget of 20 MCP requests a minute, the fixture as upstream
/// `fixture` and the REST tool `weather`.
struct Setup {
    gw: TestGateway,
    admin: String,
    _fixture: Fixture,
    _backend: RestBackend,
    _dir: TempDir,
}

async fn setup(extra_env: &[(&str, &str)]) -> Setup {
    let dir = TempDir::new("metrics");
    let backend = start_rest_backend().await.expect("backend");
    let fixture = Fixture::start("streamable-http", None);
    let mut env = vec![
        ("MCPGW_AUTH_REQUIRED", "true"),
        ("MCPGW_JWT_SECRET", SECRET),
        ("MCPGW_RATE_LIMIT_MCP", "20/60"),
    ];
    env.extend_from_slice(extra_env);
    // Health checks every second (natively the upkeep runs them), so their pings are timed too.
    let settings = ["--health-check-secs", "1", "--upkeep-secs", "1"];
    let gw = start_target_with(&dir, &settings, &env).expect("start gateway");
    let admin = token("ops", "mcpgw:admin");
    let url = gw.url().to_string();
    create(
        &url,
        &admin,
        "gateways",
        &json!({"name": "fixture", "url": format!("{}/mcp", fixture.url)}),
    )
    .await;
    let weather = json!({
        "name": "weather", "url": format!("{}/weather", backend.url), "method": "GET",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    });
    create(&url, &admin, "tools", &weather).await;
    Setup {
        gw,
        admin,
        _fixture: fixture,
        _backend: backend,
        _dir: dir,
    }
}

/// A counter's expected value: (metric, labels, value).
type Count = (&'static str, Vec<(&'static str, &'static str)>, f64);

/// What both runtimes must have counted after [`traffic`].
fn expected_counts() -> Vec<Count> {
    vec![
        (
            "mcpgw_tool_calls_total",
            vec![("tool", FEDERATED), ("upstream", "fixture"), ("outcome", "ok")],
            1.0,
        ),
        (
            "mcpgw_tool_calls_total",
            vec![("tool", "weather"), ("upstream", ""), ("outcome", "ok")],
            1.0,
        ),
        (
            "mcpgw_mcp_requests_total",
            vec![("transport", "streamable"), ("method", "tools/call"), ("outcome", "ok")],
            2.0,
        ),
        (
            "mcpgw_mcp_requests_total",
            vec![
                ("transport", "streamable"),
                ("method", "tools/call"),
                ("outcome", "error"),
            ],
            1.0,
        ),
        (
            "mcpgw_mcp_requests_total",
            vec![("transport", "streamable"), ("method", "initialize"), ("outcome", "ok")],
            1.0,
        ),
        ("mcpgw_auth_failures_total", vec![("reason", "invalid_token")], 1.0),
        // The ping without a token, and the 404 (unknown paths are the admin API's).
        (
            "mcpgw_auth_failures_total",
            vec![("reason", "missing_credentials")],
            2.0,
        ),
        ("mcpgw_rate_limited_total", vec![("bucket", "mcp")], 1.0),
        (
            "mcpgw_http_requests_total",
            vec![("route", "rpc"), ("status", "429")],
            1.0,
        ),
        (
            "mcpgw_http_requests_total",
            vec![("route", "rpc"), ("status", "401")],
            2.0,
        ),
    ]
}

#[tokio::test]
async fn metrics_count_what_the_python_sdk_did() {
    let edge = target() == Target::Edge;
    let extra: &[(&str, &str)] = if edge { &[("MCPGW_METRICS_LOG", "true")] } else { &[] };
    let mut s = setup(extra).await;
    let url = s.gw.url().to_string();
    let federated_tools = traffic(&url, &s.admin).await;
    assert!(federated_tools > 5, "{federated_tools}");
    if edge {
        return edge_points(&mut s.gw).await;
    }

    let Some(bin) = Prometheus::find() else {
        panic!("prometheus is not installed (the test command installs Debian's package)");
    };
    let addr = s.gw.addr().to_string();
    let prom = Prometheus::start(
        &bin,
        &[Scrape {
            job: "mcpgw",
            addr: &addr,
            bearer: Some(&s.admin),
        }],
    )
    .await
    .expect("prometheus");
    assert_eq!(prom.value_of("up{job=\"mcpgw\"}", 1.0).await, 1.0, "the scrape works");
    for (metric, labels, want) in expected_counts() {
        let sel: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        let expr = format!("{metric}{{{}}}", sel.join(","));
        assert_eq!(prom.value_of(&expr, want).await, want, "{expr}");
    }
    let gauges = [
        (
            "mcpgw_upstream_request_duration_seconds_count{upstream=\"fixture\",method=\"tools/call\",outcome=\"ok\"}"
                .to_string(),
            1.0,
        ),
        ("mcpgw_upstream_up{upstream=\"fixture\"}".to_string(), 1.0),
        (
            "clamp_max(mcpgw_upstream_request_duration_seconds_count{upstream=\"fixture\",method=\"ping\",outcome=\"ok\"}, 1)"
                .to_string(),
            1.0,
        ),
        (
            "mcpgw_registry_entries{kind=\"tool\",origin=\"federated\"}".to_string(),
            federated_tools as f64,
        ),
        (
            "mcpgw_registry_entries{kind=\"tool\",origin=\"local\"}".to_string(),
            1.0,
        ),
        (
            "mcpgw_registry_entries{kind=\"upstream\",origin=\"local\"}".to_string(),
            1.0,
        ),
        ("mcpgw_sessions".to_string(), 0.0),
        ("count(mcpgw_info{version=~\".+\"})".to_string(), 1.0),
    ];
    for (expr, want) in gauges {
        assert_eq!(prom.value_of(&expr, want).await, want, "{expr}");
    }
    // Latency histograms and the process's own metrics are there and plausible.
    let rss = prom.query("process_resident_memory_bytes").await.expect("query");
    assert!(rss.len() == 1 && rss[0].1 > 1e6 && rss[0].1 < 1e9, "{rss:?}");
    let p = prom
        .query("histogram_quantile(0.5, sum by (le) (mcpgw_mcp_request_duration_seconds_bucket))")
        .await
        .expect("query");
    assert!(p.len() == 1 && p[0].1 > 0.0 && p[0].1 < 5.0, "{p:?}");
    let cpu = prom.query("process_cpu_seconds_total").await.expect("query");
    assert!(cpu.len() == 1 && cpu[0].1 > 0.0, "{cpu:?}");

    // GET /metrics is for admins.
    let r = http_client().get(format!("{url}/metrics")).send().await.expect("get");
    assert_eq!(r.status(), 401);
    let r = http_client()
        .get(format!("{url}/metrics"))
        .bearer_auth(token("alice", "mcpgw:client"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 403);
}

/// The edge's data points, as `MCPGW_METRICS_LOG` logs them beside each Analytics Engine write.
async fn edge_points(gw: &mut TestGateway) {
    let TestGateway::Edge(e) = gw else { unreachable!() };
    let log_path = e.state_dir.join("wrangler.log");
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut sums: HashMap<(String, Vec<(String, String)>), f64> = HashMap::new();
    let want = expected_counts();
    let key = |metric: &str, labels: &[(&str, &str)]| {
        let mut l: Vec<(String, String)> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        l.sort();
        (metric.to_string(), l)
    };
    loop {
        sums.clear();
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        for line in log.lines() {
            let Some(json) = line.split_once("mcpgw-metric ").map(|(_, j)| j) else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<Value>(json.trim()) else {
                continue;
            };
            let mut labels: Vec<(String, String)> = v["labels"]
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                        .collect()
                })
                .unwrap_or_default();
            labels.sort();
            *sums
                .entry((v["metric"].as_str().unwrap_or("").to_string(), labels))
                .or_default() += v["value"].as_f64().unwrap_or(0.0);
        }
        let all = want.iter().all(|(m, l, v)| sums.get(&key(m, l)) == Some(v));
        if all || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for (m, l, v) in &want {
        assert_eq!(sums.get(&key(m, l)), Some(v), "{m} {l:?}: the points seen: {sums:?}");
    }
    assert!(
        log_of_errors(&log_path).is_empty(),
        "Analytics Engine writes failed: {:?}",
        log_of_errors(&log_path)
    );
}

fn log_of_errors(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("analytics data point"))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_shipped_alert_rules_pass_promtool() {
    let promtool = ["/usr/bin/promtool", "/usr/sbin/promtool"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("promtool is not installed (the test command installs Debian's prometheus)");
    let rules = repo_root().join("deploy/prometheus/alerts.yml");
    let (ok, text) = promtool_run(promtool, &["check", "rules"], &rules);
    assert!(ok, "{text}");
    // Every alert the issue names is there.
    let doc = std::fs::read_to_string(&rules).expect("rules");
    for alert in [
        "McpgwUpstreamDown",
        "McpgwHighErrorRate",
        "McpgwHighLatency",
        "McpgwAuthFailureBurst",
        "McpgwRateLimitSaturation",
    ] {
        assert!(doc.contains(&format!("alert: {alert}")), "{alert} missing");
    }
    // The rules' unit tests (promtool test rules) pass too.
    let tests = repo_root().join("deploy/prometheus/alerts_test.yml");
    let (ok, text) = promtool_run(promtool, &["test", "rules"], &tests);
    assert!(ok, "{text}");
}

/// `promtool <args> <file>`: whether it passed, and what it printed.
fn promtool_run(promtool: &str, args: &[&str], file: &std::path::Path) -> (bool, String) {
    let out = Command::new(promtool).args(args).arg(file).output().expect("promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Receives OTLP/HTTP JSON export requests on 127.0.0.1; keeps every span.
async fn otlp_receiver() -> (String, Arc<Mutex<Vec<Value>>>, tokio::task::JoinHandle<()>) {
    let spans: Arc<Mutex<Vec<Value>>> = Arc::default();
    let kept = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let kept = kept.clone();
            async move {
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                for rs in v["resourceSpans"].as_array().into_iter().flatten() {
                    for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                        for s in ss["spans"].as_array().into_iter().flatten() {
                            kept.lock().expect("lock").push(s.clone());
                        }
                    }
                }
                axum::Json(json!({}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), spans, task)
}

#[tokio::test]
async fn a_call_is_traced_from_the_client_to_the_upstream() {
    if target() == Target::Edge {
        return skip(
            "observability::a_call_is_traced_from_the_client_to_the_upstream",
            "OTLP export is native (the edge has no exporter; its request ids are tested above)",
        );
    }
    let (receiver, spans, task) = otlp_receiver().await;
    let dir = TempDir::new("traces");
    let calls = dir.join("calls.jsonl");
    let fixture = Fixture::start("streamable-http", Some(&calls));
    let mut gw = start_target_with(
        &dir,
        &[],
        &[
            ("MCPGW_OTLP_ENDPOINT", receiver.as_str()),
            ("MCPGW_LOG", "info,mcpgw=debug"),
        ],
    )
    .expect("start gateway");
    let url = gw.url().to_string();
    create(
        &url,
        "",
        "gateways",
        &json!({"name": "fixture", "url": format!("{}/mcp", fixture.url)}),
    )
    .await;

    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": FEDERATED, "arguments": {}}});
    let tp = format!("00-{trace}-{parent}-01");
    let r = rpc(&url, None, &call, &[("traceparent", tp.as_str())]).await;
    assert_eq!(r.status(), 200);
    let request_id = r.headers()["x-request-id"].to_str().expect("ascii").to_string();
    let v: Value = r.json().await.expect("json");
    assert!(v["result"]["content"].is_array(), "{v}");

    // The request span continues the caller's trace; the upstream call's span is its child.
    let deadline = Instant::now() + Duration::from_secs(15);
    let (server, client) = loop {
        let got = spans.lock().expect("lock").clone();
        let server = got.iter().find(|s| s["traceId"] == trace && s["kind"] == 2).cloned();
        let client = got.iter().find(|s| s["traceId"] == trace && s["kind"] == 3).cloned();
        if let (Some(s), Some(c)) = (&server, &client) {
            break (s.clone(), c.clone());
        }
        assert!(Instant::now() < deadline, "spans received: {got:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(server["parentSpanId"], parent, "{server}");
    assert_eq!(server["name"], "POST /rpc");
    assert_eq!(client["parentSpanId"], server["spanId"], "{client}");
    assert_eq!(client["name"], "tools/call test_simple_text");
    let attr = |s: &Value, k: &str| {
        s["attributes"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["key"] == k))
            .map(|x| x["value"]["stringValue"].clone())
    };
    assert_eq!(attr(&client, "mcpgw.upstream"), Some(json!("fixture")));
    assert_eq!(attr(&server, "mcpgw.request_id"), Some(json!(request_id)));
    let start: u128 = server["startTimeUnixNano"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("start");
    let c_start: u128 = client["startTimeUnixNano"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("start");
    let c_end: u128 = client["endTimeUnixNano"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("end");
    let end: u128 = server["endTimeUnixNano"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("end");
    assert!(
        start <= c_start && c_start <= c_end && c_end <= end,
        "{server} {client}"
    );

    // The upstream got the upstream span's context: in the header and in `_meta`.
    let want = format!("00-{trace}-{}-01", client["spanId"].as_str().expect("span id"));
    let logged = std::fs::read_to_string(&calls).unwrap_or_default();
    let entry: Value = logged
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["name"] == "test_simple_text")
        .expect("the fixture logged the call");
    assert_eq!(entry["traceparent"], want, "{entry}");
    assert_eq!(entry["meta_traceparent"], want, "{entry}");

    // The request's log lines carry its id and trace id.
    let lines = gw.native().read_log(Duration::from_secs(2));
    let all: Vec<&String> = gw.native().log.iter().collect();
    let mine: Vec<&&String> = all.iter().filter(|l| l.contains(&request_id)).collect();
    assert!(!mine.is_empty(), "no log line names request {request_id}: {lines:?}");
    for l in mine {
        let v: Value = serde_json::from_str(l).expect("json log line");
        assert_eq!(v["span"]["request_id"], request_id.as_str(), "{l}");
        assert_eq!(v["span"]["trace_id"], trace, "{l}");
    }
    task.abort();
}
