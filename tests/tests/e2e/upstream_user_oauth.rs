//! Upstreams that act for each caller (`auth.mode = "user"`, issue 30): every caller authorizes
//! the gateway once at the upstream's authorization server (oidc-provider, a certified
//! implementation nobody here wrote), through the gateway's connect page, and reaches the
//! upstream with their own token from then on. The upstream (the fixture with `--oauth`)
//! checks each token: signature, issuer, audience = its own URL, scope `read`. On both runtimes.

use std::time::{Duration, Instant};

use mcpgw_e2e::browser::{hidden, Browser};
use mcpgw_e2e::{http_client, sign_jwt, start_target_with, unix_now, Fixture, TempDir};
use serde_json::{json, Value};

pub(super) const SECRET: &str = "Vq3mT8xR2pLk7sWn4BjY9cHf1ZdG6aEu0NoK5iRt";

pub(super) fn token(sub: &str, scope: &str) -> String {
    let now = unix_now();
    let claims = json!({"sub": sub, "iss": "mcpgw", "aud": "mcpgw", "iat": now, "exp": now + 900, "scope": scope});
    sign_jwt("HS256", SECRET, claims)
}

/// A caller: their token, a browser, and what the upstream last said they are.
pub(super) struct Person {
    pub(super) name: &'static str,
    pub(super) token: String,
    pub(super) browser: Browser,
}

impl Person {
    pub(super) fn new(name: &'static str) -> Self {
        Self {
            name,
            token: token(name, "mcpgw:client"),
            browser: Browser::new(),
        }
    }

    /// Follows a connect link as this person would in a browser: signs in to the gateway (with
    /// their own token) if the browser is not yet, then at the provider (its own login and
    /// consent pages). Returns the callback URL the provider sends the browser to, not yet
    /// visited.
    pub(super) async fn authorize(&mut self, gw: &str, link: &str) -> String {
        let mut v = self.browser.visit(link, None).await;
        if v.status == 200 && v.body.contains("id=\"login\"") {
            let csrf = hidden(&v.body, "_csrf").expect("csrf");
            let next = hidden(&v.body, "next").expect("next");
            let back = self
                .browser
                .go(
                    &format!("{gw}/oauth/login"),
                    Some(&[("_csrf", &csrf), ("next", &next), ("token", &self.token)]),
                )
                .await;
            assert_eq!(back, link, "signed in, back to the link");
            v = self.browser.visit(link, None).await;
        }
        assert_eq!(v.status, 303, "{link}: {}", v.body);
        let at_provider = v.location.expect("to the provider");
        assert!(
            at_provider.contains("code_challenge_method=S256") && at_provider.contains("resource="),
            "{at_provider}"
        );
        // The provider's pages: its login (unless this browser is signed in there already),
        // its consent, then back to the gateway.
        let mut next = at_provider;
        for _ in 0..10 {
            // The gateway's callback (a client it registered has one per server).
            let callback = format!("{gw}/oauth/callback");
            if next.starts_with(&format!("{callback}?")) || next.starts_with(&format!("{callback}/")) {
                return next;
            }
            let v = self.browser.visit(&next, None).await;
            next = match (v.location, v.body.contains("name=\"password\"")) {
                (Some(l), _) => l,
                (None, true) => {
                    let form = [("prompt", "login"), ("login", self.name), ("password", "any")];
                    self.browser.go(&next, Some(&form)).await
                }
                (None, false) => self.browser.go(&next, Some(&[("prompt", "consent")])).await,
            };
        }
        panic!("never sent back to the gateway: {next}")
    }

    /// [`Person::authorize`] and the callback: connected.
    pub(super) async fn connect(&mut self, gw: &str, link: &str) {
        let callback = self.authorize(gw, link).await;
        let v = self.browser.visit(&callback, None).await;
        assert_eq!(v.status, 200, "{}", v.body);
        assert!(v.body.contains("Connected to"), "{}", v.body);
    }

