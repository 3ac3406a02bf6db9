//! Faults under load, native: two instances sharing Redis and a registry behind nginx, clients
//! calling a federated upstream and a REST tool through the balancer all along; an instance,
//! Redis and the upstream are killed in turn (SIGKILL) and started again. Every request must be
//! answered (a result or an error) within its deadline, and after each fault the service must
//! return. `MCPGW_FAULT_SECS` lengthens each phase (the long run of the closing note); CI runs
//! the short one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mcpgw_e2e::{http_client, start_rest_backend, Fixture, GatewayProcess, Nginx, RedisServer, TempDir};
use serde_json::{json, Value};

const ACCEPT: &str = "application/json, text/event-stream";
/// Longer than the gateway's own bounds on a failing upstream or store, shorter than a client
/// would wait.
const DEADLINE: Duration = Duration::from_secs(20);

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    errors: AtomicU64,
    late: AtomicU64,
    last_ok: Mutex<Option<Instant>>,
    late_what: Mutex<Vec<String>>,
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    sid: Option<&str>,
    body: &Value,
) -> reqwest::Result<reqwest::Response> {
    let mut r = http.post(url).header("accept", ACCEPT).json(body);
    if let Some(s) = sid {
        r = r
            .header("mcp-session-id", s)
            .header("mcp-protocol-version", "2025-11-25");
    }
    r.send().await
}

/// Opens a session: its id, or why not.
async fn open(http: &reqwest::Client, url: &str) -> Result<String, String> {
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "faults", "version": "1"}}});
    let r = post(http, url, None, &init).await.map_err(|e| e.to_string())?;
    if r.status() != 200 {
        return Err(format!("initialize: {}", r.status()));
    }
    let sid = r
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .ok_or("no session id")?;
    let _ = r.bytes().await;
    Ok(sid)
}

