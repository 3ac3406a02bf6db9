//! Hostile upstreams, peers, clients and admin input: each case asserts the defence and that the
//! gateway still serves others. Cases run as a new user deploys (no optional setting) unless
//! they say otherwise.

use std::time::{Duration, Instant};

use mcpgw_e2e::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Waits (at most `within`) until `path` holds a line, and returns the first.
fn first_line(path: &std::path::Path, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        if let Some(l) = std::fs::read_to_string(path)
            .ok()
            .and_then(|t| t.lines().next().map(str::to_string))
        {
            return l;
        }
        assert!(Instant::now() < deadline, "{} stayed empty", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The gateway still answers an ordinary request.
async fn still_serves(url: &str) {
    let r = http_client()
        .get(format!("{url}/health"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("health");
    assert_eq!(r.status(), StatusCode::OK);
}

const SECRET: &str = "Zq8wX2vB7nR4tY6uI1oP3aS5dF0gH9jKmL2nB4vC6xZ8qW1e";
const KEY: &str = "6vL0Jm3bX9q2Rk7Tz1Wc5Yh8Nf4Pd6Sg0Ua2Ie9Ko3M=";

#[tokio::test]
async fn stdio_commands_through_the_api_are_refused_unless_allowed() {
    if target() == Target::Edge {
        return skip(
            "stdio_commands_through_the_api_are_refused_unless_allowed",
            "stdio upstreams are native-only",
        );
    }
    let dir = TempDir::new("hostile-stdio-api");
    // As deployed: the setting unset (blank keeps the default).
    let gw = start_target_with(&dir, &[], &[("MCPGW_ALLOW_STDIO_API", "")]).expect("start");
    let http = http_client();
    let (status, body) = post_json(
        &http,
        &format!("{}/gateways", gw.url()),
        None,
        &json!({"name": "evil", "transport": "stdio", "command": "sh", "args": ["-c", "touch /tmp/owned"]}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "stdio_api_disabled", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("MCPGW_ALLOW_STDIO_API"),
        "{body}"
    );
    let list: Value = get_json(&format!("{}/gateways", gw.url())).await;
    assert_eq!(list, json!([]), "nothing stored");
    still_serves(gw.url()).await;
}

/// A stdio upstream (seeded, as an operator would) runs with an environment of its own: the
/// gateway's signing secret, sealing key and other `MCPGW_*` variables are not in it.
#[tokio::test]
async fn stdio_children_see_no_secret_of_the_gateway() {
    if target() == Target::Edge {
        return skip(
            "stdio_children_see_no_secret_of_the_gateway",
            "stdio upstreams are native-only",
        );
    }
    let dir = TempDir::new("hostile-stdio-env");
    let pids = dir.join("pids");
    let server = repo_root().join("tests/fixture/server.mjs");
    let seed = dir.join("seed.toml");
    std::fs::write(
        &seed,
        format!(
            "[[upstream]]\nname = \"local\"\ntransport = \"stdio\"\ncommand = {:?}\nargs = [{:?}, \"--transport\", \"stdio\", \"--pid-file\", {:?}]\nenv = {{ OWN_TOKEN = \"own-token-4242\" }}\n",
            node_bin().to_str().expect("utf-8"),
            server.to_str().expect("utf-8"),
            pids.to_str().expect("utf-8"),
        ),
    )
    .expect("seed");
    let db = dir.join("gw.db");
    let gw = GatewayProcess::start(
        &[
            "--database",
            db.to_str().expect("utf-8"),
            "--config",
            seed.to_str().expect("utf-8"),
        ],
        &[
            ("MCPGW_JWT_SECRET", SECRET),
            ("MCPGW_ENCRYPTION_KEY", KEY),
            ("AWS_SECRET_ACCESS_KEY", "canary-not-passed"),
        ],
    )
    .expect("start");
    let pid = first_line(&pids, Duration::from_secs(20));
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
    let vars: Vec<String> = environ
        .split(|b| *b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    assert!(vars.iter().any(|v| v == "OWN_TOKEN=own-token-4242"), "{vars:?}");
    for v in &vars {
        assert!(
            !v.starts_with("MCPGW_") && !v.contains(SECRET) && !v.contains(KEY) && !v.contains("canary"),
            "the child sees {v}"
        );
    }
    // The env value is a credential: sealed in the database, masked by the API.
    let listed: Value = get_json(&format!("{}/gateways", gw.url)).await;
    assert_ne!(listed[0]["env"]["OWN_TOKEN"], "own-token-4242", "{listed}");
    for f in [db.clone(), dir.join("gw.db-wal"), dir.join("gw.db.key")] {
        let Ok(meta) = std::fs::metadata(&f) else { continue };
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            meta.permissions().mode() & 0o077,
            0,
            "{} is readable by others",
            f.display()
        );
        if !f.ends_with("gw.db.key") {
            let bytes = std::fs::read(&f).expect("read");
            assert!(
                !bytes.windows(14).any(|w| w == b"own-token-4242"),
                "{} holds the token in clear",
                f.display()
            );
        }
    }
    still_serves(&gw.url).await;
}

/// A listener on `ip` that counts connections and answers each request head with `answer`'s
/// bytes (then holds the connection open until the test ends).
async fn scripted(
    ip: &str,
    answer: impl Fn(&str) -> String + Send + Sync + 'static,
) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = seen.clone();
    let answer = std::sync::Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).into_owned();
                let _ = s.write_all(answer(&head).as_bytes()).await;
                tokio::time::sleep(Duration::from_secs(30)).await;
            });
        }
    });
    (port, seen)
}

