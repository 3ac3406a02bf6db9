//! mcpgw-e2e: helpers for the end-to-end suite. Tests start the real `mcpgw` binary on
//! 127.0.0.1 (port 0), a small REST backend for REST-backed tools, and real clients (the
//! official Python and TypeScript SDKs, the conformance suite), and stop every process by PID.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

pub mod browser;
pub mod nginx;
pub mod postgres;
pub mod prometheus;
pub mod soak;
pub use nginx::Nginx;
pub use postgres::Postgres;

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

/// The lines of a child's output, read on a thread of their own until it closes; the thread
/// keeps reading (and dropping) after the receiver is gone, so the child never blocks.
fn lines_of(out: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(out);
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
            let _ = tx.send(std::mem::take(&mut line));
        }
    });
    rx
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
    /// The lines after those, as the process writes them.
    more: std::sync::mpsc::Receiver<String>,
}

impl GatewayProcess {
    /// Starts `mcpgw serve --port 0 <args>` (or on the `--port` of `args`) with extra
    /// environment, waits until it listens.
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
        cmd.arg("serve").arg("--host").arg("127.0.0.1");
        if !args.contains(&"--port") {
            cmd.arg("--port").arg("0");
        }
        cmd.args(args);
        cmd.env("MCPGW_LOG", "info");
        // The suite's gateways run without auth unless a test turns it on (the conformance
        // CLI and the SDK examples send no token); the auth tests pass MCPGW_AUTH_REQUIRED.
        cmd.env("MCPGW_AUTH_REQUIRED", "false");
        // Every backend and upstream of the suite is on 127.0.0.1.
        cmd.env("MCPGW_SSRF_ALLOW", "loopback");
        // The suite registers its stdio fixtures through the REST API; the hostile tests start
        // gateways with it unset (the default: refused).
        cmd.env("MCPGW_ALLOW_STDIO_API", "true");
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
        // Lines are read on a thread (which goes on draining stderr, so the child never blocks
        // on a full pipe); waiting for them has a deadline even if the process prints nothing.
        let lines = lines_of(stderr);
        let mut log = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match lines.recv_timeout(left) {
                Ok(line) => line,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child.wait()?;
                    bail!("mcpgw exited ({status}) before listening:\n{}", log.join(""));
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!("mcpgw did not listen within 30 s:\n{}", log.join(""));
                }
            };
            log.push(line.clone());
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                if let Some(addr) = v["fields"]["address"].as_str() {
                    if v["fields"]["message"].as_str().is_some_and(|m| m.contains("listening")) {
                        let addr: SocketAddr = addr.parse()?;
                        return Ok(Self {
                            child,
                            url: format!("http://{addr}"),
                            addr,
                            ready_after: started.elapsed(),
                            log,
                            more: lines,
                        });
                    }
                }
            }
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Log lines written since the last call (or since it listened), waiting up to `wait` for
    /// the first; added to [`GatewayProcess::log`] too.
    pub fn read_log(&mut self, wait: Duration) -> Vec<String> {
        let mut out = Vec::new();
        if let Ok(l) = self.more.recv_timeout(wait) {
            out.push(l);
        }
        while let Ok(l) = self.more.try_recv() {
            out.push(l);
        }
        self.log.extend(out.iter().cloned());
        out
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
    slow_calls: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
}

