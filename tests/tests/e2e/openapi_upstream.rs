//! OpenAPI documents as upstreams, natively and under `wrangler dev`: a document of the tests
//! (`tests/fixture/pets.openapi.json`: path, query and header parameters, a JSON body with a
//! `$ref`, an API key header, a relative server with a variable) served by a test backend that
//! records every request it gets. Its operations become tools; each call must reach the backend
//! as the operation describes it, with the upstream's key. Then a refresh picks up a new
//! operation, an inline document works with `base_url`, and what is not OpenAPI 3 is refused.

use std::sync::{Arc, Mutex};

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::Json;
use mcpgw_e2e::{call_tool, http_client, repo_root, start_target, TempDir};
use serde_json::{json, Value};

const KEY: &str = "pets-key-7731";

/// What the backend was asked: method, path, query, the trace header, the body.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    query: Option<String>,
    trace: Option<String>,
    body: Value,
}

#[derive(Clone)]
struct Backend {
    seen: Arc<Mutex<Vec<Seen>>>,
    doc: Arc<Mutex<Value>>,
}

fn record(
    b: &Backend,
    method: &Method,
    path: String,
    query: Option<String>,
    headers: &HeaderMap,
    body: Value,
) -> Result<(), StatusCode> {
    if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some(KEY) {
        return Err(StatusCode::UNAUTHORIZED);
    }
    b.seen.lock().expect("lock").push(Seen {
        method: method.to_string(),
        path,
        query,
        trace: headers
            .get("x-request-trace")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body,
    });
    Ok(())
}

async fn start_backend() -> (String, Backend) {
    let doc: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("tests/fixture/pets.openapi.json")).expect("read"),
    )
    .expect("JSON");
    let b = Backend {
        seen: Arc::default(),
        doc: Arc::new(Mutex::new(doc)),
    };
    async fn pets(
        State(b): State<Backend>,
        method: Method,
        RawQuery(q): RawQuery,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) -> Result<Json<Value>, StatusCode> {
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        record(&b, &method, "/api/v1/pets".into(), q, &headers, body.clone())?;
        Ok(Json(if method == Method::POST {
            json!({"id": "p-1", "name": body["name"]})
        } else {
            json!([{"id": "p-1", "name": "Rex"}])
        }))
    }
    async fn pet(
        State(b): State<Backend>,
        method: Method,
        Path(id): Path<String>,
        RawQuery(q): RawQuery,
        headers: HeaderMap,
    ) -> Result<Json<Value>, StatusCode> {
        record(&b, &method, format!("/api/v1/pets/{id}"), q, &headers, Value::Null)?;
        if id == "missing" {
            return Err(StatusCode::NOT_FOUND);
        }
        Ok(Json(json!({"id": id, "name": "Rex"})))
    }
    async fn document(State(b): State<Backend>) -> Json<Value> {
        Json(b.doc.lock().expect("lock").clone())
    }
    let app = axum::Router::new()
        .route("/openapi.json", axum::routing::get(document))
        .route("/api/v1/pets", axum::routing::get(pets).post(pets))
        .route("/api/v1/pets/{id}", axum::routing::get(pet).delete(pet).put(pet))
        .with_state(b.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, b)
}

