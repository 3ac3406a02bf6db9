//! What the stateless era (2026-07-28) adds to a request's answer: the `server/discover` result,
//! `resultType` and the gateway's `serverInfo` on every result, cache hints on the cacheable
//! ones, and the codes that era gives errors. Pure functions over the answer's text; the engine
//! calls them when a request came without a session.

use std::sync::Arc;

use futures::channel::mpsc::UnboundedReceiver;
use futures::{stream, StreamExt};
use serde_json::{json, Map, Value};

use super::Event;
use crate::federation::{Federation, Unwatch};
use crate::platform::{boxed_stream, BoxStream};
use crate::ports::Clock;
use crate::proto::jsonrpc::Request;
use crate::proto::jsonrpc::RequestId;
use crate::registry::uris;
use crate::registry::{changed_kinds, Registry, Server, Snapshot, Upstream};
use crate::session::hub::OnDrop;
use crate::session::Sessions;

use crate::proto::jsonrpc::{self, Json, RpcError};
use crate::proto::logging::LogLevel;
use crate::proto::meta::{self, RequestMeta};
use crate::proto::method::{Listed, Method, ServerMethod};
use crate::proto::version::ProtocolVersion;

/// A stateless request's own context: its metadata (its revision checked as served).
#[derive(Debug)]
pub(crate) struct StatelessRequest {
    /// What `params._meta` said.
    pub meta: RequestMeta,
}

/// Whether a shared cache may keep an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CacheScope {
    /// The same for every caller.
    Public,
    /// Shaped by who asks (members limited by scope).
    Private,
}

impl CacheScope {
    fn as_str(self) -> &'static str {
        match self {
            CacheScope::Public => "public",
            CacheScope::Private => "private",
        }
    }
}

/// What a `subscriptions/listen` stream asked to hear: list changes, and updates of the
/// resources it names (the gateway's own; federated ones through their upstream where a task
/// may outlive the request: the edge Worker hands such a stream to a Durable Object, see
/// `Gateway::park_of`; the acknowledgement names those it watches).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ListenFilter {
    /// `notifications/tools/list_changed`.
    pub tools: bool,
    /// `notifications/prompts/list_changed`.
    pub prompts: bool,
    /// `notifications/resources/list_changed`.
    pub resources: bool,
    /// `notifications/resources/updated` for these URIs.
    pub uris: Vec<String>,
}

/// The most resource URIs one listen stream watches.
const MAX_WATCHED: usize = 256;

impl ListenFilter {
    /// The filter of a listen request's `notifications` object.
    pub fn of(wanted: Option<&Value>) -> Self {
        let flag = |k: &str| wanted.and_then(|w| w.get(k)).and_then(Value::as_bool) == Some(true);
        let mut uris: Vec<String> = wanted
            .and_then(|w| w.get("resourceSubscriptions"))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default();
        uris.sort();
        uris.dedup();
        uris.truncate(MAX_WATCHED);
        Self {
            tools: flag("toolsListChanged"),
            prompts: flag("promptsListChanged"),
            resources: flag("resourcesListChanged"),
            uris,
        }
    }

    /// What the acknowledgement says was agreed to (`uris`: the resources it will watch).
    pub fn agreed(&self, uris: &[String]) -> Value {
        let mut m = Map::new();
        for (k, on) in [
            ("toolsListChanged", self.tools),
            ("promptsListChanged", self.prompts),
            ("resourcesListChanged", self.resources),
        ] {
            if on {
                m.insert(k.into(), json!(true));
            }
        }
        if !uris.is_empty() {
            m.insert("resourceSubscriptions".into(), json!(uris));
        }
        Value::Object(m)
    }

    /// True when this stream asked for changes of `list`.
    pub fn wants(&self, list: Listed) -> bool {
        match list {
            Listed::Tools => self.tools,
            Listed::Prompts => self.prompts,
            Listed::Resources => self.resources,
        }
    }

    /// True if it asked for a list change of any kind.
    fn wants_lists(&self) -> bool {
        self.tools || self.prompts || self.resources
    }
}

