//! The admin UI at `/admin`: pages rendered with minijinja from `templates/` (embedded), no
//! JavaScript. An administrator logs in with the admin user and password or an admin token;
//! the UI then keeps a cookie session (sealed with the gateway's key: who, until when, and the
//! CSRF token every form carries), HttpOnly, SameSite=Strict, Secure over https. Every change
//! and every read goes through the gateway's own API and MCP routes ([`Host::call`]) as that
//! administrator, so the UI shows exactly the API's answers and validation errors, and is
//! scoped by the same rules. Logging out revokes the session (a revocation record, so every
//! instance refuses the cookie).

pub(crate) mod forms;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::http::response::Body;
use crate::platform::{BoxFuture, MaybeSync};
use crate::ports::{Clock, Ids, Kind};
use crate::proto::method::Method as McpMethod;
use crate::registry::seal::{nonce, Sealer};
use crate::security::admission::{Admitted, Refusal};
use crate::security::auth::Identity;
use forms::{KindPage, Shown, KINDS};

const COOKIE: &str = "mcpgw_admin";
/// How long a UI session lasts (ms).
const SESSION_MS: u64 = 8 * 3600 * 1000;
/// The failed requests the overview lists.
const RECENT: usize = 20;
/// No script, no inline style, nothing from elsewhere, no framing.
const CSP: &str =
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
/// The revocation `jti` of a UI session.
const SESSION_JTI: &str = "admin-ui-session:";

/// What the UI needs of the gateway it belongs to.
pub(crate) trait Host: MaybeSync {
    /// Answers a request the way the gateway's routes do, for the caller in its [`Admitted`].
    fn call(&self, req: Request<Bytes>) -> BoxFuture<'_, Response<Body>>;
    /// Admits a request (its `Authorization` header) as an administrator, or says why not.
    fn login(&self, req: Request<Bytes>) -> BoxFuture<'_, Result<Admitted, Refusal>>;
    /// Whether tokens with this `jti` are revoked.
    fn revoked(&self, jti: String) -> BoxFuture<'_, bool>;
    /// Live sessions.
    fn sessions(&self) -> BoxFuture<'_, usize>;
}

/// A UI session, as its sealed cookie holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Session {
    sid: String,
    csrf: String,
    /// Until when (ms since the epoch).
    exp: u64,
    /// The administrator (none before logging in, and when auth is off).
    who: Option<Identity>,
}

#[derive(Debug, Clone, Serialize)]
struct Failure {
    at: String,
    method: String,
    path: String,
    status: u16,
    request_id: String,
}

/// The admin UI.
pub(crate) struct Ui {
    env: minijinja::Environment<'static>,
    sealer: Sealer,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn Ids>,
    /// Auth is on: pages need a login.
    auth: bool,
    version: String,
    recent: Mutex<VecDeque<Failure>>,
}

/// One page's answer, before the headers every page gets.
struct Page {
    status: StatusCode,
    body: String,
    location: Option<String>,
    /// When to try again (a login refused for too many attempts).
    retry_after: Option<HeaderValue>,
}

fn see_other(location: impl Into<String>) -> Page {
    Page {
        status: StatusCode::SEE_OTHER,
        body: String::new(),
        location: Some(location.into()),
        retry_after: None,
    }
}

/// The JSON of an API answer (null when it has none).
fn json_of(resp: &Response<Body>) -> Value {
    serde_json::from_slice(resp.body().as_bytes()).unwrap_or(Value::Null)
}

fn cookie_of(req: &Request<Bytes>) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

