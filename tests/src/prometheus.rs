//! A real Prometheus (Debian's `prometheus`, which the test command installs) on 127.0.0.1,
//! scraping targets every second and queried through its HTTP API. Stopped by its PID when
//! dropped.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::TempDir;

/// One scrape target.
pub struct Target<'a> {
    /// The job label.
    pub job: &'a str,
    /// `127.0.0.1:PORT`.
    pub addr: &'a str,
    /// A bearer token to scrape with, if the endpoint wants one.
    pub bearer: Option<&'a str>,
}

/// A running Prometheus.
pub struct Prometheus {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    _dir: TempDir,
}

impl Prometheus {
    /// The binary, if installed.
    pub fn find() -> Option<String> {
        ["/usr/bin/prometheus", "/usr/sbin/prometheus"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .map(str::to_string)
    }

    /// Starts Prometheus scraping `targets` every second and waits until it is ready.
    pub async fn start(bin: &str, targets: &[Target<'_>]) -> anyhow::Result<Self> {
        let dir = TempDir::new("prometheus");
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut conf = String::from("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n");
        for t in targets {
            conf.push_str(&format!(
                "  - job_name: {}\n    static_configs:\n      - targets: ['{}']\n",
                t.job, t.addr
            ));
            if let Some(b) = t.bearer {
                conf.push_str(&format!(
                    "    authorization:\n      type: Bearer\n      credentials: '{b}'\n"
                ));
            }
        }
        let conf_path = dir.join("prometheus.yml");
        std::fs::write(&conf_path, conf)?;
        let child = Command::new(bin)
            .arg(format!("--config.file={}", conf_path.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start prometheus")?;
        let p = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(format!("{}/-/ready", p.url)).send().await {
                if r.status().is_success() {
                    return Ok(p);
                }
            }
            if Instant::now() > deadline {
                bail!("prometheus did not become ready on {}", p.url);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// An instant query's samples: (labels, value) each.
    pub async fn query(&self, expr: &str) -> anyhow::Result<Vec<(serde_json::Value, f64)>> {
        let v: serde_json::Value = reqwest::Client::new()
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", expr)])
            .send()
            .await?
            .json()
            .await?;
        if v["status"] != "success" {
            bail!("query {expr}: {v}");
        }
        let mut out = vec![];
        for r in v["data"]["result"].as_array().cloned().unwrap_or_default() {
            let value = r["value"][1].as_str().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN);
            out.push((r["metric"].clone(), value));
        }
        Ok(out)
    }

    /// The one value `expr` has, once Prometheus has scraped it (up to 20 s): a scrape after
    /// the traffic may take a second or two.
    pub async fn value_of(&self, expr: &str, want: f64) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut last = f64::NAN;
        while Instant::now() < deadline {
            if let Ok(r) = self.query(expr).await {
                if let [(_, v)] = r.as_slice() {
                    last = *v;
                    if last == want {
                        return last;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        last
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
