//! One forwarded call: the link it goes out on (opened, or reopened once when the session is
//! gone), the upstream's messages while it runs, its answer, and its cancellation when its
//! client goes away.

use super::*;

/// The client-visible error for a failed upstream.
pub(crate) fn upstream_error(name: &str, e: &UpstreamError) -> RpcError {
    let reason = match e {
        UpstreamError::Timeout(_) => "timeout",
        UpstreamError::Unreachable(_) | UpstreamError::SessionGone => "unreachable",
        UpstreamError::Closed => "closed",
        UpstreamError::Protocol(_) => "invalid_answer",
        UpstreamError::Unsupported(_) => "unsupported",
        UpstreamError::Unauthorized(_) => "unauthorized",
        UpstreamError::NeedsConsent => "needs_consent",
    };
    RpcError::new(INTERNAL_ERROR, format!("upstream '{name}' failed: {e}"))
        .with_data(json!({"upstream": name, "reason": reason}))
}

/// A forwarded call between two items of its stream.
pub(super) struct Call {
    pub(super) fed: Arc<Federation>,
    pub(super) session: Option<Arc<SessionState>>,
    /// The session's id (none for `/rpc`).
    pub(super) sid: Option<String>,
    pub(super) up: Arc<Upstream>,
    pub(super) client_id: RequestId,
    pub(super) method: Method,
    /// Shared with the attempt in flight (a retry sends them again).
    pub(super) params: Arc<Value>,
    /// The upstream's requests are handed to the caller as [`Relayed::Ask`] (not refused).
    pub(super) asks: bool,
    /// Headers the request carries besides the transport's (its `Mcp-Param-*`).
    pub(super) headers: http::HeaderMap,
    pub(super) attempt: u32,
    /// Rounds of input asked of a session's client for a 2026-07-28 upstream so far.
    pub(super) rounds: u32,
    /// The caller (subject), the gateway's base URL as it reaches it, and whether it speaks
    /// 2026-07-28: for an upstream acting for each caller, whose tokens and where to connect.
    pub(super) caller: Option<String>,
    pub(super) token: Option<String>,
    pub(super) base: String,
    pub(super) stateless: bool,
    /// Times this call sent its caller to connect the upstream.
    pub(super) consents: u32,
    /// When the caller was last asked to connect.
    pub(super) consent_asked_ms: u64,
    pub(super) state: CallState,
}

/// The input key of the gateway's own request to connect an upstream.
pub(crate) const CONNECT_KEY: &str = "io.mcpgw/connect";
/// How often a call waiting for its caller to connect looks.
const CONNECT_POLL_MS: u64 = 500;

/// The most rounds of input one call may ask of a session's client for a 2026-07-28 upstream.
const MAX_ROUNDS: u32 = 8;

pub(super) enum CallState {
    /// About to (re)open a link and send the request.
    Start,
    /// Sent; the upstream's messages arrive on `rx` until the answer.
    Running(Running),
    /// Answered (or failed): what is left on `rx` goes out first, then the answer.
    Ending(Running, Result<Answer, UpstreamError>),
    /// A 2026-07-28 upstream answered `input_required` and its requests went to the session's
    /// client (on this call's stream): waiting for the answers, then the request goes out again
    /// with them as `inputResponses` and the upstream's `requestState` as it sent it.
    Asking(Asking),
    /// The caller accepted to connect the upstream (a URL elicitation): waiting until the
    /// connection is there (the callback stored it), then the request again.
    Connecting(Connecting),
    Done,
}

pub(super) struct Connecting {
    /// The elicitation's id (the connect link's ticket).
    elicitation: String,
    until_ms: u64,
    /// When the caller was asked: a connection made since answers (a step-up replaces one).
    asked_ms: u64,
}

pub(super) struct Asking {
    /// The client's answers, each under the input key as its id.
    rx: UnboundedReceiver<Value>,
    /// The requests still to be delivered (rewritten for the client), last first.
    queue: Vec<Value>,
    /// Keys not answered yet.
    want: Vec<String>,
    got: serde_json::Map<String, Value>,
    /// The upstream's `requestState`, if it sent one.
    state: Option<Value>,
    /// For the gateway's own request to connect an upstream: the elicitation (its params).
    consent: Option<Value>,
}

