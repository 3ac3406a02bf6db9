//! The context of one request: its session (if any), the virtual server of its endpoint, the
//! caller, and a stateless request's metadata; what the caller may see through it.

use std::sync::Arc;

use crate::observe::TraceContext;
use crate::ports::SessionState;
use crate::proto::logging::LogLevel;
use crate::proto::version::Era;
use crate::registry::uris::{self, Found, Shared, Which};
use crate::registry::{Federated, Prompt, Resource, Server, Snapshot, Tool};
use crate::security::admission::Caller;

use super::StatelessRequest;

/// The context of one request.
pub(crate) struct CallCtx {
    /// The session, if the transport has one (`/rpc` has none); shared, not copied, by the
    /// calls it makes.
    pub session: Option<Arc<SessionState>>,
    /// The virtual server the endpoint is bound to.
    pub scope: Option<Arc<Server>>,
    /// Who is calling (decides which members are visible).
    pub caller: Caller,
    /// A stateless (2026-07-28) request's metadata; none in a session or on `/rpc`.
    pub stateless: Option<Arc<StatelessRequest>>,
    /// How the request came (`streamable`, `sse`, `rpc`, `stateless`), as metrics label it.
    pub transport: &'static str,
    /// The request's trace: upstream calls continue it.
    pub trace: Option<TraceContext>,
}

impl CallCtx {
    /// The era the request speaks.
    pub(super) fn era(&self) -> Era {
        if self.stateless.is_some() {
            Era::Stateless
        } else {
            Era::Session
        }
    }

    /// The least severe log level the client wants for this request, if it wants logs.
    pub(super) fn log_level(&self) -> Option<LogLevel> {
        match &self.stateless {
            Some(m) => m.meta.log_level,
            None => self.session.as_ref().and_then(|s| s.log_level),
        }
    }

    /// True when the client declared `capability` (a stateless request in its `_meta`, a
    /// session at `initialize`; `/rpc` declares none).
    pub(super) fn declares(&self, capability: &str) -> bool {
        match (&self.stateless, &self.session) {
            (Some(m), _) => m.meta.declares(capability),
            (None, Some(s)) => s.client_capabilities.get(capability).is_some_and(|c| !c.is_null()),
            (None, None) => false,
        }
    }

