//! The `Fleet` document (`fleet.yaml`): chart version pins, rollout waves, drift and prune
//! policy. Optional: without it every setting has its built-in default.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::chart::Chart;
use super::diagnostic::{Diagnostic, Origin};
use super::document::RawDocument;
use super::duration;
use super::gate::{parse_gates, Gate, GateSpec};
use super::metadata::{check_api_version, Metadata};
use super::names::check_dns_label;
use super::selector::LabelSelector;
use super::share::{Share, ShareSpec};
use super::version::check_version;
use super::window::{parse_windows, Window, WindowSpec};
use super::FLEET_API_VERSION;

/// Fleet name when `fleet.yaml` is absent; it becomes the value of the inventory label.
pub const DEFAULT_FLEET_NAME: &str = "default";
/// Name of the implicit last wave of the clusters no wave selector matches (the
/// `wave="none"` of `psql_fleet_cluster_wave_info`); reserved, so no wave may take it.
pub const IMPLICIT_WAVE: &str = "none";
/// Share of the fleet's claims one revision may remove before the mass-prune guard stops it.
pub const DEFAULT_MAX_PRUNE_FRACTION: f64 = 0.5;

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FleetDocument {
    api_version: String,
    #[allow(dead_code, reason = "checked by the loader before parsing")]
    kind: String,
    #[serde(default)]
    metadata: Metadata,
    #[serde(default)]
    spec: FleetSpec,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FleetSpec {
    /// Fleet-wide chart versions, by chart name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pins: BTreeMap<String, String>,
    /// Per-selector pins; the first override whose selector matches a cluster wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<PinOverride>,
    /// Versions each chart is known to have; a pin outside them is warned about.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub known_versions: BTreeMap<String, Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune: Option<PruneSettings>,
    /// Take ownership of fields another manager holds, instead of reporting a conflict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force: Option<bool>,
    /// Stop reconciling the whole fleet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PinOverride {
    pub selector: LabelSelector,
    pub pins: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutSpec {
    #[serde(default)]
    pub waves: Vec<WaveSpec>,
    /// When any wave may start (each wave may add its own).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<WindowSpec>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WaveSpec {
    pub name: String,
    pub selector: LabelSelector,
    /// How long a wave stays healthy before the next one starts (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bake_time: Option<String>,
    /// How long a wave may take to become ready before the rollout halts (default 10m);
    /// with batches, each batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// How many of the wave's changed clusters may be in progress (given the revision and
    /// not yet ready) at once: a count or a percentage, rounded down, at least 1. The wave
    /// then goes in batches of that size. Default: all at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<ShareSpec>,
    /// How long each batch but the last stays ready before the next starts (default 0;
    /// the last batch bakes for `bakeTime`, as the wave).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_bake_time: Option<String>,
    /// A cluster label whose values the batches mix (e.g. `region`), so that no batch is
    /// one region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread_by: Option<String>,
    /// How many of the wave's changed clusters may be unreachable when it completes: they
    /// are left behind as stragglers, catch up when they come back, and hold no later wave.
    /// Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unreachable: Option<ShareSpec>,
    /// The wave starts only once a person approves it (`psql-fleet rollout approve
    /// <wave>`), for each revision that changes one of its clusters. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_approval: Option<bool>,
    /// PromQL checks that must hold while the wave bakes; one out of its range fails the
    /// wave.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<GateSpec>,
    /// When this wave may start, on top of the fleet's windows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<WindowSpec>,
    /// What a failure of the wave does to its clusters: `none` (default) leaves them on
    /// the failed revision; `auto` gives them back the revision they ran before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<Rollback>,
}

/// What a failed wave does to the clusters it gave the revision.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Rollback {
    /// They stay on the failed revision until an operator resumes, undoes or pushes a fix.
    #[default]
    None,
    /// They are given back the revision each ran before the wave gave it the failed one.
    Auto,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DriftSettings {
    pub policy: DriftPolicy,
}

/// What to do when a live object no longer matches the desired state (SPEC 2.4).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DriftPolicy {
    /// Re-apply and count a correction.
    #[default]
    Correct,
    /// Only report.
    Report,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PruneSettings {
    /// Largest share (0 to 1) of the fleet's claims one revision may remove.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_fraction: Option<f64>,
    /// Let a revision remove more than `maxFraction` of the claims.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_mass_prune: Option<bool>,
    /// What happens to the objects of a cluster removed from the fleet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed_clusters: Option<RemovedClusters>,
}

/// What happens to the objects of a cluster whose `Cluster` file leaves the fleet.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RemovedClusters {
    /// Pruned in the safe order, as if each of its claims had been removed, while the
    /// cluster can still be reached through its last kubeconfig.
    #[default]
    Prune,
    /// Left in place and no longer reconciled: the cluster is handed over, not emptied.
    Orphan,
}

/// One wave with its durations parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct Wave {
    pub name: String,
    pub selector: LabelSelector,
    pub bake_time: Duration,
    pub timeout: Duration,
    pub max_unavailable: Option<Share>,
    pub batch_bake_time: Duration,
    pub spread_by: Option<String>,
    pub max_unreachable: Option<Share>,
    pub require_approval: bool,
    pub gates: Vec<Gate>,
    /// Its own windows (the fleet's apply too).
    pub windows: Vec<Window>,
    pub rollback: Rollback,
}

