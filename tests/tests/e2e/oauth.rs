//! OAuth 2.1 resource-server mode, on the selected target: a test authorization server on
//! 127.0.0.1 (metadata, JWKS, client-credentials token endpoint, RS256), and a client that
//! follows the spec's discovery: 401 → `WWW-Authenticate` → protected-resource metadata →
//! issuer metadata → token (with the RFC 8707 `resource`) → tool call. A token minted for
//! another audience, or by another issuer, is refused; a rotated key is picked up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Form, State};
use axum::routing::{get, post};
use mcpgw_e2e::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

const CLIENT_ID: &str = "agent-1";
const CLIENT_SECRET: &str = "s3cr3t-for-tests-only";

struct Issuer {
    url: String,
    /// The key id the issuer signs with now (`test-rs-1`, or `test-rs-2` after rotation).
    current: Arc<Mutex<&'static str>>,
    /// How many times its JWKS was fetched.
    jwks_fetches: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Issuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct IssuerState {
    url: String,
    current: Arc<Mutex<&'static str>>,
    jwks_fetches: Arc<std::sync::atomic::AtomicUsize>,
}

fn private_key(kid: &str) -> String {
    test_key(if kid == "test-rs-1" {
        "rs256.private.json"
    } else {
        "rs256-other.private.json"
    })
}

/// An authorization server: RFC 8414 metadata, a JWKS with the current key, and a token
/// endpoint for the client-credentials grant whose tokens carry `aud` = the `resource` asked for.
async fn start_issuer() -> Issuer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let current = Arc::new(Mutex::new("test-rs-1"));
    let jwks_fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let state = IssuerState {
        url: url.clone(),
        current: current.clone(),
        jwks_fetches: jwks_fetches.clone(),
    };
    async fn metadata(State(s): State<IssuerState>) -> axum::Json<Value> {
        axum::Json(json!({
            "issuer": s.url,
            "token_endpoint": format!("{}/token", s.url),
            "jwks_uri": format!("{}/jwks", s.url),
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_post"],
        }))
    }
    async fn jwks(State(s): State<IssuerState>) -> axum::Json<Value> {
        s.jwks_fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let kid = *s.current.lock().expect("lock");
        let name = if kid == "test-rs-1" {
            "rs256.public.json"
        } else {
            "rs256-other.public.json"
        };
        axum::Json(serde_json::from_str(&test_key(name)).expect("jwks"))
    }
    async fn token(
        State(s): State<IssuerState>,
        Form(f): Form<HashMap<String, String>>,
    ) -> (StatusCode, axum::Json<Value>) {
        let ok = f.get("grant_type").map(String::as_str) == Some("client_credentials")
            && f.get("client_id").map(String::as_str) == Some(CLIENT_ID)
            && f.get("client_secret").map(String::as_str) == Some(CLIENT_SECRET);
        if !ok {
            return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "invalid_client"})));
        }
        let now = unix_now();
        let kid = *s.current.lock().expect("lock");
        let claims = json!({
            "iss": s.url, "sub": CLIENT_ID, "aud": f.get("resource").cloned().unwrap_or_default(),
            "iat": now, "exp": now + 300, "scope": f.get("scope").cloned().unwrap_or_default(),
        });
        let jwt = sign_jwt("RS256", &private_key(kid), claims);
        (
            StatusCode::OK,
            axum::Json(json!({"access_token": jwt, "token_type": "Bearer", "expires_in": 300})),
        )
    }
    let app = axum::Router::new()
        .route("/.well-known/oauth-authorization-server", get(metadata))
        .route("/jwks", get(jwks))
        .route("/token", post(token))
        .with_state(state);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Issuer {
        url,
        current,
        jwks_fetches,
        task,
    }
}

/// `resource_metadata="…"` from a challenge.
fn metadata_url(challenge: &str) -> Option<String> {
    let start = challenge.find("resource_metadata=\"")? + "resource_metadata=\"".len();
    let rest = &challenge[start..];
    Some(rest[..rest.find('"')?].to_string())
}

const LIST: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;

