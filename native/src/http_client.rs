//! Outbound HTTP/1.1 on hyper's client connections, with a small pool of kept-alive
//! connections per host and port. The request arrives ready to send (the core builds each link's
//! headers once), so a call costs a URI parse, one header insertion and the connection's own
//! work: no URL or IDNA parsing, no redirect, retry or timeout layers (the core keeps its own
//! deadlines, and redirects are never followed: a tool's URL is what it is).
//!
//! Host names are resolved here and the addresses the SSRF policy refuses are dropped, so a
//! public name pointing (or re-pointed) at an internal address cannot reach it; literal
//! addresses were checked by the core. `https://` goes over rustls, checked against the Mozilla
//! roots (webpki-roots) and the certificates of the file `SSL_CERT_FILE` names, if set (a
//! private CA); an upstream with TLS settings of its own has its CA bundle trusted instead and
//! presents its client certificate (mTLS), on connections pooled apart from the others.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;
use http::uri::{Authority, PathAndQuery, Uri};
use http::{header, HeaderValue, Request};
use http_body_util::Full;
use hyper::body::{Body as _, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use mcpgw_core::netguard::NetPolicy;
use mcpgw_core::ports::{HttpClient, HttpError, InboundResponse, OutboundRequest, UpstreamTls};

type Sender = SendRequest<Full<Bytes>>;

/// How long a kept-alive connection may wait for its next request.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections kept per host and port beyond those in use.
const MAX_IDLE_PER_HOST: usize = 256;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const USER_AGENT: HeaderValue = HeaderValue::from_static(concat!("mcpgw/", env!("CARGO_PKG_VERSION")));

struct Idle {
    tx: Sender,
    since: Instant,
}

/// How a connection is secured: not at all, by TLS with the client's defaults, or by TLS with
/// an upstream's own settings (numbered as they were first seen).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Secured {
    Plain,
    Tls,
    Own(usize),
}

/// Where a connection goes: how it is secured, and to which host and port.
type Key = (Secured, Authority);

type Connector = Result<tokio_rustls::TlsConnector, String>;

/// The upstream TLS settings seen, each with its place in the list of their connectors.
type OwnConnectors = (HashMap<Arc<UpstreamTls>, usize>, Vec<Connector>);

struct Pool {
    policy: NetPolicy,
    idle: Mutex<HashMap<Key, Vec<Idle>>>,
    /// Made on the first https request.
    tls: std::sync::OnceLock<Connector>,
    /// One connector per distinct upstream TLS setting, made when it is first used, numbered
    /// by its place in the list.
    own: Mutex<OwnConnectors>,
}

/// The certificates of PEM text (`what` names it in errors).
fn pem_certs(pem: &[u8], what: &str) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, String> {
    use rustls_pki_types::pem::PemObject;
    let certs = rustls_pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{what}: no certificate in it"));
    }
    Ok(certs)
}

/// The gateway's roots: the Mozilla roots and `SSL_CERT_FILE`'s certificates.
fn default_roots() -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(file) = std::env::var_os("SSL_CERT_FILE") {
        let what = format!("SSL_CERT_FILE {}", file.to_string_lossy());
        let pem = std::fs::read(&file).map_err(|e| format!("{what}: {e}"))?;
        for c in pem_certs(&pem, &what)? {
            roots.add(c).map_err(|e| format!("{what}: {e}"))?;
        }
    }
    Ok(roots)
}

