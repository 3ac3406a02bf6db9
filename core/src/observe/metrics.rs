//! Every metric the gateway records, named and labelled here and nowhere else, and the
//! [`Recorder`] port they are recorded through (no-op unless the platform gives one).

use crate::observe::trace::Span;
use crate::platform::{MaybeSend, MaybeSync};

/// How a metric adds up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up: each record adds its value.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Each record is one observation, counted into [`BUCKETS`].
    Histogram,
}

/// One metric: its position in [`ALL`], name, help text, kind and label names.
#[derive(Debug)]
pub struct Metric {
    /// Index in [`ALL`].
    pub id: usize,
    /// The Prometheus name.
    pub name: &'static str,
    /// One line saying what it counts.
    pub help: &'static str,
    /// Counter, gauge or histogram.
    pub kind: MetricKind,
    /// Label names, in the order records give their values.
    pub labels: &'static [&'static str],
}

/// Histogram bucket bounds (seconds): from half a millisecond to half a minute.
pub const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0,
];

macro_rules! metrics {
    ($($id:literal $konst:ident $name:literal $kind:ident [$($label:literal),*] $help:literal;)*) => {
        $(
            #[doc = $help]
            pub static $konst: Metric = Metric {
                id: $id,
                name: $name,
                help: $help,
                kind: MetricKind::$kind,
                labels: &[$($label),*],
            };
        )*
        /// Every metric, in the order they are written.
        pub static ALL: &[&Metric] = &[$(&$konst),*];
    };
}

metrics! {
    0 HTTP_REQUESTS "mcpgw_http_requests_total" Counter ["route", "status"]
        "HTTP requests answered, by route class and status code.";
    1 HTTP_DURATION "mcpgw_http_request_duration_seconds" Histogram ["route"]
        "Time until an HTTP request's answer began (its head; a stream goes on after it).";
    2 MCP_REQUESTS "mcpgw_mcp_requests_total" Counter ["transport", "method", "outcome"]
        "MCP requests answered, by transport, method and outcome (ok, error, input_required).";
    3 MCP_DURATION "mcpgw_mcp_request_duration_seconds" Histogram ["transport", "method"]
        "Time until an MCP request's answer, by transport and method.";
    4 TOOL_CALLS "mcpgw_tool_calls_total" Counter ["tool", "upstream", "outcome"]
        "tools/call answers by tool, upstream (empty for REST tools) and outcome (ok, tool_error, error).";
    5 UPSTREAM_DURATION "mcpgw_upstream_request_duration_seconds" Histogram ["upstream", "method", "outcome"]
        "Round trips to upstreams (forwarded requests and health checks), by upstream, method and outcome.";
    6 AUTH_FAILURES "mcpgw_auth_failures_total" Counter ["reason"]
        "Requests refused for their credentials, by reason.";
    7 RATE_LIMITED "mcpgw_rate_limited_total" Counter ["bucket"]
        "Requests refused by a rate limit, by bucket class (mcp, admin, auth_failures).";
    8 SESSIONS "mcpgw_sessions" Gauge []
        "Live MCP sessions (all instances sharing the session store).";
    9 STREAMS "mcpgw_streams" Gauge []
        "Open SSE streams held by this instance.";
    10 REGISTRY_ENTRIES "mcpgw_registry_entries" Gauge ["kind", "origin"]
        "Registry size: entries by kind, local or federated.";
    11 UPSTREAM_UP "mcpgw_upstream_up" Gauge ["upstream"]
        "1 while an upstream is healthy as this instance last saw it, else 0.";
    12 UPSTREAM_FAILURES "mcpgw_upstream_consecutive_failures" Gauge ["upstream"]
        "Failures in a row of an upstream, as this instance saw them.";
    13 RESOURCE_CACHE "mcpgw_resource_cache_lookups_total" Counter ["result"]
        "Upstream resource reads looked up in the cache (hit or miss) since this instance started.";
    14 INFO "mcpgw_info" Gauge ["version", "instance"]
        "Always 1: the running version and instance name.";
}

/// A value read when the metrics are read (gauges, and counters kept elsewhere) rather than
/// recorded as it happens.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The metric.
    pub metric: &'static Metric,
    /// Its label values, in the metric's order.
    pub labels: Vec<String>,
    /// The value.
    pub value: f64,
}

/// Where metrics and spans go: Prometheus text natively, Analytics Engine data points on the
/// edge, spans to an OTLP exporter. Records must be cheap; they run on the request path.
pub trait Recorder: MaybeSend + MaybeSync {
    /// Adds `value` to a counter, or observes it in a histogram; `labels` are in the metric's
    /// order.
    fn record(&self, metric: &'static Metric, labels: &[&str], value: f64);

    /// A finished span (only called when [`Recorder::traces`] is true).
    fn span(&self, _span: Span) {}

    /// Whether spans are wanted (an exporter is configured).
    fn traces(&self) -> bool {
        false
    }

    /// Writes every metric in the Prometheus text format, `samples` among them; false if this
    /// recorder keeps nothing to read back (the edge's).
    fn render(&self, _samples: &[Sample], _out: &mut String) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_positions_and_names_are_unique() {
        let mut names = std::collections::HashSet::new();
        for (i, m) in ALL.iter().enumerate() {
            assert_eq!(m.id, i, "{}", m.name);
            assert!(names.insert(m.name), "{} twice", m.name);
            assert!(m.name.starts_with("mcpgw_"));
            let counter_name = m.name.ends_with("_total");
            assert_eq!(counter_name, m.kind == MetricKind::Counter, "{}", m.name);
        }
        assert!(BUCKETS.windows(2).all(|w| w[0] < w[1]));
    }
}
