//! Duplex transports to an upstream (legacy HTTP+SSE, stdio): messages go out through a
//! [`Pipe`], and everything comes back on one stream, matched to requests by id.

use super::*;

/// A duplex connection: messages go out through the [`Pipe`], everything comes back on one
/// stream read by a background task and dispatched here.
pub(crate) struct Duplex {
    pub(super) pipe: Box<dyn Pipe>,
    pub(super) pending: Mutex<HashMap<u64, oneshot::Sender<Value>>>,
    /// The requests in flight: unrelated messages go with the newest.
    pub(super) sinks: CallSinks,
    /// Where messages go when no request is in flight.
    pub(super) fallback: Mutex<Option<Sink>>,
    pub(super) closed: AtomicBool,
    pub(super) stop: Mutex<Option<oneshot::Sender<()>>>,
}

impl Duplex {
    /// Starts reading `incoming` on `spawner`; the returned duplex sends through `pipe`.
    #[cfg_attr(target_family = "wasm", allow(clippy::arc_with_non_send_sync))]
    pub(super) fn start(
        pipe: Box<dyn Pipe>,
        incoming: BoxStream<'static, String>,
        spawner: &Arc<dyn Spawner>,
    ) -> Arc<Self> {
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let d = Arc::new(Duplex {
            pipe,
            pending: Mutex::new(HashMap::new()),
            sinks: CallSinks::default(),
            fallback: Mutex::new(None),
            closed: AtomicBool::new(false),
            stop: Mutex::new(Some(stop_tx)),
        });
        let reader = d.clone();
        spawner.spawn(boxed(async move {
            let mut incoming = incoming;
            let mut stop = stop_rx;
            while let Either::Left((Some(line), _)) = futures::future::select(incoming.next(), &mut stop).await {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    reader.feed(v);
                }
            }
            reader.fail_all();
        }));
        d
    }

    pub(super) fn feed(&self, msg: Value) {
        if is_response(&msg) {
            if let Some(id) = msg["id"].as_u64() {
                let tx = self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                if let Some(tx) = tx {
                    let _ = tx.send(msg);
                }
            }
            return;
        }
        let target = self
            .sinks
            .target(&msg)
            .or_else(|| self.fallback.lock().unwrap_or_else(|e| e.into_inner()).clone());
        if let Some(t) = target {
            let _ = t.send(super::Said::Message(msg));
        }
    }

    pub(super) fn fail_all(&self) {
        self.closed.store(true, Ordering::Release);
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.sinks.clear();
    }

    pub(super) fn shutdown(&self) {
        if let Some(s) = self.stop.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = s.send(());
        }
        self.pipe.close();
        self.fail_all();
    }

    pub(super) async fn send(&self, body: String) -> Result<(), UpstreamError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(UpstreamError::Closed);
        }
        self.pipe.send(body).await.map_err(|e| UpstreamError::Unreachable(e.0))
    }

    pub(super) async fn call(
        &self,
        id: u64,
        body: String,
        sink: Option<&Sink>,
        progress: Option<Value>,
    ) -> Result<Value, UpstreamError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(UpstreamError::Closed);
        }
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).insert(id, tx);
        // However this call ends (answer, error, or its future dropped on timeout), forget it.
        struct Forget<'a>(&'a Duplex, u64);
        impl Drop for Forget<'_> {
            fn drop(&mut self) {
                self.0.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.1);
            }
        }
        let _forget = Forget(self, id);
        let _in_flight = self.sinks.enter(id, sink, progress);
        self.send(body).await?;
        rx.await.map_err(|_| UpstreamError::Closed)
    }
}

/// The legacy transport's `endpoint` event resolved against the stream's URL, which it must
/// share its origin with: the upstream's credentials go with every POST there, so an endpoint
/// elsewhere (another host, port or scheme) is refused, not followed.
pub(crate) fn endpoint(base: &str, target: &str) -> Result<String, UpstreamError> {
    let resolved = resolve(base, target);
    match (crate::netguard::origin(base), crate::netguard::origin(&resolved)) {
        (Some(a), Some(b)) if a == b => Ok(resolved),
        _ => Err(UpstreamError::Protocol(format!(
            "the SSE endpoint event names {target:?}, not on the stream's origin: refused (the upstream's headers would go there)"
        ))),
    }
}

/// Resolves the legacy transport's `endpoint` event against the stream's URL.
fn resolve(base: &str, target: &str) -> String {
    if target.starts_with("http://") || target.starts_with("https://") {
        return target.to_string();
    }
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[scheme_end..].find('/').map_or(base.len(), |i| scheme_end + i);
    if target.starts_with('/') {
        return format!("{}{target}", &base[..authority_end]);
    }
    let path = &base[..base.split('?').next().unwrap_or(base).len()];
    let dir_end = path
        .rfind('/')
        .filter(|i| *i >= authority_end)
        .map_or(path.len(), |i| i + 1);
    let dir = &path[..dir_end];
    if dir.ends_with('/') {
        format!("{dir}{target}")
    } else {
        format!("{dir}/{target}")
    }
}

