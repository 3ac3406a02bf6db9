//! MCP protocol revisions, version negotiation and log levels.

use serde::{Deserialize, Serialize};

/// Protocol revisions this gateway speaks over sessions, oldest first.
pub const SUPPORTED_VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
/// The newest supported revision, offered when a client asks for one we do not know.
pub const LATEST_VERSION: &str = "2025-11-25";
/// What a request without `MCP-Protocol-Version` is assumed to speak (per the 2025-06-18 spec).
pub const DEFAULT_HEADER_VERSION: &str = "2025-03-26";

/// True when `v` is a revision this gateway speaks.
pub fn is_supported(v: &str) -> bool {
    SUPPORTED_VERSIONS.contains(&v)
}

/// Picks the revision to answer `initialize` with: the client's if supported, else the latest.
pub fn negotiate(requested: Option<&str>) -> &'static str {
    requested
        .and_then(|r| SUPPORTED_VERSIONS.iter().find(|v| **v == r).copied())
        .unwrap_or(LATEST_VERSION)
}

/// JSON-RPC batches exist up to 2025-03-26 and were removed in 2025-06-18.
pub fn allows_batches(version: &str) -> bool {
    version <= "2025-03-26"
}

/// Syslog severities used by `logging/setLevel` and `notifications/message`, least severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Detailed debugging information.
    Debug,
    /// General informational messages.
    Info,
    /// Normal but significant events.
    Notice,
    /// Warning conditions.
    Warning,
    /// Error conditions.
    Error,
    /// Critical conditions.
    Critical,
    /// Action must be taken immediately.
    Alert,
    /// The system is unusable.
    Emergency,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_prefers_the_clients_supported_version() {
        assert_eq!(negotiate(Some("2024-11-05")), "2024-11-05");
        assert_eq!(negotiate(Some("2025-06-18")), "2025-06-18");
        assert_eq!(negotiate(Some("1999-01-01")), LATEST_VERSION);
        assert_eq!(negotiate(None), LATEST_VERSION);
        assert!(allows_batches("2025-03-26") && allows_batches("2024-11-05"));
        assert!(!allows_batches("2025-06-18"));
    }

    #[test]
    fn log_levels_are_ordered_by_severity() {
        assert!(LogLevel::Debug < LogLevel::Info && LogLevel::Alert < LogLevel::Emergency);
        let l: LogLevel = serde_json::from_str("\"warning\"").unwrap();
        assert_eq!(l, LogLevel::Warning);
    }
}
