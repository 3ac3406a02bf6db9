//! Sessions shared by two native instances on one Redis (`MCPGW_REDIS_URL`), with nginx in
//! front balancing round robin without affinity: any instance serves any request of a session.
//! The official SDKs run whole sessions through the balancer; a hand-driven session moves
//! between the instances on purpose (a sampling answer posted to the instance that is not
//! running the call, an update heard by one instance for a stream the other holds, a stream
//! resumed at the other instance, a DELETE at one ending the session at both), and one instance
//! is killed mid-session. Native-only (on the edge a session lives in its Durable Object).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use mcpgw_e2e::{
    get_json, http_client, node_bin, repo_root, run_with_timeout, Fixture, GatewayProcess, Nginx, RawSession,
    RedisServer, TempDir,
};
use serde_json::{json, Value};

struct Shared {
    a: GatewayProcess,
    b: GatewayProcess,
    nginx: Nginx,
    calls: PathBuf,
    _fixture: Fixture,
    _everything: Fixture,
    _redis: RedisServer,
    _dir: TempDir,
}

async fn post_json(url: &str, body: &Value) {
    let r = http_client().post(url).json(body).send().await.expect("POST");
    let status = r.status();
    assert_eq!(status, 201, "{url}: {}", r.text().await.unwrap_or_default());
}

/// Two instances on one Redis and one registry file, nginx before them, the fixture and the
/// reference server registered (and a virtual server `conf` of the fixture's own names).
async fn start_shared() -> Shared {
    let dir = TempDir::new("shared-sessions");
    let redis = RedisServer::start().expect("redis-server");
    let db = dir.join("gw.db");
    let env = [
        ("MCPGW_REDIS_URL", redis.url.as_str()),
        ("MCPGW_REGISTRY_CACHE_MS", "200"),
    ];
    let args = ["--database", db.to_str().expect("utf-8"), "--upkeep-secs", "1"];
    let a = GatewayProcess::start(&args, &env).expect("instance a");
    let b = GatewayProcess::start(&args, &env).expect("instance b");
    let nginx_bin = Nginx::find().expect("nginx (the test command installs nginx-light)");
    let nginx = Nginx::start(&nginx_bin, &[&a.url, &b.url]).await.expect("nginx");
    let calls = dir.join("calls.jsonl");
    let fixture = Fixture::start("streamable-http", Some(&calls));
    let everything = Fixture::everything("streamableHttp");
    post_json(
        &format!("{}/gateways", a.url),
        &json!({"name": "fixture", "url": format!("{}/mcp", fixture.url)}),
    )
    .await;
    post_json(
        &format!("{}/gateways", a.url),
        &json!({"name": "everything", "url": format!("{}/mcp", everything.url)}),
    )
    .await;
    post_json(
        &format!("{}/servers", a.url),
        &json!({"name": "conf", "upstreams": ["fixture"], "original_names": true}),
    )
    .await;
    // b serves what a registered within its registry cache time.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !get_json(&format!("{}/servers", b.url))
        .await
        .to_string()
        .contains("\"conf\"")
    {
        assert!(Instant::now() < deadline, "b never saw a's registrations");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Shared {
        a,
        b,
        nginx,
        calls,
        _fixture: fixture,
        _everything: everything,
        _redis: redis,
        _dir: dir,
    }
}

fn run_client(cmd: &mut Command, pass: &str) {
    let (ok, out) = run_with_timeout(cmd, Duration::from_secs(180)).expect("run client");
    assert!(ok && out.contains(pass), "client failed:\n{out}");
}

/// The Python and TypeScript SDKs' federation clients (lists, progress, logs during and outside
/// calls, sampling and elicitation relayed and answered, subscriptions) through the balancer,
/// each request going to either instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_sessions_run_whole_through_a_balancer_without_affinity() {
    let sh = start_shared().await;
    let url = format!("{}/mcp", sh.nginx.url);
    let calls = sh.calls.clone();
    tokio::task::spawn_blocking(move || {
        let mut py = Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()));
        py.arg(repo_root().join("tests/clients/federation_client.py")).arg(&url);
        run_client(&mut py, "PASS python federation");
        let mut ts = Command::new(node_bin());
        ts.arg(repo_root().join("tests/clients/ts_federation.mjs"))
            .arg(&url)
            .arg(&calls)
            .current_dir(repo_root());
        run_client(&mut ts, "PASS typescript federation");
    })
    .await
    .expect("join");
    drop(sh);
}

