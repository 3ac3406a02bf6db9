//! Who the gateway is at the authorization server of an upstream that acts for each caller
//! (issue 30's `user` mode), in the order the MCP authorization spec prefers: the client the
//! operator registered there (`auth.client_id`); else, where the server takes them and the
//! gateway has a public https URL, the Client ID Metadata Document it publishes at
//! [`DOCUMENT_PATH`] (its URL is the client id; a public client, PKCE protecting the code);
//! else a client registered dynamically (RFC 7591), kept in the store per (issuer, redirect
//! URI), a secret it was given sealed, and registered anew when the server no longer knows it.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Digest;

use super::discovery::ServerMetadata;
use super::grants::GrantError;
use super::token::TokenError;
use crate::http::fetch::fetch;
use crate::model::{OAuthClient, SecretMethod, UpstreamAuth};
use crate::ports::{Clock, HttpClient, HttpError, Ids, Kind, Op, OutboundRequest, Record, Store, StoreError};
use crate::registry::seal::{nonce, SealError, Sealer};

/// Where the gateway's Client ID Metadata Document is, under its public URL.
pub const DOCUMENT_PATH: &str = "/oauth/client.json";
/// The name the gateway gives itself at authorization servers.
const CLIENT_NAME: &str = "mcpgw";
/// The most redirect URIs one issuer gets a registration for (without a configured public URL
/// the callback's URL comes from each request's Host).
const MAX_PER_ISSUER: usize = 8;
/// The most registrations kept, every issuer together.
const MAX_REGISTRATIONS: usize = 1024;
const TIMEOUT: Duration = Duration::from_secs(15);
const MAX_RESPONSE: usize = 64 * 1024;

/// The client the gateway is at one authorization server.
#[derive(Clone, PartialEq, Eq)]
pub struct Client {
    /// Its id.
    pub client_id: String,
    /// Its secret, for a confidential client.
    pub client_secret: Option<String>,
    /// How it authenticates at the token endpoint.
    pub method: SecretMethod,
    /// How it came to be.
    pub how: How,
    /// Where the server sends the browser back: a callback of its own for a client the gateway
    /// registered (so that a response from one server is never taken for another's: the
    /// mix-up defence of RFC 9700 §4.4 beside RFC 9207's `iss`).
    pub redirect_uri: String,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("client_id", &self.client_id)
            .field("method", &self.method)
            .field("how", &self.how)
            .field("redirect_uri", &self.redirect_uri)
            .finish_non_exhaustive()
    }
}

/// How the gateway came to be a client of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum How {
    /// The operator registered it (`auth.client_id`).
    PreRegistered,
    /// Its id is the URL of the gateway's Client ID Metadata Document.
    MetadataDocument,
    /// It registered itself (RFC 7591).
    Registered,
}

impl Client {
    /// As the token endpoint's client authentication takes it.
    pub fn oauth(&self) -> OAuthClient<'_> {
        OAuthClient {
            client_id: &self.client_id,
            client_secret: self.client_secret.as_deref(),
            private_key: None,
            method: self.method,
        }
    }
}

/// The Client ID Metadata Document of a gateway whose public URL is `public` (an https URL,
/// no trailing slash): a public client whose only redirect URI is the gateway's callback.
pub fn document(public: &str) -> Value {
    json!({
        "client_id": format!("{public}{DOCUMENT_PATH}"),
        "client_name": CLIENT_NAME,
        "client_uri": public,
        "redirect_uris": [format!("{public}/oauth/callback")],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    })
}

/// A public URL the metadata document may be published under: https, a host, no fragment.
pub fn document_base(public: Option<&str>) -> Option<&str> {
    let p = public?.trim_end_matches('/');
    let rest = p.strip_prefix("https://")?;
    (!rest.is_empty() && !p.contains('#') && !rest.starts_with('/') && !rest.contains('@')).then_some(p)
}

/// A dynamic registration as the store keeps it.
#[derive(Serialize, Deserialize)]
struct Registration {
    issuer: String,
    redirect_uri: String,
    client_id: String,
    /// Sealed, if the server gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_secret: Option<String>,
    method: SecretMethod,
    registered_at: u64,
}