pub(super) struct Running {
    link: Arc<Link>,
    uid: u64,
    call: futures::future::Fuse<BoxFuture<'static, Result<Answer, UpstreamError>>>,
    rx: crate::upstream::SinkRx,
    /// The session's client cancelled the call (a stateless link's request is cancelled by
    /// closing its stream, which dropping the call does).
    stop: UnboundedReceiver<()>,
    /// Keeps `stop` open whoever else holds its sender (it ends only when sent to).
    _stop_open: futures::channel::mpsc::UnboundedSender<()>,
    /// Set while the upstream may still be working for a caller without a session: dropped
    /// then (the caller closed its stream, which in 2026-07-28 is the cancellation), the call
    /// is cancelled upstream. A session's calls are the session's to cancel.
    cancel_on_drop: Option<Arc<dyn Spawner>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(spawner) = self.cancel_on_drop.take() {
            let (link, uid) = (self.link.clone(), self.uid);
            spawner.spawn(boxed(
                async move { link.cancel(uid, "the client closed its stream").await },
            ));
        }
    }
}

impl Call {
    /// The next item for the client; `None` after the answer. Each state's step says what to
    /// give the client, or (none) to take the next step.
    pub(super) async fn next(&mut self) -> Option<Relayed> {
        loop {
            let step = match std::mem::replace(&mut self.state, CallState::Done) {
                CallState::Done => return None,
                CallState::Start => self.start().await,
                CallState::Running(run) => self.running(run).await,
                CallState::Ending(run, result) => self.ending(run, result).await,
                CallState::Asking(a) => self.asking(a).await,
                CallState::Connecting(c) => self.connecting(c).await,
            };
            if step.is_some() {
                return step;
            }
        }
    }

    /// Opens (or reuses) the link and sends the request.
    async fn start(&mut self) -> Option<Relayed> {
        let fed = self.fed.clone();
        let sid = self.sid.as_deref();
        let timeout = fed.timeout_of(&self.up.def);
        self.attempt += 1;
        let link = match fed
            .link_for(
                self.session.as_deref(),
                &self.up,
                self.caller.as_deref(),
                self.token.as_deref(),
            )
            .await
        {
            Ok(l) => l,
            Err(LinkError::NeedsConsent) => return self.consent().await,
            Err(LinkError::Rpc(e)) => return Some(Relayed::Answer(Err(e))),
        };
        link.present(self.token.as_deref());
        // An upstream may send the requests of a call on its standalone stream: a
        // shared link listens there once its caller can be asked (where that work
        // may outlive the request: not in a Worker).
        if self.asks && sid.is_none() && !link.is_listening() && fed.net.spawner.waits_across_requests() {
            fed.listen(&link, &self.up, None);
        }
        // 2026-07-28 has no resources/subscribe: the link's listen stream watches.
        if let (true, Some(on)) = (link.is_stateless(), self.method.subscribes()) {
            if let Some(uri) = self.params["uri"].as_str() {
                link.watch(uri, on);
                return Some(Relayed::Answer(Ok(Json("{}".into()))));
            }
        }
        let (tx, rx) = crate::upstream::sink(fed.net.max_queue);
        let (stop_tx, stop) = unbounded::<()>();
        let uid = link.next_id();
        if let Some(s) = sid {
            fed.links
                .call_started(s, self.client_id.clone(), (link.clone(), uid, stop_tx.clone()));
            // 2026-07-28 has no logging/setLevel: the session's level goes along.
            if let Some(level) = self.session.as_ref().and_then(|s| s.log_level) {
                if link.is_stateless() {
                    let mut p = (*self.params).clone();
                    if let Some(m) = p.as_object_mut() {
                        let meta = m.entry("_meta").or_insert_with(|| json!({}));
                        if let Some(meta) = meta.as_object_mut() {
                            meta.insert(crate::proto::meta::LOG_LEVEL.into(), json!(level));
                        }
                    }
                    self.params = Arc::new(p);
                }
            }
        }
        // `timeout` is an idle timeout, started again by every message of the call;
        // `call_max_ms` bounds the whole call.
        let max = fed.settings.call_max_ms.max(timeout);
        let (l, method, params) = (link.clone(), self.method, self.params.clone());
        let headers = self.headers.clone();
        let call = boxed(async move {
            l.request_with_id(uid, method, Some(&params), Some(&tx), max, headers)
                .await
        });
        self.state = CallState::Running(Running {
            link,
            uid,
            call: call.fuse(),
            rx,
            stop,
            _stop_open: stop_tx,
            cancel_on_drop: sid.is_none().then(|| fed.net.spawner.clone()),
        });
        None
    }