/// The upstreams a listen stream asking for `filter` at the endpoint of `server` hears through
/// a link to them: those of the federated resources it names, and, when it asks for list
/// changes, the endpoint's 2026-07-28 upstreams (whose shared link listens for them; a
/// session-era upstream's list changes are found by the catalog refresh).
pub(crate) fn upstreams_heard(filter: &ListenFilter, snap: &Snapshot, server: Option<&Server>) -> Vec<Arc<Upstream>> {
    let mut ups: Vec<Arc<Upstream>> = filter
        .uris
        .iter()
        .filter_map(|u| {
            let found = uris::resolve(snap, server.map(|s| s.id.as_str()), u, |r| uris::member_of(server, r))?;
            found.resource.fed.as_ref()
        })
        .map(|f| f.upstream.clone())
        .collect();
    if filter.wants_lists() {
        let stateless = snap.upstreams_of(server).into_iter();
        ups.extend(stateless.filter(|u| u.era() == Some(crate::proto::version::Era::Stateless)));
    }
    ups.sort_by(|a, b| a.id.cmp(&b.id));
    ups.dedup_by(|a, b| a.id == b.id);
    ups
}

/// What a watched resource is now (a digest of its definition; none if it is gone).
fn resource_state(snap: &crate::registry::Snapshot, uri: &str) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let r = snap.resource(uri).filter(|r| r.fed.is_none())?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(&r.def).unwrap_or_default().hash(&mut h);
    Some(h.finish())
}

/// A notification for a listen stream, tagged with its subscription id.
pub(crate) fn tagged(method: &str, tag: &Value) -> Json {
    Json::from_value(&jsonrpc::notification(
        method,
        Some(json!({"_meta": {meta::SUBSCRIPTION_ID: tag}})),
    ))
}

/// What a `subscriptions/listen` stream needs of the gateway.
pub(crate) struct Listen {
    /// Whose hub gives keep-alives and ends the stream at shutdown.
    pub sessions: Arc<Sessions>,
    /// Where changes are found.
    pub registry: Arc<Registry>,
    /// For the ticks between checks.
    pub clock: Arc<dyn Clock>,
    /// How often the registry is checked.
    pub every: std::time::Duration,
    /// The endpoint's `serverInfo` (on the final result).
    pub server_info: Value,
    /// Where updates of federated resources are heard.
    pub fed: Arc<Federation>,
    /// The virtual server whose endpoint it is, if any.
    pub scope: Option<Arc<Server>>,
    /// The credential the stream was opened with (it ends when that lapses).
    pub held: crate::session::hub::Held,
}

/// How long a listen stream waits for an upstream to watch a resource it names.
const WATCH_WITHIN_MS: u64 = 5_000;

/// A federated resource a listen stream hears the updates of: its URI, the updates, and what
/// keeps the upstream watching it.
type Watched = (String, UnboundedReceiver<()>, Unwatch);

/// The list changes an endpoint's upstreams announce, and what keeps them coming.
type Announced = (
    futures::channel::mpsc::Receiver<crate::proto::method::Listed>,
    crate::federation::announce::Unhear,
);

