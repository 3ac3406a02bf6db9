//! The REST admin API: JSON create/read/update/delete and list for `/tools`, `/resources`,
//! `/prompts`, `/servers`, `/gateways` (upstreams, connected and read before they are stored)
//! and `/auth/revocations`. Every kind goes through the same handler; what differs per kind
//! lives in [`crate::model`] (validation) and [`crate::registry`] (membership checks).

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use percent_encoding::percent_decode_str;
use serde_json::Value;

use std::sync::Arc;

use crate::federation::{upstream_error, Federation};
use crate::http::response::{api_failure, json_response, method_not_allowed, Body, Failure};
use crate::model::UpstreamDef;
use crate::ports::{Kind, Record};
use crate::registry::{record_json, Registry, RegistryError};
use crate::session::Sessions;

/// Why the admin API refused a request: its error enum, answered by
/// [`crate::http::response::failure`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum AdminError {
    /// The registry refused (invalid, not found, conflict, storage).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A stdio upstream's command set through the API while the host's operator did not allow it.
    #[error("a stdio upstream's command, args and env run on the gateway's host: set them in the seed file (--config), or allow the API to with MCPGW_ALLOW_STDIO_API=true")]
    StdioDisabled,
    /// An upstream that could not be reached or read (502).
    #[error("{0}")]
    Upstream(String),
    /// The body is declared as something other than JSON.
    #[error("Content-Type must be application/json")]
    NotJson,
    /// The body is not JSON.
    #[error("the body is not valid JSON: {0}")]
    BadJson(String),
}

impl Failure for AdminError {
    fn status(&self) -> StatusCode {
        match self {
            AdminError::Registry(RegistryError::Invalid(_)) => StatusCode::UNPROCESSABLE_ENTITY,
            AdminError::Registry(RegistryError::NotFound(..)) => StatusCode::NOT_FOUND,
            AdminError::Registry(RegistryError::Conflict(..)) => StatusCode::CONFLICT,
            AdminError::Registry(RegistryError::Storage(_)) => StatusCode::SERVICE_UNAVAILABLE,
            AdminError::StdioDisabled => StatusCode::FORBIDDEN,
            AdminError::Upstream(_) => StatusCode::BAD_GATEWAY,
            AdminError::NotJson => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AdminError::BadJson(_) => StatusCode::BAD_REQUEST,
        }
    }
    fn api_code(&self) -> &'static str {
        match self {
            AdminError::Registry(RegistryError::Invalid(_)) => "validation_failed",
            AdminError::Registry(RegistryError::NotFound(..)) => "not_found",
            AdminError::Registry(RegistryError::Conflict(..)) => "conflict",
            AdminError::Registry(RegistryError::Storage(_)) => "storage_unavailable",
            AdminError::StdioDisabled => "stdio_api_disabled",
            AdminError::Upstream(_) => "upstream_unavailable",
            AdminError::NotJson => "unsupported_media_type",
            AdminError::BadJson(_) => "invalid_json",
        }
    }
    fn field(&self) -> Option<&str> {
        match self {
            AdminError::Registry(RegistryError::Invalid(f)) => Some(f.field.as_str()).filter(|f| !f.is_empty()),
            AdminError::Registry(RegistryError::Conflict(..)) => Some("name"),
            AdminError::StdioDisabled => Some("transport"),
            _ => None,
        }
    }
}

/// The REST response for a registry error.
fn registry_error(e: RegistryError) -> Response<Body> {
    api_failure(&AdminError::Registry(e))
}

/// The admin API over the registry; upstream writes go through federation, and every write
/// ends with clients hearing of list changes.
pub(crate) struct Admin {
    registry: Arc<Registry>,
    fed: Arc<Federation>,
    sessions: Arc<Sessions>,
    /// `allow_stdio_api`: whether this API may set what a stdio upstream runs.
    stdio: bool,
}

/// Why a write through the API may not set what `def` runs, if it may not: a stdio upstream's
/// command, arguments and environment are programs run on this host, so they are the host
/// operator's (seed file, CLI) unless `MCPGW_ALLOW_STDIO_API` says otherwise. A write that
/// leaves them as they were (a description changed) passes.
fn stdio_refused(def: &UpstreamDef, existing: Option<&Record>, allowed: bool) -> Option<Response<Body>> {
    use crate::model::Transport;
    if allowed || def.transport != Transport::Stdio {
        return None;
    }
    let before = existing.and_then(|r| serde_json::from_value::<UpstreamDef>(r.body.clone()).ok());
    let unchanged = before.is_some_and(|b| {
        b.transport == Transport::Stdio && b.command == def.command && b.args == def.args && b.env == def.env
    });
    (!unchanged).then(|| api_failure(&AdminError::StdioDisabled))
}

