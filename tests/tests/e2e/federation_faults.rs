//! Federation under faults: an upstream killed mid-call, slower than its timeout, answering
//! garbage, restarted between calls, unhealthy and recovering, a failover URL, and (natively) a
//! stdio upstream that crashes. Each case checks what the client sees and that the gateway
//! keeps serving another upstream (`other`) meanwhile.

use std::time::{Duration, Instant};

use mcpgw_e2e::{
    get_json, http_client, initialize, skip, start_target, target, Fixture, RawSession, Target, TempDir, TestGateway,
};
use serde_json::{json, Value};

/// Registers an upstream; returns the status and body.
async fn register(url: &str, body: Value) -> (u16, Value) {
    let r = http_client()
        .post(format!("{url}/gateways"))
        .json(&body)
        .send()
        .await
        .expect("register");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// One JSON-RPC request on a session; the response (from JSON or the SSE stream) and how long it
/// took.
async fn rpc(url: &str, sid: &str, method: &str, params: Value) -> (Value, Duration) {
    let started = Instant::now();
    let r = http_client()
        .post(format!("{url}/mcp"))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", sid)
        .json(&json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}))
        .send()
        .await
        .expect("post");
    let sse = r
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap_or_default().starts_with("text/event-stream"));
    let text = r.text().await.expect("body");
    let answer = if sse {
        text.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .find(|m| m["id"] == 7)
            .unwrap_or(Value::Null)
    } else {
        serde_json::from_str(&text).unwrap_or(Value::Null)
    };
    (answer, started.elapsed())
}

async fn call(url: &str, sid: &str, tool: &str, args: Value) -> (Value, Duration) {
    rpc(url, sid, "tools/call", json!({"name": tool, "arguments": args})).await
}

