//! mcpgw-e2e: helpers for the end-to-end suite. Tests start the real `mcpgw` binary on
//! 127.0.0.1 (port 0), a small REST backend for REST-backed tools, and real clients (the
//! official Python and TypeScript SDKs, the conformance suite), and stop every process by PID.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The `mcpgw` binary: `$MCPGW_BIN`, else `target/{debug,release}/mcpgw` next to this test.
pub fn gateway_bin() -> PathBuf {
    if let Ok(p) = std::env::var("MCPGW_BIN") {
        return PathBuf::from(p);
    }
    // .../target/<profile>/deps/<test-binary>  →  .../target/<profile>/mcpgw
    let exe = std::env::current_exe().unwrap_or_default();
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    profile_dir.join("mcpgw")
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates `mcpgw-<tag>-<random>`.
    pub fn new(tag: &str) -> Self {
        // Tests run in parallel threads: a counter keeps names unique within the process.
        static DIRS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = DIRS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("mcpgw-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        let _ = std::fs::create_dir_all(&p);
        Self(p)
    }
    /// A path inside.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running gateway process; killed (SIGKILL) on drop.
pub struct GatewayProcess {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// The bound address.
    pub addr: SocketAddr,
    /// From spawn to the "listening" log line.
    pub ready_after: Duration,
    /// The log lines read so far (JSON).
    pub log: Vec<String>,
}

impl GatewayProcess {
    /// Starts `mcpgw serve --port 0 <args>` with extra environment, waits until it listens.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let bin = gateway_bin();
        if !bin.exists() {
            bail!(
                "{} not found: build it first (cargo build -p mcpgw-native) or set MCPGW_BIN",
                bin.display()
            );
        }
        let started = Instant::now();
        let mut cmd = Command::new(&bin);
        cmd.arg("serve")
            .arg("--host")
            .arg("127.0.0.1")
            .arg("--port")
            .arg("0")
            .args(args);
        cmd.env("MCPGW_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .context("spawn mcpgw")?;
        let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
        let mut reader = BufReader::new(stderr);
        let mut log = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut line = String::new();
            let n = reader.read_line(&mut line)?;
            if n == 0 {
                let status = child.wait()?;
                bail!("mcpgw exited ({status}) before listening:\n{}", log.join(""));
            }
            log.push(line.clone());
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                if let Some(addr) = v["fields"]["address"].as_str() {
                    if v["fields"]["message"].as_str().is_some_and(|m| m.contains("listening")) {
                        let addr: SocketAddr = addr.parse()?;
                        let ready_after = started.elapsed();
                        // Keep draining stderr so the child never blocks on a full pipe.
                        std::thread::spawn(move || {
                            let mut sink = String::new();
                            while reader.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
                                sink.clear();
                            }
                        });
                        return Ok(Self {
                            child,
                            url: format!("http://{addr}"),
                            addr,
                            ready_after,
                            log,
                        });
                    }
                }
            }
            if Instant::now() > deadline {
                bail!("mcpgw did not listen within 30 s:\n{}", log.join(""));
            }
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by PID (`TERM`, `INT`, `KILL`).
    pub fn signal(&self, sig: &str) -> anyhow::Result<()> {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()?
            .success();
        if !ok {
            bail!("kill -{sig} {} failed", self.pid());
        }
        Ok(())
    }

    /// Waits for the process to exit, up to `timeout`; its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait()? {
                return Ok(s);
            }
            if Instant::now() > deadline {
                bail!("mcpgw did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resident memory of the process in KiB (Linux `/proc`).
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A REST backend for REST-backed tools, on 127.0.0.1:0, stopped on drop.
pub struct RestBackend {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RestBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A 1x1 PNG, base64.
pub const PNG_1X1: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

/// Starts the backend: `GET /weather?city=` → JSON, `POST /echo` → the body back,
/// `GET /fail` → 500, `GET /slow?ms=` → delayed JSON.
pub async fn start_rest_backend() -> anyhow::Result<RestBackend> {
    use axum::extract::Query;
    use axum::routing::{get, post};
    use std::collections::HashMap;

    async fn weather(Query(q): Query<HashMap<String, String>>) -> axum::Json<serde_json::Value> {
        let city = q.get("city").cloned().unwrap_or_default();
        axum::Json(serde_json::json!({"city": city, "temp_c": 21, "sky": "clear"}))
    }
    async fn echo(body: axum::body::Bytes) -> ([(axum::http::HeaderName, &'static str); 1], axum::body::Bytes) {
        ([(axum::http::header::CONTENT_TYPE, "application/json")], body)
    }
    async fn fail() -> (axum::http::StatusCode, &'static str) {
        (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "boom")
    }
    async fn slow(Query(q): Query<HashMap<String, String>>) -> axum::Json<serde_json::Value> {
        let ms = q.get("ms").and_then(|m| m.parse().ok()).unwrap_or(100u64).min(10_000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        axum::Json(serde_json::json!({"slept_ms": ms}))
    }
    let app = axum::Router::new()
        .route("/weather", get(weather))
        .route("/echo", post(echo))
        .route("/fail", get(fail))
        .route("/slow", get(slow));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(RestBackend {
        url: format!("http://{addr}"),
        task,
    })
}

/// Writes `fixtures/<name>` with `{{BACKEND}}` replaced, into `dir`; returns its path.
pub fn render_fixture(name: &str, backend: &str, dir: &TempDir) -> anyhow::Result<PathBuf> {
    let src = repo_root().join("tests/fixtures").join(name);
    let text = std::fs::read_to_string(&src).with_context(|| format!("read {}", src.display()))?;
    let out = dir.join(name);
    std::fs::write(&out, text.replace("{{BACKEND}}", backend))?;
    Ok(out)
}

/// A gateway seeded from a fixture file, with the REST backend its tools call.
pub struct SeededGateway {
    /// The gateway process.
    pub gw: GatewayProcess,
    /// The REST backend.
    pub backend: RestBackend,
    /// Holds the database and the rendered fixture.
    pub dir: TempDir,
}

/// Starts a REST backend and a gateway seeded from `fixtures/<fixture>` (with extra arguments).
pub async fn start_seeded(fixture: &str, extra_args: &[&str]) -> anyhow::Result<SeededGateway> {
    let backend = start_rest_backend().await?;
    let dir = TempDir::new("seeded");
    let cfg = render_fixture(fixture, &backend.url, &dir)?;
    let db = dir.join("gw.db");
    let mut args = vec![
        "--database",
        db.to_str().context("utf-8 path")?,
        "--config",
        cfg.to_str().context("utf-8 path")?,
    ];
    args.extend_from_slice(extra_args);
    let gw = GatewayProcess::start(&args, &[])?;
    Ok(SeededGateway { gw, backend, dir })
}

/// `initialize` over streamable HTTP at `{url}/mcp`; returns the session id.
pub async fn initialize(http: &reqwest::Client, url: &str) -> anyhow::Result<String> {
    let init = serde_json::json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "mcpgw-tests", "version": "1"}}});
    let r = http
        .post(format!("{url}/mcp"))
        .header("accept", "application/json, text/event-stream")
        .json(&init)
        .send()
        .await?;
    anyhow::ensure!(r.status() == reqwest::StatusCode::OK, "initialize: {}", r.status());
    Ok(r.headers()
        .get("mcp-session-id")
        .context("no Mcp-Session-Id")?
        .to_str()?
        .to_string())
}

/// The node binary to use: node 22 from `node_modules` (the conformance suite needs >= 22).
pub fn node_bin() -> PathBuf {
    let local = repo_root().join("node_modules/.bin/node");
    if local.exists() {
        local
    } else {
        PathBuf::from("node")
    }
}

/// Runs a command to completion with a deadline; returns (success, stdout + stderr).
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> anyhow::Result<(bool, String)> {
    static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let out_path = std::env::temp_dir().join(format!("mcpgw-run-{}-{n}.log", std::process::id()));
    let out_file = std::fs::File::create(&out_path)?;
    let err_file = out_file.try_clone()?;
    let mut child = cmd
        .stdout(out_file)
        .stderr(err_file)
        .stdin(Stdio::null())
        .spawn()
        .context("spawn client")?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = std::fs::read_to_string(&out_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    match status {
        Some(s) => Ok((s.success(), output)),
        None => Ok((false, format!("TIMED OUT after {timeout:?}\n{output}"))),
    }
}
