//! The token vault (issue 30's `user` mode): each caller's tokens for each upstream that
//! authenticates its users, sealed at rest in the [`Store`] (kind `connection`, bound to the
//! record's key), refreshed shortly before they expire, dropped when a refresh is refused,
//! revoked at the authorization server when the caller disconnects or the upstream is removed.
//!
//! How a caller connects: a call finding no connection gets a link to the connect page with a
//! ticket (kind `consent`, random, bound to caller and upstream); the page, opened by the same
//! caller, starts the authorization code flow (PKCE S256, state, resource), remembered under
//! the state's digest; the callback takes that once, checks state, issuer (RFC 9207), callback
//! and caller, and redeems the code. Tokens are never in a log, an error or a `Debug`; they go
//! only to the resource they were got for.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use http::HeaderValue;

use super::authorize::{self, query_param, Pending};
use super::challenge::BearerChallenge;
use super::discovery;
use super::grants::{client_auth, resource_of, token_endpoint_of, GrantError};
use super::pkce::Pkce;
use super::registration::{Client, Clients, How};
use super::token::{self, Grant, TokenError, TokenRequest, Tokens};
use super::vault_records::{
    bearer_header, client_of, client_ref, conn_key, pending_key, secret_context, ticket_key, Consent, Kept, Secrets,
    Stored,
};
pub use super::vault_records::{ConnectionInfo, Ticket, VaultError};
use crate::model::UpstreamDef;
use crate::ports::{Clock, Crypto, HttpClient, Ids, Kind, Op, Record, Store, StoreError};
use crate::registry::seal::{nonce, SealError, Sealer};

/// A token is refreshed this long before it expires.
const EARLY_MS: u64 = 30_000;
/// How long a connect link lives.
const TICKET_MS: u64 = 15 * 60_000;
/// How long an authorization under way waits for its callback.
const PENDING_MS: u64 = 10 * 60_000;
/// The most authorizations asked for and not finished, every caller together.
const MAX_CONSENTS: usize = 10_000;
/// The most of them one caller may have.
const MAX_CONSENTS_EACH: usize = 32;
/// The most tokens kept in memory.
const MAX_KEPT: usize = 4096;

/// The vault.
pub struct Vault {
    store: Arc<dyn Store>,
    sealer: Arc<Sealer>,
    /// Who the gateway is at each authorization server.
    clients: Clients,
    /// Connections whose upstream asked for more scopes (step-up): what the next connect link
    /// asks for.
    wants: Mutex<HashMap<String, String>>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn Ids>,
    crypto: Arc<dyn Crypto>,
    kept: Mutex<HashMap<String, Kept>>,
    /// Connections whose access token an upstream refused: refreshed before the next use.
    stale: Mutex<HashSet<String>>,
    /// One refresh at a time per connection (a refresh token used twice may be refused the
    /// second time); a slow server holds up only its own connections.
    refreshing: Mutex<HashMap<String, Arc<futures::lock::Mutex<()>>>>,
    /// How long a token kept is used without looking at the store: the registry's own cache
    /// time, so that a disconnection made through another instance (or, on the edge, the
    /// Worker while a session's object holds the link) takes effect as soon as a revocation.
    recheck_ms: u64,
}

impl Vault {
    /// A vault over `store`, sealing with `sealer` (of [`crate::registry::seal::Purpose::Vault`]).
    #[cfg_attr(target_family = "wasm", allow(clippy::arc_with_non_send_sync))]
    pub fn new(
        store: Arc<dyn Store>,
        sealer: Sealer,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn Ids>,
        crypto: Arc<dyn Crypto>,
        recheck_ms: u64,
    ) -> Self {
        let sealer = Arc::new(sealer);
        Self {
            recheck_ms,
            clients: Clients::new(store.clone(), sealer.clone(), clock.clone(), ids.clone()),
            wants: Mutex::new(HashMap::new()),
            store,
            sealer,
            clock,
            ids,
            crypto,
            kept: Mutex::new(HashMap::new()),
            stale: Mutex::new(HashSet::new()),
            refreshing: Mutex::new(HashMap::new()),
        }
    }

    fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    /// The `Authorization` value for the caller `subject`'s request to the upstream `up_id`
    /// (defined by `def`): the token kept, else the stored one, refreshed when it is about to
    /// expire or the upstream refused it; after an `insufficient_scope` (`challenge`), the
    /// caller is asked again, for the scopes granted and those asked.
    pub async fn bearer(
        &self,
        http: &dyn HttpClient,
        subject: &str,
        up_id: &str,
        def: &UpstreamDef,
        challenge: Option<&BearerChallenge>,
    ) -> Result<HeaderValue, VaultError> {
        let key = conn_key(up_id, subject);
        if let Some(c) = challenge.filter(|c| c.error.as_deref() == Some("insufficient_scope")) {
            return Err(self.step_up(&key, c).await);
        }
        let url = def.endpoints().first().map(|u| resource_of(u));
        let now = self.now();
        let is_stale = lock(&self.stale).contains(&key);
        if !is_stale {
            let recent = lock(&self.kept)
                .get(&key)
                .filter(|k| k.renew_at_ms > now && now < k.checked_at_ms.saturating_add(self.recheck_ms))
                .filter(|k| k.resource == url)
                .map(|k| k.header.clone());
            if let Some(h) = recent {
                return Ok(h);
            }
        }
        let version = self.store.version().await.ok();
        if let (false, Some(version)) = (is_stale, version) {
            let mut kept = lock(&self.kept);
            let still = kept
                .get_mut(&key)
                .filter(|k| k.renew_at_ms > now && k.version == version && k.resource == url)
                .map(|k| {
                    k.checked_at_ms = now;
                    k.header.clone()
                });
            if let Some(h) = still {
                return Ok(h);
            }
        }
        let (mut stored, mut secrets) = self.load(&key).await?.ok_or(VaultError::NotConnected)?;
        // Tokens go only to the resource and from the server they were got for: an upstream
        // whose URL or authorization server changed since asks its callers again.
        let moved = stored.resource.is_some() && stored.resource != url;
        let other_server = def
            .auth
            .as_ref()
            .and_then(|a| a.issuer())
            .is_some_and(|i| i != stored.issuer);
        if moved || other_server {
            self.drop_key(&key).await?;
            return Err(VaultError::NotConnected);
        }
        let due = is_stale || stored.expires_at.is_some_and(|e| e <= now + EARLY_MS);
        if due {
            let one = self.refresh_lock(&key);
            let _one = one.lock().await;
            // Another request may have refreshed it meanwhile.
            let (s, t) = self.load(&key).await?.ok_or(VaultError::NotConnected)?;
            let fresh = !is_stale && s.expires_at.is_none_or(|e| e > now + EARLY_MS);
            let refreshed_elsewhere = t.a != secrets.a;
            (stored, secrets) = (s, t);
            if !fresh && !refreshed_elsewhere {
                (stored, secrets) = self.refresh(http, &key, stored, secrets, def).await?;
            }
            lock(&self.stale).remove(&key);
        }
        let header = bearer_header(&secrets.a)?;
        let renew_at_ms = stored.expires_at.map_or(u64::MAX, |e| e.saturating_sub(EARLY_MS));
        // Kept at the version read before the connection was (a write since, even this
        // refresh's own, means reading it again); without one, not kept.
        let Some(version) = version else {
            return Ok(header);
        };
        let mut kept = lock(&self.kept);
        if kept.len() >= MAX_KEPT {
            kept.retain(|_, k| k.renew_at_ms > now && k.version == version);
            if kept.len() >= MAX_KEPT {
                kept.clear();
            }
        }
        kept.insert(
            key,
            Kept {
                header: header.clone(),
                resource: url,
                renew_at_ms,
                version,
                checked_at_ms: now,
            },
        );
        Ok(header)
    }

    /// The lock refreshes of the connection `key` take.
    fn refresh_lock(&self, key: &str) -> Arc<futures::lock::Mutex<()>> {
        let mut all = lock(&self.refreshing);
        if all.len() >= MAX_KEPT {
            all.retain(|_, l| Arc::strong_count(l) > 1);
        }
        all.entry(key.to_string()).or_default().clone()
    }

