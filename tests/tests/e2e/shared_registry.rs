//! Several native instances on one PostgreSQL registry (`MCPGW_DATABASE=postgres://…`), a
//! private cluster per test: what one instance writes the others serve, credentials sealed by
//! one are opened by another, and a write acknowledged by an instance killed with SIGKILL right
//! after is kept. Native-only (the edge's registry is D1).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mcpgw_e2e::{call_tool, get_json, http_client, start_rest_backend, GatewayProcess, Postgres, TEST_ENCRYPTION_KEY};
use reqwest::StatusCode;
use serde_json::{json, Value};

const ENV: [(&str, &str); 2] = [
    ("MCPGW_ENCRYPTION_KEY", TEST_ENCRYPTION_KEY),
    ("MCPGW_REGISTRY_CACHE_MS", "200"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_a_postgres_registry() {
    let pg = Postgres::start().expect("a private PostgreSQL cluster");
    let url = pg.url();
    let args = ["--database", url.as_str()];
    let a = GatewayProcess::start(&args, &ENV).expect("instance a");
    let b = GatewayProcess::start(&args, &ENV).expect("instance b");
    let backend = start_rest_backend().await.expect("backend");
    let http = http_client();

    // A tool with a credential, created at a: listed and callable at b, which opens the sealed
    // credential with the shared key.
    let tool = json!({
        "name": "whoami", "url": format!("{}/headers", backend.url), "method": "GET",
        "headers": {"x-api-key": "k-7f3a9c"},
    });
    let r = http
        .post(format!("{}/tools", a.url))
        .json(&tool)
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), StatusCode::CREATED);
    let listed = get_json(&format!("{}/tools", b.url)).await;
    assert!(
        listed.as_array().expect("array").iter().any(|t| t["name"] == "whoami"),
        "{listed}"
    );
    let got = call_tool(&http, &b.url, None, "whoami", json!({})).await;
    let text = got["result"]["content"][0]["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("k-7f3a9c"),
        "b called the backend with a's credential: {got}"
    );

    // Deleted at b: gone at a within the cache time.
    let r = http
        .delete(format!("{}/tools/whoami", b.url))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let got = call_tool(&http, &a.url, None, "whoami", json!({})).await;
    assert!(got["error"].is_object() || got["result"]["isError"] == true, "{got}");

    // A name taken at one is refused at the other, with the API's conflict.
    let t = json!({"name": "taken", "url": format!("{}/weather", backend.url)});
    let r = http
        .post(format!("{}/tools", a.url))
        .json(&t)
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = http
        .post(format!("{}/tools", b.url))
        .json(&t)
        .send()
        .await
        .expect("create again");
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert!(r.json::<Value>().await.expect("json")["error"].is_object());
}

/// Writers at instance a, which is killed with SIGKILL in the middle: every write a acknowledged
/// (201) is in the registry that instance b serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_loses_no_acknowledged_write() {
    let pg = Postgres::start().expect("a private PostgreSQL cluster");
    let url = pg.url();
    let args = ["--database", url.as_str()];
    let a = GatewayProcess::start(&args, &ENV).expect("instance a");
    let b = GatewayProcess::start(&args, &ENV).expect("instance b");
    let http = http_client();
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Instant::now() + Duration::from_secs(20);
    let mut writers = Vec::new();
    for w in 0..4 {
        let (http, base, acked) = (http.clone(), a.url.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            for i in 0..100_000u32 {
                if Instant::now() > stop {
                    break;
                }
                let name = format!("w{w}_{i}");
                let t = json!({"name": name, "url": "http://127.0.0.1:9/x"});
                match http.post(format!("{base}/tools")).json(&t).send().await {
                    Ok(r) if r.status() == StatusCode::CREATED => acked.lock().expect("lock").push(name),
                    Ok(r) => panic!("write refused before the kill: {}", r.status()),
                    Err(_) => break, // the instance is gone
                }
            }
        }));
    }
    // Kill once a good number of writes went through.
    while acked.lock().expect("lock").len() < 150 {
        assert!(Instant::now() < stop, "writes too slow");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.signal("KILL").expect("kill -9");
    for w in writers {
        w.await.expect("writer");
    }
    let acked = acked.lock().expect("lock").clone();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let listed = get_json(&format!("{}/tools", b.url)).await;
    let names: std::collections::HashSet<&str> = listed
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    let lost: Vec<&String> = acked.iter().filter(|n| !names.contains(n.as_str())).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost: {lost:?}",
        lost.len(),
        acked.len()
    );
    // b keeps writing to the same database.
    let r = http
        .post(format!("{}/tools", b.url))
        .json(&json!({"name": "after_kill", "url": "http://127.0.0.1:9/x"}))
        .send()
        .await
        .expect("write at b");
    assert_eq!(r.status(), StatusCode::CREATED);
    let count: usize = pg
        .psql("mcpgw", "SELECT COUNT(*) FROM registry WHERE kind = 'tool'")
        .expect("count")
        .parse()
        .expect("number");
    assert!(
        count > acked.len(),
        "{count} rows for {} acknowledged writes and one more",
        acked.len()
    );
}
