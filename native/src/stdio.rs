//! Standard input and output as an MCP transport: `mcpgw stdio` (this process's gateway) and
//! `mcpgw connect URL` (a remote endpoint), both through the core's [`Bridge`]. A message is one
//! line of JSON on stdin; each message the endpoint says is one line on stdout; logs go to
//! stderr only.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use futures::StreamExt;
use http::{HeaderMap, HeaderName, HeaderValue};
use mcpgw_core::bridge::{pump, Bridge, BridgePorts};
use mcpgw_core::ports::HttpClient;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use crate::{http_client, runtime};

/// The largest answer or event read from the endpoint.
const MAX_ANSWER_BYTES: usize = 64 << 20;
/// How long answers still coming are waited for once stdin ends.
const GRACE: Duration = Duration::from_secs(5);

#[derive(clap::Args)]
pub(crate) struct ConnectArgs {
    /// The MCP endpoint, e.g. http://127.0.0.1:4444/mcp (or .../servers/{id}/mcp for one
    /// virtual server).
    url: String,
    /// An extra header for every request, `Name: value` (repeat for several).
    #[arg(long = "header")]
    headers: Vec<String>,
    /// The bearer token sent as `Authorization` (prefer the variable: arguments are visible to
    /// other users of the machine).
    #[arg(long, env = "MCPGW_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// Runs the bridge to `url` over `http` until stdin ends.
pub(crate) async fn run(http: Arc<dyn HttpClient>, url: String, headers: HeaderMap) {
    let ports = BridgePorts {
        http,
        clock: Arc::new(runtime::TokioClock),
        spawner: Arc::new(runtime::TokioSpawner),
    };
    let (bridge, mut out) = Bridge::new(ports, url, headers, MAX_ANSWER_BYTES);
    let lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let input = futures::stream::unfold(lines, |mut l| async move {
        match l.next_line().await {
            Ok(Some(line)) => Some((line, l)),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "stdin failed");
                None
            }
        }
    });
    let mut stdout = tokio::io::stdout();
    let mut session = pump(bridge, input, GRACE);
    loop {
        tokio::select! {
            _ = &mut session => break,
            line = out.next() => match line {
                Some(line) => {
                    if write(&mut stdout, &line).await.is_err() {
                        return;
                    }
                }
                None => break,
            },
        }
    }
    // What was said before the session closed.
    while let Ok(line) = out.try_recv() {
        if write(&mut stdout, &line).await.is_err() {
            return;
        }
    }
}

async fn write(stdout: &mut tokio::io::Stdout, line: &str) -> std::io::Result<()> {
    stdout.write_all(line.as_bytes()).await?;
    stdout.write_all(b"\n").await?;
    stdout.flush().await
}

/// `mcpgw connect URL`.
pub(crate) async fn connect(args: ConnectArgs) -> anyhow::Result<()> {
    let url = args.url.trim().to_string();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        bail!("the URL must be http:// or https:// (got '{url}')");
    }
    let mut headers = HeaderMap::new();
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .with_context(|| format!("--header '{h}' is not 'Name: value'"))?;
        let name =
            HeaderName::from_bytes(name.trim().as_bytes()).with_context(|| format!("--header '{h}': bad name"))?;
        let value = HeaderValue::from_str(value.trim()).with_context(|| format!("--header '{h}': bad value"))?;
        headers.insert(name, value);
    }
    if let Some(t) = args.token.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        let mut v = HeaderValue::from_str(&format!("Bearer {t}")).context("MCPGW_TOKEN is not a valid header value")?;
        v.set_sensitive(true);
        headers.insert(http::header::AUTHORIZATION, v);
    }
    // The user names the endpoint: any address is allowed, loopback included.
    let http = http_client::HyperClient::new(mcpgw_core::netguard::NetPolicy::allow_all());
    tracing::info!(url = %url, "mcpgw connect: bridging stdio");
    run(Arc::new(http), url, headers).await;
    Ok(())
}
