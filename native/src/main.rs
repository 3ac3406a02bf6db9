//! `mcpgw`: the native gateway. `mcpgw serve` runs it on hyper with a libsql registry.
//! Only wiring lives here: settings, ports, logging, signals. The gateway is in mcpgw-core.

mod conns;
mod http_client;
mod limiter;
mod mdns;
mod pg_store;
mod runtime;
mod seed_file;
mod server;
mod shared;
mod stdio;
mod store;
mod telemetry;
mod tls;
mod ws;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use mcpgw_core::config::SETTINGS;
use mcpgw_core::memory::{MemoryEventStore, MemorySessionStore};
use mcpgw_core::{Gateway, GatewayConfig, Ports, SeedFile, ServerInfo};

#[derive(Parser)]
#[command(name = "mcpgw", version, about = "mcpgw: a Model Context Protocol gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve(Box<ServeArgs>),
    /// Print a bearer token signed with the configured key (MCPGW_JWT_SECRET, or
    /// MCPGW_JWT_PRIVATE_KEY with MCPGW_JWT_ALGORITHM=RS256|ES256|EdDSA).
    Token(TokenArgs),
    /// Read a password from standard input and print its hash for MCPGW_ADMIN_PASSWORD_HASH.
    HashPassword,
    /// Serve the gateway on standard input and output (newline-delimited JSON-RPC), for an MCP
    /// client that launches it; logs go to standard error.
    Stdio(Box<StdioArgs>),
    /// Bridge standard input and output to a remote mcpgw (or any streamable HTTP MCP server),
    /// opening a new session when the remote restarts; the bearer token comes from MCPGW_TOKEN.
    Connect(stdio::ConnectArgs),
    /// Exit 0 if the gateway on this host answers GET /health with 200 (a container's
    /// health check: the image has no curl).
    Health(HealthArgs),
}

enum Run {
    Serve(ServeArgs),
    Stdio(StdioArgs),
    Connect(stdio::ConnectArgs),
}

#[derive(clap::Args)]
struct StdioArgs {
    /// Serve one virtual server (its id) instead of everything in the registry.
    #[arg(long)]
    server: Option<String>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(clap::Args)]
struct HealthArgs {
    /// The gateway's port on 127.0.0.1.
    #[arg(long, env = "MCPGW_PORT", default_value = "4444")]
    port: u16,
    /// Seconds to wait for the answer.
    #[arg(long, default_value = "3")]
    timeout: u64,
}

/// `mcpgw health`: GET /health on 127.0.0.1 over plain HTTP/1.1.
fn health(args: HealthArgs) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    // Over TLS the main port needs a handshake this check does not make: the metrics listener
    // (plain HTTP, which serves /health too) is asked instead.
    let tls = std::env::var("MCPGW_TLS_CERT").is_ok_and(|v| !v.trim().is_empty());
    let metrics = std::env::var("MCPGW_METRICS_ADDR")
        .ok()
        .and_then(|v| v.trim().parse::<SocketAddr>().ok());
    let addr = match (tls, metrics) {
        (true, Some(m)) => SocketAddr::from(([127, 0, 0, 1], m.port())),
        (true, None) => {
            bail!("with MCPGW_TLS_CERT set, `mcpgw health` needs MCPGW_METRICS_ADDR (a plain listener with /health)")
        }
        (false, _) => SocketAddr::from(([127, 0, 0, 1], args.port)),
    };
    let wait = Duration::from_secs(args.timeout.max(1));
    let mut s = std::net::TcpStream::connect_timeout(&addr, wait).with_context(|| format!("cannot reach {addr}"))?;
    s.set_read_timeout(Some(wait))?;
    s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).context("no answer")?;
    match &head[9..12] {
        b"200" => Ok(()),
        code => bail!("GET /health answered {}", String::from_utf8_lossy(code)),
    }
}

