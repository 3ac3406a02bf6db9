//! Which era and revision to offer an upstream next, after it refused an offer. An upstream
//! that names the revisions it takes (-32022 with `data.supported`) is offered one of those that
//! this gateway speaks, the stateless one first; one that refuses without saying is offered the
//! other era. A few tries at most, then a clear error. Pure: the link does the asking.

use serde_json::Value;

use crate::proto::meta::UNSUPPORTED_VERSION;
use crate::proto::version::{Era, ProtocolVersion};

/// How many offers an upstream gets in all.
pub(super) const MAX_OFFERS: usize = 3;

/// An offer: an era, and for the session era the revision `initialize` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Offer {
    pub era: Era,
    pub version: ProtocolVersion,
}

impl Offer {
    /// The first offer for a link that prefers `era` (`both`: the transport carries either).
    pub fn first(era: Era, both: bool) -> Self {
        match (era, both) {
            (Era::Stateless, true) => Self::stateless(),
            _ => Self::session(ProtocolVersion::LATEST),
        }
    }

    fn stateless() -> Self {
        Self {
            era: Era::Stateless,
            version: super::stateless::STATELESS_REVISION,
        }
    }

    fn session(version: ProtocolVersion) -> Self {
        Self {
            era: Era::Session,
            version,
        }
    }
}

/// An upstream's answer to an offer that was not a usable handshake.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Refusal {
    /// What the upstream said, for the error if no offer works.
    pub why: String,
    /// The revisions it names as the ones it takes (-32022's `data.supported`), if it did.
    pub supported: Option<Vec<String>>,
}

impl Refusal {
    /// A refusal read from the upstream's answer to the handshake (`why` when it says nothing
    /// clearer).
    pub fn of(answer: &Value, why: impl Into<String>) -> Self {
        let error = &answer["error"];
        // -32022, or (as session-era servers refuse a revision) -32602, naming what it takes.
        let code = error["code"].as_i64();
        let supported = matches!(code, Some(UNSUPPORTED_VERSION | crate::proto::jsonrpc::INVALID_PARAMS))
            .then(|| error["data"]["supported"].as_array())
            .flatten()
            .map(|l| l.iter().filter_map(Value::as_str).map(str::to_string).collect());
        Self {
            why: why.into(),
            supported,
        }
    }
}

/// The next offer after `refusal` of the offers `made` (oldest first); none: give up.
/// `both`: the transport carries either era.
pub(super) fn next(made: &[Offer], refusal: &Refusal, both: bool) -> Option<Offer> {
    if made.len() >= MAX_OFFERS {
        return None;
    }
    let times = |o: Offer| made.iter().filter(|m| **m == o).count();
    match &refusal.supported {
        Some(names) => {
            let named: Vec<ProtocolVersion> = names.iter().filter_map(|n| ProtocolVersion::served(n)).collect();
            // The stateless revision first (offered again once: it may have refused a first
            // offer only to say what it takes), then the newest session-era one not refused.
            let stateless = Offer::stateless();
            if both && named.contains(&stateless.version) && times(stateless) < 2 {
                return Some(stateless);
            }
            named
                .iter()
                .filter(|v| v.era() == Era::Session)
                .max()
                .map(|v| Offer::session(*v))
                .filter(|o| times(*o) == 0)
        }
        None => {
            let last = made.last()?;
            let other = match last.era {
                Era::Stateless => Offer::session(ProtocolVersion::LATEST),
                Era::Session if both => Offer::stateless(),
                Era::Session => return None,
            };
            (!made.iter().any(|m| m.era == other.era)).then_some(other)
        }
    }
}

/// The error when no offer worked: what the upstream said last, and what it takes if it said.
pub(super) fn failed(refusal: &Refusal) -> String {
    match &refusal.supported {
        Some(names) => format!(
            "{}; the upstream takes {} and this gateway speaks {}",
            refusal.why,
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            },
            ProtocolVersion::served_names().join(", ")
        ),
        None => refusal.why.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refused(supported: &[&str]) -> Refusal {
        Refusal::of(
            &json!({"error": {"code": -32022, "message": "Unsupported protocol version",
                "data": {"supported": supported, "requested": "x"}}}),
            "refused",
        )
    }

    const S: Offer = Offer {
        era: Era::Stateless,
        version: ProtocolVersion::V2026_07_28,
    };
    const L: Offer = Offer {
        era: Era::Session,
        version: ProtocolVersion::V2025_11_25,
    };

    #[test]
    fn a_session_offer_refused_for_the_stateless_revision_tries_it() {
        assert_eq!(next(&[L], &refused(&["2026-07-28"]), true), Some(S));
        // Over a transport of the session era only, nothing else can be offered.
        assert_eq!(next(&[L], &refused(&["2026-07-28"]), false), None);
    }

    #[test]
    fn a_stateless_offer_refused_while_naming_it_is_made_once_more_then_not() {
        assert_eq!(next(&[S], &refused(&["2026-07-28"]), true), Some(S));
        assert_eq!(next(&[S, S], &refused(&["2026-07-28"]), true), None);
    }

    #[test]
    fn the_newest_session_revision_named_is_offered_and_unknown_names_are_passed_over() {
        let r = refused(&["2099-01-01", "2025-06-18", "2025-03-26"]);
        let want = Offer::session(ProtocolVersion::V2025_06_18);
        assert_eq!(next(&[S], &r, true), Some(want));
        // Refused again with the same list: no loop.
        assert_eq!(next(&[S, want], &r, true), None);
        assert_eq!(next(&[S], &refused(&["2099-01-01"]), true), None);
        assert!(failed(&refused(&["2099-01-01"])).contains("takes 2099-01-01"));
    }

    #[test]
    fn a_refusal_without_versions_tries_the_other_era_once() {
        let plain = Refusal::of(&json!({"error": {"code": -32601, "message": "no"}}), "no");
        assert_eq!(plain.supported, None);
        assert_eq!(next(&[S], &plain, true), Some(L));
        assert_eq!(next(&[L], &plain, true), Some(S));
        assert_eq!(next(&[L], &plain, false), None);
        assert_eq!(next(&[S, L], &plain, true), None);
    }

    #[test]
    fn offers_are_bounded() {
        let r = refused(&["2026-07-28", "2025-11-25"]);
        assert_eq!(next(&[S, L, S], &r, true), None);
    }
}
