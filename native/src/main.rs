//! `mcpgw`: the native gateway. `mcpgw serve` runs it on axum with a libsql registry.
//! Only wiring lives here: settings, ports, logging, signals. The gateway is in mcpgw-core.

mod limiter;
mod runtime;
mod server;
mod store;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
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
    /// libsql database file, or :memory:.
    #[arg(long, env = "MCPGW_DATABASE", default_value = "./mcpgw.db")]
    database: String,
    /// TOML file whose tools, resources, prompts and servers are created or updated at start-up.
    #[arg(long, env = "MCPGW_CONFIG")]
    config: Option<String>,
    /// Items per page of list results.
    #[arg(long, env = "MCPGW_PAGE_SIZE", default_value = "100")]
    page_size: String,
    /// Largest request body in bytes.
    #[arg(long, env = "MCPGW_MAX_BODY_BYTES", default_value = "4194304")]
    max_body_bytes: String,
    /// Most messages in one JSON-RPC batch.
    #[arg(long, env = "MCPGW_MAX_BATCH", default_value = "100")]
    max_batch: String,
    /// Default REST tool timeout in milliseconds.
    #[arg(long, env = "MCPGW_TOOL_TIMEOUT_MS", default_value = "30000")]
    tool_timeout_ms: String,
    /// Longest a forwarded upstream call may run in milliseconds (its timeout restarts on
    /// every message the upstream sends for it: progress, logs, requests to the client).
    #[arg(long, env = "MCPGW_CALL_MAX_MS", default_value = "600000")]
    call_max_ms: String,
    /// How long an upstream session's standalone stream stays open with nothing to keep it, in
    /// milliseconds (no call in flight, no client stream, no subscription).
    #[arg(long, env = "MCPGW_STANDALONE_LINGER_MS", default_value = "10000")]
    standalone_linger_ms: String,
    /// Largest message read from an upstream MCP server, in bytes.
    #[arg(long, env = "MCPGW_MAX_UPSTREAM_RESPONSE_BYTES", default_value = "33554432")]
    max_upstream_response_bytes: String,
    /// Idle seconds before a session expires.
    #[arg(long, env = "MCPGW_SESSION_TTL_SECS", default_value = "3600")]
    session_ttl_secs: String,
    /// Most sessions held at once (idle ones are expired to make room; then 503).
    #[arg(long, env = "MCPGW_MAX_SESSIONS", default_value = "10000")]
    max_sessions: String,
    /// Extra accepted Host header values, comma-separated.
    #[arg(long, env = "MCPGW_ALLOWED_HOSTS", default_value = "")]
    allowed_hosts: String,
    /// Accepted browser Origins, comma-separated (or *).
    #[arg(long, env = "MCPGW_ALLOWED_ORIGINS", default_value = "")]
    allowed_origins: String,
    /// Seconds between upkeep rounds: SSE keep-alives, and list_changed for registry changes made
    /// elsewhere (another instance sharing the database).
    #[arg(long, env = "MCPGW_UPKEEP_SECS", default_value = "15")]
    upkeep_secs: String,
    /// Between an upstream's slug and a member's name in federated names.
    #[arg(long, env = "MCPGW_NAME_SEPARATOR", default_value = "__")]
    name_separator: String,
    /// A name for this instance, reported by /version (which of several answered).
    #[arg(long, env = "MCPGW_INSTANCE", default_value = "")]
    instance: String,
    /// Default seconds between upstream catalog refreshes.
    #[arg(long, env = "MCPGW_UPSTREAM_REFRESH_SECS", default_value = "300")]
    upstream_refresh_secs: String,
    /// Seconds between upstream health checks.
    #[arg(long, env = "MCPGW_HEALTH_CHECK_SECS", default_value = "30")]
    health_check_secs: String,
    /// Consecutive failures after which an upstream is unhealthy (calls fail fast until it
    /// answers a health check again).
    #[arg(long, env = "MCPGW_UNHEALTHY_AFTER", default_value = "3")]
    unhealthy_after: String,
    /// Special-purpose targets tools and upstreams may reach despite the SSRF guard,
    /// comma-separated: CIDRs, addresses, host names, or loopback/private/link-local/shared.
    #[arg(long, env = "MCPGW_SSRF_ALLOW", default_value = "")]
    ssrf_allow: String,
    /// Seconds in-flight requests get to finish at shutdown.
    #[arg(long, env = "MCPGW_SHUTDOWN_GRACE_SECS", default_value = "10")]
    shutdown_grace_secs: String,
}