    /// Waits for what the upstream says next, or the call's end.
    async fn running(&mut self, mut run: Running) -> Option<Relayed> {
        let fed = self.fed.clone();
        let sid = self.sid.as_deref();
        let timeout = fed.timeout_of(&self.up.def);
        let mut idle = fed.net.clock.sleep(std::time::Duration::from_millis(timeout)).fuse();
        let next = futures::select_biased! {
            r = &mut run.call => Err(r),
            m = run.rx.next() => Ok(m),
            _ = run.stop.next() => Err(Err(UpstreamError::Closed)),
            _ = idle => Err(Err(UpstreamError::Timeout(timeout))),
        };
        match next {
            // The upstream closed the call's stream and will be asked again: the
            // client may be told to poll likewise.
            Ok(Some(Said::Paused { retry_ms })) => {
                self.state = CallState::Running(run);
                return Some(Relayed::Paused { retry_ms });
            }
            Ok(Some(Said::Message(m))) => {
                if let Some(id) = ask_id(&m).filter(|_| self.asks) {
                    let ask = Ask {
                        request: json!({"method": m["method"], "params": m.get("params").cloned().unwrap_or(json!({}))}),
                        link: run.link.clone(),
                        id,
                        call_uid: run.uid,
                    };
                    self.state = CallState::Running(run);
                    return Some(Relayed::Ask(ask));
                }
                let out = fed.rewrite(sid, &run.link, &self.up, m).await;
                self.state = CallState::Running(run);
                if let Some(v) = out {
                    return Some(Relayed::Message(Json(v.to_string())));
                }
            }
            // Every sender is gone: the call has ended; its answer is next.
            Ok(None) => self.state = CallState::Running(run),
            Err(result) => {
                if matches!(result, Err(UpstreamError::Timeout(_))) {
                    // The upstream may still be working on it: tell it to stop.
                    run.link.cancel(run.uid, "timed out at the gateway").await;
                }
                self.state = CallState::Ending(run, result);
            }
        }
        None
    }

    /// The upstream is done: what it said before the answer, then the answer (or another round
    /// of input for a 2026-07-28 upstream, or one more try on a fresh session).
    async fn ending(&mut self, mut run: Running, result: Result<Answer, UpstreamError>) -> Option<Relayed> {
        let fed = self.fed.clone();
        let sid = self.sid.as_deref();
        // The upstream is done with it.
        run.cancel_on_drop = None;
        while let Ok(said) = run.rx.try_recv() {
            let Said::Message(m) = said else { continue };
            if let Some(v) = fed.rewrite(sid, &run.link, &self.up, m).await {
                self.state = CallState::Ending(run, result);
                return Some(Relayed::Message(Json(v.to_string())));
            }
        }
        if let Some(s) = sid {
            fed.links.call_ended(s, &self.client_id);
        }
        match result {
            Ok(answer) => {
                let outcome = answer.outcome();
                if outcome.is_ok() {
                    if let (Some(on), Some(uri)) = (self.method.subscribes(), self.params["uri"].as_str()) {
                        run.link.watch(uri, on);
                    }
                }
                if let Ok(result) = &outcome {
                    if run.link.is_stateless() && is_input_required(result) {
                        let Some(s) = sid else {
                            let (result, upstream) = (result.clone(), self.up.id.clone());
                            return Some(Relayed::Input { result, upstream });
                        };
                        self.rounds += 1;
                        match ask_client(&fed, s, result, self.rounds) {
                            Ok(a) => self.state = CallState::Asking(a),
                            Err(e) => return Some(Relayed::Answer(Err(e))),
                        }
                        return None;
                    }
                }
                return Some(Relayed::Answer(outcome));
            }
            // The upstream forgot the session (it restarted) or the connection failed
            // before the request got through: once more on a fresh session.
            Err(UpstreamError::SessionGone | UpstreamError::Unreachable(_)) if self.attempt == 1 => {
                self.state = CallState::Start;
            }
            // The caller's authorization was dropped while the link was open.
            Err(UpstreamError::NeedsConsent) => return self.consent().await,
            Err(e) => {
                let callers_own = matches!(e, UpstreamError::Unauthorized(_))
                    && self.up.def.auth.as_ref().is_some_and(|a| a.per_user());
                if !callers_own {
                    fed.record_failure(&self.up.id, &e);
                }
                return Some(Relayed::Answer(Err(upstream_error(&self.up.def.name, &e))));
            }
        }
        None
    }

