//! Every metric psql-fleet exports (SPEC 2.6), in one registry owned here. Label values are
//! bounded: cluster and claim names come from the fleet directory, components and error
//! reasons from fixed sets; series of a claim or cluster that leaves the fleet are deleted.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use fleet_core::api::release::NotReadyCause;
use fleet_core::model::ClaimKey;
use fleet_core::reconcile::{ClusterPlan, Component};
use fleet_core::rollout::WaveState;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot register metric: {0}")]
    Register(#[from] prometheus::Error),
}

/// The fixed set of `reason` values of `psql_fleet_reconcile_errors_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorReason {
    Unreachable,
    Timeout,
    Conflict,
    Forbidden,
    Invalid,
    ApiError,
    Kubeconfig,
    MassPrune,
}

impl ErrorReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unreachable => "unreachable",
            Self::Timeout => "timeout",
            Self::Conflict => "conflict",
            Self::Forbidden => "forbidden",
            Self::Invalid => "invalid",
            Self::ApiError => "api_error",
            Self::Kubeconfig => "kubeconfig",
            Self::MassPrune => "mass_prune",
        }
    }
}

/// `reason` of `psql_fleet_release_not_ready_reason` for a cluster never read.
const UNOBSERVED: &str = "unobserved";

/// Every `reason` value of `psql_fleet_release_not_ready_reason`.
const NOT_READY_REASONS: [&str; 5] = [
    NotReadyCause::ALL[0].as_str(),
    NotReadyCause::ALL[1].as_str(),
    NotReadyCause::ALL[2].as_str(),
    NotReadyCause::ALL[3].as_str(),
    UNOBSERVED,
];

pub struct Metrics {
    registry: Registry,
    release_ready: IntGaugeVec,
    release_not_ready: IntGaugeVec,
    claim_ready: IntGaugeVec,
    usage_present: IntGaugeVec,
    drift_detected: IntGaugeVec,
    drift_corrections: IntCounterVec,
    cluster_reachable: IntGaugeVec,
    reconcile_duration: HistogramVec,
    reconcile_errors: IntCounterVec,
    chart_version_info: IntGaugeVec,
    source_info: IntGaugeVec,
    source_last_sync: Gauge,
    source_valid: IntGaugeVec,
    prunes: IntCounterVec,
    applies: IntCounterVec,
    rollout_wave: IntGaugeVec,
    cluster_wave_info: IntGaugeVec,
    /// What series exist, so that those of removed claims and clusters can be deleted.
    known: Mutex<Known>,
}