fn text(answer: &Value) -> String {
    answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// A gateway with upstream `other` (a fixture that stays up) and a session on `/mcp`.
struct Setup {
    gw: TestGateway,
    _other: Fixture,
    sid: String,
    _dir: TempDir,
}

async fn setup(settings: &[&str]) -> Setup {
    let dir = TempDir::new("faults");
    let other = Fixture::start("streamable-http", None);
    let gw = start_target(&dir, settings).expect("gateway");
    let (status, body) = register(gw.url(), json!({"name": "other", "url": format!("{}/mcp", other.url)})).await;
    assert_eq!(status, 201, "{body}");
    let sid = initialize(&http_client(), gw.url()).await.expect("initialize");
    Setup {
        gw,
        _other: other,
        sid,
        _dir: dir,
    }
}

impl Setup {
    fn url(&self) -> &str {
        self.gw.url()
    }

    /// The other upstream still answers.
    async fn other_still_serves(&self) {
        let (a, _) = call(self.url(), &self.sid, "other__test_simple_text", json!({})).await;
        assert!(text(&a).contains("simple text"), "the other upstream stopped: {a}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_killed_mid_call() {
    let s = setup(&[]).await;
    let mut victim = Fixture::start("streamable-http", None);
    let (status, body) = register(s.url(), json!({"name": "victim", "url": format!("{}/mcp", victim.url)})).await;
    assert_eq!(status, 201, "{body}");
    // Killed once the call's stream has begun (its first progress reached the client): the
    // upstream surely had the call, so the connection was lost mid-call, not refused.
    let mut client = RawSession::open(&format!("{}/mcp", s.url()), json!({}))
        .await
        .expect("session");
    let mut killed_at = None;
    let params = json!({"name": "victim__mcpgw_slow_progress", "arguments": {"ms": 20000, "every": 100}, "_meta": {"progressToken": "k"}});
    let (answer, seen) = client
        .call(json!(7), "tools/call", params, |m| {
            if m["method"] == "notifications/progress" && killed_at.is_none() {
                victim.kill();
                killed_at = Some(Instant::now());
            }
            None
        })
        .await
        .expect("the call ends with an answer");
    let after_kill = killed_at.expect("no progress reached the client").elapsed();
    assert!(!seen.is_empty());
    assert_eq!(answer["error"]["code"], -32603, "{answer}");
    assert_eq!(answer["error"]["data"]["reason"], "closed", "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("upstream 'victim'"),
        "{answer}"
    );
    assert!(
        after_kill < Duration::from_secs(3),
        "the error took {after_kill:?} after the kill"
    );
    s.other_still_serves().await;
    // The next call to the dead upstream fails promptly too.
    let (answer, took) = call(s.url(), &s.sid, "victim__test_simple_text", json!({})).await;
    assert_eq!(answer["error"]["data"]["reason"], "unreachable", "{answer}");
    assert!(took < Duration::from_secs(5), "{answer} {took:?}");
    s.other_still_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_slower_than_its_timeout() {
    let s = setup(&[]).await;
    let slow = Fixture::start("streamable-http", None);
    let (status, body) = register(
        s.url(),
        json!({"name": "slow", "url": format!("{}/mcp", slow.url), "timeout_ms": 500}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (answer, took) = call(s.url(), &s.sid, "slow__mcpgw_sleep", json!({"ms": 5000})).await;
    assert_eq!(answer["error"]["data"]["reason"], "timeout", "{answer}");
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_millis(2500),
        "took {took:?}"
    );
    s.other_still_serves().await;
    // A timeout does not spoil the upstream session: a quick call works at once.
    let (answer, _) = call(s.url(), &s.sid, "slow__mcpgw_sleep", json!({"ms": 10})).await;
    assert_eq!(text(&answer), "slept 10 ms", "{answer}");
}

/// A hand-written MCP server (streamable HTTP, JSON answers) that initializes and lists one
/// tool, `tool`, properly; what it does with a `tools/call` is `on_call`'s (the calls are
/// counted). Returns its URL, the call count and the server task.
async fn start_scripted_upstream(
    tool: &'static str,
    on_call: fn() -> axum::response::Response,
) -> (
    String,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    tokio::task::JoinHandle<()>,
) {
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let mcp = move |body: axum::body::Bytes| {
        let seen = seen.clone();
        async move {
            let Ok(msg) = serde_json::from_slice::<Value>(&body) else {
                return StatusCode::BAD_REQUEST.into_response();
            };
            let id = msg["id"].clone();
            let result = match msg["method"].as_str().unwrap_or_default() {
                _ if id.is_null() => return StatusCode::ACCEPTED.into_response(),
                "initialize" => json!({"protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
                    "serverInfo": {"name": "scripted", "version": "1"}}),
                "tools/list" => json!({"tools": [{"name": tool, "inputSchema": {"type": "object"}}]}),
                "tools/call" => {
                    seen.fetch_add(1, Ordering::SeqCst);
                    return on_call();
                }
                _ => json!({}),
            };
            let mut h = HeaderMap::new();
            h.insert("mcp-session-id", "scripted-session".parse().expect("header"));
            (h, axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": result}))).into_response()
        }
    };
    let app = axum::Router::new().route("/mcp", axum::routing::post(mcp));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/mcp"), calls, task)
}

/// An upstream that answers calls with garbage.
async fn start_garbage_upstream() -> (String, tokio::task::JoinHandle<()>) {
    use axum::response::IntoResponse;
    let garbage = || {
        let h = [(axum::http::header::CONTENT_TYPE, "application/json")];
        (axum::http::StatusCode::OK, h, "%%% this is not JSON-RPC %%%").into_response()
    };
    let (url, _, task) = start_scripted_upstream("garbled", garbage).await;
    (url, task)
}

/// An upstream whose connection drops once it has read a `tools/call`, before any response
/// (the panic ends the connection's task, and the socket closes): its URL and call count.
async fn start_dropping_upstream() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let (url, calls, _) = start_scripted_upstream("dropped", || panic!("dropping the connection on purpose")).await;
    (url, calls)
}

/// A call whose connection is lost after the request went out may have run upstream: it is not
/// sent again (at most once), and the client hears `closed`. Native only: workerd reports a
/// lost request and a refused connection alike, so the Worker cannot tell them apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_lost_after_it_was_sent_is_not_sent_again() {
    if target() == Target::Edge {
        return skip(
            "a_call_lost_after_it_was_sent_is_not_sent_again",
            "workerd's fetch cannot tell a lost request from a refused connection",
        );
    }
    let s = setup(&[]).await;
    let (url, calls) = start_dropping_upstream().await;
    let (status, body) = register(s.url(), json!({"name": "dropping", "url": url})).await;
    assert_eq!(status, 201, "{body}");
    let (answer, _) = call(s.url(), &s.sid, "dropping__dropped", json!({})).await;
    assert_eq!(answer["error"]["code"], -32603, "{answer}");
    assert_eq!(answer["error"]["data"]["reason"], "closed", "{answer}");
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1, "sent once");
    s.other_still_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_answering_garbage() {
    let s = setup(&[]).await;
    let (garbage_url, task) = start_garbage_upstream().await;
    let (status, body) = register(s.url(), json!({"name": "garbage", "url": garbage_url})).await;
    assert_eq!(status, 201, "{body}");
    let (answer, _) = call(s.url(), &s.sid, "garbage__garbled", json!({})).await;
    assert_eq!(answer["error"]["code"], -32603, "{answer}");
    assert_eq!(answer["error"]["data"]["reason"], "invalid_answer", "{answer}");
    s.other_still_serves().await;
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_an_unreachable_or_garbage_upstream_is_refused() {
    let s = setup(&[]).await;
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let (status, body) = register(
        s.url(),
        json!({"name": "nowhere", "url": format!("http://127.0.0.1:{port}/mcp")}),
    )
    .await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "upstream_unavailable", "{body}");
    let r = http_client()
        .get(format!("{}/gateways/nowhere", s.url()))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 404, "nothing was stored");
    let (status, body) = register(s.url(), json!({"name": "bad", "url": "ftp://127.0.0.1/x"})).await;
    assert_eq!((status, body["error"]["field"].as_str()), (422, Some("url")), "{body}");
    s.other_still_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_restarted_between_calls() {
    let s = setup(&[]).await;
    // The test holds the port: the restarted upstream serves on the socket the first one had.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut victim = Fixture::start_handed("streamable-http", &listener, None);
    let (status, body) = register(s.url(), json!({"name": "victim", "url": format!("{}/mcp", victim.url)})).await;
    assert_eq!(status, 201, "{body}");
    let (answer, _) = call(s.url(), &s.sid, "victim__mcpgw_pid", json!({})).await;
    let first_pid = text(&answer);
    assert!(!first_pid.is_empty(), "{answer}");
    victim.kill();
    let restarted = Fixture::start_handed("streamable-http", &listener, None);
    assert_eq!(restarted.url, victim.url);
    // The old upstream session is gone with the process: the gateway opens a new one unseen.
    let (answer, _) = call(s.url(), &s.sid, "victim__mcpgw_pid", json!({})).await;
    let second_pid = text(&answer);
    assert!(!second_pid.is_empty() && second_pid != first_pid, "{answer}");
    s.other_still_serves().await;
    drop(restarted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_upstreams_fail_fast_and_recover() {
    let s = setup(&["--health-check-secs", "1", "--unhealthy-after", "2"]).await;
    let mut victim = Fixture::start("streamable-http", None);
    let port = victim.port();
    let (status, body) = register(s.url(), json!({"name": "victim", "url": format!("{}/mcp", victim.url)})).await;
    assert_eq!(status, 201, "{body}");
    victim.kill();
    for _ in 0..2 {
        let (answer, _) = call(s.url(), &s.sid, "victim__test_simple_text", json!({})).await;
        assert_eq!(answer["error"]["data"]["reason"], "unreachable", "{answer}");
    }
    let (answer, took) = call(s.url(), &s.sid, "victim__test_simple_text", json!({})).await;
    assert_eq!(answer["error"]["data"]["reason"], "unhealthy", "{answer}");
    assert!(took < Duration::from_millis(500), "failing fast took {took:?}");
    match target() {
        Target::Native => {
            // The calls above ran in this process: it knows the upstream is down.
            let status = get_json(&format!("{}/gateways/victim", s.url())).await;
            assert_eq!(status["status"]["healthy"], false, "{status}");
        }
        Target::Edge => {
            // The calls ran in the session's Durable Object; the Worker learns it from its own
            // health checks, which its Cron Trigger runs (wrangler dev --test-scheduled).
            let http = http_client();
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let r = http
                    .get(format!("{}/__scheduled", s.url()))
                    .send()
                    .await
                    .expect("scheduled");
                assert!(r.status().is_success(), "scheduled: {}", r.status());
                let status = get_json(&format!("{}/gateways/victim", s.url())).await;
                if status["status"]["healthy"] == false {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the Worker never saw the upstream down: {status}"
                );
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }
    s.other_still_serves().await;
    let _back = Fixture::start_on("streamable-http", port, None);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (answer, _) = call(s.url(), &s.sid, "victim__test_simple_text", json!({})).await;
        if text(&answer).contains("simple text") {
            break;
        }
        assert!(Instant::now() < deadline, "the upstream never recovered: {answer}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_to_the_next_url() {
    let s = setup(&[]).await;
    let backup = Fixture::start("streamable-http", None);
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let (status, body) = register(
        s.url(),
        json!({"name": "multi", "urls": [format!("http://127.0.0.1:{dead}/mcp"), format!("{}/mcp", backup.url)]}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (answer, _) = call(s.url(), &s.sid, "multi__test_simple_text", json!({})).await;
    assert!(text(&answer).contains("simple text"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_upstream_crashing_is_restarted_and_never_leaked() {
    if target() == Target::Edge {
        return skip(
            "stdio_upstream_crashing_is_restarted_and_never_leaked",
            "stdio upstreams are native-only",
        );
    }
    let mut s = setup(&[]).await;
    let dir = TempDir::new("stdio-crash");
    let pids = dir.join("pids");
    let server = mcpgw_e2e::repo_root().join("tests/fixture/server.mjs");
    let node = mcpgw_e2e::node_bin();
    let (status, body) = register(
        s.url(),
        json!({"name": "local", "transport": "stdio", "command": node.to_str().expect("utf-8"),
               "args": [server.to_str().expect("utf-8"), "--transport", "stdio", "--pid-file", pids.to_str().expect("utf-8")]}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (answer, _) = call(s.url(), &s.sid, "local__test_simple_text", json!({})).await;
    assert!(text(&answer).contains("simple text"), "{answer}");
    let (answer, took) = call(s.url(), &s.sid, "local__mcpgw_crash", json!({})).await;
    assert_eq!(answer["error"]["data"]["reason"], "closed", "{answer}");
    assert!(took < Duration::from_secs(3), "the crash was reported after {took:?}");
    s.other_still_serves().await;
    // The next call starts the process again.
    let (answer, _) = call(s.url(), &s.sid, "local__test_simple_text", json!({})).await;
    assert!(text(&answer).contains("simple text"), "{answer}");
    // Shut down: no upstream process may survive the gateway.
    let gw = s.gw.native();
    gw.signal("TERM").expect("signal");
    let status = gw.wait_exit(Duration::from_secs(15)).expect("exit");
    assert!(status.success(), "{status:?}");
    let started: Vec<u32> = std::fs::read_to_string(&pids)
        .expect("pid file")
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    assert!(started.len() >= 3, "catalog read, first start, restart: {started:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    for pid in started {
        while std::path::Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid) {
            assert!(Instant::now() < deadline, "stdio upstream {pid} outlived the gateway");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit(')').next().unwrap_or_default().trim_start().starts_with('Z'))
        .unwrap_or(true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalogs_are_refreshed_on_schedule() {
    let s = setup(&["--health-check-secs", "1"]).await;
    let mut victim = Fixture::start("streamable-http", None);
    let port = victim.port();
    let (status, body) = register(
        s.url(),
        json!({"name": "victim", "url": format!("{}/mcp", victim.url), "refresh_secs": 1}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    victim.kill();
    let _changed = Fixture::start_with("streamable-http", port, None, &["--extra-tool", "added_later"]);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let http = http_client();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if target() == Target::Edge {
            // The Cron Trigger, as wrangler dev --test-scheduled runs it.
            let r = http
                .get(format!("{}/__scheduled", s.url()))
                .send()
                .await
                .expect("scheduled");
            assert!(r.status().is_success(), "{}", r.status());
        }
        let v = get_json(&format!("{}/gateways/victim", s.url())).await;
        let names: Vec<&str> = v["catalog"]["tools"]
            .as_array()
            .map(|t| t.iter().filter_map(|t| t["name"].as_str()).collect())
            .unwrap_or_default();
        if names.contains(&"added_later") {
            break;
        }
        assert!(Instant::now() < deadline, "the catalog was never refreshed: {names:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // And the new member is callable, in a session opened before it appeared.
    let (answer, _) = call(s.url(), &s.sid, "victim__added_later", json!({})).await;
    assert_eq!(text(&answer), "extra", "{answer}");
}
