//! mDNS discovery (native): three gateways on loopback (`MCPGW_MDNS=loopback`, which keeps
//! mdns-sd off every other interface) advertise `_mcp-gateway._tcp.local.` and find each other;
//! `GET /peers/discovered` lists the others (not itself) with a URL that reaches them; one that
//! stops says goodbye and leaves the others' lists; `MCPGW_PEERS_AUTO` registers the gateways
//! found that its allow-list names as peers. Without discovery the route is a 404 (the
//! edge, or `MCPGW_MDNS` off).

use std::time::{Duration, Instant};

use mcpgw_e2e::{get_json, http_client, skip, start_target, target, GatewayProcess, Target, TempDir};
use serde_json::Value;

/// The ids `gw` lists at `/peers/discovered`, sorted.
async fn ids_at(gw: &GatewayProcess) -> (Vec<String>, Value) {
    let found = get_json(&format!("{}/peers/discovered", gw.url)).await;
    let mut ids: Vec<String> = found
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["id"].as_str().map(str::to_string))
        .collect();
    ids.sort();
    (ids, found)
}

/// Waits (at most 20 s) until `gw` lists exactly `want`.
async fn until_listed(gw: &GatewayProcess, want: &[&str]) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (ids, found) = ids_at(gw).await;
        if ids == want {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{} lists {ids:?}, not {want:?}: {found}",
            gw.url
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_gateways_on_loopback_find_each_other() {
    if target() == Target::Edge {
        return skip("three_gateways_on_loopback_find_each_other", "mDNS is native-only");
    }
    let dir = TempDir::new("mdns");
    let start = |name: &'static str, auto: &'static str| {
        let db = dir.join(&format!("{name}.db")).display().to_string();
        GatewayProcess::start(
            &["--database", &db],
            &[
                ("MCPGW_MDNS", "loopback"),
                ("MCPGW_INSTANCE", name),
                ("MCPGW_PEERS_AUTO", auto),
            ],
        )
        .expect("gateway")
    };
    // A registers what it finds named gw-b as a peer, and nothing else.
    let a = start("gw-a", "gw-b");
    let b = start("gw-b", "");
    let mut c = start("gw-c", "");
    let found = until_listed(&a, &["gw-b", "gw-c"]).await;
    until_listed(&b, &["gw-a", "gw-c"]).await;
    until_listed(&c, &["gw-a", "gw-b"]).await;
    // Each entry says where the gateway is, and that address reaches it.
    for peer in found.as_array().expect("a list") {
        let url = peer["url"].as_str().expect("url");
        let expected = if peer["id"] == "gw-b" { &b.url } else { &c.url };
        assert_eq!(url, format!("{expected}/mcp"), "{peer}");
        assert_eq!(peer["auth"], false, "{peer}");
        let health = http_client()
            .get(url.replace("/mcp", "/health"))
            .send()
            .await
            .expect("health");
        assert!(health.status().is_success());
    }
    // MCPGW_PEERS_AUTO: gw-b, on the allow-list, became A's peer; gw-c did not.
    let deadline = Instant::now() + Duration::from_secs(20);
    let names = loop {
        let all = get_json(&format!("{}/gateways", a.url)).await;
        let names: Vec<String> = all
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|g| g["name"].as_str().map(str::to_string))
            .collect();
        if names.iter().any(|n| n == "mdns-gw-b") || Instant::now() > deadline {
            break names;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(names, ["mdns-gw-b"], "only the allowed gateway is registered");
    let peer = get_json(&format!("{}/gateways/mdns-gw-b", a.url)).await;
    assert_eq!(peer["kind"], "peer", "{peer}");
    // Its members come to A.
    let r = http_client()
        .post(format!("{}/tools", b.url))
        .json(&serde_json::json!({"name": "b_tool", "url": "http://127.0.0.1:9/x"}))
        .send()
        .await
        .expect("tool at B");
    assert!(r.status().is_success());
    let r = http_client()
        .post(format!("{}/gateways/mdns-gw-b/refresh", a.url))
        .send()
        .await
        .expect("refresh");
    assert!(r.status().is_success());
    let tools = mcpgw_e2e::post_json(
        &http_client(),
        &format!("{}/rpc", a.url),
        None,
        &serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
    )
    .await
    .1;
    assert_eq!(tools["result"]["tools"][0]["name"], "mdns-gw-b__b_tool", "{tools}");

    // A gateway that stops says goodbye: the others drop it.
    c.signal("TERM").expect("TERM");
    c.wait_exit(Duration::from_secs(20)).expect("stopped");
    until_listed(&a, &["gw-b"]).await;
    until_listed(&b, &["gw-a"]).await;
    drop((a, b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_discovery_the_route_is_a_404() {
    let dir = TempDir::new("no-mdns");
    let gw = start_target(&dir, &[]).expect("gateway");
    let r = http_client()
        .get(format!("{}/peers/discovered", gw.url()))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status().as_u16(), 404);
    let body: Value = r.json().await.expect("JSON");
    assert!(
        body["error"]["message"].as_str().is_some_and(|m| m.contains("mDNS")),
        "{body}"
    );
}
