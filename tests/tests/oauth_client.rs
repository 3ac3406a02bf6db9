//! The gateway's OAuth client code (`mcpgw_core::oauth`) against an authorization server nobody
//! here wrote: oidc-provider from npm (`tests/fixture/oidc.mjs`), mounted under an issuer path.
//! Natively only: this is core's client code over the network, with no gateway in between.

use std::time::Duration;

use futures::StreamExt;
use mcpgw_core::oauth::{discovery, token};
use mcpgw_core::platform::BoxFuture;
use mcpgw_core::ports::{Clock, HttpClient, HttpError, InboundResponse, OutboundRequest};
use mcpgw_e2e::Fixture;

/// The ports over reqwest and tokio, as a test needs them.
struct Net(reqwest::Client);

#[async_trait::async_trait]
impl HttpClient for Net {
    async fn send(&self, r: OutboundRequest) -> Result<InboundResponse, HttpError> {
        let mut req = self.0.request(r.method, &r.url).headers(r.headers);
        if let Some(b) = r.body {
            req = req.body(b);
        }
        let resp = req.send().await.map_err(|e| HttpError::Connect(e.to_string()))?;
        Ok(InboundResponse {
            status: resp.status(),
            headers: resp.headers().clone(),
            body: Box::pin(
                resp.bytes_stream()
                    .map(|c| c.map_err(|e| HttpError::Lost(e.to_string()))),
            ),
        })
    }
}

impl Clock for Net {
    fn now_ms(&self) -> u64 {
        mcpgw_e2e::unix_now() * 1000
    }
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(d))
    }
}

fn claims(jwt: &str) -> serde_json::Value {
    use base64::Engine;
    let part = jwt.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("claims")
}

/// Discovery finds the provider from an upstream's protected-resource metadata, and its
/// metadata through the issuer's path (the inserted places first, which it does not serve, then
/// the appended one); each client authentication gets a token for the resource asked, with the
/// audience and scope the provider grants.
#[tokio::test]
async fn a_real_provider_is_discovered_and_grants_client_credentials_for_a_resource() {
    let oidc = Fixture::start_cmd("tests/fixture/oidc.mjs", &["--path", "/tenant"]);
    let net = Net(reqwest::Client::new());
    let issuer = oidc.url.clone();
    assert!(issuer.ends_with("/tenant"), "{issuer}");

    // An upstream that names the provider in its protected-resource metadata (at the
    // path-aware well-known place).
    let prm = serde_json::json!({"resource": "", "authorization_servers": [issuer], "scopes_supported": ["read"]});
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let upstream = format!("http://{}/mcp", listener.local_addr().expect("addr"));
    let mut prm = prm;
    prm["resource"] = serde_json::json!(upstream);
    let app = axum::Router::new().route(
        "/.well-known/oauth-protected-resource/mcp",
        axum::routing::get(move || {
            let prm = prm.clone();
            async move { axum::Json(prm) }
        }),
    );
    let served = tokio::spawn(async move { axum::serve(listener, app).await });

    let found = discovery::discover(&net, &net, &upstream, None)
        .await
        .expect("discovered");
    assert_eq!(found.resource.scopes_supported, ["read"]);
    let meta = found.server;
    assert_eq!(meta.issuer, issuer);
    assert!(meta.supports_s256());
    // A challenge naming another resource's metadata is refused.
    let e = discovery::discover(
        &net,
        &net,
        "http://127.0.0.1:1/other",
        Some(&format!(
            "{}/.well-known/oauth-protected-resource/mcp",
            upstream.trim_end_matches("/mcp")
        )),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, discovery::DiscoveryError::OtherResource { .. }), "{e}");
    let endpoint = meta.token_endpoint.clone().expect("a token endpoint");

    let resource = "http://127.0.0.1:9/mcp".to_string();
    for auth in [
        token::ClientAuth::SecretBasic {
            client_id: "gw-basic".into(),
            secret: "basic-secret".into(),
        },
        token::ClientAuth::SecretPost {
            client_id: "gw-post".into(),
            secret: "post-secret".into(),
        },
    ] {
        let req = token::TokenRequest {
            endpoint: endpoint.clone(),
            grant: token::Grant::ClientCredentials,
            auth: auth.clone(),
            resource: Some(resource.clone()),
            scope: Some("read".into()),
        };
        let t = token::request(&net, &net, &req)
            .await
            .unwrap_or_else(|e| panic!("{auth:?}: {e}"));
        let c = claims(&t.access_token);
        assert_eq!(c["aud"], resource.as_str(), "{auth:?}: {c}");
        assert_eq!(c["scope"], "read");
        assert_eq!(c["iss"], issuer.as_str());
        assert!(t.expires_in.is_some_and(|s| s > 0));
    }

    // A wrong secret is refused with the provider's own error. (oidc-provider takes a secret by
    // either method whichever the client registered, so that is not a refusal to test here.)
    let wrong = token::TokenRequest {
        endpoint: endpoint.clone(),
        grant: token::Grant::ClientCredentials,
        auth: token::ClientAuth::SecretBasic {
            client_id: "gw-basic".into(),
            secret: "nope".into(),
        },
        resource: Some(resource.clone()),
        scope: None,
    };
    match token::request(&net, &net, &wrong).await {
        Err(token::TokenError::Refused { status: 401, error, .. }) => assert_eq!(error, "invalid_client"),
        other => panic!("{other:?}"),
    }
    served.abort();
}

