//! Resource URIs that several members share: two copies of one server, two filesystem servers,
//! an upstream whose URIs a local resource has too. At each endpoint (the gateway's own, or a
//! virtual server's) the first member with a URI keeps it (local resources first, then each
//! upstream's, upstreams by name) and every later one there is served under an alias that round-trips,
//! `mcpgw:{slug}/{uri}` (a peer whose conflict policy is `refuse`: left out). So a virtual
//! server whose members share no URI serves them as they are, whatever other upstreams hold; an
//! alias is taken at every endpoint where its member is served; and the upstream is always
//! asked by its own URI.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{json, Value};

use super::{Resource, Server, Snapshot};
use crate::model::{ConflictPolicy, UpstreamKind};

/// The scheme of an alias.
const ALIAS: &str = "mcpgw:";

/// The alias of `uri` at the upstream whose slug is `slug`.
pub fn alias(slug: &str, uri: &str) -> String {
    format!("{ALIAS}{slug}/{uri}")
}

/// The slug and the upstream's own URI an alias names (none: not an alias).
pub fn unalias(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix(ALIAS)?;
    let (slug, own) = rest.split_once('/')?;
    (!slug.is_empty() && !own.is_empty()).then_some((slug, own))
}

/// A static resource or a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Which {
    /// A static resource (`uri`).
    Resource,
    /// A template (`uriTemplate`).
    Template,
}

/// How an entry whose URI an earlier one has is served at an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shared {
    /// Under its alias.
    Alias,
    /// Not at all (a peer's, under its `refuse` policy).
    Hidden,
}

/// The entries served otherwise than by their own URI, per endpoint.
#[derive(Debug, Default)]
pub struct SharedUris {
    /// By endpoint (none: the gateway's own; else a virtual server's id).
    at: HashMap<Option<String>, HashMap<(Which, usize), Shared>>,
    /// The list entries of the entries aliased somewhere, with the alias as their URI.
    listings: HashMap<(Which, usize), String>,
    /// The static resources sharing each URI that more than one has, in order.
    owners: HashMap<String, Vec<usize>>,
}

/// True when `r` is a member of the endpoint of `server` (none: the gateway's own).
pub fn member_of(server: Option<&Server>, r: &Resource) -> bool {
    server.is_none_or(|s| s.has_member(&s.def.resources, &[r.def.key(), &r.def.name], r.fed.as_ref()))
}

impl SharedUris {
    /// The shared URIs of `resources` and `templates` at the gateway's endpoint and each of
    /// `servers`; with the conflicts to report at the gateway's own (by upstream id).
    pub(super) fn build(
        resources: &[Arc<Resource>],
        templates: &[Arc<Resource>],
        servers: &[Arc<Server>],
    ) -> (Self, Vec<(String, Value)>) {
        let mut me = Self::default();
        let mut conflicts = Vec::new();
        let endpoints = std::iter::once(None).chain(servers.iter().map(|s| Some(s.as_ref())));
        for server in endpoints {
            let mut here = HashMap::new();
            for (which, list) in [(Which::Resource, resources), (Which::Template, templates)] {
                let mut seen = std::collections::HashSet::new();
                for (i, r) in list.iter().enumerate().filter(|(_, r)| member_of(server, r)) {
                    // An upstream's URI that reads as an alias is always served under one of
                    // ours (so it round-trips: a peer gateway's own aliases, or a forgery).
                    let looks_aliased = r.fed.is_some() && unalias(r.def.key()).is_some();
                    if seen.insert(r.def.key()) && !looks_aliased {
                        continue;
                    }
                    // The first of a URI is local or an earlier upstream's: this one is federated.
                    let Some(f) = &r.fed else { continue };
                    let refuse = f.upstream.def.kind == UpstreamKind::Peer
                        && f.upstream.def.conflicts == Some(ConflictPolicy::Refuse);
                    let shared = if refuse { Shared::Hidden } else { Shared::Alias };
                    here.insert((which, i), shared);
                    let aliased = alias(&f.upstream.slug, r.def.key());
                    if shared == Shared::Alias && !me.listings.contains_key(&(which, i)) {
                        me.listings.insert((which, i), relisted(&r.listing, which, &aliased));
                    }
                    if server.is_none() {
                        let served = (shared == Shared::Alias).then_some(aliased);
                        let note = json!({"uri": r.def.key(), "served_as": served,
                            "reason": "another member has this URI"});
                        conflicts.push((f.upstream.id.clone(), note));
                    }
                }
            }
            if !here.is_empty() {
                me.at.insert(server.map(|s| s.id.clone()), here);
            }
        }
        let mut all: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, r) in resources.iter().enumerate() {
            all.entry(r.def.key()).or_default().push(i);
        }
        me.owners = all
            .into_iter()
            .filter(|(_, v)| v.len() > 1)
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        (me, conflicts)
    }

    /// How entry `i` is served at the endpoint of `server`, if not by its own URI.
    pub fn of(&self, server: Option<&str>, which: Which, i: usize) -> Option<Shared> {
        let here = self.at.get(&server.map(str::to_string))?;
        here.get(&(which, i)).copied()
    }

    /// The list entry of an aliased entry, with its alias as the URI.
    pub fn listing(&self, which: Which, i: usize) -> Option<&str> {
        self.listings.get(&(which, i)).map(String::as_str)
    }

    /// The static resources whose URI is `uri`, if several have it.
    fn owners(&self, uri: &str) -> Option<&[usize]> {
        self.owners.get(uri).map(Vec::as_slice)
    }
}

