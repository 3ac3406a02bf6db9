//! Who the gateway says it is to an upstream when no client session's link is opened.

use serde_json::{json, Value};

use crate::proto::version::Era;
use crate::registry::Upstream;
use crate::upstream::Hello;

/// The hello of shared links (catalog reads, `/rpc`): every client capability the gateway can
/// relay, so that upstreams which offer some tools only to such clients list them. A call on a
/// shared link has no client to ask; such requests are answered with an error.
/// Shared links prefer 2026-07-28: they serve requests without a session.
pub(super) fn relayable_hello() -> Hello {
    Hello {
        capabilities: json!({"sampling": {}, "elicitation": {}, "roots": {"listChanged": true}}),
        client_info: Value::Null,
        prefer: Era::Stateless,
        acting_for: None,
    }
}

/// The era to try first with `up` for a link of `prefer`'s: the one it was last seen to speak
/// when that is the session era (a session-era upstream is not probed again), else `prefer`.
pub(super) fn era_for(up: &Upstream, prefer: Era) -> Era {
    match up.era() {
        Some(Era::Session) => Era::Session,
        _ => prefer,
    }
}
