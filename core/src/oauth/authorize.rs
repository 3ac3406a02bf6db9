//! The authorization code flow's two ends as the gateway runs them for a user (issue 30's
//! `user` mode): the authorization request it sends the user's browser to (RFC 6749 §4.1.1 with
//! PKCE S256, `state`, and `resource` per RFC 8707), and the check of the callback before the
//! code is redeemed: the `state` it issued, and the `iss` of RFC 9207 as the 2026-07-28
//! authorization spec asks (required when the server says it sends one; compared as sent).

use super::discovery::ServerMetadata;
use crate::http::QUERY;

/// What the gateway remembers of an authorization it started, until its callback (once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The `state` sent.
    pub state: String,
    /// The issuer whose authorization endpoint the user was sent to.
    pub issuer: String,
    /// Whether that server said it puts `iss` in its responses.
    pub iss_required: bool,
}

/// Why an authorization cannot start, or its callback is not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthorizeError {
    /// The server has no authorization endpoint.
    #[error("the authorization server {0} has no authorization endpoint")]
    NoEndpoint(String),
    /// The server does not do PKCE with S256 (the MCP authorization spec requires it).
    #[error("the authorization server {0} does not support PKCE with S256: refused")]
    NoS256(String),
    /// The callback's `state` is missing or not the one issued.
    #[error("the authorization response's state is not the one this authorization sent")]
    State,
    /// The callback's `iss` is missing where required, or names another server (RFC 9207).
    #[error("the authorization response's issuer is {got:?}, not {want}")]
    Issuer {
        /// What it said.
        got: Option<String>,
        /// The server the user was sent to.
        want: String,
    },
    /// The server answered with an error (RFC 6749 §4.1.2.1).
    #[error("the authorization server refused: {error}{}", .description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Refused {
        /// The OAuth error code.
        error: String,
        /// Its description, bounded.
        description: Option<String>,
    },
    /// The response came back to another callback than the one its server was given.
    #[error("the authorization response came back to another callback than its server was given: a response of one server is not taken for another's")]
    OtherCallback,
    /// No code in a response without an error.
    #[error("the authorization response has no code")]
    NoCode,
}

fn enc(v: &str) -> String {
    percent_encoding::utf8_percent_encode(v, QUERY).to_string()
}

/// One authorization request to start.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The client id at that server.
    pub client_id: &'a str,
    /// Where the server sends the user back (the gateway's callback).
    pub redirect_uri: &'a str,
    /// The PKCE challenge (S256).
    pub code_challenge: &'a str,
    /// The state, unguessable and single-use.
    pub state: &'a str,
    /// The upstream's resource identifier.
    pub resource: &'a str,
    /// The scopes asked for (space-separated), if any.
    pub scope: Option<&'a str>,
}

/// The URL to send the user's browser to, and what to remember until the callback.
pub fn start(server: &ServerMetadata, req: &Request<'_>) -> Result<(String, Pending), AuthorizeError> {
    let endpoint = server
        .authorization_endpoint
        .as_deref()
        .ok_or_else(|| AuthorizeError::NoEndpoint(server.issuer.clone()))?;
    if !server.supports_s256() {
        return Err(AuthorizeError::NoS256(server.issuer.clone()));
    }
    let mut pairs = vec![
        ("response_type", "code"),
        ("client_id", req.client_id),
        ("redirect_uri", req.redirect_uri),
        ("code_challenge", req.code_challenge),
        ("code_challenge_method", "S256"),
        ("state", req.state),
        ("resource", req.resource),
    ];
    if let Some(s) = req.scope.filter(|s| !s.is_empty()) {
        pairs.push(("scope", s));
    }
    let query = pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect::<Vec<_>>()
        .join("&");
    let joiner = if endpoint.contains('?') { '&' } else { '?' };
    let pending = Pending {
        state: req.state.to_string(),
        issuer: server.issuer.clone(),
        iss_required: server.authorization_response_iss_parameter_supported,
    };
    Ok((format!("{endpoint}{joiner}{query}"), pending))
}