impl RestBackend {
    /// Waits (up to 10 s) until `/slow` received `n` requests in all.
    pub async fn wait_for_slow_calls(&self, n: u64) {
        let mut rx = self.slow_calls.subscribe();
        tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|c| *c >= n))
            .await
            .expect("the backend got the slow call in time")
            .expect("backend running");
    }
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
/// `GET /fail` → 500, `GET /slow?ms=` → delayed JSON, `GET /headers` → the request headers.
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
    async fn headers(h: axum::http::HeaderMap) -> axum::Json<serde_json::Value> {
        let map: serde_json::Map<String, serde_json::Value> = h
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::json!(v.to_str().unwrap_or_default())))
            .collect();
        axum::Json(serde_json::Value::Object(map))
    }
    async fn fail() -> (axum::http::StatusCode, &'static str) {
        (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "boom")
    }
    let slow_calls = std::sync::Arc::new(tokio::sync::watch::Sender::new(0u64));
    let counter = slow_calls.clone();
    let slow = move |q: Query<HashMap<String, String>>| {
        counter.send_modify(|c| *c += 1);
        slow(q)
    };
    async fn slow(Query(q): Query<HashMap<String, String>>) -> axum::Json<serde_json::Value> {
        let ms = q.get("ms").and_then(|m| m.parse().ok()).unwrap_or(100u64).min(10_000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        axum::Json(serde_json::json!({"slept_ms": ms}))
    }
    let app = axum::Router::new()
        .route("/weather", get(weather))
        .route("/echo", post(echo))
        .route("/fail", get(fail))
        .route("/headers", get(headers))
        .route("/slow", get(slow));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(RestBackend {
        url: format!("http://{addr}"),
        task,
        slow_calls,
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

/// Which gateway the suite runs against: `MCPGW_TARGET=native` (default) or `edge`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The `mcpgw` binary.
    Native,
    /// The Worker under `wrangler dev` (workerd).
    Edge,
}

/// The target named by `MCPGW_TARGET`.
pub fn target() -> Target {
    match std::env::var("MCPGW_TARGET").as_deref() {
        Ok("edge") => Target::Edge,
        _ => Target::Native,
    }
}

/// A `wrangler dev` process serving the built Worker on 127.0.0.1, with its own persist dir.
/// Stopped (with its workerd children) by its process group on drop.
pub struct EdgeProcess {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// The bound address.
    pub addr: SocketAddr,
    /// Holds the persisted D1 and Durable Object state, the config and the log.
    pub state_dir: PathBuf,
}

fn wrangler(args: &[&str], dir: &Path) -> Command {
    let root = repo_root();
    let mut cmd = Command::new(node_bin());
    cmd.arg(root.join("node_modules/.bin/wrangler"))
        .args(args)
        .current_dir(dir);
    cmd.env("WRANGLER_SEND_METRICS", "false")
        .env("CI", "true")
        .env("NO_COLOR", "1");
    cmd
}

impl EdgeProcess {
    /// The wrangler process (workerd runs as its descendant).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts the Worker with `vars` (wrangler `--var`), persisting state under `state_dir`
    /// (created, migrated on first use; reused as it is when restarting).
    pub fn start(state_dir: &Path, vars: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::start_build(&repo_root().join("edge/build"), state_dir, vars)
    }

    /// [`EdgeProcess::start`] with the Worker built in `build` (a copy of `edge/build` kept from
    /// another commit, for a before-and-after benchmark).
    pub fn start_build(build: &Path, state_dir: &Path, vars: &[(&str, &str)]) -> anyhow::Result<Self> {
        use std::os::unix::process::CommandExt;
        let root = repo_root();
        let shim = build.join("worker/shim.mjs");
        if !shim.exists() {
            bail!(
                "{} not found: build the Worker first (bash scripts/edge.sh build)",
                shim.display()
            );
        }
        std::fs::create_dir_all(state_dir)?;
        // The repository's wrangler.toml without [build] (the Worker is built once, beforehand).
        let toml = std::fs::read_to_string(root.join("wrangler.toml"))?;
        let mut cfg = String::new();
        let mut skip = false;
        for line in toml.lines() {
            if line.starts_with('[') {
                skip = line.trim() == "[build]";
            }
            if skip {
                continue;
            }
            let line = line
                .replace(
                    "\"edge/build/worker/shim.mjs\"",
                    &format!("{:?}", shim.display().to_string()),
                )
                .replace(
                    "migrations_dir = \"migrations\"",
                    &format!("migrations_dir = {:?}", root.join("migrations").display().to_string()),
                );
            cfg.push_str(&line);
            cfg.push('\n');
        }
        let cfg_path = state_dir.join("wrangler.toml");
        std::fs::write(&cfg_path, &cfg)?;
        let persist = state_dir.join("state");
        let persist_s = persist.to_str().context("utf-8 path")?.to_string();
        let cfg_s = cfg_path.to_str().context("utf-8 path")?.to_string();
        if !persist.exists() {
            // A copy of the state migrated once for this test process (each migration is a
            // wrangler run of a few seconds).
            let template = migrated_template(&cfg)?;
            copy_dir(&template, &persist)?;
        }
        // wrangler needs a port number: one free when picked, which another process may take
        // before workerd binds it. Then it is tried again on another.
        let mut last = String::new();
        for _attempt in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let port_s = port.to_string();
            let mut args = vec![
                "dev",
                "--config",
                &cfg_s,
                "--local",
                "--ip",
                "127.0.0.1",
                "--port",
                &port_s,
                "--persist-to",
                &persist_s,
            ];
            // --test-scheduled: GET /__scheduled runs the Cron Trigger handler.
            args.extend([
                "--inspector-port",
                "0",
                "--test-scheduled",
                "--var",
                "MCPGW_BIND_HOST:127.0.0.1",
            ]);
            let mut var_args: Vec<String> = vars.iter().map(|(k, v)| format!("{k}:{v}")).collect();
            // As natively: no auth unless the test sets it.
            if !vars.iter().any(|(k, _)| *k == "MCPGW_AUTH_REQUIRED") {
                var_args.push("MCPGW_AUTH_REQUIRED:false".into());
            }
            if !vars.iter().any(|(k, _)| *k == "MCPGW_SSRF_ALLOW") {
                var_args.push("MCPGW_SSRF_ALLOW:loopback".into());
            }
            // Whatever answers on the port must prove it is this Worker by the instance name
            // /version reports.
            let instance = format!("edge-{}-{port}-{}", std::process::id(), unix_now());
            var_args.push(format!("MCPGW_INSTANCE:{instance}"));
            // Natively the key is a file beside the database; the Worker takes it as a secret.
            if !vars.iter().any(|(k, _)| *k == "MCPGW_ENCRYPTION_KEY") {
                var_args.push(format!("MCPGW_ENCRYPTION_KEY:{TEST_ENCRYPTION_KEY}"));
            }
            for v in &var_args {
                args.extend(["--var", v.as_str()]);
            }
            let log = std::fs::File::create(state_dir.join("wrangler.log"))?;
            let mut cmd = wrangler(&args, state_dir);
            cmd.stdout(log.try_clone()?)
                .stderr(log)
                .stdin(Stdio::null())
                .process_group(0);
            let child = cmd.spawn().context("spawn wrangler dev")?;
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
            let mut edge = Self {
                child,
                url: format!("http://{addr}"),
                addr,
                state_dir: state_dir.to_path_buf(),
            };
            match edge.wait_ready(&instance)? {
                None => return Ok(edge),
                Some(why) => {
                    edge.stop();
                    last = why;
                }
            }
        }
        bail!("wrangler dev found no free port in 5 tries; the last: {last}")
    }

    /// Waits until this Worker answers on its port: `None` once it does, `Some(why)` if the
    /// port turned out to be taken (by the time workerd bound it, or by another server).
    fn wait_ready(&mut self, instance: &str) -> anyhow::Result<Option<String>> {
        let log_of = |dir: &Path| std::fs::read_to_string(dir.join("wrangler.log")).unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(status) = self.child.try_wait()? {
                let log = log_of(&self.state_dir);
                if log.contains("Address already in use") {
                    return Ok(Some(format!("{} was taken", self.addr)));
                }
                bail!("wrangler dev exited ({status}):\n{log}");
            }
            if health_ok(self.addr) {
                let v = version_of(self.addr);
                if v.get("instance").and_then(|i| i.as_str()) == Some(instance) {
                    return Ok(None);
                }
                return Ok(Some(format!(
                    "{} is answered by another server: /version {v}",
                    self.addr
                )));
            }
            if Instant::now() > deadline {
                bail!("wrangler dev not ready within 90 s:\n{}", log_of(&self.state_dir));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops wrangler and its workerd children (SIGTERM to the process group, then SIGKILL).
    pub fn stop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

/// Local D1 state with every migration applied, made once per test process from `cfg` (the
/// Worker config every test uses) under the temp dir; its `state` directory.
fn migrated_template(cfg: &str) -> anyhow::Result<PathBuf> {
    static TEMPLATE: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    let made = TEMPLATE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("mcpgw-d1-template-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let cfg_path = dir.join("wrangler.toml");
        std::fs::write(&cfg_path, cfg).map_err(|e| e.to_string())?;
        let persist = dir.join("state");
        let mut migrate = wrangler(
            &[
                "d1",
                "migrations",
                "apply",
                "mcpgw",
                "--local",
                "--config",
                cfg_path.to_str().unwrap_or_default(),
                "--persist-to",
                persist.to_str().unwrap_or_default(),
            ],
            &dir,
        );
        let (ok, out) = run_with_timeout(&mut migrate, Duration::from_secs(120)).map_err(|e| e.to_string())?;
        if !ok {
            return Err(format!("wrangler d1 migrations apply failed:\n{out}"));
        }
        Ok(persist)
    });
    made.clone().map_err(|e| anyhow!(e))
}

/// Copies a directory tree.
fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

impl Drop for EdgeProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `GET /version` over a raw socket: its JSON body (null if there is none).
fn version_of(addr: SocketAddr) -> serde_json::Value {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return serde_json::Value::Null;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req = format!(
        "GET /version HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
        addr.port()
    );
    if s.write_all(req.as_bytes()).is_err() {
        return serde_json::Value::Null;
    }
    // Read until the body parses (the server may keep the connection open after it).
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = s.read(&mut buf) {
        raw.extend_from_slice(&buf[..n]);
        if let Some(v) = version_body(&String::from_utf8_lossy(&raw)) {
            return v;
        }
    }
    version_body(&String::from_utf8_lossy(&raw)).unwrap_or(serde_json::Value::Null)
}

/// The JSON body of a raw HTTP/1.1 answer (plain or chunked), once it is all there.
fn version_body(text: &str) -> Option<serde_json::Value> {
    let body = text.split_once("\r\n\r\n")?.1;
    if let Ok(v) = serde_json::from_str(body) {
        return Some(v);
    }
    // A chunked body: its first chunk is the whole (small) JSON document.
    let (size, rest) = body.split_once("\r\n")?;
    let n = usize::from_str_radix(size.trim(), 16).ok()?;
    serde_json::from_str(rest.get(..n)?).ok()
}

/// A plain `GET /health` over a raw socket: true on a 200.
fn health_ok(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req = format!(
        "GET /health HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
        addr.port()
    );
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    s.read(&mut buf)
        .map(|n| buf[..n].starts_with(b"HTTP/1.1 200"))
        .unwrap_or(false)
}

/// A gateway of the selected [`Target`].
pub enum TestGateway {
    /// The native process.
    Native(GatewayProcess),
    /// The Worker under wrangler dev.
    Edge(EdgeProcess),
}

impl TestGateway {
    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        match self {
            TestGateway::Native(g) => &g.url,
            TestGateway::Edge(e) => &e.url,
        }
    }
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        match self {
            TestGateway::Native(g) => g.addr,
            TestGateway::Edge(e) => e.addr,
        }
    }
    /// The Worker's state directory (its D1 and Durable Object state, `wrangler.log`).
    pub fn edge_state_dir(&self) -> Option<&Path> {
        match self {
            TestGateway::Native(_) => None,
            TestGateway::Edge(e) => Some(&e.state_dir),
        }
    }
    /// The native process, for native-only tests (signals, exit status).
    pub fn native(&mut self) -> &mut GatewayProcess {
        match self {
            TestGateway::Native(g) => g,
            TestGateway::Edge(_) => panic!("this test is native-only; run it without MCPGW_TARGET=edge"),
        }
    }
}

/// Starts a gateway of the selected target with settings given as native flags
/// (`--page-size N`, `--max-body-bytes N`; the edge gets them as wrangler vars) and an empty
/// registry in `dir`.
pub fn start_target(dir: &TempDir, settings: &[&str]) -> anyhow::Result<TestGateway> {
    start_target_with(dir, settings, &[])
}

/// [`start_target`] with `MCPGW_*` variables (the environment natively, wrangler vars on the
/// edge), for settings that are variables only (auth, keys).
pub fn start_target_with(dir: &TempDir, settings: &[&str], env: &[(&str, &str)]) -> anyhow::Result<TestGateway> {
    match target() {
        Target::Native => {
            let db = dir.join("gw.db");
            let mut args = vec!["--database", db.to_str().context("utf-8 path")?];
            args.extend_from_slice(settings);
            Ok(TestGateway::Native(GatewayProcess::start(&args, env)?))
        }
        Target::Edge => {
            // The edge reads the core's settings table as wrangler vars: `--page-size` is
            // `MCPGW_PAGE_SIZE`; `--upkeep-secs` is each runtime's own (the Durable Object's alarm).
            let mut named = Vec::new();
            for pair in settings.chunks(2) {
                let flag = pair[0].strip_prefix("--").context("settings are --flag value pairs")?;
                let field = flag.replace('-', "_");
                let known = mcpgw_core::config::SETTINGS.iter().any(|s| s.field == field);
                if !known && flag != "upkeep-secs" {
                    bail!("setting --{flag} has no edge equivalent");
                }
                named.push((
                    format!("MCPGW_{}", field.to_ascii_uppercase()),
                    *pair.get(1).context("a setting needs a value")?,
                ));
            }
            let mut vars = env.to_vec();
            vars.extend(named.iter().map(|(n, v)| (n.as_str(), *v)));
            Ok(TestGateway::Edge(EdgeProcess::start(&dir.join("edge"), &vars)?))
        }
    }
}

/// Creates every entry of a seed file through the REST API, in file order.
pub async fn seed_over_rest(url: &str, seed_toml: &str) -> anyhow::Result<()> {
    seed_over_rest_as(url, seed_toml, None).await
}

/// [`seed_over_rest`] with an admin bearer token (a gateway with auth on).
pub async fn seed_over_rest_as(url: &str, seed_toml: &str, bearer: Option<&str>) -> anyhow::Result<()> {
    let file: toml::Table = toml::from_str(seed_toml)?;
    let http = reqwest::Client::new();
    for (section, collection) in [
        ("tool", "tools"),
        ("resource", "resources"),
        ("resource_template", "resources"),
        ("prompt", "prompts"),
        ("server", "servers"),
    ] {
        let Some(entries) = file.get(section).and_then(|v| v.as_array()) else {
            continue;
        };
        for entry in entries {
            let body = serde_json::to_value(entry)?;
            let mut rb = http.post(format!("{url}/{collection}")).json(&body);
            if let Some(t) = bearer {
                rb = rb.bearer_auth(t);
            }
            let r = rb.send().await?;
            anyhow::ensure!(
                r.status() == reqwest::StatusCode::CREATED,
                "seed {section}: {} {}",
                r.status(),
                r.text().await?
            );
        }
    }
    Ok(())
}

/// A gateway seeded from a fixture file, with the REST backend its tools call.
pub struct SeededGateway {
    /// The gateway (native process or Worker).
    pub gw: TestGateway,
    /// The REST backend.
    pub backend: RestBackend,
    /// Holds the database and the rendered fixture.
    pub dir: TempDir,
}

/// Starts a REST backend and a gateway of the selected target seeded from
/// `fixtures/<fixture>`: natively with `--config`, on the edge through the REST API.
pub async fn start_seeded(fixture: &str, settings: &[&str]) -> anyhow::Result<SeededGateway> {
    let backend = start_rest_backend().await?;
    let dir = TempDir::new("seeded");
    let cfg = render_fixture(fixture, &backend.url, &dir)?;
    let gw = match target() {
        Target::Native => {
            let mut args = vec!["--config", cfg.to_str().context("utf-8 path")?];
            args.extend_from_slice(settings);
            start_target(&dir, &args)?
        }
        Target::Edge => {
            let gw = start_target(&dir, settings)?;
            seed_over_rest(gw.url(), &std::fs::read_to_string(&cfg)?).await?;
            gw
        }
    };
    Ok(SeededGateway { gw, backend, dir })
}

/// An HTTP client for tests: no proxy, a 30 s timeout.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_default()
}

