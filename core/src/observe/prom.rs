//! Metrics kept in memory and written in the Prometheus text exposition format (version 0.0.4):
//! the native gateway's [`Recorder`]. One lock per metric, held for a hash lookup and an add.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use crate::observe::metrics::{Metric, MetricKind, Recorder, Sample, ALL, BUCKETS};
use crate::observe::trace::Span;

/// One labelled series.
#[derive(Debug, Clone)]
enum Series {
    Counter(f64),
    Histogram {
        buckets: [u64; BUCKETS.len()],
        sum: f64,
        count: u64,
    },
}

/// Writes extra families (process metrics) after the gateway's own.
pub type Collector = Box<dyn Fn(&mut String) + Send + Sync>;

/// Receives finished spans (an OTLP exporter).
pub type SpanSink = Box<dyn Fn(Span) + Send + Sync>;

/// The in-memory metrics of one process.
pub struct PromRegistry {
    /// Per metric (by id): label values joined with `\u{1}` → series.
    series: Vec<Mutex<HashMap<String, Series>>>,
    collectors: Vec<Collector>,
    spans: Option<SpanSink>,
}

impl Default for PromRegistry {
    fn default() -> Self {
        Self {
            series: ALL.iter().map(|_| Mutex::new(HashMap::new())).collect(),
            collectors: Vec::new(),
            spans: None,
        }
    }
}