fn sampled(req: &Value) -> Option<Value> {
    (req["method"] == "sampling/createMessage").then(|| {
        json!({"role": "assistant", "content": {"type": "text", "text": "answered-at-the-other-instance"},
               "model": "raw", "stopReason": "endTurn"})
    })
}

/// One session, moved between the instances on purpose; then the instance it began at is
/// killed and the session goes on at the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_moves_between_instances_and_outlives_one() {
    let sh = start_shared().await;
    let at_a = format!("{}/servers/conf/mcp", sh.a.url);
    let at_b = format!("{}/servers/conf/mcp", sh.b.url);
    let mut s = RawSession::open(&at_a, json!({"sampling": {}}))
        .await
        .expect("initialize at a");

    // Opened at a, served at b.
    s.endpoint = at_b.clone();
    let (list, _) = s
        .call(json!(1), "tools/list", json!({}), |_| None)
        .await
        .expect("list at b");
    assert!(list.to_string().contains("test_sampling"), "{list}");

    // A call running at b asks the client; the answer is posted to a, which has no such call:
    // it reaches b's call through Redis.
    s.answers_to = Some(at_a.clone());
    let (answer, seen) = s
        .call(
            json!(2),
            "tools/call",
            json!({"name": "test_sampling", "arguments": {"prompt": "hi"}}),
            sampled,
        )
        .await
        .expect("sampling call at b, answered at a");
    assert!(
        seen.iter().any(|(_, m)| m["method"] == "sampling/createMessage"),
        "{seen:?}"
    );
    assert!(
        answer.to_string().contains("answered-at-the-other-instance"),
        "{answer}"
    );
    s.answers_to = None;

    // The stream at a; the subscription at b (b's upstream session holds it); the touch at a.
    // The update reaches b, which tells a, whose stream delivers it.
    s.endpoint = at_a.clone();
    s.open_standalone().await.expect("GET stream at a");
    s.endpoint = at_b.clone();
    let (sub, _) = s
        .call(
            json!(3),
            "resources/subscribe",
            json!({"uri": "test://watched-resource"}),
            |_| None,
        )
        .await
        .expect("subscribe at b");
    assert!(sub.get("result").is_some(), "{sub}");
    s.endpoint = at_a.clone();
    let mut heard = None;
    for i in 0..20 {
        let (r, _) = s
            .tool(json!(10 + i), "mcpgw_touch", json!({"uri": "test://watched-resource"}))
            .await
            .expect("touch at a");
        assert!(r.get("result").is_some(), "{r}");
        if let Some(m) = s.next_standalone(Duration::from_millis(500)).await {
            heard = Some(m);
            break;
        }
    }
    let m = heard.expect("the update reached the stream held by the other instance");
    assert_eq!(m["method"], "notifications/resources/updated", "{m}");

    // The standalone stream resumed at b from its beginning replays the update from Redis.
    let r = http_client()
        .get(&at_b)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &s.sid)
        .header("mcp-protocol-version", "2025-11-25")
        .header("last-event-id", "g.0")
        .send()
        .await
        .expect("resume at b");
    assert_eq!(r.status(), 200);
    let events = mcpgw_e2e::read_events(r, 1).await;
    assert!(
        events
            .iter()
            .any(|(_, v)| v["method"] == "notifications/resources/updated"),
        "replayed at b: {events:?}"
    );

    // A second session: ended at b, unknown at a at once.
    let other = RawSession::open(&at_a, json!({})).await.expect("second session");
    let status = RawSession::join(&at_b, &other.sid).delete().await.expect("DELETE at b");
    assert!(status.is_success(), "{status}");
    let r = other
        .post(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
        .await
        .expect("ping at a");
    assert_eq!(r.status(), 404, "a session ended at b is gone at a");

    // a dies, and the stream it held with it; the client opens it again at b (as a client
    // whose stream broke does), and the session goes on there.
    sh.a.signal("KILL").expect("kill a");
    s.endpoint = at_b.clone();
    s.open_standalone().await.expect("GET stream again, at b");
    let (r, _) = s
        .tool(json!(40), "test_simple_text", json!({}))
        .await
        .expect("call at b after a died");
    assert!(r.to_string().contains("simple text"), "{r}");
    // Through the balancer too: nginx passes over the dead instance.
    s.endpoint = format!("{}/servers/conf/mcp", sh.nginx.url);
    for i in 0..4 {
        let (r, _) = s
            .tool(json!(50 + i), "test_simple_text", json!({}))
            .await
            .expect("call through the balancer");
        assert!(r.to_string().contains("simple text"), "{r}");
    }
}
