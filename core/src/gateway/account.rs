//! A caller's own pages and API for the upstreams that act for each caller (`auth.mode =
//! user`): the connect link a call hands out (`/oauth/connect/{ticket}`), signing in with the
//! caller's own token (`/oauth/login`), the authorization server's callback
//! (`/oauth/callback`), the caller's connections (`/me`, and `GET`/`POST`/`DELETE
//! /me/connections[/{upstream}]` with a bearer token).
//!
//! The browser's caller is kept in a sealed cookie (`mcpgw_user`: who, until when, the CSRF
//! token its forms carry), SameSite=Lax so that the authorization server's redirect back
//! carries it. A link made for one caller is refused to another (the phishing the MCP
//! elicitation spec warns of), at the link and again at the callback.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::Services;
use crate::http::response::{json_response, Body};
use crate::oauth::vault::VaultError;
use crate::ports::{Clock, Ids};
use crate::registry::seal::{nonce, Sealer};
use crate::security::admission::Access;

const COOKIE: &str = "mcpgw_user";
/// How long a browser stays signed in at most (ms).
const SESSION_MS: u64 = 8 * 3600 * 1000;
const CSP: &str =
    "default-src 'none'; style-src 'self'; form-action 'self' https: http:; frame-ancestors 'none'; base-uri 'none'";

/// The browser's caller, as the cookie holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Browser {
    csrf: String,
    exp: u64,
    /// The caller signed in (none before signing in).
    subject: Option<String>,
}

/// The pages' state.
pub(super) struct Accounts {
    env: minijinja::Environment<'static>,
    sealer: Sealer,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn Ids>,
    /// Auth is on: a browser signs in (off: every caller is the same anonymous one).
    auth: bool,
}

/// One page's answer.
struct Page {
    status: StatusCode,
    body: String,
    location: Option<String>,
}

fn see_other(location: impl Into<String>) -> Page {
    Page {
        status: StatusCode::SEE_OTHER,
        body: String::new(),
        location: Some(location.into()),
    }
}

/// The cookie's name: over https with the `__Host-` prefix, which a sibling host cannot set
/// (a caller's cookie planted in another's browser would sign them in as that caller).
fn cookie_name(req: &Request<Bytes>) -> &'static str {
    if crate::ui::is_https(req) {
        "__Host-mcpgw_user"
    } else {
        COOKIE
    }
}