/// `POST url` with a JSON body (and a bearer token): the status and the JSON answer (null if
/// the answer is not JSON); panics if the request fails.
pub async fn post_json(
    http: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
    body: &serde_json::Value,
) -> (reqwest::StatusCode, serde_json::Value) {
    let mut rb = http.post(url).json(body);
    if let Some(t) = bearer {
        rb = rb.bearer_auth(t);
    }
    let r = rb.send().await.unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = r.status();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// `tools/call` over `POST {gateway}/rpc`: the JSON-RPC answer.
pub async fn call_tool(
    http: &reqwest::Client,
    gateway: &str,
    bearer: Option<&str>,
    name: &str,
    arguments: serde_json::Value,
) -> serde_json::Value {
    let call = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name, "arguments": arguments}});
    post_json(http, &format!("{gateway}/rpc"), bearer, &call).await.1
}

/// `GET url` and its JSON body; panics if the request fails or the body is not JSON.
pub async fn get_json(url: &str) -> serde_json::Value {
    http_client()
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: not JSON: {e}"))
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

/// Runs a command to completion with a deadline; returns (success, stdout + stderr). A command
/// The Python the suite's clients and fixtures run with (`PYTHON`, else `python3`).
pub fn python() -> Command {
    Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()))
}

/// [`run_with_timeout`] off the async runtime, so servers on the test's own runtime (a REST
/// backend, a receiver) go on answering the command meanwhile.
pub async fn run_blocking(mut cmd: Command, timeout: Duration) -> (bool, String) {
    tokio::task::spawn_blocking(move || run_with_timeout(&mut cmd, timeout))
        .await
        .expect("join")
        .expect("run the command")
}

