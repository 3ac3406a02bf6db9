//! Native implementations of the core's platform ports: tokio time and tasks, OS randomness,
//! and outbound HTTP through reqwest with streamed bodies.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use mcpgw_core::netguard::NetPolicy;
use mcpgw_core::platform::{BoxFuture, BoxStream};
use mcpgw_core::ports::{Clock, HttpClient, HttpError, Ids, InboundResponse, Launcher, OutboundRequest, Pipe, Spawner};

/// Wall clock and tokio sleeps.
pub struct TokioClock;

impl Clock for TokioClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// Random v4 UUIDs as 32 hex digits.
pub struct RandomIds;

impl Ids for RandomIds {
    fn new_id(&self) -> String {
        uuid::Uuid::new_v4().simple().to_string()
    }
}

/// `tokio::spawn`.
pub struct TokioSpawner;

impl Spawner for TokioSpawner {
    fn spawn(&self, work: BoxFuture<'static, ()>) {
        tokio::spawn(work);
    }
}

/// reqwest, with connection pooling; redirects are not followed (a tool's URL is what it is).
pub struct ReqwestClient {
    client: reqwest::Client,
}

/// Resolves host names, then drops the addresses the SSRF policy refuses, so that a public name
/// pointing (or re-pointed) at an internal address cannot reach it. Literal addresses never get
/// here; the core checks those.
struct GuardedResolver {
    policy: Arc<NetPolicy>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let allowed: Vec<std::net::SocketAddr> = addrs
                .into_iter()
                .filter(|a| match policy.check_ip(a.ip()) {
                    Ok(()) => true,
                    Err(e) => {
                        refused = Some(e);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                let why = refused.unwrap_or_else(|| "no address".into());
                return Err(format!("{host}: {why}").into());
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

impl ReqwestClient {
    /// A client with sane connect timeouts that resolves through the SSRF policy.
    pub fn new(policy: NetPolicy) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver {
                policy: Arc::new(policy),
            }))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("mcpgw/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { client })
    }
}

#[async_trait]
impl HttpClient for ReqwestClient {
    async fn send(&self, request: OutboundRequest) -> Result<InboundResponse, HttpError> {
        let url =
            reqwest::Url::parse(&request.url).map_err(|e| HttpError::InvalidUrl(format!("{}: {e}", request.url)))?;
        let mut rb = self.client.request(request.method, url);
        for (k, v) in &request.headers {
            rb = rb.header(k, v);
        }
        if let Some(body) = request.body {
            rb = rb.body(body);
        }
        let resp = rb.send().await.map_err(|e| {
            // Past the connect step the request went out: the server may have acted on it.
            if e.is_connect() || e.is_builder() {
                HttpError::Connect(error_chain(&e))
            } else {
                HttpError::Lost(error_chain(&e))
            }
        })?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .bytes_stream()
            .map_err(|e| HttpError::Body(error_chain(&e)))
            .boxed();
        Ok(InboundResponse { status, headers, body })
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Starts stdio upstreams as child processes in their own process group; closing the pipe (or
/// dropping it) kills the whole group, so no upstream process outlives its link or the gateway.
pub struct ProcessLauncher;

struct ProcessPipe {
    stdin: Arc<tokio::sync::Mutex<Option<tokio::process::ChildStdin>>>,
    child: std::sync::Mutex<Option<tokio::process::Child>>,
}

impl ProcessPipe {
    fn kill(&self) {
        let child = self.child.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut child) = child {
            #[cfg(unix)]
            if let Some(pid) = child.id() {
                // The group id is the child's pid (process_group(0)): stop its children too.
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", "--", &format!("-{pid}")])
                    .stderr(std::process::Stdio::null())
                    .status();
            }
            let _ = child.start_kill();
            // Reap it so it does not linger as a zombie.
            tokio::spawn(async move {
                let _ = child.wait().await;
            });
        }
    }
}

impl Drop for ProcessPipe {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Pipe for ProcessPipe {
    fn send(&self, message: String) -> BoxFuture<'static, Result<(), String>> {
        let stdin = self.stdin.clone();
        Box::pin(async move {
            use tokio::io::AsyncWriteExt;
            let mut guard = stdin.lock().await;
            let w = guard.as_mut().ok_or("the process is stopped")?;
            let mut line = message.into_bytes();
            line.push(b'\n');
            w.write_all(&line).await.map_err(|e| e.to_string())?;
            w.flush().await.map_err(|e| e.to_string())
        })
    }
    fn close(&self) {
        if let Ok(mut g) = self.stdin.try_lock() {
            g.take();
        }
        self.kill();
    }
}

impl Launcher for ProcessLauncher {
    fn launch(
        &self,
        command: &str,
        args: &[String],
        env: &BTreeMap<String, String>,
    ) -> Result<(Box<dyn Pipe>, BoxStream<'static, String>), String> {
        use tokio::io::AsyncBufReadExt;
        let mut cmd = tokio::process::Command::new(command);
        cmd.args(args)
            .envs(env)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true);
        #[cfg(unix)]
        cmd.process_group(0);
        let mut child = cmd.spawn().map_err(|e| format!("cannot start {command}: {e}"))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        tracing::info!(command, pid = child.id(), "stdio upstream started");
        let lines = tokio::io::BufReader::new(stdout).lines();
        let incoming = futures::stream::unfold(lines, |mut lines| async move {
            match lines.next_line().await {
                Ok(Some(l)) => Some((l, lines)),
                _ => None,
            }
        })
        .boxed();
        let pipe = ProcessPipe {
            stdin: Arc::new(tokio::sync::Mutex::new(Some(stdin))),
            child: std::sync::Mutex::new(Some(child)),
        };
        Ok((Box::new(pipe), incoming))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::dns::Resolve;

    fn resolve(policy: NetPolicy, name: &str) -> Result<Vec<std::net::SocketAddr>, String> {
        let r = GuardedResolver {
            policy: Arc::new(policy),
        };
        let name: reqwest::dns::Name = name.parse().map_err(|e| format!("{e:?}"))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async { r.resolve(name).await.map(|a| a.collect()).map_err(|e| e.to_string()) })
    }

    #[test]
    fn names_are_checked_after_resolution() {
        // `localhost` resolves from /etc/hosts, without the network.
        let err = resolve(NetPolicy::default(), "localhost").expect_err("refused");
        assert!(err.contains("loopback") && err.contains("SSRF guard"), "{err}");
        let allowed = NetPolicy::parse(&["loopback".into()]).expect("policy");
        let addrs = resolve(allowed, "localhost").expect("allowed");
        assert!(!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()));
    }
}
