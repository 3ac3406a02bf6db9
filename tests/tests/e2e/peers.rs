//! Peer gateways (`kind: peer`): gateway A (the target: native, or the Worker under
//! `wrangler dev`) registers native gateway B, which registers native gateway C. A client at A
//! calls a tool that lives at C, through B. Registered both ways (B also registers A), every
//! member is listed once: what a gateway gave never comes back to it. A member reached by two
//! paths (A also registers C) is listed once. The conflict policies (`prefer-local`, `refuse`)
//! name a peer's members and list the clashes at `GET /gateways/{id}`, which also shows the
//! peer's own upstreams: C cut from B shows there as down, then up again.

use mcpgw_e2e::{
    call_tool, get_json, http_client, post_json, start_rest_backend, start_target, GatewayProcess, TempDir,
};
use serde_json::{json, Value};

async fn create(url: &str, what: &str, body: Value) {
    let r = http_client()
        .post(format!("{url}/{what}"))
        .json(&body)
        .send()
        .await
        .expect("POST");
    let status = r.status();
    assert!(
        status.is_success(),
        "{what}: {status} {}",
        r.text().await.unwrap_or_default()
    );
}

async fn tool_names(url: &str) -> Vec<String> {
    let (_, answer) = post_json(
        &http_client(),
        &format!("{url}/rpc"),
        None,
        &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
    )
    .await;
    let mut names: Vec<String> = answer["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("tools: {answer}"))
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_share_their_members_without_loops_or_duplicates() {
    let backend = start_rest_backend().await.expect("backend");
    let weather = |name: &str| {
        json!({"name": name, "url": format!("{}/weather", backend.url), "method": "GET",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}})
    };
    let dir = TempDir::new("peers");
    let native = |name: &'static str, port: Option<&str>| {
        let db = dir.join(&format!("{name}.db")).display().to_string();
        // B checks its upstreams every second, and calls one down at the first failure.
        let mut args = vec!["--database", &db, "--health-check-secs", "1", "--unhealthy-after", "1"];
        if let Some(p) = port {
            args.extend(["--port", p]);
        }
        GatewayProcess::start(&args, &[("MCPGW_INSTANCE", name)]).expect("gateway")
    };
    let c = native("gw-c", None);
    let b = native("gw-b", None);
    let a = start_target(&dir, &[]).expect("gateway a");
    let a_url = a.url().to_string();

    create(&c.url, "tools", weather("c_weather")).await;
    create(&b.url, "tools", weather("b_tool")).await;
    create(&b.url, "tools", weather("shared")).await;
    create(&a_url, "tools", weather("shared")).await;
    let peer = |name: &str, url: &str| json!({"name": name, "kind": "peer", "url": format!("{url}/mcp")});
    create(&b.url, "gateways", peer("c", &c.url)).await;
    create(
        &b.url,
        "servers",
        json!({"name": "research", "tools": ["b_tool", "c__c_weather"]}),
    )
    .await;
    create(&a_url, "gateways", peer("b", &b.url)).await;

    assert_eq!(
        tool_names(&a_url).await,
        ["b__b_tool", "b__c__c_weather", "b__shared", "shared"],
        "A sees B's members and, through B, C's"
    );
    // B's virtual server is served at A too, its members under their names here.
    let http = http_client();
    let sid = mcpgw_e2e::initialize(&http, &format!("{a_url}/servers/b__research"))
        .await
        .expect("a session on B's server at A");
    let listed: Value = http
        .post(format!("{a_url}/servers/b__research/mcp"))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &sid)
        .header("mcp-protocol-version", "2025-11-25")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .expect("tools/list")
        .json()
        .await
        .expect("JSON");
    let mut in_server: Vec<&str> = listed["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{listed}"))
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    in_server.sort();
    assert_eq!(in_server, ["b__b_tool", "b__c__c_weather"], "{listed}");

    // A call at A reaches the tool at C through B.
    let answer = call_tool(
        &http_client(),
        &a_url,
        None,
        "b__c__c_weather",
        json!({"city": "Lisbon"}),
    )
    .await;
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    assert!(
        answer["result"]["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("Lisbon")),
        "{answer}"
    );

    // B registers A too: neither takes back what it gave.
    create(&b.url, "gateways", peer("a", &a_url)).await;
    assert_eq!(
        tool_names(&b.url).await,
        ["a__shared", "b_tool", "c__c_weather", "shared"],
        "B takes only A's own member"
    );
    let r = http_client()
        .post(format!("{a_url}/gateways/b/refresh"))
        .send()
        .await
        .expect("refresh");
    assert!(r.status().is_success());
    assert_eq!(
        tool_names(&a_url).await,
        ["b__b_tool", "b__c__c_weather", "b__shared", "shared"],
        "A <-> B: each member once"
    );

    // A registers C as well: C's tool, reached by two paths, is listed once.
    create(&a_url, "gateways", peer("c", &c.url)).await;
    let names = tool_names(&a_url).await;
    let weathers = names.iter().filter(|n| n.ends_with("c_weather")).count();
    assert_eq!(weathers, 1, "{names:?}");

    // Own names where free; a clash served namespaced (prefer-local) or left out (refuse).
    for (policy, expected_shared, served_as) in [
        ("prefer-local", Some("b__shared"), json!("b__shared")),
        ("refuse", None, Value::Null),
    ] {
        let r = http
            .patch(format!("{a_url}/gateways/b"))
            .json(&json!({"conflicts": policy}))
            .send()
            .await
            .expect("PATCH");
        assert!(
            r.status().is_success(),
            "{policy}: {}",
            r.text().await.unwrap_or_default()
        );
        let names = tool_names(&a_url).await;
        assert!(names.contains(&"b_tool".to_string()), "{policy}: {names:?}");
        assert!(
            names.contains(&"shared".to_string()),
            "{policy}: the local one: {names:?}"
        );
        assert_eq!(
            names.iter().any(|n| n == "b__shared"),
            expected_shared.is_some(),
            "{policy}: {names:?}"
        );
        let shown = get_json(&format!("{a_url}/gateways/b")).await;
        assert_eq!(
            shown["name_conflicts"],
            json!([{"name": "shared", "served_as": served_as}]),
            "{policy}: {shown}"
        );
    }

    // B -> C cut: A's view of its peer B shows C down, then up again once C is back.
    let c_port = c.addr.port().to_string();
    let c_health = |want: bool| {
        let a_url = a_url.clone();
        async move {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            loop {
                let shown = get_json(&format!("{a_url}/gateways/b")).await;
                let c_at_b = shown["peer_upstreams"]
                    .as_array()
                    .and_then(|l| l.iter().find(|u| u["name"] == "c").cloned());
                if c_at_b.as_ref().is_some_and(|u| u["healthy"] == want) {
                    return;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "C never showed healthy={want}: {shown}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            }
        }
    };
    c_health(true).await;
    drop(c);
    c_health(false).await;
    let c = native("gw-c", Some(&c_port));
    c_health(true).await;
    drop((a, b, c));
}
