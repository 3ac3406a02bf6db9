//! MCP protocol revisions, each with its era, and version negotiation.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How a revision carries state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Era {
    /// `initialize`, `Mcp-Session-Id`, a standalone stream, server-to-client requests.
    Session,
    /// No handshake and no session: every request says its version and capabilities.
    Stateless,
}

/// One MCP revision, ordered by date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProtocolVersion {
    /// 2024-11-05: HTTP+SSE, JSON-RPC batches.
    V2024_11_05,
    /// 2025-03-26: streamable HTTP.
    V2025_03_26,
    /// 2025-06-18: batches removed, `MCP-Protocol-Version` header.
    V2025_06_18,
    /// 2025-11-25: the last revision of the session era.
    V2025_11_25,
    /// 2026-07-28: the stateless era.
    V2026_07_28,
}

impl ProtocolVersion {
    /// Every revision known, oldest first.
    pub const ALL: [Self; 5] = [
        Self::V2024_11_05,
        Self::V2025_03_26,
        Self::V2025_06_18,
        Self::V2025_11_25,
        Self::V2026_07_28,
    ];
    /// The revisions this gateway speaks, oldest first.
    pub const SERVED: [Self; 5] = Self::ALL;
    /// The newest session-era revision, offered to `initialize` asking for one we do not know
    /// (or for a stateless one, which has no `initialize`).
    pub const LATEST: Self = Self::V2025_11_25;
    /// What a request without `MCP-Protocol-Version` is assumed to speak (per the 2025-06-18 spec).
    pub const DEFAULT_HEADER: Self = Self::V2025_03_26;

    /// The revision's name on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::V2024_11_05 => "2024-11-05",
            Self::V2025_03_26 => "2025-03-26",
            Self::V2025_06_18 => "2025-06-18",
            Self::V2025_11_25 => "2025-11-25",
            Self::V2026_07_28 => "2026-07-28",
        }
    }

    /// The revision named `s`, if known.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// The revision named `s` if this gateway serves it.
    pub fn served(s: &str) -> Option<Self> {
        Self::parse(s).filter(|v| v.is_served())
    }

    /// True when this gateway speaks the revision.
    pub fn is_served(self) -> bool {
        Self::SERVED.contains(&self)
    }

    /// How the revision carries state.
    pub const fn era(self) -> Era {
        match self {
            Self::V2026_07_28 => Era::Stateless,
            _ => Era::Session,
        }
    }

    /// JSON-RPC batches exist up to 2025-03-26 and were removed in 2025-06-18.
    pub fn allows_batches(self) -> bool {
        self <= Self::V2025_03_26
    }

    /// The revision to answer `initialize` with: the client's if served and of the session era,
    /// else the latest of that era.
    pub fn negotiate(requested: Option<&str>) -> Self {
        requested
            .and_then(Self::served)
            .filter(|v| v.era() == Era::Session)
            .unwrap_or(Self::LATEST)
    }

    /// The revision named `s` if it is served and of the session era (what a session may say in
    /// its `MCP-Protocol-Version` header).
    pub fn served_in_session(s: &str) -> Option<Self> {
        Self::served(s).filter(|v| v.era() == Era::Session)
    }

    /// The served revisions' names, for error messages and `/version`.
    pub fn served_names() -> Vec<&'static str> {
        Self::SERVED.iter().map(|v| v.as_str()).collect()
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ProtocolVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ProtocolVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown protocol version '{s}'")))
    }
}

/// Serde for a stored `Option<ProtocolVersion>` written as a string, `""` for none (the form
/// stored rows and sessions have always had, so older records load and older readers cope).
/// A name this build does not know loads as none.
pub mod stored {
    use super::ProtocolVersion;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the name, or `""`.
    pub fn serialize<S: Serializer>(v: &Option<ProtocolVersion>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.map_or("", ProtocolVersion::as_str))
    }

    /// Reads a name (`""`, unknown or missing: none).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ProtocolVersion>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        Ok(s.as_deref().and_then(ProtocolVersion::parse))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_prefers_the_clients_served_version() {
        use ProtocolVersion as V;
        assert_eq!(V::negotiate(Some("2024-11-05")), V::V2024_11_05);
        assert_eq!(V::negotiate(Some("2025-06-18")), V::V2025_06_18);
        assert_eq!(V::negotiate(Some("1999-01-01")), V::LATEST);
        // Served, but stateless: it has no `initialize`.
        assert_eq!(V::negotiate(Some("2026-07-28")), V::LATEST);
        assert_eq!(V::served_in_session("2026-07-28"), None);
        assert_eq!(V::served_in_session("2025-11-25"), Some(V::V2025_11_25));
        assert_eq!(V::negotiate(None), V::LATEST);
        assert!(V::V2025_03_26.allows_batches() && V::V2024_11_05.allows_batches());
        assert!(!V::V2025_06_18.allows_batches());
    }

    #[test]
    fn versions_have_eras_and_names() {
        for v in ProtocolVersion::ALL {
            assert_eq!(ProtocolVersion::parse(v.as_str()), Some(v));
        }
        assert_eq!(ProtocolVersion::V2026_07_28.era(), Era::Stateless);
        assert_eq!(ProtocolVersion::LATEST.era(), Era::Session);
        assert!(ProtocolVersion::V2026_07_28.is_served());
        assert!(ProtocolVersion::V2025_11_25 > ProtocolVersion::V2025_06_18);
    }

    #[test]
    fn stored_versions_load_from_old_records() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Row {
            #[serde(default, with = "stored")]
            v: Option<ProtocolVersion>,
        }
        let load = |j: &str| serde_json::from_str::<Row>(j).unwrap().v;
        assert_eq!(load(r#"{"v": "2025-06-18"}"#), Some(ProtocolVersion::V2025_06_18));
        assert_eq!(load(r#"{"v": ""}"#), None);
        assert_eq!(load(r#"{"v": "2099-01-01"}"#), None);
        assert_eq!(load(r#"{}"#), None);
        let row = Row { v: None };
        assert_eq!(serde_json::to_string(&row).unwrap(), r#"{"v":""}"#);
        let row = Row {
            v: Some(ProtocolVersion::V2025_11_25),
        };
        assert_eq!(serde_json::to_string(&row).unwrap(), r#"{"v":"2025-11-25"}"#);
    }
}
