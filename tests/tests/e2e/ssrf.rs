//! The SSRF guard, on the selected target, with nothing allowed: tool and upstream URLs that
//! name loopback, private, link-local (cloud metadata) or otherwise special addresses are
//! refused at registration with 422 naming the field, and a tool whose host comes from its
//! arguments is refused at the call. Nothing here sends traffic anywhere: each refusal happens
//! before a connection is attempted.

use mcpgw_e2e::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test]
async fn special_purpose_targets_are_refused_before_any_request() {
    let dir = TempDir::new("ssrf");
    let gw = start_target_with(&dir, &[], &[("MCPGW_SSRF_ALLOW", "")]).expect("start gateway");
    let url = gw.url();
    let http = http_client();
    let post = |path: &'static str, body: Value| {
        let http = http.clone();
        async move { post_json(&http, &format!("{url}{path}"), None, &body).await }
    };
    for (target, class) in [
        ("http://127.0.0.1:9/x", "loopback"),
        ("http://localhost:9/x", "loopback"),
        ("http://[::1]:9/x", "loopback"),
        ("http://2130706433:9/x", "loopback"),
        ("http://10.0.0.7/x", "private"),
        ("http://192.168.1.10/x", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://metadata.google.internal/computeMetadata/v1/", "private"),
        ("http://100.100.1.1/x", "shared"),
        ("http://[::ffff:10.0.0.1]/x", "private"),
    ] {
        let (status, body) = post("/tools", json!({"name": "t", "url": target})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{target}: {body}");
        assert_eq!(body["error"]["field"], "url", "{target}: {body}");
        let msg = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains(class) && msg.contains("MCPGW_SSRF_ALLOW"),
            "{target}: {msg}"
        );
        // An upstream is refused the same way, before the gateway tries to connect (else 502).
        let (status, body) = post("/gateways", json!({"name": "u", "url": target})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "upstream {target}: {body}");
        assert_eq!(body["error"]["field"], "url");
    }
    let (status, body) = post(
        "/gateways",
        json!({"name": "u", "url": "https://mcp.example.com/mcp", "urls": ["http://10.1.1.1/mcp"]}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "urls");
    // Nothing was stored.
    let tools: Value = http
        .get(format!("{url}/tools"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(tools, json!([]));

    // A tool whose host is an argument: accepted, and checked at every call.
    let (status, body) = post(
        "/tools",
        json!({"name": "fetch", "url": "http://{host}/status", "method": "GET"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for host in ["127.0.0.1:1", "169.254.169.254", "10.0.0.1"] {
        let r = call_tool(&http, url, None, "fetch", json!({"host": host})).await;
        assert_eq!(r["result"]["isError"], true, "{host}: {r}");
        let text = r["result"]["content"][0]["text"].as_str().unwrap_or_default();
        assert!(text.contains("SSRF guard"), "{host}: {text}");
    }
}
