//! The streamable HTTP transport to an upstream: each message a POST whose answer is JSON or an
//! SSE stream (resumed with GET and `Last-Event-ID` when it ends early), and the GET request of
//! the standalone stream.

use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue};

use super::*;

use crate::proto::headers::{LAST_EVENT_ID, MCP_PROTOCOL_VERSION, MCP_SESSION_ID};

pub(super) struct HttpIo {
    pub(super) http: Arc<dyn HttpClient>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) url: String,
    /// The definition's headers, checked once when the link opened.
    pub(super) headers: HeaderMap,
    /// Where the link's OAuth token comes from, when the upstream wants one.
    pub(super) auth: Option<crate::oauth::credential::Credential>,
    pub(super) session: Mutex<Option<HeaderValue>>,
    pub(super) version: Mutex<Option<ProtocolVersion>>,
    pub(super) max_bytes: usize,
    /// The calls in flight (see [`Link::call_sink`]).
    pub(super) calls: CallSinks,
}

pub(super) async fn read_all(resp: InboundResponse, limit: usize) -> Result<Bytes, UpstreamError> {
    let mut body = resp.body;
    let mut buf = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| UpstreamError::Unreachable(e.to_string()))?;
        if buf.len() + chunk.len() > limit {
            return Err(UpstreamError::Protocol(format!("answer larger than {limit} bytes")));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

pub(super) fn content_type(resp: &InboundResponse) -> String {
    resp.headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase()
}

pub(super) fn http_error(e: HttpError) -> UpstreamError {
    match e {
        HttpError::Timeout(ms) => UpstreamError::Timeout(ms),
        // The upstream may have the request: it is not sent again.
        HttpError::Lost(_) => UpstreamError::Closed,
        other => UpstreamError::Unreachable(other.to_string()),
    }
}

/// What a link tells of a token it could not get.
fn vault_error(e: crate::oauth::vault::VaultError) -> UpstreamError {
    match e {
        crate::oauth::vault::VaultError::NotConnected => UpstreamError::NeedsConsent,
        other => UpstreamError::Unauthorized(other.to_string()),
    }
}

impl HttpIo {
    /// Sets the request's `Authorization` from the link's token, when the upstream wants one
    /// (`challenge`: what its last refusal asked for).
    pub(super) async fn authorize(
        &self,
        headers: &mut HeaderMap,
        challenge: Option<&crate::oauth::challenge::BearerChallenge>,
    ) -> Result<(), UpstreamError> {
        self.grant(headers, challenge).await.map_err(vault_error)
    }

    async fn grant(
        &self,
        headers: &mut HeaderMap,
        challenge: Option<&crate::oauth::challenge::BearerChallenge>,
    ) -> Result<(), crate::oauth::vault::VaultError> {
        let Some(credential) = &self.auth else {
            return Ok(());
        };
        // Boxed: discovery and a token request make a large future, needed only for such links.
        let bearer = Box::pin(credential.bearer(&*self.http, &*self.clock, &self.url, challenge)).await?;
        headers.insert(http::header::AUTHORIZATION, bearer);
        Ok(())
    }

    /// Sends a request with the link's token; when the upstream refuses it (401, or 403
    /// `insufficient_scope`), once more with a new token for what its challenge asks.
    pub(super) async fn send_authorized(&self, mut req: OutboundRequest) -> Result<InboundResponse, UpstreamError> {
        use crate::oauth::{discovery::DiscoveryError, grants::GrantError, vault::VaultError};
        match self.grant(&mut req.headers, None).await {
            // An upstream may name its metadata only in its 401: sent without a token, its
            // refusal says where.
            Ok(()) | Err(VaultError::Grant(GrantError::Discovery(DiscoveryError::NoResourceMetadata { .. }))) => {}
            Err(e) => return Err(vault_error(e)),
        }
        let Some(credential) = &self.auth else {
            return self.http.send(req).await.map_err(http_error);
        };
        let again = OutboundRequest {
            method: req.method.clone(),
            url: req.url.clone(),
            headers: req.headers.clone(),
            body: req.body.clone(),
            tls: req.tls.clone(),
        };
        let resp = self.http.send(req).await.map_err(http_error)?;
        let refused = resp.status == http::StatusCode::UNAUTHORIZED || resp.status == http::StatusCode::FORBIDDEN;
        if !refused {
            return Ok(resp);
        }
        let values: Vec<&str> = resp
            .headers
            .get_all(http::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let challenge = crate::oauth::challenge::bearer(values).unwrap_or_default();
        let step_up = challenge.error.as_deref() == Some("insufficient_scope");
        if resp.status == http::StatusCode::FORBIDDEN && !step_up {
            return Ok(resp);
        }
        credential.refused(&self.url);
        let mut again = again;
        self.authorize(&mut again.headers, Some(&challenge)).await?;
        self.http.send(again).await.map_err(http_error)
    }

    /// The headers of a request on this link: the definition's, then the transport's (which
    /// replace a configured header of the same name).
    pub(super) fn headers(&self, accept: &'static str) -> HeaderMap {
        let mut h = HeaderMap::with_capacity(self.headers.len() + 4);
        h.extend(self.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(ACCEPT, HeaderValue::from_static(accept));
        if let Some(s) = self.session.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            h.insert(MCP_SESSION_ID, s);
        }
        if let Some(v) = *self.version.lock().unwrap_or_else(|e| e.into_inner()) {
            h.insert(MCP_PROTOCOL_VERSION, HeaderValue::from_static(v.as_str()));
        }
        h
    }

    /// The headers that end the upstream session (a DELETE), if there is one.
    pub(super) fn end_session(&self) -> Option<HeaderMap> {
        let sid = self.session.lock().unwrap_or_else(|e| e.into_inner()).take()?;
        let mut h = self.headers.clone();
        h.insert(MCP_SESSION_ID, sid);
        Some(h)
    }

    /// The revision the link's requests name in `MCP-Protocol-Version`.
    pub(super) fn set_version(&self, v: Option<ProtocolVersion>) {
        *self.version.lock().unwrap_or_else(|e| e.into_inner()) = v;
    }

    /// POSTs one message; returns its answer if `expect` names a request id, else `None`.
    pub(super) async fn post(
        &self,
        body: String,
        expect: Option<u64>,
        sink: Option<&Sink>,
    ) -> Result<Option<Answer>, UpstreamError> {
        self.post_with(body, expect, sink, HeaderMap::new()).await
    }

    /// [`HttpIo::post`] with `extra` headers (a stateless request's mirrored ones).
    pub(super) async fn post_with(
        &self,
        body: String,
        expect: Option<u64>,
        sink: Option<&Sink>,
        extra: HeaderMap,
    ) -> Result<Option<Answer>, UpstreamError> {
        let had_session = self.session.lock().unwrap_or_else(|e| e.into_inner()).is_some();
        let mut headers = self.headers("application/json, text/event-stream");
        headers.extend(extra);
        let resp = self
            .send_authorized(OutboundRequest {
                method: http::Method::POST,
                url: self.url.clone(),
                headers,
                body: Some(Bytes::from(body)),
                tls: None,
            })
            .await?;
        if !had_session {
            if let Some(s) = resp.headers.get(MCP_SESSION_ID).filter(|v| v.to_str().is_ok()) {
                *self.session.lock().unwrap_or_else(|e| e.into_inner()) = Some(s.clone());
            }
        }
        let status = resp.status;
        if status == http::StatusCode::NOT_FOUND && had_session {
            return Err(UpstreamError::SessionGone);
        }
        if !status.is_success() {
            let challenge = crate::oauth::challenge::bearer(
                resp.headers
                    .get_all(http::header::WWW_AUTHENTICATE)
                    .iter()
                    .filter_map(|v| v.to_str().ok()),
            );
            let text = read_all(resp, 4096).await.unwrap_or_default();
            let text = String::from_utf8_lossy(&text);
            // An upstream that wants OAuth and got no token it takes says so, with where its
            // metadata is.
            if status == http::StatusCode::UNAUTHORIZED || challenge.as_ref().is_some_and(|c| c.error.is_some()) {
                let c = challenge.unwrap_or_default();
                let why = match (&self.auth, c.resource_metadata) {
                    (None, Some(m)) => format!(
                        "HTTP {status}: it asks for an OAuth token (its metadata: {m}); set `auth` on the upstream"
                    ),
                    (None, None) => {
                        format!("HTTP {status}: it asks for credentials; set `auth` or `headers` on the upstream")
                    }
                    (Some(_), _) => format!(
                        "HTTP {status}: it refused the gateway's token{}",
                        c.error.map(|e| format!(" ({e})")).unwrap_or_default()
                    ),
                };
                return Err(UpstreamError::Unauthorized(why));
            }
            // A JSON-RPC error body is the upstream's answer, whatever the status.
            if let (Some(id), Ok(v)) = (expect, serde_json::from_str::<Value>(&text)) {
                // (Or to no id: a refusal read before the request's id, such as -32022.)
                let to = v.get("id").filter(|i| !i.is_null());
                if v.get("error").is_some_and(Value::is_object) && to.is_none_or(|i| i.as_u64() == Some(id)) {
                    return Ok(Some(Answer::Value(v)));
                }
            }
            return Err(UpstreamError::Protocol(format!(
                "HTTP {status}: {}",
                text.chars().take(200).collect::<String>()
            )));
        }
        let Some(id) = expect else {
            return Ok(None);
        };
        if content_type(&resp).starts_with("text/event-stream") {
            return self.read_answer_stream(resp, id, sink).await.map(Some);
        }
        let bytes = read_all(resp, self.max_bytes).await?;
        // A JSON answer may hold several messages, one after another (newline-delimited, as
        // some servers send a call's progress before its response) or in a batch: each one that
        // is not the response goes on to the call, in order.
        let mut found = None;
        for item in serde_json::Deserializer::from_slice(&bytes).into_iter::<Value>() {
            let item = item.map_err(|e| UpstreamError::Protocol(format!("the answer is not JSON: {e}")))?;
            let messages = match item {
                Value::Array(items) => items,
                one => vec![one],
            };
            for m in messages {
                if found.is_none() && m["id"].as_u64() == Some(id) && is_response(&m) {
                    found = Some(m);
                } else if let Some(s) = sink {
                    let _ = s.send(Said::Message(m));
                }
            }
        }
        found
            .map(|v| Some(Answer::Value(v)))
            .ok_or_else(|| UpstreamError::Protocol("the answer is not a response to the request".into()))
    }
    /// Reads a POST's SSE stream until the answer to `id`, passing everything else to `sink`;
    /// an early end is resumed as [`follow`] says (and the call's caller told to poll likewise).
    pub(super) async fn read_answer_stream(
        &self,
        resp: InboundResponse,
        id: u64,
        sink: Option<&Sink>,
    ) -> Result<Answer, UpstreamError> {
        /// Waits for the answer to one request.
        struct Awaiting<'s> {
            id: u64,
            sink: Option<&'s Sink>,
            answer: Option<String>,
        }
        impl follow::Follower for Awaiting<'_> {
            fn message(&mut self, data: String) -> Result<follow::Flow, follow::Ended> {
                // The answer is passed on as text; only the upstream's own messages are
                // parsed (they are rewritten for the client).
                match answer::kind_of(&data) {
                    None => Err(follow::Ended::Invalid("an SSE event is not JSON".into())),
                    Some(answer::Kind::Response(got)) if got == Some(self.id) => {
                        self.answer = Some(data);
                        Ok(follow::Flow::Done)
                    }
                    Some(answer::Kind::Response(_)) => Ok(follow::Flow::More),
                    Some(answer::Kind::Other) => {
                        if let (Some(s), Ok(msg)) = (self.sink, serde_json::from_str::<Value>(&data)) {
                            let _ = s.send(Said::Message(msg));
                        }
                        Ok(follow::Flow::More)
                    }
                }
            }
            fn paused(&mut self, wait_ms: u64) {
                // The call goes on; its client may be asked to poll likewise.
                if let Some(s) = self.sink {
                    let _ = s.send(Said::Paused { retry_ms: wait_ms });
                }
            }
        }
        let mut reader = Awaiting { id, sink, answer: None };
        let resume = |last: String| -> BoxFuture<'_, Result<InboundResponse, HttpError>> {
            Box::pin(async move {
                self.send_authorized(self.get_request(Some(&last)))
                    .await
                    .map_err(|e| HttpError::Lost(e.to_string()))
            })
        };
        match follow::follow(resp, self.max_bytes, &*self.clock, &resume, &mut reader).await {
            Ok(()) => reader.answer.map(Answer::Text).ok_or(UpstreamError::Closed),
            Err(follow::Ended::Closed) => Err(UpstreamError::Closed),
            Err(follow::Ended::Invalid(m)) => Err(UpstreamError::Protocol(m)),
        }
    }

    /// The GET that opens (or, with `last_event_id`, resumes) a stream.
    pub(super) fn get_request(&self, last_event_id: Option<&str>) -> OutboundRequest {
        let mut headers = self.headers("text/event-stream");
        headers.remove(CONTENT_TYPE);
        // An SSE id is one line of text; one with a control character cannot be sent back, and
        // the stream is then reopened from where the upstream chooses.
        if let Some(id) = last_event_id.and_then(|id| HeaderValue::from_str(id).ok()) {
            headers.insert(LAST_EVENT_ID, id);
        }
        OutboundRequest {
            method: http::Method::GET,
            url: self.url.clone(),
            headers,
            body: None,
            tls: None,
        }
    }
}
