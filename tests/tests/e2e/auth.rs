//! Authentication and authorization, on the selected target (native or edge): every MCP and
//! admin route against every kind of bad token and a good one; scopes (admin versus client, a
//! virtual server's own scope, members hidden from callers without theirs); sessions bound to
//! their subject; revocation through the API; basic auth on the admin API; RFC 9728 metadata;
//! HS256/RS256 key confusion on an RS256 gateway; `mcpgw token` (native).

use mcpgw_e2e::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const SECRET: &str = "k9Xr2mQv7LpT4sWz8NbY1cHf6JdG3aRu5EoK0iVn";
const ADMIN_PASSWORD: &str = "correct horse battery staple";

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"auth-test","version":"1"}}}"#;
const LIST: &str = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;

fn claims(sub: &str, scope: &str, jti: &str) -> Value {
    let now = unix_now();
    json!({"sub": sub, "iss": "mcpgw", "aud": "mcpgw", "iat": now, "exp": now + 600, "scope": scope, "jti": jti})
}

fn hs(payload: Value) -> String {
    sign_jwt("HS256", SECRET, payload)
}

/// One route of the matrix: what a valid admin token gets, and whether it is an MCP route.
struct Route {
    method: Method,
    path: &'static str,
    body: Option<&'static str>,
    mcp: bool,
    ok: StatusCode,
}

fn routes() -> Vec<Route> {
    let r = |method: Method, path: &'static str, body: Option<&'static str>, mcp: bool, ok: u16| Route {
        method,
        path,
        body,
        mcp,
        ok: StatusCode::from_u16(ok).expect("status"),
    };
    vec![
        r(Method::POST, "/mcp", Some(INIT), true, 200),
        r(Method::GET, "/mcp", None, true, 400),
        r(Method::DELETE, "/mcp", None, true, 400),
        r(Method::POST, "/servers/open/mcp", Some(INIT), true, 200),
        r(Method::GET, "/sse", None, true, 200),
        r(Method::GET, "/servers/open/sse", None, true, 200),
        r(Method::POST, "/message?sessionId=nope", Some(LIST), true, 404),
        r(Method::POST, "/rpc", Some(LIST), true, 200),
        r(Method::GET, "/tools", None, false, 200),
        r(Method::GET, "/tools/echo", None, false, 200),
        r(Method::POST, "/tools", Some("{}"), false, 422),
        r(Method::DELETE, "/tools/no-such-tool", None, false, 404),
        r(Method::GET, "/resources", None, false, 200),
        r(Method::GET, "/prompts", None, false, 200),
        r(Method::GET, "/servers", None, false, 200),
        r(Method::PATCH, "/servers/open", Some("{}"), false, 200),
        r(Method::GET, "/gateways", None, false, 200),
        r(Method::POST, "/gateways/no-such/refresh", None, false, 404),
        r(Method::GET, "/auth/revocations", None, false, 200),
    ]
}

/// What a route answered a valid token is the route's own answer, not the guard's: an SSE
/// stream starts with its endpoint event; an MCP success carries a result; a REST success is
/// JSON; a refusal past the guard (a missing id, an invalid body) is an error naming no token.
async fn assert_served(r: reqwest::Response, route: &Route) {
    let label = format!("{} {} with a valid token", route.method, route.path);
    let status = r.status();
    let sse = r
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if sse {
        let mut r = r;
        let first = tokio::time::timeout(std::time::Duration::from_secs(5), r.chunk())
            .await
            .unwrap_or_else(|_| panic!("{label}: nothing on the stream"))
            .expect("chunk")
            .unwrap_or_default();
        let first = String::from_utf8_lossy(&first);
        assert!(first.contains("event: endpoint"), "{label}: {first}");
        return;
    }
    let body: Value = r.json().await.unwrap_or_else(|e| panic!("{label}: not JSON: {e}"));
    if !status.is_success() {
        assert!(body.get("error").is_some(), "{label}: {body}");
        assert!(!body.to_string().contains("token"), "{label}: {body}");
    } else if route.mcp {
        assert!(body["result"].is_object(), "{label}: {body}");
    } else {
        assert!(body.is_object() || body.is_array(), "{label}: {body}");
    }
}