#[derive(clap::Args)]
struct TokenArgs {
    /// The subject (`sub`): who the token is for.
    #[arg(long)]
    sub: String,
    /// Seconds until it expires.
    #[arg(long, default_value = "3600")]
    exp: u64,
    /// A scope to grant (repeat for several); default: the client scope (MCPGW_CLIENT_SCOPE).
    #[arg(long = "scope")]
    scopes: Vec<String>,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on; a loopback address turns on Host/Origin checks.
    #[arg(long, env = "MCPGW_HOST", default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "MCPGW_PORT", default_value = "4444")]
    port: String,
    /// The registry: a libsql database file, :memory:, or a PostgreSQL URL (postgres://…) that
    /// several instances share.
    #[arg(long, env = "MCPGW_DATABASE", default_value = "./mcpgw.db")]
    database: String,
    /// TOML file whose tools, resources, prompts and servers are created or updated at start-up.
    #[arg(long, env = "MCPGW_CONFIG")]
    config: Option<String>,
    /// Seconds between upkeep rounds: SSE keep-alives, and list_changed for registry changes made
    /// elsewhere (another instance sharing the database).
    #[arg(long, env = "MCPGW_UPKEEP_SECS", default_value = "15")]
    upkeep_secs: String,
    /// Record metrics (served at GET /metrics to admins, and on --metrics-addr if set).
    #[arg(long, env = "MCPGW_METRICS", default_value = "true")]
    metrics: String,
    /// A separate address serving GET /metrics without credentials (for a scraper on a network
    /// the clients do not reach), e.g. 127.0.0.1:9464.
    #[arg(long, env = "MCPGW_METRICS_ADDR")]
    metrics_addr: Option<String>,
    /// OTLP/HTTP collector to export traces to (JSON encoding), e.g. http://127.0.0.1:4318;
    /// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT if unset. Headers come
    /// from OTEL_EXPORTER_OTLP_HEADERS, the service name from OTEL_SERVICE_NAME.
    #[arg(long, env = "MCPGW_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// Serve HTTPS (HTTP/2 and HTTP/1.1) with this PEM certificate chain; needs --tls-key.
    /// SIGHUP reads both files again.
    #[arg(long, env = "MCPGW_TLS_CERT")]
    tls_cert: Option<String>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "MCPGW_TLS_KEY")]
    tls_key: Option<String>,
    /// mDNS: advertise this gateway as _mcp-gateway._tcp.local. and list the others at
    /// GET /peers/discovered: off, on (every interface) or loopback (this machine only).
    #[arg(long, env = "MCPGW_MDNS", default_value = "off")]
    mdns: String,
    /// Seconds in-flight requests get to finish at shutdown.
    #[arg(long, env = "MCPGW_SHUTDOWN_GRACE_SECS", default_value = "10")]
    shutdown_grace_secs: String,
    /// The core gateway's settings, one flag per entry of the table both runtimes read.
    #[command(flatten)]
    core: CoreArgs,
}

/// The flags and variables of [`mcpgw_core::config::SETTINGS`], as given (a flag wins over its
/// variable; neither: the default).
#[derive(Clone, Default)]
struct CoreArgs(std::collections::HashMap<String, String>);

impl clap::FromArgMatches for CoreArgs {
    fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let mut given = std::collections::HashMap::new();
        for s in SETTINGS {
            if let Ok(Some(v)) = m.try_get_one::<String>(s.field) {
                given.insert(s.var(), v.clone());
            }
        }
        Ok(Self(given))
    }

    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl clap::Args for CoreArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        let defaults = serde_json::to_value(GatewayConfig::default()).unwrap_or_default();
        cmd.args(SETTINGS.iter().map(|s| {
            let default = match &defaults[s.field] {
                serde_json::Value::Array(items) => {
                    items.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>().join(",")
                }
                serde_json::Value::String(v) => v.clone(),
                other => other.to_string(),
            };
            clap::Arg::new(s.field)
                .long(s.flag())
                .env(s.var())
                .help(format!("{} [default: {default}]", s.help.trim_end_matches('.')))
                .value_name("VALUE")
        }))
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