/// A list entry with `uri` (or `uriTemplate`) set to `to`.
fn relisted(listing: &str, which: Which, to: &str) -> String {
    let mut v: Value = serde_json::from_str(listing).unwrap_or_else(|_| json!({}));
    let key = match which {
        Which::Resource => "uri",
        Which::Template => "uriTemplate",
    };
    v[key] = json!(to);
    v.to_string()
}

/// A resource found by the URI a client named at an endpoint.
pub struct Found<'s> {
    /// The resource or template.
    pub resource: &'s Arc<Resource>,
    /// A template's variables.
    pub vars: Vec<(String, String)>,
    /// The URI its upstream knows (the client's, unless it named an alias).
    pub own_uri: String,
}

/// The resource `uri` names at the endpoint of `server` for a caller who `sees` what it may:
/// an alias names its upstream's resource (or one of its templates); a URI names the entry that
/// keeps it there.
pub fn resolve<'s>(
    snap: &'s Snapshot,
    server: Option<&str>,
    uri: &str,
    sees: impl Fn(&Resource) -> bool,
) -> Option<Found<'s>> {
    let found = |resource: &'s Arc<Resource>, vars: Vec<(String, String)>, own: &str| Found {
        resource,
        vars,
        own_uri: own.to_string(),
    };
    if let Some((slug, own)) = unalias(uri) {
        // Not one the endpoint leaves out (a peer's under `refuse`).
        let served = |which: Which, i: usize| snap.shared.of(server, which, i) != Some(Shared::Hidden);
        let of_upstream = |r: &Arc<Resource>| r.fed.as_ref().is_some_and(|f| f.upstream.slug == slug) && sees(r);
        let resources = snap.resources.iter().enumerate();
        if let Some((_, r)) = resources
            .filter(|(i, r)| served(Which::Resource, *i) && of_upstream(r))
            .find(|(_, r)| r.def.key() == own)
        {
            return Some(found(r, Vec::new(), own));
        }
        let templates = snap.templates.iter().enumerate();
        return templates
            .filter(|(i, r)| served(Which::Template, *i) && of_upstream(r))
            .find_map(|(_, r)| {
                let vars = r.template.as_ref()?.matches(own)?;
                Some(found(r, vars.into_iter().collect(), own))
            });
    }
    let keeps = |which: Which, i: usize| snap.shared.of(server, which, i).is_none();
    let single;
    let owners = match snap.shared.owners(uri) {
        Some(o) => o,
        None => {
            single = snap.resource_position(uri);
            single.as_slice()
        }
    };
    if let Some(i) = owners
        .iter()
        .copied()
        .find(|i| keeps(Which::Resource, *i) && sees(&snap.resources[*i]))
    {
        return Some(found(&snap.resources[i], Vec::new(), uri));
    }
    snap.templates
        .iter()
        .enumerate()
        .filter(|(i, r)| keeps(Which::Template, *i) && sees(r))
        .find_map(|(_, r)| {
            let vars = r.template.as_ref()?.matches(uri)?;
            Some(found(r, vars.into_iter().collect(), uri))
        })
}

/// The URI a client at the endpoint of `server` knows the resource `uri` of upstream `up` by:
/// its alias where it is served under one (none: by `uri` itself).
pub fn served_as(snap: &Snapshot, server: Option<&str>, up: &str, uri: &str) -> Option<String> {
    let of_up = |r: &Resource| {
        r.fed
            .as_ref()
            .filter(|f| f.upstream.id == up)
            .map(|f| f.upstream.slug.clone())
    };
    let owners = snap
        .shared
        .owners(uri)
        .map(<[usize]>::to_vec)
        .unwrap_or_else(|| snap.resource_position(uri));
    for i in owners {
        if let Some(slug) = of_up(&snap.resources[i]) {
            return (snap.shared.of(server, Which::Resource, i) == Some(Shared::Alias)).then(|| alias(&slug, uri));
        }
    }
    snap.templates.iter().enumerate().find_map(|(i, r)| {
        let slug = of_up(r)?;
        r.template.as_ref()?.matches(uri)?;
        (snap.shared.of(server, Which::Template, i) == Some(Shared::Alias)).then(|| alias(&slug, uri))
    })
}

/// `notifications/resources/updated` from upstream `up`, for a client at the endpoint of
/// `server`: its URI made the alias the client knows, where it has one.
pub fn updated_as_served(snap: &Snapshot, server: Option<&str>, up: &str, msg: &mut Value) {
    let Some(uri) = msg["params"]["uri"].as_str() else {
        return;
    };
    if let Some(alias) = served_as(snap, server, up, uri) {
        msg["params"]["uri"] = json!(alias);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alias_round_trips_whatever_the_uri_holds() {
        for uri in ["test://static-text", "file:///a/b c", "mcpgw:x/y://z", "urn:isbn:1"] {
            let a = alias("up-1", uri);
            assert_eq!(unalias(&a), Some(("up-1", uri)), "{a}");
        }
        assert_eq!(unalias("test://x"), None);
        assert_eq!(unalias("mcpgw:/x"), None);
        assert_eq!(unalias("mcpgw:slug"), None);
    }
}