async fn send(http: &reqwest::Client, url: &str, route: &Route, auth: Option<&str>) -> reqwest::Response {
    let accept = if route.mcp && route.method == Method::GET {
        "text/event-stream"
    } else {
        "application/json, text/event-stream"
    };
    let mut rb = http
        .request(route.method.clone(), format!("{url}{}", route.path))
        .header("accept", accept);
    if let Some(b) = route.body {
        rb = rb.header("content-type", "application/json").body(b);
    }
    if let Some(a) = auth {
        rb = rb.header("authorization", a);
    }
    rb.send().await.expect("request")
}

async fn admin_json(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    method: Method,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    let r = http
        .request(method, format!("{url}{path}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("admin request");
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Checks a refusal: status, challenge and body (JSON-RPC on MCP routes, REST error otherwise).
async fn assert_refused(r: reqwest::Response, route: &Route, status: StatusCode, reason: &str, what: &str) {
    let label = format!("{} {} with {what}", route.method, route.path);
    assert_eq!(r.status(), status, "{label}");
    let challenge = r
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        challenge.starts_with("Bearer ") && challenge.contains("resource_metadata=\"http://"),
        "{label}: WWW-Authenticate {challenge:?}"
    );
    if reason != "missing_credentials" {
        let code = if status == StatusCode::FORBIDDEN {
            "insufficient_scope"
        } else {
            "invalid_token"
        };
        assert!(challenge.contains(&format!("error=\"{code}\"")), "{label}: {challenge}");
    } else {
        assert!(
            !challenge.contains("error="),
            "{label}: no error code without credentials: {challenge}"
        );
    }
    let body: Value = r.json().await.unwrap_or_else(|e| panic!("{label}: body not JSON: {e}"));
    if route.mcp {
        assert_eq!(body["jsonrpc"], "2.0", "{label}: {body}");
        let code = if status == StatusCode::FORBIDDEN {
            -32043
        } else {
            -32040
        };
        assert_eq!(body["error"]["code"], code, "{label}: {body}");
        assert_eq!(body["error"]["data"]["reason"], reason, "{label}: {body}");
    } else {
        assert_eq!(body["error"]["code"], reason, "{label}: {body}");
    }
}

fn auth_env(hash: &str) -> Vec<(&'static str, String)> {
    vec![
        ("MCPGW_AUTH_REQUIRED", "true".into()),
        ("MCPGW_JWT_SECRET", SECRET.into()),
        ("MCPGW_ADMIN_USER", "admin".into()),
        ("MCPGW_ADMIN_PASSWORD_HASH", hash.into()),
    ]
}

#[tokio::test]
async fn every_route_refuses_every_bad_token_and_serves_a_good_one() {
    let dir = TempDir::new("auth-matrix");
    let hash = mcpgw_core::security::auth::PasswordHash::create(ADMIN_PASSWORD, b"fixed-test-salt!", 10_000);
    let env = auth_env(&hash);
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let gw = start_target_with(&dir, &[], &env_ref).expect("start gateway");
    let url = gw.url().to_string();
    let http = http_client();
    let admin = hs(claims("root", "mcpgw:admin", "admin-1"));

    // Registry through the admin API: a tool, an open server, a scoped server, a scoped tool.
    let backend = start_rest_backend().await.expect("backend");
    let tool = json!({"name": "echo", "url": format!("{}/echo", backend.url), "method": "POST"});
    assert_eq!(
        admin_json(&http, &url, &admin, Method::POST, "/tools", tool).await.0,
        StatusCode::CREATED
    );
    let secret_tool =
        json!({"name": "launch", "url": format!("{}/echo", backend.url), "method": "POST", "scope": "ops"});
    assert_eq!(
        admin_json(&http, &url, &admin, Method::POST, "/tools", secret_tool)
            .await
            .0,
        StatusCode::CREATED
    );
    for server in [
        json!({"name": "open", "tools": ["echo", "launch"]}),
        json!({"name": "team", "tools": ["echo"], "scope": "team-a"}),
    ] {
        assert_eq!(
            admin_json(&http, &url, &admin, Method::POST, "/servers", server)
                .await
                .0,
            StatusCode::CREATED
        );
    }
    // Revoke one token by its jti.
    let (st, body) = admin_json(
        &http,
        &url,
        &admin,
        Method::POST,
        "/auth/revocations",
        json!({"jti": "revoked-1", "reason": "test"}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");

    let now = unix_now();
    let mut expired = claims("root", "mcpgw:admin", "e");
    expired["exp"] = json!(now - 120);
    let mut early = claims("root", "mcpgw:admin", "n");
    early["nbf"] = json!(now + 600);
    let mut wrong_aud = claims("root", "mcpgw:admin", "a");
    wrong_aud["aud"] = json!("another-service");
    let mut wrong_iss = claims("root", "mcpgw:admin", "i");
    wrong_iss["iss"] = json!("https://issuer.invalid");
    let alg_none = {
        let good = hs(claims("root", "mcpgw:admin", "x"));
        let payload = good.split('.').nth(1).expect("payload").to_string();
        // {"alg":"none","typ":"JWT"}
        format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.")
    };
    let rs256 = sign_jwt(
        "RS256",
        &test_key("rs256.private.json"),
        claims("root", "mcpgw:admin", "r"),
    );
    let bad_sig = {
        let t = hs(claims("root", "mcpgw:admin", "s"));
        let (head, sig) = t.rsplit_once('.').expect("sig");
        let flipped = if sig.starts_with('A') { "B" } else { "A" };
        format!("{head}.{flipped}{}", &sig[1..])
    };
    let revoked = hs(claims("root", "mcpgw:admin", "revoked-1"));
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("no token", None, "missing_credentials"),
        ("an expired token", Some(hs(expired)), "token_expired"),
        ("a token not yet valid", Some(hs(early)), "token_not_yet_valid"),
        ("a token for another audience", Some(hs(wrong_aud)), "invalid_token"),
        ("a token from another issuer", Some(hs(wrong_iss)), "invalid_token"),
        ("alg none", Some(alg_none), "invalid_token"),
        ("an RS256 token (key confusion)", Some(rs256), "invalid_token"),
        ("a bad signature", Some(bad_sig), "invalid_token"),
        ("a revoked token", Some(revoked), "invalid_token"),
        ("garbage", Some("not.a.jwt".into()), "invalid_token"),
    ];
    let routes = routes();
    let mut checked = 0;
    for route in &routes {
        for (what, token, reason) in &cases {
            let auth = token.as_ref().map(|t| format!("Bearer {t}"));
            let r = send(&http, &url, route, auth.as_deref()).await;
            assert_refused(r, route, StatusCode::UNAUTHORIZED, reason, what).await;
            checked += 1;
        }
        let r = send(&http, &url, route, Some(&format!("Bearer {admin}"))).await;
        assert_eq!(
            r.status(),
            route.ok,
            "{} {} with a valid token",
            route.method,
            route.path
        );
        if r.status().is_success() {
            assert!(r.headers().get("www-authenticate").is_none());
        }
        assert_served(r, route).await;
        checked += 1;
    }
    assert_eq!(checked, routes.len() * (cases.len() + 1));

    // Public routes need nothing.
    for path in ["/health", "/version", "/.well-known/oauth-protected-resource/mcp"] {
        let r = http.get(format!("{url}{path}")).send().await.expect("public");
        assert_eq!(r.status(), StatusCode::OK, "{path}");
    }
    let meta = get_json(&format!("{url}/.well-known/oauth-protected-resource/mcp")).await;
    assert_eq!(meta["resource"], format!("{url}/mcp"), "{meta}");
    assert_eq!(meta["bearer_methods_supported"], json!(["header"]));
    assert!(meta["scopes_supported"]
        .as_array()
        .is_some_and(|s| s.contains(&json!("mcpgw:client"))));

    // A client token: MCP yes, admin API no (403 insufficient_scope naming the admin scope).
    let client = hs(claims("alice", "mcpgw:client", "c1"));
    let tools_route = &routes[8];
    let r = send(&http, &url, tools_route, Some(&format!("Bearer {client}"))).await;
    let challenge = r
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(challenge.contains("scope=\"mcpgw:admin\""), "{challenge}");
    assert_refused(
        r,
        tools_route,
        StatusCode::FORBIDDEN,
        "insufficient_scope",
        "a client token",
    )
    .await;
    // A token with neither scope gets nothing.
    let nobody = hs(claims("nobody", "", "z"));
    let r = send(&http, &url, &routes[7], Some(&format!("Bearer {nobody}"))).await;
    assert_refused(
        r,
        &routes[7],
        StatusCode::FORBIDDEN,
        "insufficient_scope",
        "a token without scopes",
    )
    .await;

    // Members with a scope are listed and callable only for callers holding it.
    let list = |token: String| {
        let url = url.clone();
        async move {
            let v: Value = list_tools(&url, token).await.expect("rpc").json().await.expect("json");
            let mut names: Vec<String> = v["result"]["tools"]
                .as_array()
                .expect("tools")
                .iter()
                .map(|t| t["name"].as_str().unwrap_or_default().to_string())
                .collect();
            names.sort();
            names
        }
    };
    assert_eq!(list(client.clone()).await, vec!["echo"]);
    assert_eq!(
        list(hs(claims("ops", "mcpgw:client ops", "o"))).await,
        vec!["echo", "launch"]
    );
    assert_eq!(list(admin.clone()).await, vec!["echo", "launch"]);
    let call = call_tool(&http, &url, Some(&client), "launch", json!({})).await;
    assert_eq!(
        call["error"]["code"], -32602,
        "a hidden tool is unknown to the caller: {call}"
    );

    // A virtual server's own scope.
    let team = Route {
        method: Method::POST,
        path: "/servers/team/mcp",
        body: Some(INIT),
        mcp: true,
        ok: StatusCode::OK,
    };
    let r = send(&http, &url, &team, Some(&format!("Bearer {client}"))).await;
    assert_refused(
        r,
        &team,
        StatusCode::FORBIDDEN,
        "insufficient_scope",
        "a client token without team-a",
    )
    .await;
    let member = hs(claims("bob", "mcpgw:client team-a", "t"));
    let r = send(&http, &url, &team, Some(&format!("Bearer {member}"))).await;
    assert_eq!(r.status(), StatusCode::OK);

    // A session belongs to the subject that opened it.
    let r = send(&http, &url, &routes[0], Some(&format!("Bearer {client}"))).await;
    assert_eq!(r.status(), StatusCode::OK);
    let sid = r
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .expect("session")
        .to_string();
    let use_session = |token: String| {
        http.post(format!("{url}/mcp"))
            .bearer_auth(token)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .header("mcp-session-id", sid.clone())
            .header("mcp-protocol-version", "2025-06-18")
            .body(LIST)
            .send()
    };
    assert_eq!(use_session(client.clone()).await.expect("own").status(), StatusCode::OK);
    let mallory = hs(claims("mallory", "mcpgw:client", "m"));
    // Another subject cannot use it: the session is not found for them (not "forbidden",
    // which would confirm it exists).
    let r = use_session(mallory).await.expect("other");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["jsonrpc"], "2.0", "{body}");
    assert!(body["error"]["code"].is_i64(), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.to_lowercase().contains("session")),
        "{body}"
    );

    // Revoking a token in use locks it out.
    let (st, _) = admin_json(
        &http,
        &url,
        &admin,
        Method::POST,
        "/auth/revocations",
        json!({"jti": "c1"}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    let r = use_session(client.clone()).await.expect("revoked");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], -32040, "{body}");
    assert!(
        body["error"]["message"].as_str().is_some_and(|m| m.contains("revoked")),
        "refused for the revocation, not something else: {body}"
    );
    let listed = http
        .get(format!("{url}/auth/revocations"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("list");
    let listed: Value = listed.json().await.expect("json");
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    let r = http
        .delete(format!("{url}/auth/revocations/c1"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("unrevoke");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        use_session(client.clone()).await.expect("again").status(),
        StatusCode::OK
    );

    // Basic auth: the admin API only, with the configured user and password.
    let basic = |user: &str, pw: &str| {
        http.get(format!("{url}/tools"))
            .basic_auth(user.to_string(), Some(pw.to_string()))
            .send()
    };
    assert_eq!(
        basic("admin", ADMIN_PASSWORD).await.expect("basic").status(),
        StatusCode::OK
    );
    assert_eq!(
        basic("admin", ADMIN_PASSWORD).await.expect("cached").status(),
        StatusCode::OK
    );
    let r = basic("admin", "wrong password").await.expect("basic");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenges: Vec<String> = r
        .headers()
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok().map(String::from))
        .collect();
    // Two challenges: separate fields natively, one comma-joined field through workerd (both
    // are valid HTTP).
    assert!(challenges.iter().any(|c| c.contains("Basic realm=")), "{challenges:?}");
    assert_eq!(
        basic("root", ADMIN_PASSWORD).await.expect("basic").status(),
        StatusCode::UNAUTHORIZED
    );
    let r = http
        .post(format!("{url}/rpc"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("content-type", "application/json")
        .body(LIST)
        .send()
        .await
        .expect("basic on mcp");
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "basic auth is for the admin API only"
    );
}

/// A gateway with auth on for `alg` with the public key (JWK text) `public`.
fn keyed_gateway(dir: &TempDir, alg: &str, public: &str) -> TestGateway {
    let env = [
        ("MCPGW_AUTH_REQUIRED", "true"),
        ("MCPGW_JWT_ALGORITHM", alg),
        ("MCPGW_JWT_PUBLIC_KEY", public.trim()),
    ];
    start_target_with(dir, &[], &env).expect("start gateway")
}

/// Asserts that `r` is a 401 whose error message names `why`.
async fn refused_for(r: reqwest::Response, why: &str) {
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "expected a refusal for: {why}");
    let body: Value = r.json().await.expect("json");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(why), "{body}");
}

/// `tools/list` on `/rpc` with `token`.
async fn list_tools(url: &str, token: String) -> reqwest::Result<reqwest::Response> {
    http_client()
        .post(format!("{url}/rpc"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(LIST)
        .send()
        .await
}

#[tokio::test]
async fn an_rs256_gateway_refuses_hs256_signed_with_its_public_key() {
    let dir = TempDir::new("auth-rs256");
    let public = test_key("rs256.public.json");
    let gw = keyed_gateway(&dir, "RS256", &public);
    let rpc = |token: String| list_tools(gw.url(), token);
    let good = sign_jwt(
        "RS256",
        &test_key("rs256.private.json"),
        claims("svc", "mcpgw:client", "g"),
    );
    assert_eq!(rpc(good).await.expect("rpc").status(), StatusCode::OK);
    // The classic confusion: HS256 with the RSA public key (as published) as the HMAC secret.
    for secret in [public.trim().to_string(), public.clone()] {
        let forged = sign_jwt("HS256", &secret, claims("svc", "mcpgw:client", "f"));
        refused_for(rpc(forged).await.expect("rpc"), "algorithm").await;
    }
    // Another RSA key under the configured key's kid reaches the signature check and fails it;
    // another algorithm's key is refused for its algorithm.
    let other = sign_jwt_as(
        "RS256",
        &test_key("rs256-other.private.json"),
        Some("test-rs-1"),
        claims("svc", "mcpgw:client", "o"),
    );
    refused_for(rpc(other).await.expect("rpc"), "signature").await;
    let es = sign_jwt(
        "ES256",
        &test_key("es256.private.json"),
        claims("svc", "mcpgw:client", "e"),
    );
    assert_eq!(rpc(es).await.expect("rpc").status(), StatusCode::UNAUTHORIZED);
}

/// Gateways configured for ES256 and for EdDSA (their public keys as JWKs) accept tokens their
/// keys signed and refuse one whose signature lost a bit, and one signed by the other algorithm's
/// key. On the edge these signatures are checked by WebCrypto, natively in Rust.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es256_and_eddsa_gateways_check_signatures() {
    for (alg, key, other) in [
        ("ES256", "es256", ("EdDSA", "ed25519")),
        ("EdDSA", "ed25519", ("ES256", "es256")),
    ] {
        let dir = TempDir::new("auth-asym");
        let gw = keyed_gateway(&dir, alg, &test_key(&format!("{key}.public.json")));
        let rpc = |token: String| list_tools(gw.url(), token);
        let good = sign_jwt(
            alg,
            &test_key(&format!("{key}.private.json")),
            claims("svc", "mcpgw:client", "g"),
        );
        for round in 0..2 {
            // The second time the edge's imported key comes from its cache.
            let r = rpc(good.clone()).await.expect("rpc");
            assert_eq!(r.status(), StatusCode::OK, "{alg} round {round}");
        }
        let (signed, sig) = good.rsplit_once('.').expect("three parts");
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut sig = base64::Engine::decode(&b64, sig).expect("base64url");
        sig[10] ^= 0x40;
        let altered = format!("{signed}.{}", base64::Engine::encode(&b64, sig));
        refused_for(rpc(altered).await.expect("rpc"), "signature").await;
        let foreign = sign_jwt(
            other.0,
            &test_key(&format!("{}.private.json", other.1)),
            claims("svc", "mcpgw:client", "o"),
        );
        assert_eq!(
            rpc(foreign).await.expect("rpc").status(),
            StatusCode::UNAUTHORIZED,
            "{alg}: a token of {}",
            other.0
        );
    }
}

#[test]
fn mcpgw_token_prints_a_token_the_gateway_accepts() {
    if target() == Target::Edge {
        return skip(
            "mcpgw_token_prints_a_token_the_gateway_accepts",
            "the mcpgw CLI is native",
        );
    }
    let out = std::process::Command::new(gateway_bin())
        .args(["token", "--sub", "cli-user", "--exp", "120", "--scope", "mcpgw:client"])
        .env("MCPGW_JWT_SECRET", SECRET)
        .output()
        .expect("run mcpgw token");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).expect("utf-8").trim().to_string();
    // A weak secret is refused with how to make a good one.
    let weak = std::process::Command::new(gateway_bin())
        .args(["token", "--sub", "x"])
        .env("MCPGW_JWT_SECRET", "short")
        .output()
        .expect("run");
    assert!(!weak.status.success());
    assert!(String::from_utf8_lossy(&weak.stderr).contains("openssl rand"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let dir = TempDir::new("auth-cli");
        let gw = start_target_with(
            &dir,
            &[],
            &[("MCPGW_AUTH_REQUIRED", "true"), ("MCPGW_JWT_SECRET", SECRET)],
        )
        .expect("start");
        let r = http_client()
            .post(format!("{}/rpc", gw.url()))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(LIST)
            .send()
            .await
            .expect("rpc");
        assert_eq!(r.status(), StatusCode::OK);
    });
}