/// Parses a numeric setting, naming it on failure.
fn number<T: std::str::FromStr>(name: &str, value: &str) -> anyhow::Result<T> {
    value
        .trim()
        .parse::<T>()
        .map_err(|_| anyhow::anyhow!("invalid setting {name}: '{value}' is not a valid number"))
}

use mcpgw_core::config::split_list as list;

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
    let path = format!("{database}.key");
    match std::fs::read_to_string(&path) {
        Ok(k) => Ok(mcpgw_core::security::auth::Secret(k.trim().to_string())),
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
    let t = mcpgw_core::security::jwt::mint(&cfg, &args.sub, &scopes, args.exp, &jti, now)
        .map_err(|e| anyhow::anyhow!(e))?;
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
    database: String,
    seed: Option<(String, SeedFile)>,
    gateway: GatewayConfig,
    grace: Duration,
    upkeep: Duration,
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
    let gateway = GatewayConfig {
        bind_host: ip.to_string(),
        allowed_hosts: list(&a.allowed_hosts),
        allowed_origins: list(&a.allowed_origins),
        max_body_bytes: number("MCPGW_MAX_BODY_BYTES (--max-body-bytes)", &a.max_body_bytes)?,
        page_size: number("MCPGW_PAGE_SIZE (--page-size)", &a.page_size)?,
        max_batch: number("MCPGW_MAX_BATCH (--max-batch)", &a.max_batch)?,
        session_ttl_secs: number("MCPGW_SESSION_TTL_SECS (--session-ttl-secs)", &a.session_ttl_secs)?,
        tool_timeout_ms: number("MCPGW_TOOL_TIMEOUT_MS (--tool-timeout-ms)", &a.tool_timeout_ms)?,
        call_max_ms: number("MCPGW_CALL_MAX_MS (--call-max-ms)", &a.call_max_ms)?,
        standalone_linger_ms: number(
            "MCPGW_STANDALONE_LINGER_MS (--standalone-linger-ms)",
            &a.standalone_linger_ms,
        )?,
        max_upstream_response_bytes: number(
            "MCPGW_MAX_UPSTREAM_RESPONSE_BYTES (--max-upstream-response-bytes)",
            &a.max_upstream_response_bytes,
        )?,
        max_sessions: number("MCPGW_MAX_SESSIONS (--max-sessions)", &a.max_sessions)?,
        name_separator: a.name_separator.clone(),
        instance: a.instance.clone(),
        upstream_refresh_secs: number(
            "MCPGW_UPSTREAM_REFRESH_SECS (--upstream-refresh-secs)",
            &a.upstream_refresh_secs,
        )?,
        health_check_secs: number("MCPGW_HEALTH_CHECK_SECS (--health-check-secs)", &a.health_check_secs)?,
        unhealthy_after: number("MCPGW_UNHEALTHY_AFTER (--unhealthy-after)", &a.unhealthy_after)?,
        ssrf_allow: list(&a.ssrf_allow),
        encryption_key: Some(encryption_key(&a.database)?),
        auth: mcpgw_core::security::auth::AuthConfig::from_vars(|n| std::env::var(n).ok())?,
        rate_limits: mcpgw_core::security::ratelimit::RateLimits::from_vars(|n| std::env::var(n).ok())?,
        ..GatewayConfig::default()
    };
    gateway.validate().map_err(|e| {
        let env = format!("MCPGW_{}", e.setting.to_ascii_uppercase());
        anyhow::anyhow!("invalid setting {env}: {}", e.message)
    })?;
    let seed = match &a.config {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("invalid setting MCPGW_CONFIG (--config): cannot read {path}"))?;
            let file: SeedFile = toml::from_str(&text)
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
    Ok(Settings {
        addr: SocketAddr::new(ip, port),
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
        .with_current_span(false)
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

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let s = settings(&args)?;
    let store = store::LibsqlStore::open(&s.database).await.map_err(|e| {
        anyhow::anyhow!(
            "invalid setting MCPGW_DATABASE (--database): cannot open {}: {e}",
            s.database
        )
    })?;
    let clock: Arc<runtime::TokioClock> = Arc::new(runtime::TokioClock);
    let limiter: Arc<dyn mcpgw_core::security::ratelimit::Limiter> = match std::env::var("MCPGW_REDIS_URL") {
        Ok(url) if !url.trim().is_empty() => Arc::new(
            limiter::RedisLimiter::connect(url.trim())
                .await
                .map_err(|e| anyhow::anyhow!("invalid setting MCPGW_REDIS_URL: cannot use {url}: {e}"))?,
        ),
        _ => Arc::new(mcpgw_core::security::ratelimit::MemoryLimiter::default()),
    };
    let ports = Ports {
        store: Arc::new(store),
        sessions: Arc::new(MemorySessionStore::default()),
        events: Arc::new(MemoryEventStore::default()),
        http: Arc::new(runtime::ReqwestClient::new(
            mcpgw_core::netguard::NetPolicy::parse(&s.gateway.ssrf_allow).map_err(|e| anyhow::anyhow!(e))?,
        )?),
        clock,
        ids: Arc::new(runtime::RandomIds),
        spawner: Arc::new(runtime::TokioSpawner),
        launcher: Some(Arc::new(runtime::ProcessLauncher)),
        limiter,
    };
    let info = ServerInfo {
        name: "mcpgw".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    };
    if !s.gateway.auth.required {
        tracing::warn!(
            "authentication is off (MCPGW_AUTH_REQUIRED=false): anyone who can reach the gateway can use and change it"
        );
    }
    let gw = Gateway::new(s.gateway.clone(), ports, info).map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some((path, seed)) = &s.seed {
        let n = gw
            .registry()
            .seed(seed)
            .await
            .map_err(|e| anyhow::anyhow!("invalid setting MCPGW_CONFIG (--config): {path}: {e}"))?;
        tracing::info!(path = %path, entries = n, "registry seeded");
    }
    // Read the upstreams' catalogs in the background: an unreachable upstream must not delay
    // start-up; it is retried by the health checks.
    // Then health checks and refreshes as they fall due, on their own task so that a slow
    // upstream never delays keep-alives.
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
    let listener = tokio::net::TcpListener::bind(s.addr)
        .await
        .with_context(|| format!("cannot listen on {}", s.addr))?;
    let addr = listener.local_addr()?;
    tracing::info!(
        address = %addr,
        database = %s.database,
        ready_ms = started.elapsed().as_secs_f64() * 1000.0,
        "mcpgw listening on http://{addr}"
    );
    // Background upkeep: SSE keep-alives and list_changed for registry changes made elsewhere,
    // every round; idle sessions expire every fourth round (they also expire on access).
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
    server::serve(gw.clone(), listener, shutdown_signal(), s.grace).await?;
    gw.close_upstreams();
    tracing::info!("stopped");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let args = match cli.command {
        Command::Token(args) => return token(args),
        Command::HashPassword => return hash_password(),
        Command::Serve(args) => *args,
    };
    init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime
        .block_on(serve(args))
        .inspect_err(|e| tracing::error!(error = %format!("{e:#}"), "mcpgw failed to start"))
}