/// The legacy transport's sending half: each message is a POST to the endpoint.
pub(super) struct SsePipe {
    http: Arc<dyn HttpClient>,
    endpoint: String,
    headers: http::HeaderMap,
}

impl Pipe for SsePipe {
    fn send(&self, message: String) -> BoxFuture<'static, Result<(), crate::ports::ProcessError>> {
        let http = self.http.clone();
        let mut headers = self.headers.clone();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        let req = OutboundRequest {
            method: http::Method::POST,
            url: self.endpoint.clone(),
            headers,
            body: Some(Bytes::from(message)),
            tls: None,
        };
        boxed(async move {
            let r = http
                .send(req)
                .await
                .map_err(|e| crate::ports::ProcessError(e.to_string()))?;
            if r.status.is_success() {
                Ok(())
            } else {
                Err(crate::ports::ProcessError(format!("HTTP {}", r.status)))
            }
        })
    }
    fn close(&self) {}
}

/// Opens the legacy SSE stream, waits for its endpoint, and starts the reader.
pub(super) async fn open_sse(
    net: &Net,
    http: Arc<dyn HttpClient>,
    url: &str,
    def: &UpstreamDef,
) -> Result<Arc<Duplex>, UpstreamError> {
    let configured = def_headers(def)?;
    let mut headers = configured.clone();
    headers.insert(
        http::header::ACCEPT,
        http::HeaderValue::from_static("text/event-stream"),
    );
    let resp = http
        .send(OutboundRequest {
            method: http::Method::GET,
            url: url.to_string(),
            headers,
            body: None,
            tls: None,
        })
        .await
        .map_err(http_error)?;
    if !resp.status.is_success() {
        return Err(UpstreamError::Unreachable(format!("HTTP {} from {url}", resp.status)));
    }
    let mut parser = sse::Parser::with_limit(net.max_bytes);
    let mut body = resp.body;
    let mut early = Vec::new();
    let endpoint = 'found: loop {
        let Some(chunk) = body.next().await else {
            return Err(UpstreamError::Closed);
        };
        let chunk = chunk.map_err(|_| UpstreamError::Closed)?;
        let mut events = parser.push(&chunk).map_err(UpstreamError::Protocol)?.into_iter();
        while let Some(ev) = events.next() {
            if ev.event.as_deref() == Some("endpoint") {
                early.extend(events.filter_map(sse::Event::into_message));
                break 'found endpoint(url, ev.data.trim())?;
            }
        }
    };
    let rest = futures::stream::unfold((parser, body), |(mut parser, mut body)| async move {
        loop {
            let chunk = body.next().await?.ok()?;
            let events = parser.push(&chunk).ok()?;
            let data: Vec<String> = events.into_iter().filter_map(sse::Event::into_message).collect();
            if !data.is_empty() {
                return Some((futures::stream::iter(data), (parser, body)));
            }
        }
    })
    .flatten();
    let incoming = crate::platform::boxed_stream(futures::stream::iter(early).chain(rest));
    let pipe = SsePipe {
        http,
        endpoint,
        headers: configured,
    };
    Ok(Duplex::start(Box::new(pipe), incoming, &net.spawner))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_resolution() {
        assert_eq!(
            resolve("http://127.0.0.1:9/sse", "/message?sessionId=1"),
            "http://127.0.0.1:9/message?sessionId=1"
        );
        assert_eq!(resolve("http://h:1/a/sse", "message?s=1"), "http://h:1/a/message?s=1");
        assert_eq!(resolve("http://h/sse", "https://o/x"), "https://o/x");
        assert_eq!(resolve("http://h", "m"), "http://h/m");
    }

    #[test]
    fn an_endpoint_elsewhere_is_refused() {
        let ok = |t: &str| endpoint("http://up.example:8080/a/sse", t);
        assert_eq!(ok("/message?s=1").expect("same"), "http://up.example:8080/message?s=1");
        assert!(ok("http://UP.example:8080/m").is_ok());
        assert!(ok("//evil.example/m").is_ok_and(|u| u.starts_with("http://up.example:8080/")));
        for bad in [
            "http://evil.example:8080/m",
            "http://up.example:8081/m",
            "https://up.example:8080/m",
            "http://up.example:8080@evil.example/m",
            "http://127.0.0.1:8080/m",
            "http://169.254.169.254/latest/meta-data",
            "http://evil.example\\@up.example:8080/m",
            "http://evil.example@x@up.example:8080/m",
            "http://up.example:8080 /m",
        ] {
            assert!(ok(bad).is_err(), "{bad}");
        }
        assert!(
            endpoint("http://h/sse", "http://h:80/m").is_ok(),
            "the default port is the same origin"
        );
    }
}