#[derive(Default)]
struct Known {
    claims: BTreeMap<String, BTreeMap<ClaimKey, (String, String)>>,
    revision: Option<String>,
    /// Waves with `rollout_wave` series, and each cluster's `cluster_wave_info` wave.
    waves: Vec<String>,
    cluster_waves: BTreeMap<String, String>,
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> Result<IntGaugeVec, Error> {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> Result<IntCounterVec, Error> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

impl Metrics {
    pub fn new() -> Result<Metrics, Error> {
        let r = Registry::new();
        let cc = &["cluster", "claim"];
        let ccc = &["cluster", "claim", "component"];
        let reconcile_duration = HistogramVec::new(
            HistogramOpts::new(
                "psql_fleet_reconcile_duration_seconds",
                "Seconds one reconcile pass over a cluster took (plan, applies, deletes)",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["cluster"],
        )?;
        r.register(Box::new(reconcile_duration.clone()))?;
        let source_last_sync = Gauge::new(
            "psql_fleet_source_last_sync_timestamp_seconds",
            "Unix time at which the agent last read the fleet source successfully",
        )?;
        r.register(Box::new(source_last_sync.clone()))?;
        Ok(Metrics {
            release_ready: gauge(
                &r,
                "psql_fleet_release_ready",
                "1 when the claim's Release (component stackgres or atlas) reports Ready=True on the cluster, else 0",
                ccc,
            )?,
            release_not_ready: gauge(
                &r,
                "psql_fleet_release_not_ready_reason",
                "1 for each of the claim's Releases that is not ready, with why: missing, no_condition, ready_false, ready_unknown, or unobserved (the cluster was never read); no series for a ready Release",
                &["cluster", "claim", "component", "reason"],
            )?,
            claim_ready: gauge(
                &r,
                "psql_fleet_claim_ready",
                "1 when both Releases of the claim are Ready on the cluster, else 0",
                cc,
            )?,
            usage_present: gauge(
                &r,
                "psql_fleet_usage_present",
                "1 when the claim's Usage (Atlas deleted before StackGres) exists on the cluster, else 0",
                cc,
            )?,
            drift_detected: gauge(
                &r,
                "psql_fleet_drift_detected",
                "1 while the claim's object (stackgres, atlas or usage) differs from what the fleet directory says, else 0",
                ccc,
            )?,
            drift_corrections: counter(
                &r,
                "psql_fleet_drift_corrections_total",
                "Objects changed or deleted by hand that the agent re-applied (drift policy correct)",
                &["cluster"],
            )?,
            cluster_reachable: gauge(
                &r,
                "psql_fleet_cluster_reachable",
                "1 when the cluster's API server answered the agent's last request, else 0",
                &["cluster"],
            )?,
            reconcile_duration,
            reconcile_errors: counter(
                &r,
                "psql_fleet_reconcile_errors_total",
                "Failed reconcile steps on a cluster, by reason (unreachable, timeout, conflict, forbidden, invalid, api_error, kubeconfig, mass_prune)",
                &["cluster", "reason"],
            )?,
            chart_version_info: gauge(
                &r,
                "psql_fleet_chart_version_info",
                "Always 1; the version label is the chart version the fleet pins for the claim's component on the cluster",
                &["cluster", "claim", "component", "version"],
            )?,
            source_info: gauge(
                &r,
                "psql_fleet_source_info",
                "Always 1; the revision label is the fleet revision the agent serves (the last one that validated)",
                &["revision"],
            )?,
            source_last_sync,
            source_valid: gauge(
                &r,
                "psql_fleet_source_revision_valid",
                "1 when the newest revision of the fleet source validated, 0 when it did not (the last good one is still served)",
                &[],
            )?,
            prunes: counter(
                &r,
                "psql_fleet_prune_deletions_total",
                "Objects the agent deleted from a cluster because no claim in the fleet directory renders them any more",
                &["cluster"],
            )?,
            applies: counter(
                &r,
                "psql_fleet_applies_total",
                "Server-side apply requests the agent sent to a cluster",
                &["cluster"],
            )?,
            rollout_wave: gauge(
                &r,
                "psql_fleet_rollout_wave",
                "1 for the current state of each rollout wave",
                &["wave", "state"],
            )?,
            cluster_wave_info: gauge(
                &r,
                "psql_fleet_cluster_wave_info",
                "The rollout wave a cluster belongs to",
                &["cluster", "wave"],
            )?,
            registry: r,
            known: Mutex::new(Known::default()),
        })
    }

    /// Readiness, drift and versions of every claim of a cluster after a pass; series of
    /// claims no longer on the cluster are deleted.
    pub fn record_plan(&self, cluster: &str, plan: &ClusterPlan) {
        let mut now: BTreeMap<ClaimKey, (String, String)> = BTreeMap::new();
        for claim in &plan.claims {
            let key = claim.key.to_string();
            let cc = [cluster, key.as_str()];
            self.claim_ready
                .with_label_values(&cc)
                .set(i64::from(claim.readiness.ready));
            self.usage_present
                .with_label_values(&cc)
                .set(i64::from(claim.usage_present));
            for (component, ready) in claim.releases_ready {
                self.release_ready
                    .with_label_values(&[cluster, &key, component.as_str()])
                    .set(i64::from(ready));
            }
            for (component, cause) in claim.not_ready {
                self.set_not_ready(cluster, &key, component, cause.map(NotReadyCause::as_str));
            }
            for component in Component::ALL {
                let drifted = claim.drift.iter().any(|(c, _)| *c == component);
                self.drift_detected
                    .with_label_values(&[cluster, &key, component.as_str()])
                    .set(i64::from(drifted));
            }
            for (component, version) in [
                ("stackgres", &claim.versions.stackgres),
                ("atlas", &claim.versions.atlas),
            ] {
                self.chart_version_info
                    .with_label_values(&[cluster, &key, component, version])
                    .set(1);
            }
            now.insert(
                claim.key.clone(),
                (
                    claim.versions.stackgres.clone(),
                    claim.versions.atlas.clone(),
                ),
            );
        }
        let Ok(mut known) = self.known.lock() else {
            return;
        };
        let before = known
            .claims
            .insert(cluster.to_string(), now.clone())
            .unwrap_or_default();
        for (key, versions) in before {
            match now.get(&key) {
                None => self.remove_claim(cluster, &key, &versions),
                Some(current) if *current != versions => {
                    self.remove_versions(cluster, &key, &versions)
                }
                Some(_) => {}
            }
        }
    }

    /// The one `release_not_ready_reason` series of a Release (none when it is ready).
    fn set_not_ready(&self, cluster: &str, key: &str, component: Component, reason: Option<&str>) {
        let c = component.as_str();
        for other in NOT_READY_REASONS {
            if Some(other) != reason {
                let _ = self
                    .release_not_ready
                    .remove_label_values(&[cluster, key, c, other]);
            }
        }
        if let Some(reason) = reason {
            self.release_not_ready
                .with_label_values(&[cluster, key, c, reason])
                .set(1);
        }
    }

    /// The claims of a cluster the agent has not been able to read since it started: not
    /// ready, for reason `unobserved`. A later pass replaces these series; those of claims
    /// no longer on the cluster are deleted.
    pub fn record_unobserved(&self, cluster: &str, claims: impl IntoIterator<Item = ClaimKey>) {
        let claims: BTreeSet<ClaimKey> = claims.into_iter().collect();
        let Ok(mut known) = self.known.lock() else {
            return;
        };
        let entry = known.claims.entry(cluster.to_string()).or_default();
        let gone: Vec<(ClaimKey, (String, String))> = entry
            .iter()
            .filter(|(k, _)| !claims.contains(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (claim, versions) in gone {
            entry.remove(&claim);
            self.remove_claim(cluster, &claim, &versions);
        }
        for claim in claims {
            if entry.contains_key(&claim) {
                continue;
            }
            let key = claim.to_string();
            self.claim_ready.with_label_values(&[cluster, &key]).set(0);
            for component in [Component::Stackgres, Component::Atlas] {
                self.release_ready
                    .with_label_values(&[cluster, &key, component.as_str()])
                    .set(0);
                self.set_not_ready(cluster, &key, component, Some(UNOBSERVED));
            }
            entry.insert(claim, (String::new(), String::new()));
        }
    }

    fn remove_versions(&self, cluster: &str, key: &ClaimKey, (sg, atlas): &(String, String)) {
        let k = key.to_string();
        let _ = self
            .chart_version_info
            .remove_label_values(&[cluster, &k, "stackgres", sg]);
        let _ = self
            .chart_version_info
            .remove_label_values(&[cluster, &k, "atlas", atlas]);
    }

    fn remove_claim(&self, cluster: &str, key: &ClaimKey, versions: &(String, String)) {
        let k = key.to_string();
        let _ = self.claim_ready.remove_label_values(&[cluster, &k]);
        let _ = self.usage_present.remove_label_values(&[cluster, &k]);
        for c in Component::ALL {
            self.set_not_ready(cluster, &k, c, None);
            let _ = self
                .release_ready
                .remove_label_values(&[cluster, &k, c.as_str()]);
            let _ = self
                .drift_detected
                .remove_label_values(&[cluster, &k, c.as_str()]);
        }
        self.remove_versions(cluster, key, versions);
    }

    /// Deletes every series of a cluster that left the fleet.
    pub fn forget_cluster(&self, cluster: &str) {
        let claims = self
            .known
            .lock()
            .ok()
            .and_then(|mut k| k.claims.remove(cluster))
            .unwrap_or_default();
        for (key, versions) in claims {
            self.remove_claim(cluster, &key, &versions);
        }
        let _ = self.cluster_reachable.remove_label_values(&[cluster]);
        let wave = self
            .known
            .lock()
            .ok()
            .and_then(|mut k| k.cluster_waves.remove(cluster));
        if let Some(wave) = wave {
            let _ = self
                .cluster_wave_info
                .remove_label_values(&[cluster, &wave]);
        }
        let _ = self.drift_corrections.remove_label_values(&[cluster]);
        let _ = self.reconcile_duration.remove_label_values(&[cluster]);
        let _ = self.prunes.remove_label_values(&[cluster]);
        let _ = self.applies.remove_label_values(&[cluster]);
        for reason in [
            ErrorReason::Unreachable,
            ErrorReason::Timeout,
            ErrorReason::Conflict,
            ErrorReason::Forbidden,
            ErrorReason::Invalid,
            ErrorReason::ApiError,
            ErrorReason::Kubeconfig,
            ErrorReason::MassPrune,
        ] {
            let _ = self
                .reconcile_errors
                .remove_label_values(&[cluster, reason.as_str()]);
        }
    }

    pub fn set_reachable(&self, cluster: &str, reachable: bool) {
        self.cluster_reachable
            .with_label_values(&[cluster])
            .set(i64::from(reachable));
    }

    pub fn count_error(&self, cluster: &str, reason: ErrorReason) {
        self.reconcile_errors
            .with_label_values(&[cluster, reason.as_str()])
            .inc();
    }

    pub fn count_drift_correction(&self, cluster: &str) {
        self.drift_corrections.with_label_values(&[cluster]).inc();
    }

    pub fn count_prune(&self, cluster: &str) {
        self.prunes.with_label_values(&[cluster]).inc();
    }

    pub fn count_apply(&self, cluster: &str) {
        self.applies.with_label_values(&[cluster]).inc();
    }

    pub fn observe_duration(&self, cluster: &str, seconds: f64) {
        self.reconcile_duration
            .with_label_values(&[cluster])
            .observe(seconds);
    }

    /// The revision served, and when the source was last read.
    pub fn set_source(&self, revision: &str, valid: bool, synced_at: f64) {
        self.source_last_sync.set(synced_at);
        self.source_valid
            .with_label_values::<&str>(&[])
            .set(i64::from(valid));
        let Ok(mut known) = self.known.lock() else {
            return;
        };
        if known.revision.as_deref() != Some(revision) {
            if let Some(old) = known.revision.replace(revision.to_string()) {
                let _ = self.source_info.remove_label_values(&[&old]);
            }
            self.source_info.with_label_values(&[revision]).set(1);
        }
    }

    /// The state of each wave of the current rollout: 1 for its state, 0 for the others;
    /// the series of waves that are no longer in the rollout are deleted.
    pub fn set_rollout_waves(&self, waves: &[(&str, WaveState)]) {
        for (wave, state) in waves {
            for s in WaveState::ALL {
                self.rollout_wave
                    .with_label_values(&[wave, s.as_str()])
                    .set(i64::from(s == *state));
            }
        }
        let Ok(mut known) = self.known.lock() else {
            return;
        };
        let now: Vec<String> = waves.iter().map(|(w, _)| w.to_string()).collect();
        for old in known.waves.iter().filter(|w| !now.contains(w)) {
            for s in WaveState::ALL {
                let _ = self.rollout_wave.remove_label_values(&[old, s.as_str()]);
            }
        }
        known.waves = now;
    }

    /// The wave a cluster belongs to (`none` for the implicit last wave).
    pub fn set_cluster_wave(&self, cluster: &str, wave: &str) {
        let Ok(mut known) = self.known.lock() else {
            return;
        };
        if let Some(old) = known
            .cluster_waves
            .insert(cluster.to_string(), wave.to_string())
        {
            if old != wave {
                let _ = self.cluster_wave_info.remove_label_values(&[cluster, &old]);
            }
        }
        self.cluster_wave_info
            .with_label_values(&[cluster, wave])
            .set(1);
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_core::model::fleet::ChartVersions;
    use fleet_core::reconcile::{ClaimPlan, ReadinessReport};

    fn plan(claims: &[&str], version: &str) -> ClusterPlan {
        ClusterPlan {
            claims: claims
                .iter()
                .map(|name| ClaimPlan {
                    key: ClaimKey {
                        namespace: "default".into(),
                        name: name.to_string(),
                    },
                    readiness: ReadinessReport {
                        ready: true,
                        reason: None,
                    },
                    releases_ready: [(Component::Stackgres, true), (Component::Atlas, true)],
                    not_ready: [(Component::Stackgres, None), (Component::Atlas, None)],
                    usage_present: true,
                    suspended: false,
                    drift: vec![],
                    versions: ChartVersions {
                        stackgres: version.into(),
                        atlas: "0.7.23".into(),
                    },
                })
                .collect(),
            ..ClusterPlan::default()
        }
    }

    #[test]
    fn series_of_removed_claims_versions_and_clusters_are_deleted() {
        let m = Metrics::new().unwrap();
        m.record_plan("c1", &plan(&["a", "b"], "1.18.4"));
        m.set_reachable("c1", true);
        let text = m.encode();
        assert!(
            text.contains(r#"psql_fleet_claim_ready{claim="default/b",cluster="c1"} 1"#),
            "{text}"
        );
        m.record_plan("c1", &plan(&["a"], "1.19.0"));
        let text = m.encode();
        assert!(!text.contains("default/b"));
        assert!(!text.contains("1.18.4"));
        assert!(text.contains("1.19.0"));
        m.forget_cluster("c1");
        let text = m.encode();
        assert!(!text.contains(r#"cluster="c1""#), "{text}");
    }

    fn key(name: &str) -> ClaimKey {
        ClaimKey {
            namespace: "default".into(),
            name: name.into(),
        }
    }

    fn not_ready_series(text: &str) -> Vec<&str> {
        text.lines()
            .filter(|l| l.starts_with("psql_fleet_release_not_ready_reason{"))
            .collect()
    }

    #[test]
    fn a_release_has_one_not_ready_reason_series_until_it_is_ready_or_gone() {
        let m = Metrics::new().unwrap();
        m.record_unobserved("c1", [key("a"), key("b")]);
        let text = m.encode();
        assert_eq!(not_ready_series(&text).len(), 4, "{text}");
        assert!(text.contains(r#"psql_fleet_release_not_ready_reason{claim="default/a",cluster="c1",component="atlas",reason="unobserved"} 1"#), "{text}");
        assert!(text.contains(r#"psql_fleet_claim_ready{claim="default/b",cluster="c1"} 0"#));

        // The first pass: a's StackGres Release has no condition yet, its Atlas one is
        // missing; b is gone from the fleet.
        let mut p = plan(&["a"], "1.18.4");
        p.claims[0].not_ready = [
            (Component::Stackgres, Some(NotReadyCause::NoCondition)),
            (Component::Atlas, Some(NotReadyCause::Missing)),
        ];
        m.record_plan("c1", &p);
        let text = m.encode();
        assert_eq!(
            not_ready_series(&text),
            [
                r#"psql_fleet_release_not_ready_reason{claim="default/a",cluster="c1",component="atlas",reason="missing"} 1"#,
                r#"psql_fleet_release_not_ready_reason{claim="default/a",cluster="c1",component="stackgres",reason="no_condition"} 1"#,
            ],
            "{text}"
        );
        assert!(!text.contains("default/b"), "{text}");

        p.claims[0].not_ready[0].1 = Some(NotReadyCause::ReadyFalse);
        p.claims[0].not_ready[1].1 = None;
        m.record_plan("c1", &p);
        let text = m.encode();
        assert_eq!(
            not_ready_series(&text),
            [
                r#"psql_fleet_release_not_ready_reason{claim="default/a",cluster="c1",component="stackgres",reason="ready_false"} 1"#
            ],
        );
        // A claim gone from the fleet while the cluster is unreachable loses its series too.
        m.record_unobserved("c1", []);
        assert!(!m.encode().contains("default/a"));
        m.record_plan("c1", &p);
        m.forget_cluster("c1");
        assert!(not_ready_series(&m.encode()).is_empty());
    }

    #[test]
    fn every_metric_has_a_help_text_a_person_can_read() {
        let m = Metrics::new().unwrap();
        let mut p = plan(&["a"], "1.18.4");
        p.claims[0].not_ready[0].1 = Some(NotReadyCause::Missing);
        m.record_plan("c1", &p);
        m.set_reachable("c1", true);
        m.count_error("c1", ErrorReason::Timeout);
        m.count_drift_correction("c1");
        m.count_prune("c1");
        m.count_apply("c1");
        m.observe_duration("c1", 0.2);
        m.set_source("abc", true, 1.0);
        let families = m.registry.gather();
        assert_eq!(families.len(), 15);
        for family in families {
            assert!(family.name().starts_with("psql_fleet_"));
            assert!(
                family.help().split_whitespace().count() >= 8,
                "{}: {}",
                family.name(),
                family.help()
            );
        }
    }

    #[test]
    fn wave_series_follow_the_rollout_and_the_clusters() {
        let m = Metrics::new().unwrap();
        m.set_rollout_waves(&[("dev", WaveState::Complete), ("prod", WaveState::Halted)]);
        m.set_cluster_wave("c1", "dev");
        let text = m.encode();
        assert!(text.contains(r#"psql_fleet_rollout_wave{state="halted",wave="prod"} 1"#));
        assert!(text.contains(r#"psql_fleet_rollout_wave{state="pending",wave="prod"} 0"#));
        assert!(text.contains(r#"psql_fleet_cluster_wave_info{cluster="c1",wave="dev"} 1"#));
        m.set_rollout_waves(&[("dev", WaveState::Progressing)]);
        m.set_cluster_wave("c1", "none");
        let text = m.encode();
        assert!(!text.contains(r#"wave="prod""#), "{text}");
        assert!(text.contains(r#"psql_fleet_rollout_wave{state="progressing",wave="dev"} 1"#));
        assert!(!text.contains(r#"cluster="c1",wave="dev""#));
        m.forget_cluster("c1");
        assert!(!m.encode().contains("psql_fleet_cluster_wave_info{"));
    }

    #[test]
    fn only_the_served_revision_has_an_info_series() {
        let m = Metrics::new().unwrap();
        m.set_source("aaa", true, 1.0);
        m.set_source("bbb", true, 2.0);
        let text = m.encode();
        assert!(text.contains(r#"psql_fleet_source_info{revision="bbb"} 1"#));
        assert!(!text.contains(r#"revision="aaa""#));
        assert!(text.contains("psql_fleet_source_last_sync_timestamp_seconds 2"));
    }
}
