//! Multi round-trip requests (2026-07-28) in front of session-era upstreams. Such an upstream
//! asks its client (sampling, elicitation, roots) in the middle of a call; a stateless client
//! can only be asked between requests. So the call is parked here, still running upstream, and
//! the client gets `input_required` with the upstream's requests and a sealed `requestState`.
//! Its retry brings `inputResponses`: they go back to the upstream under the upstream's own ids
//! and the same call goes on, for as many rounds as the upstream asks.
//!
//! `requestState` is `<park id>.<AES-256-GCM sealed JSON>`, the sealed part binding the park,
//! the round, the caller's subject, a digest of the request and an expiry: a retry that was
//! tampered with, comes from another subject, names another request, is late or was already
//! used is refused with -32602. A call parked past its expiry is cancelled upstream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use futures::{stream, FutureExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::Digest;

use super::{stateless, Event};
use crate::federation::{Ask, Relayed};
use crate::platform::{boxed, boxed_stream, BoxStream, MaybeSend};
use crate::ports::{Clock, Ids, Spawner};
use crate::proto::jsonrpc::{Json, RpcError};
use crate::proto::logging::LogLevel;
use crate::proto::meta;
use crate::proto::method::{Method, ServerMethod};
use crate::registry::seal::{self, Sealer};

/// What ties a request to the state it may present: who asks, and what.
pub(crate) struct Binding {
    /// The caller's subject ("" when auth is off).
    pub subject: String,
    /// A digest of the method, the endpoint and the request's parameters (without `_meta`,
    /// `inputResponses` and `requestState`).
    pub digest: String,
    /// The capabilities the request declared.
    pub capabilities: Value,
}

impl Binding {
    /// The binding of a request `method` with `params` on endpoint `scope` by `subject`.
    pub fn of(subject: &str, scope: &str, method: &str, params: &Map<String, Value>, capabilities: &Value) -> Self {
        let mut salient = params.clone();
        for k in ["_meta", "inputResponses", "requestState"] {
            salient.remove(k);
        }
        // serde_json's maps are ordered by key: the text is canonical.
        let text = format!("{method}\n{scope}\n{}", Value::Object(salient));
        let digest = sha2::Sha256::digest(text.as_bytes());
        Self {
            subject: subject.to_string(),
            digest: digest.iter().map(|b| format!("{b:02x}")).collect(),
            capabilities: capabilities.clone(),
        }
    }
}

impl Binding {
    /// -32021 naming the capabilities `asks` need that the request did not declare, if any.
    fn undeclared(&self, asks: &[Ask]) -> Option<RpcError> {
        let mut missing: Vec<&str> = asks
            .iter()
            .map(|a| capability_of(a.method()))
            .filter(|c| self.capabilities.get(*c).is_none())
            .collect();
        missing.sort_unstable();
        missing.dedup();
        (!missing.is_empty()).then(|| meta::missing_capability(&missing))
    }
}

/// What the sealed part of `requestState` says.
#[derive(Serialize, Deserialize)]
struct State {
    /// The park.
    p: String,
    /// The round within it.
    r: u64,
    /// The subject.
    s: String,
    /// The request's digest.
    d: String,
    /// Expiry, ms since the epoch.
    e: u64,
}

/// A call waiting for its client's answers.
struct Parked {
    items: BoxStream<'static, Relayed>,
    /// Key → the upstream request it stands for.
    asks: Vec<(String, Ask)>,
    round: u64,
    subject: String,
    digest: String,
}

/// Where a stateless request that may be asked for input is to be served, for a runtime that
/// must send its retry to the instance holding the call (the edge: one Durable Object per park).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Park {
    /// Anywhere new: it may park a call (the route is the caller's to choose).
    New,
    /// Where its `requestState` was issued: this route.
    At(String),
}