    /// A 2026-07-28 upstream's input requests put to the session's client; with every answer
    /// in, the request again.
    async fn asking(&mut self, mut a: Asking) -> Option<Relayed> {
        let fed = self.fed.clone();
        let timeout = fed.timeout_of(&self.up.def);
        if let Some(m) = a.queue.pop() {
            self.state = CallState::Asking(a);
            return Some(Relayed::Message(Json(m.to_string())));
        }
        if let Some(elicitation) = a.consent.take_if(|_| a.want.is_empty()) {
            let accepted = a.got.get(CONNECT_KEY).and_then(|r| r["action"].as_str()) == Some("accept");
            if !accepted {
                return Some(Relayed::Answer(Err(url_elicitation_required(
                    &self.up.def.name,
                    elicitation,
                ))));
            }
            let until_ms = fed.now().saturating_add(fed.settings.call_max_ms.max(timeout));
            self.state = CallState::Connecting(Connecting {
                elicitation: elicitation["elicitationId"].as_str().unwrap_or_default().to_string(),
                until_ms,
                asked_ms: self.consent_asked_ms,
            });
            return None;
        }
        if a.want.is_empty() {
            // Every answer is in: the same request again, with them.
            let mut p = (*self.params).clone();
            if let Some(m) = p.as_object_mut() {
                m.insert("inputResponses".into(), Value::Object(std::mem::take(&mut a.got)));
                match a.state.take() {
                    Some(state) => m.insert("requestState".into(), state),
                    None => m.remove("requestState"),
                };
            }
            self.params = Arc::new(p);
            self.attempt = 0;
            self.state = CallState::Start;
            return None;
        }
        // People answer at their own pace: the whole call's bound, not the idle one.
        let wait = fed.settings.call_max_ms.max(timeout);
        let mut idle = fed.net.clock.sleep(std::time::Duration::from_millis(wait)).fuse();
        let reply = futures::select_biased! {
            r = a.rx.next() => r,
            _ = idle => None,
        };
        let Some(reply) = reply else {
            let e = RpcError::internal("the client did not answer the upstream's input requests in time");
            return Some(Relayed::Answer(Err(e)));
        };
        let key = reply["id"].as_str().unwrap_or_default().to_string();
        let Some(at) = a.want.iter().position(|k| *k == key) else {
            self.state = CallState::Asking(a);
            return None;
        };
        a.want.swap_remove(at);
        match reply.get("result") {
            Some(r) => {
                a.got.insert(key, r.clone());
            }
            None => {
                let why = reply["error"]["message"].as_str().unwrap_or("an error");
                let e = RpcError::internal(format!("the client refused the upstream's input request: {why}"));
                return Some(Relayed::Answer(Err(e)));
            }
        }
        self.state = CallState::Asking(a);
        None
    }
}

impl Call {
    /// The caller has not authorized the gateway at this upstream (which acts for each
    /// caller): it is sent to the gateway's connect page. A session's client that takes URL
    /// elicitations is asked in the call, which goes on once the connection is made; a
    /// 2026-07-28 client gets `input_required` with that elicitation (its retry finds the
    /// connection); any other gets -32042 with the link.
    async fn consent(&mut self) -> Option<Relayed> {
        let fed = self.fed.clone();
        let name = self.up.def.name.clone();
        self.consents += 1;
        self.consent_asked_ms = fed.now();
        if self.consents > 2 {
            let e = RpcError::internal(format!(
                "upstream '{name}' still refuses the authorization just given; try again later"
            ));
            return Some(Relayed::Answer(Err(e)));
        }
        let subject = self.caller.clone().unwrap_or_default();
        let ticket = match fed.net.vault.ticket(&subject, &self.up.id).await {
            Ok(t) => t,
            Err(e) => {
                let e = RpcError::internal(format!(
                    "upstream '{name}' needs your authorization, and no link to give it could be made: {e}"
                ));
                return Some(Relayed::Answer(Err(e)));
            }
        };
        if self.base.is_empty() {
            let e = RpcError::internal(format!(
                "upstream '{name}' needs your authorization first, and this transport has no web address for the gateway's connect page: set MCPGW_PUBLIC_URL to the URL of an `mcpgw serve` on the same database, then open <that URL>/oauth/connect/{ticket}"
            ));
            return Some(Relayed::Answer(Err(e)));
        }
        let elicitation = json!({
            "mode": "url",
            "elicitationId": ticket,
            "url": format!("{}/oauth/connect/{ticket}", self.base.trim_end_matches('/')),
            "message": format!("Authorize the gateway to use '{name}' on your behalf: open the link and sign in there."),
        });
        let takes_url = self.session.as_ref().is_some_and(|s| {
            s.client_capabilities
                .get("elicitation")
                .and_then(|e| e.get("url"))
                .is_some_and(|u| !u.is_null())
        });
        if let (Some(sid), true) = (self.sid.clone(), takes_url) {
            let ask =
                json!({"inputRequests": {CONNECT_KEY: {"method": ServerMethod::Elicit.name(), "params": elicitation}}});
            return match ask_client(&fed, &sid, &Json(ask.to_string()), 1) {
                Ok(mut a) => {
                    a.consent = Some(elicitation);
                    self.state = CallState::Asking(a);
                    None
                }
                Err(e) => Some(Relayed::Answer(Err(e))),
            };
        }
        if self.stateless {
            if self.asks {
                let result = json!({"inputRequests": {CONNECT_KEY: {"method": ServerMethod::Elicit.name(), "params": elicitation}}});
                return Some(Relayed::Input {
                    result: Json(result.to_string()),
                    upstream: self.up.id.clone(),
                });
            }
            let e = RpcError::invalid_request(format!(
                "upstream '{name}' needs your authorization first: open {}",
                elicitation["url"].as_str().unwrap_or_default()
            ));
            return Some(Relayed::Answer(Err(e)));
        }
        Some(Relayed::Answer(Err(url_elicitation_required(&name, elicitation))))
    }