/// A TLS client speaking HTTP/1.1 over rustls (ring): against the gateway's roots, or an
/// upstream's own CA bundle instead, presenting its client certificate if it has one.
fn tls_connector(own: Option<&UpstreamTls>) -> Connector {
    let roots = match own.and_then(|t| t.ca.as_deref()) {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in pem_certs(ca.as_bytes(), "tls.ca")? {
                roots.add(c).map_err(|e| format!("tls.ca: {e}"))?;
            }
            roots
        }
        None => default_roots()?,
    };
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(crate::tls::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let client = own.and_then(|t| Some((t.client_cert.as_deref()?, t.client_key.as_deref()?)));
    let mut config = match client {
        Some((cert, key)) => {
            use rustls_pki_types::pem::PemObject;
            let chain = pem_certs(cert.as_bytes(), "tls.client_cert")?;
            let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes())
                .map_err(|e| format!("tls.client_key: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("tls.client_cert: {e}"))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// The native [`HttpClient`].
pub struct HyperClient {
    pool: Arc<Pool>,
}

impl HyperClient {
    /// A client resolving host names through `policy`.
    pub fn new(policy: NetPolicy) -> Self {
        Self {
            pool: Arc::new(Pool {
                policy,
                idle: Mutex::new(HashMap::new()),
                tls: std::sync::OnceLock::new(),
                own: Mutex::new((HashMap::new(), Vec::new())),
            }),
        }
    }

    /// Kept-alive connections waiting for a request (tests).
    #[cfg(test)]
    fn idle_count(&self) -> usize {
        self.pool.lock().values().map(Vec::len).sum()
    }
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Vec<Idle>>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most recently used live connection to `key`, if one waits.
    fn take(&self, key: &Key) -> Option<Sender> {
        let mut idle = self.lock();
        let list = idle.get_mut(key)?;
        while let Some(i) = list.pop() {
            if !i.tx.is_closed() && i.since.elapsed() < IDLE_TIMEOUT {
                return Some(i.tx);
            }
        }
        None
    }

    /// Keeps a connection whose response was read (or dropped: hyper then drains the rest of the
    /// body if it has arrived, or closes the connection, which the next `take` skips).
    fn put(&self, key: Key, tx: Sender) {
        if tx.is_closed() {
            return;
        }
        let mut idle = self.lock();
        let list = idle.entry(key).or_default();
        list.retain(|i| !i.tx.is_closed() && i.since.elapsed() < IDLE_TIMEOUT);
        if list.len() < MAX_IDLE_PER_HOST {
            list.push(Idle {
                tx,
                since: Instant::now(),
            });
        }
    }

    /// The addresses to try for `host`, each allowed by the policy: a literal as it is, a name
    /// resolved and filtered (so a name that resolves to a refused address, or comes to, is
    /// never dialled).
    async fn addresses(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, HttpError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            self.policy
                .check_resolved(bare, ip)
                .map_err(|e| HttpError::Connect(format!("{host}: {e}")))?;
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let found = tokio::net::lookup_host((bare, port))
            .await
            .map_err(|e| HttpError::Connect(format!("{host}: {e}")))?;
        let mut refused = None;
        let allowed: Vec<SocketAddr> = found
            .filter(|a| match self.policy.check_resolved(bare, a.ip()) {
                Ok(()) => true,
                Err(e) => {
                    refused = Some(e);
                    false
                }
            })
            .collect();
        if allowed.is_empty() {
            let why = refused.map_or_else(|| "no address".to_string(), |e| e.to_string());
            return Err(HttpError::Connect(format!("{host}: {why}")));
        }
        Ok(allowed)
    }

    /// How a request to `scheme` with `own` TLS settings is secured.
    fn secured(&self, https: bool, own: Option<&Arc<UpstreamTls>>) -> Secured {
        match (https, own) {
            (false, _) => Secured::Plain,
            (true, None) => Secured::Tls,
            (true, Some(t)) => {
                let mut own = self.own.lock().unwrap_or_else(|e| e.into_inner());
                let (index, connectors) = &mut *own;
                let n = *index.entry(t.clone()).or_insert_with(|| {
                    connectors.push(tls_connector(Some(t)));
                    connectors.len() - 1
                });
                Secured::Own(n)
            }
        }
    }

    /// The TLS connector of `secured` (none for plain connections).
    fn connector(&self, secured: Secured) -> Result<Option<tokio_rustls::TlsConnector>, HttpError> {
        let made = match secured {
            Secured::Plain => return Ok(None),
            Secured::Tls => self.tls.get_or_init(|| tls_connector(None)).clone(),
            Secured::Own(n) => {
                let own = self.own.lock().unwrap_or_else(|e| e.into_inner());
                own.1.get(n).cloned().unwrap_or_else(|| Err("TLS settings gone".into()))
            }
        };
        made.map(Some)
            .map_err(|e| HttpError::Connect(format!("TLS settings: {e}")))
    }

    /// A new connection to `authority`, its driver spawned.
    async fn connect(&self, (secured, authority): &Key) -> Result<Sender, HttpError> {
        let connector = self.connector(*secured)?;
        let port = authority
            .port_u16()
            .unwrap_or(if connector.is_some() { 443 } else { 80 });
        let mut last = HttpError::Connect(format!("{authority}: no address"));
        for addr in self.addresses(authority.host(), port).await? {
            let stream = match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    last = HttpError::Connect(format!("{authority} ({addr}): {e}"));
                    continue;
                }
                Err(_) => {
                    last = HttpError::Connect(format!("{authority} ({addr}): no connection within 10 s"));
                    continue;
                }
            };
            // Requests are small and written whole: Nagle would only delay them.
            let _ = stream.set_nodelay(true);
            let Some(connector) = &connector else {
                return handshake(TokioIo::new(stream), authority).await;
            };
            let host = authority.host().trim_start_matches('[').trim_end_matches(']');
            let name = rustls_pki_types::ServerName::try_from(host.to_string())
                .map_err(|e| HttpError::InvalidUrl(format!("{authority}: {e}")))?;
            let stream = match tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, stream)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(HttpError::Connect(format!("{authority} ({addr}): TLS: {e}"))),
                Err(_) => {
                    return Err(HttpError::Connect(format!(
                        "{authority} ({addr}): no TLS handshake within 10 s"
                    )))
                }
            };
            return handshake(TokioIo::new(stream), authority).await;
        }
        Err(last)
    }
}