/// One client: calls until `stop`, opening a new session whenever its own is gone. Every
/// request is timed against [`DEADLINE`].
async fn client(url: String, n: u64, stop: Instant, tally: Arc<Tally>) {
    let http = http_client();
    let mut sid: Option<String> = None;
    let mut id = 0u64;
    while Instant::now() < stop {
        id += 1;
        let started = Instant::now();
        let attempt = async {
            let s = match &sid {
                Some(s) => s.clone(),
                None => open(&http, &url).await?,
            };
            sid = Some(s.clone());
            let (tool, args, expect) = if (id + n) % 2 == 0 {
                ("fixture__test_simple_text", json!({}), "simple text")
            } else {
                ("weather", json!({"city": "Oslo"}), "Oslo")
            };
            let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": args}});
            let r = post(&http, &url, Some(&s), &body).await.map_err(|e| e.to_string())?;
            if r.status() == 404 {
                sid = None; // the session is gone: the next request opens another
            }
            let status = r.status();
            let text = r.text().await.map_err(|e| e.to_string())?;
            if status == 200 && text.contains(expect) && !text.contains("\"isError\":true") {
                Ok(())
            } else {
                Err(format!(
                    "{tool}: {status} {}",
                    text.chars().take(160).collect::<String>()
                ))
            }
        };
        match tokio::time::timeout(DEADLINE, attempt).await {
            Ok(Ok(())) => {
                tally.ok.fetch_add(1, Ordering::Relaxed);
                *tally.last_ok.lock().expect("lock") = Some(Instant::now());
            }
            Ok(Err(_)) => {
                tally.errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(_) => {
                tally.late.fetch_add(1, Ordering::Relaxed);
                sid = None;
                tally
                    .late_what
                    .lock()
                    .expect("lock")
                    .push(format!("client {n} request {id}, after {:?}", started.elapsed()));
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until a fresh session through `url` calls the federated tool and the REST tool.
async fn service_returns(url: &str, within: Duration) -> Duration {
    let http = http_client();
    let started = Instant::now();
    loop {
        let ok = async {
            let sid = open(&http, url).await?;
            for (tool, args, expect) in [
                ("fixture__test_simple_text", json!({}), "simple text"),
                ("weather", json!({"city": "Oslo"}), "Oslo"),
            ] {
                let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": args}});
                let r = post(&http, url, Some(&sid), &body).await.map_err(|e| e.to_string())?;
                let status = r.status();
                let text = r.text().await.map_err(|e| e.to_string())?;
                if !text.contains(expect) || text.contains("\"isError\":true") {
                    return Err(format!("{tool}: {status} {text}"));
                }
            }
            Ok(())
        };
        let last = match tokio::time::timeout(Duration::from_secs(5), ok).await {
            Ok(Ok(())) => return started.elapsed(),
            Ok(Err(e)) => e,
            Err(_) => "no answer in 5 s".to_string(),
        };
        assert!(
            started.elapsed() < within,
            "the service did not return within {within:?}; last: {last}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_redis_and_the_upstream_killed_in_turn_under_load() {
    let phase = Duration::from_secs(
        std::env::var("MCPGW_FAULT_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(4),
    );
    let dir = TempDir::new("scale-faults");
    let mut redis = RedisServer::start().expect("redis-server");
    let redis_port = redis.port();
    let calls = dir.join("calls.jsonl");
    let mut fixture = Fixture::start("streamable-http", Some(&calls));
    let fixture_port = fixture.port();
    let backend = start_rest_backend().await.expect("backend");
    let db = dir.join("gw.db");
    let env = [
        ("MCPGW_REDIS_URL", redis.url.clone()),
        ("MCPGW_REGISTRY_CACHE_MS", "200".to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let port_a = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let a_args = |port: u16| {
        vec![
            "--database".to_string(),
            db.to_str().expect("utf-8").to_string(),
            "--port".to_string(),
            port.to_string(),
            "--health-check-secs".to_string(),
            "1".to_string(),
        ]
    };
    let start_a = || {
        let args = a_args(port_a);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        GatewayProcess::start(&args, &env).expect("instance a")
    };
    let mut a = start_a();
    let b_args = a_args(0);
    let b_args: Vec<&str> = b_args.iter().map(String::as_str).collect();
    let b = GatewayProcess::start(&b_args, &env).expect("instance b");
    let nginx = Nginx::start(&Nginx::find().expect("nginx"), &[&a.url, &b.url])
        .await
        .expect("nginx");
    let http = http_client();
    for (path, body) in [
        (
            "gateways",
            json!({"name": "fixture", "url": format!("{}/mcp", fixture.url)}),
        ),
        (
            "tools",
            json!({"name": "weather", "url": format!("{}/weather", backend.url),
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}),
        ),
    ] {
        let r = http
            .post(format!("{}/{path}", a.url))
            .json(&body)
            .send()
            .await
            .expect("register");
        assert_eq!(r.status(), 201, "{path}");
    }
    let url = format!("{}/mcp", nginx.url);
    service_returns(&url, Duration::from_secs(15)).await;

    // Load all along: every fault happens under it.
    let tally = Arc::new(Tally::default());
    let stop = Instant::now() + phase * 7 + Duration::from_secs(60);
    let clients: Vec<_> = (0..12)
        .map(|n| tokio::spawn(client(url.clone(), n, stop, tally.clone())))
        .collect();
    let mut log = Vec::new();
    tokio::time::sleep(phase).await;

    // An instance.
    eprintln!("faults: killing an instance");
    a.signal("KILL").expect("kill a");
    tokio::time::sleep(phase).await;
    log.push(("instance killed", service_returns(&url, Duration::from_secs(30)).await));
    a = start_a();
    tokio::time::sleep(phase).await;

    // Redis.
    eprintln!("faults: killing Redis");
    drop(redis);
    tokio::time::sleep(phase).await;
    redis = RedisServer::start_on(redis_port).expect("redis again");
    log.push(("redis restarted", service_returns(&url, Duration::from_secs(30)).await));
    tokio::time::sleep(phase).await;

    // The upstream.
    eprintln!("faults: killing the upstream");
    drop(fixture);
    tokio::time::sleep(phase).await;
    fixture = Fixture::start_on("streamable-http", fixture_port, Some(&calls));
    log.push((
        "upstream restarted",
        service_returns(&url, Duration::from_secs(30)).await,
    ));
    tokio::time::sleep(phase).await;

    // The load ends early: nothing is left to check past this point.
    let ended = Instant::now();
    for c in clients {
        c.abort();
    }
    let (ok, errors, late) = (
        tally.ok.load(Ordering::Relaxed),
        tally.errors.load(Ordering::Relaxed),
        tally.late.load(Ordering::Relaxed),
    );
    eprintln!("faults: {ok} results, {errors} errors, {late} late; service returned after {log:?}");
    assert_eq!(
        late,
        0,
        "requests unanswered past {DEADLINE:?}: {:?}",
        tally.late_what.lock().expect("lock")
    );
    assert!(ok > 0, "no request succeeded");
    let last = tally.last_ok.lock().expect("lock").expect("a success");
    assert!(
        ended.duration_since(last) < Duration::from_secs(5),
        "the load was failing at the end"
    );
    drop((a, b, nginx, redis, fixture));
}