/// The park of a stateless request `req` to the endpoint of `server`: none unless it is a
/// `tools/call`, `prompts/get` or `resources/read` that carries a `requestState`, or declares a
/// capability an upstream could need and names a member that is not known to be local; or a
/// `subscriptions/listen` that hears upstreams through links living as long as its stream (where
/// requests may not share I/O, such a stream needs a place of its own).
pub(crate) fn park_of(
    req: &crate::proto::jsonrpc::Request,
    snap: &crate::registry::Snapshot,
    server: Option<&crate::registry::Server>,
) -> Option<Park> {
    let p = req.params.as_ref()?.as_object()?;
    let method = Method::parse(&req.method);
    if method == Some(Method::SubscriptionsListen) {
        let filter = super::stateless::ListenFilter::of(p.get("notifications"));
        return (!super::stateless::upstreams_heard(&filter, snap, server).is_empty()).then_some(Park::New);
    }
    // Whether a member's upstream may ask mid-call (a 2026-07-28 one answers input_required).
    let asks = |f: &Option<crate::registry::Federated>| {
        f.as_ref()
            .is_some_and(|f| f.upstream.era() != Some(crate::proto::version::Era::Stateless))
    };
    let member = match method? {
        Method::ToolsCall => p.get("name")?.as_str().map(|n| snap.tool(n).map(|t| asks(&t.fed))),
        Method::PromptsGet => p.get("name")?.as_str().map(|n| snap.prompt(n).map(|x| asks(&x.fed))),
        Method::ResourcesRead => p.get("uri")?.as_str().map(|u| {
            let found = crate::registry::uris::resolve(snap, server.map(|s| s.id.as_str()), u, |r| {
                crate::registry::uris::member_of(server, r)
            });
            found.map(|f| asks(&f.resource.fed))
        }),
        _ => return None,
    }?;
    if let Some(state) = p.get("requestState").and_then(Value::as_str) {
        let park = state.split_once('.').map_or(state, |(park, _)| park);
        let route = park.split_once('~').map(|(route, _)| route)?;
        return Some(Park::At(route.to_string()));
    }
    let caps = p.get("_meta")?.get(meta::CLIENT_CAPABILITIES)?;
    let may_be_asked = ["sampling", "elicitation", "roots"]
        .iter()
        .any(|c| caps.get(*c).is_some());
    // A local member (or one of a 2026-07-28 upstream) never asks; an unknown one may be a
    // template's.
    (may_be_asked && member != Some(false)).then_some(Park::New)
}