/// HTTP/1.1 on a connected stream, its driver spawned.
async fn handshake<T>(io: TokioIo<T>, authority: &Authority) -> Result<Sender, HttpError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (tx, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| HttpError::Connect(format!("{authority}: {e}")))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(tx)
}

#[async_trait]
impl HttpClient for HyperClient {
    async fn send(&self, r: OutboundRequest) -> Result<InboundResponse, HttpError> {
        let uri: Uri = r
            .url
            .parse()
            .map_err(|e| HttpError::InvalidUrl(format!("{}: {e}", r.url)))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(HttpError::InvalidUrl(format!("{}: only http:// and https://", r.url))),
        };
        let Some(authority) = uri.authority().cloned() else {
            return Err(HttpError::InvalidUrl(format!("{}: no host", r.url)));
        };
        // HTTP/1.1 sends the origin form (path and query) with the host in its own header.
        let mut parts = http::uri::Parts::default();
        parts.path_and_query = Some(
            uri.path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
        );
        let target = Uri::from_parts(parts).map_err(|e| HttpError::InvalidUrl(format!("{}: {e}", r.url)))?;
        let mut headers = r.headers;
        if !headers.contains_key(header::HOST) {
            let host = HeaderValue::from_str(authority.as_str()).map_err(|e| HttpError::InvalidUrl(e.to_string()))?;
            headers.insert(header::HOST, host);
        }
        headers.entry(header::USER_AGENT).or_insert(USER_AGENT);
        let secured = self.pool.secured(https, r.tls.as_ref());
        let mut req = Request::new(Full::new(r.body.unwrap_or_default()));
        *req.method_mut() = r.method;
        *req.uri_mut() = target;
        *req.headers_mut() = headers;

