//! The registry as the MCP methods read it: one immutable [`Snapshot`] of every definition,
//! with the federated catalogs spread into the lists under their gateway names, name indexes,
//! each member's list entry pre-rendered, and per-list fingerprints (what changed).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::model::{
    Catalog, ConflictPolicy, JsonText, Operation, PromptArgumentDef, PromptDef, ResourceDef, ServerDef, ToolDef,
    UpstreamDef, UpstreamKind,
};
use crate::ports::RawRecord;
use crate::uri_template::UriTemplate;

/// An upstream MCP server as the gateway serves it (its catalog is spread over the members).
#[derive(Debug, Clone)]
pub struct Upstream {
    /// Record id.
    pub id: String,
    /// Definition, without the catalog.
    pub def: UpstreamDef,
    /// The prefix of its members' names.
    pub slug: String,
    /// [`UpstreamDef::revision`]: its links follow it.
    pub revision: u64,
    /// What it declared at `initialize` (or `server/discover`), from the catalog.
    pub capabilities: Value,
    /// The revision it spoke when the catalog was last read (its era), if read.
    pub protocol_version: Option<crate::proto::version::ProtocolVersion>,
    /// Its instructions, from the catalog.
    pub instructions: Option<String>,
    /// An OpenAPI upstream's API, from the catalog.
    pub base_url: Option<String>,
}

impl Upstream {
    /// The era it was last seen to speak, if known.
    pub fn era(&self) -> Option<crate::proto::version::Era> {
        self.protocol_version.map(|v| v.era())
    }
}

/// Where a federated member comes from.
#[derive(Debug, Clone)]
pub struct Federated {
    /// The upstream serving it.
    pub upstream: Arc<Upstream>,
    /// Its name (or URI) at the upstream.
    pub name: String,
    /// Its list entry exactly as the upstream sent it.
    pub listing: String,
    /// For a tool the upstream lists only to clients declaring them: those client
    /// capabilities (see [`crate::model::Catalog::needs`]).
    pub needs: Vec<String>,
}

/// A tool as the gateway serves it.
#[derive(Debug, Clone)]
pub struct Tool {
    /// Record id (for a federated tool, the upstream's id and the tool's name).
    pub id: String,
    /// Definition (for a federated tool: name, title, description, schemas and annotations).
    pub def: ToolDef,
    /// Parsed URL template of a REST tool.
    pub url: Option<UriTemplate>,
    /// Its `tools/list` entry, rendered once.
    pub listing: String,
    /// Set for a tool of an upstream.
    pub fed: Option<Federated>,
    /// Set for a tool of an OpenAPI upstream: how its call becomes an HTTP request (it is
    /// called as a REST tool, `def.url` the API's base).
    pub op: Option<Arc<Operation>>,
}

/// A resource or resource template as the gateway serves it.
#[derive(Debug, Clone)]
pub struct Resource {
    /// Record id.
    pub id: String,
    /// Definition.
    pub def: ResourceDef,
    /// Parsed URI template, for templates.
    pub template: Option<UriTemplate>,
    /// Its `resources/list` or `resources/templates/list` entry, rendered once.
    pub listing: String,
    /// Set for a resource of an upstream.
    pub fed: Option<Federated>,
}

/// A prompt as the gateway serves it.
#[derive(Debug, Clone)]
pub struct Prompt {
    /// Definition.
    pub def: PromptDef,
    /// Its `prompts/list` entry, rendered once.
    pub listing: String,
    /// Set for a prompt of an upstream.
    pub fed: Option<Federated>,
}

/// A virtual server.
#[derive(Debug, Clone)]
pub struct Server {
    /// Record id.
    pub id: String,
    /// Definition.
    pub def: ServerDef,
    /// Ids of the upstreams all of whose members belong to it.
    pub upstream_ids: Vec<String>,
    /// With `original_names`: the index of each member tool by the name it is served under.
    pub tool_names: HashMap<String, usize>,
    /// With `original_names`: the index of each member prompt by the name it is served under.
    pub prompt_names: HashMap<String, usize>,
}

impl Server {
    /// True when a federated member of `upstream` belongs to this server.
    pub fn includes_upstream(&self, upstream: &str) -> bool {
        self.upstream_ids.iter().any(|u| u == upstream)
    }
}