/// Parses a numeric setting, naming it on failure.
fn number<T: std::str::FromStr>(name: &str, value: &str) -> anyhow::Result<T> {
    value
        .trim()
        .parse::<T>()
        .map_err(|_| anyhow::anyhow!("invalid setting {name}: '{value}' is not a valid number"))
}

/// The key that seals stored credentials: `MCPGW_ENCRYPTION_KEY`, else a key file beside the
/// database (`<database>.key`, created once with mode 0600), else (`:memory:`) a random key for
/// this run.
fn encryption_key(database: &str) -> anyhow::Result<mcpgw_core::security::auth::Secret> {
    use base64::Engine as _;
    if let Ok(k) = std::env::var("MCPGW_ENCRYPTION_KEY") {
        if !k.trim().is_empty() {
            return Ok(mcpgw_core::security::auth::Secret(k.trim().to_string()));
        }
    }
    let fresh = || {
        let mut b = [0u8; 32];
        b[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        b[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        base64::engine::general_purpose::STANDARD.encode(b)
    };
    if database == ":memory:" {
        return Ok(mcpgw_core::security::auth::Secret(fresh()));
    }
    if pg_store::is_postgres_url(database) {
        bail!(
            "invalid setting MCPGW_ENCRYPTION_KEY: required with a PostgreSQL MCPGW_DATABASE, so that every \
             instance seals and opens stored credentials with the same key (32 bytes, base64)"
        );
    }
    let path = format!("{database}.key");
    match std::fs::read_to_string(&path) {
        Ok(k) => {
            // The key opens every stored credential: readable by this user only.
            use std::os::unix::fs::PermissionsExt;
            if let Ok(meta) = std::fs::metadata(&path) {
                if meta.permissions().mode() & 0o077 != 0 {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                        .with_context(|| format!("invalid setting MCPGW_ENCRYPTION_KEY: cannot make {path} 0600"))?;
                    tracing::warn!(path = %path, "the credentials key file was readable by others: now 0600");
                }
            }
            Ok(mcpgw_core::security::auth::Secret(k.trim().to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let key = fresh();
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("invalid setting MCPGW_ENCRYPTION_KEY: cannot create the key file {path}"))?;
            writeln!(f, "{key}")?;
            tracing::info!(path = %path, "created the credentials key file (keep it with the database backups, apart from them)");
            Ok(mcpgw_core::security::auth::Secret(key))
        }
        Err(e) => Err(anyhow::anyhow!(
            "invalid setting MCPGW_ENCRYPTION_KEY: cannot read the key file {path}: {e}"
        )),
    }
}

fn token(args: TokenArgs) -> anyhow::Result<()> {
    use std::time::{SystemTime, UNIX_EPOCH};
    // Read as if auth were off, so that a missing or weak key gets mint's own message.
    let cfg = mcpgw_core::security::auth::AuthConfig::from_vars(|n| match n {
        "MCPGW_AUTH_REQUIRED" => Some("false".into()),
        _ => std::env::var(n).ok(),
    })?;
    let scopes = if args.scopes.is_empty() {
        vec![cfg.client_scope.clone()]
    } else {
        args.scopes
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
    let jti = uuid::Uuid::new_v4().simple().to_string();
    let t =
        mcpgw_core::security::mint(&cfg, &args.sub, &scopes, args.exp, &jti, now).map_err(|e| anyhow::anyhow!(e))?;
    println!("{t}");
    Ok(())
}

fn hash_password() -> anyhow::Result<()> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.len() < 12 {
        bail!("the password must be at least 12 characters");
    }
    let salt = *uuid::Uuid::new_v4().as_bytes();
    println!(
        "{}",
        mcpgw_core::security::auth::PasswordHash::create(
            password,
            &salt,
            mcpgw_core::security::auth::PBKDF2_ITERATIONS
        )
    );
    Ok(())
}

struct Settings {
    addr: SocketAddr,
    metrics: bool,
    metrics_addr: Option<SocketAddr>,
    otlp: Option<String>,
    database: String,
    seed: Option<(String, SeedFile)>,
    gateway: GatewayConfig,
    grace: Duration,
    upkeep: Duration,
}

/// A bad setting, named by its variable (and its flag, for those that have one).
fn invalid(e: mcpgw_core::ConfigError) -> anyhow::Error {
    match SETTINGS.iter().find(|s| s.field == e.setting) {
        Some(s) => anyhow::anyhow!("invalid setting {} (--{}): {}", s.var(), s.flag(), e.message),
        None => anyhow::anyhow!("invalid setting {}: {}", e.variable(), e.message),
    }
}

fn settings(a: &ServeArgs) -> anyhow::Result<Settings> {
    let ip: IpAddr = match a.host.as_str() {
        "localhost" => IpAddr::from([127, 0, 0, 1]),
        h => h
            .trim_matches(['[', ']'])
            .parse()
            .map_err(|_| anyhow::anyhow!("invalid setting MCPGW_HOST (--host): '{h}' is not an IP address"))?,
    };
    let port: u16 = number("MCPGW_PORT (--port)", &a.port)?;
    if a.database.trim().is_empty() {
        bail!("invalid setting MCPGW_DATABASE (--database): must not be empty");
    }
    // A flag wins over its variable; the settings without a flag (auth, rate limits) are variables.
    let get = |n: &str| a.core.0.get(n).cloned().or_else(|| std::env::var(n).ok());
    let mut gateway = GatewayConfig::from_vars(get).map_err(invalid)?;

    gateway.bind_host = ip.to_string();
    gateway.encryption_key = Some(encryption_key(&a.database)?);
    gateway.validate().map_err(invalid)?;

    let seed = match &a.config {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("invalid setting MCPGW_CONFIG (--config): cannot read {path}"))?;
            let file: SeedFile = seed_file::parse(&text)
                .map_err(|e| anyhow::anyhow!("invalid setting MCPGW_CONFIG (--config): {path}: {e}"))?;
            Some((path.clone(), file))
        }
    };
    let grace = Duration::from_secs(number(
        "MCPGW_SHUTDOWN_GRACE_SECS (--shutdown-grace-secs)",
        &a.shutdown_grace_secs,
    )?);
    let upkeep: u64 = number("MCPGW_UPKEEP_SECS (--upkeep-secs)", &a.upkeep_secs)?;
    if upkeep == 0 {
        bail!("invalid setting MCPGW_UPKEEP_SECS (--upkeep-secs): must be at least 1");
    }
    let Some(metrics) = mcpgw_core::settings::flag(&a.metrics) else {
        bail!(
            "invalid setting MCPGW_METRICS (--metrics): '{}' is not true or false",
            a.metrics.trim()
        );
    };
    let metrics_addr = match a.metrics_addr.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => Some(v.parse::<SocketAddr>().map_err(|_| {
            anyhow::anyhow!("invalid setting MCPGW_METRICS_ADDR (--metrics-addr): '{v}' is not an address:port")
        })?),
    };
    let otlp = a
        .otlp_endpoint
        .clone()
        .or_else(|| std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").ok())
        .or_else(|| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok())
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty());
    if let Some(u) = &otlp {
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            bail!("invalid setting MCPGW_OTLP_ENDPOINT (--otlp-endpoint): '{u}' is not an http(s) URL");
        }
    }
    Ok(Settings {
        addr: SocketAddr::new(ip, port),
        metrics,
        metrics_addr,
        otlp,
        database: a.database.clone(),
        seed,
        gateway,
        grace,
        upkeep: Duration::from_secs(upkeep),
    })
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MCPGW_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_writer(std::io::stderr)
        .init();
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// Where sessions, their event logs and rate-limit budgets live: in this process, or with
/// `MCPGW_REDIS_URL` in Redis, shared by every instance on it (with the bus between them).
struct StatePorts {
    limiter: Arc<dyn mcpgw_core::security::ratelimit::Limiter>,
    sessions: Arc<dyn mcpgw_core::ports::SessionStore>,
    events: Arc<dyn mcpgw_core::ports::EventStore>,
    bus: Option<Arc<dyn mcpgw_core::ports::Bus>>,
    cache: Arc<dyn mcpgw_core::ports::Cache>,
}