/// A legacy SSE upstream whose `endpoint` event names another host (here 127.0.0.2, which the
/// suite's SSRF setting allows): the gateway must not POST there, least of all with the
/// upstream's `Authorization` header. Registration fails with 502 and nothing reaches the host.
#[tokio::test]
async fn an_sse_endpoint_on_another_origin_is_refused() {
    let (collector, reached) = scripted("127.0.0.2", |_| {
        "HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n".into()
    })
    .await;
    let (upstream, _) = scripted("127.0.0.1", move |_| {
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\r\nevent: endpoint\ndata: http://127.0.0.2:{collector}/message?sessionId=1\n\n"
        )
    })
    .await;
    let dir = TempDir::new("hostile-sse-endpoint");
    let gw = start_target(&dir, &[]).expect("start");
    let (status, body) = post_json(
        &http_client(),
        &format!("{}/gateways", gw.url()),
        None,
        &json!({"name": "evil", "transport": "sse", "url": format!("http://127.0.0.1:{upstream}/sse"),
                "headers": {"Authorization": "Bearer upstream-secret"}}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap_or_default().contains("origin"),
        "{body}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        reached.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the other host was contacted"
    );
    still_serves(gw.url()).await;
}

/// Sends a request head announcing `length` bytes of body and only `sent` of them, then waits
/// (at most `within`) for the status line.
async fn stalled_body(
    addr: std::net::SocketAddr,
    extra: &str,
    length: usize,
    sent: usize,
    within: Duration,
) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{}\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\n{extra}content-length: {length}\r\n\r\n",
        addr.port()
    );
    s.write_all(head.as_bytes()).await.ok()?;
    s.write_all(&vec![b' '; sent]).await.ok()?;
    let mut buf = vec![0u8; 256];
    let n = tokio::time::timeout(within, s.read(&mut buf)).await.ok()?.ok()?;
    String::from_utf8_lossy(&buf[..n]).lines().next().map(str::to_string)
}

/// A client that sends a head and never its whole body: without credentials it is refused
/// before the body is read (auth on); with auth off it gets 408 once the body timeout passes.
#[tokio::test]
async fn stalled_bodies_are_refused_before_reading_or_timed_out() {
    let dir = TempDir::new("hostile-stalled");
    let gw = start_target_with(
        &dir,
        &[],
        &[("MCPGW_AUTH_REQUIRED", "true"), ("MCPGW_JWT_SECRET", SECRET)],
    )
    .expect("start");
    let status = stalled_body(gw.addr(), "", 4_000_000, 10, Duration::from_secs(5)).await;
    assert!(status.as_deref().is_some_and(|s| s.contains(" 401 ")), "{status:?}");
    still_serves(gw.url()).await;
    if target() == Target::Edge {
        return skip(
            "stalled_bodies_are_refused_before_reading_or_timed_out (timeout)",
            "the body timeout is the native listener's",
        );
    }
    let dir = TempDir::new("hostile-stalled-open");
    let gw = start_target(&dir, &["--body-timeout-ms", "500"]).expect("start");
    let t = Instant::now();
    let status = stalled_body(gw.addr(), "", 4_000_000, 10, Duration::from_secs(10)).await;
    assert!(status.as_deref().is_some_and(|s| s.contains(" 408 ")), "{status:?}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    still_serves(gw.url()).await;
}
