//! Who the gateway is at an upstream's authorization server when the operator registered no
//! client there (issue 30, `auth.mode = "user"` without `client_id`): its Client ID Metadata
//! Document where the server takes them and the gateway has a public https URL, else a client
//! it registers itself (RFC 7591), once per server and callback; and step-up: an upstream
//! asking for more scopes gets the caller asked again for them. Against oidc-provider, on both
//! runtimes.

use std::time::Duration;

use mcpgw_e2e::{http_client, start_target_with, Fixture, TempDir};
use serde_json::{json, Value};

use super::upstream_user_oauth::{connect_link, register, token, who, Person, SECRET};

async fn call(s: &mut mcpgw_e2e::RawSession, id: i64, tool: &str) -> Value {
    s.tool(json!(id), tool, json!({})).await.expect("call").0
}

/// A gateway as a new user deploys it (no public URL): it registers itself at the upstream's
/// authorization server (which also takes metadata documents, but those need an https URL),
/// once: a second caller goes through the same client. An upstream asking for more scopes
/// (403 insufficient_scope) sends the caller to authorize again, for what they had and what it
/// asks, and the call then succeeds; the tool that needs nothing more went on meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_client_id_the_gateway_registers_itself_and_steps_up_scopes() {
    let dir = TempDir::new("upstream-user-dcr");
    let oidc = Fixture::start_cmd("tests/fixture/oidc.mjs", &[]);
    let up = Fixture::start_with("streamable-http", 0, None, &["--oauth", &oidc.url]);
    let env = [("MCPGW_AUTH_REQUIRED", "true"), ("MCPGW_JWT_SECRET", SECRET)];
    let gw = start_target_with(&dir, &[], &env).expect("gateway");
    let g = gw.url().to_string();
    // No https public URL: no metadata document is published.
    let r = http_client()
        .get(format!("{g}/oauth/client.json"))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status().as_u16(), 404);
    let v: Value = r.json().await.expect("a JSON body");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("MCPGW_PUBLIC_URL"),
        "{v}"
    );

    let def =
        json!({"name": "drive", "url": format!("{}/mcp", up.url), "auth": {"mode": "user", "scope": "openid read"}});
    let v = register(&g, def).await;
    // The authorization server the upstream names is pinned at registration.
    assert_eq!(v["auth"]["issuer"], oidc.url.as_str(), "{v}");

    let mut alice = Person::new("alice");
    let link = alice.link(&g, "drive").await;
    alice.connect(&g, &link).await;
    let mcp = format!("{g}/mcp");
    let mut a = mcpgw_e2e::RawSession::open_as(&mcp, json!({}), &alice.token)
        .await
        .expect("session");
    let answer = call(&mut a, 1, "drive__whoami").await;
    let w = who(&answer);
    assert_eq!(w["sub"], "alice", "{answer}");
    let client = w["client_id"].as_str().expect("a client id").to_string();
    assert!(
        !client.is_empty() && !client.starts_with("gw-") && !client.starts_with("http"),
        "a registered client: {client}"
    );
    // The access token carries the resource's scopes of those granted.
    assert_eq!(w["scope"], "read", "{answer}");

    // A registered client has a callback of the server's own: an answer brought back to
    // another callback (a response of one server passed off as another's, the mix-up attack)
    // is refused, and the authorization is used up.
    let mut bob = Person::new("bob");
    let link = bob.link(&g, "drive").await;
    let callback = bob.authorize(&g, &link).await;
    let (path, query) = callback.split_once('?').expect("a query");
    assert!(path.len() > format!("{g}/oauth/callback/").len(), "{callback}");
    let v = bob.browser.visit(&format!("{g}/oauth/callback?{query}"), None).await;
    assert_eq!(v.status, 400, "{}", v.body);
    assert!(v.body.contains("another callback"), "{}", v.body);
    assert_eq!(bob.browser.visit(&callback, None).await.status, 410);
    let link = bob.link(&g, "drive").await;
    bob.connect(&g, &link).await;
    let mut b = mcpgw_e2e::RawSession::open_as(&mcp, json!({}), &bob.token)
        .await
        .expect("session");
    let answer = call(&mut b, 1, "drive__whoami").await;
    assert_eq!(who(&answer)["sub"], "bob", "{answer}");
    assert_eq!(who(&answer)["client_id"], client.as_str(), "one registration: {answer}");

    // Step-up: `whoami_write` needs `write` too. Alice is sent to authorize again, for both.
    let answer = call(&mut a, 2, "drive__whoami_write").await;
    let link = connect_link(&answer);
    let callback = alice.authorize(&g, &link).await;
    let v = alice.browser.visit(&callback, None).await;
    assert_eq!(v.status, 200, "{}", v.body);
    let answer = call(&mut a, 3, "drive__whoami_write").await;
    let w = who(&answer);
    assert_eq!(w["sub"], "alice", "{answer}");
    assert_eq!(w["scope"], "read write", "{answer}");
    assert_eq!(w["client_id"], client.as_str(), "{answer}");
    // Her connection now grants the wider scope; Bob's is as it was.
    let mine = alice.connections(&g).await;
    assert!(mine[0]["scope"].as_str().is_some_and(|s| s.contains("write")), "{mine}");
    let answer = call(&mut b, 2, "drive__whoami").await;
    assert_eq!(who(&answer)["scope"], "read", "{answer}");

    // The upstream moved (another URL, so another resource; here one that would take any
    // token): the tokens got for the old one are not sent there; its callers are asked again.
    let other = Fixture::start("streamable-http", None);
    let moved = json!({"name": "drive", "url": format!("{}/mcp", other.url),
        "auth": {"mode": "user", "scope": "openid read", "issuer": oidc.url}});
    let r = http_client()
        .put(format!("{g}/gateways/drive"))
        .bearer_auth(token("root", "mcpgw:admin"))
        .json(&moved)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap_or_default());
    // (On the edge, a session's object sees the change within the registry's cache time.)
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let answer = call(&mut b, 3, "drive__whoami").await;
    connect_link(&answer);
    drop(up);
    drop(oidc);
}

