//! What a forwarded call is given and gives: how it goes ([`Forwarding`]), why no link could
//! be had for it ([`LinkError`]), the items of its stream ([`Relayed`]) and an upstream's
//! request it waits on ([`Ask`]).

use std::sync::Arc;

use serde_json::{json, Value};

use super::relay;
use crate::proto::jsonrpc::{Json, RequestId, RpcError};
use crate::proto::method::ServerMethod;
use crate::upstream::Link;

/// How a call is forwarded, besides what it says.
#[derive(Default)]
pub(crate) struct Forwarding {
    /// The upstream's requests are handed to the caller as [`Relayed::Ask`] (not refused).
    pub asks: bool,
    /// Headers for the upstream request (a tool's `Mcp-Param-*`).
    pub headers: http::HeaderMap,
    /// The caller (its subject; none when auth is off): whose credentials an upstream that
    /// acts for each caller gets.
    pub caller: Option<String>,
    /// The token the caller presented to the gateway: what an exchange starts from (it goes
    /// only to the token service or IdP, never to the upstream).
    pub token: Option<String>,
    /// The gateway's public base URL as the caller reaches it: where a connect link points.
    pub base: String,
    /// The caller speaks 2026-07-28 (no -32042 for it; `input_required` instead).
    pub stateless: bool,
}

/// Why no link could be had for a call.
pub(crate) enum LinkError {
    /// The error for the client.
    Rpc(RpcError),
    /// The upstream acts for each caller and this one has not authorized it yet.
    NeedsConsent,
}

impl From<LinkError> for RpcError {
    fn from(e: LinkError) -> Self {
        match e {
            LinkError::Rpc(e) => e,
            LinkError::NeedsConsent => RpcError::internal("the upstream needs the caller's authorization first"),
        }
    }
}

/// One item of a forwarded call, as the client is to get it.
pub(crate) enum Relayed {
    /// A message of the upstream's while the call runs (already rewritten for the client).
    Message(Json),
    /// The upstream's result, or its error; always the last item.
    Answer(Result<Json, RpcError>),
    /// A request of the upstream's (sampling, elicitation, roots) during a call of a client
    /// that can only be asked between requests (2026-07-28): the call waits for its answer.
    Ask(Ask),
    /// The upstream closed the call's stream before its answer and is asked again after
    /// `retry_ms` (SEP-1699): a client's stream may close here and be resumed; the call goes on.
    Paused { retry_ms: u64 },
    /// A 2026-07-28 upstream's `input_required` result (always the last item): the client is
    /// to answer its `inputRequests` and retry, bringing back its `requestState`.
    Input {
        /// The result as the upstream sent it.
        result: Json,
        /// The upstream's id, which the `requestState` must lead back to.
        upstream: String,
    },
}

/// An upstream's request a call waits on, and the way back to the upstream.
pub(crate) struct Ask {
    /// `{"method", "params"}` as the upstream sent them (its id left out).
    pub request: Value,
    pub(super) link: Arc<Link>,
    /// The upstream's id of the request, exactly as sent.
    pub(super) id: RequestId,
    /// The gateway's id of the call waiting on it (to cancel it).
    pub(super) call_uid: u64,
}

impl Ask {
    /// The method asked for.
    pub fn method(&self) -> Option<ServerMethod> {
        ServerMethod::of(&self.request)
    }

    /// Sends the client's result (or an error object) to the upstream under its own id.
    pub async fn answer(&self, outcome: Result<Value, Value>) {
        let _ = self.link.send_raw(relay::reply(&self.id, outcome).to_string()).await;
    }

    /// Nobody will answer: the upstream's request is refused and the call waiting on it is
    /// cancelled upstream.
    pub async fn abandon(&self, reason: &str) {
        // The call first, so that its refused request does not end it as a failure.
        self.link.cancel(self.call_uid, reason).await;
        self.answer(Err(json!({"code": -32603, "message": reason}))).await;
    }
}