/// still running at the deadline is not a success ("TIMED OUT" heads its output).
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> anyhow::Result<(bool, String)> {
    let (status, output) = run_until_exit(cmd, timeout)?;
    match status {
        Some(s) => Ok((s.success(), output)),
        None => Ok((false, format!("TIMED OUT after {timeout:?}\n{output}"))),
    }
}

/// Runs a command in a process group of its own with a deadline: its exit status (`None` if it
/// was still running at the deadline; then the whole group, children included, is killed) and
/// its stdout + stderr.
pub fn run_until_exit(
    cmd: &mut Command,
    timeout: Duration,
) -> anyhow::Result<(Option<std::process::ExitStatus>, String)> {
    use std::os::unix::process::CommandExt;
    static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let out_path = std::env::temp_dir().join(format!("mcpgw-run-{}-{n}.log", std::process::id()));
    let out_file = std::fs::File::create(&out_path)?;
    let err_file = out_file.try_clone()?;
    let mut child = cmd
        .stdout(out_file)
        .stderr(err_file)
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
        .context("spawn client")?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break Some(s);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Whatever the command left behind in its group goes too (node and workerd children).
    kill_group(child.id());
    if status.is_none() {
        let _ = child.wait();
    }
    let output = std::fs::read_to_string(&out_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    Ok((status, output))
}

/// SIGKILL to the process group `pgid` (a child started with `process_group(0)`), by its id.
pub fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
}

/// Reads SSE events from a response until `n` events arrived; returns (id, data) pairs.
/// Panics (failing the test) if they do not arrive within 10 s.
pub async fn read_events(r: reqwest::Response, n: usize) -> Vec<(String, serde_json::Value)> {
    use futures_lite::StreamExt;
    let mut stream = r.bytes_stream();
    let mut buf = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while events.len() < n {
        let chunk = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("events in time")
            .expect("stream open")
            .expect("chunk");
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let id = block
                .lines()
                .find_map(|l| l.strip_prefix("id: "))
                .unwrap_or_default()
                .to_string();
            let data: String = block
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .collect::<Vec<_>>()
                .join("\n");
            if !data.is_empty() {
                events.push((id, serde_json::from_str(&data).expect("JSON data")));
            }
        }
    }
    events
}