        // A kept-alive connection may have been closed by the server meanwhile: a request it
        // could not take is sent on the next one, or on a new connection.
        loop {
            let key = (secured, authority.clone());
            let (mut tx, reused) = match self.pool.take(&key) {
                Some(tx) => (tx, true),
                None => (self.pool.connect(&key).await?, false),
            };
            if let Err(e) = tx.ready().await {
                if reused {
                    continue;
                }
                return Err(HttpError::Connect(format!("{authority}: {e}")));
            }
            match tx.try_send_request(req).await {
                Ok(resp) => {
                    let (head, body) = resp.into_parts();
                    let body = PooledBody {
                        body,
                        slot: Some((self.pool.clone(), key, tx)),
                    };
                    return Ok(InboundResponse {
                        status: head.status,
                        headers: head.headers,
                        body: Box::pin(body),
                    });
                }
                Err(mut e) => match e.take_message() {
                    Some(back) if reused => req = back,
                    Some(_) => return Err(HttpError::Connect(format!("{authority}: {}", e.into_error()))),
                    // Past this point the request went out: the server may have acted on it.
                    None => return Err(HttpError::Lost(format!("{authority}: {}", e.into_error()))),
                },
            }
        }
    }
}

/// A response body that gives its connection back to the pool when it ends or is dropped.
struct PooledBody {
    body: Incoming,
    slot: Option<(Arc<Pool>, Key, Sender)>,
}

impl PooledBody {
    fn release(&mut self) {
        if let Some((pool, key, tx)) = self.slot.take() {
            pool.put(key, tx);
        }
    }
}

