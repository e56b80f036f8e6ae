//! Metric gates at the edge: every `interval`, the queries the rollout asks for (the
//! gates of a baking wave, `State::gate_checks`) go to Prometheus's instant-query API, and
//! the answers go back to the rollout driver, which decides. Nothing here judges a value.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fleet_core::rollout::gates::{GateOutcome, GateReading, Sample};
use serde::Deserialize;

use super::driver::{now_ms, RolloutDriver};

/// `--prometheus-url` and `--prometheus-interval`.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Where Prometheus's HTTP API is (`http://prometheus:9090`); without it a gate has no
    /// answer, so a gated wave waits after its bake and then fails saying so.
    pub prometheus_url: Option<String>,
    pub interval: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            prometheus_url: None,
            interval: Duration::from_secs(30),
        }
    }
}

/// How long one query may take before it counts as no answer.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Asks the gates' queries until the task is aborted.
pub fn spawn(settings: Settings, rollouts: Arc<RolloutDriver>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client = reqwest::Client::builder().timeout(QUERY_TIMEOUT).build();
        let mut tick = tokio::time::interval(settings.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            for check in rollouts.gate_checks() {
                let outcome = match (&settings.prometheus_url, &client) {
                    (None, _) => {
                        GateOutcome::Unreachable("the agent has no --prometheus-url to ask".into())
                    }
                    (Some(_), Err(e)) => GateOutcome::Unreachable(format!("no HTTP client: {e}")),
                    (Some(url), Ok(client)) => query(client, url, &check.query).await,
                };
                if let GateOutcome::Refused(e) | GateOutcome::Unreachable(e) = &outcome {
                    tracing::warn!(wave = %check.wave, gate = %check.gate, error = %e, "metric gate without an answer");
                }
                rollouts.gate_result(GateReading {
                    revision: check.revision,
                    wave: check.wave,
                    gate: check.gate,
                    at_ms: now_ms(),
                    outcome,
                });
            }
        }
    })
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct VectorSample {
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

/// One instant query (`GET /api/v1/query`). Prometheus answers 400 for a query it cannot
/// parse (`bad_data`): refused, for good. Anything else that is not a result (no
/// connection, a timeout, 422 for a query that could not run now, 503) is no answer.
async fn query(client: &reqwest::Client, url: &str, promql: &str) -> GateOutcome {
    let endpoint = format!("{}/api/v1/query", url.trim_end_matches('/'));
    let response = match client
        .get(&endpoint)
        .query(&[("query", promql)])
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => return GateOutcome::Unreachable(crate::error_chain::chain(&e)),
    };
    let code = response.status();
    let answer: Answer = match response.json().await {
        Ok(a) => a,
        Err(e) => {
            return GateOutcome::Unreachable(format!(
                "HTTP {code}, not a Prometheus answer: {}",
                crate::error_chain::chain(&e)
            ))
        }
    };
    if answer.status != "success" {
        let what = format!(
            "{}: {}",
            answer.error_type.as_deref().unwrap_or("error"),
            answer.error.as_deref().unwrap_or("no message")
        );
        return if answer.error_type.as_deref() == Some("bad_data") {
            GateOutcome::Refused(what)
        } else {
            GateOutcome::Unreachable(what)
        };
    }
    let Some(data) = answer.data else {
        return GateOutcome::Unreachable("a success without data".into());
    };
    let samples = match data.result_type.as_str() {
        "vector" => serde_json::from_value::<Vec<VectorSample>>(data.result).map(|samples| {
            samples
                .into_iter()
                .map(|s| Sample {
                    labels: labels(&s.metric),
                    value: parse_value(&s.value.1),
                })
                .collect()
        }),
        "scalar" => serde_json::from_value::<(f64, String)>(data.result).map(|(_, v)| {
            vec![Sample {
                labels: String::new(),
                value: parse_value(&v),
            }]
        }),
        other => {
            return GateOutcome::Refused(format!(
                "the query returns a {other}, not an instant vector or a scalar"
            ))
        }
    };
    samples.map_or_else(
        |e| GateOutcome::Unreachable(format!("unreadable result: {e}")),
        GateOutcome::Samples,
    )
}

/// Prometheus writes sample values as strings (`"1.5"`, `"NaN"`, `"+Inf"`); an unreadable
/// one is NaN, which the gate takes as no data.
fn parse_value(v: &str) -> f64 {
    v.parse().unwrap_or(f64::NAN)
}

/// `{cluster="a",job="b"}`, as PromQL writes a series.
fn labels(metric: &BTreeMap<String, String>) -> String {
    if metric.is_empty() {
        return String::new();
    }
    let pairs: Vec<String> = metric.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", pairs.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_labels_read_as_prometheus_writes_them() {
        assert_eq!(parse_value("+Inf"), f64::INFINITY);
        assert!(parse_value("NaN").is_nan());
        assert_eq!(parse_value("0.25"), 0.25);
        let metric: BTreeMap<String, String> =
            [("job".into(), "x".into()), ("cluster".into(), "a".into())].into();
        assert_eq!(labels(&metric), "{cluster=\"a\",job=\"x\"}");
    }
}
