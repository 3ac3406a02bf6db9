//! The registry service: validated create/read/update/delete over the [`Store`], seeding from a
//! [`SeedFile`], and the [`Snapshot`] the MCP methods read (cached, refreshed on local writes
//! and after `registry_cache_ms`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Map, Value};

use crate::model::SeedFile;
use crate::model::{self, Catalog, FieldError, ServerDef, UpstreamDef};
use crate::ports::{Clock, Ids, Kind, Op, Record, Store, StoreError};
pub use snapshot::{origin_of, Federated, Prompt, Resource, Server, Snapshot, Tool, Upstream, ORIGIN};

pub(crate) mod listing;
pub(crate) mod seal;
mod slugs;
mod snapshot;
pub mod uris;

/// Registry failures, mapped to HTTP statuses in [`crate::face::admin`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The definition is invalid (422).
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// No such record (404).
    #[error("{0} '{1}' not found")]
    NotFound(&'static str, String),
    /// The name (or URI) is taken (409).
    #[error("{0} '{1}' already exists")]
    Conflict(&'static str, String),
    /// The store failed (503).
    #[error("storage unavailable: {0}")]
    Storage(String),
}

impl From<StoreError> for RegistryError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { kind, key } => RegistryError::Conflict(kind.as_str(), key),
            StoreError::NotFound { kind, id } => RegistryError::NotFound(kind.as_str(), id),
            other => RegistryError::Storage(other.to_string()),
        }
    }
}

struct Cached {
    snapshot: Arc<Snapshot>,
    /// When it was built or last found current (none: ask the store before the next use).
    loaded_at: Option<u64>,
    /// The store's version it was built from (none: the store could not say).
    version: Option<u64>,
}

/// Validated registry operations and the cached snapshot.
pub struct Registry {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn Ids>,
    cache_ms: u64,
    cached: Mutex<Option<Cached>>,
    /// The fingerprints clients were last told about (see [`Registry::refresh`]).
    announced: Mutex<Option<[u64; 5]>>,
    separator: String,
    net: crate::netguard::NetPolicy,
    /// Credentials are sealed at rest (an encryption key is configured).
    sealed: bool,
    /// When a lookup that missed last made the store be asked again (ms since the epoch).
    last_miss_reload: AtomicU64,
    /// This gateway's id, which peers see in its members' origins (see [`Registry::with_gateway_id`]).
    gateway_id: String,
}

fn kind_label(kind: Kind) -> &'static str {
    kind.as_str()
}

/// PATCH semantics: the patch's fields replace the record's, `null` removes one.
fn merge_patch(base: &Value, patch: Value) -> Result<Value, RegistryError> {
    let Value::Object(patch) = patch else {
        return Err(FieldError::new("", "the body must be a JSON object").into());
    };
    let mut merged = base.as_object().cloned().unwrap_or_default();
    for (k, v) in patch {
        if v.is_null() {
            merged.remove(&k);
        } else {
            merged.insert(k, v);
        }
    }
    Ok(Value::Object(merged))
}

/// What the REST API shows instead of a header value (credentials are never returned).
pub const MASK: &str = "********";

/// A replacement body as a client may send it back from a GET: the fields GET adds (id, times,
/// an upstream's status) are dropped, and header values sent back as [`MASK`] keep their
/// stored value.
fn as_sent_back(kind: Kind, new: &mut Value, old: &Value) {
    if let Some(m) = new.as_object_mut() {
        for k in [
            "id",
            "created_at",
            "updated_at",
            "status",
            "name_conflicts",
            "peer_upstreams",
            "peer_upstreams_error",
        ] {
            m.remove(k);
        }
    }
    for p in seal::credential_pointers(kind, new) {
        if let (Some(v), Some(prev)) = (new.pointer_mut(&p), old.pointer(&p)) {
            if v.as_str() == Some(MASK) {
                *v = prev.clone();
            }
        }
    }
}

/// Credentials arrive in clear (or masked, to keep the stored one): a sealed-looking value sent
/// by a client would be taken as sealed and opened with this gateway's key. Checked on what was
/// sent, before a stored value (which may be sealed under a key since changed) is put back.
fn sealed_input(kind: Kind, sent: &Value) -> Result<(), FieldError> {
    for p in seal::credential_pointers(kind, sent) {
        if sent
            .pointer(&p)
            .and_then(Value::as_str)
            .is_some_and(|v| v.starts_with("enc:v"))
        {
            let field = p.trim_start_matches('/').replace('/', ".");
            return Err(FieldError::new(field, "a credential is given in clear, not sealed"));
        }
    }
    Ok(())
}

/// The JSON the REST API returns for a record: the definition plus id and timestamps,
/// credentials (header values, a TLS client key) masked.
pub fn record_json(r: &Record) -> Value {
    let mut body = match &r.body {
        Value::Object(_) => r.body.clone(),
        _ => Value::Object(Map::new()),
    };
    for p in seal::credential_pointers(r.kind, &body) {
        if let Some(v) = body.pointer_mut(&p) {
            *v = Value::String(MASK.into());
        }
    }
    if let Some(m) = body.as_object_mut() {
        m.insert("id".into(), json!(r.id));
        m.insert("created_at".into(), json!(r.created_at));
        m.insert("updated_at".into(), json!(r.updated_at));
    }
    body
}