    /// `POST /me/connections/{up}`: a connect link.
    pub(super) async fn link(&self, gw: &str, up: &str) -> String {
        let r = http_client()
            .post(format!("{gw}/me/connections/{up}"))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("POST");
        assert_eq!(r.status().as_u16(), 201);
        let v: Value = r.json().await.expect("json");
        v["url"].as_str().expect("url").to_string()
    }

    pub(super) async fn connections(&self, gw: &str) -> Value {
        let r = http_client()
            .get(format!("{gw}/me/connections"))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status().as_u16(), 200);
        r.json().await.expect("json")
    }

    /// `drive__whoami` over `/rpc`: the answer.
    async fn rpc_whoami(&self, gw: &str) -> Value {
        let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "drive__whoami", "arguments": {}}});
        let r = http_client()
            .post(format!("{gw}/rpc"))
            .bearer_auth(&self.token)
            .json(&call)
            .send()
            .await
            .expect("rpc");
        r.json().await.expect("json")
    }
}

/// Registers an upstream as the administrator: the stored record (201 asserted).
pub(super) async fn register(g: &str, def: Value) -> Value {
    let r = http_client()
        .post(format!("{g}/gateways"))
        .bearer_auth(token("root", "mcpgw:admin"))
        .json(&def)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("POST /gateways");
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 201, "{v}");
    v
}

/// What the upstream said the caller is.
pub(super) fn who(answer: &Value) -> Value {
    let text = answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("not a result: {answer}"));
    serde_json::from_str(text).expect("whoami JSON")
}

pub(super) fn connect_link(answer: &Value) -> String {
    assert_eq!(answer["error"]["code"], -32042, "{answer}");
    let e = &answer["error"]["data"]["elicitations"][0];
    assert_eq!(e["mode"], "url", "{answer}");
    assert!(e["elicitationId"].is_string(), "{answer}");
    e["url"].as_str().expect("url").to_string()
}