/// After a retry: the call goes on, or the client is asked (again).
pub(crate) enum Step {
    /// The answers went upstream; the rest of the call follows.
    Resume(BoxStream<'static, Relayed>),
    /// An `input_required` result (without `resultType`, which the caller adds).
    Input(Json),
}

/// The parked calls of one gateway.
pub(crate) struct Mrtr {
    sealer: Sealer,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn Ids>,
    spawner: Arc<dyn Spawner>,
    /// How long a parked call waits for the retry.
    ttl_ms: u64,
    parked: Mutex<HashMap<String, Parked>>,
    /// What park ids start with (`<route>~`), where a runtime routes retries by it.
    route: Mutex<Option<String>>,
    /// Input request keys handed out so far.
    keys: std::sync::atomic::AtomicU64,
    me: Weak<Mrtr>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn refused(why: &str) -> RpcError {
    RpcError::invalid_params(format!("Invalid params: requestState {why}"))
}

/// The client capability an upstream request needs.
fn capability_of(method: Option<ServerMethod>) -> &'static str {
    match method {
        Some(ServerMethod::CreateMessage) => "sampling",
        Some(ServerMethod::Elicit) => "elicitation",
        _ => "roots",
    }
}

impl Mrtr {
    /// Parking sealed with `sealer` (the gateway's encryption key; a random one without it).
    #[cfg_attr(target_family = "wasm", allow(clippy::arc_with_non_send_sync))]
    pub fn new(
        sealer: Sealer,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn Ids>,
        spawner: Arc<dyn Spawner>,
        ttl_ms: u64,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            sealer,
            clock,
            ids,
            spawner,
            ttl_ms,
            parked: Mutex::new(HashMap::new()),
            route: Mutex::new(None),
            keys: std::sync::atomic::AtomicU64::new(0),
            me: me.clone(),
        })
    }

    /// Park ids from now on start with `route` (see [`Park::At`]).
    pub fn route_under(&self, route: &str) {
        *lock(&self.route) = Some(route.to_string());
    }

    /// How many calls are parked.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        lock(&self.parked).len()
    }

    /// The upstream asked during a call (`first`, and whatever else it has asked already):
    /// parks the call and answers with `input_required`; or, when the client did not declare
    /// a capability a request needs, refuses them upstream and answers -32021.
    pub async fn park(
        &self,
        binding: &Binding,
        first: Ask,
        mut items: BoxStream<'static, Relayed>,
    ) -> Result<Json, RpcError> {
        let mut asks = vec![first];
        // Requests the upstream sent together are asked together.
        let mut held = None;
        while let Some(next) = items.next().now_or_never() {
            match next {
                Some(Relayed::Ask(a)) => asks.push(a),
                Some(other) => {
                    held = Some(other);
                    break;
                }
                None => break,
            }
        }
        if let Some(item) = held {
            items = boxed_stream(stream::iter([item]).chain(items));
        }
        if let Some(e) = binding.undeclared(&asks) {
            for a in &asks {
                a.abandon("the client did not declare the capability this needs").await;
            }
            return Err(e);
        }
        let park = match lock(&self.route).as_deref() {
            Some(r) => format!("{r}~{}", self.ids.new_id()),
            None => self.ids.new_id(),
        };
        let mut parked = Parked {
            items,
            asks: Vec::new(),
            round: 0,
            subject: binding.subject.clone(),
            digest: binding.digest.clone(),
        };
        for a in asks {
            // Keys differ across rounds and calls too, so a stale answer cannot pass for a new one.
            let n = self.keys.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            parked.asks.push((format!("input-{n}"), a));
        }
        Ok(self.hold(park, parked).await)
    }

    /// Stores `parked` for its next round and writes the `input_required` result for it.
    async fn hold(&self, park: String, mut parked: Parked) -> Json {
        parked.round += 1;
        let expires = self.clock.now_ms().saturating_add(self.ttl_ms);
        let state = State {
            p: park.clone(),
            r: parked.round,
            s: parked.subject.clone(),
            d: parked.digest.clone(),
            e: expires,
        };
        let sealed = self
            .sealer
            .seal(
                &serde_json::to_string(&state).unwrap_or_default(),
                seal::nonce(self.ids.as_ref()),
            )
            .await
            .unwrap_or_default();
        let requests: Map<String, Value> = parked
            .asks
            .iter()
            .map(|(k, a)| (k.clone(), a.request.clone()))
            .collect();
        let round = parked.round;
        lock(&self.parked).insert(park.clone(), parked);
        // Abandoned: cancelled upstream once the state has expired.
        if let Some(me) = self.me.upgrade() {
            let wait = std::time::Duration::from_millis(self.ttl_ms);
            self.spawner.spawn(boxed(async move {
                me.clock.sleep(wait).await;
                let gone = {
                    let mut p = lock(&me.parked);
                    match p.get(&park) {
                        Some(x) if x.round == round => p.remove(&park),
                        _ => None,
                    }
                };
                if let Some(p) = gone {
                    for (_, a) in &p.asks {
                        a.abandon("the client did not answer in time").await;
                    }
                }
            }));
        }
        let result = json!({"inputRequests": requests, "requestState": format!("{}.{sealed}", state.p)});
        Json::from_value(&result)
    }

    /// A retry carrying `requestState` and `inputResponses`: checks the state against the
    /// request, sends the answers upstream and resumes the call; asks again for any request
    /// left unanswered.
    pub async fn resume(&self, binding: &Binding, params: &Map<String, Value>) -> Result<Step, RpcError> {
        let text = params
            .get("requestState")
            .and_then(Value::as_str)
            .ok_or_else(|| refused("must be a string"))?;
        let (park, sealed) = text
            .split_once('.')
            .ok_or_else(|| refused("is not one this gateway issued"))?;
        let opened = if sealed.starts_with("enc:") {
            self.sealer.open(sealed).await.ok()
        } else {
            None
        };
        let state: State = opened
            .and_then(|t| serde_json::from_str(&t).ok())
            .filter(|s: &State| s.p == park)
            .ok_or_else(|| refused("is not one this gateway issued (or was altered)"))?;
        if self.clock.now_ms() >= state.e {
            return Err(refused("has expired"));
        }
        if state.s != binding.subject {
            return Err(refused("was issued to another caller"));
        }
        if state.d != binding.digest {
            return Err(refused("was issued for another request"));
        }
        let responses = match params.get("inputResponses") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => {
                return Err(RpcError::invalid_params(
                    "Invalid params: inputResponses must be an object",
                ))
            }
        };
        let mut parked = {
            let mut all = lock(&self.parked);
            match all.get(park) {
                Some(p) if p.round == state.r => all.remove(park),
                _ => None,
            }
        }
        .ok_or_else(|| refused("was already used, or its call has ended"))?;
        let mut left = Vec::new();
        for (key, ask) in std::mem::take(&mut parked.asks) {
            match responses.get(&key) {
                Some(answer) => ask.answer(Ok(answer.clone())).await,
                None => left.push((key, ask)),
            }
        }
        if left.is_empty() {
            return Ok(Step::Resume(parked.items));
        }
        // What is still needed is asked for again, under a new state.
        parked.asks = left;
        Ok(Step::Input(self.hold(park.to_string(), parked).await))
    }
}

