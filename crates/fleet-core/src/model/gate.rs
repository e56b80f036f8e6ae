//! A wave's metric gates (`spec.rollout.waves[].gates`): PromQL queries that must stay
//! within a range while the wave bakes, in the shape of Flagger's canary metrics
//! (`name`, `query`, `thresholdRange: {min, max}`), so that its users read them at once.

use serde::{Deserialize, Serialize};

use super::diagnostic::{Diagnostic, Origin};
use super::names::check_dns_label;

/// The variable a query names the wave's changed clusters with: a regular expression of
/// them, for a `=~` matcher inside double quotes.
pub const WAVE_CLUSTERS: &str = "$wave_clusters";

/// As written in `fleet.yaml`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GateSpec {
    pub name: String,
    pub query: String,
    pub threshold_range: ThresholdRange,
}

/// Inclusive bounds every sample of the query's result must lie within.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ThresholdRange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

/// A gate, checked. Kept in the persisted rollout state, so that a restart judges the
/// wave by the gates it started with.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Gate {
    pub name: String,
    pub query: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

// The bounds are finite (checked on parse), so equality is an equivalence.
impl Eq for Gate {}

impl Gate {
    /// "max 1", "min 0.5", "min 0.5 and max 1": the bounds as the reason shows them.
    pub fn threshold(&self) -> String {
        match (self.min, self.max) {
            (Some(min), Some(max)) => format!("min {min} and max {max}"),
            (Some(min), None) => format!("min {min}"),
            (None, Some(max)) => format!("max {max}"),
            (None, None) => "no bound".into(),
        }
    }
}

/// Checks the gates of the wave at `at` (`spec.rollout.waves[i]`); the valid ones.
pub fn parse_gates(
    specs: &[GateSpec],
    origin: &Origin,
    at: &str,
    out: &mut Vec<Diagnostic>,
) -> Vec<Gate> {
    let mut gates: Vec<Gate> = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for (j, g) in specs.iter().enumerate() {
        let at = format!("{at}.gates[{j}]");
        let before = out.len();
        if let Err(e) = check_dns_label(&g.name) {
            out.push(Diagnostic::field(origin, format!("{at}.name"), e));
        } else if names.contains(&g.name.as_str()) {
            out.push(Diagnostic::field(
                origin,
                format!("{at}.name"),
                format!("duplicate gate name {:?}", g.name),
            ));
        }
        names.push(&g.name);
        if g.query.trim().is_empty() {
            out.push(Diagnostic::field(
                origin,
                format!("{at}.query"),
                "must be a PromQL expression",
            ));
        }
        if let Some(unknown) = unknown_variable(&g.query) {
            out.push(Diagnostic::field(
                origin,
                format!("{at}.query"),
                format!("unknown variable {unknown} (the only one is {WAVE_CLUSTERS})"),
            ));
        }
        let ThresholdRange { min, max } = g.threshold_range;
        for (field, bound) in [("min", min), ("max", max)] {
            if bound.is_some_and(|b| !b.is_finite()) {
                out.push(Diagnostic::field(
                    origin,
                    format!("{at}.thresholdRange.{field}"),
                    "must be a finite number",
                ));
            }
        }
        match (min, max) {
            (None, None) => out.push(Diagnostic::field(
                origin,
                format!("{at}.thresholdRange"),
                "needs min, max or both: a gate without a bound passes everything",
            )),
            (Some(min), Some(max)) if min > max => out.push(Diagnostic::field(
                origin,
                format!("{at}.thresholdRange"),
                format!("min {min} is above max {max}: no value could pass"),
            )),
            _ => {}
        }
        if out.len() == before {
            gates.push(Gate {
                name: g.name.clone(),
                query: g.query.clone(),
                min,
                max,
            });
        }
    }
    gates
}

/// The first `$name` in `query` other than [`WAVE_CLUSTERS`]: PromQL has no `$`, so one is
/// a variable the agent would leave as it is (a Grafana `$__rate_interval`, a typo).
fn unknown_variable(query: &str) -> Option<String> {
    query.match_indices('$').find_map(|(i, _)| {
        let name: String = query[i + 1..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        (format!("${name}") != WAVE_CLUSTERS).then(|| format!("${name}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin {
            file: "fleet.yaml".into(),
            document: 1,
        }
    }

    fn spec(name: &str, query: &str, min: Option<f64>, max: Option<f64>) -> GateSpec {
        GateSpec {
            name: name.into(),
            query: query.into(),
            threshold_range: ThresholdRange { min, max },
        }
    }

    fn fields(specs: &[GateSpec]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        parse_gates(specs, &origin(), "spec.rollout.waves[0]", &mut out);
        out.into_iter()
            .map(|d| (d.field.unwrap_or_default(), d.message))
            .collect()
    }

    #[test]
    fn a_gate_with_a_bound_and_the_wave_variable_is_valid() {
        let mut out = Vec::new();
        let gates = parse_gates(
            &[spec(
                "errors",
                "sum(rate(e{cluster=~\"$wave_clusters\"}[5m]))",
                None,
                Some(1.0),
            )],
            &origin(),
            "spec.rollout.waves[0]",
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(gates[0].threshold(), "max 1");
    }

    #[test]
    fn bad_gates_are_errors_naming_the_field() {
        let got = fields(&[
            spec("Errors", "up", None, Some(1.0)),
            spec("a", " ", Some(2.0), Some(1.0)),
            spec("b", "rate(x[$__rate_interval])", None, None),
            spec("c", "up", Some(f64::INFINITY), None),
            spec("c", "up", None, Some(1.0)),
        ]);
        let at = |f: &str| format!("spec.rollout.waves[0].gates[{f}");
        let has = |field: String, words: &str| {
            assert!(
                got.iter().any(|(f, m)| *f == field && m.contains(words)),
                "{field} / {words}: {got:?}"
            )
        };
        has(at("0].name"), "");
        has(at("1].query"), "PromQL");
        has(at("1].thresholdRange"), "min 2 is above max 1");
        has(at("2].query"), "unknown variable $__rate_interval");
        has(at("2].thresholdRange"), "needs min, max or both");
        has(at("3].thresholdRange.min"), "finite");
        has(at("4].name"), "duplicate gate name");
    }
}