pub(crate) fn is_https(req: &Request<Bytes>) -> bool {
    req.uri().scheme_str() == Some("https")
        || req
            .headers()
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

impl Ui {
    /// The UI, sealing its cookies with `sealer`.
    pub fn new(sealer: Sealer, clock: Arc<dyn Clock>, ids: Arc<dyn Ids>, auth: bool, version: String) -> Self {
        let mut env = minijinja::Environment::new();
        for (name, source) in [
            ("base.html", include_str!("../../../templates/base.html")),
            ("login.html", include_str!("../../../templates/login.html")),
            ("overview.html", include_str!("../../../templates/overview.html")),
            ("list.html", include_str!("../../../templates/list.html")),
            ("form.html", include_str!("../../../templates/form.html")),
            ("tester.html", include_str!("../../../templates/tester.html")),
            ("revocations.html", include_str!("../../../templates/revocations.html")),
            ("message.html", include_str!("../../../templates/message.html")),
        ] {
            // The templates are tested: one that does not compile fails core's tests.
            let _ = env.add_template(name, source);
        }
        Self {
            env,
            sealer,
            clock,
            ids,
            auth,
            version,
            recent: Mutex::new(VecDeque::new()),
        }
    }

    /// Notes a failed request (status 400 and up) for the overview.
    pub fn note_failure(&self, method: &Method, path: &str, status: StatusCode, request_id: &str) {
        let at = chrono::DateTime::from_timestamp_millis(self.clock.now_ms() as i64)
            .map(|t| {
                format!("{:?}", t.naive_utc())
                    .chars()
                    .take(19)
                    .collect::<String>()
                    .replace('T', " ")
            })
            .unwrap_or_default();
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == RECENT {
            recent.pop_back();
        }
        recent.push_front(Failure {
            at,
            method: method.to_string(),
            path: path.to_string(),
            status: status.as_u16(),
            request_id: request_id.to_string(),
        });
    }

    /// Serves `/admin{rest}`.
    pub async fn serve(&self, host: &dyn Host, req: Request<Bytes>, rest: &str) -> Response<Body> {
        let segs: Vec<String> = rest
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned())
            .collect();
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        if segs == ["static", "admin.css"] {
            return self.stylesheet(&req);
        }
        let now = self.clock.now_ms();
        let mut session = self.open(&req, now).await;
        if let Some(s) = &session {
            let gone = host.revoked(format!("{SESSION_JTI}{}", s.sid)).await
                || match s.who.as_ref().and_then(|w| w.jti.clone()) {
                    Some(jti) => host.revoked(jti).await,
                    None => false,
                };
            if gone {
                session = None;
            }
        }
        let fresh = session.is_none();
        let opened = session.as_ref().map(|s| s.sid.clone());
        let mut session = session.unwrap_or_else(|| self.anonymous(now));
        let form = if req.method() == Method::POST {
            let pairs = forms::parse_form(&String::from_utf8_lossy(req.body()));
            let sent = forms::value(&pairs, "_csrf").unwrap_or_default();
            if fresh || !bool::from(subtle::ConstantTimeEq::ct_eq(sent.as_bytes(), session.csrf.as_bytes())) {
                let page = self.message(
                    &session,
                    StatusCode::FORBIDDEN,
                    "The form's CSRF token is missing or wrong: reload the page and send it again.",
                );
                return self.finish(&req, page, fresh.then_some(&session)).await;
            }
            // The form's fields, then the action's query (which names e.g. the tool to test).
            let mut pairs = pairs;
            pairs.extend(forms::parse_form(req.uri().query().unwrap_or_default()));
            pairs
        } else {
            forms::parse_form(req.uri().query().unwrap_or_default())
        };
        let page = if segs == ["login"] {
            self.login(host, &req, &form, &mut session, now).await
        } else if self.auth && session.who.is_none() {
            see_other("/admin/login")
        } else {
            self.page(host, &req, &segs, &form, &mut session).await
        };
        // A new session, or one a login replaced, goes out in the cookie.
        let set = opened.as_deref() != Some(session.sid.as_str());
        let logout = segs == ["logout"] && page.status == StatusCode::SEE_OTHER;
        if logout {
            let mut r = self.finish(&req, page, None).await;
            r.headers_mut().append(
                header::SET_COOKIE,
                HeaderValue::from_static("mcpgw_admin=; Path=/admin; Max-Age=0; HttpOnly; SameSite=Strict"),
            );
            return r;
        }
        self.finish(&req, page, set.then_some(&session)).await
    }

    /// The pages behind the login.
    async fn page(
        &self,
        host: &dyn Host,
        req: &Request<Bytes>,
        segs: &[&str],
        form: &[(String, String)],
        session: &mut Session,
    ) -> Page {
        let post = req.method() == Method::POST;
        let get = req.method() == Method::GET || req.method() == Method::HEAD;
        let api = Api { host, session };
        match segs {
            [] if get => self.overview(&api).await,
            ["logout"] if post => {
                if self.auth {
                    let exp = session.exp / 1000 + 1;
                    let body = json!({"jti": format!("{SESSION_JTI}{}", session.sid), "exp": exp, "reason": "admin UI logout"});
                    api.call(Method::POST, "/auth/revocations", Some(&body)).await;
                }
                see_other("/admin/login")
            }
            ["test"] if get || post => self.tester(&api, form, post).await,
            ["revocations"] if get || post => self.revocations(&api, form, post).await,
            ["revocations", jti, "delete"] if post => {
                api.call(Method::DELETE, &format!("/auth/revocations/{}", enc(jti)), None)
                    .await;
                see_other("/admin/revocations")
            }
            [kind] if get => match forms::kind_page(kind) {
                Some(k) => self.list(&api, k, form).await,
                None => self.not_found(session),
            },
            [kind, "new"] if get || post => match forms::kind_page(kind) {
                Some(k) => self.edit(&api, k, None, form, post).await,
                None => self.not_found(session),
            },
            [kind, id] if get || post => match forms::kind_page(kind) {
                Some(k) => self.edit(&api, k, Some(id), form, post).await,
                None => self.not_found(session),
            },
            [kind, id, "delete"] if post => match forms::kind_page(kind) {
                Some(k) => {
                    let r = api
                        .call(Method::DELETE, &format!("/{}/{}", k.slug, enc(id)), None)
                        .await;
                    match r.status().is_success() {
                        true => see_other(format!("/admin/{}?deleted={}", k.slug, enc(id))),
                        false => self.api_failure(session, &r),
                    }
                }
                None => self.not_found(session),
            },
            ["gateways", id, "refresh"] if post => {
                let r = api
                    .call(Method::POST, &format!("/gateways/{}/refresh", enc(id)), None)
                    .await;
                match r.status().is_success() {
                    true => see_other(format!("/admin/gateways/{}?refreshed=1", enc(id))),
                    false => self.api_failure(session, &r),
                }
            }
            _ => self.not_found(session),
        }
    }

    /// The login form, and logging in.
    async fn login(
        &self,
        host: &dyn Host,
        req: &Request<Bytes>,
        form: &[(String, String)],
        session: &mut Session,
        now: u64,
    ) -> Page {
        if !self.auth || session.who.is_some() && req.method() != Method::POST {
            return see_other("/admin");
        }
        if req.method() != Method::POST {
            return self.render("login.html", "Log in", "login", session, json!({}), StatusCode::OK);
        }
        let token = forms::value(form, "token").unwrap_or_default().trim();
        let user = forms::value(form, "user").unwrap_or_default();
        let password = forms::value(form, "password").unwrap_or_default();
        let authorization = if !token.is_empty() {
            format!("Bearer {token}")
        } else {
            use base64::Engine as _;
            let pair = format!("{user}:{password}");
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
        };
        let mut probe = Request::new(Bytes::new());
        *probe.uri_mut() = http::Uri::from_static("/tools");
        *probe.headers_mut() = req.headers().clone();
        probe.headers_mut().remove(header::COOKIE);
        *probe.extensions_mut() = req.extensions().clone();
        match HeaderValue::from_str(&authorization) {
            Ok(v) => {
                probe.headers_mut().insert(header::AUTHORIZATION, v);
            }
            Err(_) => {
                let ctx = json!({"error": "The credentials hold characters a header cannot carry."});
                return self.render("login.html", "Log in", "login", session, ctx, StatusCode::BAD_REQUEST);
            }
        }
        match host.login(probe).await {
            Ok(admitted) if admitted.identity.is_some() => {
                let mut exp = now + SESSION_MS;
                if let Some(token_exp) = token_exp(token) {
                    exp = exp.min(token_exp.saturating_mul(1000));
                }
                *session = Session {
                    sid: self.ids.new_id(),
                    csrf: self.ids.new_id(),
                    exp,
                    who: admitted.identity,
                };
                see_other("/admin")
            }
            Ok(_) => see_other("/admin"),
            Err(why) => {
                use crate::http::response::Failure;
                let ctx = json!({"error": format!("Not logged in: {why}")});
                let mut page = self.render("login.html", "Log in", "login", session, ctx, why.status());
                // Only when to try again: a challenge would make a browser prompt by itself.
                let after = why.headers().into_iter().find(|(k, _)| k == header::RETRY_AFTER);
                page.retry_after = after.map(|(_, v)| v);
                page
            }
        }
    }

    async fn overview(&self, api: &Api<'_>) -> Page {
        let mut counts = vec![];
        let mut upstreams = vec![];
        for k in KINDS {
            let list = json_of(&api.call(Method::GET, &format!("/{}", k.slug), None).await);
            let n = list.as_array().map_or(0, Vec::len);
            counts.push(json!({"slug": k.slug, "title": k.title, "n": n}));
            if k.kind == Kind::Upstream {
                for u in list.as_array().into_iter().flatten() {
                    let st = &u["status"];
                    upstreams.push(
                        json!({"name": u["name"], "healthy": st["healthy"].as_bool().unwrap_or(st.is_null()),
                        "failures": st["failures"].as_u64().unwrap_or(0), "last_error": st["last_error"]}),
                    );
                }
            }
        }
        let errors: Vec<Failure> = self
            .recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect();
        let ctx =
            json!({"counts": counts, "upstreams": upstreams, "sessions": api.host.sessions().await, "errors": errors});
        self.render(
            "overview.html",
            "Overview",
            "overview",
            api.session,
            ctx,
            StatusCode::OK,
        )
    }

    async fn list(&self, api: &Api<'_>, k: KindPage, query: &[(String, String)]) -> Page {
        let q = forms::value(query, "q").unwrap_or_default().trim().to_lowercase();
        let resp = api.call(Method::GET, &format!("/{}", k.slug), None).await;
        if !resp.status().is_success() {
            return self.api_failure(api.session, &resp);
        }
        let rows: Vec<Value> = json_of(&resp)
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| q.is_empty() || r.to_string().to_lowercase().contains(&q))
            .map(|r| json!({"id": r["id"], "name": r["name"], "description": r["description"].as_str().unwrap_or_default()}))
            .collect();
        let notice = forms::value(query, "deleted").map(|d| format!("Deleted {} {d}.", k.one));
        let ctx = json!({"kind": k, "rows": rows, "q": q, "notice": notice});
        self.render("list.html", k.title, k.slug, api.session, ctx, StatusCode::OK)
    }

    /// A record's form (`id` none: a new one), and saving it.
    async fn edit(&self, api: &Api<'_>, k: KindPage, id: Option<&str>, form: &[(String, String)], post: bool) -> Page {
        let path = match id {
            Some(id) => format!("/{}/{}", k.slug, enc(id)),
            None => format!("/{}", k.slug),
        };
        let action = format!("/admin{path}{}", if id.is_none() { "/new" } else { "" });
        let heading = match id {
            Some(id) => format!("{} {id}", k.one),
            None => format!("New {}", k.one),
        };
        let (fields, status, error, record) = if post {
            match forms::read(k.kind, form) {
                (None, fields) => (fields, StatusCode::UNPROCESSABLE_ENTITY, None, Value::Null),
                (Some(body), mut fields) => {
                    let method = if id.is_some() { Method::PUT } else { Method::POST };
                    let r = api.call(method, &path, Some(&body)).await;
                    if r.status().is_success() {
                        let saved = json_of(&r);
                        let name = saved["id"].as_str().or(id).unwrap_or_default().to_string();
                        return see_other(format!("/admin/{}/{}?saved=1", k.slug, enc(&name)));
                    }
                    let err = json_of(&r);
                    let field = err["error"]["field"].as_str().unwrap_or_default();
                    let message = err["error"]["message"]
                        .as_str()
                        .unwrap_or("the gateway refused it")
                        .to_string();
                    let placed = forms::place_error(&mut fields, field, &message);
                    let status = if r.status().is_client_error() {
                        r.status()
                    } else {
                        StatusCode::BAD_GATEWAY
                    };
                    (fields, status, (!placed).then_some(message), Value::Null)
                }
            }
        } else {
            match id {
                None => (forms::fill(k.kind, &Value::Null), StatusCode::OK, None, Value::Null),
                Some(_) => {
                    let r = api.call(Method::GET, &path, None).await;
                    if !r.status().is_success() {
                        return self.api_failure(api.session, &r);
                    }
                    let rec = json_of(&r);
                    (forms::fill(k.kind, &rec), StatusCode::OK, None, rec)
                }
            }
        };
        let upstream = (k.kind == Kind::Upstream && !record.is_null()).then(|| {
            let c = &record["catalog"];
            let items = |key: &str, label: &str| {
                let items: Vec<Value> = c[key].as_array().into_iter().flatten()
                    .map(|i| json!({"name": i["name"].as_str().or(i["uriTemplate"].as_str()).unwrap_or_default(), "description": i["description"]}))
                    .collect();
                json!({"title": label, "items": items})
            };
            let st = &record["status"];
            json!({"id": record["id"], "healthy": st["healthy"].as_bool().unwrap_or(st.is_null()), "last_error": st["last_error"],
                "sections": [items("tools", "Tools"), items("resources", "Resources"), items("resource_templates", "Resource templates"), items("prompts", "Prompts")]})
        });
        let notice = if forms::value(form, "saved").is_some() && !post {
            Some("Saved.")
        } else if forms::value(form, "refreshed").is_some() && !post {
            Some("Catalog refreshed.")
        } else {
            None
        };
        let ctx = json!({"heading": heading, "action": action, "fields": fields, "error": error,
            "upstream": upstream, "notice": notice});
        self.render("form.html", &heading, k.slug, api.session, ctx, status)
    }

    /// The tool tester: a form from the tool's input schema; the call goes through `/rpc`, the
    /// gateway's own MCP path.
    async fn tester(&self, api: &Api<'_>, form: &[(String, String)], post: bool) -> Page {
        let mut tools: Vec<Value> = vec![];
        let mut cursor: Option<String> = None;
        for page in 0..50 {
            let params = match &cursor {
                Some(c) => json!({"cursor": c}),
                None => json!({}),
            };
            let answer = api.rpc(page, McpMethod::ToolsList, params).await;
            tools.extend(answer["result"]["tools"].as_array().into_iter().flatten().cloned());
            cursor = answer["result"]["nextCursor"].as_str().map(String::from);
            if cursor.is_none() {
                break;
            }
        }
        let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
        let chosen = forms::value(form, "tool").unwrap_or_default();
        let tool = tools.iter().find(|t| t["name"] == chosen);
        let schema = tool.map(|t| t["inputSchema"].clone()).unwrap_or(Value::Null);
        let mut result = Value::Null;
        let mut status = StatusCode::OK;
        let fields = match (post, tool) {
            (true, Some(_)) => match forms::arguments(&schema, form) {
                Ok(args) => {
                    let answer = api
                        .rpc(1000, McpMethod::ToolsCall, json!({"name": chosen, "arguments": args}))
                        .await;
                    let error = !answer["error"].is_null() || answer["result"]["isError"] == true;
                    let texts: Vec<String> = match answer["error"]["message"].as_str() {
                        Some(m) => vec![format!("{} ({})", m, answer["error"]["code"])],
                        None => answer["result"]["content"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|c| c["text"].as_str().map(String::from).unwrap_or_else(|| c.to_string()))
                            .collect(),
                    };
                    let raw = serde_json::to_string_pretty(&answer).unwrap_or_default();
                    result = json!({"error": error, "texts": texts, "raw": raw});
                    forms::argument_fields(&schema, form)
                }
                Err(fields) => {
                    status = StatusCode::UNPROCESSABLE_ENTITY;
                    fields
                }
            },
            (_, Some(_)) => forms::argument_fields(&schema, form),
            (_, None) => vec![],
        };
        let error = (!chosen.is_empty() && tool.is_none()).then(|| format!("No tool named {chosen}."));
        let ctx = json!({"tools": names, "tool": tool.map(|_| chosen), "tool_q": enc(chosen), "fields": fields,
            "description": tool.map(|t| t["description"].clone()), "result": result, "error": error});
        self.render("tester.html", "Tool tester", "test", api.session, ctx, status)
    }

    async fn revocations(&self, api: &Api<'_>, form: &[(String, String)], post: bool) -> Page {
        let mut status = StatusCode::OK;
        let mut fields: Vec<Shown> = ["jti", "exp", "reason"]
            .iter()
            .map(|n| Shown {
                name: n.to_string(),
                label: match *n {
                    "jti" => "Token id (jti)",
                    "exp" => "Its expiry (seconds since the epoch)",
                    _ => "Reason",
                }
                .into(),
                input: "text",
                options: vec![],
                help: String::new(),
                value: json!(if post {
                    forms::value(form, n).unwrap_or_default()
                } else {
                    ""
                }),
                error: None,
                required: *n == "jti",
            })
            .collect();
        let mut error = None;
        if post {
            let mut body = json!({"jti": forms::value(form, "jti").unwrap_or_default().trim()});
            let exp = forms::value(form, "exp").unwrap_or_default().trim();
            if !exp.is_empty() {
                body["exp"] = exp.parse::<u64>().map(|n| json!(n)).unwrap_or(json!(exp));
            }
            if let Some(r) = forms::value(form, "reason").filter(|r| !r.trim().is_empty()) {
                body["reason"] = json!(r.trim());
            }
            let r = api.call(Method::POST, "/auth/revocations", Some(&body)).await;
            if r.status().is_success() {
                return see_other("/admin/revocations");
            }
            let err = json_of(&r);
            let message = err["error"]["message"].as_str().unwrap_or("refused").to_string();
            if !forms::place_error(
                &mut fields,
                err["error"]["field"].as_str().unwrap_or_default(),
                &message,
            ) {
                error = Some(message);
            }
            status = r.status();
        }
        let list = json_of(&api.call(Method::GET, "/auth/revocations", None).await);
        let rows: Vec<Value> = list
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| !r["jti"].as_str().unwrap_or_default().starts_with(SESSION_JTI))
            .map(|r| {
                let mut r = r.clone();
                r["q"] = json!(enc(r["jti"].as_str().unwrap_or_default()));
                r
            })
            .collect();
        let ctx = json!({"rows": rows, "fields": fields, "error": error});
        self.render(
            "revocations.html",
            "Revocations",
            "revocations",
            api.session,
            ctx,
            status,
        )
    }

    fn not_found(&self, session: &Session) -> Page {
        self.message(session, StatusCode::NOT_FOUND, "No such page.")
    }

    /// A page for an API answer that was not a success.
    fn api_failure(&self, session: &Session, r: &Response<Body>) -> Page {
        let err = json_of(r);
        let message = err["error"]["message"].as_str().unwrap_or("the gateway refused it");
        self.message(session, r.status(), message)
    }

    fn message(&self, session: &Session, status: StatusCode, text: &str) -> Page {
        let ctx = json!({"error": text});
        let title = status.canonical_reason().unwrap_or("Error");
        self.render("message.html", title, "", session, ctx, status)
    }

    /// Renders a page with what every page shows.
    fn render(&self, name: &str, title: &str, page: &str, session: &Session, ctx: Value, status: StatusCode) -> Page {
        let mut all = json!({
            "title": title, "page": page, "csrf": session.csrf, "kinds": KINDS, "version": self.version,
            "auth": self.auth, "nav": session.who.is_some() || !self.auth,
            "who": session.who.as_ref().map(|w| w.subject.clone()).unwrap_or_default(),
        });
        if let (Some(all), Value::Object(ctx)) = (all.as_object_mut(), ctx) {
            all.extend(ctx);
        }
        let (body, status) = match self.env.get_template(name).and_then(|t| t.render(&all)) {
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
            retry_after: None,
        }
    }

    fn stylesheet(&self, req: &Request<Bytes>) -> Response<Body> {
        let mut r = Response::new(Body::Full(Bytes::from_static(include_bytes!(
            "../../../templates/admin.css"
        ))));
        if req.method() != Method::GET && req.method() != Method::HEAD {
            *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        }
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/css; charset=utf-8"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
        h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
        r
    }

    /// A new session with no one logged in (it carries the login form's CSRF token).
    fn anonymous(&self, now: u64) -> Session {
        Session {
            sid: self.ids.new_id(),
            csrf: self.ids.new_id(),
            exp: now + SESSION_MS,
            who: None,
        }
    }

    /// The session of the request's cookie, if it opens (sealed with the cookies' own key), has
    /// not expired and does not claim to last longer than a session can.
    async fn open(&self, req: &Request<Bytes>, now: u64) -> Option<Session> {
        let sealed = cookie_of(req)?;
        let text = self.sealer.open_in(COOKIE, &Sealer::with_prefix(&sealed)).await.ok()?;
        let s: Session = serde_json::from_str(&text).ok()?;
        (s.exp > now && s.exp <= now.saturating_add(SESSION_MS)).then_some(s)
    }

    /// The response for a page, with the headers every page gets and the cookie when `set`.
    async fn finish(&self, req: &Request<Bytes>, page: Page, set: Option<&Session>) -> Response<Body> {
        let mut r = Response::new(if req.method() == Method::HEAD {
            Body::Empty
        } else {
            Body::Full(Bytes::from(page.body))
        });
        *r.status_mut() = page.status;
        let h = r.headers_mut();
        if let Some(loc) = page.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            h.insert(header::LOCATION, loc);
        }
        if let Some(after) = page.retry_after {
            h.insert(header::RETRY_AFTER, after);
        }
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert("content-security-policy", HeaderValue::from_static(CSP));
        h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
        h.insert("x-frame-options", HeaderValue::from_static("DENY"));
        h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
        if let Some(s) = set {
            let text = serde_json::to_string(s).unwrap_or_default();
            if let Ok(sealed) = self.sealer.seal_in(COOKIE, &text, nonce(self.ids.as_ref())).await {
                let value = Sealer::strip_prefix(&sealed);
                let max_age = s.exp.saturating_sub(self.clock.now_ms()) / 1000;
                let secure = if is_https(req) { "; Secure" } else { "" };
                let cookie =
                    format!("{COOKIE}={value}; Path=/admin; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}");
                if let Ok(v) = HeaderValue::from_str(&cookie) {
                    r.headers_mut().append(header::SET_COOKIE, v);
                }
            }
        }
        r
    }
}