/// Two callers through one upstream each reach it as themselves, after authorizing the gateway
/// once at its authorization server: through the connect link of their API, of the -32042 error
/// a call gets, and of a URL elicitation in the call itself (which then goes on). A link made for
/// one is refused to the other; a callback with another issuer is refused and used up; a token
/// about to expire is refreshed; a disconnection (or the upstream's removal) drops the tokens.
/// Nothing the provider issued is written in clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_caller_reaches_an_upstream_with_their_own_authorization() {
    let dir = TempDir::new("upstream-user-oauth");
    let calls = dir.join("calls.jsonl");
    let oidc = Fixture::start_cmd("tests/fixture/oidc.mjs", &["--access-ttl", "45"]);
    let up = Fixture::start_with("streamable-http", 0, Some(&calls), &["--oauth", &oidc.url]);
    let env = [
        ("MCPGW_AUTH_REQUIRED", "true"),
        ("MCPGW_JWT_SECRET", SECRET),
        ("MCPGW_LOG", "debug"),
    ];
    let mut gw = start_target_with(&dir, &[], &env).expect("gateway");
    let g = gw.url().to_string();
    let admin = token("root", "mcpgw:admin");

    // Registered with no caller's token: its catalog waits for the first to connect.
    let def = json!({"name": "drive", "url": format!("{}/mcp", up.url), "auth": {
        "mode": "user", "client_id": "gw-user-secret", "client_secret": "user-secret", "scope": "openid read"}});
    let v = register(&g, def).await;
    assert_eq!(v["auth"]["client_secret"], "********", "{v}");

    let mut alice = Person::new("alice");
    let mut bob = Person::new("bob");
    let list = alice.connections(&g).await;
    assert_eq!(list[0]["name"], "drive", "{list}");
    assert_eq!(list[0]["connected"], false, "{list}");

    // Alice connects from the API's link.
    let link = alice.link(&g, "drive").await;
    let connected_at = Instant::now();
    alice.connect(&g, &link).await;
    let list = alice.connections(&g).await;
    assert_eq!(list[0]["connected"], true, "{list}");
    assert_eq!(list[0]["refreshable"], true, "{list}");
    assert!(!list.to_string().contains("eyJ"), "no token shown: {list}");
    // The link is used up.
    assert_eq!(alice.browser.visit(&link, None).await.status, 410);

    let mcp = format!("{g}/mcp");
    let mut a = mcpgw_e2e::RawSession::open_as(&mcp, json!({}), &alice.token)
        .await
        .expect("alice's session");
    let (answer, _) = a.tool(json!(1), "drive__whoami", json!({})).await.expect("call");
    let first = who(&answer);
    assert_eq!(first["sub"], "alice", "{answer}");
    assert_eq!(first["client_id"], "gw-user-secret", "{answer}");

    // Bob has not connected: his call says where to.
    let mut b = mcpgw_e2e::RawSession::open_as(&mcp, json!({}), &bob.token)
        .await
        .expect("bob's session");
    let (answer, _) = b.tool(json!(1), "drive__whoami", json!({})).await.expect("call");
    let bobs = connect_link(&answer);
    // Alice's browser cannot take Bob's link (nor his tokens).
    let v = alice.browser.visit(&bobs, None).await;
    assert_eq!(v.status, 403, "{}", v.body);
    // A callback naming another issuer is refused, and its authorization is gone with it.
    let callback = bob.authorize(&g, &bobs).await;
    assert!(callback.contains("iss="), "{callback}");
    let forged = callback.replace("iss=", "iss=https%3A%2F%2Fevil.example&was=");
    let v = bob.browser.visit(&forged, None).await;
    assert_eq!(v.status, 400, "{}", v.body);
    assert!(v.body.contains("issuer"), "{}", v.body);
    let v = bob.browser.visit(&callback, None).await;
    assert_eq!(v.status, 410, "single use: {}", v.body);
    // From the next call's link, he connects.
    let (answer, _) = b.tool(json!(2), "drive__whoami", json!({})).await.expect("call");
    let bobs = connect_link(&answer);
    bob.connect(&g, &bobs).await;
    let (answer, _) = b.tool(json!(3), "drive__whoami", json!({})).await.expect("call");
    assert_eq!(who(&answer)["sub"], "bob", "{answer}");
    let (answer, _) = a.tool(json!(2), "drive__whoami", json!({})).await.expect("call");
    assert_eq!(who(&answer)["sub"], "alice", "{answer}");
    // Without a session too, each as themselves.
    assert_eq!(who(&bob.rpc_whoami(&g).await)["sub"], "bob");
    assert_eq!(who(&alice.rpc_whoami(&g).await)["sub"], "alice");

    // Alice's token is refreshed before it expires (45 s, refreshed from 30 s before).
    let due = Duration::from_secs(16);
    if let Some(wait) = due.checked_sub(connected_at.elapsed()) {
        tokio::time::sleep(wait).await;
    }
    let (answer, _) = a.tool(json!(3), "drive__whoami", json!({})).await.expect("call");
    let later = who(&answer);
    assert_eq!(later["sub"], "alice", "{answer}");
    assert_ne!(later["iat"], first["iat"], "a new token: {first} then {later}");

    // Disconnected: her next call sends her to connect again.
    let r = http_client()
        .delete(format!("{g}/me/connections/drive"))
        .bearer_auth(&alice.token)
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.status().as_u16(), 204);
    // Where the disconnection was made elsewhere (on the edge, the Worker, while the session's
    // object holds the link), it takes effect within the registry's cache time (2 s), as a
    // revocation does.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let (answer, _) = a.tool(json!(4), "drive__whoami", json!({})).await.expect("call");
    let again = connect_link(&answer);

    // A client that takes URL elicitations is asked in the call; it opens the link (here, a
    // browser task) and accepts; the call goes on once she is connected.
    let mut c = mcpgw_e2e::RawSession::open_as(&mcp, json!({"elicitation": {"url": {}}}), &alice.token)
        .await
        .expect("session");
    let mut browsing = Some((std::mem::take(&mut alice.browser), alice.token.clone(), g.clone()));
    let mut opened = None;
    let (answer, seen) = c
        .call(
            json!(1),
            "tools/call",
            json!({"name": "drive__whoami", "arguments": {}}),
            |m| {
                if m["method"] != "elicitation/create" {
                    return None;
                }
                assert_eq!(m["params"]["mode"], "url", "{m}");
                let url = m["params"]["url"].as_str().expect("url").to_string();
                let Some((browser, token, g)) = browsing.take() else {
                    panic!("asked again: {m}");
                };
                opened = Some(tokio::spawn(async move {
                    let mut p = Person {
                        name: "alice",
                        token,
                        browser,
                    };
                    p.connect(&g, &url).await;
                }));
                Some(json!({"action": "accept"}))
            },
        )
        .await
        .expect("call");
    opened.expect("the link was opened").await.expect("browser");
    assert_eq!(who(&answer)["sub"], "alice", "{answer}");
    assert!(
        seen.iter()
            .any(|(_, m)| m["method"] == "notifications/elicitation/complete"),
        "{seen:?}"
    );
    drop(again);

    // The upstream removed: every caller's tokens go with it.
    let r = http_client()
        .delete(format!("{g}/gateways/drive"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(bob.connections(&g).await, json!([]));

    // Nothing the provider issued (RS256 JWTs), nor the client's secret, in clear where the
    // gateway writes: its logs at debug, its state.
    let written = super::upstream_oauth::written_by(&mut gw, &dir);
    let text = String::from_utf8_lossy(&written);
    assert!(text.contains("gw-user-secret"), "the state was read");
    assert!(
        !text.contains("eyJhbGciOiJSUzI1Ni"),
        "a provider's token written in clear"
    );
    assert!(!text.contains("\"user-secret\""), "the client secret written in clear");
    drop(up);
    drop(oidc);
}

/// An upstream taking a token exchanged from the caller's own: at a token service (RFC 8693),
/// or as enterprise-managed authorization (an ID-JAG from the IdP, then a jwt-bearer grant at
/// the upstream's authorization server). Each caller reaches it as themselves; the caller's own
/// token never reaches the upstream (which would refuse it); the catalog is read as the
/// administrator registering it. Nothing secret is written in clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_own_token_is_exchanged_for_the_upstream_never_passed_on() {
    let dir = TempDir::new("upstream-exchange");
    let oidc = Fixture::start_cmd("tests/fixture/oidc.mjs", &["--subject-secret", SECRET]);
    let up = Fixture::start_with("streamable-http", 0, None, &["--oauth", &oidc.url]);
    let env = [
        ("MCPGW_AUTH_REQUIRED", "true"),
        ("MCPGW_JWT_SECRET", SECRET),
        ("MCPGW_LOG", "debug"),
    ];
    let mut gw = start_target_with(&dir, &[], &env).expect("gateway");
    let g = gw.url().to_string();
    let url = format!("{}/mcp", up.url);
    for def in [
        json!({"name": "te", "url": url, "auth": {"mode": "token-exchange", "client_id": "gw-exchange",
            "client_secret": "exchange-secret", "token_service": oidc.url, "scope": "read"}}),
        json!({"name": "ema", "url": url, "auth": {"mode": "enterprise", "client_id": "gw-exchange",
            "client_secret": "exchange-secret", "scope": "read write", "idp": {"issuer": oidc.url, "client_id": "gw-idp",
            "client_secret": "idp-secret", "method": "client_secret_post",
            "subject_token_type": "urn:ietf:params:oauth:token-type:access_token"}}}),
    ] {
        let v = register(&g, def).await;
        assert!(!v.to_string().contains("-secret\""), "{v}");
    }
    let mcp = format!("{g}/mcp");
    let people = [Person::new("alice"), Person::new("bob")];
    for p in &people {
        let mut s = mcpgw_e2e::RawSession::open_as(&mcp, json!({}), &p.token)
            .await
            .expect("session");
        // Each upstream gets its own token (the same URL and client, other settings).
        for (i, (tool, scope)) in [("te__whoami", "read"), ("ema__whoami", "read write")]
            .into_iter()
            .enumerate()
        {
            let (answer, _) = s.tool(json!(i), tool, json!({})).await.expect("call");
            let w = who(&answer);
            assert_eq!(w["sub"], p.name, "{tool}: {answer}");
            assert_eq!(w["client_id"], "gw-exchange", "{tool}: {answer}");
            assert_eq!(w["scope"], scope, "{tool}: {answer}");
        }
        let call = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "ema__whoami", "arguments": {}}});
        let r = http_client()
            .post(format!("{g}/rpc"))
            .bearer_auth(&p.token)
            .json(&call)
            .send()
            .await
            .expect("rpc");
        let answer: Value = r.json().await.expect("json");
        assert_eq!(who(&answer)["sub"], p.name, "{answer}");
    }
    let written = super::upstream_oauth::written_by(&mut gw, &dir);
    let text = String::from_utf8_lossy(&written);
    assert!(text.contains("gw-idp"), "the state was read");
    for secret in [
        "\"exchange-secret\"",
        "\"idp-secret\"",
        "eyJhbGciOiJSUzI1Ni",
        "eyJhbGciOiJFUzI1Ni",
    ] {
        assert!(!text.contains(secret), "{secret} written in clear");
    }
    for p in &people {
        assert!(!text.contains(&p.token), "{}'s token written in clear", p.name);
    }
    drop(up);
    drop(oidc);
}

