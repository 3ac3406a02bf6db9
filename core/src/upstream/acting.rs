//! For whom a link acts, and where its OAuth token comes from: the gateway's own (client
//! credentials) or, for an upstream that acts for each caller, that caller's (the vault, or a
//! token exchanged from theirs).

use std::sync::Arc;

use super::{Hello, Net};
use crate::model::UpstreamDef;

/// The caller a link serves, for an upstream that acts for each caller.
#[derive(Clone)]
pub(crate) struct Acting {
    /// The caller (subject; empty when auth is off).
    pub subject: String,
    /// The upstream's id (the vault's key).
    pub upstream: String,
    /// The token the caller presented to the gateway, for an exchange.
    pub token: Option<String>,
}

impl std::fmt::Debug for Acting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Acting({}, {})", self.subject, self.upstream)
    }
}

/// Where a link to `def` gets its OAuth token: the gateway's own, or (`user` mode) the
/// caller's the link serves. A per-user upstream's link for no caller gets none (its refusal
/// is the answer).
pub(super) fn credential(net: &Net, def: &UpstreamDef, hello: &Hello) -> Option<crate::oauth::credential::Credential> {
    use crate::oauth::credential::Credential;
    let auth = def.auth.clone()?;
    if !auth.per_user() {
        return Some(Credential::Client {
            auth,
            tokens: net.grants.clone(),
        });
    }
    let acting = hello.acting_for.clone()?;
    if !auth.consents() {
        return Some(Credential::Exchange {
            auth,
            subject: acting.subject,
            token: std::sync::Mutex::new(acting.token),
            exchanges: net.exchanges.clone(),
        });
    }
    Some(Credential::User {
        def: Arc::new(def.clone()),
        upstream: acting.upstream,
        subject: acting.subject,
        vault: net.vault.clone(),
    })
}