async fn state_ports(ttl_ms: u64, clock: Arc<runtime::TokioClock>) -> anyhow::Result<StatePorts> {
    let memory = MemoryEventStore::default();
    match std::env::var("MCPGW_REDIS_URL") {
        Ok(url) if !url.trim().is_empty() => {
            let bad = |e: anyhow::Error| anyhow::anyhow!("invalid setting MCPGW_REDIS_URL: cannot use {url}: {e}");
            let conn = shared::Redis::connect(url.trim()).await.map_err(bad)?;
            Ok(StatePorts {
                limiter: Arc::new(limiter::RedisLimiter::new(conn.clone())),
                sessions: Arc::new(shared::RedisSessions::new(conn.clone(), ttl_ms)),
                events: Arc::new(shared::RedisEvents::new(
                    conn.clone(),
                    memory.capacity(),
                    memory.max_streams(),
                    ttl_ms,
                )),
                cache: Arc::new(shared::RedisCache::new(conn.clone())),
                bus: Some(Arc::new(shared::RedisBus::start(conn).await.map_err(bad)?)),
            })
        }
        _ => Ok(StatePorts {
            limiter: Arc::new(mcpgw_core::security::ratelimit::MemoryLimiter::default()),
            sessions: Arc::new(MemorySessionStore::default()),
            events: Arc::new(memory),
            bus: None,
            cache: Arc::new(mcpgw_core::memory::MemoryCache::new(clock, 10_000)),
        }),
    }
}