    /// The upstream wants more scopes than the caller's connection `key` grants: the next
    /// connect link asks for both; when it asks for nothing new, the caller is not asked.
    async fn step_up(&self, key: &str, c: &BearerChallenge) -> VaultError {
        let granted = match self.load(key).await {
            Ok(Some((stored, _))) => stored.scope,
            Ok(None) => return VaultError::NotConnected,
            Err(e) => return e,
        };
        let mut all: Vec<&str> = granted.as_deref().unwrap_or_default().split_whitespace().collect();
        let before = all.len();
        for s in c.scope.as_deref().unwrap_or_default().split_whitespace() {
            if !all.contains(&s) {
                all.push(s);
            }
        }
        if all.len() == before {
            return VaultError::Scope {
                asked: c.scope.clone(),
                granted,
            };
        }
        let mut wants = lock(&self.wants);
        if wants.len() >= MAX_KEPT {
            wants.clear();
        }
        wants.insert(key.to_string(), all.join(" "));
        VaultError::NotConnected
    }

    /// The upstream refused the caller's token: the next use refreshes it (or, without a
    /// refresh token, asks the caller again).
    pub fn refused(&self, subject: &str, up_id: &str) {
        let key = conn_key(up_id, subject);
        lock(&self.kept).remove(&key);
        let mut stale = lock(&self.stale);
        if stale.len() >= MAX_KEPT {
            stale.clear();
        }
        stale.insert(key);
    }

    /// Whether the caller has a connection to the upstream made at `since_ms` or later.
    pub async fn connected_since(&self, subject: &str, up_id: &str, since_ms: u64) -> bool {
        match self.store.get(Kind::Connection, &conn_key(up_id, subject)).await {
            Ok(Some(rec)) => rec.body["connected_at"].as_u64().is_some_and(|t| t >= since_ms),
            _ => false,
        }
    }