/// The project's fixture upstream (`tests/fixture/server.mjs`), killed on drop.
pub struct Fixture {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT` (empty for stdio).
    pub url: String,
}

impl Fixture {
    /// Starts the fixture over `streamable-http` or `sse` on a free port, logging calls to
    /// `calls_log` if given.
    pub fn start(transport: &str, calls_log: Option<&Path>) -> Self {
        Self::start_on(transport, 0, calls_log)
    }

    /// [`Fixture::start`] on a given port (0: a free one), e.g. to restart it where it was.
    pub fn start_on(transport: &str, port: u16, calls_log: Option<&Path>) -> Self {
        Self::start_with(transport, port, calls_log, &[])
    }

    /// [`Fixture::start_on`] with more arguments (`--extra-tool NAME`, `--pid-file FILE`).
    pub fn start_with(transport: &str, port: u16, calls_log: Option<&Path>, extra: &[&str]) -> Self {
        let mut cmd = Command::new(node_bin());
        cmd.arg(repo_root().join("tests/fixture/server.mjs"))
            .args(["--transport", transport, "--port", &port.to_string()])
            .args(extra);
        if let Some(log) = calls_log {
            cmd.arg("--calls-log").arg(log);
        }
        Self::spawn(cmd)
    }

    /// [`Fixture::start`] on a listening socket the caller bound and keeps (handed over as
    /// stdin): a fixture started again on it serves on the same port, which nobody else can
    /// take in between.
    pub fn start_handed(transport: &str, listener: &std::net::TcpListener, calls_log: Option<&Path>) -> Self {
        let socket = listener.try_clone().expect("clone the listening socket");
        let mut cmd = Command::new(node_bin());
        cmd.arg(repo_root().join("tests/fixture/server.mjs"))
            .args(["--transport", transport, "--listen-stdin"])
            .stdin(std::process::Stdio::from(std::os::fd::OwnedFd::from(socket)));
        if let Some(log) = calls_log {
            cmd.arg("--calls-log").arg(log);
        }
        Self::spawn(cmd)
    }

    /// A node script of the repository (`tests/fixture/oidc.mjs`) with `args`, started like the
    /// fixture: it prints `{"listening": URL}` first.
    pub fn start_cmd(script: &str, args: &[&str]) -> Self {
        let mut cmd = Command::new(node_bin());
        cmd.arg(repo_root().join(script)).args(args);
        Self::spawn(cmd)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.url.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0)
    }

    /// Starts the dual-era fixture (`tests/fixture/modern.mjs`, on the TS SDK v2): `era` is
    /// `dual` (2026-07-28 and sessions of the 2025 era) or `modern` (2026-07-28 only).
    pub fn modern(era: &str, calls_log: Option<&Path>) -> Self {
        let mut cmd = Command::new(node_bin());
        cmd.arg(repo_root().join("tests/fixture/modern.mjs"))
            .args(["--era", era]);
        if let Some(log) = calls_log {
            cmd.arg("--calls-log").arg(log);
        }
        Self::spawn(cmd)
    }

    /// Starts the official reference server `@modelcontextprotocol/server-everything` over
    /// `streamableHttp` or `sse`, on 127.0.0.1 (`tests/fixture/everything.mjs`).
    pub fn everything(transport: &str) -> Self {
        let mut cmd = Command::new(node_bin());
        cmd.arg(repo_root().join("tests/fixture/everything.mjs")).arg(transport);
        Self::spawn(cmd)
    }

    /// Starts the Python SDK upstream (`tests/fixture/py_server.py`, streamable HTTP at
    /// `{url}/mcp`), logging calls to `calls_log` if given.
    pub fn python(calls_log: Option<&Path>) -> Self {
        let mut cmd = python();
        cmd.arg(repo_root().join("tests/fixture/py_server.py"));
        if let Some(log) = calls_log {
            cmd.arg("--calls-log").arg(log);
        }
        Self::spawn(cmd)
    }

    fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd
            .current_dir(repo_root())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn upstream server");
        let lines = lines_of(child.stdout.take().expect("stdout"));
        let line = match lines.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the upstream server printed no listening line within 30 s: {e}");
            }
        };
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad listening line {line:?}: {e}"));
        let url = v["listening"].as_str().expect("listening url").to_string();
        Self { child, url }
    }

    /// The fixture's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the fixture now.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The active server scenarios of the pinned conformance suite (0.1.16) and how many checks
/// each must pass against a server with the fixture's names. A scenario that runs fewer checks
/// (a check turned into a warning or an info line, a scenario skipped) fails the run.
pub const ACTIVE_SUITE: &[(&str, usize)] = &[
    ("server-initialize", 1),
    ("logging-set-level", 1),
    ("ping", 1),
    ("completion-complete", 1),
    ("tools-list", 1),
    ("tools-call-simple-text", 1),
    ("tools-call-image", 1),
    ("tools-call-audio", 1),
    ("tools-call-embedded-resource", 1),
    ("tools-call-mixed-content", 1),
    ("tools-call-with-logging", 1),
    ("tools-call-error", 1),
    ("tools-call-with-progress", 1),
    ("tools-call-sampling", 1),
    ("tools-call-elicitation", 1),
    ("elicitation-sep1034-defaults", 5),
    ("server-sse-multiple-streams", 2),
    ("elicitation-sep1330-enums", 5),
    ("resources-list", 1),
    ("resources-read-text", 1),
    ("resources-read-binary", 1),
    ("resources-templates-read", 1),
    ("resources-subscribe", 1),
    ("resources-unsubscribe", 1),
    ("prompts-list", 1),
    ("prompts-get-simple", 1),
    ("prompts-get-with-args", 1),
    ("prompts-get-embedded-resource", 1),
    ("prompts-get-with-image", 1),
    ("dns-rebinding-protection", 2),
];

/// [`ACTIVE_SUITE`] as the gateway must pass it: it answers the lists of
/// `server-sse-multiple-streams` as JSON, where the fixture streams them, and the scenario then
/// records its second check as INFO ("SSE streaming is optional") instead of a pass.
pub fn active_suite_through_gateway() -> Vec<(&'static str, usize)> {
    ACTIVE_SUITE
        .iter()
        .map(|&(s, n)| {
            if s == "server-sse-multiple-streams" {
                (s, 1)
            } else {
                (s, n)
            }
        })
        .collect()
}

/// The checks of one conformance run, by scenario (from the `checks.json` files of `-o DIR`).
#[derive(Debug, Default)]
pub struct ConformanceRun {
    /// The CLI exited with 0.
    pub ok: bool,
    /// Its stdout and stderr.
    pub output: String,
    /// Scenario name → (check id, status) in order.
    pub scenarios: std::collections::BTreeMap<String, Vec<(String, String)>>,
}

/// Runs the conformance CLI (`server --url URL <args>`) with a deadline, saving its results in
/// a temporary directory, and reads every scenario's checks.
pub fn run_conformance(url: &str, args: &[&str], timeout: Duration) -> ConformanceRun {
    run_conformance_of(Suite::Current, url, args, timeout)
}

/// Which conformance package runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    /// `@modelcontextprotocol/conformance` 0.1.16: the session era's active scenarios.
    Current,
    /// 0.2.0-alpha.12 (npm alias `conformance-next`): both eras, one at a time with
    /// `--requirements 2025-11-25` or `--requirements 2026-07-28`.
    Next,
}

impl Suite {
    fn cli(self) -> PathBuf {
        match self {
            Suite::Current => repo_root().join("node_modules/.bin/conformance"),
            Suite::Next => repo_root().join("node_modules/conformance-next/dist/index.js"),
        }
    }
}

/// The server scenarios a revision requires (the `server:` list of the 0.2 suite's
/// `requirements/<revision>.yaml`).
pub fn required_server_scenarios(revision: &str) -> Vec<String> {
    let path = repo_root().join(format!("node_modules/conformance-next/requirements/{revision}.yaml"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    let mut in_server = false;
    for line in text.lines() {
        if !line.starts_with(' ') && !line.starts_with('#') && !line.is_empty() {
            in_server = line.trim_end() == "server:";
            continue;
        }
        if in_server {
            if let Some(name) = line.trim().strip_prefix("- ") {
                out.push(name.trim().to_string());
            }
        }
    }
    out
}

/// [`run_conformance`] with a chosen package.
pub fn run_conformance_of(suite: Suite, url: &str, args: &[&str], timeout: Duration) -> ConformanceRun {
    let dir = TempDir::new("conformance");
    let mut cmd = Command::new(node_bin());
    cmd.arg(suite.cli())
        .args(["server", "--url", url])
        .args(args)
        .arg("-o")
        .arg(&dir.0)
        .current_dir(repo_root());
    let (ok, output) = run_with_timeout(&mut cmd, timeout).expect("run conformance");
    let mut run = ConformanceRun {
        ok,
        output,
        ..ConformanceRun::default()
    };
    for entry in std::fs::read_dir(&dir.0).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        // server-<scenario>-<ISO time with ':' and '.' as '-'>, e.g. …-2026-12-01T23-08-41-598Z
        let Some(rest) = name.strip_prefix("server-") else {
            continue;
        };
        let Some(scenario) = rest.len().checked_sub(25).map(|n| &rest[..n]) else {
            continue;
        };
        let text = std::fs::read_to_string(entry.path().join("checks.json")).unwrap_or_default();
        let checks: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap_or_default();
        run.scenarios.insert(
            scenario.to_string(),
            checks
                .iter()
                .map(|c| {
                    (
                        c["id"].as_str().unwrap_or_default().to_string(),
                        c["status"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect(),
        );
    }
    run
}

/// Asserts that `run` ran exactly the scenarios of `expected`, each passing exactly its number
/// of checks, with no failure and no warning except those in `allowed_warnings`
/// ((scenario, check id, why it is allowed)).
pub fn assert_conformance(
    run: &ConformanceRun,
    expected: &[(&str, usize)],
    allowed_warnings: &[(&str, &str, &str)],
    what: &str,
) {
    let mut problems = Vec::new();
    for (scenario, want) in expected {
        let Some(checks) = run.scenarios.get(*scenario) else {
            problems.push(format!("{scenario}: did not run"));
            continue;
        };
        let count = |st: &str| checks.iter().filter(|(_, s)| s == st).count();
        if count("SUCCESS") != *want {
            problems.push(format!(
                "{scenario}: {} checks passed, expected {want}: {checks:?}",
                count("SUCCESS")
            ));
        }
        for (id, status) in checks {
            let allowed = allowed_warnings.iter().any(|(sc, c, _)| sc == scenario && c == id);
            if status == "FAILURE" || (status == "WARNING" && !allowed) {
                problems.push(format!("{scenario}: {id} {status}"));
            }
        }
    }
    for scenario in run.scenarios.keys() {
        if !expected.iter().any(|(s, _)| s == scenario) {
            problems.push(format!("{scenario}: ran but is not pinned"));
        }
    }
    if !run.ok && problems.is_empty() {
        problems.push("the CLI exited with an error".into());
    }
    assert!(
        problems.is_empty(),
        "conformance against {what}:\n{}\n{}",
        problems.join("\n"),
        run.output
    );
}

/// What the active scenarios must reach in the fixture (its calls log, one JSON line per
/// request it handled): every tool, resource, template and prompt a scenario uses, the
/// subscription pair and the completion, so a gateway answering any of them itself (or
/// reporting "not found" as a tool result) is caught.
pub const FIXTURE_REACH: &[(&str, &str)] = &[
    ("tool", "test_simple_text"),
    ("tool", "test_image_content"),
    ("tool", "test_audio_content"),
    ("tool", "test_embedded_resource"),
    ("tool", "test_multiple_content_types"),
    ("tool", "test_tool_with_logging"),
    ("tool", "test_error_handling"),
    ("tool", "test_tool_with_progress"),
    ("tool", "test_sampling"),
    ("tool", "test_elicitation"),
    ("tool", "test_elicitation_sep1034_defaults"),
    ("tool", "test_elicitation_sep1330_enums"),
    ("resource", "test://static-text"),
    ("resource", "test://static-binary"),
    ("resource", "template"),
    ("subscribe", "test://watched-resource"),
    ("unsubscribe", "test://watched-resource"),
    ("complete", "arg1"),
    ("prompt", "test_simple_prompt"),
    ("prompt", "test_prompt_with_arguments"),
    ("prompt", "test_prompt_with_embedded_resource"),
    ("prompt", "test_prompt_with_image"),
];

/// Asserts that the fixture's calls log shows every entry of [`FIXTURE_REACH`].
pub fn assert_fixture_reached(calls: &Path) {
    let log = std::fs::read_to_string(calls).expect("calls log");
    let seen: Vec<(String, String)> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| {
            (
                v["kind"].as_str().unwrap_or_default().to_string(),
                v["name"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let missing: Vec<String> = FIXTURE_REACH
        .iter()
        .filter(|(k, n)| !seen.iter().any(|(sk, sn)| sk == k && sn == n))
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    assert!(
        missing.is_empty(),
        "the suite never reached: {}\n{log}",
        missing.join(", ")
    );
}

/// The credentials key the suite gives the Worker (test-only; 32 bytes in base64).
pub const TEST_ENCRYPTION_KEY: &str = "dGVzdC1vbmx5LWtleS1mb3ItbWNwZ3ctZTJlLXN1aXQ=";

/// A JWS over `payload` (claims as given, `exp`/`nbf` included): `HS256` with `key` as the
/// secret, or `RS256`/`ES256`/`EdDSA` with `key` a private JWK (its `kid` goes in the header).
pub fn sign_jwt(alg: &str, key: &str, payload: serde_json::Value) -> String {
    sign_jwt_as(alg, key, None, payload)
}

/// [`sign_jwt`] with `kid` in the header instead of the key's own: a forgery that names a key
/// the verifier has, so it is refused by the signature check itself.
pub fn sign_jwt_as(alg: &str, key: &str, kid: Option<&str>, payload: serde_json::Value) -> String {
    use jwt_compact::alg::{Ed25519, Es256, Hs256, Hs256Key, Rsa};
    use jwt_compact::{jwk::JsonWebKey, Algorithm, AlgorithmExt, Claims, Header};
    let claims = Claims::new(payload);
    let header = Header::empty().with_token_type("JWT");
    if alg == "HS256" {
        return Hs256
            .token(&header, &claims, &Hs256Key::new(key.as_bytes()))
            .expect("sign HS256");
    }
    let mut v: serde_json::Value = serde_json::from_str(key).expect("a private JWK");
    let header = match kid.or_else(|| v.get("kid").and_then(|k| k.as_str())) {
        Some(kid) => header.with_key_id(kid),
        None => header,
    };
    if let Some(o) = v.as_object_mut() {
        o.retain(|k, _| ["kty", "n", "e", "d", "p", "q", "dp", "dq", "qi", "crv", "x", "y"].contains(&k.as_str()));
    }
    let jwk: JsonWebKey<'_> = serde_json::from_value(v).expect("JWK");
    match alg {
        "RS256" => {
            let k = <Rsa as Algorithm>::SigningKey::try_from(&jwk).expect("RSA key");
            Rsa::rs256().token(&header, &claims, &k).expect("sign RS256")
        }
        "ES256" => {
            let k = <Es256 as Algorithm>::SigningKey::try_from(&jwk).expect("P-256 key");
            Es256.token(&header, &claims, &k).expect("sign ES256")
        }
        _ => {
            let k = <Ed25519 as Algorithm>::SigningKey::try_from(&jwk).expect("Ed25519 key");
            Ed25519.token(&header, &claims, &k).expect("sign EdDSA")
        }
    }
}

/// A test key from `tests/fixtures/keys/`.
pub fn test_key(name: &str) -> String {
    std::fs::read_to_string(repo_root().join("tests/fixtures/keys").join(name)).expect("test key")
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// A redis-server of our own on 127.0.0.1 (a free port, nothing saved to disk); stopped by its
/// PID on drop. The test command installs redis-server.
pub struct RedisServer {
    child: Child,
    /// `redis://127.0.0.1:<port>/`.
    pub url: String,
}