/// An immutable view of the whole registry, sorted by key.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Tools by name order.
    pub tools: Vec<Arc<Tool>>,
    /// Static resources, by URI order.
    pub resources: Vec<Arc<Resource>>,
    /// Resource templates, by template order.
    pub templates: Vec<Arc<Resource>>,
    /// Prompts, by name order.
    pub prompts: Vec<Arc<Prompt>>,
    /// Virtual servers, by name order.
    pub servers: Vec<Arc<Server>>,
    /// Upstreams, by name order.
    pub upstreams: Vec<Arc<Upstream>>,
    tool_index: HashMap<String, usize>,
    resource_index: HashMap<String, usize>,
    prompt_index: HashMap<String, usize>,
    /// One hash per kind (in [`Kind::ALL`] order) over ids, keys, bodies and update times:
    /// equal fingerprints mean the same list.
    pub(super) fingerprints: [u64; 5],
    /// `jti`s of revoked tokens.
    revoked: std::collections::HashSet<String>,
    /// By peer id: its members left out or renamed because a member here had the name.
    pub conflicts: HashMap<String, Vec<Value>>,
    /// The resource URIs several members share, and how each endpoint serves them.
    pub shared: super::uris::SharedUris,
    /// Peers' virtual servers, joined to `servers` once the registry's own are in.
    peer_servers: Vec<Arc<Server>>,
    /// The (origin gateway, origin name) of every peer member taken, so that one reached by two
    /// paths is served once.
    origins: std::collections::HashSet<(String, String)>,
}

/// The key of a member's origin in `_meta`, as peers exchange it: the gateways that served it,
/// the first where it lives, and its name there.
pub const ORIGIN: &str = "io.mcpgw/origin";

/// A member's origin as a peer sent it: (path, name there).
pub fn origin_of(raw: &Value) -> Option<(Vec<String>, String)> {
    let o = raw.get("_meta")?.get(ORIGIN)?;
    let path = o
        .get("path")?
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    Some((path, o.get("name")?.as_str()?.to_string()))
}

/// A hash of a kind's records, to notice a list change however it happened.
fn fingerprint(records: &[RawRecord]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for r in records {
        r.id.hash(&mut h);
        r.key.hash(&mut h);
        r.updated_at.hash(&mut h);
        r.body.hash(&mut h);
    }
    h.finish()
}

impl Snapshot {
    /// A tool by name.
    pub fn tool(&self, name: &str) -> Option<&Arc<Tool>> {
        self.tool_index.get(name).map(|i| &self.tools[*i])
    }
    /// A static resource by URI.
    pub fn resource(&self, uri: &str) -> Option<&Arc<Resource>> {
        self.resource_index.get(uri).map(|i| &self.resources[*i])
    }
    /// The position in `resources` of the first static resource with this URI (none or one).
    pub(crate) fn resource_position(&self, uri: &str) -> Vec<usize> {
        self.resource_index.get(uri).copied().into_iter().collect()
    }
    /// A prompt by name.
    pub fn prompt(&self, name: &str) -> Option<&Arc<Prompt>> {
        self.prompt_index.get(name).map(|i| &self.prompts[*i])
    }
    /// A virtual server by id or name.
    pub fn server(&self, id_or_name: &str) -> Option<&Arc<Server>> {
        self.servers
            .iter()
            .find(|s| s.id == id_or_name)
            .or_else(|| self.servers.iter().find(|s| s.def.name == id_or_name))
    }

    /// An upstream by id or name.
    pub fn upstream(&self, id_or_name: &str) -> Option<&Arc<Upstream>> {
        self.upstreams
            .iter()
            .find(|u| u.id == id_or_name)
            .or_else(|| self.upstreams.iter().find(|u| u.def.name == id_or_name))
    }