impl Registry {
    /// A registry over `store`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, ids: Arc<dyn Ids>, cache_ms: u64) -> Self {
        Self {
            store,
            clock,
            ids,
            cache_ms,
            cached: Mutex::new(None),
            announced: Mutex::new(None),
            separator: "__".into(),
            net: Default::default(),
            sealed: false,
            last_miss_reload: AtomicU64::new(0),
            gateway_id: String::new(),
        }
    }

    /// Names this gateway to its peers: a member that comes back with this id in its origin is
    /// not taken (a loop).
    pub fn with_gateway_id(mut self, id: &str) -> Self {
        self.gateway_id = id.to_string();
        self
    }

    /// This gateway's id.
    pub fn gateway_id(&self) -> &str {
        &self.gateway_id
    }

    /// Uses `separator` between an upstream's slug and a member's name.
    pub fn with_separator(mut self, separator: &str) -> Self {
        self.separator = separator.to_string();
        self
    }

    /// Refuses tool and upstream URLs that `net` does not allow (the SSRF guard).
    pub fn with_net_policy(mut self, net: crate::netguard::NetPolicy) -> Self {
        self.net = net;
        self
    }

    /// Whether the store seals credentials; without it, definitions with `headers` are refused.
    pub fn with_sealed_credentials(mut self, sealed: bool) -> Self {
        self.sealed = sealed;
        self
    }

    /// The SSRF policy in force.
    pub fn net(&self) -> &crate::netguard::NetPolicy {
        &self.net
    }

    /// What a definition may hold here: credentials (`headers`) only where they are sealed at
    /// rest, and URLs the SSRF guard allows (a tool's `url`, unless its host is a template,
    /// checked at each call; an upstream's `url` and `urls`).
    fn guard_def(&self, kind: Kind, def: &Value) -> Result<(), FieldError> {
        // `{slug}{separator}{name}` must say one thing: a slug holding the separator would let
        // one upstream's `x__y` and another's `y` under slug `gh__x` be the same name.
        if kind == Kind::Upstream {
            let name = def["name"].as_str().unwrap_or_default();
            let (field, slug) = match def["slug"].as_str() {
                Some(s) => ("slug", s.to_string()),
                None => ("name", name.to_ascii_lowercase()),
            };
            if slug.contains(self.separator.as_str()) {
                return Err(FieldError::new(
                    field,
                    format!(
                        "the slug '{slug}' holds the name separator '{}': members would be ambiguous (give a slug without it)",
                        self.separator
                    ),
                ));
            }
        }
        let credential = seal::credential_pointers(kind, def).into_iter().next();
        if let Some(p) = credential.filter(|_| !self.sealed) {
            let field = if p.starts_with("/tls/") {
                "tls.client_key"
            } else {
                p.trim_start_matches('/').split('/').next().unwrap_or("headers")
            };
            return Err(FieldError::new(
                field,
                "storing credentials needs an encryption key (MCPGW_ENCRYPTION_KEY, a Worker secret on the edge)",
            ));
        }
        let urls: Vec<(&str, &str)> = match kind {
            Kind::Tool => def["url"].as_str().map(|u| vec![("url", u)]).unwrap_or_default(),
            Kind::Upstream => def["url"]
                .as_str()
                .map(|u| ("url", u))
                .into_iter()
                .chain(
                    def["urls"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|u| u.as_str().map(|u| ("urls", u))),
                )
                .chain(def["base_url"].as_str().map(|u| ("base_url", u)))
                .collect(),
            _ => vec![],
        };
        for (field, url) in urls {
            if crate::netguard::url_host(url).is_some_and(|h| h.contains('{')) {
                continue;
            }
            self.net
                .check_url(url)
                .map_err(|e| FieldError::new(field, e.to_string()))?;
        }
        Ok(())
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The current snapshot: the cached one while younger than `cache_ms`; after that, the
    /// cached one again if the store's version says nothing was written since it was built
    /// (one cheap query instead of reading every record), else one built anew.
    pub async fn snapshot(&self) -> Result<Arc<Snapshot>, RegistryError> {
        let now = self.clock.now_ms();
        let cached = self
            .cached
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|c| (c.snapshot.clone(), c.loaded_at, c.version));
        if let Some((snap, Some(loaded_at), _)) = &cached {
            if now.saturating_sub(*loaded_at) < self.cache_ms {
                return Ok(snap.clone());
            }
        }
        // Read before the records: a write during the reading moves it past what is built.
        let version = self.store.version().await.ok();
        if let Some((snap, _, built_from)) = cached {
            if version.is_some() && built_from == version {
                if let Some(c) = self.cached.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
                    c.loaded_at = Some(now);
                }
                return Ok(snap);
            }
        }
        let snap = Arc::new(Snapshot::build(
            [
                self.store.list_raw(Kind::Tool).await?,
                self.store.list_raw(Kind::Resource).await?,
                self.store.list_raw(Kind::Prompt).await?,
                self.store.list_raw(Kind::Server).await?,
                self.store.list_raw(Kind::Upstream).await?,
                self.store.list_raw(Kind::Revocation).await?,
            ],
            &self.separator,
            &self.gateway_id,
        ));
        *self.cached.lock().unwrap_or_else(|e| e.into_inner()) = Some(Cached {
            snapshot: snap.clone(),
            loaded_at: Some(now),
            version,
        });
        // The first load is the reference later changes are measured against.
        self.announced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(snap.fingerprints);
        Ok(snap)
    }

    /// The snapshot, re-read from the store when `has` finds nothing in the cached one (at most
    /// every 250 ms): an entry created a moment ago elsewhere (by another instance, or by the
    /// Worker in front of a Durable Object) is found at once, not after the cache expires.
    pub async fn snapshot_having(&self, has: impl Fn(&Snapshot) -> bool) -> Result<Arc<Snapshot>, RegistryError> {
        let snap = self.snapshot().await?;
        if has(&snap) {
            return Ok(snap);
        }
        let now = self.clock.now_ms();
        let last = self.last_miss_reload.load(Ordering::Relaxed);
        if now.saturating_sub(last) < 250 {
            return Ok(snap);
        }
        self.last_miss_reload.store(now, Ordering::Relaxed);
        self.recheck();
        self.snapshot().await
    }

    /// Reloads the snapshot and returns the kinds whose lists changed since the last refresh
    /// (or since the first load), whoever changed them: this process, another instance sharing
    /// the database, or the Worker in front of a Durable Object.
    pub async fn refresh(&self) -> Result<Vec<Kind>, RegistryError> {
        let previous = *self.announced.lock().unwrap_or_else(|e| e.into_inner());
        self.recheck();
        let snap = self.snapshot().await?;
        *self.announced.lock().unwrap_or_else(|e| e.into_inner()) = Some(snap.fingerprints);
        let Some(previous) = previous else {
            return Ok(Vec::new());
        };
        Ok(changed_kinds(&previous, &snap.fingerprints))
    }

    /// Drops the cached snapshot (after a write).
    pub fn invalidate(&self) {
        *self.cached.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The next [`Registry::snapshot`] asks the store whether anything was written (one cheap
    /// query), instead of trusting the cache until `cache_ms`: for a lookup that missed, and
    /// for the periodic refresh.
    pub fn recheck(&self) {
        if let Some(c) = self.cached.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            c.loaded_at = None;
        }
    }

    /// A record with a fresh id, created and updated at `now`.
    fn new_record(&self, kind: Kind, key: String, body: Value, now: u64) -> Record {
        Record {
            kind,
            id: self.ids.new_id(),
            key,
            body,
            created_at: now,
            updated_at: now,
        }
    }

    /// Every record of a kind, as REST JSON.
    pub async fn list(&self, kind: Kind) -> Result<Vec<Value>, RegistryError> {
        Ok(self.store.list(kind).await?.iter().map(record_json).collect())
    }

    /// One record by id, key or (for resources) name.
    pub async fn get(&self, kind: Kind, id: &str) -> Result<Record, RegistryError> {
        if let Some(r) = self.store.get(kind, id).await? {
            return Ok(r);
        }
        if kind == Kind::Resource {
            if let Some(r) = self.store.list(kind).await?.into_iter().find(|r| r.body["name"] == id) {
                return Ok(r);
            }
        }
        Err(RegistryError::NotFound(kind_label(kind), id.to_string()))
    }

    async fn check(&self, kind: Kind, body: Value, id: Option<&str>) -> Result<(String, Value), RegistryError> {
        let (key, normalized) = model::validate(kind, body)?;
        self.guard_def(kind, &normalized)?;
        match kind {
            Kind::Server => self.check_members(&normalized).await?,
            Kind::Resource => {
                let name = normalized["name"].as_str().unwrap_or_default();
                let clash = self
                    .store
                    .list(kind)
                    .await?
                    .into_iter()
                    .find(|r| r.body["name"] == name && Some(r.id.as_str()) != id);
                if clash.is_some() {
                    return Err(RegistryError::Conflict("resource", name.to_string()));
                }
            }
            _ => {}
        }
        Ok((key, normalized))
    }

    async fn check_members(&self, server: &Value) -> Result<(), RegistryError> {
        let def: ServerDef = serde_json::from_value(server.clone()).map_err(|e| FieldError::new("", e.to_string()))?;
        for (field, kind, names) in [
            ("tools", Kind::Tool, &def.tools),
            ("resources", Kind::Resource, &def.resources),
            ("prompts", Kind::Prompt, &def.prompts),
        ] {
            for (i, n) in names.iter().enumerate() {
                if self.get(kind, n).await.is_err() && !self.is_federated_name(kind, n).await? {
                    return Err(
                        FieldError::new(format!("{field}[{i}]"), format!("no {} named '{n}'", kind.as_str())).into(),
                    );
                }
            }
        }
        for (i, n) in def.upstreams.iter().enumerate() {
            if self.get(Kind::Upstream, n).await.is_err() {
                return Err(FieldError::new(format!("upstreams[{i}]"), format!("no upstream named '{n}'")).into());
            }
        }
        if def.original_names {
            self.check_unambiguous(&def).await?;
        }
        Ok(())
    }

    /// True when `name` is a federated member's served name (or a federated resource's URI).
    async fn is_federated_name(&self, kind: Kind, name: &str) -> Result<bool, RegistryError> {
        self.invalidate();
        let snap = self.snapshot().await?;
        Ok(match kind {
            Kind::Tool => snap.tool(name).is_some_and(|t| t.fed.is_some()),
            Kind::Prompt => snap.prompt(name).is_some_and(|p| p.fed.is_some()),
            Kind::Resource => snap
                .resources
                .iter()
                .chain(snap.templates.iter())
                .any(|r| r.fed.is_some() && (r.def.key() == name || r.def.name == name)),
            _ => false,
        })
    }

    /// With `original_names`, two members of a server must not share a served name.
    async fn check_unambiguous(&self, def: &ServerDef) -> Result<(), RegistryError> {
        let snap = self.snapshot().await?;
        let ids: Vec<String> = def
            .upstreams
            .iter()
            .filter_map(|n| snap.upstream(n).map(|u| u.id.clone()))
            .collect();
        let mut seen: HashMap<(&str, String), String> = HashMap::new();
        let origin = |fed: Option<&Federated>| {
            fed.map_or("local".to_string(), |f| format!("upstream '{}'", f.upstream.def.name))
        };
        let mut check = |what: &'static str, name: String, from: String| -> Result<(), RegistryError> {
            if let Some(other) = seen.insert((what, name.clone()), from.clone()) {
                if other != from {
                    return Err(FieldError::new(
                        "original_names",
                        format!("{what} '{name}' is offered by both {other} and {from}: names would be ambiguous"),
                    )
                    .into());
                }
            }
            Ok(())
        };
        let tools = snap
            .tools
            .iter()
            .map(|t| ("tool", &t.def.name, t.fed.as_ref(), &def.tools));
        let prompts = snap
            .prompts
            .iter()
            .map(|p| ("prompt", &p.def.name, p.fed.as_ref(), &def.prompts));
        for (what, served, fed, listed) in tools.chain(prompts) {
            let member = fed.is_some_and(|f| ids.contains(&f.upstream.id)) || listed.contains(served);
            if member {
                let name = fed.map_or(served.clone(), |f| f.name.clone());
                check(what, name, origin(fed))?;
            }
        }
        Ok(())
    }

    /// Validates an upstream definition from a REST body replacing `existing` (PUT), or merged
    /// into it (PATCH, `merge = true`); either may be what a GET returned (masked headers,
    /// read-only fields).
    pub fn prepare_upstream(
        &self,
        body: Value,
        existing: Option<&Record>,
        merge: bool,
    ) -> Result<UpstreamDef, RegistryError> {
        sealed_input(Kind::Upstream, &body)?;
        let mut body = match existing.filter(|_| merge) {
            Some(rec) => {
                let mut merged = merge_patch(&rec.body, body)?;
                if let Some(m) = merged.as_object_mut() {
                    m.remove("catalog");
                }
                merged
            }
            None => body,
        };
        if let Some(rec) = existing {
            as_sent_back(Kind::Upstream, &mut body, &rec.body);
            // The catalog is read from the upstream again, whatever a GET showed of it.
            if let Some(m) = body.as_object_mut() {
                m.remove("catalog");
            }
        }
        let (_, normalized) = model::validate(Kind::Upstream, body)?;
        self.guard_def(Kind::Upstream, &normalized)?;
        serde_json::from_value(normalized).map_err(|e| FieldError::new("", e.to_string()).into())
    }

    /// Refuses an upstream whose slug (the prefix of its members' names and of its resources'
    /// aliases) another stored upstream has, case aside: the two could not be told apart.
    pub async fn check_slug(&self, def: &UpstreamDef, existing_id: Option<&str>) -> Result<(), RegistryError> {
        let mine = def.slug().to_ascii_lowercase();
        for r in self.store.list(Kind::Upstream).await? {
            if Some(r.id.as_str()) != existing_id && r.key != def.name && slugs::slug_of(&r.body) == mine {
                return Err(slugs::taken(&mine, &r.key, "slug"));
            }
        }
        Ok(())
    }

    /// Stores an upstream with its catalog: a new record, or a replacement of `existing_id`.
    pub async fn save_upstream(&self, existing_id: Option<&str>, def: &UpstreamDef) -> Result<Record, RegistryError> {
        let body = serde_json::to_value(def).map_err(|e| FieldError::new("", e.to_string()))?;
        let now = self.clock.now_ms();
        let rec = match existing_id {
            Some(id) => {
                let existing = self.get(Kind::Upstream, id).await?;
                let rec = Record {
                    key: def.name.clone(),
                    body,
                    updated_at: now.max(existing.created_at),
                    ..existing
                };
                self.store.update(rec.clone()).await?;
                rec
            }
            None => {
                let rec = self.new_record(Kind::Upstream, def.name.clone(), body, now);
                self.store.insert(rec.clone()).await?;
                rec
            }
        };
        self.invalidate();
        Ok(rec)
    }

    /// Replaces an upstream's catalog if it differs from the stored one; true if it did.
    pub async fn set_catalog(&self, id: &str, catalog: Catalog) -> Result<bool, RegistryError> {
        let rec = self.get(Kind::Upstream, id).await?;
        let mut def: UpstreamDef =
            serde_json::from_value(rec.body.clone()).map_err(|e| RegistryError::Storage(e.to_string()))?;
        if def.catalog.as_ref() == Some(&catalog) {
            return Ok(false);
        }
        def.catalog = Some(catalog);
        self.save_upstream(Some(&rec.id), &def).await?;
        Ok(true)
    }

    /// Creates a record from a REST body.
    pub async fn create(&self, kind: Kind, body: Value) -> Result<Record, RegistryError> {
        sealed_input(kind, &body)?;
        let (key, body) = self.check(kind, body, None).await?;
        let rec = self.new_record(kind, key, body, self.clock.now_ms());
        self.store.insert(rec.clone()).await?;
        self.invalidate();
        Ok(rec)
    }

    /// Replaces a record's definition (PUT), or merges fields into it (PATCH, `merge = true`).
    pub async fn update(&self, kind: Kind, id: &str, body: Value, merge: bool) -> Result<Record, RegistryError> {
        sealed_input(kind, &body)?;
        let existing = self.get(kind, id).await?;
        let mut body = if merge {
            merge_patch(&existing.body, body)?
        } else {
            body
        };
        as_sent_back(kind, &mut body, &existing.body);
        let (key, mut body) = self.check(kind, body, Some(&existing.id)).await?;
        if kind == Kind::Upstream {
            if let Some(c) = existing.body.get("catalog") {
                body["catalog"] = c.clone();
            }
        }
        let rec = Record {
            key,
            body,
            updated_at: self.clock.now_ms().max(existing.created_at),
            ..existing
        };
        self.store.update(rec.clone()).await?;
        self.invalidate();
        Ok(rec)
    }

    /// Deletes a record by id, key or name.
    pub async fn delete(&self, kind: Kind, id: &str) -> Result<(), RegistryError> {
        let existing = self.get(kind, id).await?;
        self.store.delete(kind, &existing.id).await?;
        self.invalidate();
        Ok(())
    }

    /// Creates or updates (by name or URI) everything in a seed file, atomically; returns how
    /// many entries it holds. An entry stored already exactly as the file has it is not written
    /// again (a restart on the same file writes nothing).
    pub async fn seed(&self, file: &SeedFile) -> Result<usize, RegistryError> {
        let now = self.clock.now_ms();
        // What is stored, as text: an unchanged entry is found without a tree per record.
        let mut stored: HashMap<(Kind, String), String> = HashMap::new();
        for kind in [Kind::Tool, Kind::Resource, Kind::Prompt, Kind::Server, Kind::Upstream] {
            for r in self.store.list_raw(kind).await? {
                stored.insert((kind, r.key), r.body);
            }
        }
        let mut ops = Vec::new();
        let mut entries = 0;
        let mut push = |kind: Kind, prefix: String, body: Value| -> Result<(), RegistryError> {
            let (key, body) = model::validate(kind, body)
                .and_then(|(key, body)| {
                    sealed_input(kind, &body)?;
                    self.guard_def(kind, &body).map(|()| (key, body))
                })
                .map_err(|e| FieldError::new(format!("{prefix}.{}", e.field), e.message))?;
            entries += 1;
            let text = body.to_string();
            let unchanged = stored.get(&(kind, key.clone())).is_some_and(|b| *b == text);
            if !unchanged {
                ops.push(Op::Upsert(self.new_record(kind, key, body, now)));
            }
            Ok(())
        };
        let to_value = |v: Result<Value, serde_json::Error>| {
            v.map_err(|e| RegistryError::Invalid(FieldError::new("", e.to_string())))
        };
        for (i, t) in file.tool.iter().enumerate() {
            push(Kind::Tool, format!("tool[{i}]"), to_value(serde_json::to_value(t))?)?;
        }
        for (i, r) in file.resource.iter().enumerate() {
            if r.uri_template.is_some() {
                return Err(FieldError::new(
                    format!("resource[{i}].uri_template"),
                    "belongs in [[resource_template]]",
                )
                .into());
            }
            push(
                Kind::Resource,
                format!("resource[{i}]"),
                to_value(serde_json::to_value(r))?,
            )?;
        }
        for (i, r) in file.resource_template.iter().enumerate() {
            if r.uri_template.is_none() {
                return Err(FieldError::new(format!("resource_template[{i}].uri_template"), "is required").into());
            }
            push(
                Kind::Resource,
                format!("resource_template[{i}]"),
                to_value(serde_json::to_value(r))?,
            )?;
        }
        for (i, p) in file.prompt.iter().enumerate() {
            push(Kind::Prompt, format!("prompt[{i}]"), to_value(serde_json::to_value(p))?)?;
        }
        for (i, u) in file.upstream.iter().enumerate() {
            push(
                Kind::Upstream,
                format!("upstream[{i}]"),
                to_value(serde_json::to_value(u))?,
            )?;
        }
        for (i, s) in file.server.iter().enumerate() {
            push(Kind::Server, format!("server[{i}]"), to_value(serde_json::to_value(s))?)?;
        }
        // No two upstreams, of the file or stored, with one slug.
        let others = stored
            .iter()
            .filter(|((k, _), _)| *k == Kind::Upstream)
            .map(|((_, name), body)| (name.as_str(), body.as_str()));
        slugs::check_seed(&file.upstream, others)?;
        // Server members may refer to entries of this same file or to existing ones.
        let known = |kind: Kind, name: &str, ops: &[Op]| {
            stored.contains_key(&(kind, name.to_string()))
                || ops.iter().any(|o| match o {
                    Op::Upsert(r) => r.kind == kind && (r.key == name || r.body["name"] == name),
                    _ => false,
                })
        };
        for (i, s) in file.server.iter().enumerate() {
            for (field, kind, names) in [
                ("tools", Kind::Tool, &s.tools),
                ("resources", Kind::Resource, &s.resources),
                ("prompts", Kind::Prompt, &s.prompts),
            ] {
                for (j, n) in names.iter().enumerate() {
                    if !known(kind, n, &ops)
                        && self.get(kind, n).await.is_err()
                        && !self.is_federated_name(kind, n).await?
                    {
                        return Err(FieldError::new(
                            format!("server[{i}].{field}[{j}]"),
                            format!("no {} named '{n}'", kind.as_str()),
                        )
                        .into());
                    }
                }
            }
            for (j, n) in s.upstreams.iter().enumerate() {
                if !known(Kind::Upstream, n, &ops) && self.get(Kind::Upstream, n).await.is_err() {
                    return Err(FieldError::new(
                        format!("server[{i}].upstreams[{j}]"),
                        format!("no upstream named '{n}'"),
                    )
                    .into());
                }
            }
        }
        // Keep the catalogs already read: the next refresh replaces them if they changed.
        for op in ops.iter_mut() {
            if let Op::Upsert(r) = op {
                if r.kind == Kind::Upstream {
                    if let Some(c) = self
                        .store
                        .get(Kind::Upstream, &r.key)
                        .await?
                        .and_then(|e| e.body.get("catalog").cloned())
                    {
                        r.body["catalog"] = c;
                    }
                }
            }
        }
        if !ops.is_empty() {
            self.store.apply(ops).await?;
            self.invalidate();
        }
        Ok(entries)
    }
}