/// Opens the registry and builds the gateway on it (seeded from `--config`, its first snapshot
/// read): what `serve` and `stdio` share.
async fn open_gateway(s: &mut Settings, quiet_auth: bool) -> anyhow::Result<Gateway> {
    let store: Arc<dyn mcpgw_core::ports::Store> = if pg_store::is_postgres_url(&s.database) {
        Arc::new(pg_store::PgStore::open(&s.database).await.map_err(|e| {
            anyhow::anyhow!(
                "invalid setting MCPGW_DATABASE (--database): cannot open {}: {e}",
                pg_store::redacted(&s.database)
            )
        })?)
    } else {
        Arc::new(store::LibsqlStore::open(&s.database).await.map_err(|e| {
            anyhow::anyhow!(
                "invalid setting MCPGW_DATABASE (--database): cannot open {}: {e}",
                s.database
            )
        })?)
    };
    let clock: Arc<runtime::TokioClock> = Arc::new(runtime::TokioClock);
    let state = state_ports(s.gateway.session_ttl_secs.saturating_mul(1000), clock.clone()).await?;
    let ports = Ports {
        store,
        sessions: state.sessions,
        events: state.events,
        http: Arc::new(http_client::HyperClient::new(
            mcpgw_core::netguard::NetPolicy::parse(&s.gateway.ssrf_allow).map_err(|e| anyhow::anyhow!(e))?,
        )),
        clock,
        ids: Arc::new(runtime::RandomIds),
        spawner: Arc::new(runtime::TokioSpawner),
        launcher: Some(Arc::new(runtime::ProcessLauncher::new(
            &s.gateway.stdio_env,
            s.gateway.max_upstream_response_bytes,
        ))),
        limiter: state.limiter,
        crypto: Arc::new(mcpgw_core::security::RustCrypto),
        bus: state.bus,
        cache: state.cache,
        recorder: (s.metrics || s.otlp.is_some()).then(|| {
            telemetry::recorder(s.otlp.clone().map(|endpoint| telemetry::Otlp {
                endpoint,
                headers: telemetry::header_pairs(&std::env::var("OTEL_EXPORTER_OTLP_HEADERS").unwrap_or_default()),
                service: std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "mcpgw".into()),
            }))
        }),
    };
    let info = ServerInfo {
        name: "mcpgw".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    };
    if !s.gateway.auth.required && !quiet_auth {
        tracing::warn!(
            "authentication is off (MCPGW_AUTH_REQUIRED=false): anyone who can reach the gateway can use and change it"
        );
    }
    let gw = Gateway::new(s.gateway.clone(), ports, info).map_err(|e| anyhow::anyhow!("{e}"))?;
    // The parsed config file goes once it is seeded (10,000 tools of it are tens of MB).
    if let Some((path, seed)) = s.seed.take() {
        let n = gw
            .registry()
            .seed(&seed)
            .await
            .map_err(|e| anyhow::anyhow!("invalid setting MCPGW_CONFIG (--config): {path}: {e}"))?;
        tracing::info!(path = %path, entries = n, "registry seeded");
    }
    // The first snapshot now rather than on the first request.
    if let Err(e) = gw.registry().snapshot().await {
        tracing::warn!(error = %e, "registry not readable yet");
    }
    Ok(gw)
}

