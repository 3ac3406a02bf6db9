//! Why the gateway itself did not serve a request it let in ([`Unserved`]).

use http::StatusCode;

use crate::http::response::Failure;
use crate::proto::jsonrpc::RpcError;

/// Why the gateway itself did not serve a request it let in: its error enum, answered by
/// [`crate::http::response::failure`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum Unserved {
    /// The request reached routing without an admission verdict (an adapter's mistake).
    #[error("not admitted")]
    NotAdmitted,
    /// No virtual server of that id or name.
    #[error("no virtual server '{0}'")]
    NoServer(String),
    /// The registry could not be read.
    #[error("{0}")]
    Storage(String),
    /// `/ready`: the store does not answer.
    #[error("{0}")]
    NotReady(String),
    /// `/metrics` where nothing is recorded here.
    #[error("this gateway keeps no metrics to read (on the edge they go to Analytics Engine)")]
    NoMetrics,
    /// `/discovered` without mDNS.
    #[error("this gateway does no mDNS discovery (native, with MCPGW_MDNS on)")]
    NoDiscovery,
    /// No route has this path.
    #[error("no route for {0}")]
    NoRoute(String),
    /// `/oauth/client.json` without an https public URL.
    #[error("the gateway publishes a client metadata document only when MCPGW_PUBLIC_URL is its https URL")]
    NoClientDocument,
}

impl Failure for Unserved {
    fn status(&self) -> StatusCode {
        match self {
            Unserved::NotAdmitted => StatusCode::FORBIDDEN,
            Unserved::Storage(_) | Unserved::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            Unserved::NoServer(_)
            | Unserved::NoMetrics
            | Unserved::NoDiscovery
            | Unserved::NoRoute(_)
            | Unserved::NoClientDocument => StatusCode::NOT_FOUND,
        }
    }
    fn rpc(&self) -> RpcError {
        match self {
            Unserved::Storage(_) => RpcError::internal(self.to_string()),
            _ => RpcError::invalid_request(self.to_string()),
        }
    }
    fn api_code(&self) -> &'static str {
        match self {
            Unserved::NotAdmitted => "forbidden",
            Unserved::Storage(_) => "storage_unavailable",
            Unserved::NotReady(_) => "not_ready",
            _ => "not_found",
        }
    }
}