    /// Waits for the caller's connection (bounded by the call's limit), then tells the client
    /// the elicitation is complete and sends the request again.
    async fn connecting(&mut self, c: Connecting) -> Option<Relayed> {
        let fed = self.fed.clone();
        let subject = self.caller.clone().unwrap_or_default();
        if fed.net.vault.connected_since(&subject, &self.up.id, c.asked_ms).await {
            self.attempt = 0;
            self.state = CallState::Start;
            let note = crate::proto::jsonrpc::notification(
                ServerMethod::ElicitationComplete.name(),
                Some(json!({"elicitationId": c.elicitation})),
            );
            return Some(Relayed::Message(Json::from_value(&note)));
        }
        if fed.now() >= c.until_ms {
            let e = RpcError::internal(format!(
                "the authorization for upstream '{}' was not completed in time",
                self.up.def.name
            ));
            return Some(Relayed::Answer(Err(e)));
        }
        fed.net
            .clock
            .sleep(std::time::Duration::from_millis(CONNECT_POLL_MS))
            .await;
        self.state = CallState::Connecting(c);
        None
    }
}

/// The -32042 error (2025-11-25) sending the caller to connect upstream `name`.
fn url_elicitation_required(name: &str, elicitation: Value) -> RpcError {
    RpcError::new(
        crate::proto::jsonrpc::URL_ELICITATION_REQUIRED,
        format!("Upstream '{name}' needs your authorization first"),
    )
    .with_data(json!({"elicitations": [elicitation]}))
}

/// Sends the `inputRequests` of a 2026-07-28 upstream's `input_required` (round `round` of its
/// call) to session `sid`'s client as requests of its own (their answers come back by the
/// relay, keyed by input key).
fn ask_client(fed: &Federation, sid: &str, result: &Json, round: u32) -> Result<Asking, RpcError> {
    if round > MAX_ROUNDS {
        return Err(RpcError::internal(format!(
            "the upstream asked for input more than {MAX_ROUNDS} times in one call"
        )));
    }
    let v: Value = serde_json::from_str(&result.0).map_err(|e| RpcError::internal(e.to_string()))?;
    let requests = v["inputRequests"].as_object().cloned().unwrap_or_default();
    let (tx, rx) = unbounded::<Value>();
    let back = Back::Round(tx);
    let key = next_round_key();
    let mut queue = Vec::new();
    let mut want = Vec::new();
    for (k, r) in requests {
        let msg = json!({"jsonrpc": "2.0", "id": k, "method": r["method"], "params": r.get("params").cloned().unwrap_or(json!({}))});
        if let Rewrite::Deliver(m) = fed
            .links
            .asked(sid, |asked| fed.relay.to_client(asked, &back, key, msg))
        {
            queue.push(m);
            want.push(k);
        }
    }
    queue.reverse();
    Ok(Asking {
        rx,
        queue,
        want,
        got: serde_json::Map::new(),
        state: v.get("requestState").filter(|s| s.is_string()).cloned(),
        consent: None,
    })
}

/// A key telling one round's requests apart from every link's in the relay.
fn next_round_key() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(usize::MAX / 2);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}