/// The gateway's background work: the upstreams' catalogs read (in the background: an
/// unreachable upstream must not delay start-up), then health checks and refreshes as they fall
/// due, on their own task so that a slow upstream never delays keep-alives; and every upkeep
/// round SSE keep-alives and list_changed for registry changes made elsewhere (idle sessions
/// expire every fourth round; they also expire on access).
fn spawn_upkeep(gw: &Gateway, s: &Settings) {
    let checks = gw.clone();
    let every = s.upkeep.min(Duration::from_secs(s.gateway.health_check_secs));
    tokio::spawn(async move {
        let healthy = checks.check_upstreams(true).await;
        tracing::info!(healthy, "upstreams checked");
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            checks.check_upstreams(false).await;
        }
    });
    let upkeep = gw.clone();
    let every = s.upkeep;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        for n in 0u64.. {
            tick.tick().await;
            upkeep.keepalive();
            upkeep.refresh_registry().await;
            if n % 4 == 3 {
                upkeep.expire_sessions().await;
            }
        }
    });
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let nonempty = |v: &Option<String>| v.as_ref().map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let args_tls = (nonempty(&args.tls_cert), nonempty(&args.tls_key));
    let mut s = settings(&args)?;
    let tls = match (&args_tls.0, &args_tls.1) {
        (Some(c), Some(k)) => {
            let cert = tls::Certificate::open(std::path::Path::new(c), std::path::Path::new(k))
                .map_err(|e| anyhow::anyhow!("invalid setting MCPGW_TLS_CERT/MCPGW_TLS_KEY: {e:#}"))?;
            tls::reload_on_sighup(cert.clone());
            Some(tls::acceptor(cert)?)
        }
        (None, None) => None,
        _ => bail!("invalid setting MCPGW_TLS_CERT/MCPGW_TLS_KEY (--tls-cert/--tls-key): give both or neither"),
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mdns_mode = mdns::Mode::parse(&args.mdns)?;
    let listener = tokio::net::TcpListener::bind(s.addr)
        .await
        .with_context(|| format!("cannot listen on {}", s.addr))?;
    let addr = listener.local_addr()?;
    // An OAuth resource server on loopback without a configured URL is the one it listens on:
    // the audience tokens must carry never comes from a request's Host.
    let auth = &mut s.gateway.auth;
    if auth.oauth_issuer.is_some() && auth.public_url.is_none() && auth.audience.is_empty() {
        auth.public_url = Some(format!("{scheme}://{addr}"));
    }
    let gw = open_gateway(&mut s, false).await?;
    spawn_upkeep(&gw, &s);
    if let Some(m) = s.metrics_addr {
        let l = tokio::net::TcpListener::bind(m)
            .await
            .with_context(|| format!("cannot listen on {m} (MCPGW_METRICS_ADDR)"))?;
        tracing::info!(address = %l.local_addr()?, "metrics on http://{}/metrics", l.local_addr()?);
        tokio::spawn(telemetry::serve_metrics(gw.clone(), l));
    }
    tracing::info!(
        address = %addr,
        database = %pg_store::redacted(&s.database),
        ready_ms = started.elapsed().as_secs_f64() * 1000.0,
        "mcpgw listening on {scheme}://{addr}"
    );
    // Known on the local network by its instance name, else by an id of this run.
    let advertised = match mdns_mode {
        mdns::Mode::Off => None,
        mode => {
            let id = match s.gateway.instance.trim() {
                "" => uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
                name => name.to_string(),
            };
            let me = mdns::Advert {
                id: &id,
                addr,
                scheme,
                auth: s.gateway.auth.required,
            };
            // MCPGW_PEERS_AUTO: the gateways found that it names are registered as peers.
            let auto = std::env::var("MCPGW_PEERS_AUTO").unwrap_or_default();
            let tell = (!auto.trim().is_empty()).then(|| {
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                tokio::spawn(mdns::register_found(gw.clone(), auto.clone(), rx));
                tx
            });
            let (m, found) =
                mdns::Mdns::start(mode, &me, tell).context("invalid setting MCPGW_MDNS: cannot start mDNS")?;
            gw.set_discovery(Arc::new(found));
            Some(m)
        }
    };
    server::serve(gw.clone(), listener, shutdown_signal(), s.grace, tls).await?;
    if let Some(m) = advertised {
        m.stop();
    }
    gw.close_upstreams();
    tracing::info!("stopped");
    Ok(())
}