#[tokio::test]
async fn a_client_discovers_the_issuer_gets_a_token_and_calls_a_tool() {
    let issuer = start_issuer().await;
    let dir = TempDir::new("oauth");
    let gw = start_target_with(
        &dir,
        &[],
        &[
            ("MCPGW_AUTH_REQUIRED", "true"),
            ("MCPGW_OAUTH_ISSUER", issuer.url.as_str()),
            // Rotation below needs a fetch right after the first: no wait between fetches.
            ("MCPGW_OAUTH_JWKS_REFETCH_SECS", "0"),
        ],
    )
    .expect("start gateway");
    let url = gw.url().to_string();
    let http = http_client();
    let rpc = |token: Option<String>, body: &'static str| {
        let mut rb = http
            .post(format!("{url}/rpc"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        rb.send()
    };

    // 1. No token: 401 and where to look.
    let r = rpc(None, LIST).await.expect("rpc");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge = r.headers()["www-authenticate"].to_str().expect("ascii").to_string();
    assert!(challenge.contains("scope=\"mcpgw:client\""), "{challenge}");
    let meta_url = metadata_url(&challenge).expect("resource_metadata");
    assert_eq!(meta_url, format!("{url}/.well-known/oauth-protected-resource/rpc"));
    // 2. Protected-resource metadata (RFC 9728): the resource and its authorization server.
    let meta = get_json(&meta_url).await;
    let resource = meta["resource"].as_str().expect("resource").to_string();
    assert_eq!(resource, format!("{url}/rpc"));
    let auth_server = meta["authorization_servers"][0]
        .as_str()
        .expect("authorization_servers")
        .to_string();
    assert_eq!(auth_server, issuer.url);
    assert!(meta["scopes_supported"]
        .as_array()
        .is_some_and(|s| s.contains(&json!("mcpgw:client"))));
    // 3. Issuer metadata (RFC 8414), 4. a token for this resource.
    let as_meta = get_json(&format!("{auth_server}/.well-known/oauth-authorization-server")).await;
    let token_endpoint = as_meta["token_endpoint"].as_str().expect("token_endpoint").to_string();
    let get_token = |resource: String| {
        let http = http.clone();
        let token_endpoint = token_endpoint.clone();
        async move {
            let r: Value = http
                .post(&token_endpoint)
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", CLIENT_ID),
                    ("client_secret", CLIENT_SECRET),
                    ("scope", "mcpgw:client"),
                    ("resource", resource.as_str()),
                ])
                .send()
                .await
                .expect("token")
                .json()
                .await
                .expect("json");
            r["access_token"].as_str().expect("access_token").to_string()
        }
    };
    let token = get_token(resource.clone()).await;
    // 5. The call.
    let r = rpc(Some(token.clone()), LIST).await.expect("rpc");
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.expect("json");
    assert!(body["result"]["tools"].is_array(), "{body}");
    // The same token over streamable HTTP (its audience is this gateway's resource).
    let r = http
        .post(format!("{url}/mcp"))
        .bearer_auth(get_token(format!("{url}/mcp")).await)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"oauth","version":"1"}}}"#)
        .send()
        .await
        .expect("initialize");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().contains_key("mcp-session-id"), "a session was made");
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["result"]["protocolVersion"], "2025-06-18", "{body}");

    // A token minted for another audience is refused.
    let other_aud = get_token("https://another-service.example/mcp".into()).await;
    let r = rpc(Some(other_aud), LIST).await.expect("rpc");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.expect("json");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("audience")),
        "{body}"
    );
    // A token from another issuer (its own key, its own iss) is refused.
    let now = unix_now();
    let foreign = sign_jwt(
        "RS256",
        &test_key("rs256-other.private.json"),
        json!({"iss": "https://evil.example", "sub": "x", "aud": resource, "exp": now + 300, "scope": "mcpgw:client"}),
    );
    let r = rpc(Some(foreign), LIST).await.expect("rpc");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.expect("json");
    assert!(body["error"]["message"].is_string(), "{body}");
    assert!(body.get("result").is_none(), "{body}");
    // The right issuer name and the kid the issuer publishes, signed with another key: the
    // signature check itself refuses it.
    let forged = sign_jwt_as(
        "RS256",
        &test_key("rs256-other.private.json"),
        Some("test-rs-1"),
        json!({"iss": issuer.url, "sub": "x", "aud": resource, "exp": now + 300, "scope": "mcpgw:client"}),
    );
    let r = rpc(Some(forged), LIST).await.expect("rpc");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.expect("json");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("signature")),
        "{body}"
    );

    // Key rotation: the issuer now signs with a new kid, which the gateway fetches on sight
    // (at most every MCPGW_OAUTH_JWKS_REFETCH_SECS, 0 here).
    *issuer.current.lock().expect("lock") = "test-rs-2";
    let rotated = get_token(resource.clone()).await;
    let r = rpc(Some(rotated), LIST).await.expect("rpc");
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.expect("json");
    assert!(body["result"]["tools"].is_array(), "{body}");
    // The old key is gone from the JWKS: its tokens no longer pass.
    assert_eq!(
        rpc(Some(token), LIST).await.expect("rpc").status(),
        StatusCode::UNAUTHORIZED
    );
}

/// Instances sharing a cache (Redis natively) share the issuer's JWKS: the second instance
/// verifies its first token with the keys the first fetched, without asking the issuer.
#[tokio::test]
async fn instances_sharing_redis_fetch_the_issuers_keys_once() {
    if target() != Target::Native {
        return skip(
            "oauth::instances_sharing_redis_fetch_the_issuers_keys_once",
            "two native instances on one Redis (on the edge every isolate shares the cache objects)",
        );
    }
    let issuer = start_issuer().await;
    let redis = RedisServer::start().expect("redis-server");
    let dir = TempDir::new("oauth-shared");
    let db = dir.join("gw.db");
    let env = [
        ("MCPGW_AUTH_REQUIRED", "true"),
        ("MCPGW_OAUTH_ISSUER", issuer.url.as_str()),
        ("MCPGW_PUBLIC_URL", "http://gateway.test"),
        ("MCPGW_REDIS_URL", redis.url.as_str()),
    ];
    let args = ["--database", db.to_str().expect("utf-8")];
    let a = GatewayProcess::start(&args, &env).expect("instance a");
    let b = GatewayProcess::start(&args, &env).expect("instance b");
    let http = http_client();
    let r: Value = http
        .post(format!("{}/token", issuer.url))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("resource", "http://gateway.test/rpc"),
            ("scope", "mcpgw:client"),
        ])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    let token = r["access_token"].as_str().expect("access_token").to_string();
    let fetches = || issuer.jwks_fetches.load(std::sync::atomic::Ordering::SeqCst);
    for (n, gw) in [&a, &b].into_iter().enumerate() {
        let r = http
            .post(format!("{}/rpc", gw.url))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(LIST)
            .send()
            .await
            .expect("rpc");
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "instance {n}: {}",
            r.text().await.unwrap_or_default()
        );
        assert_eq!(
            fetches(),
            1,
            "after instance {n}: the keys are fetched once between them"
        );
    }
}