/// The kinds whose lists differ between two snapshots' fingerprints
/// ([`Snapshot::fingerprints`]).
pub(crate) fn changed_kinds(before: &[u64; 5], after: &[u64; 5]) -> Vec<Kind> {
    Kind::LISTED
        .into_iter()
        .zip(before.iter().zip(after.iter()))
        .filter(|(_, (a, b))| a != b)
        .map(|(k, _)| k)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{ManualClock, MemoryStore, SeqIds};
    use futures::executor::block_on;

    fn registry() -> Registry {
        Registry::new(
            Arc::new(MemoryStore::default()),
            Arc::new(ManualClock::at(1000)),
            Arc::new(SeqIds::default()),
            60_000,
        )
        .with_net_policy(crate::netguard::NetPolicy::parse(&["loopback".into()]).expect("policy"))
    }

    /// Two upstreams whose slugs differ only in case could not be told apart by their
    /// members' names or their resources' aliases: the second is refused, by the API's check
    /// and in a seed file, naming the field.
    #[test]
    fn a_slug_another_upstream_has_is_refused() {
        block_on(async {
            let r = registry();
            let def = |v: Value| r.prepare_upstream(v, None, false).expect("def");
            let first = def(json!({"name": "GitHub", "url": "https://a.example/mcp"}));
            r.save_upstream(None, &first).await.expect("save");
            let twin = def(json!({"name": "github", "url": "https://b.example/mcp"}));
            let e = r.check_slug(&twin, None).await.unwrap_err();
            let RegistryError::Invalid(f) = e else { panic!("{e:?}") };
            assert_eq!(f.field, "slug");
            assert!(f.message.contains("GitHub"), "{}", f.message);
            let set = def(json!({"name": "github", "slug": "gh2", "url": "https://b.example/mcp"}));
            assert!(r.check_slug(&set, None).await.is_ok());
            assert!(
                r.check_slug(&first, None).await.is_ok(),
                "itself, replaced, is no clash"
            );

            let mut file = SeedFile::default();
            for (name, slug) in [("one", None), ("two", Some("ONE"))] {
                let mut v = json!({"name": name, "url": "https://c.example/mcp"});
                if let Some(s) = slug {
                    v["slug"] = json!(s);
                }
                file.upstream.push(serde_json::from_value(v).expect("def"));
            }
            let e = r.seed(&file).await.unwrap_err();
            let RegistryError::Invalid(f) = e else { panic!("{e:?}") };
            assert_eq!(f.field, "upstream[1].slug");
            file.upstream[1].slug = Some("two".into());
            file.upstream
                .push(serde_json::from_value(json!({"name": "GITHUB", "url": "https://d.example/mcp"})).expect("def"));
            let e = r.seed(&file).await.unwrap_err();
            let RegistryError::Invalid(f) = e else { panic!("{e:?}") };
            assert_eq!(f.field, "upstream[2].slug", "a stored upstream's slug counts too");
            file.upstream.pop();
            assert!(r.seed(&file).await.is_ok());
        });
    }

    #[test]
    fn the_ssrf_guard_refuses_private_urls_with_the_field_named() {
        block_on(async {
            let r = registry();
            let e = r
                .create(
                    Kind::Tool,
                    json!({"name": "meta", "url": "http://169.254.169.254/latest"}),
                )
                .await
                .unwrap_err();
            let RegistryError::Invalid(f) = e else { panic!("{e:?}") };
            assert_eq!(f.field, "url");
            assert!(f.message.contains("link-local"), "{}", f.message);
            let e = r
                .prepare_upstream(
                    json!({"name": "u", "url": "https://up.example/mcp", "urls": ["http://10.0.0.2/mcp"]}),
                    None,
                    false,
                )
                .unwrap_err();
            let RegistryError::Invalid(f) = e else { panic!("{e:?}") };
            assert_eq!(f.field, "urls");
            let mut file = SeedFile::default();
            file.tool
                .push(serde_json::from_value(json!({"name": "t", "url": "http://192.168.0.9/x"})).expect("def"));
            let e = r.seed(&file).await.unwrap_err();
            let RegistryError::Invalid(f) = e else { panic!("{e:?}") };
            assert_eq!(f.field, "tool[0].url");
            // Allowed (loopback), and templated hosts wait for the call.
            assert!(r
                .create(Kind::Tool, json!({"name": "ok", "url": "http://127.0.0.1:9/x"}))
                .await
                .is_ok());
            assert!(r
                .create(Kind::Tool, json!({"name": "tpl", "url": "http://{host}/x"}))
                .await
                .is_ok());
        });
    }

    #[test]
    fn crud_with_validation_and_unique_names() {
        block_on(async {
            let r = registry();
            let t = r
                .create(Kind::Tool, json!({"name": "w", "url": "http://h/x"}))
                .await
                .unwrap();
            assert!(matches!(
                r.create(Kind::Tool, json!({"name": "w", "url": "http://h/y"})).await,
                Err(RegistryError::Conflict(..))
            ));
            assert!(matches!(
                r.create(Kind::Tool, json!({"name": "v"})).await,
                Err(RegistryError::Invalid(_))
            ));
            let u = r
                .update(Kind::Tool, "w", json!({"description": "d"}), true)
                .await
                .unwrap();
            assert_eq!(
                (u.id.as_str(), u.body["description"].as_str()),
                (t.id.as_str(), Some("d"))
            );
            assert_eq!(
                r.snapshot()
                    .await
                    .unwrap()
                    .tool("w")
                    .unwrap()
                    .def
                    .description
                    .as_deref(),
                Some("d")
            );
            r.delete(Kind::Tool, &t.id).await.unwrap();
            assert!(matches!(r.get(Kind::Tool, "w").await, Err(RegistryError::NotFound(..))));
            assert!(
                r.snapshot().await.unwrap().tool("w").is_none(),
                "writes refresh the snapshot"
            );
        });
    }

    /// Two registries (two instances) on one store, on one clock, caching for `cache_ms`.
    fn two_on_one_store(cache_ms: u64) -> (Registry, Registry, Arc<ManualClock>) {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
        let clock = Arc::new(ManualClock::at(1000));
        let one = |store| Registry::new(store, clock.clone(), Arc::new(SeqIds::default()), cache_ms);
        (one(store.clone()), one(store), clock)
    }

    #[test]
    fn an_expired_snapshot_is_reused_while_the_store_version_stands_still() {
        block_on(async {
            let (here, elsewhere, clock) = two_on_one_store(2000);
            let first = here.snapshot().await.unwrap();
            clock.advance(std::time::Duration::from_secs(5));
            let again = here.snapshot().await.unwrap();
            assert!(
                Arc::ptr_eq(&first, &again),
                "nothing written: the same snapshot, not rebuilt"
            );
            elsewhere
                .create(Kind::Tool, json!({"name": "t", "url": "http://h/x"}))
                .await
                .unwrap();
            assert!(
                Arc::ptr_eq(&again, &here.snapshot().await.unwrap()),
                "within cache_ms the cache is trusted"
            );
            here.recheck();
            let fresh = here.snapshot().await.unwrap();
            assert!(fresh.tool("t").is_some(), "asked to recheck, the write is seen at once");
        });
    }

    #[test]
    fn refresh_reports_the_kinds_that_changed_by_any_writer() {
        block_on(async {
            let (here, elsewhere, clock) = two_on_one_store(60_000);
            assert!(
                here.refresh().await.unwrap().is_empty(),
                "the first refresh only sets the reference"
            );
            elsewhere
                .create(Kind::Tool, json!({"name": "t", "url": "http://h/x"}))
                .await
                .unwrap();
            assert_eq!(
                here.refresh().await.unwrap(),
                vec![Kind::Tool],
                "a write by another registry is seen"
            );
            assert!(here.refresh().await.unwrap().is_empty(), "and announced once");
            clock.advance(std::time::Duration::from_millis(5));
            elsewhere
                .update(Kind::Tool, "t", json!({"description": "new"}), true)
                .await
                .unwrap();
            elsewhere
                .create(Kind::Prompt, json!({"name": "p", "template": "x"}))
                .await
                .unwrap();
            assert_eq!(here.refresh().await.unwrap(), vec![Kind::Tool, Kind::Prompt]);
        });
    }

    #[test]
    fn servers_must_name_existing_members() {
        block_on(async {
            let r = registry();
            r.create(Kind::Tool, json!({"name": "w", "url": "http://h/x"}))
                .await
                .unwrap();
            let e = r
                .create(Kind::Server, json!({"name": "s", "tools": ["w", "missing"]}))
                .await
                .unwrap_err();
            let RegistryError::Invalid(f) = e else { panic!("{e:?}") };
            assert_eq!(f.field, "tools[1]");
            assert!(r
                .create(Kind::Server, json!({"name": "s", "tools": ["w"]}))
                .await
                .is_ok());
        });
    }

    #[test]
    fn seeding_is_idempotent() {
        block_on(async {
            let r = registry();
            let file: SeedFile = toml_like();
            assert_eq!(r.seed(&file).await.unwrap(), 4);
            let first = r.list(Kind::Tool).await.unwrap();
            r.seed(&file).await.unwrap();
            assert_eq!(r.list(Kind::Tool).await.unwrap().len(), 1);
            assert_eq!(
                r.list(Kind::Tool).await.unwrap()[0]["id"],
                first[0]["id"],
                "ids are kept"
            );
            assert_eq!(r.list(Kind::Resource).await.unwrap().len(), 2);
            assert_eq!(r.list(Kind::Server).await.unwrap().len(), 1);
            // The same file again writes nothing; a changed entry is written.
            let v = r.store().version().await.unwrap();
            assert_eq!(r.seed(&file).await.unwrap(), 4, "every entry counted");
            assert_eq!(r.store().version().await.unwrap(), v, "nothing written");
            let mut changed = file.clone();
            changed.tool[0].description = Some("changed".into());
            r.seed(&changed).await.unwrap();
            assert_ne!(r.store().version().await.unwrap(), v);
            assert_eq!(r.list(Kind::Tool).await.unwrap()[0]["description"], "changed");
        });
    }

    fn upstream(name: &str, tools: Value) -> UpstreamDef {
        let mut def: UpstreamDef =
            serde_json::from_value(json!({"name": name, "url": format!("http://127.0.0.1:9/{name}")})).unwrap();
        def.catalog = Some(Catalog {
            tools: serde_json::from_value(tools).unwrap(),
            prompts: vec![json!({"name": "greet", "arguments": [{"name": "who", "required": true}]})],
            resources: vec![json!({"uri": format!("{name}://doc"), "name": "doc"})],
            ..Catalog::default()
        });
        def
    }

    #[test]
    fn federated_members_are_namespaced_and_kept_verbatim() {
        block_on(async {
            let r = registry();
            let def = upstream(
                "Up",
                json!([{"name": "echo", "inputSchema": {"type": "object"}, "x-vendor": {"keep": true}}]),
            );
            r.save_upstream(None, &def).await.unwrap();
            let snap = r.snapshot().await.unwrap();
            let t = snap.tool("up__echo").expect("namespaced with the lower-cased slug");
            let fed = t.fed.as_ref().unwrap();
            assert_eq!(fed.name, "echo");
            let listed: Value = serde_json::from_str(&t.listing).unwrap();
            assert_eq!(
                (listed["name"].as_str(), &listed["x-vendor"]),
                (Some("up__echo"), &json!({"keep": true})),
                "unknown fields pass through"
            );
            let original: Value = serde_json::from_str(&fed.listing).unwrap();
            assert_eq!(original["name"], "echo");
            assert!(snap.prompt("up__greet").is_some_and(|p| p.def.arguments[0].required));
            assert!(snap.resource("Up://doc").is_some(), "resources keep their URIs");
            r.create(
                Kind::Server,
                json!({"name": "s", "upstreams": ["Up"], "original_names": true}),
            )
            .await
            .unwrap();
            let snap = r.snapshot().await.unwrap();
            let s = snap.server("s").unwrap();
            let names = |ups: Vec<Arc<Upstream>>| ups.iter().map(|u| u.def.name.clone()).collect::<Vec<_>>();
            assert_eq!(names(snap.upstreams_of(Some(s))), ["Up"], "the server's upstreams");
            assert_eq!(names(snap.upstreams_of(None)), ["Up"], "the gateway's upstreams");
            assert_eq!(
                s.tool_names.get("echo").map(|i| snap.tools[*i].def.name.as_str()),
                Some("up__echo")
            );
            assert!(s.prompt_names.contains_key("greet"));
            // The catalog is the gateway's to write: a refresh with the same one changes nothing.
            let id = snap.upstream("Up").unwrap().id.clone();
            assert!(!r.set_catalog(&id, def.catalog.clone().unwrap()).await.unwrap());
        });
    }

    /// A name is served once whoever has it (a local tool before an upstream's member, the first
    /// of an upstream's duplicates), and a member whose name breaks the MCP tool-name rules is
    /// not served at all; each left-out member is a clash its upstream shows.
    #[test]
    fn a_name_is_served_once_and_only_valid_names_are_served() {
        block_on(async {
            let r = registry();
            r.create(Kind::Tool, json!({"name": "gh__x", "url": "https://api.example.com/x"}))
                .await
                .unwrap();
            let long = "z".repeat(127);
            let def = upstream(
                "gh",
                json!([{"name": "x"}, {"name": "y"}, {"name": "y"}, {"name": "bad name"},
                       {"name": "a\u{202e}b"}, {"name": long}]),
            );
            r.save_upstream(None, &def).await.unwrap();
            let snap = r.snapshot().await.unwrap();
            let names: Vec<&str> = snap.tools.iter().map(|t| t.def.name.as_str()).collect();
            assert_eq!(names, ["gh__x", "gh__y"]);
            assert!(
                snap.tool("gh__x").unwrap().fed.is_none(),
                "the local tool keeps its name"
            );
            let id = snap.upstream("gh").unwrap().id.clone();
            assert_eq!(snap.conflicts[&id].len(), 5, "{:?}", snap.conflicts[&id]);
            // A slug holding the separator is refused: `gh__x`'s `y` would be `gh`'s `x__y`.
            let e = r
                .prepare_upstream(json!({"name": "gh__x", "url": "https://mcp.example.com/"}), None, false)
                .unwrap_err();
            assert!(matches!(&e, RegistryError::Invalid(f) if f.field == "name"), "{e:?}");
            let e = r
                .prepare_upstream(
                    json!({"name": "ok", "slug": "a__b", "url": "https://mcp.example.com/"}),
                    None,
                    false,
                )
                .unwrap_err();
            assert!(matches!(&e, RegistryError::Invalid(f) if f.field == "slug"), "{e:?}");
        });
    }

    #[test]
    fn a_listen_hearing_upstreams_needs_a_place_of_its_own() {
        block_on(async {
            let r = registry();
            let mut stateless = upstream("m", json!([{"name": "echo"}]));
            if let Some(c) = stateless.catalog.as_mut() {
                c.protocol_version = Some(crate::proto::version::ProtocolVersion::V2026_07_28);
            }
            r.save_upstream(None, &stateless).await.unwrap();
            r.save_upstream(None, &upstream("old", json!([{"name": "echo"}])))
                .await
                .unwrap();
            r.create(Kind::Server, json!({"name": "legacy", "upstreams": ["old"]}))
                .await
                .unwrap();
            let snap = r.snapshot().await.unwrap();
            let listen = |notifications: Value| crate::proto::jsonrpc::Request {
                id: serde_json::from_value(json!(1)).unwrap(),
                method: "subscriptions/listen".into(),
                params: Some(json!({ "notifications": notifications })),
            };
            let park = |n: Value, server: Option<&str>| {
                crate::engine::park_of(&listen(n), &snap, server.and_then(|s| snap.server(s)).map(|s| &**s))
            };
            let lists = json!({"toolsListChanged": true});
            assert_eq!(
                park(lists.clone(), None),
                Some(crate::engine::Park::New),
                "a 2026-07-28 upstream's list changes"
            );
            assert_eq!(
                park(lists, Some("legacy")),
                None,
                "a session-era upstream's are refreshed"
            );
            let federated = json!({"resourceSubscriptions": ["old://doc"]});
            assert_eq!(park(federated, Some("legacy")), Some(crate::engine::Park::New));
            assert_eq!(park(json!({"resourceSubscriptions": ["mine://x"]}), None), None);
        });
    }

    #[test]
    fn original_names_must_be_unambiguous() {
        block_on(async {
            let r = registry();
            for n in ["a", "b"] {
                r.save_upstream(None, &upstream(n, json!([{"name": "echo"}])))
                    .await
                    .unwrap();
            }
            let e = r
                .create(
                    Kind::Server,
                    json!({"name": "s", "upstreams": ["a", "b"], "original_names": true}),
                )
                .await
                .unwrap_err();
            let RegistryError::Invalid(f) = e else { panic!("{e:?}") };
            assert_eq!(f.field, "original_names");
            assert!(f.message.contains("echo"), "{f:?}");
            // Namespaced, the same members are fine.
            assert!(r
                .create(Kind::Server, json!({"name": "s", "upstreams": ["a", "b"]}))
                .await
                .is_ok());
            let e = r
                .create(Kind::Server, json!({"name": "t", "upstreams": ["missing"]}))
                .await
                .unwrap_err();
            let RegistryError::Invalid(f) = e else { panic!("{e:?}") };
            assert_eq!(f.field, "upstreams[0]");
        });
    }

    #[test]
    fn upstream_definitions_are_validated() {
        let bad = |body: Value| model::validate(Kind::Upstream, body).unwrap_err().field;
        assert_eq!(bad(json!({"name": "x"})), "url");
        assert_eq!(bad(json!({"name": "x", "url": "ftp://h/"})), "url");
        assert_eq!(bad(json!({"name": "x", "transport": "stdio"})), "command");
        assert_eq!(
            bad(json!({"name": "x", "transport": "stdio", "command": "n", "url": "http://h/"})),
            "url"
        );
        assert_eq!(
            bad(json!({"name": "x", "url": "http://h/", "timeout_ms": 0})),
            "timeout_ms"
        );
        assert_eq!(
            bad(json!({"name": "x", "url": "http://h/", "transport": "carrier-pigeon"})),
            "transport"
        );
        let (_, v) = model::validate(
            Kind::Upstream,
            json!({"name": "x", "urls": ["http://h/a", "http://h/b"], "catalog": {"tools": [{"name": "forged"}]}}),
        )
        .unwrap();
        assert!(v.get("catalog").is_none(), "a catalog in a request is ignored");
    }

    fn toml_like() -> SeedFile {
        serde_json::from_value(json!({
            "tool": [{"name": "weather", "url": "http://127.0.0.1:1/w"}],
            "resource": [{"uri": "docs://readme", "name": "readme", "text": "# Hi"}],
            "resource_template": [{"uri_template": "docs://p/{page}", "name": "pages", "text": "Page {{ page }}"}],
            "server": [{"name": "docs", "tools": ["weather"], "resources": ["docs://readme", "pages"]}]
        }))
        .unwrap()
    }
}