/// A token's `exp` (seconds), read without checking it (the gateway checked it at login).
fn token_exp(token: &str) -> Option<u64> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice::<Value>(&bytes).ok()?["exp"].as_u64()
}

/// A path segment, percent-encoded.
fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The gateway's API and MCP routes, as the logged-in administrator.
struct Api<'a> {
    host: &'a dyn Host,
    session: &'a Session,
}

impl Api<'_> {
    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Response<Body> {
        let mut req = Request::new(body.map(|b| Bytes::from(b.to_string())).unwrap_or_default());
        *req.method_mut() = method;
        if let Ok(uri) = path.parse() {
            *req.uri_mut() = uri;
        }
        req.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        req.headers_mut().insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        req.extensions_mut().insert(Admitted {
            identity: self.session.who.clone(),
            headers: vec![],
            base: None,
        });
        self.host.call(req).await
    }

    /// One JSON-RPC request through `/rpc`; its answer.
    async fn rpc(&self, id: u64, method: McpMethod, params: Value) -> Value {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method.name(), "params": params});
        json_of(&self.call(Method::POST, "/rpc", Some(&body)).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gateway that refuses every login as the given refusal.
    struct Refusing(Refusal);

    impl Host for Refusing {
        fn call(&self, _: Request<Bytes>) -> BoxFuture<'_, Response<Body>> {
            Box::pin(async { Response::new(Body::Empty) })
        }
        fn login(&self, _: Request<Bytes>) -> BoxFuture<'_, Result<Admitted, Refusal>> {
            let r = self.0.clone();
            Box::pin(async move { Err(r) })
        }
        fn revoked(&self, _: String) -> BoxFuture<'_, bool> {
            Box::pin(async { false })
        }
        fn sessions(&self) -> BoxFuture<'_, usize> {
            Box::pin(async { 0 })
        }
    }

    fn ui() -> Ui {
        Ui::new(
            Sealer::random(
                crate::registry::seal::Purpose::AdminCookie,
                &crate::fixtures::SeqIds::default(),
                Arc::new(crate::security::RustCrypto),
            ),
            Arc::new(crate::fixtures::ManualClock::at(0)),
            Arc::new(crate::fixtures::SeqIds::default()),
            true,
            "test".into(),
        )
    }

    /// A refused login says why with the refusal's status; a rate-limited one says when to
    /// try again, and no refusal sends a challenge a browser would answer with a prompt.
    #[test]
    fn a_refused_login_answers_with_the_refusals_status_and_retry_after() {
        let ui = ui();
        let mut req = Request::new(Bytes::new());
        *req.method_mut() = Method::POST;
        let form = vec![
            ("user".to_string(), "admin".to_string()),
            ("password".into(), "x".into()),
        ];
        let limited = Refusing(Refusal::RateLimited {
            limit: 5,
            window_secs: 60,
            retry_after_secs: 42,
            headers: vec![("ratelimit-limit".into(), "5".into())],
        });
        let mut s = ui.anonymous(0);
        let page = futures::executor::block_on(ui.login(&limited, &req, &form, &mut s, 0));
        assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(page.retry_after.as_ref().map(|v| v.to_str().unwrap()), Some("42"));
        assert!(page.body.contains("retry in 42 s"), "{}", page.body);
        let wrong = Refusing(Refusal::Auth {
            error: crate::security::auth::AuthError::Invalid("wrong user or password".into()),
            challenges: vec!["Basic realm=\"mcpgw-admin\"".into()],
        });
        let page = futures::executor::block_on(ui.login(&wrong, &req, &form, &mut s, 0));
        assert_eq!((page.status, &page.retry_after), (StatusCode::UNAUTHORIZED, &None));
        let r = futures::executor::block_on(ui.finish(&req, page, None));
        assert!(!r.headers().contains_key(header::WWW_AUTHENTICATE));
    }

    #[test]
    fn every_template_compiles() {
        let ui = ui();
        for name in [
            "base.html",
            "login.html",
            "overview.html",
            "list.html",
            "form.html",
            "tester.html",
            "revocations.html",
            "message.html",
        ] {
            assert!(ui.env.get_template(name).is_ok(), "{name}");
        }
        let s = ui.anonymous(0);
        let page = ui.render("login.html", "Log in", "login", &s, json!({}), StatusCode::OK);
        assert!(
            page.body.contains(&format!("name=\"_csrf\" value=\"{}\"", s.csrf)),
            "{}",
            page.body
        );
    }
}
