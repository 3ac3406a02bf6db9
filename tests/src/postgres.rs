//! A private PostgreSQL cluster for the tests that need one: `initdb` into a fresh directory
//! (as the `postgres` user when the tests run as root, which PostgreSQL refuses to run as),
//! started by `pg_ctl` on a free loopback port, its socket in its own directory, and stopped by
//! its postmaster's PID when dropped. The server binaries are Debian's (`postgresql`), which
//! `scripts/test.sh` installs.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};

/// A running cluster; stopped (immediate shutdown) and removed on drop.
pub struct Postgres {
    bin: PathBuf,
    dir: PathBuf,
    run_as: Option<&'static str>,
    /// The loopback port it listens on.
    pub port: u16,
}

/// The newest installed server's binaries: `$MCPGW_PG_BIN`, else `/usr/lib/postgresql/<n>/bin`.
fn server_bin() -> anyhow::Result<PathBuf> {
    if let Ok(p) = std::env::var("MCPGW_PG_BIN") {
        return Ok(PathBuf::from(p));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL's server is not installed (apt-get install postgresql)")?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let n = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((n, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, b)| b)
        .context("no initdb under /usr/lib/postgresql/*/bin")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl Postgres {
    /// Creates and starts a cluster with a database `mcpgw` (user `mcpgw`, trust auth on
    /// loopback only).
    pub fn start() -> anyhow::Result<Self> {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let bin = server_bin()?;
        let run_as = is_root().then_some("postgres");
        // Directly under /tmp: the postgres user must be able to reach it.
        let dir = PathBuf::from(format!("/tmp/mcpgw-pg-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let mut pg = Self {
            bin,
            dir,
            run_as,
            port: 0,
        };
        if run_as.is_some() {
            let ok = Command::new("chown")
                .arg("postgres:postgres")
                .arg(&pg.dir)
                .status()?
                .success();
            if !ok {
                bail!("cannot hand {} to the postgres user", pg.dir.display());
            }
        }
        let data = pg.data();
        pg.run(
            "initdb",
            &[
                "-D",
                data.to_str().context("utf-8 path")?,
                "-U",
                "mcpgw",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        let mut last = String::new();
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let opts = format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c shared_buffers=16MB -c max_connections=60",
                pg.dir.display()
            );
            let log = pg.dir.join("server.log");
            match pg.run(
                "pg_ctl",
                &[
                    "start",
                    "-w",
                    "-t",
                    "60",
                    "-D",
                    data.to_str().context("utf-8 path")?,
                    "-l",
                    log.to_str().context("utf-8 path")?,
                    "-o",
                    &opts,
                ],
            ) {
                Ok(()) => {
                    pg.port = port;
                    pg.run(
                        "createdb",
                        &["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "mcpgw", "mcpgw"],
                    )?;
                    return Ok(pg);
                }
                Err(e) => last = format!("{e}\n{}", std::fs::read_to_string(&log).unwrap_or_default()),
            }
        }
        bail!("PostgreSQL did not start: {last}")
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Runs one of the server's programs (as the postgres user when root).
    fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<()> {
        let exe = self.bin.join(program);
        let mut cmd = match self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let out = cmd
            .args(args)
            .current_dir(&self.dir)
            .output()
            .with_context(|| format!("cannot run {}", exe.display()))?;
        if !out.status.success() {
            bail!(
                "{program} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// The URL of database `db` (created by [`Postgres::create_database`], or `mcpgw`).
    pub fn url_of(&self, db: &str) -> String {
        format!("postgres://mcpgw@127.0.0.1:{}/{db}", self.port)
    }

    /// The URL of the `mcpgw` database.
    pub fn url(&self) -> String {
        self.url_of("mcpgw")
    }

    /// Creates another database, for a test of its own, collating text as English does (ICU
    /// en-US, as a production database often does), not byte by byte.
    pub fn create_database(&self, db: &str) -> anyhow::Result<String> {
        let port = self.port.to_string();
        let args = ["-h", "127.0.0.1", "-p", &port, "-U", "mcpgw", "-T", "template0"];
        self.run(
            "createdb",
            &[&args[..], &["--locale-provider=icu", "--icu-locale=en-US", db]].concat(),
        )?;
        Ok(self.url_of(db))
    }

    /// Runs SQL through `psql` and returns its unaligned, tuples-only output.
    pub fn psql(&self, db: &str, sql: &str) -> anyhow::Result<String> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "mcpgw", "-d", db])
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()?;
        if !out.status.success() {
            bail!("psql: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// The postmaster's PID (the first line of its pid file).
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.data().join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    fn stop(&mut self) {
        if let Some(pid) = self.pid() {
            // SIGQUIT: immediate shutdown of the postmaster and its backends.
            let _ = Command::new("kill").args(["-QUIT", &pid.to_string()]).status();
            // Gone, or a zombie its new parent has yet to reap.
            let gone = |p: u32| {
                std::fs::read_to_string(format!("/proc/{p}/stat")).map_or(true, |s| {
                    s.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z'))
                })
            };
            for _ in 0..100 {
                if gone(pid) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if !gone(pid) {
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            }
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