impl Listen {
    /// `subscriptions/listen`: the acknowledgement first (the kinds agreed to), then a
    /// notification for each change of those lists, tagged with the request's id, until the
    /// client closes the stream; at shutdown a final result ends it. The stream finds changes
    /// itself, comparing the registry's fingerprints every `every`: it sees writes of
    /// this process, of other instances and, on the edge, of other isolates alike, and it never
    /// waits on another request's I/O (which a Worker forbids).
    pub fn stream(self, req: &Request) -> BoxStream<'static, Event> {
        let id = req.id.clone();
        let filter = ListenFilter::of(req.params.as_ref().and_then(|p| p.get("notifications")));
        boxed_stream(
            stream::once(async move {
                // The federated resources it names are heard through their upstreams, and so are
                // the list changes of 2026-07-28 upstreams (the same ones `park_of` routes by).
                let mut watched = Vec::new();
                let mut announced = None;
                let heard = filter.wants_lists() || !filter.uris.is_empty();
                if let (true, Ok(snap)) = (heard, self.registry.snapshot().await) {
                    // What the endpoint's upstreams announce is told at once (the catalog
                    // refresh that follows may find nothing to store).
                    if filter.wants_lists() {
                        let ids = snap
                            .upstreams_of(self.scope.as_deref())
                            .iter()
                            .map(|u| u.id.clone())
                            .collect();
                        announced = Some(self.fed.hear_announced(ids));
                    }
                    let ups = upstreams_heard(&filter, &snap, self.scope.as_deref());
                    if filter.wants_lists() {
                        let opening = futures::future::join_all(ups.iter().map(|up| self.fed.hear_lists(up)));
                        let bound = self.clock.sleep(std::time::Duration::from_millis(WATCH_WITHIN_MS));
                        futures::pin_mut!(opening);
                        let _ = futures::future::select(opening, bound).await;
                    }
                    for uri in &filter.uris {
                        let scope = self.scope.as_deref();
                        let found =
                            uris::resolve(&snap, scope.map(|s| s.id.as_str()), uri, |r| uris::member_of(scope, r));
                        let Some((f, own)) = found.and_then(|x| Some((x.resource.fed.clone()?, x.own_uri))) else {
                            continue;
                        };
                        // An upstream that does not answer soon is left out of the acknowledgement.
                        let watch = self.fed.watch_shared(&f.upstream, &own);
                        let bound = self.clock.sleep(std::time::Duration::from_millis(WATCH_WITHIN_MS));
                        futures::pin_mut!(watch);
                        if let futures::future::Either::Left((Some((rx, keep)), _)) =
                            futures::future::select(watch, bound).await
                        {
                            watched.push((uri.clone(), rx, keep));
                        }
                    }
                }
                self.build(id, filter, watched, announced)
            })
            .flatten(),
        )
    }

    fn build(
        self,
        id: RequestId,
        filter: ListenFilter,
        federated: Vec<Watched>,
        announced: Option<Announced>,
    ) -> BoxStream<'static, Event> {
        let tag = id.to_value();
        let announced = match announced {
            Some((rx, unhear)) => {
                let (filter, tag) = (filter.clone(), tag.clone());
                let told = rx.filter_map(move |list| {
                    let _unhear = &unhear;
                    let wanted = filter.wants(list);
                    futures::future::ready(wanted.then(|| Some(Event::Message(tagged(list.changed(), &tag)))))
                });
                boxed_stream(told)
            }
            None => boxed_stream(stream::pending()),
        };
        let heard: Vec<String> = federated.iter().map(|(u, _, _)| u.clone()).collect();
        let updates = stream::select_all(federated.into_iter().map(|(uri, rx, keep)| {
            let tag = tag.clone();
            rx.map(move |()| {
                let _keep = &keep;
                let note = jsonrpc::notification(
                    ServerMethod::ResourceUpdated.name(),
                    Some(json!({"uri": uri, "_meta": {meta::SUBSCRIPTION_ID: tag}})),
                );
                Some(Event::Message(Json::from_value(&note)))
            })
        }));
        let info = self.server_info;
        let done = Json(format!("{{\"_meta\":{{\"{}\":{tag}}}}}", meta::SUBSCRIPTION_ID));
        let done = finish(&done, &[("resultType", "\"complete\"".into())], &info);
        let end = stream::once(futures::future::ready(Event::Answer(jsonrpc::response_json(
            &id, &done,
        ))));
        let Some((conn, rx)) = self.sessions.hub().listen(self.held.clone()) else {
            return boxed_stream(end);
        };
        // The hub's channel: keep-alives, and its end at shutdown (then `None` ends the merge).
        let sessions = self.sessions;
        let hub = OnDrop::new(
            rx.map(|_| Some(Event::KeepAlive))
                .chain(stream::once(futures::future::ready(None))),
            Box::new(move || sessions.hub().unlisten(conn)),
        );
        let (registry, clock, every) = (self.registry, self.clock, self.every);
        // State: the fingerprints and the watched resources' states of the last look (none
        // before the first, which sends the acknowledgement).
        type Seen = ([u64; 5], Vec<(String, Option<u64>)>);
        let changes = stream::unfold(None::<Seen>, move |last| {
            let (registry, clock, filter, tag) = (registry.clone(), clock.clone(), filter.clone(), tag.clone());
            let heard = heard.clone();
            async move {
                let mut last = last;
                loop {
                    if last.is_some() {
                        clock.sleep(every).await;
                    }
                    registry.recheck();
                    let Ok(snap) = registry.snapshot().await else {
                        // The store is unreachable: try again a tick later.
                        if last.is_none() {
                            clock.sleep(every).await;
                        }
                        continue;
                    };
                    let now = snap.fingerprints();
                    let Some((before, watched)) = last.take() else {
                        // The first look: the acknowledgement, with the resources it watches.
                        let watched: Vec<(String, Option<u64>)> = filter
                            .uris
                            .iter()
                            .filter_map(|u| resource_state(&snap, u).map(|h| (u.clone(), Some(h))))
                            .collect();
                        let mut uris: Vec<String> = watched.iter().map(|(u, _)| u.clone()).collect();
                        uris.extend(heard);
                        uris.sort();
                        let ack = jsonrpc::notification(
                            ServerMethod::Acknowledged.name(),
                            Some(json!({"_meta": {meta::SUBSCRIPTION_ID: tag}, "notifications": filter.agreed(&uris)})),
                        );
                        let first = vec![Some(Event::Message(Json::from_value(&ack)))];
                        return Some((first, Some((now, watched))));
                    };
                    let mut out: Vec<Option<Event>> = crate::session::list_changes(changed_kinds(&before, &now))
                        .into_iter()
                        .filter(|l| filter.wants(*l))
                        .map(|l| Some(Event::Message(tagged(l.changed(), &tag))))
                        .collect();
                    let mut seen = Vec::with_capacity(watched.len());
                    for (uri, was) in watched {
                        let is = resource_state(&snap, &uri);
                        if is != was {
                            let note = jsonrpc::notification(
                                ServerMethod::ResourceUpdated.name(),
                                Some(json!({"uri": uri, "_meta": {meta::SUBSCRIPTION_ID: tag}})),
                            );
                            out.push(Some(Event::Message(Json::from_value(&note))));
                        }
                        seen.push((uri, is));
                    }
                    last = Some((now, seen));
                    if !out.is_empty() {
                        return Some((out, last));
                    }
                }
            }
        })
        .flat_map(stream::iter);
        let live = stream::select(hub, stream::select(stream::select(changes, announced), updates))
            .take_while(|e| futures::future::ready(e.is_some()))
            .filter_map(futures::future::ready);
        boxed_stream(live.chain(end))
    }
}

