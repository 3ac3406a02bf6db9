//! nginx as a plain reverse proxy on 127.0.0.1 in front of one or more upstreams (round robin,
//! no affinity, upstream keep-alive, no buffering, so SSE streams pass as they are written): a
//! balancer for tests of several instances, and the CPU floor of a proxy in the benches.
//! Stopped by its PID when dropped. Debian's `nginx-light`, which the test and bench commands
//! install.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};

use crate::TempDir;

/// A running nginx.
pub struct Nginx {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    _dir: TempDir,
}

impl Nginx {
    /// The binary, if installed.
    pub fn find() -> Option<String> {
        ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .map(str::to_string)
    }

    /// Starts nginx (`bin`) proxying to `upstreams` (`http://127.0.0.1:PORT` each) and waits
    /// until it answers. An upstream that stops answering is passed over for the next try
    /// (`proxy_next_upstream` on errors and timeouts, not for requests that may have been sent).
    pub async fn start(bin: &str, upstreams: &[&str]) -> anyhow::Result<Self> {
        let dir = TempDir::new("nginx");
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let servers: String = upstreams
            .iter()
            .map(|u| {
                format!(
                    "server {} max_fails=1 fail_timeout=2s; ",
                    u.trim_start_matches("http://")
                )
            })
            .collect();
        let d = dir.0.display();
        let conf = format!(
            "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
             \x20 fastcgi_temp_path {d}/fcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             \x20 upstream up {{ {servers}keepalive 64; }}\n\
             \x20 server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      proxy_pass http://up;\n\
             \x20     proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      proxy_buffering off;\n\
             \x20     proxy_set_header Host $http_host;\n\
             \x20     proxy_read_timeout 300s;\n      proxy_connect_timeout 2s;\n\
             \x20     proxy_next_upstream error timeout;\n\
             \x20   }}\n  }}\n}}\n"
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf)?;
        let child = Command::new(bin)
            .arg("-p")
            .arg(&dir.0)
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("start nginx")?;
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut n = Self { child, url, _dir: dir };
        loop {
            // An upstream's own answer with nginx's Server header proves nginx on this port.
            if let Ok(r) = http.get(format!("{}/nginx-probe", n.url)).send().await {
                if r.headers()
                    .get("server")
                    .is_some_and(|v| v.as_bytes().starts_with(b"nginx"))
                {
                    break;
                }
            }
            if let Ok(Some(status)) = n.child.try_wait() {
                bail!("nginx exited: {status}");
            }
            ensure!(Instant::now() < deadline, "nginx did not answer on {}", n.url);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(n)
    }

    /// The master's PID (its workers are its children).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
