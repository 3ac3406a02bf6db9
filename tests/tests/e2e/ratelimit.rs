//! Rate limits: request N+1 within a window gets 429 with `RateLimit-*` and `Retry-After`
//! (a JSON-RPC error on MCP routes, the REST error body on the API), per identity and route
//! class, natively in memory and in Redis, and on the edge in Durable Objects; two native
//! instances sharing one Redis share one budget.

use mcpgw_e2e::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

const SECRET: &str = "p4Lk8sTz2Wq9Mv1Rb7Xc3Nf6Hd0Jy5Ga8Ue2Io4Kt";
const PING: &str = r#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#;

fn token(sub: &str, scope: &str) -> String {
    let now = unix_now();
    sign_jwt(
        "HS256",
        SECRET,
        json!({"sub": sub, "iss": "mcpgw", "aud": "mcpgw", "exp": now + 600, "scope": scope}),
    )
}

async fn ping(http: &reqwest::Client, url: &str, bearer: &str) -> reqwest::Response {
    http.post(format!("{url}/rpc"))
        .bearer_auth(bearer)
        .header("content-type", "application/json")
        .body(PING)
        .send()
        .await
        .expect("rpc")
}

fn header(r: &reqwest::Response, name: &str) -> Option<u64> {
    r.headers().get(name)?.to_str().ok()?.parse().ok()
}

/// Spends a budget of `n` on `url` as `bearer`, checking the headers count down, then checks
/// the 429.
async fn exhaust(http: &reqwest::Client, urls: &[&str], bearer: &str, n: u64) {
    for i in 0..n {
        let url = urls[i as usize % urls.len()];
        let r = ping(http, url, bearer).await;
        assert_eq!(r.status(), StatusCode::OK, "request {} of {n}", i + 1);
        assert_eq!(header(&r, "ratelimit-limit"), Some(n));
        assert_eq!(header(&r, "ratelimit-remaining"), Some(n - 1 - i), "request {}", i + 1);
        assert!(header(&r, "ratelimit-reset").is_some_and(|s| (1..=60).contains(&s)));
    }
    for url in urls {
        let r = ping(http, url, bearer).await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "request {} at {url}", n + 1);
        assert_eq!(header(&r, "ratelimit-remaining"), Some(0));
        let retry = header(&r, "retry-after").expect("Retry-After");
        assert!((1..=60).contains(&retry), "Retry-After {retry}");
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["jsonrpc"], "2.0");
        assert_eq!(body["error"]["code"], -32029, "{body}");
        assert_eq!(body["error"]["data"]["retry_after"], retry, "{body}");
    }
}

fn limited_env<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("MCPGW_AUTH_REQUIRED", "true"),
        ("MCPGW_JWT_SECRET", SECRET),
        ("MCPGW_RATE_LIMIT_MCP", "5/60"),
        ("MCPGW_RATE_LIMIT_ADMIN", "3/60"),
    ];
    env.extend_from_slice(extra);
    env
}

#[tokio::test]
async fn request_n_plus_one_in_a_window_gets_429_per_identity_and_class() {
    let dir = TempDir::new("ratelimit");
    let gw = start_target_with(&dir, &[], &limited_env(&[])).expect("start gateway");
    let url = gw.url();
    let http = http_client();
    let alice = token("alice", "mcpgw:client");
    exhaust(&http, &[url], &alice, 5).await;
    // Bob has his own budget; Alice's admin budget is a separate class.
    let bob = token("bob", "mcpgw:admin");
    let r = ping(&http, url, &bob).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "ratelimit-remaining"), Some(4));
    for i in 0..3u64 {
        let r = http
            .get(format!("{url}/tools"))
            .bearer_auth(&bob)
            .send()
            .await
            .expect("admin");
        assert_eq!(r.status(), StatusCode::OK, "admin request {}", i + 1);
        assert_eq!(header(&r, "ratelimit-remaining"), Some(2 - i));
    }
    let r = http
        .get(format!("{url}/tools"))
        .bearer_auth(&bob)
        .send()
        .await
        .expect("admin");
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(header(&r, "retry-after").is_some());
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    // Public routes are not limited.
    for _ in 0..10 {
        let r = http.get(format!("{url}/health")).send().await.expect("health");
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers().get("ratelimit-limit").is_none());
    }
}