/// True for the methods whose results carry `ttlMs` and `cacheScope`.
pub(crate) fn cacheable(m: Method) -> bool {
    matches!(
        m,
        Method::ServerDiscover
            | Method::ToolsList
            | Method::ResourcesList
            | Method::ResourceTemplatesList
            | Method::PromptsList
            | Method::ResourcesRead
    )
}

/// The cache hint fields of a result, as raw JSON text.
pub(crate) fn cache_fields(ttl_ms: u64, scope: CacheScope) -> [(&'static str, String); 2] {
    [
        ("ttlMs", ttl_ms.to_string()),
        ("cacheScope", format!("\"{}\"", scope.as_str())),
    ]
}

/// `result` with `fields` (raw JSON values) added where it lacks them, and `server_info` under
/// `_meta` (merged into a `_meta` it has). Written into the text when none of those keys
/// appears in it; else parsed once and written again.
pub(crate) fn finish(result: &Json, fields: &[(&str, String)], server_info: &Value) -> Json {
    add(result, fields, Some(server_info))
}

/// `result` with `fields` (raw JSON values) added where it lacks them.
pub(crate) fn with_fields(result: &Json, fields: &[(&str, String)]) -> Json {
    add(result, fields, None)
}

fn add(result: &Json, fields: &[(&str, String)], server_info: Option<&Value>) -> Json {
    let text = result.0.trim();
    let plain = text.starts_with('{')
        && text.ends_with('}')
        && !text.contains("\"_meta\"")
        && fields.iter().all(|(k, _)| !text.contains(&format!("\"{k}\"")));
    if plain {
        let mut out = String::with_capacity(text.len() + 128);
        out.push('{');
        for (k, v) in fields {
            out.push('"');
            out.push_str(k);
            out.push_str("\":");
            out.push_str(v);
            out.push(',');
        }
        if let Some(info) = server_info {
            out.push_str("\"_meta\":{\"");
            out.push_str(meta::SERVER_INFO);
            out.push_str("\":");
            out.push_str(&info.to_string());
            out.push_str("},");
        }
        let rest = text[1..].trim_start();
        if rest == "}" && out.ends_with(',') {
            // Nothing followed: the last comma written goes.
            out.pop();
        }
        out.push_str(rest);
        return Json(out);
    }
    let Ok(Value::Object(mut obj)) = serde_json::from_str::<Value>(text) else {
        // Not an object: nothing can be added (a result is always one; pass it on as it is).
        return result.clone();
    };
    for (k, v) in fields {
        if !obj.contains_key(*k) {
            obj.insert((*k).to_string(), serde_json::from_str(v).unwrap_or(Value::Null));
        }
    }
    if let Some(info) = server_info {
        let m = obj.entry("_meta").or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(m) = m {
            m.entry(meta::SERVER_INFO).or_insert_with(|| info.clone());
        }
    }
    Json(Value::Object(obj).to_string())
}

/// What of an upstream's message during a call reaches a stateless client on the request's
/// stream: progress, and log messages at or above the level it asked for (none if it asked for
/// none). Requests and other notifications have no place there.
pub(crate) fn on_request_stream(m: Json, min: Option<LogLevel>) -> Option<Json> {
    let v: Value = serde_json::from_str(&m.0).ok()?;
    if v.get("id").is_some() {
        return None;
    }
    match ServerMethod::of(&v)? {
        ServerMethod::Progress => Some(m),
        ServerMethod::Log => {
            let level: LogLevel = serde_json::from_value(v["params"]["level"].clone()).ok()?;
            (level >= min?).then_some(m)
        }
        _ => None,
    }
}

/// An error as the stateless era codes it: resource not found is -32602 (with `data.uri`).
pub(crate) fn error(mut e: RpcError) -> RpcError {
    if e.code == jsonrpc::RESOURCE_NOT_FOUND {
        e.code = jsonrpc::INVALID_PARAMS;
    }
    e
}

/// The `server/discover` result: every revision served (newest first), the capabilities,
/// instructions if any, and the cache hints (the `serverInfo` is added by [`finish`]).
pub(crate) fn discover(capabilities: Value, instructions: Option<&str>, ttl_ms: u64) -> Json {
    let mut versions = ProtocolVersion::served_names();
    versions.reverse();
    let mut r = json!({
        "supportedVersions": versions,
        "capabilities": capabilities,
        "ttlMs": ttl_ms,
        "cacheScope": CacheScope::Public.as_str(),
    });
    if let Some(i) = instructions {
        r["instructions"] = json!(i);
    }
    Json::from_value(&r)
}

/// What a virtual server's `server/discover` says, merged from what it serves: of the
/// gateway's `capabilities`, the kinds it has members of itself or that one of its upstreams
/// offers (as last read), and its description, else its upstreams' instructions.
pub(crate) fn merged(capabilities: &Value, server: &Server, snap: &Snapshot) -> (Value, Option<String>) {
    let ups: Vec<_> = server.upstream_ids.iter().filter_map(|id| snap.upstream(id)).collect();
    let offered = |kind: &str| ups.iter().any(|u| u.capabilities.get(kind).is_some());
    let d = &server.def;
    let has = |kind: &str| match kind {
        "tools" => !d.tools.is_empty() || offered(kind),
        "resources" => !d.resources.is_empty() || offered(kind),
        "prompts" => !d.prompts.is_empty() || offered(kind),
        "completions" => !d.prompts.is_empty() || !d.resources.is_empty() || offered(kind),
        _ => true,
    };
    let mut caps = Map::new();
    for (k, v) in capabilities.as_object().into_iter().flatten() {
        if has(k) {
            caps.insert(k.clone(), v.clone());
        }
    }
    let instructions = d.description.clone().or_else(|| {
        let all: Vec<&str> = ups.iter().filter_map(|u| u.instructions.as_deref()).collect();
        (!all.is_empty()).then(|| all.join("\n\n"))
    });
    (Value::Object(caps), instructions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> Value {
        json!({"name": "mcpgw", "version": "1"})
    }

    #[test]
    fn a_result_gets_its_type_and_the_server_info() {
        let done = finish(
            &Json("{\"tools\":[]}".into()),
            &[("resultType", "\"complete\"".into())],
            &info(),
        );
        let v: Value = serde_json::from_str(&done.0).unwrap();
        assert_eq!(v["resultType"], "complete");
        assert_eq!(v["tools"], json!([]));
        assert_eq!(v["_meta"][meta::SERVER_INFO]["name"], "mcpgw");

        let empty = finish(&Json("{}".into()), &[("resultType", "\"complete\"".into())], &info());
        let v: Value = serde_json::from_str(&empty.0).unwrap();
        assert_eq!(v["resultType"], "complete");
    }

    #[test]
    fn what_a_result_already_has_is_kept() {
        let upstream = Json(r#"{"resultType":"input_required","_meta":{"k":1},"n":1.50}"#.into());
        let mut fields = vec![("resultType", "\"complete\"".to_string())];
        fields.extend(cache_fields(5, CacheScope::Private));
        let v: Value = serde_json::from_str(&finish(&upstream, &fields, &info()).0).unwrap();
        assert_eq!(v["resultType"], "input_required");
        assert_eq!(v["_meta"]["k"], 1);
        assert_eq!(v["_meta"][meta::SERVER_INFO]["version"], "1");
        assert_eq!(v["ttlMs"], 5);
        assert_eq!(v["cacheScope"], "private");
    }

    #[test]
    fn discover_names_every_served_revision_newest_first() {
        let d: Value = serde_json::from_str(&discover(json!({"tools": {}}), Some("hi"), 7).0).unwrap();
        assert_eq!(d["supportedVersions"][0], "2026-07-28");
        assert!(d["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&json!("2025-11-25")));
        assert_eq!(
            (d["ttlMs"].as_u64(), d["cacheScope"].as_str()),
            (Some(7), Some("public"))
        );
        assert_eq!(d["instructions"], "hi");
        assert_eq!(error(RpcError::new(jsonrpc::RESOURCE_NOT_FOUND, "x")).code, -32602);
        assert!(cacheable(Method::ResourcesRead) && !cacheable(Method::ToolsCall));
    }

    #[test]
    fn a_listen_filter_agrees_to_what_it_serves_and_tags_what_it_sends() {
        let f = ListenFilter::of(Some(
            &json!({"promptsListChanged": true, "toolsListChanged": false, "resourceSubscriptions": ["x"]}),
        ));
        assert_eq!(f.agreed(&[]), json!({"promptsListChanged": true}));
        assert_eq!(f.uris, ["x"]);
        assert_eq!(
            f.agreed(&["x".to_string()]),
            json!({"promptsListChanged": true, "resourceSubscriptions": ["x"]})
        );
        assert!(f.wants(Listed::Prompts) && !f.wants(Listed::Tools));
        let n: Value = serde_json::from_str(&tagged("notifications/prompts/list_changed", &json!("s")).0).unwrap();
        assert_eq!(n["params"]["_meta"][meta::SUBSCRIPTION_ID], "s");
    }

    #[test]
    fn a_request_stream_carries_progress_and_only_the_logs_asked_for() {
        let progress = Json(r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}"#.into());
        let info =
            Json(r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}"#.into());
        let request = Json(r#"{"jsonrpc":"2.0","id":"mcpgw-1","method":"sampling/createMessage"}"#.into());
        let changed = Json(r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#.into());
        assert!(on_request_stream(progress.clone(), None).is_some());
        assert!(on_request_stream(info.clone(), None).is_none());
        assert!(on_request_stream(info.clone(), Some(LogLevel::Debug)).is_some());
        assert!(on_request_stream(info, Some(LogLevel::Warning)).is_none());
        assert!(on_request_stream(request, Some(LogLevel::Debug)).is_none());
        assert!(on_request_stream(changed, Some(LogLevel::Debug)).is_none());
    }
}