/// A label value escaped for the text format.
fn escape(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// `{a="x",b="y"}` (with an extra label last, for `le`), or nothing without labels.
fn label_set(names: &[&str], values: &[&str], extra: Option<(&str, &str)>, out: &mut String) {
    let pairs = names.iter().zip(values).map(|(n, v)| (*n, *v)).chain(extra);
    let mut first = true;
    for (n, v) in pairs {
        out.push(if first { '{' } else { ',' });
        first = false;
        out.push_str(n);
        out.push_str("=\"");
        escape(v, out);
        out.push('"');
    }
    if !first {
        out.push('}');
    }
}

/// A float as the text format writes it.
fn number(v: f64, out: &mut String) {
    if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}

impl PromRegistry {
    /// Adds a collector of extra families, written after the gateway's metrics.
    pub fn with_collector(mut self, c: Collector) -> Self {
        self.collectors.push(c);
        self
    }

    /// Sends finished spans to `sink` (tracing is on).
    pub fn with_spans(mut self, sink: SpanSink) -> Self {
        self.spans = Some(sink);
        self
    }

    fn header(m: &Metric, out: &mut String) {
        let kind = match m.kind {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        };
        let _ = writeln!(out, "# HELP {} {}\n# TYPE {} {kind}", m.name, m.help, m.name);
    }

    /// One series; `values` are its label values, in the metric's order.
    fn write_series(m: &Metric, values: &[&str], s: &Series, out: &mut String) {
        match s {
            Series::Counter(v) => {
                out.push_str(m.name);
                label_set(m.labels, values, None, out);
                out.push(' ');
                number(*v, out);
                out.push('\n');
            }
            Series::Histogram { buckets, sum, count } => {
                let mut cumulative = 0;
                let bounds = BUCKETS.iter().map(|b| format!("{b}")).chain(["+Inf".to_string()]);
                for (i, le) in bounds.enumerate() {
                    cumulative += buckets.get(i).copied().unwrap_or(0);
                    let n = if i == BUCKETS.len() { *count } else { cumulative };
                    let _ = write!(out, "{}_bucket", m.name);
                    label_set(m.labels, values, Some(("le", &le)), out);
                    let _ = writeln!(out, " {n}");
                }
                let _ = write!(out, "{}_sum", m.name);
                label_set(m.labels, values, None, out);
                out.push(' ');
                number(*sum, out);
                let _ = write!(out, "\n{}_count", m.name);
                label_set(m.labels, values, None, out);
                let _ = writeln!(out, " {count}");
            }
        }
    }
}

impl Recorder for PromRegistry {
    fn record(&self, metric: &'static Metric, labels: &[&str], value: f64) {
        let Some(slot) = self.series.get(metric.id) else { return };
        let key = labels.join("\u{1}");
        let mut map = slot.lock().unwrap_or_else(|e| e.into_inner());
        let s = map.entry(key).or_insert_with(|| match metric.kind {
            MetricKind::Histogram => Series::Histogram {
                buckets: [0; BUCKETS.len()],
                sum: 0.0,
                count: 0,
            },
            _ => Series::Counter(0.0),
        });
        match s {
            Series::Counter(v) => *v += value,
            Series::Histogram { buckets, sum, count } => {
                if let Some(i) = BUCKETS.iter().position(|b| value <= *b) {
                    buckets[i] += 1;
                }
                *sum += value;
                *count += 1;
            }
        }
    }

    fn span(&self, span: Span) {
        if let Some(sink) = &self.spans {
            sink(span);
        }
    }

    fn traces(&self) -> bool {
        self.spans.is_some()
    }

    fn render(&self, samples: &[Sample], out: &mut String) -> bool {
        for m in ALL {
            Self::header(m, out);
            let sampled: Vec<&Sample> = samples.iter().filter(|s| s.metric.id == m.id).collect();
            if !sampled.is_empty() {
                for s in sampled {
                    let values: Vec<&str> = s.labels.iter().map(String::as_str).collect();
                    Self::write_series(m, &values, &Series::Counter(s.value), out);
                }
                continue;
            }
            let Some(slot) = self.series.get(m.id) else { continue };
            let map = slot.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for k in keys {
                let values: Vec<&str> = if m.labels.is_empty() {
                    Vec::new()
                } else {
                    k.split('\u{1}').collect()
                };
                Self::write_series(m, &values, &map[k], out);
            }
        }
        for c in &self.collectors {
            c(out);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::metrics::{HTTP_DURATION, HTTP_REQUESTS, SESSIONS, TOOL_CALLS};

    #[test]
    fn counters_histograms_and_samples_are_written_in_the_text_format() {
        let r = PromRegistry::default().with_collector(Box::new(|out| out.push_str("process_open_fds 7\n")));
        r.record(&HTTP_REQUESTS, &["mcp", "200"], 1.0);
        r.record(&HTTP_REQUESTS, &["mcp", "200"], 1.0);
        r.record(&HTTP_REQUESTS, &["api", "404"], 1.0);
        r.record(&TOOL_CALLS, &["say \"hi\"\n", "", "ok"], 1.0);
        for v in [0.0003, 0.002, 0.002, 50.0] {
            r.record(&HTTP_DURATION, &["mcp"], v);
        }
        let mut out = String::new();
        let samples = [Sample {
            metric: &SESSIONS,
            labels: vec![],
            value: 3.0,
        }];
        assert!(r.render(&samples, &mut out));
        for line in [
            "# TYPE mcpgw_http_requests_total counter",
            "mcpgw_http_requests_total{route=\"api\",status=\"404\"} 1",
            "mcpgw_http_requests_total{route=\"mcp\",status=\"200\"} 2",
            "mcpgw_tool_calls_total{tool=\"say \\\"hi\\\"\\n\",upstream=\"\",outcome=\"ok\"} 1",
            "# TYPE mcpgw_http_request_duration_seconds histogram",
            "mcpgw_http_request_duration_seconds_bucket{route=\"mcp\",le=\"0.0005\"} 1",
            "mcpgw_http_request_duration_seconds_bucket{route=\"mcp\",le=\"0.001\"} 1",
            "mcpgw_http_request_duration_seconds_bucket{route=\"mcp\",le=\"0.0025\"} 3",
            "mcpgw_http_request_duration_seconds_bucket{route=\"mcp\",le=\"30\"} 3",
            "mcpgw_http_request_duration_seconds_bucket{route=\"mcp\",le=\"+Inf\"} 4",
            "mcpgw_http_request_duration_seconds_count{route=\"mcp\"} 4",
            "mcpgw_sessions 3",
            "process_open_fds 7",
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");
        }
        let sum = out
            .lines()
            .find(|l| l.starts_with("mcpgw_http_request_duration_seconds_sum"))
            .expect("sum");
        let v: f64 = sum.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((v - 50.0043).abs() < 1e-9, "{sum}");
    }
}