/// `mcpgw stdio`: the gateway on this process's standard input and output, as the local
/// operator (whoever can launch it can read its database), for a client that launches it.
async fn stdio_serve(mut args: StdioArgs) -> anyhow::Result<()> {
    args.serve.core.0.insert("MCPGW_AUTH_REQUIRED".into(), "false".into());
    let mut s = settings(&args.serve)?;
    let gw = open_gateway(&mut s, true).await?;
    spawn_upkeep(&gw, &s);
    let path = match &args.server {
        Some(id) => format!("/servers/{id}/mcp"),
        None => "/mcp".into(),
    };
    tracing::info!(database = %pg_store::redacted(&s.database), path = %path, "mcpgw serving on stdio");
    // Links the gateway hands out (an upstream's connect page) point at MCPGW_PUBLIC_URL: an
    // `mcpgw serve` on the same database serves them.
    let admitted = mcpgw_core::Admitted {
        base: gw.public_url().map(str::to_string),
        ..Default::default()
    };
    let local = mcpgw_core::bridge::LocalGateway::new(gw.clone(), Some(admitted));
    stdio::run(Arc::new(local), path, http::HeaderMap::new()).await;
    gw.close_upstreams();
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let args = match cli.command {
        Command::Token(args) => return token(args),
        Command::HashPassword => return hash_password(),
        Command::Health(args) => return health(args),
        Command::Serve(args) => Run::Serve(*args),
        Command::Stdio(args) => Run::Stdio(*args),
        Command::Connect(args) => Run::Connect(args),
    };
    init_logging();
    // Processes of this user (a stdio upstream among them) may no longer read this one's memory
    // or environment (`/proc/PID/environ`, `mem`, ptrace): those become root's alone.
    #[cfg(target_os = "linux")]
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!(error = %e, "could not keep other processes of this user out of this one's memory");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let done = match args {
        Run::Serve(args) => runtime
            .block_on(serve(args))
            .inspect_err(|e| tracing::error!(error = %format!("{e:#}"), "mcpgw failed to start")),
        Run::Stdio(args) => runtime
            .block_on(stdio_serve(args))
            .inspect_err(|e| tracing::error!(error = %format!("{e:#}"), "mcpgw stdio failed")),
        Run::Connect(args) => runtime
            .block_on(stdio::connect(args))
            .inspect_err(|e| tracing::error!(error = %format!("{e:#}"), "mcpgw connect failed")),
    };
    // Standard input may still be read by a blocking thread: not waited for.
    runtime.shutdown_timeout(Duration::from_millis(200));
    done
}