/// A query parameter's value, decoded.
pub(super) fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| {
            percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// The code of a callback whose query is `query`, if it answers `pending`: its `state` first,
/// then its `iss` (RFC 9207 §2.4: required when the server said so; when present, the very
/// issuer, compared without normalisation), then an error or the code.
pub fn finish(pending: &Pending, query: &str) -> Result<String, AuthorizeError> {
    let get = |name: &str| query_param(query, name);
    if get("state").as_deref() != Some(pending.state.as_str()) {
        return Err(AuthorizeError::State);
    }
    let iss = get("iss");
    match &iss {
        Some(i) if *i != pending.issuer => {
            return Err(AuthorizeError::Issuer {
                got: iss.clone(),
                want: pending.issuer.clone(),
            })
        }
        None if pending.iss_required => {
            return Err(AuthorizeError::Issuer {
                got: None,
                want: pending.issuer.clone(),
            })
        }
        _ => {}
    }
    let bounded = |s: String| s.chars().take(300).collect::<String>();
    if let Some(error) = get("error") {
        return Err(AuthorizeError::Refused {
            error: bounded(error),
            description: get("error_description").map(bounded),
        });
    }
    get("code").filter(|c| !c.is_empty()).ok_or(AuthorizeError::NoCode)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(iss_param: bool, s256: bool) -> ServerMetadata {
        serde_json::from_value(serde_json::json!({
            "issuer": "https://as.example/t1",
            "authorization_endpoint": "https://as.example/t1/authorize?tenant=t1",
            "code_challenge_methods_supported": if s256 { vec!["S256"] } else { vec!["plain"] },
            "authorization_response_iss_parameter_supported": iss_param,
        }))
        .expect("metadata")
    }

    fn request() -> Request<'static> {
        Request {
            client_id: "https://gw.example/oauth/client",
            redirect_uri: "https://gw.example/oauth/callback",
            code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            state: "st-1",
            resource: "https://up.example/mcp",
            scope: Some("files:read files:write"),
        }
    }

    #[test]
    fn the_authorization_request_carries_pkce_state_and_resource() {
        let (url, pending) = start(&server(true, true), &request()).expect("start");
        assert!(
            url.starts_with("https://as.example/t1/authorize?tenant=t1&response_type=code&"),
            "{url}"
        );
        for part in [
            "client_id=https%3A%2F%2Fgw.example%2Foauth%2Fclient",
            "code_challenge_method=S256",
            "state=st-1",
            "resource=https%3A%2F%2Fup.example%2Fmcp",
            "scope=files%3Aread%20files%3Awrite",
        ] {
            assert!(url.contains(part), "{part} in {url}");
        }
        assert_eq!(
            pending,
            Pending {
                state: "st-1".into(),
                issuer: "https://as.example/t1".into(),
                iss_required: true
            }
        );
        assert_eq!(
            start(&server(true, false), &request()).unwrap_err(),
            AuthorizeError::NoS256("https://as.example/t1".into())
        );
    }

    #[test]
    fn a_callback_is_taken_only_with_its_state_and_the_right_issuer() {
        let pending = start(&server(true, true), &request()).unwrap().1;
        let iss = "iss=https%3A%2F%2Fas.example%2Ft1";
        assert_eq!(finish(&pending, &format!("code=c1&state=st-1&{iss}")), Ok("c1".into()));
        assert_eq!(
            finish(&pending, &format!("code=c1&state=other&{iss}")),
            Err(AuthorizeError::State)
        );
        assert_eq!(finish(&pending, &format!("code=c1&{iss}")), Err(AuthorizeError::State));
        // Required and missing, or another server's (no normalisation: a trailing slash differs).
        assert!(matches!(
            finish(&pending, "code=c1&state=st-1"),
            Err(AuthorizeError::Issuer { got: None, .. })
        ));
        let other = "code=c1&state=st-1&iss=https%3A%2F%2Fas.example%2Ft1%2F";
        assert!(matches!(
            finish(&pending, other),
            Err(AuthorizeError::Issuer { got: Some(_), .. })
        ));
        // An error is reported only after the state and issuer passed (a mix-up's error is not believed).
        let refused = format!("error=access_denied&error_description=no+thanks&state=st-1&{iss}");
        assert_eq!(
            finish(&pending, &refused),
            Err(AuthorizeError::Refused {
                error: "access_denied".into(),
                description: Some("no thanks".into())
            })
        );
        assert!(matches!(
            finish(&pending, "error=access_denied&state=st-1&iss=https%3A%2F%2Fevil"),
            Err(AuthorizeError::Issuer { .. })
        ));
        assert_eq!(
            finish(&pending, &format!("state=st-1&{iss}")),
            Err(AuthorizeError::NoCode)
        );
        // A server that does not send iss: none is required, but one present must still match.
        let lax = start(&server(false, true), &request()).unwrap().1;
        assert_eq!(finish(&lax, "code=c2&state=st-1"), Ok("c2".into()));
        assert!(finish(&lax, "code=c2&state=st-1&iss=https%3A%2F%2Fevil").is_err());
    }
}
