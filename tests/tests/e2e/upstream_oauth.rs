//! Upstreams that authenticate the gateway as an OAuth client (issue 30), against an
//! authorization server nobody here wrote (oidc-provider, `tests/fixture/oidc.mjs`) and an
//! upstream that checks the tokens it signed (the fixture with `--oauth`: signature, issuer,
//! audience = its own URL, scope `read`). On both runtimes.

use std::time::Duration;

use mcpgw_e2e::{http_client, start_target_with, Fixture, RawSession, TempDir, TestGateway};
use serde_json::{json, Value};

async fn post_upstream(gw: &str, body: &Value) -> (u16, Value) {
    let r = http_client()
        .post(format!("{gw}/gateways"))
        .json(body)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("POST /gateways");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The gateway discovers the upstream's authorization server from its protected-resource
/// metadata, gets a token of its own for the upstream (client credentials: a secret sent either
/// way, or a JWT signed with its private key) and calls with it; the upstream sees the gateway's client. Without
/// `auth`, or with a wrong secret, registration fails saying why; the secret is never shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_wanting_the_gateways_own_token_gets_one_from_its_authorization_server() {
    let dir = TempDir::new("upstream-oauth");
    let calls = dir.join("calls.jsonl");
    let oidc = Fixture::start_cmd("tests/fixture/oidc.mjs", &[]);
    let up = Fixture::start_with("streamable-http", 0, Some(&calls), &["--oauth", &oidc.url]);
    let mut gw = start_target_with(&dir, &[], &[("MCPGW_LOG", "debug")]).expect("gateway");
    let url = format!("{}/mcp", up.url);

    let (status, v) = post_upstream(gw.url(), &json!({"name": "plain", "url": url})).await;
    assert_eq!(status, 502, "{v}");
    assert!(v.to_string().contains("401"), "the upstream's refusal is named: {v}");

    let (status, v) = post_upstream(
        gw.url(),
        &json!({"name": "wrong", "url": url, "auth": {"mode": "client-credentials", "client_id": "gw-basic", "client_secret": "nope"}}),
    )
    .await;
    assert_eq!(status, 502, "{v}");
    assert!(
        v.to_string().contains("invalid_client"),
        "the provider's refusal is named: {v}"
    );
    assert!(!v.to_string().contains("nope"), "the secret is not echoed: {v}");

    let private_key = mcpgw_e2e::test_key("es256.private.json");
    for (name, client, secret, method) in [
        ("basic", "gw-basic", "basic-secret", "client_secret_basic"),
        ("post", "gw-post", "post-secret", "client_secret_post"),
        ("jwt", "gw-jwt", private_key.trim(), "private_key_jwt"),
    ] {
        let mut auth = json!({"mode": "client-credentials", "client_id": client, "method": method});
        let field = if method == "private_key_jwt" {
            "private_key"
        } else {
            "client_secret"
        };
        auth[field] = json!(secret);
        let (status, v) = post_upstream(gw.url(), &json!({"name": name, "url": url, "auth": auth})).await;
        assert_eq!(status, 201, "{v}");
        assert_eq!(v["auth"][field], "********", "the secret is never shown: {v}");
        assert_eq!(
            v["auth"]["issuer"],
            oidc.url.as_str(),
            "the server found is kept with it: {v}"
        );
        assert!(!v.to_string().contains(secret), "{v}");

        let mut s = RawSession::open(&format!("{}/mcp", gw.url()), json!({}))
            .await
            .expect("session");
        let (answer, _) = s
            .tool(json!(1), &format!("{name}__whoami"), json!({}))
            .await
            .expect("call");
        let text = answer["result"]["content"][0]["text"].as_str().unwrap_or_default();
        let who: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{answer}: {e}"));
        assert_eq!(who["client_id"], client, "{who}");
        assert!(
            who["scope"].as_str().is_some_and(|s| s.split(' ').any(|x| x == "read")),
            "{who}"
        );
    }
    // No secret, key or token in clear anywhere the gateway wrote: its logs (at debug) and
    // every file of its state (the database, its journal, the edge's local D1).
    let d = serde_json::from_str::<Value>(&private_key).expect("JWK")["d"]
        .as_str()
        .expect("d")
        .to_string();
    let written = written_by(&mut gw, &dir);
    assert!(written.len() > 1000, "something was read: {} bytes", written.len());
    let text = String::from_utf8_lossy(&written);
    assert!(
        text.contains("gw-jwt"),
        "the stored definitions were read (a client id is no secret)"
    );
    for secret in ["basic-secret", "post-secret", d.as_str()] {
        assert!(!text.contains(secret), "'{secret}' written in clear");
    }
    drop(up);
    drop(oidc);
}

/// An upstream that names its protected-resource metadata only in its 401 challenge (not at the
/// well-known places) is found from that challenge, and the call goes through with the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_naming_its_metadata_only_in_its_challenge_is_found_from_it() {
    let dir = TempDir::new("upstream-oauth-challenge");
    let oidc = Fixture::start_cmd("tests/fixture/oidc.mjs", &[]);
    let up = Fixture::start_with(
        "streamable-http",
        0,
        None,
        &["--oauth", &oidc.url, "--oauth-challenge-only"],
    );
    let gw = start_target_with(&dir, &[], &[]).expect("gateway");
    let auth = json!({"mode": "client-credentials", "client_id": "gw-basic", "client_secret": "basic-secret"});
    let url = format!("{}/mcp", up.url);
    let (status, v) = post_upstream(gw.url(), &json!({"name": "hidden", "url": url, "auth": auth})).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["auth"]["issuer"], oidc.url.as_str(), "{v}");
    let mut s = RawSession::open(&format!("{}/mcp", gw.url()), json!({}))
        .await
        .expect("session");
    let (answer, _) = s.tool(json!(1), "hidden__whoami", json!({})).await.expect("call");
    let text = answer["result"]["content"][0]["text"].as_str().unwrap_or_default();
    assert!(text.contains("gw-basic"), "{answer}");
}

/// Everything a gateway wrote: its log (natively, at whatever level it ran) and every file of
/// its state (the database and its journal, or the edge's local D1).
pub(crate) fn written_by(gw: &mut TestGateway, dir: &TempDir) -> Vec<u8> {
    let mut written: Vec<u8> = Vec::new();
    if let TestGateway::Native(p) = gw {
        p.read_log(Duration::from_millis(500));
        written.extend(p.log.join("\n").into_bytes());
    }
    let state = gw
        .edge_state_dir()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| dir.0.clone());
    collect(&state, &mut written);
    written
}

/// Every file's bytes below `dir`.
fn collect(dir: &std::path::Path, out: &mut Vec<u8>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, out);
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.extend(bytes);
        }
    }
}