    /// The upstreams an endpoint federates: every one for the gateway's own (`server` none),
    /// else those whole in the virtual server and those its listed members come from.
    pub fn upstreams_of(&self, server: Option<&Server>) -> Vec<Arc<Upstream>> {
        let Some(s) = server else {
            return self.upstreams.clone();
        };
        let mut ids: Vec<&str> = s.upstream_ids.iter().map(String::as_str).collect();
        let d = &s.def;
        let members = d.tools.iter().filter_map(|n| self.tool(n).and_then(|t| t.fed.as_ref()));
        let members = members
            .chain(
                d.prompts
                    .iter()
                    .filter_map(|n| self.prompt(n).and_then(|p| p.fed.as_ref())),
            )
            .chain(
                d.resources
                    .iter()
                    .filter_map(|u| self.resource(u).and_then(|r| r.fed.as_ref())),
            );
        ids.extend(members.map(|f| f.upstream.id.as_str()));
        ids.sort_unstable();
        ids.dedup();
        ids.iter().filter_map(|id| self.upstream(id).cloned()).collect()
    }

    /// True if the token with this `jti` was revoked.
    pub fn is_revoked(&self, jti: &str) -> bool {
        self.revoked.contains(jti)
    }

    /// One hash per listed kind: equal fingerprints mean the same lists.
    pub(crate) fn fingerprints(&self) -> [u64; 5] {
        self.fingerprints
    }

    pub(crate) fn build(lists: [Vec<RawRecord>; 6], separator: &str, own: &str) -> Self {
        let [tools, resources, prompts, servers, gateways, revocations] = lists;
        let mut snap = Snapshot {
            revoked: revocations.into_iter().map(|r| r.key).collect(),
            fingerprints: [
                fingerprint(&tools),
                fingerprint(&resources),
                fingerprint(&prompts),
                fingerprint(&servers),
                fingerprint(&gateways),
            ],
            ..Snapshot::default()
        };
        // Records were validated on the way in; one that no longer parses is skipped, not fatal.
        for r in tools {
            if let Ok(def) = serde_json::from_str::<ToolDef>(&r.body) {
                if let Ok(url) = UriTemplate::parse(&def.url) {
                    let listing = crate::registry::listing::tool_listing(&def);
                    snap.tools.push(Arc::new(Tool {
                        id: r.id,
                        def,
                        url: Some(url),
                        listing,
                        fed: None,
                        op: None,
                    }));
                }
            }
        }
        for r in resources {
            if let Ok(def) = serde_json::from_str::<ResourceDef>(&r.body) {
                let listing = crate::registry::listing::resource_listing(&def);
                let template = match &def.uri_template {
                    Some(t) => match UriTemplate::parse(t) {
                        Ok(tpl) => Some(tpl),
                        Err(_) => continue,
                    },
                    None => None,
                };
                snap.push_resource(Resource {
                    id: r.id,
                    def,
                    template,
                    listing,
                    fed: None,
                });
            }
        }
        for r in prompts {
            if let Ok(def) = serde_json::from_str::<PromptDef>(&r.body) {
                let listing = crate::registry::listing::prompt_listing(&def);
                snap.prompts.push(Arc::new(Prompt {
                    def,
                    listing,
                    fed: None,
                }));
            }
        }
        for r in gateways {
            if let Ok(mut def) = serde_json::from_str::<UpstreamDef>(&r.body) {
                let catalog = def.catalog.take().unwrap_or_default();
                let up = Arc::new(Upstream {
                    id: r.id,
                    slug: def.slug(),
                    revision: def.revision(),
                    def,
                    capabilities: catalog.capabilities.clone(),
                    protocol_version: catalog.protocol_version,
                    instructions: catalog.instructions.clone(),
                    base_url: catalog.openapi.as_ref().map(|o| o.base_url.clone()),
                });
                snap.add_catalog(&up, catalog, separator, own);
                snap.upstreams.push(up);
            }
        }
        // Local entries first, then each upstream's: a name is served once, by the first that
        // has it; a later one is left out, and its upstream's GET /gateways/{id} says so.
        snap.serve_once();
        for (i, t) in snap.tools.iter().enumerate() {
            snap.tool_index.entry(t.def.name.clone()).or_insert(i);
        }
        for (i, p) in snap.prompts.iter().enumerate() {
            snap.prompt_index.entry(p.def.name.clone()).or_insert(i);
        }
        for r in servers {
            if let Ok(def) = serde_json::from_str::<ServerDef>(&r.body) {
                let upstream_ids = def
                    .upstreams
                    .iter()
                    .filter_map(|n| snap.upstream(n).map(|u| u.id.clone()))
                    .collect();
                let mut server = Server {
                    id: r.id,
                    def,
                    upstream_ids,
                    tool_names: HashMap::new(),
                    prompt_names: HashMap::new(),
                };
                if server.def.original_names {
                    for (i, t) in snap.tools.iter().enumerate() {
                        if server.has_member(&server.def.tools, &[&t.def.name], t.fed.as_ref()) {
                            let name = t.fed.as_ref().map_or(&t.def.name, |f| &f.name);
                            server.tool_names.entry(name.clone()).or_insert(i);
                        }
                    }
                    for (i, p) in snap.prompts.iter().enumerate() {
                        if server.has_member(&server.def.prompts, &[&p.def.name], p.fed.as_ref()) {
                            let name = p.fed.as_ref().map_or(&p.def.name, |f| &f.name);
                            server.prompt_names.entry(name.clone()).or_insert(i);
                        }
                    }
                }
                snap.servers.push(Arc::new(server));
            }
        }
        let peer_servers = std::mem::take(&mut snap.peer_servers);
        snap.servers.extend(peer_servers);
        let (shared, conflicts) = super::uris::SharedUris::build(&snap.resources, &snap.templates, &snap.servers);
        snap.shared = shared;
        for (up, note) in conflicts {
            snap.conflicts.entry(up).or_default().push(note);
        }
        snap
    }