impl RedisServer {
    /// Starts it on a free port and waits until it accepts connections.
    pub fn start() -> anyhow::Result<Self> {
        // The probe listener is closed before the server binds the port, so another process
        // may take it in between: then again on another port.
        let mut last = None;
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            match Self::start_on(port) {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("redis-server did not start")))
    }

    /// [`RedisServer::start`] on `port` (to start one again where it was).
    pub fn start_on(port: u16) -> anyhow::Result<Self> {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .stdin(Stdio::null())
            .spawn()
            .context("redis-server not found: the test command installs it (apt-get install redis-server)")?;
        let server = Self {
            child,
            url: format!("redis://127.0.0.1:{port}/"),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut conn = loop {
            if let Ok(c) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                break c;
            }
            if Instant::now() > deadline {
                bail!("redis-server did not listen on {port} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        // The port was free when picked, not reserved: the server on it must be ours.
        use std::io::{Read, Write};
        conn.set_read_timeout(Some(Duration::from_secs(5)))?;
        conn.write_all(b"INFO server\r\n")?;
        let mut info = Vec::new();
        let mut buf = [0u8; 8192];
        while !String::from_utf8_lossy(&info).contains("process_id:") || !info.ends_with(b"\r\n") {
            let n = conn.read(&mut buf)?;
            if n == 0 {
                break;
            }
            info.extend_from_slice(&buf[..n]);
        }
        let info = String::from_utf8_lossy(&info);
        let pid = info
            .lines()
            .find_map(|l| l.strip_prefix("process_id:"))
            .and_then(|p| p.trim().parse::<u32>().ok());
        if pid != Some(server.child.id()) {
            bail!("127.0.0.1:{port} is answered by another redis-server (process {pid:?})");
        }
        Ok(server)
    }
}

impl RedisServer {
    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.url
            .trim_start_matches("redis://127.0.0.1:")
            .trim_end_matches('/')
            .parse()
            .unwrap_or(0)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A hand-driven streamable HTTP client session, for cases the SDK clients cannot show: which
/// stream a message arrived on, answering the gateway's relayed requests by hand, raw ids.
/// Every read has a deadline (10 s per message).
pub struct RawSession {
    http: reqwest::Client,
    /// The MCP endpoint (`…/mcp`).
    pub endpoint: String,
    /// The session id the gateway gave.
    pub sid: String,
    /// Where the answers to the gateway's requests are posted, if not to `endpoint` (another
    /// instance serving the same sessions).
    pub answers_to: Option<String>,
    get: Option<(
        tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
        tokio::task::JoinHandle<()>,
    )>,
}

/// Where a message a [`RawSession`] received came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The POST's own SSE stream.
    Call,
    /// The session's standalone GET stream.
    Standalone,
}

/// Reads SSE JSON messages from a response body into a channel until it ends.
fn pump_sse(
    r: reqwest::Response,
    tx: tokio::sync::mpsc::UnboundedSender<serde_json::Value>,
) -> tokio::task::JoinHandle<()> {
    pump_sse_noting(r, tx, Arc::default())
}

/// [`pump_sse`], noting in `last_id` the last event id seen (a priming event's too).
fn pump_sse_noting(
    r: reqwest::Response,
    tx: tokio::sync::mpsc::UnboundedSender<serde_json::Value>,
    last_id: Arc<std::sync::Mutex<Option<String>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        use futures_lite::StreamExt;
        let mut parser = mcpgw_core::proto::sse::Parser::default();
        let mut body = r.bytes_stream();
        while let Some(Ok(chunk)) = body.next().await {
            let pushed = parser.push(&chunk);
            if let Some(id) = parser.last_event_id() {
                *last_id.lock().unwrap_or_else(|e| e.into_inner()) = Some(id.to_string());
            }
            let Ok(events) = pushed else { return };
            for e in events {
                if let Some(v) = e.into_message().and_then(|d| serde_json::from_str(&d).ok()) {
                    if tx.send(v).is_err() {
                        return;
                    }
                }
            }
        }
    })
}