#[tokio::test]
async fn two_native_instances_sharing_redis_share_one_budget() {
    if target() == Target::Edge {
        // The edge shares budgets through Durable Objects (each request here is one bucket's).
        return skip(
            "two_native_instances_sharing_redis_share_one_budget",
            "Redis is the native limiter store",
        );
    }
    let redis = RedisServer::start().expect("redis-server");
    let dir_a = TempDir::new("rl-redis-a");
    let dir_b = TempDir::new("rl-redis-b");
    let env = limited_env(&[("MCPGW_REDIS_URL", redis.url.as_str())]);
    let a = start_target_with(&dir_a, &[], &env).expect("gateway a");
    let b = start_target_with(&dir_b, &[], &env).expect("gateway b");
    let http = http_client();
    let carol = token("carol", "mcpgw:client");
    // Alternating between the two instances: one budget of 5 across both.
    exhaust(&http, &[a.url(), b.url()], &carol, 5).await;
    // A Redis that goes away: requests are let through, not refused.
    drop(redis);
    let r = ping(&http, a.url(), &token("dave", "mcpgw:client")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().get("ratelimit-limit").is_none());
}

#[test]
fn a_bad_rule_or_an_unreachable_redis_stops_start_up() {
    if target() == Target::Edge {
        return skip(
            "a_bad_rule_or_an_unreachable_redis_stops_start_up",
            "a native start-up check (Redis, process exit)",
        );
    }
    let dir = TempDir::new("rl-bad");
    let db = dir.join("gw.db");
    for (env, expected) in [
        (("MCPGW_RATE_LIMIT_MCP", "lots"), "MCPGW_RATE_LIMIT_MCP"),
        (("MCPGW_REDIS_URL", "redis://127.0.0.1:1/"), "MCPGW_REDIS_URL"),
    ] {
        let err = match GatewayProcess::start(&["--database", db.to_str().expect("utf-8")], &[env]) {
            Ok(_) => panic!("{env:?} must stop start-up"),
            Err(e) => e.to_string(),
        };
        // It must exit on its own (not time out waiting to listen), naming the setting.
        assert!(err.contains("exited") && err.contains("before listening"), "{err}");
        assert!(err.contains(expected), "{err}");
    }
}

#[tokio::test]
async fn refused_passwords_lock_an_address_out_of_basic_auth_before_it_is_checked() {
    const PASSWORD: &str = "the admin password 42";
    let hash = mcpgw_core::security::auth::PasswordHash::create(PASSWORD, b"ratelimit-salt!!", 10_000);
    let dir = TempDir::new("rl-authfail");
    let env = [
        ("MCPGW_AUTH_REQUIRED", "true"),
        ("MCPGW_JWT_SECRET", SECRET),
        ("MCPGW_ADMIN_USER", "admin"),
        ("MCPGW_ADMIN_PASSWORD_HASH", hash.as_str()),
        ("MCPGW_RATE_LIMIT_AUTH_FAILURES", "3/60"),
    ];
    let gw = start_target_with(&dir, &[], &env).expect("start gateway");
    let url = gw.url();
    let http = http_client();
    let tools = |pw: &'static str| http.get(format!("{url}/tools")).basic_auth("admin", Some(pw)).send();
    assert_eq!(tools(PASSWORD).await.expect("get").status(), StatusCode::OK);
    for i in 0..3 {
        let r = tools("a wrong guess").await.expect("get");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "guess {}", i + 1);
    }
    // The 4th guess, and now even the right password from this address, get 429 with
    // Retry-After, without the password being checked.
    for pw in ["another guess", PASSWORD] {
        let r = tools(pw).await.expect("get");
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(header(&r, "retry-after").is_some_and(|s| (1..=60).contains(&s)));
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    }
    // Bearer tokens from the same address are not locked out, and forged ones do not count.
    let forged = sign_jwt(
        "HS256",
        "another-secret-that-is-long-enough-0123456789",
        json!({"sub": "x"}),
    );
    for _ in 0..5 {
        assert_eq!(ping(&http, url, &forged).await.status(), StatusCode::UNAUTHORIZED);
    }
    let admin = token("root", "mcpgw:admin");
    let r = http
        .get(format!("{url}/tools"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::OK);
}