/// Default for a wave's `timeout`.
pub const DEFAULT_WAVE_TIMEOUT: Duration = Duration::from_secs(600);

/// The fleet's settings, validated, with defaults applied.
#[derive(Clone, Debug, PartialEq)]
pub struct FleetSettings {
    pub origin: Option<Origin>,
    pub name: String,
    pub spec: FleetSpec,
    pub waves: Vec<Wave>,
    /// `spec.rollout.windows`: when any wave may start.
    pub windows: Vec<Window>,
}

impl Default for FleetSettings {
    fn default() -> Self {
        Self {
            origin: None,
            name: DEFAULT_FLEET_NAME.to_string(),
            spec: FleetSpec::default(),
            waves: Vec::new(),
            windows: Vec::new(),
        }
    }
}

/// The chart versions that apply to one cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChartVersions {
    pub stackgres: String,
    pub atlas: String,
}

impl ChartVersions {
    pub fn get(&self, chart: Chart) -> &str {
        match chart {
            Chart::Stackgres => &self.stackgres,
            Chart::Atlas => &self.atlas,
        }
    }
}

impl FleetSettings {
    /// Parses and checks `fleet.yaml`; `None` when it has errors (in `out`).
    pub fn parse(raw: &RawDocument<'_>, out: &mut Vec<Diagnostic>) -> Option<FleetSettings> {
        let doc: FleetDocument = match raw.parse() {
            Ok(doc) => doc,
            Err(e) => {
                out.push(e);
                return None;
            }
        };
        let origin = &raw.origin;
        let before = out.len();
        check_api_version(&doc.api_version, FLEET_API_VERSION, origin, out);
        // The name is the value of the inventory label on every object the fleet owns:
        // falling back to the default here would disown them all without a word.
        let name = doc.metadata.name.clone().unwrap_or_default();
        if doc.metadata.name.is_none() {
            out.push(Diagnostic::field(
                origin,
                "metadata.name",
                format!("required field is missing: it names the fleet; set metadata.name, or remove {} to use the defaults (fleet name {DEFAULT_FLEET_NAME:?})", origin.file),
            ));
        } else if let Err(e) = check_dns_label(&name) {
            out.push(Diagnostic::field(origin, "metadata.name", e));
        }
        let spec = doc.spec;
        check_pins(&spec.pins, origin, "spec.pins", out);
        for (i, o) in spec.overrides.iter().enumerate() {
            check_pins(&o.pins, origin, &format!("spec.overrides[{i}].pins"), out);
            for (field, e) in o.selector.problems() {
                out.push(Diagnostic::field(
                    origin,
                    format!("spec.overrides[{i}].selector.{field}"),
                    e,
                ));
            }
        }
        for (chart, versions) in &spec.known_versions {
            if Chart::from_name(chart).is_none() {
                out.push(unknown_chart(
                    origin,
                    &format!("spec.knownVersions.{chart}"),
                ));
            }
            for (i, v) in versions.iter().enumerate() {
                if let Err(e) = check_version(v) {
                    out.push(Diagnostic::field(
                        origin,
                        format!("spec.knownVersions.{chart}[{i}]"),
                        e,
                    ));
                }
            }
        }
        let waves = parse_waves(spec.rollout.as_ref(), origin, out);
        let windows = parse_windows(
            spec.rollout
                .as_ref()
                .map(|r| r.windows.as_slice())
                .unwrap_or_default(),
            origin,
            "spec.rollout.windows",
            out,
        );
        if let Some(fraction) = spec.prune.as_ref().and_then(|p| p.max_fraction) {
            if !(0.0..=1.0).contains(&fraction) {
                out.push(Diagnostic::field(
                    origin,
                    "spec.prune.maxFraction",
                    format!("must be between 0 and 1, got {fraction}"),
                ));
            }
        }
        if out.len() > before {
            return None;
        }
        let settings = FleetSettings {
            origin: Some(origin.clone()),
            name,
            spec,
            waves,
            windows,
        };
        settings.warn_unknown_versions(out);
        Some(settings)
    }