fn cookie_of(req: &Request<Bytes>) -> Option<String> {
    let name = cookie_name(req);
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn form_of(body: &[u8]) -> Vec<(String, String)> {
    crate::ui::forms::parse_form(&String::from_utf8_lossy(body))
}

fn value<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// What a vault error means to the person in the browser.
/// The gateway's Client ID Metadata Document, published only under a configured https public
/// URL (its URL is the client id an authorization server fetches it by).
pub(super) fn client_metadata(method: &Method, public: Option<&str>) -> Response<Body> {
    use crate::oauth::registration::{document, document_base};
    if method != Method::GET && method != Method::HEAD {
        return crate::http::response::method_not_allowed("GET");
    }
    match document_base(public) {
        Some(base) => {
            let mut r = json_response(StatusCode::OK, &document(base));
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
            r
        }
        None => crate::http::response::api_failure(&super::unserved::Unserved::NoClientDocument),
    }
}

fn refusal(e: &VaultError) -> (StatusCode, String) {
    let status = match e {
        VaultError::Expired => StatusCode::GONE,
        VaultError::OtherUser => StatusCode::FORBIDDEN,
        VaultError::Busy => StatusCode::SERVICE_UNAVAILABLE,
        VaultError::NotPerUser | VaultError::NotConnected => StatusCode::NOT_FOUND,
        VaultError::Authorize(_) => StatusCode::BAD_REQUEST,
        VaultError::Grant(_) | VaultError::Scope { .. } => StatusCode::BAD_GATEWAY,
        VaultError::Store(_) | VaultError::Seal(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    (status, e.to_string())
}

impl Accounts {
    pub(super) fn new(sealer: Sealer, clock: Arc<dyn Clock>, ids: Arc<dyn Ids>, auth: bool) -> Self {
        let mut env = minijinja::Environment::new();
        // Tested: a template that does not compile fails core's tests.
        let _ = env.add_template("account.html", include_str!("../../../templates/account.html"));
        Self {
            env,
            sealer,
            clock,
            ids,
            auth,
        }
    }

    /// Serves `/oauth/*` and `/me[/…]` pages.
    pub(super) async fn serve(&self, s: &Services, req: Request<Bytes>, path: &str) -> Response<Body> {
        let segs: Vec<String> = path
            .split('/')
            .filter(|x| !x.is_empty())
            .map(|x| percent_encoding::percent_decode_str(x).decode_utf8_lossy().into_owned())
            .collect();
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        let now = self.clock.now_ms();
        let opened = self.open(&req, now).await;
        let mut browser = opened.clone().unwrap_or_else(|| Browser {
            csrf: self.ids.new_id(),
            exp: now + SESSION_MS,
            subject: None,
        });
        if !self.auth {
            browser.subject = Some(String::new());
        }
        let post = req.method() == Method::POST;
        let form = if post { form_of(req.body()) } else { vec![] };
        if post {
            let sent = value(&form, "_csrf").unwrap_or_default();
            let same = bool::from(subtle::ConstantTimeEq::ct_eq(sent.as_bytes(), browser.csrf.as_bytes()));
            if opened.is_none() || !same {
                let page = self.message(
                    &browser,
                    StatusCode::FORBIDDEN,
                    "The form's CSRF token is missing or wrong: reload the page and send it again.",
                );
                return self.finish(&req, page, Some(&browser)).await;
            }
        }
        let page = match (segs.as_slice(), post) {
            (["oauth", "connect", ticket], false) => self.connect(s, &req, &browser, ticket).await,
            (["oauth", "login"], true) => self.login(s, &req, &form, &mut browser).await,
            (["oauth", "callback"] | ["oauth", "callback", _], false) => self.callback(s, &req, &browser).await,
            (["me"], false) => self.mine(s, &browser, None).await,
            // The upstream named by id or name, as in the API: the vault keeps connections by id.
            (["me", "connect", up], true) => match (&browser.subject, per_user_id(s, up).await) {
                (Some(who), Some(id)) => match s.fed.vault().ticket(who, &id).await {
                    Ok(t) => see_other(format!("/oauth/connect/{t}")),
                    Err(e) => self.vault_failure(&browser, &e),
                },
                (Some(_), None) => self.message(
                    &browser,
                    StatusCode::NOT_FOUND,
                    "There is no such upstream acting for each user.",
                ),
                (None, _) => see_other("/me"),
            },
            (["me", "disconnect", up], true) => match browser.subject.clone() {
                Some(who) => {
                    let id = per_user_id(s, up).await.unwrap_or_else(|| up.to_string());
                    let note = match disconnect(s, &who, &id).await {
                        Ok(true) => "Disconnected.",
                        Ok(false) => "There was no such connection.",
                        Err(e) => return self.finish(&req, self.vault_failure(&browser, &e), None).await,
                    };
                    self.mine(s, &browser, Some(note)).await
                }
                None => see_other("/me"),
            },
            (["me", "logout"], true) => {
                browser.subject = None;
                see_other("/me")
            }
            _ => self.message(&browser, StatusCode::NOT_FOUND, "There is no such page."),
        };
        let set = opened.as_ref().is_none_or(|o| o.subject != browser.subject) || opened.is_none();
        self.finish(&req, page, set.then_some(&browser)).await
    }

    /// A connect link opened: by its own caller, the authorization starts.
    async fn connect(&self, s: &Services, req: &Request<Bytes>, browser: &Browser, ticket: &str) -> Page {
        let Some(subject) = &browser.subject else {
            return self.login_form(browser, &format!("/oauth/connect/{ticket}"), None);
        };
        let vault = s.fed.vault();
        let t = match vault.ticket_of(ticket).await {
            Ok(t) => t,
            Err(e) => return self.vault_failure(browser, &e),
        };
        let Some(up) = s
            .registry
            .snapshot()
            .await
            .ok()
            .and_then(|snap| snap.upstream(&t.upstream).cloned())
        else {
            return self.message(browser, StatusCode::NOT_FOUND, "That upstream is no longer here.");
        };
        let redirect = format!(
            "{}/oauth/callback",
            crate::security::admission::base_url(s.security.config(), req)
        );
        let public = s.security.config().public_url.as_deref();
        match vault
            .begin(s.fed.http(), ticket, subject, &up.def, &redirect, public)
            .await
        {
            Ok(go) => see_other(go),
            Err(e) => self.vault_failure(browser, &e),
        }
    }

    /// Signing in with the caller's own token.
    async fn login(
        &self,
        s: &Services,
        req: &Request<Bytes>,
        form: &[(String, String)],
        browser: &mut Browser,
    ) -> Page {
        let next = value(form, "next")
            .filter(|n| n.starts_with("/oauth/connect/") || *n == "/me")
            .unwrap_or("/me")
            .to_string();
        let token = value(form, "token").unwrap_or_default().trim();
        let mut probe = Request::new(Bytes::new());
        if let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}")) {
            probe.headers_mut().insert(header::AUTHORIZATION, v);
        }
        *probe.uri_mut() = req.uri().clone();
        match s.security.admit(&probe, Access::Client).await {
            Ok(a) => {
                let who = a.identity.map(|i| (i.subject, i.expires_ms));
                let now = self.clock.now_ms();
                browser.subject = Some(who.as_ref().map(|w| w.0.clone()).unwrap_or_default());
                browser.exp = who.and_then(|w| w.1).unwrap_or(u64::MAX).min(now + SESSION_MS);
                browser.csrf = self.ids.new_id();
                see_other(next)
            }
            Err(refused) => self.login_form(browser, &next, Some(&refused.to_string())),
        }
    }

    /// The authorization server sent the browser back.
    async fn callback(&self, s: &Services, req: &Request<Bytes>, browser: &Browser) -> Page {
        let Some(subject) = &browser.subject else {
            return self.message(
                browser,
                StatusCode::FORBIDDEN,
                "Sign in first: this browser is not signed in to the gateway (open the link from your client again).",
            );
        };
        let query = req.uri().query().unwrap_or_default();
        let snap = s.registry.snapshot().await.ok();
        let def_of = |id: &str| snap.as_ref().and_then(|sn| sn.upstream(id)).map(|u| u.def.clone());
        match s
            .fed
            .vault()
            .complete(s.fed.http(), req.uri().path(), query, subject, &def_of)
            .await
        {
            Ok(up) => {
                // The first caller to connect lets the gateway read what the upstream offers.
                let never_read = snap
                    .as_ref()
                    .and_then(|sn| sn.upstream(&up))
                    .is_some_and(|u| u.def.catalog.as_ref().is_none_or(|c| c.tools.is_empty()));
                if never_read {
                    let _ = s.fed.refresh_catalog(&up).await;
                }
                let name = snap
                    .as_ref()
                    .and_then(|sn| sn.upstream(&up))
                    .map(|u| u.def.name.clone())
                    .unwrap_or(up);
                let text = format!("Connected to {name}. You can go back to your client.");
                self.render(
                    browser,
                    StatusCode::OK,
                    json!({"title": "Connected", "notice": text, "back": true}),
                )
            }
            Err(e) => self.vault_failure(browser, &e),
        }
    }

    /// The caller's connections, and the upstreams they may connect.
    async fn mine(&self, s: &Services, browser: &Browser, notice: Option<&str>) -> Page {
        let Some(subject) = &browser.subject else {
            return self.login_form(browser, "/me", None);
        };
        let upstreams = match list(s, subject).await {
            Ok(v) => v,
            Err(e) => return self.vault_failure(browser, &e),
        };
        self.render(
            browser,
            StatusCode::OK,
            json!({"title": "Your connections", "upstreams": upstreams, "listing": true, "notice": notice}),
        )
    }

    fn login_form(&self, browser: &Browser, next: &str, error: Option<&str>) -> Page {
        let status = if error.is_some() {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::OK
        };
        self.render(
            browser,
            status,
            json!({"title": "Sign in", "login": true, "next": next, "error": error}),
        )
    }

    fn vault_failure(&self, browser: &Browser, e: &VaultError) -> Page {
        let (status, text) = refusal(e);
        self.message(browser, status, &text)
    }

    fn message(&self, browser: &Browser, status: StatusCode, text: &str) -> Page {
        let title = status.canonical_reason().unwrap_or("Error");
        self.render(browser, status, json!({"title": title, "error": text, "back": true}))
    }

    fn render(&self, browser: &Browser, status: StatusCode, ctx: Value) -> Page {
        let mut all = json!({"csrf": browser.csrf, "who": browser.subject.as_ref().filter(|_| self.auth)});
        if let (Some(all), Value::Object(ctx)) = (all.as_object_mut(), ctx) {
            all.extend(ctx);
        }
        let (body, status) = match self.env.get_template("account.html").and_then(|t| t.render(&all)) {
            Ok(body) => (body, status),
            Err(e) => (
                format!("<!doctype html><title>error</title><p>The page could not be rendered: {e}</p>"),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        };
        Page {
            status,
            body,
            location: None,
        }
    }

    async fn open(&self, req: &Request<Bytes>, now: u64) -> Option<Browser> {
        let sealed = cookie_of(req)?;
        let text = self.sealer.open_in(COOKIE, &Sealer::with_prefix(&sealed)).await.ok()?;
        let b: Browser = serde_json::from_str(&text).ok()?;
        (b.exp > now && b.exp <= now.saturating_add(SESSION_MS)).then_some(b)
    }

    async fn finish(&self, req: &Request<Bytes>, page: Page, set: Option<&Browser>) -> Response<Body> {
        let mut r = Response::new(Body::Full(Bytes::from(page.body)));
        *r.status_mut() = page.status;
        let h = r.headers_mut();
        if let Some(loc) = page.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            h.insert(header::LOCATION, loc);
        }
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert("content-security-policy", HeaderValue::from_static(CSP));
        h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
        h.insert("x-frame-options", HeaderValue::from_static("DENY"));
        h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
        if let Some(b) = set {
            let text = serde_json::to_string(b).unwrap_or_default();
            if let Ok(sealed) = self.sealer.seal_in(COOKIE, &text, nonce(self.ids.as_ref())).await {
                let value = Sealer::strip_prefix(&sealed);
                let max_age = b.exp.saturating_sub(self.clock.now_ms()) / 1000;
                let secure = if crate::ui::is_https(req) { "; Secure" } else { "" };
                let name = cookie_name(req);
                let cookie = format!("{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}");
                if let Ok(v) = HeaderValue::from_str(&cookie) {
                    r.headers_mut().append(header::SET_COOKIE, v);
                }
            }
        }
        r
    }

    /// `/me/connections[/{upstream}]` with the caller's bearer token: `GET` lists the
    /// upstreams acting for each caller and the caller's connection to each; `POST` to one
    /// answers a connect link; `DELETE` disconnects.
    pub(super) async fn api(&self, s: &Services, req: Request<Bytes>, upstream: Option<&str>) -> Response<Body> {
        use crate::http::response::api_failure;
        let admitted = req.extensions().get::<crate::security::admission::Admitted>();
        let subject = admitted
            .and_then(|a| a.identity.as_ref())
            .map(|i| i.subject.clone())
            .unwrap_or_default();
        let base = admitted.and_then(|a| a.base.clone()).unwrap_or_default();
        let failed = |e: VaultError| {
            let (status, text) = refusal(&e);
            json_response(status, &json!({"error": {"code": "connection", "message": text}}))
        };
        match (req.method().clone(), upstream) {
            (Method::GET, None) => match list(s, &subject).await {
                Ok(v) => json_response(StatusCode::OK, &Value::Array(v)),
                Err(e) => failed(e),
            },
            (Method::POST, Some(up)) => {
                let Some(id) = per_user_id(s, up).await else {
                    return api_failure(&super::unserved::Unserved::NoRoute(format!("/me/connections/{up}")));
                };
                match s.fed.vault().ticket(&subject, &id).await {
                    Ok(t) => json_response(
                        StatusCode::CREATED,
                        &json!({"url": format!("{base}/oauth/connect/{t}"), "expires_in": 900}),
                    ),
                    Err(e) => failed(e),
                }
            }
            (Method::DELETE, Some(up)) => {
                let id = per_user_id(s, up).await.unwrap_or_else(|| up.to_string());
                match disconnect(s, &subject, &id).await {
                    Ok(true) => {
                        let mut r = Response::new(Body::Empty);
                        *r.status_mut() = StatusCode::NO_CONTENT;
                        r
                    }
                    Ok(false) => api_failure(&super::unserved::Unserved::NoRoute(format!("/me/connections/{up}"))),
                    Err(e) => failed(e),
                }
            }
            (_, None) => crate::http::response::method_not_allowed("GET"),
            (_, Some(_)) => crate::http::response::method_not_allowed("POST, DELETE"),
        }
    }
}

/// The id of the upstream named `up` (id or name) if it acts for each caller.
async fn per_user_id(s: &Services, up: &str) -> Option<String> {
    let snap = s.registry.snapshot().await.ok()?;
    let u = snap.upstream(up)?;
    u.def.auth.as_ref().filter(|a| a.consents())?;
    Some(u.id.clone())
}

/// Every upstream acting for each caller, with the caller's connection to it.
async fn list(s: &Services, subject: &str) -> Result<Vec<Value>, VaultError> {
    let mine = s.fed.vault().connections(subject).await?;
    let snap = s
        .registry
        .snapshot()
        .await
        .map_err(|e| VaultError::Store(crate::ports::StoreError::Backend(e.to_string())))?;
    Ok(snap
        .upstreams
        .iter()
        .filter(|u| u.def.auth.as_ref().is_some_and(|a| a.consents()))
        .map(|u| {
            let c = mine.iter().find(|c| c.upstream == u.id);
            json!({
                "id": u.id, "name": u.def.name, "connected": c.is_some(),
                "issuer": c.map(|c| c.issuer.clone()), "scope": c.and_then(|c| c.scope.clone()),
                "expires_at": c.and_then(|c| c.expires_at), "connected_at": c.map(|c| c.connected_at),
                "refreshable": c.map(|c| c.refreshable),
            })
        })
        .collect())
}

/// Ends the caller's connection to an upstream: revoked, forgotten, its links closed.
async fn disconnect(s: &Services, subject: &str, up_id: &str) -> Result<bool, VaultError> {
    let snap = s.registry.snapshot().await.ok();
    let def = snap.as_ref().and_then(|sn| sn.upstream(up_id)).map(|u| u.def.clone());
    let gone = s
        .fed
        .vault()
        .disconnect(s.fed.http(), subject, up_id, def.as_ref())
        .await?;
    s.fed.drop_callers_links(up_id, subject);
    Ok(gone)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{ManualClock, SeqIds};

    fn accounts() -> Accounts {
        let ids = Arc::new(SeqIds::default());
        let crypto: Arc<dyn crate::ports::Crypto> = Arc::new(crate::security::RustCrypto);
        let sealer = Sealer::random(crate::registry::seal::Purpose::AdminCookie, ids.as_ref(), crypto);
        Accounts::new(sealer, Arc::new(ManualClock::at(1_000)), ids, true)
    }

    /// Every page the template makes renders, its values escaped.
    #[test]
    fn the_pages_render_and_escape_what_they_show() {
        let a = accounts();
        let b = Browser {
            csrf: "c<s>rf".into(),
            exp: 2_000,
            subject: Some("al<i>ce".into()),
        };
        let login = a.login_form(&b, "/oauth/connect/t1", Some("bad <token>"));
        assert_eq!(login.status, StatusCode::UNAUTHORIZED);
        assert!(
            login.body.contains("id=\"login\"") && login.body.contains("bad &lt;token&gt;"),
            "{}",
            login.body
        );
        let list = a.render(
            &b,
            StatusCode::OK,
            json!({"title": "Your connections", "listing": true, "upstreams": [{"id": "u1", "name": "drive", "connected": true, "scope": "read"}]}),
        );
        assert!(
            list.body.contains("/me/disconnect/u1") && list.body.contains("al&lt;i&gt;ce"),
            "{}",
            list.body
        );
        let none = a.render(
            &b,
            StatusCode::OK,
            json!({"title": "Your connections", "listing": true, "upstreams": []}),
        );
        assert!(
            none.body.contains("No upstream here acts for each user"),
            "{}",
            none.body
        );
        let m = a.message(&b, StatusCode::GONE, "used");
        assert_eq!(m.status, StatusCode::GONE);
        assert!(m.body.contains("used"));
    }

    /// Over https the browser's cookie carries the `__Host-` prefix (no sibling host can plant
    /// one), and a cookie without it is not read there.
    #[test]
    fn over_https_the_cookie_is_a_host_cookie() {
        futures::executor::block_on(async {
            let a = accounts();
            let b = Browser {
                csrf: "c".into(),
                exp: 500_000,
                subject: Some("alice".into()),
            };
            let mut req = Request::new(Bytes::new());
            req.headers_mut()
                .insert("x-forwarded-proto", HeaderValue::from_static("https"));
            let page = a.message(&b, StatusCode::OK, "hi");
            let r = a.finish(&req, page, Some(&b)).await;
            let set = r.headers()[header::SET_COOKIE].to_str().unwrap().to_string();
            assert!(
                set.starts_with("__Host-mcpgw_user=") && set.contains("; Path=/;") && set.ends_with("; Secure"),
                "{set}"
            );
            let value = set.split(';').next().unwrap().split_once('=').unwrap().1.to_string();
            let with = |name: &str| {
                let mut r = Request::new(Bytes::new());
                r.headers_mut()
                    .insert("x-forwarded-proto", HeaderValue::from_static("https"));
                r.headers_mut().insert(
                    header::COOKIE,
                    HeaderValue::from_str(&format!("{name}={value}")).unwrap(),
                );
                r
            };
            assert!(a.open(&with("__Host-mcpgw_user"), 1_000).await.is_some());
            assert!(a.open(&with("mcpgw_user"), 1_000).await.is_none());
        });
    }
}