/// The official Python SDK (both eras) and TypeScript SDK (1.x; v2 in both eras) as clients:
/// the gateway's URL elicitation (in the call for a 2025-11-25 session, `input_required` for
/// 2026-07-28) is answered by following the link headlessly as a browser would, and the call
/// succeeds as the person who followed it; the next asks nothing. The upstream's client is
/// public here (`method = none`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_and_typescript_sdks_follow_the_url_elicitation_and_their_calls_succeed() {
    let dir = TempDir::new("upstream-user-sdk");
    let oidc = Fixture::start_cmd("tests/fixture/oidc.mjs", &[]);
    let up = Fixture::start_with("streamable-http", 0, None, &["--oauth", &oidc.url]);
    let env = [("MCPGW_AUTH_REQUIRED", "true"), ("MCPGW_JWT_SECRET", SECRET)];
    let gw = start_target_with(&dir, &[], &env).expect("gateway");
    let g = gw.url().to_string();
    let def = json!({"name": "drive", "url": format!("{}/mcp", up.url), "auth": {
        "mode": "user", "client_id": "gw-user", "method": "none", "scope": "openid read"}});
    register(&g, def).await;
    // The first to connect lets the gateway read the catalog.
    let mut carol = Person::new("carol");
    let link = carol.link(&g, "drive").await;
    carol.connect(&g, &link).await;
    for (login, mode) in [("dave", "legacy"), ("erin", "2026-07-28")] {
        let script = mcpgw_e2e::repo_root().join("tests/clients/url_elicitation_client.py");
        let mut cmd = std::process::Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()));
        cmd.arg(script)
            .arg(format!("{g}/mcp"))
            .arg("drive__whoami")
            .arg(login)
            .arg(mode)
            .env("MCPGW_TOKEN", token(login, "mcpgw:client"));
        let (ok, out) = mcpgw_e2e::run_with_timeout(&mut cmd, Duration::from_secs(90)).expect("python");
        assert!(ok && out.contains("PASS url elicitation"), "{mode}:\n{out}");
    }
    // The TypeScript SDK: the 1.x line and the v2 client in the session era, the v2 client
    // pinned to 2026-07-28 (the elicitation in `input_required`, the call retried by the SDK).
    for (login, sdk) in [("frank", "v1"), ("grace", "v2-legacy"), ("heidi", "v2-2026")] {
        let mut cmd = std::process::Command::new(mcpgw_e2e::node_bin());
        cmd.arg(mcpgw_e2e::repo_root().join("tests/clients/ts_url_elicitation.mjs"))
            .arg(format!("{g}/mcp"))
            .arg("drive__whoami")
            .arg(login)
            .arg(sdk)
            .current_dir(mcpgw_e2e::repo_root())
            .env("MCPGW_TOKEN", token(login, "mcpgw:client"));
        let (ok, out) = mcpgw_e2e::run_with_timeout(&mut cmd, Duration::from_secs(90)).expect("node");
        assert!(ok && out.contains("PASS url elicitation"), "{sdk}:\n{out}");
    }
    drop(up);
    drop(oidc);
}