fn text(answer: &Value) -> String {
    answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn last(b: &Backend) -> Seen {
    b.seen
        .lock()
        .expect("lock")
        .last()
        .cloned()
        .expect("the backend was called")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openapi_document_becomes_tools_that_reach_the_api() {
    let (backend, b) = start_backend().await;
    let dir = TempDir::new("openapi-upstream");
    let gw = start_target(&dir, &[]).expect("gateway");
    let url = gw.url().to_string();
    let http = http_client();

    let r = http
        .post(format!("{url}/gateways"))
        .json(
            &json!({"name": "pets", "transport": "openapi", "url": format!("{backend}/openapi.json"),
                      "headers": {"X-API-Key": KEY}}),
        )
        .send()
        .await
        .expect("register");
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap_or_default()
    );

    let listed = mcpgw_e2e::post_json(
        &http,
        &format!("{url}/rpc"),
        None,
        &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
    )
    .await
    .1;
    let tools = listed["result"]["tools"].as_array().expect("tools").clone();
    let mut names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        ["pets__createPet", "pets__deletePet", "pets__getPet", "pets__listPets"],
        "{listed}"
    );
    let create = tools
        .iter()
        .find(|t| t["name"] == "pets__createPet")
        .expect("createPet");
    assert_eq!(create["description"], "Add a pet");
    assert_eq!(create["inputSchema"]["required"], json!(["name"]), "{create}");
    assert_eq!(
        create["inputSchema"]["properties"]["owner"]["properties"]["email"]["type"], "string",
        "the $ref resolved: {create}"
    );
    let get = tools.iter().find(|t| t["name"] == "pets__getPet").expect("getPet");
    assert_eq!(get["annotations"]["readOnlyHint"], true);

    // A JSON body, with the key.
    let a = call_tool(
        &http,
        &url,
        None,
        "pets__createPet",
        json!({"name": "Rex", "tag": "dog"}),
    )
    .await;
    assert_eq!(a["result"]["isError"], false, "{a}");
    assert!(text(&a).contains("p-1"), "{a}");
    let s = last(&b);
    assert_eq!((s.method.as_str(), s.path.as_str()), ("POST", "/api/v1/pets"));
    assert_eq!(s.body, json!({"name": "Rex", "tag": "dog"}));

    // A path parameter and a header parameter.
    let a = call_tool(
        &http,
        &url,
        None,
        "pets__getPet",
        json!({"petId": "p 1", "X-Request-Trace": "t-9"}),
    )
    .await;
    assert_eq!(a["result"]["isError"], false, "{a}");
    let s = last(&b);
    assert_eq!((s.method.as_str(), s.path.as_str()), ("GET", "/api/v1/pets/p 1"));
    assert_eq!(s.trace.as_deref(), Some("t-9"));

    // Query parameters, an array repeated.
    let a = call_tool(
        &http,
        &url,
        None,
        "pets__listPets",
        json!({"limit": 2, "tag": ["dog", "cat"]}),
    )
    .await;
    assert_eq!(a["result"]["isError"], false, "{a}");
    let s = last(&b);
    assert_eq!(s.query.as_deref(), Some("limit=2&tag=dog&tag=cat"));

    // DELETE, and the API's own error as a tool error.
    let a = call_tool(&http, &url, None, "pets__deletePet", json!({"petId": "missing"})).await;
    assert_eq!(a["result"]["isError"], true, "{a}");
    assert!(text(&a).contains("404"), "{a}");
    assert_eq!(last(&b).method, "DELETE");

    // A missing required argument never reaches the API.
    let before = b.seen.lock().expect("lock").len();
    let a = call_tool(&http, &url, None, "pets__createPet", json!({"tag": "dog"})).await;
    assert_eq!(a["result"]["isError"], true, "{a}");
    assert!(text(&a).contains("\"name\""), "{a}");
    assert_eq!(b.seen.lock().expect("lock").len(), before);

    // The document grows an operation; a refresh makes it a tool.
    b.doc.lock().expect("lock")["paths"]["/pets/{petId}"]["put"] = json!({"operationId": "renamePet",
        "requestBody": {"content": {"application/json": {"schema": {"type": "object",
            "properties": {"name": {"type": "string"}}}}}}});
    let r = http
        .post(format!("{url}/gateways/pets/refresh"))
        .send()
        .await
        .expect("refresh");
    assert!(r.status().is_success(), "{}", r.text().await.unwrap_or_default());
    let a = call_tool(
        &http,
        &url,
        None,
        "pets__renamePet",
        json!({"petId": "p-2", "name": "Max"}),
    )
    .await;
    assert_eq!(a["result"]["isError"], false, "{a}");
    let s = last(&b);
    assert_eq!((s.method.as_str(), s.path.as_str()), ("PUT", "/api/v1/pets/p-2"));

    // The document inline, its API named by base_url.
    let doc = b.doc.lock().expect("lock").clone();
    let r = http
        .post(format!("{url}/gateways"))
        .json(&json!({"name": "inline", "transport": "openapi", "openapi": doc,
                      "base_url": format!("{backend}/api/v1"), "headers": {"X-API-Key": KEY}}))
        .send()
        .await
        .expect("register inline");
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap_or_default()
    );
    let a = call_tool(&http, &url, None, "inline__getPet", json!({"petId": "p-3"})).await;
    assert_eq!(a["result"]["isError"], false, "{a}");
    assert_eq!(last(&b).path, "/api/v1/pets/p-3");

    // What is not an OpenAPI 3 upstream is refused, saying why; nothing is stored.
    for (body, says) in [
        (
            json!({"name": "sw", "transport": "openapi", "openapi": {"swagger": "2.0", "paths": {}}}),
            "Swagger 2.0",
        ),
        (json!({"name": "none", "transport": "openapi"}), "document"),
        (
            json!({"name": "both", "transport": "openapi", "url": format!("{backend}/openapi.json"),
                "openapi": {"openapi": "3.1.0", "paths": {}}}),
            "one of them",
        ),
    ] {
        let r = http
            .post(format!("{url}/gateways"))
            .json(&body)
            .send()
            .await
            .expect("post");
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        assert!(
            status.is_client_error() || status == StatusCode::BAD_GATEWAY,
            "{status}: {text}"
        );
        assert!(text.contains(says), "{says}: {text}");
    }
    let all = mcpgw_e2e::get_json(&format!("{url}/gateways")).await;
    let stored: Vec<&str> = all
        .as_array()
        .or_else(|| all["items"].as_array())
        .expect("a list")
        .iter()
        .filter_map(|g| g["name"].as_str())
        .collect();
    assert_eq!(stored.len(), 2, "{all}");
    drop(gw);
}