impl RawSession {
    /// `initialize` (2025-11-25, with `capabilities`) and `notifications/initialized`.
    pub async fn open(endpoint: &str, capabilities: serde_json::Value) -> anyhow::Result<Self> {
        Self::open_with(http_client(), endpoint, capabilities).await
    }

    /// [`RawSession::open`] as the holder of `bearer` (every request of the session carries it).
    pub async fn open_as(endpoint: &str, capabilities: serde_json::Value, bearer: &str) -> anyhow::Result<Self> {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("authorization", format!("Bearer {bearer}").parse()?);
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .default_headers(headers)
            .build()?;
        Self::open_with(http, endpoint, capabilities).await
    }

    async fn open_with(http: reqwest::Client, endpoint: &str, capabilities: serde_json::Value) -> anyhow::Result<Self> {
        let init = serde_json::json!({"jsonrpc": "2.0", "id": "init-1", "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": capabilities, "clientInfo": {"name": "mcpgw-raw", "version": "1"}}});
        let r = http
            .post(endpoint)
            .header("accept", "application/json, text/event-stream")
            .json(&init)
            .send()
            .await?;
        anyhow::ensure!(r.status() == reqwest::StatusCode::OK, "initialize: {}", r.status());
        let sid = r
            .headers()
            .get("mcp-session-id")
            .context("no Mcp-Session-Id")?
            .to_str()?
            .to_string();
        let answer: serde_json::Value = r.json().await?;
        anyhow::ensure!(
            answer["id"] == "init-1" && answer["result"].is_object(),
            "initialize answer: {answer}"
        );
        let s = Self {
            http,
            endpoint: endpoint.to_string(),
            sid,
            answers_to: None,
            get: None,
        };
        let r = s
            .post(&serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await?;
        anyhow::ensure!(
            r.status() == reqwest::StatusCode::ACCEPTED,
            "initialized: {}",
            r.status()
        );
        Ok(s)
    }

    /// A session opened elsewhere (another instance serving the same sessions), used at
    /// `endpoint`.
    pub fn join(endpoint: &str, sid: &str) -> Self {
        Self {
            http: http_client(),
            endpoint: endpoint.to_string(),
            sid: sid.to_string(),
            answers_to: None,
            get: None,
        }
    }

    /// POSTs one message in the session.
    pub async fn post(&self, msg: &serde_json::Value) -> anyhow::Result<reqwest::Response> {
        self.post_to(&self.endpoint, msg).await
    }

