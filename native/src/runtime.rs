//! Native implementations of the core's platform ports: tokio time and tasks, OS randomness,
//! and stdio upstreams as child processes (outbound HTTP is in `http_client`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use mcpgw_core::platform::{BoxFuture, BoxStream};
use mcpgw_core::ports::{Clock, Ids, Launcher, Pipe, ProcessError, Spawner};

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
///
/// A child never sees the gateway's environment (its signing secret, the sealing key, database
/// and Redis URLs): it starts from an empty one, given only the variables of
/// [`ProcessLauncher::passed`] that are set here, then the upstream's own `env`.
pub struct ProcessLauncher {
    pass: Vec<String>,
    max_line: usize,
}

/// Variables a program needs to run at all (where to find programs, its home, its locale and
/// time zone, where temporary files go); nothing of the gateway's own.
const BASE_ENV: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "TERM",
];

/// Is `name` a variable of the gateway's own, never passed to a child whatever the allow-list
/// says (a careless `MCPGW_*` in `MCPGW_STDIO_ENV` must not hand out the keys).
fn gateway_own(name: &str) -> bool {
    name.to_ascii_uppercase().starts_with("MCPGW_")
}

impl ProcessLauncher {
    /// A launcher passing [`BASE_ENV`] and the names in `extra` (exact names, or prefixes ending
    /// in `*`: `LC_*`), never a `MCPGW_*` variable; a child's line (one message) longer than
    /// `max_line` bytes ends its stream.
    pub fn new(extra: &[String], max_line: usize) -> Self {
        let mut pass: Vec<String> = BASE_ENV.iter().map(|s| s.to_string()).collect();
        pass.extend(extra.iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()));
        Self { pass, max_line }
    }

    /// The variables of `from` a child is given.
    pub fn passed(&self, from: impl Iterator<Item = (String, String)>) -> Vec<(String, String)> {
        let allowed = |name: &str| {
            !gateway_own(name)
                && self.pass.iter().any(|p| match p.strip_suffix('*') {
                    Some(prefix) => name.starts_with(prefix),
                    None => p == name,
                })
        };
        from.filter(|(k, _)| allowed(k)).collect()
    }
}

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
    fn send(&self, message: String) -> BoxFuture<'static, Result<(), ProcessError>> {
        let stdin = self.stdin.clone();
        Box::pin(async move {
            use tokio::io::AsyncWriteExt;
            let mut guard = stdin.lock().await;
            let w = guard
                .as_mut()
                .ok_or_else(|| ProcessError("the process is stopped".into()))?;
            let mut line = message.into_bytes();
            line.push(b'\n');
            w.write_all(&line).await.map_err(|e| ProcessError(e.to_string()))?;
            w.flush().await.map_err(|e| ProcessError(e.to_string()))
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
    ) -> Result<(Box<dyn Pipe>, BoxStream<'static, String>), ProcessError> {
        let mut cmd = tokio::process::Command::new(command);
        cmd.env_clear()
            .envs(self.passed(std::env::vars()))
            .args(args)
            .envs(env)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true);
        #[cfg(unix)]
        cmd.process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| ProcessError(format!("cannot start {command}: {e}")))?;
        let stdin = child.stdin.take().ok_or_else(|| ProcessError("no stdin".into()))?;
        let stdout = child.stdout.take().ok_or_else(|| ProcessError("no stdout".into()))?;
        tracing::info!(command, pid = child.id(), "stdio upstream started");
        let reader = tokio::io::BufReader::new(stdout);
        let max = self.max_line;
        // One line is one message: a line past the limit (or an endless one) ends the stream,
        // as a closed pipe does, instead of growing a buffer without bound.
        let incoming = futures::stream::unfold((reader, Vec::new()), move |(mut reader, mut buf)| async move {
            buf.clear();
            match read_line_within(&mut reader, &mut buf, max).await {
                Ok(true) => Some((String::from_utf8_lossy(&buf).into_owned(), (reader, buf))),
                Ok(false) => None,
                Err(e) => {
                    tracing::warn!(error = %e, "stdio upstream sent a line past the message limit: closed");
                    None
                }
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

/// Reads one line (without its `\n`) into `buf`: false at the end of the stream, an error past
/// `max` bytes.
async fn read_line_within<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<bool> {
    use tokio::io::AsyncBufReadExt;
    loop {
        let chunk = reader.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(!buf.is_empty());
        }
        let (take, done) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        let line = if done { &chunk[..take - 1] } else { chunk };
        if buf.len() + line.len() > max {
            return Err(std::io::Error::other(format!("a line over {max} bytes")));
        }
        buf.extend_from_slice(line);
        reader.consume(take);
        if done {
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            return Ok(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_get_only_the_allowed_variables_and_never_the_gateways() {
        let l = ProcessLauncher::new(&["NODE_EXTRA_CA_CERTS".into(), "LC_*".into(), "MCPGW_*".into()], 1024);
        let env = [
            ("PATH", "/bin"),
            ("MCPGW_JWT_SECRET", "s"),
            ("MCPGW_ENCRYPTION_KEY", "k"),
            ("mcpgw_lower", "k"),
            ("AWS_SECRET_ACCESS_KEY", "a"),
            ("LC_TIME", "C"),
            ("NODE_EXTRA_CA_CERTS", "/ca.pem"),
            ("NODE_OPTIONS", "--require x"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let got: Vec<String> = l.passed(env.into_iter()).into_iter().map(|(k, _)| k).collect();
        assert_eq!(got, ["PATH", "LC_TIME", "NODE_EXTRA_CA_CERTS"]);
    }

    #[tokio::test]
    async fn lines_are_read_within_the_limit() {
        let mut r = tokio::io::BufReader::with_capacity(4, &b"ab\r\ncdef\nlast"[..]);
        let mut buf = vec![];
        let mut lines = vec![];
        while read_line_within(&mut r, &mut buf, 8).await.expect("within") {
            lines.push(String::from_utf8(std::mem::take(&mut buf)).expect("utf8"));
        }
        assert_eq!(lines, ["ab", "cdef", "last"]);
        let mut r = tokio::io::BufReader::with_capacity(4, &b"0123456789\n"[..]);
        assert!(read_line_within(&mut r, &mut vec![], 8).await.is_err());
    }

    /// A real child: the gateway's secret is set here, and the child prints its environment.
    #[tokio::test]
    async fn a_started_process_does_not_see_the_gateways_secrets() {
        std::env::set_var("MCPGW_TEST_CANARY_SECRET", "do-not-leak");
        let l = ProcessLauncher::new(&[], 1 << 20);
        let env = BTreeMap::from([("OWN".to_string(), "mine".to_string())]);
        let (_pipe, mut lines) = l
            .launch("sh", &["-c".into(), "env; echo done".into()], &env)
            .expect("start");
        let mut seen = vec![];
        while let Some(line) = tokio::time::timeout(Duration::from_secs(10), lines.next())
            .await
            .expect("in time")
        {
            if line == "done" {
                break;
            }
            seen.push(line);
        }
        assert!(seen.iter().any(|l| l == "OWN=mine"), "{seen:?}");
        assert!(seen.iter().any(|l| l.starts_with("PATH=")), "{seen:?}");
        assert!(
            !seen
                .iter()
                .any(|l| l.contains("do-not-leak") || l.starts_with("MCPGW_")),
            "{seen:?}"
        );
    }
}