/// A gateway whose public URL is https (behind a TLS front, played here by the test's browser
/// and the provider's fetch) is known at a server that takes metadata documents by the URL of
/// its own: the provider fetches it from the gateway, and the caller's token names that client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_https_public_url_the_gateway_is_known_by_its_metadata_document() {
    let dir = TempDir::new("upstream-user-cimd");
    let front = dir.join("front");
    let front_arg = front.to_str().expect("utf-8").to_string();
    let oidc = Fixture::start_cmd("tests/fixture/oidc.mjs", &["--front", &front_arg]);
    let up = Fixture::start_with("streamable-http", 0, None, &["--oauth", &oidc.url]);
    let public = "https://gw.test";
    let env = [
        ("MCPGW_AUTH_REQUIRED", "true"),
        ("MCPGW_JWT_SECRET", SECRET),
        ("MCPGW_PUBLIC_URL", public),
    ];
    let gw = start_target_with(&dir, &[], &env).expect("gateway");
    let g = gw.url().to_string();
    std::fs::write(&front, format!("{public} {g}\n")).expect("front");

    let r = http_client()
        .get(format!("{g}/oauth/client.json"))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status().as_u16(), 200);
    let doc: Value = r.json().await.expect("json");
    assert_eq!(doc["client_id"], format!("{public}/oauth/client.json"), "{doc}");
    assert_eq!(
        doc["redirect_uris"],
        json!([format!("{public}/oauth/callback")]),
        "{doc}"
    );
    assert_eq!(doc["token_endpoint_auth_method"], "none", "{doc}");

    let def =
        json!({"name": "drive", "url": format!("{}/mcp", up.url), "auth": {"mode": "user", "scope": "openid read"}});
    register(&g, def).await;
    let mut carol = Person::new("carol");
    carol.browser.front(public, &g);
    let link = carol.link(&g, "drive").await;
    assert!(link.starts_with(&format!("{public}/oauth/connect/")), "{link}");
    carol.connect(public, &link).await;
    let mut c = mcpgw_e2e::RawSession::open_as(&format!("{g}/mcp"), json!({}), &carol.token)
        .await
        .expect("session");
    let answer = call(&mut c, 1, "drive__whoami").await;
    let w = who(&answer);
    assert_eq!(w["sub"], "carol", "{answer}");
    assert_eq!(w["client_id"], format!("{public}/oauth/client.json"), "{answer}");
    drop(up);
    drop(oidc);
}