/// 502 for an upstream that could not be reached or read.
fn bad_gateway(e: &crate::proto::jsonrpc::RpcError) -> Response<Body> {
    api_failure(&AdminError::Upstream(e.message.clone()))
}

/// 201 with the new record and its `Location` under the collection `path`.
fn created(path: &str, id: &str, body: &Value) -> Response<Body> {
    let mut r = json_response(StatusCode::CREATED, body);
    let loc = format!("{}/{id}", path.trim_end_matches('/'));
    if let Ok(v) = HeaderValue::from_str(&loc) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn no_content() -> Response<Body> {
    let mut r = Response::new(Body::Empty);
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

fn parse_body(req: &Request<Bytes>) -> Result<Value, AdminError> {
    if let Some(ct) = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
        let m = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        if m != "application/json" && !m.ends_with("+json") {
            return Err(AdminError::NotJson);
        }
    }
    serde_json::from_slice(req.body()).map_err(|e| AdminError::BadJson(e.to_string()))
}

impl Admin {
    /// The admin API over these services.
    pub fn new(registry: Arc<Registry>, fed: Arc<Federation>, sessions: Arc<Sessions>, stdio: bool) -> Self {
        Self {
            registry,
            fed,
            sessions,
            stdio,
        }
    }

    /// Handles `/{collection}` and `/{collection}/{id}` (revocations: `/auth/revocations[/{jti}]`).
    pub async fn collection(&self, req: Request<Bytes>, kind: Kind, id: Option<&str>) -> Response<Body> {
        let path = req.uri().path();
        let id = id.map(|i| percent_decode_str(i).decode_utf8_lossy().into_owned());
        if kind == Kind::Upstream {
            return self.admin_upstream(&req, id).await;
        }
        let result = match (req.method().clone(), id) {
            (Method::GET, None) => self
                .registry
                .list(kind)
                .await
                .map(|items| json_response(StatusCode::OK, &Value::Array(items))),
            (Method::POST, None) => {
                let body = match parse_body(&req) {
                    Ok(b) => b,
                    Err(e) => return api_failure(&e),
                };
                self.registry
                    .create(kind, body)
                    .await
                    .map(|rec| created(path, &rec.id, &record_json(&rec)))
            }
            (Method::GET, Some(id)) => self
                .registry
                .get(kind, &id)
                .await
                .map(|rec| json_response(StatusCode::OK, &record_json(&rec))),
            (m @ (Method::PUT | Method::PATCH), Some(id)) => {
                let body = match parse_body(&req) {
                    Ok(b) => b,
                    Err(e) => return api_failure(&e),
                };
                self.registry
                    .update(kind, &id, body, m == Method::PATCH)
                    .await
                    .map(|rec| json_response(StatusCode::OK, &record_json(&rec)))
            }
            (Method::DELETE, Some(id)) => self.registry.delete(kind, &id).await.map(|()| no_content()),
            (_, None) => return method_not_allowed("GET, POST"),
            (_, Some(_)) => return method_not_allowed("GET, PUT, PATCH, DELETE"),
        };
        self.finish(&req, result).await
    }

    /// An upstream as the REST API shows it: header values masked, health added.
    fn upstream_json(&self, rec: &Record) -> Value {
        let mut v = record_json(rec);
        v["status"] = match self.fed.health_of(&rec.id) {
            Some(h) => serde_json::to_value(h).unwrap_or(Value::Null),
            None => Value::Null,
        };
        v
    }

    /// `/gateways` and `/gateways/{id}`: registering connects, reads the catalog and stores both;
    /// an upstream that cannot be reached is refused with 502 and nothing is stored.
    async fn admin_upstream(&self, req: &Request<Bytes>, id: Option<String>) -> Response<Body> {
        let path = req.uri().path();
        let result: Result<Response<Body>, RegistryError> = match (req.method().clone(), id) {
            (Method::GET, None) => match self.registry.store().list(Kind::Upstream).await {
                Ok(recs) => Ok(json_response(
                    StatusCode::OK,
                    &Value::Array(recs.iter().map(|r| self.upstream_json(r)).collect()),
                )),
                Err(e) => Err(e.into()),
            },
            (Method::GET, Some(id)) => match self.registry.get(Kind::Upstream, &id).await {
                Ok(rec) => {
                    let mut v = self.upstream_json(&rec);
                    // Members left out (a name served by another, a name the MCP rules refuse) or
                    // renamed by a peer's conflict policy.
                    let snap = self.registry.snapshot().await.ok();
                    let listed = snap.as_ref().and_then(|s| s.conflicts.get(&rec.id)).cloned();
                    v["name_conflicts"] = Value::Array(listed.unwrap_or_default());
                    if v["kind"] == "peer" {
                        // What the peer says of its own upstreams, now.
                        if let Ok(def) = serde_json::from_value::<UpstreamDef>(rec.body.clone()) {
                            match self.fed.peer_upstreams(&def).await {
                                Ok(list) => v["peer_upstreams"] = list,
                                Err(e) => v["peer_upstreams_error"] = Value::String(e.to_string()),
                            }
                        }
                    }
                    Ok(json_response(StatusCode::OK, &v))
                }
                Err(e) => Err(e),
            },
            (m @ (Method::POST | Method::PUT | Method::PATCH), id) => {
                if m == Method::POST && id.is_some() {
                    return method_not_allowed("GET, PUT, PATCH, DELETE");
                }
                if m != Method::POST && id.is_none() {
                    return method_not_allowed("GET, POST");
                }
                let body = match parse_body(req) {
                    Ok(b) => b,
                    Err(e) => return api_failure(&e),
                };
                let existing = match &id {
                    Some(id) => match self.registry.get(Kind::Upstream, id).await {
                        Ok(r) => Some(r),
                        Err(e) => return registry_error(e),
                    },
                    None => None,
                };
                let def = match self
                    .registry
                    .prepare_upstream(body, existing.as_ref(), m == Method::PATCH)
                {
                    Ok(d) => d,
                    Err(e) => return registry_error(e),
                };
                if let Some(refused) = stdio_refused(&def, existing.as_ref(), self.stdio) {
                    return refused;
                }
                // The name and the slug must be free before anything is sent to the upstream.
                if let Ok(other) = self.registry.get(Kind::Upstream, &def.name).await {
                    if existing.as_ref().is_none_or(|e| e.id != other.id) {
                        return registry_error(RegistryError::Conflict("upstream", def.name.clone()));
                    }
                }
                if let Err(e) = self
                    .registry
                    .check_slug(&def, existing.as_ref().map(|e| e.id.as_str()))
                    .await
                {
                    return registry_error(e);
                }
                // An upstream acting for each caller is read as the administrator registering
                // it (a token exchanged from theirs).
                let who = crate::security::admission::Caller::of(req, "");
                let acting = who.identity.map(|i| crate::upstream::Acting {
                    subject: i.subject,
                    upstream: existing.as_ref().map(|e| e.id.clone()).unwrap_or_default(),
                    token: who.token,
                });
                self.save_upstream(def, existing.as_ref(), path, acting).await
            }
            (Method::DELETE, Some(id)) => {
                let before = self.registry.snapshot().await.ok();
                let gone = before.as_ref().and_then(|s| s.upstream(&id)).cloned();
                match self.registry.delete(Kind::Upstream, &id).await {
                    Ok(()) => {
                        self.fed.drop_upstream_links(&id);
                        // Every caller's tokens for it are revoked and forgotten.
                        if let Some(up) = gone {
                            self.fed.drop_upstream_links(&up.id);
                            let _ = self
                                .fed
                                .vault()
                                .forget_upstream(self.fed.http(), &up.id, Some(&up.def))
                                .await;
                        }
                        Ok(no_content())
                    }
                    Err(e) => Err(e),
                }
            }
            (_, None) => return method_not_allowed("GET, POST"),
            (_, Some(_)) => return method_not_allowed("GET, PUT, PATCH, DELETE"),
        };
        self.finish(req, result).await
    }

    /// The response of an admin request; after a write, clients hear of list changes.
    async fn finish(&self, req: &Request<Bytes>, result: Result<Response<Body>, RegistryError>) -> Response<Body> {
        match result {
            Ok(resp) => {
                if req.method() != Method::GET {
                    self.sessions.refresh_registry().await;
                }
                resp
            }
            Err(e) => registry_error(e),
        }
    }

    async fn save_upstream(
        &self,
        mut def: UpstreamDef,
        existing: Option<&Record>,
        path: &str,
        acting: Option<crate::upstream::Acting>,
    ) -> Result<Response<Body>, RegistryError> {
        let per_user = def.auth.as_ref().is_some_and(|a| a.per_user());
        let catalog = match self.fed.read_catalog(&def, acting).await {
            Ok(c) => c,
            // An upstream acting for each caller may show nothing without a caller's token: its
            // catalog is read once the first caller connects.
            Err(crate::upstream::UpstreamError::Unauthorized(_) | crate::upstream::UpstreamError::NeedsConsent)
                if per_user =>
            {
                existing
                    .and_then(|r| r.body.get("catalog").cloned())
                    .and_then(|c| serde_json::from_value(c).ok())
                    .unwrap_or_default()
            }
            // An inline OpenAPI document that cannot be used is the request's mistake.
            Err(crate::upstream::UpstreamError::Protocol(m)) if def.openapi.is_some() => {
                return Err(crate::model::FieldError::new("openapi", m).into())
            }
            Err(e) => return Ok(bad_gateway(&upstream_error(&def.name, &e))),
        };
        // Where an OpenAPI document says its API is, the SSRF policy allows, or it is refused now
        // rather than at each call.
        if let Some(spec) = &catalog.openapi {
            let field = if def.base_url.is_some() { "base_url" } else { "openapi" };
            self.registry
                .net()
                .check_url(&spec.base_url)
                .map_err(|e| crate::model::FieldError::new(field, format!("the API's URL {}: {e}", spec.base_url)))?;
        }
        def.catalog = Some(catalog);
        // A caller's authorization goes to the server the upstream names at its registration,
        // and nowhere else later.
        if def.auth.as_ref().is_some_and(|a| a.consents() && a.issuer().is_none()) {
            match self.fed.vault().issuer_of(self.fed.http(), &def).await {
                Ok(found) => {
                    if let Some(auth) = def.auth.as_mut() {
                        auth.set_issuer(found);
                    }
                }
                Err(e) => {
                    let e = crate::proto::jsonrpc::RpcError::internal(format!(
                        "upstream '{}': its authorization server could not be found ({e}); set auth.issuer",
                        def.name
                    ));
                    return Ok(bad_gateway(&e));
                }
            }
        }
        // Credentials stay with the authorization server they were first sent to.
        if let Some(found) = self.fed.pinned_issuer(&def) {
            if let Some(auth) = def.auth.as_mut().filter(|a| a.issuer().is_none()) {
                auth.set_issuer(found);
            }
        }
        let rec = self
            .registry
            .save_upstream(existing.map(|r| r.id.as_str()), &def)
            .await?;
        if let Some(old) = existing {
            // Its URL, transport or headers may have changed: sessions open anew.
            self.fed.drop_upstream_links(&old.id);
        }
        self.fed.mark_refreshed(&rec.id);
        let body = self.upstream_json(&rec);
        Ok(match existing {
            None => created(path, &rec.id, &body),
            Some(_) => json_response(StatusCode::OK, &body),
        })
    }

    /// `POST /gateways/{id}/refresh`: reads the catalog again now.
    pub async fn refresh(&self, req: &Request<Bytes>, id: &str) -> Response<Body> {
        if req.method() != Method::POST {
            return method_not_allowed("POST");
        }
        let id = percent_decode_str(id).decode_utf8_lossy().into_owned();
        let rec = match self.registry.get(Kind::Upstream, &id).await {
            Ok(r) => r,
            Err(e) => return registry_error(e),
        };
        match self.fed.refresh_catalog(&rec.id).await {
            Ok(changed) => match self.registry.get(Kind::Upstream, &rec.id).await {
                Ok(rec) => {
                    let mut v = self.upstream_json(&rec);
                    v["changed"] = Value::Bool(changed);
                    json_response(StatusCode::OK, &v)
                }
                Err(e) => registry_error(e),
            },
            Err(e) => bad_gateway(&e),
        }
    }
}
