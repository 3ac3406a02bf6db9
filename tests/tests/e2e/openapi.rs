//! The REST API's OpenAPI document: served at /openapi.json on both runtimes (without
//! credentials), valid (`openapi-spec-validator`), every documented method of every path served
//! and every other one refused with 405, and natively `schemathesis` against the gateway with an
//! admin token: no server error, and every answer's status, content type and body as the document
//! says. (Core's route test checks the other direction: no route the document lacks.)

use std::time::Duration;

use mcpgw_e2e::*;
use reqwest::Method;
use serde_json::{json, Value};

const SECRET: &str = "k3Rt8Yp1Qw6Zx9Lm2Nb5Vc7Hd0Fg4Sa8Je1Ku3Io6";

fn admin() -> String {
    sign_jwt(
        "HS256",
        SECRET,
        json!({"sub": "ops", "iss": "mcpgw", "aud": "mcpgw", "exp": unix_now() + 600, "scope": "mcpgw:admin"}),
    )
}

#[tokio::test]
async fn the_document_is_served_valid_and_its_methods_are_the_routes() {
    let dir = TempDir::new("openapi");
    let env = [("MCPGW_AUTH_REQUIRED", "true"), ("MCPGW_JWT_SECRET", SECRET)];
    let gw = start_target_with(&dir, &[], &env).expect("start gateway");
    let url = gw.url();
    let http = http_client();
    let r = http.get(format!("{url}/openapi.json")).send().await.expect("get");
    assert_eq!(r.status(), 200, "public, like /health");
    assert_eq!(r.headers()["content-type"], "application/json");
    let text = r.text().await.expect("body");
    let committed = std::fs::read_to_string(repo_root().join("core/assets/openapi.json")).expect("file");
    assert_eq!(text, committed, "the document served is the committed one");
    let doc: Value = serde_json::from_str(&text).expect("json");

    let saved = dir.join("openapi.json");
    std::fs::write(&saved, &text).expect("write");
    let out = python()
        .args(["-m", "openapi_spec_validator"])
        .arg(&saved)
        .output()
        .expect("openapi-spec-validator");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let token = admin();
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        let concrete = path.replace("{id}", "no-such-record");
        for method in [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            let documented = ops.get(method.as_str().to_ascii_lowercase().as_str()).is_some();
            // Writes to upstreams connect to the URL given; `{}` has none and is refused first.
            let r = http
                .request(method.clone(), format!("{url}{concrete}"))
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .expect("send");
            let status = r.status().as_u16();
            if documented {
                assert_ne!(status, 405, "{method} {path} is documented but refused");
                assert!(
                    status < 500 || (path == "/metrics" && status == 404),
                    "{method} {path}: {status}"
                );
            } else {
                assert_eq!(status, 405, "{method} {path} is not documented but answered {status}");
                assert!(r.headers().contains_key("allow"), "{method} {path}: 405 without Allow");
            }
        }
    }
}

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_answer_off_the_document() {
    if target() == Target::Edge {
        return skip(
            "openapi::schemathesis_finds_no_server_error_and_no_answer_off_the_document",
            "the fuzzing run is native (the edge serves the same document, checked above)",
        );
    }
    let dir = TempDir::new("schemathesis");
    let env = [("MCPGW_AUTH_REQUIRED", "true"), ("MCPGW_JWT_SECRET", SECRET)];
    let gw = start_target_with(&dir, &[], &env).expect("start gateway");
    let url = gw.url().to_string();
    let token = admin();
    let report = dir.join("report.json");
    let mut cmd = python();
    cmd.args(["-m", "schemathesis.cli", "run"])
        .arg(format!("{url}/openapi.json"))
        .arg("-H")
        .arg(format!("Authorization: Bearer {token}"))
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            // Registering an upstream connects to the URL it names: generated URLs could be
            // anywhere, so upstream writes are left out (their refusals are tested elsewhere).
            "--exclude-operation-id",
            "create_upstreams",
            "--exclude-operation-id",
            "replace_upstreams",
            "--exclude-operation-id",
            "patch_upstreams",
            "--max-examples",
            "25",
            "--seed",
            "20261205",
            "--workers",
            "2",
        ])
        .arg("--report-json-path")
        .arg(&report)
        .current_dir(&dir.0);
    let (ok, out) = run_blocking(cmd, Duration::from_secs(600)).await;
    let tail: String = out
        .lines()
        .rev()
        .take(60)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    assert!(ok, "schemathesis failed:\n{tail}");
    assert!(out.contains("passed") && !out.contains("failed,"), "{tail}");
    // It reached every operation but the excluded upstream writes.
    let tested = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Tested: "))
        .and_then(|n| n.trim().parse::<usize>().ok())
        .unwrap_or(0);
    assert!(tested >= 30, "only {tested} operations tested:\n{tail}");
}