    /// Leaves out every tool and prompt whose name an earlier one has, noting each as a clash
    /// of its upstream's.
    fn serve_once(&mut self) {
        let mut clashes: Vec<(String, String)> = vec![];
        let mut seen = std::collections::HashSet::new();
        self.tools.retain(|t| {
            let first = seen.insert(t.def.name.clone());
            if let (false, Some(f)) = (first, &t.fed) {
                clashes.push((f.upstream.id.clone(), f.name.clone()));
            }
            first
        });
        seen.clear();
        self.prompts.retain(|p| {
            let first = seen.insert(p.def.name.clone());
            if let (false, Some(f)) = (first, &p.fed) {
                clashes.push((f.upstream.id.clone(), f.name.clone()));
            }
            first
        });
        for (up, name) in clashes {
            self.conflicts
                .entry(up)
                .or_default()
                .push(json!({"name": name, "served_as": null, "reason": "another member is served under this name"}));
        }
    }

    fn push_resource(&mut self, r: Resource) {
        if r.template.is_some() || r.def.uri_template.is_some() {
            self.templates.push(Arc::new(r));
        } else {
            self.resource_index
                .entry(r.def.key().to_string())
                .or_insert(self.resources.len());
            self.resources.push(Arc::new(r));
        }
    }

    /// Whether a peer's member is taken: not one that came back round (this gateway in its
    /// path), nor one already taken by another path.
    fn takes(&mut self, up: &Upstream, raw: &Value, own: &str) -> bool {
        if up.def.kind != UpstreamKind::Peer {
            return true;
        }
        let Some((path, name)) = origin_of(raw) else {
            return true;
        };
        if path.iter().any(|g| g == own) {
            return false;
        }
        match path.first() {
            Some(first) => self.origins.insert((first.clone(), name)),
            None => true,
        }
    }

    /// The name a member of `up` called `name` is served under, by the peer's conflict policy
    /// (`taken`, asked only under a policy of own names: whether a member here already has the
    /// name); none: left out.
    fn served_name(
        &mut self,
        up: &Upstream,
        name: &str,
        separator: &str,
        taken: impl FnOnce(&Self) -> bool,
    ) -> Option<String> {
        let spaced = format!("{}{separator}{name}", up.slug);
        let policy = match up.def.kind {
            UpstreamKind::Peer => up.def.conflicts.unwrap_or_default(),
            UpstreamKind::Mcp => ConflictPolicy::Namespace,
        };
        if policy == ConflictPolicy::Namespace {
            return Some(spaced);
        }
        if !taken(self) {
            return Some(name.to_string());
        }
        let kept = (policy == ConflictPolicy::PreferLocal).then_some(spaced);
        self.conflicts
            .entry(up.id.clone())
            .or_default()
            .push(json!({"name": name, "served_as": kept}));
        kept
    }