    /// Chart versions for a cluster: first matching override, then fleet pin, then the
    /// reference default.
    pub fn versions_for(&self, cluster_labels: &BTreeMap<String, String>) -> ChartVersions {
        let pick = |chart: Chart| -> String {
            self.spec
                .overrides
                .iter()
                .find(|o| o.selector.matches(cluster_labels))
                .and_then(|o| o.pins.get(chart.name()))
                .or_else(|| self.spec.pins.get(chart.name()))
                .cloned()
                .unwrap_or_else(|| chart.default_version().to_string())
        };
        ChartVersions {
            stackgres: pick(Chart::Stackgres),
            atlas: pick(Chart::Atlas),
        }
    }

    pub fn drift_policy(&self) -> DriftPolicy {
        self.spec
            .drift
            .as_ref()
            .map(|d| d.policy)
            .unwrap_or_default()
    }

    pub fn max_prune_fraction(&self) -> f64 {
        self.spec
            .prune
            .as_ref()
            .and_then(|p| p.max_fraction)
            .unwrap_or(DEFAULT_MAX_PRUNE_FRACTION)
    }

    pub fn removed_clusters(&self) -> RemovedClusters {
        self.spec
            .prune
            .as_ref()
            .and_then(|p| p.removed_clusters)
            .unwrap_or_default()
    }

    pub fn allow_mass_prune(&self) -> bool {
        self.spec
            .prune
            .as_ref()
            .and_then(|p| p.allow_mass_prune)
            .unwrap_or(false)
    }

    pub fn force(&self) -> bool {
        self.spec.force.unwrap_or(false)
    }

    pub fn suspended(&self) -> bool {
        self.spec.suspend.unwrap_or(false)
    }

    /// The wave a cluster belongs to: the first whose selector matches, else the implicit
    /// last wave (`None`).
    pub fn wave_of(&self, cluster_labels: &BTreeMap<String, String>) -> Option<&Wave> {
        self.waves
            .iter()
            .find(|w| w.selector.matches(cluster_labels))
    }

    fn warn_unknown_versions(&self, out: &mut Vec<Diagnostic>) {
        let Some(origin) = &self.origin else { return };
        let all_pins = std::iter::once(("spec.pins".to_string(), &self.spec.pins)).chain(
            self.spec
                .overrides
                .iter()
                .enumerate()
                .map(|(i, o)| (format!("spec.overrides[{i}].pins"), &o.pins)),
        );
        for (at, pins) in all_pins {
            for (chart, version) in pins {
                let Some(known) = self.spec.known_versions.get(chart) else {
                    continue;
                };
                if !known.contains(version) {
                    out.push(
                        Diagnostic::field(
                            origin,
                            format!("{at}.{chart}"),
                            format!(
                                "{version} is not among the known versions of {chart} ({})",
                                known.join(", ")
                            ),
                        )
                        .warning(),
                    );
                }
            }
        }
    }
}