    /// The client capabilities `t` needs that this client did not declare.
    pub(super) fn lacks<'t>(&self, t: &'t Tool) -> Vec<&'t str> {
        let needs = t.fed.as_ref().map_or(&[][..], |f| &f.needs[..]);
        needs.iter().map(String::as_str).filter(|c| !self.declares(c)).collect()
    }

    /// Refuses a call of `t` (served as `name`) when this client lacks a capability it needs:
    /// -32021 naming them in the stateless era, invalid params in a session.
    pub(super) fn usable(&self, t: &Tool, name: &str) -> Result<(), crate::proto::jsonrpc::RpcError> {
        let lacks = self.lacks(t);
        if lacks.is_empty() {
            return Ok(());
        }
        Err(match self.era() {
            Era::Stateless => crate::proto::meta::missing_capability(&lacks),
            Era::Session => crate::proto::jsonrpc::RpcError::invalid_params(format!(
                "Tool {name} needs a client that declares the {} capability, which this one did not",
                lacks.join(" and ")
            )),
        })
    }

    /// Whether the tools list shows `t`: visible, and usable by this client.
    fn lists_tool(&self, t: &Tool) -> bool {
        self.sees_tool(t) && self.lacks(t).is_empty()
    }

    pub(super) fn sees_tool(&self, t: &Tool) -> bool {
        self.caller.may(t.def.scope.as_deref())
            && self
                .scope
                .as_ref()
                .is_none_or(|s| s.has_member(&s.def.tools, &[&t.def.name], t.fed.as_ref()))
    }
    pub(super) fn sees_resource(&self, r: &Resource) -> bool {
        self.caller.may(r.def.scope.as_deref())
            && self
                .scope
                .as_ref()
                .is_none_or(|s| s.has_member(&s.def.resources, &[r.def.key(), &r.def.name], r.fed.as_ref()))
    }
    pub(super) fn sees_prompt(&self, p: &Prompt) -> bool {
        self.caller.may(p.def.scope.as_deref())
            && self
                .scope
                .as_ref()
                .is_none_or(|s| s.has_member(&s.def.prompts, &[&p.def.name], p.fed.as_ref()))
    }

    /// True when federated members are served under their upstream names.
    pub(super) fn original_names(&self) -> bool {
        self.scope.as_ref().is_some_and(|s| s.def.original_names)
    }

    /// The list entry this endpoint shows for a member.
    pub(super) fn listing<'a>(&self, own: &'a str, fed: Option<&'a Federated>) -> &'a str {
        match fed {
            Some(f) if self.original_names() => &f.listing,
            _ => own,
        }
    }

    /// The entries of list `what` (`tools`, `resources`, `resourceTemplates`, `prompts`) the
    /// caller sees, in order: each with where it comes from and the key naming it in the entry.
    pub(super) fn visible<'a>(
        &'a self,
        snap: &'a Snapshot,
        what: &str,
    ) -> Box<dyn Iterator<Item = (&'a str, Option<&'a Federated>, &'static str)> + 'a> {
        match what {
            "tools" => Box::new(
                snap.tools
                    .iter()
                    .filter(|t| self.lists_tool(t))
                    .map(|t| (self.listing(&t.listing, t.fed.as_ref()), t.fed.as_ref(), "name")),
            ),
            "resources" => self.resources(snap, Which::Resource, &snap.resources, "uri"),
            "resourceTemplates" => self.resources(snap, Which::Template, &snap.templates, "uriTemplate"),
            _ => Box::new(
                snap.prompts
                    .iter()
                    .filter(|p| self.sees_prompt(p))
                    .map(|p| (self.listing(&p.listing, p.fed.as_ref()), p.fed.as_ref(), "name")),
            ),
        }
    }

    /// The id of the virtual server whose endpoint this is (none: the gateway's own).
    pub(super) fn endpoint(&self) -> Option<&str> {
        self.scope.as_ref().map(|s| s.id.as_str())
    }

    /// The visible entries of `list` (static resources or templates), each under the URI this
    /// endpoint serves it by (see [`crate::registry::uris`]).
    fn resources<'a>(
        &'a self,
        snap: &'a Snapshot,
        which: Which,
        list: &'a [Arc<Resource>],
        key: &'static str,
    ) -> Box<dyn Iterator<Item = (&'a str, Option<&'a Federated>, &'static str)> + 'a> {
        let endpoint = self.endpoint();
        Box::new(
            list.iter()
                .enumerate()
                .filter(|(_, r)| self.sees_resource(r))
                .filter_map(move |(i, r)| {
                    let listing = match snap.shared.of(endpoint, which, i) {
                        None => &r.listing,
                        Some(Shared::Alias) => snap.shared.listing(which, i)?,
                        Some(Shared::Hidden) => return None,
                    };
                    Some((listing, r.fed.as_ref(), key))
                }),
        )
    }

    /// The resource (or template) `uri` names at this endpoint, for this caller.
    pub(super) fn find_resource<'s>(&self, snap: &'s Snapshot, uri: &str) -> Option<Found<'s>> {
        uris::resolve(snap, self.endpoint(), uri, |r| self.sees_resource(r))
    }

    /// The template or resource a completion's `ref/resource` names by its URI (template) as
    /// this endpoint serves it.
    pub(super) fn find_reference<'s>(&self, snap: &'s Snapshot, uri: &str) -> Option<&'s Arc<Resource>> {
        let endpoint = self.endpoint();
        let aliased = uris::unalias(uri);
        let lists = [(Which::Template, &snap.templates), (Which::Resource, &snap.resources)];
        lists.into_iter().find_map(|(which, list)| {
            list.iter().enumerate().find_map(|(i, r)| {
                let named = match (aliased, &r.fed) {
                    (Some((slug, own)), Some(f)) => {
                        f.upstream.slug == slug
                            && r.def.key() == own
                            && snap.shared.of(endpoint, which, i) != Some(Shared::Hidden)
                    }
                    (Some(_), None) => false,
                    (None, _) => r.def.key() == uri && snap.shared.of(endpoint, which, i).is_none(),
                };
                (named && self.sees_resource(r)).then_some(r)
            })
        })
    }

    /// A tool by the name this endpoint serves it under.
    pub(super) fn find_tool<'s>(&self, snap: &'s Snapshot, name: &str) -> Option<&'s Arc<Tool>> {
        match &self.scope {
            Some(s) if s.def.original_names => {
                // The scope may come from an older snapshot: use the current one's indexes.
                let server = snap.server(&s.id)?;
                let tool = server.tool_names.get(name).and_then(|i| snap.tools.get(*i))?;
                self.caller.may(tool.def.scope.as_deref()).then_some(tool)
            }
            _ => snap.tool(name).filter(|t| self.sees_tool(t)),
        }
    }

    /// A prompt by the name this endpoint serves it under.
    pub(super) fn find_prompt<'s>(&self, snap: &'s Snapshot, name: &str) -> Option<&'s Arc<Prompt>> {
        match &self.scope {
            Some(s) if s.def.original_names => {
                let server = snap.server(&s.id)?;
                let prompt = server.prompt_names.get(name).and_then(|i| snap.prompts.get(*i))?;
                self.caller.may(prompt.def.scope.as_deref()).then_some(prompt)
            }
            _ => snap.prompt(name).filter(|p| self.sees_prompt(p)),
        }
    }
}