impl Stream for PooledBody {
    type Item = Result<Bytes, HttpError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match Pin::new(&mut self.body).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    self.release();
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Err(e))) => {
                    // The connection is not reused after a broken body.
                    self.slot = None;
                    return Poll::Ready(Some(Err(HttpError::Body(e.to_string()))));
                }
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        return Poll::Ready(Some(Ok(data)));
                    }
                    // Trailers carry nothing the core reads.
                }
            }
        }
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-response-per-request HTTP/1.1 server on 127.0.0.1 that counts its connections
    /// and closes each after `per_connection` responses.
    async fn server(per_connection: usize) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let conns = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = conns.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    for _ in 0..per_connection {
                        loop {
                            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                let head = String::from_utf8_lossy(&buf[..end]).to_string();
                                buf.drain(..end + 4);
                                let body = format!(
                                    "{{\"host\":{:?}}}",
                                    head.lines().find(|l| l.starts_with("host:")).unwrap_or("")
                                );
                                let resp = format!(
                                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                                    body.len()
                                );
                                if s.write_all(resp.as_bytes()).await.is_err() {
                                    return;
                                }
                                break;
                            }
                            let mut chunk = [0u8; 4096];
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                    }
                });
            }
        });
        (url, conns)
    }

    fn get(url: &str) -> OutboundRequest {
        OutboundRequest {
            method: http::Method::GET,
            url: url.to_string(),
            headers: http::HeaderMap::new(),
            body: None,
            tls: None,
        }
    }

    fn loopback() -> NetPolicy {
        NetPolicy::parse(&["loopback".into()]).expect("policy")
    }

    /// A literal address is checked as a resolved one is: a server listening on loopback is not
    /// reached by default, whichever spelling names it.
    #[tokio::test]
    async fn literal_addresses_are_checked_before_dialling() {
        let (url, conns) = server(10).await;
        let port = url.rsplit(':').next().expect("port").to_string();
        let strict = HyperClient::new(NetPolicy::default());
        for u in [
            format!("http://127.0.0.1:{port}/"),
            format!("http://[::ffff:127.0.0.1]:{port}/"),
            format!("http://[::1]:{port}/"),
        ] {
            let e = strict.send(get(&u)).await.err().expect("refused");
            assert!(
                matches!(e, HttpError::Connect(ref m) if m.contains("SSRF guard")),
                "{u}: {e:?}"
            );
        }
        assert_eq!(
            conns.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "nothing was dialled"
        );
        // A host name the policy allows reaches its (loopback) addresses.
        let named = HyperClient::new(NetPolicy::parse(&["localhost".into()]).expect("policy"));
        assert!(named.pool.addresses("localhost", 80).await.is_ok());
    }

    async fn text(resp: InboundResponse) -> String {
        let chunks: Vec<_> = resp.body.collect().await;
        let bytes: Vec<u8> = chunks.into_iter().flat_map(|c| c.unwrap().to_vec()).collect();
        String::from_utf8(bytes).unwrap()
    }

    #[tokio::test]
    async fn connections_are_kept_alive_and_replaced_when_the_server_closes_them() {
        let (url, conns) = server(3).await;
        let client = HyperClient::new(loopback());
        for _ in 0..7 {
            let resp = client.send(get(&format!("{url}/x?y=1"))).await.unwrap();
            assert_eq!(resp.status, 200);
            assert!(text(resp).await.contains(url.trim_start_matches("http://")));
        }
        // Three responses per connection: seven requests need three connections, and a request
        // that met a closed one went out on a fresh one.
        assert_eq!(conns.load(std::sync::atomic::Ordering::SeqCst), 3);
        assert!(client.idle_count() <= 1);
    }

    #[tokio::test]
    async fn concurrent_requests_each_get_a_connection() {
        let (url, conns) = server(1000).await;
        let client = Arc::new(HyperClient::new(loopback()));
        let held: Vec<_> = futures::future::join_all((0..4).map(|_| client.send(get(&url)))).await;
        assert!(held.iter().all(|r| r.as_ref().is_ok_and(|r| r.status == 200)));
        drop(held);
        assert_eq!(conns.load(std::sync::atomic::Ordering::SeqCst), 4);
        // Their bodies dropped after the whole response arrived: all four are reusable.
        tokio::time::sleep(Duration::from_millis(50)).await;
        for _ in 0..4 {
            text(client.send(get(&url)).await.unwrap()).await;
        }
        assert_eq!(conns.load(std::sync::atomic::Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn names_are_checked_after_resolution() {
        // `localhost` resolves from /etc/hosts, without the network.
        let strict = HyperClient::new(NetPolicy::default());
        let Err(HttpError::Connect(err)) = strict.pool.addresses("localhost", 80).await else {
            panic!("localhost allowed by the default policy");
        };
        assert!(err.contains("loopback") && err.contains("SSRF guard"), "{err}");
        let allowed = HyperClient::new(NetPolicy::parse(&["loopback".into()]).expect("policy"));
        let addrs = allowed.pool.addresses("localhost", 80).await.expect("allowed");
        assert!(!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()));
        // A name the policy refuses is refused before any connection is made.
        let e = strict.send(get("http://localhost:9/")).await.err().unwrap();
        assert!(
            matches!(e, HttpError::Connect(ref m) if m.contains("SSRF guard")),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn bad_urls_and_refused_connections_are_errors() {
        let client = HyperClient::new(loopback());
        let e = client.send(get("ftp://127.0.0.1:1/")).await.err().unwrap();
        assert!(
            matches!(e, HttpError::InvalidUrl(ref m) if m.contains("only http:// and https://")),
            "{e:?}"
        );
        let e = client.send(get("https://127.0.0.1:1/")).await.err().unwrap();
        assert!(matches!(e, HttpError::Connect(_)), "{e:?}");
        let e = client.send(get("not a url")).await.err().unwrap();
        assert!(matches!(e, HttpError::InvalidUrl(_)), "{e:?}");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = client
            .send(get(&format!("http://127.0.0.1:{port}/")))
            .await
            .err()
            .unwrap();
        assert!(matches!(e, HttpError::Connect(_)), "{e:?}");
    }
}