    async fn load(&self, key: &str) -> Result<Option<(Stored, Secrets)>, VaultError> {
        let Some(rec) = self.store.get(Kind::Connection, key).await? else {
            return Ok(None);
        };
        if rec.key != key {
            return Ok(None);
        }
        let stored: Stored =
            serde_json::from_value(rec.body).map_err(|e| StoreError::Backend(format!("a connection record: {e}")))?;
        let plain = match self.sealer.open_in(key, &stored.tokens).await {
            Ok(p) => p,
            // Sealed under another key (rotated, or another instance's): unusable, so the
            // caller is asked to connect again.
            Err(SealError::OtherKey) => {
                self.store.delete(Kind::Connection, &rec.id).await?;
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        let secrets: Secrets =
            serde_json::from_str(&plain).map_err(|e| StoreError::Backend(format!("a connection's tokens: {e}")))?;
        Ok(Some((stored, secrets)))
    }

    async fn save(&self, key: &str, mut stored: Stored, secrets: &Secrets) -> Result<Stored, VaultError> {
        let plain = serde_json::to_string(secrets).map_err(|e| StoreError::Backend(e.to_string()))?;
        stored.tokens = self.sealer.seal_in(key, &plain, nonce(&*self.ids)).await?;
        stored.refreshable = secrets.r.is_some();
        let now = self.now();
        let body = serde_json::to_value(&stored).map_err(|e| StoreError::Backend(e.to_string()))?;
        self.store
            .apply(vec![Op::Upsert(Record {
                kind: Kind::Connection,
                id: self.ids.new_id(),
                key: key.to_string(),
                body,
                created_at: now,
                updated_at: now,
            })])
            .await?;
        Ok(stored)
    }

    /// Refreshes a connection; a refusal drops it (the caller is asked again).
    async fn refresh(
        &self,
        http: &dyn HttpClient,
        key: &str,
        stored: Stored,
        secrets: Secrets,
        def: &UpstreamDef,
    ) -> Result<(Stored, Secrets), VaultError> {
        let (Some(refresh_token), Some(auth)) = (secrets.r.clone(), def.auth.as_ref().filter(|a| a.consents())) else {
            self.drop_key(key).await?;
            return Err(VaultError::NotConnected);
        };
        let client = client_of(stored.client.as_ref(), secrets.c.clone(), auth);
        let server = discovery::server_metadata(http, &*self.clock, &stored.issuer).await?;
        let endpoint = token_endpoint_of(&server)?;
        let req = TokenRequest {
            endpoint,
            grant: Grant::Refresh { refresh_token },
            auth: client_auth(&*self.crypto, &*self.ids, self.now(), client.oauth(), &server.issuer).await?,
            resource: def.endpoints().first().map(|u| resource_of(u)),
            scope: None,
        };
        match token::request(http, &*self.clock, &req).await {
            Ok(t) => {
                let secrets = Secrets {
                    a: t.access_token.clone(),
                    // A server that rotates refresh tokens sends a new one; else the old stays.
                    r: t.refresh_token.clone().or(secrets.r),
                    c: secrets.c,
                };
                let stored = Stored {
                    expires_at: self.expiry(&t),
                    scope: t.scope.clone().or(stored.scope),
                    ..stored
                };
                let stored = self.save(key, stored, &secrets).await?;
                Ok((stored, secrets))
            }
            Err(TokenError::Refused { .. }) => {
                // Dropped only if it is still the connection refreshed (the caller may have
                // connected again meanwhile).
                if self.load(key).await?.is_some_and(|(_, now)| now.a == secrets.a) {
                    self.drop_key(key).await?;
                }
                Err(VaultError::NotConnected)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn expiry(&self, t: &Tokens) -> Option<u64> {
        t.expires_in.map(|s| self.now().saturating_add(s.saturating_mul(1000)))
    }

    async fn drop_key(&self, key: &str) -> Result<(), VaultError> {
        lock(&self.kept).remove(key);
        if let Some(rec) = self.store.get(Kind::Connection, key).await? {
            self.store.delete(Kind::Connection, &rec.id).await?;
        }
        Ok(())
    }

    /// The id of a connect link for the caller and the upstream: the one still valid, else a
    /// new one.
    pub async fn ticket(&self, subject: &str, up_id: &str) -> Result<String, VaultError> {
        let key = ticket_key(up_id, subject);
        let now = self.now();
        let scope = lock(&self.wants).get(&conn_key(up_id, subject)).cloned();
        if let Some(rec) = self.store.get(Kind::Consent, &key).await? {
            let live = match serde_json::from_value::<Consent>(rec.body.clone()) {
                Ok(Consent::Ticket {
                    expires_at, scope: s, ..
                }) => expires_at > now + 60_000 && s == scope,
                _ => false,
            };
            if live && rec.key == key {
                return Ok(rec.id);
            }
            self.store.delete(Kind::Consent, &rec.id).await?;
        }
        self.make_room(now, subject).await?;
        let id = self.ids.new_id();
        let body = Consent::Ticket {
            subject: subject.to_string(),
            upstream: up_id.to_string(),
            expires_at: now + TICKET_MS,
            scope,
        };
        self.insert_consent(&id, key, &body).await?;
        Ok(id)
    }

    async fn insert_consent(&self, id: &str, key: String, body: &Consent) -> Result<(), VaultError> {
        let now = self.now();
        let body = serde_json::to_value(body).map_err(|e| StoreError::Backend(e.to_string()))?;
        self.store
            .insert(Record {
                kind: Kind::Consent,
                id: id.to_string(),
                key,
                body,
                created_at: now,
                updated_at: now,
            })
            .await?;
        Ok(())
    }

    /// Drops expired consent records; refuses when too many live ones are left, every caller
    /// together or `subject`'s own.
    async fn make_room(&self, now: u64, subject: &str) -> Result<(), VaultError> {
        let all = self.store.list(Kind::Consent).await?;
        let live = |r: &&Record| serde_json::from_value::<Consent>(r.body.clone()).is_ok_and(|c| c.expires_at() > now);
        let mine = all
            .iter()
            .filter(|r| r.body["subject"].as_str() == Some(subject))
            .filter(live)
            .count();
        if mine >= MAX_CONSENTS_EACH {
            return Err(VaultError::Busy);
        }
        if all.len() < MAX_CONSENTS / 2 {
            return Ok(());
        }
        let expired: Vec<Op> = all
            .iter()
            .filter(|r| serde_json::from_value::<Consent>(r.body.clone()).is_ok_and(|c| c.expires_at() <= now))
            .map(|r| Op::Delete {
                kind: Kind::Consent,
                id: r.id.clone(),
            })
            .collect();
        let left = all.len() - expired.len();
        if !expired.is_empty() {
            self.store.apply(expired).await?;
        }
        if left >= MAX_CONSENTS {
            return Err(VaultError::Busy);
        }
        Ok(())
    }

    /// What the connect link `id` names, if it is live.
    pub async fn ticket_of(&self, id: &str) -> Result<Ticket, VaultError> {
        let rec = self
            .store
            .get(Kind::Consent, id)
            .await?
            .filter(|r| r.id == id)
            .ok_or(VaultError::Expired)?;
        match serde_json::from_value::<Consent>(rec.body) {
            Ok(Consent::Ticket {
                subject,
                upstream,
                expires_at,
                scope,
            }) if expires_at > self.now() => Ok(Ticket {
                subject,
                upstream,
                scope,
            }),
            _ => Err(VaultError::Expired),
        }
    }

    /// Starts the authorization of the connect link `ticket_id`, opened by `subject`: the URL
    /// to send the browser to (`public`: the gateway's configured public URL, under which its
    /// client metadata document is). The link is used up.
    pub async fn begin(
        &self,
        http: &dyn HttpClient,
        ticket_id: &str,
        subject: &str,
        def: &UpstreamDef,
        redirect_uri: &str,
        public: Option<&str>,
    ) -> Result<String, VaultError> {
        let ticket = self.ticket_of(ticket_id).await?;
        if ticket.subject != subject {
            return Err(VaultError::OtherUser);
        }
        let auth = def
            .auth
            .as_ref()
            .filter(|a| a.consents())
            .ok_or(VaultError::NotPerUser)?;
        let url = def.endpoints().first().map(|u| u.to_string()).unwrap_or_default();
        let (server, resource_scopes) =
            discovery::authorization_server(http, &*self.clock, &url, auth.issuer()).await?;
        let token_endpoint = token_endpoint_of(&server)?;
        let scope = ticket
            .scope
            .clone()
            .or_else(|| auth.scope().map(str::to_string))
            .or_else(|| (!resource_scopes.is_empty()).then(|| resource_scopes.join(" ")));
        let client = self.clients.choose(http, &server, auth, public, redirect_uri).await?;
        if auth.issuer().is_none() && (client.client_secret.is_some() || auth.client().private_key.is_some()) {
            // Registered before issuers were pinned: a secret goes to no server the upstream
            // merely names.
            return Err(GrantError::NoClient(format!(
                "the upstream's authorization server is not pinned: set auth.issuer (it names {})",
                server.issuer
            ))
            .into());
        }
        let pkce = Pkce::new(&*self.ids);
        let state = format!("{}{}", self.ids.new_id(), self.ids.new_id());
        let resource = resource_of(&url);
        let (go, pending) = authorize::start(
            &server,
            &authorize::Request {
                client_id: &client.client_id,
                redirect_uri: &client.redirect_uri,
                code_challenge: &pkce.challenge,
                state: &state,
                resource: &resource,
                scope: scope.as_deref(),
            },
        )?;
        let key = pending_key(&state);
        let body = Consent::Pending {
            subject: subject.to_string(),
            upstream: ticket.upstream.clone(),
            issuer: pending.issuer,
            iss_required: pending.iss_required,
            token_endpoint,
            redirect_uri: client.redirect_uri.clone(),
            verifier: self.sealer.seal_in(&key, &pkce.verifier, nonce(&*self.ids)).await?,
            expires_at: self.now() + PENDING_MS,
            client_secret: match (&client.how, &client.client_secret) {
                (How::PreRegistered, _) | (_, None) => None,
                (_, Some(s)) => Some(self.sealer.seal_in(&secret_context(&key), s, nonce(&*self.ids)).await?),
            },
            client: client_ref(&client),
            scope: scope.clone(),
        };
        self.make_room(self.now(), subject).await?;
        self.insert_consent(&self.ids.new_id(), key, &body).await?;
        // The link is used: a second opening finds nothing.
        self.store.delete(Kind::Consent, ticket_id).await?;
        Ok(go)
    }

    /// The issuer of the server the upstream `def` names now: pinned at its registration, so
    /// that callers' authorizations (and a client's secret) go there only.
    pub async fn issuer_of(&self, http: &dyn HttpClient, def: &UpstreamDef) -> Result<String, VaultError> {
        let url = def.endpoints().first().map(|u| u.to_string()).unwrap_or_default();
        let found = discovery::authorization_server(http, &*self.clock, &url, None).await?;
        Ok(found.0.issuer)
    }

    /// Takes the callback of an authorization (its path and query), in the browser of `subject`: the
    /// record under way is used up whatever happens next; the state, the issuer and the caller
    /// checked; the code redeemed; the tokens stored. Returns the upstream's id.
    pub async fn complete(
        &self,
        http: &dyn HttpClient,
        path: &str,
        query: &str,
        subject: &str,
        def_of: &(dyn Fn(&str) -> Option<UpstreamDef> + Send + Sync),
    ) -> Result<String, VaultError> {
        let state = query_param(query, "state").ok_or(VaultError::Expired)?;
        let key = pending_key(&state);
        let rec = self
            .store
            .get(Kind::Consent, &key)
            .await?
            .filter(|r| r.key == key)
            .ok_or(VaultError::Expired)?;
        // Single use: whoever deletes it goes on.
        if !self.store.delete(Kind::Consent, &rec.id).await? {
            return Err(VaultError::Expired);
        }
        let Ok(Consent::Pending {
            subject: owner,
            upstream,
            issuer,
            iss_required,
            token_endpoint,
            redirect_uri,
            verifier,
            expires_at,
            client,
            client_secret,
            scope: requested,
        }) = serde_json::from_value::<Consent>(rec.body)
        else {
            return Err(VaultError::Expired);
        };
        if expires_at <= self.now() {
            return Err(VaultError::Expired);
        }
        if owner != subject {
            return Err(VaultError::OtherUser);
        }
        // The answer came back where this authorization's server was told to send it (a client
        // the gateway registered has a callback per server).
        if !redirect_uri.split('?').next().unwrap_or_default().ends_with(path) {
            return Err(authorize::AuthorizeError::OtherCallback.into());
        }
        let pending = Pending {
            state,
            issuer: issuer.clone(),
            iss_required,
        };
        let code = authorize::finish(&pending, query)?;
        let def = def_of(&upstream).ok_or(VaultError::NotPerUser)?;
        let auth = def
            .auth
            .as_ref()
            .filter(|a| a.consents())
            .ok_or(VaultError::NotPerUser)?;
        let url = def.endpoints().first().map(|u| u.to_string()).unwrap_or_default();
        let secret = match &client_secret {
            Some(s) => Some(self.sealer.open_in(&secret_context(&key), s).await?),
            None => None,
        };
        let as_client = client_of(client.as_ref(), secret.clone(), auth);
        let req = TokenRequest {
            endpoint: token_endpoint,
            grant: Grant::AuthorizationCode {
                code,
                verifier: self.sealer.open_in(&key, &verifier).await?,
                redirect_uri: redirect_uri.clone(),
            },
            auth: client_auth(&*self.crypto, &*self.ids, self.now(), as_client.oauth(), &issuer).await?,
            resource: Some(resource_of(&url)),
            scope: None,
        };
        let t = match token::request(http, &*self.clock, &req).await {
            Err(TokenError::Refused { error, .. }) if error == "invalid_client" && as_client.how == How::Registered => {
                // The server forgot the client the gateway registered: the next link registers anew.
                self.clients.forget(&issuer, &redirect_uri).await;
                return Err(VaultError::Expired);
            }
            other => other?,
        };
        // A connection this one replaces (a step-up) is not revoked: at many servers its grant
        // is the new tokens' grant too, and a revocation would take them with it.
        let ckey = conn_key(&upstream, subject);
        let stored = Stored {
            subject: subject.to_string(),
            upstream: upstream.clone(),
            issuer,
            // A token response without `scope` granted what was asked (RFC 6749 §5.1).
            scope: t.scope.clone().or(requested),
            expires_at: self.expiry(&t),
            connected_at: self.now(),
            resource: Some(resource_of(&url)),
            refreshable: false,
            tokens: String::new(),
            client,
        };
        let secrets = Secrets {
            a: t.access_token,
            r: t.refresh_token,
            c: secret.filter(|_| as_client.how != How::PreRegistered),
        };
        self.save(&ckey, stored, &secrets).await?;
        lock(&self.kept).remove(&ckey);
        lock(&self.stale).remove(&ckey);
        lock(&self.wants).remove(&ckey);
        Ok(upstream)
    }

    /// A caller connected to the upstream (the earliest), if any: whose authorization reads
    /// the upstream's catalog and checks its health, as one of its users.
    pub async fn a_caller_of(&self, up_id: &str) -> Option<String> {
        let all = self.store.list(Kind::Connection).await.ok()?;
        all.into_iter()
            .filter_map(|r| serde_json::from_value::<Stored>(r.body).ok())
            .filter(|s| s.upstream == up_id)
            .min_by_key(|s| s.connected_at)
            .map(|s| s.subject)
    }

    /// The caller's connections.
    pub async fn connections(&self, subject: &str) -> Result<Vec<ConnectionInfo>, VaultError> {
        Ok(self
            .store
            .list(Kind::Connection)
            .await?
            .into_iter()
            .filter_map(|r| serde_json::from_value::<Stored>(r.body).ok())
            .filter(|s| s.subject == subject)
            .map(|s| ConnectionInfo {
                upstream: s.upstream,
                issuer: s.issuer,
                scope: s.scope,
                expires_at: s.expires_at,
                connected_at: s.connected_at,
                refreshable: s.refreshable,
            })
            .collect())
    }

    /// Ends the caller's connection to the upstream: its tokens revoked at the authorization
    /// server where it has a revocation endpoint (best effort), then forgotten. True if there
    /// was one.
    pub async fn disconnect(
        &self,
        http: &dyn HttpClient,
        subject: &str,
        up_id: &str,
        def: Option<&UpstreamDef>,
    ) -> Result<bool, VaultError> {
        let key = conn_key(up_id, subject);
        let loaded = self.load(&key).await;
        let Some(rec) = self.store.get(Kind::Connection, &key).await?.filter(|r| r.key == key) else {
            return Ok(false);
        };
        if let (Ok(Some((stored, secrets))), Some(auth)) = (loaded, def.and_then(|d| d.auth.as_ref())) {
            let client = client_of(stored.client.as_ref(), secrets.c.clone(), auth);
            self.revoke(http, &stored.issuer, &client, secrets).await;
        }
        self.store.delete(Kind::Connection, &rec.id).await?;
        lock(&self.kept).remove(&key);
        Ok(true)
    }

    /// Every caller's connection to an upstream being removed: revoked and forgotten.
    pub async fn forget_upstream(
        &self,
        http: &dyn HttpClient,
        up_id: &str,
        def: Option<&UpstreamDef>,
    ) -> Result<usize, VaultError> {
        let mine: Vec<Record> = self
            .store
            .list(Kind::Connection)
            .await?
            .into_iter()
            .filter(|r| r.body["upstream"].as_str() == Some(up_id))
            .collect();
        // Read, then forgotten, then revoked (best effort): a revocation that times out leaves
        // nothing behind.
        let mut open = Vec::with_capacity(mine.len());
        for rec in &mine {
            if let Ok(Some(loaded)) = self.load(&rec.key).await {
                open.push(loaded);
            }
            lock(&self.kept).remove(&rec.key);
        }
        let ops: Vec<Op> = mine
            .iter()
            .map(|r| Op::Delete {
                kind: Kind::Connection,
                id: r.id.clone(),
            })
            .collect();
        if !ops.is_empty() {
            self.store.apply(ops).await?;
        }
        if let Some(auth) = def.and_then(|d| d.auth.as_ref()) {
            for (stored, secrets) in open {
                let client = client_of(stored.client.as_ref(), secrets.c.clone(), auth);
                self.revoke(http, &stored.issuer, &client, secrets).await;
            }
        }
        Ok(mine.len())
    }

    /// Revokes a connection's tokens (the refresh token, which takes its access tokens with it
    /// at most servers, else the access token); failures are not the caller's to see.
    async fn revoke(&self, http: &dyn HttpClient, issuer: &str, client: &Client, secrets: Secrets) {
        let Ok(server) = discovery::server_metadata(http, &*self.clock, issuer).await else {
            return;
        };
        let Some(endpoint) = server.revocation_endpoint.clone() else {
            return;
        };
        let Ok(client) = client_auth(&*self.crypto, &*self.ids, self.now(), client.oauth(), issuer).await else {
            return;
        };
        let (token, hint) = match secrets.r {
            Some(r) => (r, "refresh_token"),
            None => (secrets.a, "access_token"),
        };
        let req = TokenRequest {
            endpoint,
            grant: Grant::Revoke { token, hint },
            auth: client,
            resource: None,
            scope: None,
        };
        let _ = token::revoke(http, &*self.clock, &req).await;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
