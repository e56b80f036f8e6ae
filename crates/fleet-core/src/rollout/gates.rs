//! Metric gates, pure: which PromQL queries to ask while a wave bakes, and what the
//! answers mean for it. The agent asks Prometheus and hands back [`GateReading`]s.
//!
//! A sample outside the gate's range fails the wave at once, and so does a query
//! Prometheus refuses (it will not parse better later). No data (an empty result, or NaN)
//! and an unreachable Prometheus pass nothing: the wave keeps baking, and fails only when
//! no conclusive answer comes within the wave's `timeout` after its bake, so that a short
//! outage of Prometheus does not fail a rollout and a long one does not pass it.

use std::collections::BTreeMap;

use super::{human, State, WaveProgress, WaveState};
use crate::model::gate::{Gate, WAVE_CLUSTERS};

/// A query the agent is to ask now, for one gate of a baking wave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GateCheck {
    pub revision: String,
    pub wave: String,
    pub gate: String,
    /// With the wave's clusters in place of `$wave_clusters`.
    pub query: String,
}

/// One sample of a query's result: its series' labels as PromQL writes them, and value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub labels: String,
    pub value: f64,
}

/// What Prometheus answered.
#[derive(Clone, Debug, PartialEq)]
pub enum GateOutcome {
    /// The result: a scalar is one sample without labels; empty is no data.
    Samples(Vec<Sample>),
    /// Prometheus refused the query (bad PromQL): no retry will do better.
    Refused(String),
    /// No answer: Prometheus unreachable, timed out, or said it could not evaluate now.
    Unreachable(String),
}

/// A gate's latest answer.
#[derive(Clone, Debug, PartialEq)]
pub struct GateReading {
    pub revision: String,
    pub wave: String,
    pub gate: String,
    pub at_ms: u64,
    pub outcome: GateOutcome,
}

/// The latest reading of each gate, by wave and gate name.
pub type Readings = BTreeMap<(String, String), GateReading>;

/// What a wave's gates say together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum GateVerdict {
    Pass,
    Fail(String),
    /// Not (yet) conclusive, with why.
    Waiting(String),
}

/// `clusters` as a regular expression that matches each name whole and nothing else,
/// written to sit inside a PromQL double-quoted string (whose backslashes are escapes).
pub fn wave_clusters_regex<'a>(clusters: impl IntoIterator<Item = &'a String>) -> String {
    clusters
        .into_iter()
        .map(|c| {
            c.chars()
                .map(|ch| match ch {
                    '\\' | '.' | '+' | '*' | '?' | '(' | ')' | '|' | '[' | ']' | '{' | '}'
                    | '^' | '$' => format!("\\\\{ch}"),
                    '"' => "\\\"".into(),
                    ch => ch.to_string(),
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("|")
}

/// The query of `gate` for the changed clusters of `wave`.
pub fn query_for(gate: &Gate, wave: &WaveProgress) -> String {
    gate.query
        .replace(WAVE_CLUSTERS, &wave_clusters_regex(wave.clusters.keys()))
}

impl State {
    /// The queries to ask now: every gate of the wave that bakes (its last batch ready),
    /// unless the rollout is halted.
    pub fn gate_checks(&self) -> Vec<GateCheck> {
        let Some(r) = self.rollout.as_ref().filter(|r| r.halted.is_none()) else {
            return Vec::new();
        };
        r.waves
            .iter()
            .filter(|w| w.state == WaveState::Baking)
            .flat_map(|w| {
                w.gates.iter().map(|g| GateCheck {
                    revision: r.revision.clone(),
                    wave: w.name.clone(),
                    gate: g.name.clone(),
                    query: query_for(g, w),
                })
            })
            .collect()
    }
}

/// The gates of `w` judged on the readings of `revision` taken since the wave became
/// ready (`since`): the first failure, else the first gate without a conclusive pass,
/// else a pass.
pub(super) fn judge_gates(
    w: &WaveProgress,
    revision: &str,
    readings: &Readings,
    since: u64,
) -> GateVerdict {
    let mut waiting = Vec::new();
    for gate in &w.gates {
        let reading = readings
            .get(&(w.name.clone(), gate.name.clone()))
            .filter(|r| r.revision == revision && r.at_ms >= since);
        let Some(reading) = reading else {
            waiting.push(format!("gate {}: not evaluated yet", gate.name));
            continue;
        };
        let query = query_for(gate, w);
        match &reading.outcome {
            GateOutcome::Refused(e) => {
                return GateVerdict::Fail(format!(
                    "gate {}: Prometheus refused {query}: {e}",
                    gate.name
                ))
            }
            GateOutcome::Unreachable(e) => waiting.push(format!(
                "gate {}: no answer from Prometheus: {e}",
                gate.name
            )),
            GateOutcome::Samples(samples) => {
                let values: Vec<&Sample> = samples.iter().filter(|s| !s.value.is_nan()).collect();
                if values.is_empty() {
                    waiting.push(format!("gate {}: no data for {query}", gate.name));
                    continue;
                }
                if let Some(s) = values.iter().find(|s| !within(gate, s.value)) {
                    let series = if s.labels.is_empty() || samples.len() == 1 {
                        String::new()
                    } else {
                        format!(" (series {})", s.labels)
                    };
                    return GateVerdict::Fail(format!(
                        "gate {}: {query} = {}{series}, outside the threshold {}",
                        gate.name,
                        s.value,
                        gate.threshold()
                    ));
                }
            }
        }
    }
    if waiting.is_empty() {
        GateVerdict::Pass
    } else {
        GateVerdict::Waiting(waiting.join("; "))
    }
}

fn within(gate: &Gate, value: f64) -> bool {
    gate.min.is_none_or(|min| value >= min) && gate.max.is_none_or(|max| value <= max)
}

/// Why a baked wave still waits, and whether it has waited too long: gates without a
/// conclusive pass `over_ms` after the bake ended fail the wave once that reaches its
/// timeout.
pub(super) fn overdue(w: &WaveProgress, reason: &str, over_ms: u64) -> Option<String> {
    (over_ms >= w.timeout_ms).then(|| {
        format!(
            "gates inconclusive {} after the bake (the wave's timeout): {reason}",
            human(w.timeout_ms)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_regex_escapes_metacharacters_for_a_promql_string() {
        let names = ["eu-1".to_string(), "a.b".to_string(), "c|d".to_string()];
        assert_eq!(wave_clusters_regex(&names), r"eu-1|a\\.b|c\\|d");
    }

    #[test]
    fn bounds_are_inclusive() {
        let gate = Gate {
            name: "g".into(),
            query: "q".into(),
            min: Some(0.5),
            max: Some(1.0),
        };
        assert!(within(&gate, 1.0) && within(&gate, 0.5));
        assert!(!within(&gate, 1.01) && !within(&gate, 0.49));
    }
}
