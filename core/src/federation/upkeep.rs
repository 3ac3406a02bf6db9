//! The upkeep of upstreams: health checks and the catalog refreshes they find due.

use super::{health, Federation};
use crate::model::Transport;

/// Health checks and catalog refreshes that are due: a `ping` on each upstream's shared link
/// every `health_check_secs` (an OpenAPI upstream: its document read, or its API answering);
/// the catalog re-read every `refresh_secs`, after a recovery, and when it was never read.
/// Returns how many upstreams are healthy.
pub(super) async fn check_upstreams(fed: &Federation, force: bool) -> usize {
    let Ok(snap) = fed.registry.snapshot().await else {
        return 0;
    };
    let now = fed.now();
    let mut healthy = 0;
    for up in &snap.upstreams {
        let before = fed.health.of(&up.id);
        let due = force
            || before.as_ref().is_none_or(|h| {
                now.saturating_sub(h.checked_at) >= fed.settings.health_check_secs.saturating_mul(1000)
            });
        if !due {
            healthy += usize::from(before.is_some_and(|h| h.healthy));
            continue;
        }
        // A due check finds the circuit's retry delay over too: it may always try.
        let timeout = fed.timeout_of(&up.def).min(10_000);
        let checked = match up.def.transport {
            Transport::Openapi => crate::upstream::openapi::probe(&fed.net, up, timeout).await,
            _ => match fed.link_for(None, up).await {
                Ok(link) => health::timed_ping(&link, timeout, &fed.net.telemetry, &up.def.name).await,
                Err(_) => continue,
            },
        };
        if let Err(e) = checked {
            fed.record_failure(&up.id, &e);
            continue;
        }
        fed.health.success(&up.id, None, fed.now());
        healthy += 1;
        let refresh_ms = up
            .def
            .refresh_secs
            .unwrap_or(fed.settings.upstream_refresh_secs)
            .saturating_mul(1000);
        let recovered = before.as_ref().is_some_and(|h| !h.healthy);
        let never = before.as_ref().is_none_or(|h| h.refreshed_at == 0);
        let stale = before
            .as_ref()
            .is_some_and(|h| now.saturating_sub(h.refreshed_at) >= refresh_ms);
        if force || recovered || never || stale {
            let _ = fed.refresh_catalog(&up.id).await;
        }
    }
    healthy
}
