//! The edge's metrics recorder: each record is one Workers Analytics Engine data point (index:
//! the metric's name; blobs: its label values in order; double 1: the value, 1 for a count or
//! seconds for a duration), written to the `ANALYTICS` binding. With `MCPGW_METRICS_LOG=true`
//! each point is also logged as a `mcpgw-metric {…}` line (Workers Logs, `wrangler tail`; and
//! under `wrangler dev`, whose local dataset keeps nothing, the only place to see them).

use mcpgw_core::observe::{Metric, Recorder};
use worker::{AnalyticsEngineDataPointBuilder, AnalyticsEngineDataset, Env};

/// Writes data points for one isolate.
pub struct Analytics {
    dataset: Option<AnalyticsEngineDataset>,
    log: bool,
}

/// The recorder `env` configures: none without the binding and the log setting.
pub fn recorder(env: &Env) -> Option<Analytics> {
    let dataset = env.analytics_engine("ANALYTICS").ok();
    let log = env
        .var("MCPGW_METRICS_LOG")
        .map(|v| matches!(v.to_string().trim(), "true" | "1" | "yes" | "on"))
        .unwrap_or(false);
    (dataset.is_some() || log).then_some(Analytics { dataset, log })
}

impl Recorder for Analytics {
    fn record(&self, metric: &'static Metric, labels: &[&str], value: f64) {
        if let Some(ds) = &self.dataset {
            let point = AnalyticsEngineDataPointBuilder::new()
                .indexes([metric.name])
                .blobs(labels.iter().copied())
                .add_double(value)
                .write_to(ds);
            if let Err(e) = point {
                worker::console_error!("mcpgw: analytics data point for {} not written: {e}", metric.name);
            }
        }
        if self.log {
            let labels: serde_json::Map<String, serde_json::Value> = metric
                .labels
                .iter()
                .zip(labels)
                .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
                .collect();
            let line = serde_json::json!({"metric": metric.name, "labels": labels, "value": value});
            worker::console_log!("mcpgw-metric {line}");
        }
    }
}
