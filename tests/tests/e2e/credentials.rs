//! Credentials at rest, on the selected target: a tool's `headers` reach its backend, are never
//! returned by the API (masked; a PUT of the masked value keeps the stored one), and appear
//! nowhere in the files the gateway stores (libsql natively, D1 and Durable Object state under
//! wrangler dev). On the edge, without MCPGW_ENCRYPTION_KEY, headers are refused.

use mcpgw_e2e::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

const API_KEY: &str = "sk-live-0123456789-do-not-store-in-clear";

fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<String> {
    let mut hits = vec![];
    let Ok(entries) = std::fs::read_dir(dir) else {
        return hits;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            hits.extend(files_containing(&p, needle));
        } else if let Ok(bytes) = std::fs::read(&p) {
            if bytes.windows(needle.len()).any(|w| w == needle) {
                hits.push(p.display().to_string());
            }
        }
    }
    hits
}

async fn call_whoami(http: &reqwest::Client, url: &str) -> Value {
    let r = call_tool(http, url, None, "whoami", json!({})).await;
    let text = r["result"]["content"][0]["text"].as_str().unwrap_or_default();
    serde_json::from_str(text).unwrap_or_else(|_| panic!("not the backend's headers: {r}"))
}

#[tokio::test]
async fn tool_credentials_are_sealed_at_rest_and_never_returned() {
    let backend = start_rest_backend().await.expect("backend");
    let dir = TempDir::new("credentials");
    let gw = start_target(&dir, &[]).expect("gateway");
    let url = gw.url();
    let http = http_client();
    let tool = json!({
        "name": "whoami", "url": format!("{}/headers", backend.url), "method": "GET",
        "headers": {"x-api-key": API_KEY},
    });
    let r = http
        .post(format!("{url}/tools"))
        .json(&tool)
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().await.expect("json");
    assert_eq!(created["headers"]["x-api-key"], "********", "{created}");
    let shown: Value = http
        .get(format!("{url}/tools/whoami"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(shown["headers"]["x-api-key"], "********");
    let listed = http
        .get(format!("{url}/tools"))
        .send()
        .await
        .expect("list")
        .text()
        .await
        .expect("text");
    assert!(!listed.contains(API_KEY), "{listed}");
    // The backend gets the real value.
    assert_eq!(call_whoami(&http, url).await["x-api-key"], API_KEY);
    // A PUT of what GET returned (masked) keeps the stored credential.
    let mut back = shown.clone();
    back["description"] = json!("who am I");
    let r = http
        .put(format!("{url}/tools/whoami"))
        .json(&back)
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap_or_default());
    assert_eq!(call_whoami(&http, url).await["x-api-key"], API_KEY);
    // A new value replaces it.
    let r = http
        .patch(format!("{url}/tools/whoami"))
        .json(&json!({"headers": {"x-api-key": "rotated-key-987"}}))
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(call_whoami(&http, url).await["x-api-key"], "rotated-key-987");
    // Nothing the gateway stored holds either value in clear.
    let hits = files_containing(&dir.0, API_KEY.as_bytes());
    assert!(hits.is_empty(), "the credential is stored in clear in {hits:?}");
    let hits = files_containing(&dir.0, b"rotated-key-987");
    assert!(hits.is_empty(), "the credential is stored in clear in {hits:?}");
    // ...and the store really was written (the check above would pass on an empty directory).
    assert!(
        !files_containing(&dir.0, b"whoami").is_empty(),
        "no stored registry found under {}",
        dir.0.display()
    );

    if target() == Target::Native {
        // Natively the key is a file beside the database, readable by its owner only.
        use std::os::unix::fs::PermissionsExt;
        let key = dir.join("gw.db.key");
        let meta = std::fs::metadata(&key).unwrap_or_else(|e| panic!("{}: {e}", key.display()));
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{}", key.display());
        let text = std::fs::read_to_string(&key).expect("key file");
        assert_eq!(text.trim().len(), 44, "a 256-bit key in base64: {text:?}");
    }
    // On the edge the key is a secret: without it, a credential is refused, naming the setting.
    if target() == Target::Edge {
        let keyless_dir = TempDir::new("credentials-nokey");
        let keyless = start_target_with(&keyless_dir, &[], &[("MCPGW_ENCRYPTION_KEY", "")]).expect("gateway");
        let r = http
            .post(format!("{}/tools", keyless.url()))
            .json(&tool)
            .send()
            .await
            .expect("create");
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["error"]["field"], "headers", "{body}");
        assert!(body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("MCPGW_ENCRYPTION_KEY")));
    }
}

/// An upstream's `headers` (its credentials) are sealed at rest and masked in every answer, on
/// both targets, and a PUT of the masked value keeps them.
#[tokio::test]
async fn upstream_headers_are_sealed_at_rest_and_masked() {
    const TOKEN: &str = "Bearer upstream-secret-4411";
    let dir = TempDir::new("upstream-credentials");
    let fixture = Fixture::start("streamable-http", None);
    let gw = start_target(&dir, &[]).expect("gateway");
    let url = gw.url();
    let http = http_client();
    let up = json!({"name": "guarded", "url": format!("{}/mcp", fixture.url), "headers": {"authorization": TOKEN}});
    let r = http
        .post(format!("{url}/gateways"))
        .json(&up)
        .send()
        .await
        .expect("register");
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap_or_default()
    );
    let shown: Value = http
        .get(format!("{url}/gateways/guarded"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(shown["headers"]["authorization"], "********", "{shown}");
    let listed = http
        .get(format!("{url}/gateways"))
        .send()
        .await
        .expect("list")
        .text()
        .await
        .expect("text");
    assert!(!listed.contains("upstream-secret-4411"), "{listed}");
    // A PUT of what GET returned keeps the stored header; the upstream still answers.
    let mut back = shown.clone();
    back["timeout_ms"] = json!(20000);
    let r = http
        .put(format!("{url}/gateways/guarded"))
        .json(&back)
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap_or_default());
    let shown: Value = http
        .get(format!("{url}/gateways/guarded"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(shown["headers"]["authorization"], "********", "{shown}");
    let answer = call_tool(&http, url, None, "guarded__test_simple_text", json!({})).await;
    assert!(
        answer["result"]["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("simple text")),
        "{answer}"
    );
    let hits = files_containing(&dir.0, b"upstream-secret-4411");
    assert!(
        hits.is_empty(),
        "the upstream credential is stored in clear in {hits:?}"
    );
    assert!(
        !files_containing(&dir.0, b"guarded").is_empty(),
        "no stored registry found under {}",
        dir.0.display()
    );
}