fn unknown_chart(origin: &Origin, field: &str) -> Diagnostic {
    let known: Vec<_> = Chart::ALL.iter().map(|c| c.name()).collect();
    Diagnostic::field(
        origin,
        field,
        format!("unknown chart (expected one of {})", known.join(", ")),
    )
}

fn check_pins(
    pins: &BTreeMap<String, String>,
    origin: &Origin,
    at: &str,
    out: &mut Vec<Diagnostic>,
) {
    for (chart, version) in pins {
        let field = format!("{at}.{chart}");
        if Chart::from_name(chart).is_none() {
            out.push(unknown_chart(origin, &field));
        } else if let Err(e) = check_version(version) {
            out.push(Diagnostic::field(origin, field, e));
        }
    }
}

fn parse_waves(
    rollout: Option<&RolloutSpec>,
    origin: &Origin,
    out: &mut Vec<Diagnostic>,
) -> Vec<Wave> {
    let mut waves = Vec::new();
    for (i, w) in rollout
        .map(|r| r.waves.as_slice())
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let at = format!("spec.rollout.waves[{i}]");
        if let Err(e) = check_dns_label(&w.name) {
            out.push(Diagnostic::field(origin, format!("{at}.name"), e));
        } else if w.name == IMPLICIT_WAVE {
            // Status, metrics and commit statuses would merge it with the implicit wave.
            out.push(Diagnostic::field(
                origin,
                format!("{at}.name"),
                format!("{IMPLICIT_WAVE:?} is reserved: it names the implicit last wave of the clusters no wave selects; choose another name"),
            ));
        }
        if waves.iter().any(|seen: &Wave| seen.name == w.name) {
            out.push(Diagnostic::field(
                origin,
                format!("{at}.name"),
                format!("duplicate wave name {:?}", w.name),
            ));
        }
        for (field, e) in w.selector.problems() {
            out.push(Diagnostic::field(
                origin,
                format!("{at}.selector.{field}"),
                e,
            ));
        }
        let mut parse_duration = |field: &str, value: Option<&str>, default: Duration| {
            value
                .map_or(Ok(default), duration::parse)
                .unwrap_or_else(|e| {
                    out.push(Diagnostic::field(origin, format!("{at}.{field}"), e));
                    default
                })
        };
        let bake_time = parse_duration("bakeTime", w.bake_time.as_deref(), Duration::ZERO);
        let timeout = parse_duration("timeout", w.timeout.as_deref(), DEFAULT_WAVE_TIMEOUT);
        let batch_bake_time = parse_duration(
            "batchBakeTime",
            w.batch_bake_time.as_deref(),
            Duration::ZERO,
        );
        let mut share = |field: &str, spec: Option<&ShareSpec>| {
            spec.and_then(|s| {
                Share::parse(s)
                    .map_err(|e| out.push(Diagnostic::field(origin, format!("{at}.{field}"), e)))
                    .ok()
            })
        };
        let max_unavailable = share("maxUnavailable", w.max_unavailable.as_ref());
        let max_unreachable = share("maxUnreachable", w.max_unreachable.as_ref());
        if matches!(max_unavailable, Some(Share::Count(0) | Share::Percent(0))) {
            out.push(Diagnostic::field(
                origin,
                format!("{at}.maxUnavailable"),
                "must allow at least one cluster in progress (a count of 1 or more, or a percentage above 0)",
            ));
        }
        if w.batch_bake_time.is_some() && w.max_unavailable.is_none() {
            out.push(
                Diagnostic::field(
                    origin,
                    format!("{at}.batchBakeTime"),
                    "has no effect without maxUnavailable: the wave goes as one batch",
                )
                .warning(),
            );
        }
        if let Some(label) = &w.spread_by {
            if label.trim().is_empty() {
                out.push(Diagnostic::field(
                    origin,
                    format!("{at}.spreadBy"),
                    "must name a cluster label",
                ));
            }
        }
        waves.push(Wave {
            name: w.name.clone(),
            selector: w.selector.clone(),
            bake_time,
            timeout,
            max_unavailable,
            batch_bake_time,
            spread_by: w.spread_by.clone(),
            max_unreachable,
            require_approval: w.require_approval.unwrap_or(false),
            gates: parse_gates(&w.gates, origin, &at, out),
            windows: parse_windows(&w.windows, origin, &format!("{at}.windows"), out),
            rollback: w.rollback.unwrap_or_default(),
        });
    }
    waves
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::document::split;

    fn parse(yaml: &str) -> (Option<FleetSettings>, Vec<Diagnostic>) {
        let docs = split("fleet.yaml", yaml.as_bytes()).expect("splits");
        let mut out = Vec::new();
        let settings = FleetSettings::parse(&docs[0], &mut out);
        (settings, out)
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const FLEET: &str = "apiVersion: fleet.hops.ops.com.ai/v1alpha1\nkind: Fleet\nmetadata: {name: main}\nspec:\n  pins: {stackgres-operator: 1.18.4, atlas-operator: 0.7.23}\n  overrides:\n  - selector: {matchLabels: {env: dev}}\n    pins: {stackgres-operator: 1.19.0}\n  - selector: {matchLabels: {tier: edge}}\n    pins: {stackgres-operator: 1.17.0, atlas-operator: 0.7.0}\n  rollout:\n    waves:\n    - {name: dev, selector: {matchLabels: {env: dev}}, bakeTime: 5m}\n    - {name: prod, selector: {matchLabels: {env: prod}}}\n";

    #[test]
    fn pin_precedence_is_first_override_then_fleet_then_default() {
        let (settings, out) = parse(FLEET);
        assert!(out.is_empty(), "{out:?}");
        let s = settings.unwrap();
        let dev = s.versions_for(&labels(&[("env", "dev"), ("tier", "edge")]));
        assert_eq!(
            (dev.stackgres.as_str(), dev.atlas.as_str()),
            ("1.19.0", "0.7.23")
        );
        let edge = s.versions_for(&labels(&[("tier", "edge")]));
        assert_eq!(
            (edge.stackgres.as_str(), edge.atlas.as_str()),
            ("1.17.0", "0.7.0")
        );
        let prod = s.versions_for(&labels(&[("env", "prod")]));
        assert_eq!(prod.stackgres, "1.18.4");
        assert_eq!(
            FleetSettings::default().versions_for(&labels(&[])).atlas,
            "0.7.23"
        );
    }

    #[test]
    fn waves_parse_durations_and_clusters_fall_to_the_first_match() {
        let s = parse(FLEET).0.unwrap();
        assert_eq!(s.waves[0].bake_time, Duration::from_secs(300));
        assert_eq!(s.waves[1].timeout, DEFAULT_WAVE_TIMEOUT);
        assert_eq!(s.wave_of(&labels(&[("env", "prod")])).unwrap().name, "prod");
        assert!(s.wave_of(&labels(&[("env", "qa")])).is_none());
    }

    #[test]
    fn batches_and_stragglers_are_read_and_bad_shares_named() {
        let head = "apiVersion: fleet.hops.ops.com.ai/v1alpha1\nkind: Fleet\nmetadata: {name: main}\nspec:\n  rollout:\n    waves:\n";
        let (s, out) = parse(&format!("{head}    - {{name: prod, selector: {{}}, maxUnavailable: 25%, batchBakeTime: 1m, spreadBy: region, maxUnreachable: 2}}\n"));
        assert!(out.is_empty(), "{out:?}");
        let w = &s.unwrap().waves[0];
        assert_eq!(w.max_unavailable, Some(Share::Percent(25)));
        assert_eq!(w.max_unreachable, Some(Share::Count(2)));
        assert_eq!(w.batch_bake_time, Duration::from_secs(60));
        assert_eq!(w.spread_by.as_deref(), Some("region"));

        let (_, out) = parse(&format!(
            "{head}    - {{name: prod, selector: {{}}, maxUnavailable: 0, maxUnreachable: 150%}}\n"
        ));
        let messages: Vec<String> = out.iter().map(ToString::to_string).collect();
        assert!(
            messages
                .iter()
                .any(|m| m.contains("spec.rollout.waves[0].maxUnavailable")
                    && m.contains("at least one")),
            "{messages:?}"
        );
        assert!(
            messages
                .iter()
                .any(|m| m.contains("spec.rollout.waves[0].maxUnreachable")
                    && m.contains("more than 100%")),
            "{messages:?}"
        );
        let (_, out) = parse(&format!(
            "{head}    - {{name: prod, selector: {{}}, batchBakeTime: 1m}}\n"
        ));
        assert!(
            out.iter()
                .any(|d| d.to_string().contains("batchBakeTime")
                    && d.to_string().contains("no effect")),
            "{out:?}"
        );
    }

    #[test]
    fn rollback_is_none_by_default_auto_when_asked_and_anything_else_is_named() {
        let head = "apiVersion: fleet.hops.ops.com.ai/v1alpha1\nkind: Fleet\nmetadata: {name: main}\nspec:\n  rollout:\n    waves:\n";
        let (s, out) = parse(&format!(
            "{head}    - {{name: dev, selector: {{}}}}\n    - {{name: prod, selector: {{}}, rollback: auto}}\n"
        ));
        assert!(out.is_empty(), "{out:?}");
        let s = s.unwrap();
        assert_eq!(s.waves[0].rollback, Rollback::None);
        assert_eq!(s.waves[1].rollback, Rollback::Auto);
        let (_, out) = parse(&format!(
            "{head}    - {{name: prod, selector: {{}}, rollback: always}}\n"
        ));
        let messages: Vec<String> = out.iter().map(ToString::to_string).collect();
        assert!(
            messages
                .iter()
                .any(|m| m.contains("spec.rollout.waves[0].rollback")
                    && m.contains("expected `none` or `auto`")),
            "{messages:?}"
        );
    }

    #[test]
    fn bad_pins_and_unknown_charts_are_errors_naming_the_field() {
        let (settings, out) = parse(
            "apiVersion: fleet.hops.ops.com.ai/v1alpha1\nkind: Fleet\nmetadata: {name: f}\nspec:\n  pins: {stackgres-operator: latest, postgres: 1.0.0}\n",
        );
        assert!(settings.is_none());
        let fields: Vec<_> = out.iter().map(|d| d.field.clone().unwrap()).collect();
        assert_eq!(
            fields,
            vec!["spec.pins.postgres", "spec.pins.stackgres-operator"]
        );
    }

    #[test]
    fn a_pin_outside_known_versions_is_a_warning() {
        let (settings, out) = parse(
            "apiVersion: fleet.hops.ops.com.ai/v1alpha1\nkind: Fleet\nmetadata: {name: f}\nspec:\n  pins: {atlas-operator: 0.9.0}\n  knownVersions: {atlas-operator: [0.7.23]}\n",
        );
        assert!(settings.is_some());
        assert_eq!(out.len(), 1);
        assert!(!out[0].is_error());
        assert_eq!(out[0].field.as_deref(), Some("spec.pins.atlas-operator"));
    }

    #[test]
    fn a_fleet_without_a_name_is_an_error_not_a_rename() {
        let (settings, out) =
            parse("apiVersion: fleet.hops.ops.com.ai/v1alpha1\nkind: Fleet\nspec: {}\n");
        assert!(settings.is_none());
        assert_eq!(out[0].field.as_deref(), Some("metadata.name"));
        assert!(out[0]
            .message
            .contains("remove fleet.yaml to use the defaults"));
    }

    #[test]
    fn the_implicit_wave_name_is_reserved() {
        let (settings, out) = parse(
            "apiVersion: fleet.hops.ops.com.ai/v1alpha1\nkind: Fleet\nmetadata: {name: f}\nspec:\n  rollout:\n    waves: [{name: none, selector: {}}]\n",
        );
        assert!(settings.is_none());
        assert_eq!(out[0].field.as_deref(), Some("spec.rollout.waves[0].name"));
        assert!(
            out[0].message.starts_with("\"none\" is reserved"),
            "{}",
            out[0]
        );
    }
}