/// A relayed call as the client's answer stream: its messages (none when `quiet`; for a
/// stateless request only what belongs on its stream, `level` its log level), then the answer
/// `respond` makes (its flag: an `input_required` result). An upstream request of a request
/// with a `binding` parks the call where `mrtr` is (-32021 if the request did not declare the
/// capability it needs); otherwise it is refused upstream.
pub(super) fn events<F, B>(
    items: BoxStream<'static, Relayed>,
    quiet: bool,
    level: Option<Option<LogLevel>>,
    binding: B,
    mrtr: Option<Arc<Mrtr>>,
    respond: F,
) -> BoxStream<'static, Event>
where
    F: Fn(Result<Json, RpcError>, bool) -> Event + MaybeSend + 'static,
    B: FnOnce() -> Option<Binding> + MaybeSend + 'static,
{
    boxed_stream(stream::unfold(
        Some((items, binding, mrtr, respond)),
        move |st| async move {
            let (mut items, binding, mrtr, respond) = st?;
            loop {
                let event = match items.next().await? {
                    // A session's client may poll as the upstream asked (a stateless request's
                    // stream is its call: it stays open).
                    Relayed::Paused { retry_ms } if !quiet && level.is_none() => Some(Event::Poll { retry_ms }),
                    Relayed::Paused { .. } => None,
                    Relayed::Message(_) if quiet => None,
                    Relayed::Message(m) => match level {
                        Some(min) => stateless::on_request_stream(m, min).map(Event::Message),
                        None => Some(Event::Message(m)),
                    },
                    Relayed::Answer(r) => return Some((respond(r, false), None)),
                    // A 2026-07-28 upstream asks for input: a stateless client answers it itself.
                    Relayed::Input { result, .. } if level.is_some() => return Some((respond(Ok(result), true), None)),
                    Relayed::Input { .. } => {
                        let e = RpcError::internal(
                            "the upstream needs input from the client (2026-07-28 input_required), which this gateway does not yet relay to session-era clients",
                        );
                        return Some((respond(Err(e), false), None));
                    }
                    Relayed::Ask(a) => {
                        let binding = binding();
                        if let (Some(b), Some(m)) = (&binding, &mrtr) {
                            let r = m.park(b, a, items).await;
                            let input = r.is_ok();
                            return Some((respond(r, input), None));
                        }
                        // No parking here (the edge routes the requests that may need it to a
                        // Durable Object): an undeclared capability is still the client's -32021.
                        let asks = [a];
                        let e = binding.and_then(|b| b.undeclared(&asks)).unwrap_or_else(|| {
                            RpcError::internal("the upstream asked for input, which cannot be relayed here")
                        });
                        asks[0].abandon("no client to ask").await;
                        return Some((respond(Err(e), false), None));
                    }
                };
                if let Some(e) = event {
                    return Some((e, Some((items, binding, mrtr, respond))));
                }
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{ManualClock, QueueSpawner, SeqIds};

    fn mrtr(clock: Arc<ManualClock>) -> Arc<Mrtr> {
        let ids = Arc::new(SeqIds::default());
        Mrtr::new(
            Sealer::random(
                crate::registry::seal::Purpose::RequestState,
                ids.as_ref(),
                Arc::new(crate::security::RustCrypto),
            ),
            clock,
            ids,
            Arc::new(QueueSpawner::default()),
            1000,
        )
    }

    fn binding(subject: &str, args: Value) -> Binding {
        let mut p = Map::new();
        p.insert("name".into(), json!("t"));
        p.insert("arguments".into(), args);
        p.insert("_meta".into(), json!({"x": 1}));
        Binding::of(subject, "", "tools/call", &p, &json!({"sampling": {}}))
    }

    async fn parked(m: &Mrtr, b: &Binding) -> String {
        let p = Parked {
            items: boxed_stream(stream::empty()),
            asks: Vec::new(),
            round: 0,
            subject: b.subject.clone(),
            digest: b.digest.clone(),
        };
        let out = m.hold("park1".into(), p).await;
        let v: Value = serde_json::from_str(&out.0).expect("json");
        v["requestState"].as_str().expect("a state").to_string()
    }

    fn retry(state: &str) -> Map<String, Value> {
        let mut p = Map::new();
        p.insert("requestState".into(), json!(state));
        p.insert("inputResponses".into(), json!({}));
        p
    }

    async fn refusal(m: &Mrtr, b: &Binding, state: &str) -> String {
        match m.resume(b, &retry(state)).await {
            Err(e) => {
                assert_eq!(e.code, -32602);
                e.message
            }
            Ok(_) => panic!("state {state} was accepted"),
        }
    }

    #[test]
    fn the_digest_ignores_meta_and_the_retry_fields_but_not_the_arguments() {
        let a = binding("me", json!({"x": 1}));
        let mut p = Map::new();
        p.insert("arguments".into(), json!({"x": 1}));
        p.insert("name".into(), json!("t"));
        p.insert("requestState".into(), json!("s"));
        p.insert("inputResponses".into(), json!({"k": 1}));
        assert_eq!(Binding::of("me", "", "tools/call", &p, &json!({})).digest, a.digest);
        assert_ne!(binding("me", json!({"x": 2})).digest, a.digest);
        assert_ne!(Binding::of("me", "srv", "tools/call", &p, &json!({})).digest, a.digest);
    }

    #[test]
    fn a_state_is_refused_when_altered_foreign_for_another_request_expired_or_used() {
        futures::executor::block_on(refusals());
    }

    async fn refusals() {
        let clock = Arc::new(ManualClock::at(1_000_000));
        let m = mrtr(clock.clone());
        let b = binding("alice", json!({"x": 1}));
        let state = parked(&m, &b).await;
        assert_eq!(m.waiting(), 1);

        // Altered: one character of the sealed part flipped; another park id in front.
        let (park, sealed) = state.split_once('.').unwrap();
        let mut bytes: Vec<char> = sealed.chars().collect();
        let i = bytes.len() - 5;
        bytes[i] = if bytes[i] == 'A' { 'B' } else { 'A' };
        let altered = format!("{park}.{}", bytes.into_iter().collect::<String>());
        assert!(refusal(&m, &b, &altered).await.contains("altered"));
        assert!(refusal(&m, &b, &format!("other.{sealed}")).await.contains("altered"));
        assert!(refusal(&m, &b, "garbage").await.contains("issued"));
        // Sealed under another gateway's key.
        let key = Sealer::from_key_text(
            &"ab".repeat(32),
            crate::registry::seal::Purpose::RequestState,
            Arc::new(crate::security::RustCrypto),
        )
        .expect("key");
        let other = Mrtr::new(
            key,
            clock.clone(),
            Arc::new(SeqIds::default()),
            Arc::new(QueueSpawner::default()),
            1000,
        );
        let foreign_key = parked(&other, &b).await;
        assert!(refusal(&m, &b, &foreign_key).await.contains("altered"));
        // Another subject; another request.
        assert!(refusal(&m, &binding("mallory", json!({"x": 1})), &state)
            .await
            .contains("another caller"));
        assert!(refusal(&m, &binding("alice", json!({"x": 9})), &state)
            .await
            .contains("another request"));
        // The right retry resumes, once.
        assert!(matches!(m.resume(&b, &retry(&state)).await, Ok(Step::Resume(_))));
        assert!(refusal(&m, &b, &state).await.contains("already used"));
        assert_eq!(m.waiting(), 0);

        // Expired.
        let late = parked(&m, &b).await;
        clock.advance(std::time::Duration::from_millis(1000));
        assert!(refusal(&m, &b, &late).await.contains("expired"));
    }
}