/// Ids from the clock (a test's PKCE verifier needs no more).
struct Stamp;

impl mcpgw_core::ports::Ids for Stamp {
    fn new_id(&self) -> String {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        format!("{n:032x}")
    }
}

/// A user's authorization code flow against the real provider, as the gateway will run it: the
/// request carries PKCE S256, state and resource; the user logs in and consents (the provider's
/// own pages, driven as a browser would); the callback is taken only with its state and the
/// provider's `iss` (RFC 9207); the code is redeemed once, with the verifier, for a token whose
/// subject is the user and whose audience is the resource.
#[tokio::test]
async fn a_users_authorization_code_flow_runs_against_a_real_provider() {
    use mcpgw_core::oauth::{authorize, pkce::Pkce};
    let oidc = Fixture::start_cmd("tests/fixture/oidc.mjs", &[]);
    let net = Net(reqwest::Client::new());
    let meta = discovery::server_metadata(&net, &net, &oidc.url)
        .await
        .expect("metadata");
    assert!(meta.authorization_response_iss_parameter_supported);
    let pkce = Pkce::new(&Stamp);
    let (redirect, resource) = ("http://127.0.0.1:9/oauth/callback", "http://127.0.0.1:9/mcp");
    let request = authorize::Request {
        client_id: "gw-user",
        redirect_uri: redirect,
        code_challenge: &pkce.challenge,
        state: "st-42",
        resource,
        scope: Some("openid"),
    };
    let (url, pending) = authorize::start(&meta, &request).expect("start");
    let mut browser = mcpgw_e2e::browser::Browser::new();
    let login = browser.go(&url, None).await;
    let after_login = browser
        .go(
            &login,
            Some(&[("prompt", "login"), ("login", "alice"), ("password", "any")]),
        )
        .await;
    let consent = browser.go(&after_login, None).await;
    let after_consent = browser.go(&consent, Some(&[("prompt", "consent")])).await;
    let callback = browser.go(&after_consent, None).await;
    let query = callback
        .strip_prefix(&format!("{redirect}?"))
        .unwrap_or_else(|| panic!("back at the callback: {callback}"));
    assert!(query.contains("iss="), "the provider says who it is: {query}");
    let forged = query.replace("state=st-42", "state=st-43");
    assert_eq!(
        authorize::finish(&pending, &forged),
        Err(authorize::AuthorizeError::State)
    );
    let code = authorize::finish(&pending, query).expect("the callback is taken");

    let redeem = token::TokenRequest {
        endpoint: meta.token_endpoint.clone().expect("token endpoint"),
        grant: token::Grant::AuthorizationCode {
            code,
            verifier: pkce.verifier.clone(),
            redirect_uri: redirect.into(),
        },
        auth: token::ClientAuth::Public {
            client_id: "gw-user".into(),
        },
        resource: Some(resource.into()),
        scope: None,
    };
    let t = token::request(&net, &net, &redeem).await.expect("tokens");
    let c = claims(&t.access_token);
    assert_eq!(
        (c["sub"].as_str(), c["aud"].as_str()),
        (Some("alice"), Some(resource)),
        "{c}"
    );
    // The code is single-use.
    assert!(matches!(
        token::request(&net, &net, &redeem).await,
        Err(token::TokenError::Refused { error, .. }) if error == "invalid_grant"
    ));
}