    /// POSTs one message in the session to `endpoint`.
    pub async fn post_to(&self, endpoint: &str, msg: &serde_json::Value) -> anyhow::Result<reqwest::Response> {
        Ok(self
            .http
            .post(endpoint)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &self.sid)
            .header("mcp-protocol-version", "2025-11-25")
            .json(msg)
            .send()
            .await?)
    }

    /// A GET of the session's streams: the standalone one, or (with `last_event_id`) the rest of
    /// a stream that ended.
    async fn get_stream(&self, last_event_id: Option<&str>) -> anyhow::Result<reqwest::Response> {
        let mut rb = self
            .http
            .get(&self.endpoint)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", &self.sid)
            .header("mcp-protocol-version", "2025-11-25");
        if let Some(id) = last_event_id {
            rb = rb.header("last-event-id", id);
        }
        Ok(rb.send().await?)
    }

    /// Opens the standalone GET stream (returns once the gateway answered it with 200).
    pub async fn open_standalone(&mut self) -> anyhow::Result<()> {
        let r = self.get_stream(None).await?;
        anyhow::ensure!(r.status() == reqwest::StatusCode::OK, "GET stream: {}", r.status());
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.get = Some((rx, pump_sse(r, tx)));
        Ok(())
    }

    /// The next message on the standalone stream, within `timeout`.
    pub async fn next_standalone(&mut self, timeout: Duration) -> Option<serde_json::Value> {
        let (rx, _) = self.get.as_mut()?;
        tokio::time::timeout(timeout, rx.recv()).await.ok().flatten()
    }

    /// Sends request `id` and reads until its answer. Every message received meanwhile (on the
    /// call's stream or the standalone one) is shown to `on_message`; for a request, what it
    /// returns is posted back as the result (`None`: leave it unanswered). Returns the answer and
    /// every message received before it, with where it came from.
    pub async fn call(
        &mut self,
        id: serde_json::Value,
        method: &str,
        params: serde_json::Value,
        mut on_message: impl FnMut(&serde_json::Value) -> Option<serde_json::Value>,
    ) -> anyhow::Result<(serde_json::Value, Vec<(Via, serde_json::Value)>)> {
        let req = serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        // The POST's headers may only come with its first message, which may wait on an answer
        // to a request sent on the standalone stream: read that stream meanwhile.
        let send = self
            .http
            .post(&self.endpoint)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &self.sid)
            .header("mcp-protocol-version", "2025-11-25")
            .json(&req)
            .send();
        let mut send = Box::pin(send);
        let mut call_rx: Option<tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>> = None;
        let mut pump = None;
        // The call stream's last event id, to resume it from if it ends before the answer.
        let last_id: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
        let mut resumes = 0;
        let mut seen = Vec::new();
        let result = loop {
            let standalone = async {
                match self.get.as_mut() {
                    Some((rx, _)) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            let on_call = async {
                match call_rx.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            let (via, msg) = tokio::select! {
                r = &mut send, if pump.is_none() => {
                    let r = r?;
                    anyhow::ensure!(r.status() == reqwest::StatusCode::OK, "{method}: {}", r.status());
                    let is_sse = r
                        .headers()
                        .get("content-type")
                        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
                    if !is_sse {
                        break r.json().await?;
                    }
                    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                    pump = Some(pump_sse_noting(r, tx, last_id.clone()));
                    call_rx = Some(rx);
                    continue;
                }
                m = on_call => (Via::Call, m),
                m = standalone => (Via::Standalone, m),
                _ = tokio::time::sleep(Duration::from_secs(10)) => bail!("{method}: nothing for 10 s; so far {seen:?}"),
            };
            let Some(msg) = msg else {
                // A call stream closed before its answer (SEP-1699): resumed from its last id.
                let last = last_id.lock().unwrap_or_else(|e| e.into_inner()).clone();
                if let (Via::Call, Some(last), true) = (via, last, resumes < 3) {
                    resumes += 1;
                    let r = self.get_stream(Some(&last)).await?;
                    anyhow::ensure!(
                        r.status() == reqwest::StatusCode::OK,
                        "{method}: resume: {}",
                        r.status()
                    );
                    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                    pump = Some(pump_sse_noting(r, tx, last_id.clone()));
                    call_rx = Some(rx);
                    continue;
                }
                bail!("{method}: the {via:?} stream ended before the answer; so far {seen:?}");
            };
            if msg.get("method").is_none() && msg["id"] == id {
                break msg;
            }
            let reply = on_message(&msg);
            if msg.get("method").is_some() && msg.get("id").is_some() {
                if let Some(result) = reply {
                    let reply = serde_json::json!({"jsonrpc": "2.0", "id": msg["id"], "result": result});
                    let to = self.answers_to.clone().unwrap_or_else(|| self.endpoint.clone());
                    let r = self.post_to(&to, &reply).await?;
                    anyhow::ensure!(r.status() == reqwest::StatusCode::ACCEPTED, "answer: {}", r.status());
                }
            }
            seen.push((via, msg));
        };
        if let Some(p) = pump {
            p.abort();
        }
        Ok((result, seen))
    }

    /// `tools/call` of `name` with `arguments`, answering nothing the gateway asks meanwhile:
    /// the answer and what came before it.
    pub async fn tool(
        &mut self,
        id: serde_json::Value,
        name: &str,
        arguments: serde_json::Value,
    ) -> anyhow::Result<(serde_json::Value, Vec<(Via, serde_json::Value)>)> {
        let params = serde_json::json!({"name": name, "arguments": arguments});
        self.call(id, "tools/call", params, |_| None).await
    }

    /// Ends the session (DELETE); the gateway's status.
    pub async fn delete(mut self) -> anyhow::Result<reqwest::StatusCode> {
        if let Some((_, task)) = self.get.take() {
            task.abort();
        }
        Ok(self
            .http
            .delete(&self.endpoint)
            .header("mcp-session-id", &self.sid)
            .send()
            .await?
            .status())
    }
}

/// Reports a case that does not apply to the selected target as skipped, and returns (call it
/// as `return skip(…)`). libtest has no skipped outcome, so the case still counts as passed
/// there; the line goes to `$MCPGW_SKIP_LOG` (the test command sets it) and the closing line of
/// `scripts/test.sh` moves it from passed to skipped. Without the variable, it goes to stderr.
pub fn skip(case: &str, reason: &str) {
    use std::io::Write;
    let line = format!("SKIPPED {case} on {:?}: {reason}\n", target());
    match std::env::var_os("MCPGW_SKIP_LOG") {
        Some(path) => {
            let file = std::fs::OpenOptions::new().create(true).append(true).open(path);
            if let Ok(mut f) = file {
                let _ = f.write_all(line.as_bytes());
            }
        }
        None => eprint!("{line}"),
    }
}