    /// Spreads an upstream's catalog over the member lists, names namespaced (a peer's by its
    /// conflict policy, what came back round or twice left out).
    fn add_catalog(&mut self, up: &Arc<Upstream>, mut catalog: Catalog, separator: &str, own: &str) {
        let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let openapi = catalog.openapi.take();
        let mut needs = std::mem::take(&mut catalog.needs);
        let peer_servers = std::mem::take(&mut catalog.servers);
        // A member's name at the peer and here, for its virtual servers.
        let mut served_as: HashMap<String, String> = HashMap::new();
        for raw in catalog.tools {
            let Some(name) = s(&raw, "name") else { continue };
            if !self.takes(up, &raw, own) {
                continue;
            }
            // The MCP tool-name rules (2025-11-25): 1-128 of A-Z a-z 0-9 _ - . and nothing else
            // (no spaces, no bidi controls that make one name look like another).
            let invalid = |s: &mut Self, served: Option<&str>| {
                s.conflicts.entry(up.id.clone()).or_default().push(json!({
                    "name": name, "served_as": null,
                    "reason": format!("not a valid tool name (1-128 of A-Z a-z 0-9 _ - .): {}", served.unwrap_or(&name)),
                }));
            };
            if !crate::model::is_tool_name(&name) {
                invalid(self, None);
                continue;
            }
            let taken = |s: &Self| s.tools.iter().any(|t| t.def.name == name);
            let Some(served) = self.served_name(up, &name, separator, taken) else {
                continue;
            };
            if !crate::model::is_tool_name(&served) {
                invalid(self, Some(&served));
                continue;
            }
            served_as.insert(format!("tool:{name}"), served.clone());
            let op = openapi
                .as_ref()
                .and_then(|o| o.operations.iter().find(|op| op.name == name))
                .map(|op| Arc::new(op.clone()));
            let mut renamed = raw.clone();
            renamed["name"] = json!(served);
            let def = ToolDef {
                scope: up.def.scope.clone(),
                name: served,
                title: s(&raw, "title"),
                description: s(&raw, "description"),
                url: openapi.as_ref().map(|o| o.base_url.clone()).unwrap_or_default(),
                method: op.as_ref().map_or_else(|| "POST".into(), |o| o.method.clone()),
                headers: if op.is_some() {
                    up.def.headers.clone()
                } else {
                    Default::default()
                },
                input_schema: JsonText::new(raw.get("inputSchema").unwrap_or(&json!({"type": "object"}))),
                output_schema: raw.get("outputSchema").map(JsonText::new),
                annotations: raw.get("annotations").map(JsonText::new),
                timeout_ms: up.def.timeout_ms,
            };
            self.tools.push(Arc::new(Tool {
                id: format!("{}/{name}", up.id),
                def,
                url: None,
                listing: renamed.to_string(),
                fed: Some(Federated {
                    upstream: up.clone(),
                    listing: raw.to_string(),
                    needs: needs.remove(&name).unwrap_or_default(),
                    name,
                }),
                op,
            }));
        }
        for (raw, is_template) in catalog
            .resources
            .into_iter()
            .map(|r| (r, false))
            .chain(catalog.resource_templates.into_iter().map(|r| (r, true)))
        {
            let key = if is_template { "uriTemplate" } else { "uri" };
            let Some(uri) = s(&raw, key) else { continue };
            if !self.takes(up, &raw, own) {
                continue;
            }
            let def = ResourceDef {
                scope: up.def.scope.clone(),
                name: s(&raw, "name").unwrap_or_else(|| uri.clone()),
                title: s(&raw, "title"),
                description: s(&raw, "description"),
                uri: (!is_template).then(|| uri.clone()),
                uri_template: is_template.then(|| uri.clone()),
                mime_type: s(&raw, "mimeType"),
                text: None,
                blob: None,
                annotations: raw.get("annotations").cloned(),
                completions: Default::default(),
            };
            let template = if is_template {
                UriTemplate::parse(&uri).ok()
            } else {
                None
            };
            self.push_resource(Resource {
                id: format!("{}/{uri}", up.id),
                def,
                template,
                listing: raw.to_string(),
                fed: Some(Federated {
                    upstream: up.clone(),
                    listing: raw.to_string(),
                    name: uri,
                    needs: Vec::new(),
                }),
            });
        }
        for raw in catalog.prompts {
            let Some(name) = s(&raw, "name") else { continue };
            if !self.takes(up, &raw, own) {
                continue;
            }
            let taken = |s: &Self| s.prompts.iter().any(|p| p.def.name == name);
            let Some(served) = self.served_name(up, &name, separator, taken) else {
                continue;
            };
            served_as.insert(format!("prompt:{name}"), served.clone());
            let mut renamed = raw.clone();
            renamed["name"] = json!(served);
            let arguments = raw
                .get("arguments")
                .and_then(Value::as_array)
                .map(|args| {
                    args.iter()
                        .filter_map(|a| {
                            Some(PromptArgumentDef {
                                name: s(a, "name")?,
                                title: s(a, "title"),
                                description: s(a, "description"),
                                required: a.get("required").and_then(Value::as_bool).unwrap_or(false),
                                values: Vec::new(),
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            let def = PromptDef {
                scope: up.def.scope.clone(),
                name: served,
                title: s(&raw, "title"),
                description: s(&raw, "description"),
                template: None,
                messages: Vec::new(),
                arguments,
            };
            self.prompts.push(Arc::new(Prompt {
                def,
                listing: renamed.to_string(),
                fed: Some(Federated {
                    upstream: up.clone(),
                    listing: raw.to_string(),
                    name,
                    needs: Vec::new(),
                }),
            }));
        }
        self.add_peer_servers(up, peer_servers, &served_as, separator);
    }

    /// A peer's virtual servers, served here as `{slug}{separator}{name}`: their members under
    /// the names they have here (a member of one of the peer's upstreams: every member whose
    /// name at the peer starts with that upstream's slug).
    fn add_peer_servers(
        &mut self,
        up: &Arc<Upstream>,
        servers: Vec<Value>,
        served_as: &HashMap<String, String>,
        sep: &str,
    ) {
        let names = |v: &Value, k: &str| -> Vec<String> {
            v[k].as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        };
        for raw in servers {
            let Some(name) = raw["name"].as_str() else { continue };
            let prefixes: Vec<String> = names(&raw, "upstreams")
                .iter()
                .map(|u| format!("{}{sep}", u.to_ascii_lowercase()))
                .collect();
            let members = |kind: &str, listed: Vec<String>| -> Vec<String> {
                let mut out: Vec<String> = listed
                    .iter()
                    .filter_map(|n| served_as.get(&format!("{kind}:{n}")).cloned())
                    .collect();
                for (key, here) in served_as {
                    if let Some(at_peer) = key.strip_prefix(&format!("{kind}:")) {
                        if prefixes.iter().any(|p| at_peer.starts_with(p.as_str())) && !out.contains(here) {
                            out.push(here.clone());
                        }
                    }
                }
                out.sort();
                out
            };
            let def = ServerDef {
                name: format!("{}{sep}{name}", up.slug),
                scope: up.def.scope.clone(),
                title: raw["title"].as_str().map(str::to_string),
                description: raw["description"].as_str().map(str::to_string),
                tools: members("tool", names(&raw, "tools")),
                resources: names(&raw, "resources"),
                prompts: members("prompt", names(&raw, "prompts")),
                upstreams: Vec::new(),
                original_names: false,
            };
            self.peer_servers.push(Arc::new(Server {
                id: format!("{}/servers/{name}", up.id),
                def,
                upstream_ids: Vec::new(),
                tool_names: HashMap::new(),
                prompt_names: HashMap::new(),
            }));
        }
    }
}

impl Server {
    /// True when a member named in `listed` (or, if federated, of one of this server's
    /// upstreams) belongs here.
    pub fn has_member(&self, listed: &[String], names: &[&str], fed: Option<&Federated>) -> bool {
        fed.is_some_and(|f| self.includes_upstream(&f.upstream.id))
            || listed.iter().any(|l| names.iter().any(|n| l == n))
    }
}
