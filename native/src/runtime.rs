//! Native implementations of the core's platform ports: tokio time and tasks, OS randomness,
//! and stdio upstreams as child processes (outbound HTTP is in `http_client`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use mcpgw_core::platform::{BoxFuture, BoxStream};
use mcpgw_core::ports::{Clock, Ids, Launcher, Pipe, Spawner};

/// Wall clock and tokio sleeps.
pub struct TokioClock;

impl Clock for TokioClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
    fn now_us(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
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
