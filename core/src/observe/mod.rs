//! What an operator sees of the gateway at work. Metrics are named and labelled once
//! ([`metrics`]) and recorded through the [`Recorder`] port: kept in memory and written as
//! Prometheus text natively ([`prom`]), sent as Analytics Engine data points on the edge. Every
//! request carries a [`RequestCtx`] ([`trace`]): its id (echoed as `X-Request-Id`) and its W3C
//! trace, continued from `traceparent` and passed on to upstreams; finished spans go to the
//! recorder when it wants them (an OTLP exporter natively).
//!
//! Lives here: names, labels, the text format, trace context. Not here: where the numbers come
//! from (each layer records its own through [`Telemetry`]), exporting (the adapters).

pub mod metrics;
pub mod otlp;
pub mod prom;
pub mod trace;

use std::sync::Arc;

use crate::ports::{Clock, Ids};
pub use metrics::{Metric, Recorder, Sample};
pub use trace::{RequestCtx, Span, SpanKind, TraceContext};

/// The handle every layer records through: a no-op without a recorder.
#[derive(Clone)]
pub struct Telemetry {
    rec: Option<Arc<dyn Recorder>>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn Ids>,
}

impl Telemetry {
    /// Records to `rec` (none: nothing is recorded), timing with `clock`.
    pub fn new(rec: Option<Arc<dyn Recorder>>, clock: Arc<dyn Clock>, ids: Arc<dyn Ids>) -> Self {
        Self { rec, clock, ids }
    }

    /// Records nothing.
    pub fn off(clock: Arc<dyn Clock>) -> Self {
        /// Ids for a handle that never makes spans.
        struct NoIds;
        impl Ids for NoIds {
            fn new_id(&self) -> String {
                "0".repeat(32)
            }
        }
        Self::new(None, clock, Arc::new(NoIds))
    }

    /// Whether anything is recorded (so a caller can skip preparing labels).
    pub fn on(&self) -> bool {
        self.rec.is_some()
    }

    /// Whether spans are wanted.
    pub fn traces(&self) -> bool {
        self.rec.as_ref().is_some_and(|r| r.traces())
    }

    /// Now, in µs since the epoch (for durations and span times).
    pub fn now_us(&self) -> u64 {
        self.clock.now_us()
    }

    /// The ids port (span ids).
    pub fn ids(&self) -> &dyn Ids {
        &*self.ids
    }

    /// Adds 1 to a counter.
    pub fn count(&self, m: &'static Metric, labels: &[&str]) {
        if let Some(r) = &self.rec {
            r.record(m, labels, 1.0);
        }
    }

    /// Observes the seconds since `started_us` in a histogram.
    pub fn elapsed(&self, m: &'static Metric, labels: &[&str], started_us: u64) {
        if let Some(r) = &self.rec {
            let secs = self.clock.now_us().saturating_sub(started_us) as f64 / 1e6;
            r.record(m, labels, secs);
        }
    }

    /// The server span of one HTTP request, begun at `started` (µs), answered with `status`.
    pub fn server_span(&self, ctx: trace::RequestCtx, name: String, class: &str, started: u64, status: u16) {
        self.span(Span {
            trace_id: ctx.trace.trace_id,
            span_id: ctx.trace.span_id,
            parent_id: ctx.trace.parent_id,
            name,
            kind: SpanKind::Server,
            start_us: started,
            end_us: self.now_us(),
            attributes: vec![
                ("http.response.status_code", status.to_string()),
                ("http.route", class.to_string()),
                ("mcpgw.request_id", ctx.request_id),
            ],
            error: status >= 500,
        });
    }

    /// Hands a finished span to the recorder, if it wants spans.
    pub fn span(&self, span: Span) {
        if let Some(r) = self.rec.as_ref().filter(|r| r.traces()) {
            r.span(span);
        }
    }

    /// Every metric as Prometheus text, `samples` among them; none if the recorder keeps nothing
    /// to read back (or there is none).
    pub fn render(&self, samples: &[Sample]) -> Option<String> {
        let mut out = String::with_capacity(8192);
        self.rec.as_ref()?.render(samples, &mut out).then_some(out)
    }
}