/// What a registration endpoint answers (RFC 7591 §3.2.1), as far as the gateway reads it.
#[derive(Deserialize)]
struct Answer {
    client_id: String,
    #[serde(default)]
    client_secret: Option<String>,
    #[serde(default)]
    token_endpoint_auth_method: Option<String>,
}

/// The last segment of the callback of a client registered at `issuer`.
fn callback_tag(issuer: &str) -> String {
    let d = sha2::Sha256::digest(issuer.as_bytes());
    d.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn key_of(issuer: &str, redirect_uri: &str) -> String {
    let d = sha2::Sha256::digest(format!("{issuer}\u{1f}{redirect_uri}").as_bytes());
    format!(
        "client\u{1f}{}",
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// Why no client could be had.
fn refused(text: String) -> GrantError {
    GrantError::NoClient(text)
}

/// The gateway's clients at authorization servers.
pub struct Clients {
    store: Arc<dyn Store>,
    sealer: Arc<Sealer>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn Ids>,
}

impl Clients {
    /// Clients kept in `store`, their secrets sealed with `sealer`.
    pub fn new(store: Arc<dyn Store>, sealer: Arc<Sealer>, clock: Arc<dyn Clock>, ids: Arc<dyn Ids>) -> Self {
        Self {
            store,
            sealer,
            clock,
            ids,
        }
    }

    /// The client to be at `server` for an upstream with `auth`, whose callback is
    /// `redirect_uri`; `public`: the gateway's configured public URL.
    pub async fn choose(
        &self,
        http: &dyn HttpClient,
        server: &ServerMetadata,
        auth: &UpstreamAuth,
        public: Option<&str>,
        redirect_uri: &str,
    ) -> Result<Client, GrantError> {
        let c = auth.client();
        if !c.client_id.is_empty() {
            return Ok(Client {
                client_id: c.client_id.to_string(),
                client_secret: c.client_secret.map(str::to_string),
                method: c.method,
                how: How::PreRegistered,
                redirect_uri: redirect_uri.to_string(),
            });
        }
        // The document's one callback serves every server: used only where the server names
        // itself in its responses (RFC 9207), so that one server's answer is not taken for
        // another's.
        let documents =
            server.client_id_metadata_document_supported && server.authorization_response_iss_parameter_supported;
        if let Some(base) = document_base(public).filter(|_| documents) {
            if redirect_uri == format!("{base}/oauth/callback") {
                return Ok(Client {
                    client_id: format!("{base}{DOCUMENT_PATH}"),
                    client_secret: None,
                    method: SecretMethod::None,
                    how: How::MetadataDocument,
                    redirect_uri: redirect_uri.to_string(),
                });
            }
        }
        let redirect_uri = &format!("{redirect_uri}/{}", callback_tag(&server.issuer));
        let Some(endpoint) = server.registration_endpoint.as_deref() else {
            return Err(refused(format!(
                "the gateway has no client at {}: it takes no dynamic registration{}; set auth.client_id to a client registered there",
                server.issuer,
                if server.client_id_metadata_document_supported {
                    " and a client ID metadata document needs MCPGW_PUBLIC_URL set to the gateway's https URL"
                } else {
                    " nor client ID metadata documents"
                }
            )));
        };
        if let Some(kept) = self.kept(&server.issuer, redirect_uri).await? {
            return Ok(kept);
        }
        self.register(http, server, endpoint, redirect_uri).await
    }

    async fn kept(&self, issuer: &str, redirect_uri: &str) -> Result<Option<Client>, GrantError> {
        let key = key_of(issuer, redirect_uri);
        let Some(rec) = self.store.get(Kind::Client, &key).await.map_err(store)? else {
            return Ok(None);
        };
        let Ok(r) = serde_json::from_value::<Registration>(rec.body) else {
            return Ok(None);
        };
        if rec.key != key || r.issuer != issuer || r.redirect_uri != redirect_uri {
            return Ok(None);
        }
        let client_secret = match &r.client_secret {
            Some(s) => match self.sealer.open_in(&key, s).await {
                Ok(s) => Some(s),
                // Sealed under another key: registered anew.
                Err(SealError::OtherKey) => return Ok(None),
                Err(e) => return Err(refused(e.to_string())),
            },
            None => None,
        };
        Ok(Some(Client {
            client_id: r.client_id,
            client_secret,
            method: r.method,
            how: How::Registered,
            redirect_uri: r.redirect_uri,
        }))
    }

    async fn register(
        &self,
        http: &dyn HttpClient,
        server: &ServerMetadata,
        endpoint: &str,
        redirect_uri: &str,
    ) -> Result<Client, GrantError> {
        let all = self.store.list(Kind::Client).await.map_err(store)?;
        let mine = all
            .iter()
            .filter(|r| r.body["issuer"].as_str() == Some(&server.issuer))
            .count();
        if mine >= MAX_PER_ISSUER {
            return Err(refused(format!(
                "the gateway registered itself at {} for too many callback URLs: set MCPGW_PUBLIC_URL",
                server.issuer
            )));
        }
        if all.len() >= MAX_REGISTRATIONS {
            // The oldest makes room (registered anew if it is needed again).
            if let Some(old) = all.iter().min_by_key(|r| r.updated_at) {
                self.store.delete(Kind::Client, &old.id).await.map_err(store)?;
            }
        }
        let body = json!({
            "client_name": CLIENT_NAME,
            "redirect_uris": [redirect_uri],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        });
        let mut headers = HeaderMap::new();
        headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(http::header::ACCEPT, HeaderValue::from_static("application/json"));
        let req = OutboundRequest {
            method: Method::POST,
            url: endpoint.to_string(),
            headers,
            body: Some(body.to_string().into()),
            tls: None,
        };
        let (resp, bytes) = fetch(http, &*self.clock, req, TIMEOUT, MAX_RESPONSE)
            .await
            .map_err(|e: HttpError| GrantError::Token(TokenError::Unreachable(e.to_string())))?;
        if !resp.status.is_success() {
            return Err(GrantError::Token(super::token::refusal(resp.status, &bytes)));
        }
        let answer: Answer = serde_json::from_slice(&bytes).map_err(|e| {
            refused(format!(
                "the registration endpoint of {} answered no client: {e}",
                server.issuer
            ))
        })?;
        if answer.client_id.is_empty() || answer.client_id.len() > 1024 {
            return Err(refused(format!(
                "the registration at {} gave no usable client id",
                server.issuer
            )));
        }
        let secret = answer.client_secret.filter(|s| !s.is_empty());
        let method = match (answer.token_endpoint_auth_method.as_deref(), &secret) {
            (_, None) => SecretMethod::None,
            (Some("client_secret_post"), Some(_)) => SecretMethod::ClientSecretPost,
            (_, Some(_)) => SecretMethod::ClientSecretBasic,
        };
        let key = key_of(&server.issuer, redirect_uri);
        let sealed = match &secret {
            Some(s) => Some(
                self.sealer
                    .seal_in(&key, s, nonce(&*self.ids))
                    .await
                    .map_err(|e| refused(e.to_string()))?,
            ),
            None => None,
        };
        let now = self.clock.now_ms();
        let rec = Registration {
            issuer: server.issuer.clone(),
            redirect_uri: redirect_uri.to_string(),
            client_id: answer.client_id.clone(),
            client_secret: sealed,
            method,
            registered_at: now,
        };
        let body = serde_json::to_value(&rec).map_err(|e| refused(e.to_string()))?;
        self.store
            .apply(vec![Op::Upsert(Record {
                kind: Kind::Client,
                id: self.ids.new_id(),
                key,
                body,
                created_at: now,
                updated_at: now,
            })])
            .await
            .map_err(store)?;
        Ok(Client {
            client_id: answer.client_id,
            client_secret: secret,
            method,
            how: How::Registered,
            redirect_uri: redirect_uri.to_string(),
        })
    }

    /// The server refused a registered client (it forgot it): the next authorization
    /// registers anew.
    pub async fn forget(&self, issuer: &str, redirect_uri: &str) {
        let key = key_of(issuer, redirect_uri);
        if let Ok(Some(rec)) = self.store.get(Kind::Client, &key).await {
            let _ = self.store.delete(Kind::Client, &rec.id).await;
        }
    }
}

fn store(e: StoreError) -> GrantError {
    refused(format!("the store: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{ManualClock, MemoryStore, SeqIds};
    use crate::ports::InboundResponse;
    use crate::registry::seal::Purpose;
    use std::sync::Mutex;

    /// A registration endpoint answering `status` and `body`, counting the requests.
    struct Endpoint(u16, &'static str, Mutex<u32>);

    #[async_trait::async_trait]
    impl HttpClient for Endpoint {
        async fn send(&self, r: OutboundRequest) -> Result<InboundResponse, HttpError> {
            *self.2.lock().unwrap() += 1;
            let sent: Value = serde_json::from_slice(r.body.as_deref().unwrap_or_default()).unwrap();
            assert_eq!(sent["token_endpoint_auth_method"], "none");
            let body = bytes::Bytes::from_static(self.1.as_bytes());
            Ok(InboundResponse {
                status: http::StatusCode::from_u16(self.0).unwrap(),
                headers: HeaderMap::new(),
                body: Box::pin(futures::stream::once(async move { Ok(body) })),
            })
        }
    }

    fn server(cimd: bool) -> ServerMetadata {
        serde_json::from_value(json!({
            "issuer": "https://as.example",
            "registration_endpoint": "https://as.example/reg",
            "client_id_metadata_document_supported": cimd,
            "authorization_response_iss_parameter_supported": true,
        }))
        .unwrap()
    }

    fn clients() -> Clients {
        let crypto: Arc<dyn crate::ports::Crypto> = Arc::new(crate::security::RustCrypto);
        let sealer = Sealer::derive(&[7; 32], Purpose::Vault, crypto);
        Clients::new(
            Arc::new(MemoryStore::default()),
            Arc::new(sealer),
            Arc::new(ManualClock::at(1_000)),
            Arc::new(SeqIds::default()),
        )
    }

    fn user(extra: Value) -> UpstreamAuth {
        let mut v = json!({"mode": "user"});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().cloned().unwrap_or_default());
        serde_json::from_value(v).unwrap()
    }

    /// Pre-registration first, then the metadata document (https public URL, a server that
    /// takes them), then one registration kept and reused; its secret sealed at rest.
    #[test]
    fn the_client_is_chosen_in_the_specs_order_and_a_registration_is_kept() {
        futures::executor::block_on(async {
            let c = clients();
            let ok = Endpoint(
                201,
                r#"{"client_id":"dyn-1","client_secret":"s3cret","token_endpoint_auth_method":"client_secret_post"}"#,
                Mutex::new(0),
            );
            let cb = "https://gw.example/oauth/callback";
            let pre = c
                .choose(
                    &ok,
                    &server(true),
                    &user(json!({"client_id": "mine", "method": "none"})),
                    Some("https://gw.example"),
                    cb,
                )
                .await
                .unwrap();
            assert_eq!((pre.client_id.as_str(), pre.how), ("mine", How::PreRegistered));
            let doc = c
                .choose(&ok, &server(true), &user(json!({})), Some("https://gw.example/"), cb)
                .await
                .unwrap();
            assert_eq!(doc.client_id, "https://gw.example/oauth/client.json");
            assert_eq!((doc.method, doc.how), (SecretMethod::None, How::MetadataDocument));
            assert_eq!(*ok.2.lock().unwrap(), 0, "nothing registered so far");
            // A server that takes documents but does not name itself in its responses: the
            // document's one callback is not used there.
            let mut mute = server(true);
            mute.authorization_response_iss_parameter_supported = false;
            let r = c
                .choose(&ok, &mute, &user(json!({})), Some("https://gw.example"), cb)
                .await
                .unwrap();
            assert_eq!(r.how, How::Registered);
            assert_eq!(*ok.2.lock().unwrap(), 1);
            // A registered client's callback is the server's own.
            assert!(
                r.redirect_uri.starts_with(&format!("{cb}/")) && r.redirect_uri.len() == cb.len() + 17,
                "{r:?}"
            );
            // An http public URL, or a server without documents: registered, once.
            for (public, cimd) in [
                (Some("http://gw.example"), true),
                (None, false),
                (Some("https://gw.example"), false),
            ] {
                let r = c
                    .choose(&ok, &server(cimd), &user(json!({})), public, cb)
                    .await
                    .unwrap();
                assert_eq!((r.client_id.as_str(), r.how), ("dyn-1", How::Registered));
                assert_eq!(
                    (r.client_secret.as_deref(), r.method),
                    (Some("s3cret"), SecretMethod::ClientSecretPost)
                );
            }
            assert_eq!(*ok.2.lock().unwrap(), 1, "one registration, reused");
            let mut other = server(false);
            other.issuer = "https://other.example".into();
            let o = c.choose(&ok, &other, &user(json!({})), None, cb).await.unwrap();
            assert_ne!(o.redirect_uri, r.redirect_uri, "each server its own callback");
            let kept = c.store.list(Kind::Client).await.unwrap();
            assert_eq!(kept.len(), 2);
            assert!(!kept[0].body.to_string().contains("s3cret"), "sealed: {}", kept[0].body);
            assert!(!format!("{:?}", kept).contains("s3cret"));
            // Forgotten (the server refused it): registered anew.
            c.forget("https://as.example", &r.redirect_uri).await;
            c.choose(&ok, &server(false), &user(json!({})), None, cb).await.unwrap();
            assert_eq!(*ok.2.lock().unwrap(), 3);
        });
    }

    /// A registration endpoint that refuses, answers no client, or is absent: a clear error
    /// naming the server, nothing kept; too many callback URLs for one server: refused.
    #[test]
    fn odd_registration_endpoints_give_clear_errors() {
        futures::executor::block_on(async {
            let cb = "http://127.0.0.1:1/oauth/callback";
            for (status, body, says) in [
                (
                    400,
                    r#"{"error":"invalid_redirect_uri","error_description":"no"}"#,
                    "invalid_redirect_uri",
                ),
                (201, r#"{"client_secret":"x"}"#, "answered no client"),
                (201, r#"{"client_id":""}"#, "no usable client id"),
                (200, "<html>", "answered no client"),
            ] {
                let c = clients();
                let e = c
                    .choose(
                        &Endpoint(status, body, Mutex::new(0)),
                        &server(false),
                        &user(json!({})),
                        None,
                        cb,
                    )
                    .await
                    .unwrap_err()
                    .to_string();
                assert!(e.contains(says), "{body}: {e}");
                assert!(c.store.list(Kind::Client).await.unwrap().is_empty());
            }
            let c = clients();
            let mut none = server(true);
            none.registration_endpoint = None;
            let e = c
                .choose(&Endpoint(201, "{}", Mutex::new(0)), &none, &user(json!({})), None, cb)
                .await
                .unwrap_err()
                .to_string();
            assert!(e.contains("MCPGW_PUBLIC_URL") && e.contains("auth.client_id"), "{e}");
            let ok = Endpoint(201, r#"{"client_id":"dyn"}"#, Mutex::new(0));
            for port in 0..MAX_PER_ISSUER {
                let cb = format!("http://127.0.0.1:{port}/oauth/callback");
                c.choose(&ok, &server(false), &user(json!({})), None, &cb)
                    .await
                    .unwrap();
            }
            let e = c
                .choose(
                    &ok,
                    &server(false),
                    &user(json!({})),
                    None,
                    "http://evil.example/oauth/callback",
                )
                .await
                .unwrap_err()
                .to_string();
            assert!(e.contains("too many callback URLs"), "{e}");
        });
    }

    #[test]
    fn the_metadata_document_names_the_gateway_as_a_public_client_at_its_https_url() {
        assert_eq!(document_base(Some("https://gw.example/")), Some("https://gw.example"));
        assert_eq!(
            document_base(Some("https://gw.example/base")),
            Some("https://gw.example/base")
        );
        for no in [
            "http://gw.example",
            "https://",
            "https://u@gw.example",
            "https://gw.example/#x",
        ] {
            assert_eq!(document_base(Some(no)), None, "{no}");
        }
        assert_eq!(document_base(None), None);
        let d = document("https://gw.example");
        assert_eq!(d["client_id"], "https://gw.example/oauth/client.json");
        assert_eq!(d["redirect_uris"], json!(["https://gw.example/oauth/callback"]));
        assert_eq!(d["token_endpoint_auth_method"], "none");
        assert!(d.get("client_secret").is_none());
    }
}
