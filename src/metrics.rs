//! Every metric psql-fleet exports (SPEC 2.6), in one registry owned here. Label values are
//! bounded: cluster and claim names come from the fleet directory, components and error
//! reasons from fixed sets; series of a claim or cluster that leaves the fleet are deleted.

use std::collections::BTreeMap;
use std::sync::Mutex;

use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::model::ClaimKey;
use crate::reconcile::{ClusterPlan, Component};
use crate::rollout::WaveState;

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

pub struct Metrics {
    registry: Registry,
    release_ready: IntGaugeVec,
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
                "Duration of one reconcile pass over a cluster",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["cluster"],
        )?;
        r.register(Box::new(reconcile_duration.clone()))?;
        let source_last_sync = Gauge::new(
            "psql_fleet_source_last_sync_timestamp_seconds",
            "Unix time of the last successful read of the fleet source",
        )?;
        r.register(Box::new(source_last_sync.clone()))?;
        Ok(Metrics {
            release_ready: gauge(
                &r,
                "psql_fleet_release_ready",
                "1 when the Release reports Ready=True",
                ccc,
            )?,
            claim_ready: gauge(
                &r,
                "psql_fleet_claim_ready",
                "1 when both Releases of the claim are Ready",
                cc,
            )?,
            usage_present: gauge(
                &r,
                "psql_fleet_usage_present",
                "1 when the claim's Usage exists",
                cc,
            )?,
            drift_detected: gauge(
                &r,
                "psql_fleet_drift_detected",
                "1 while the object differs from the desired state",
                ccc,
            )?,
            drift_corrections: counter(
                &r,
                "psql_fleet_drift_corrections_total",
                "Drifted objects re-applied",
                &["cluster"],
            )?,
            cluster_reachable: gauge(
                &r,
                "psql_fleet_cluster_reachable",
                "1 when the cluster's API server answers",
                &["cluster"],
            )?,
            reconcile_duration,
            reconcile_errors: counter(
                &r,
                "psql_fleet_reconcile_errors_total",
                "Reconcile errors by reason",
                &["cluster", "reason"],
            )?,
            chart_version_info: gauge(
                &r,
                "psql_fleet_chart_version_info",
                "Chart version desired for the claim's component",
                &["cluster", "claim", "component", "version"],
            )?,
            source_info: gauge(
                &r,
                "psql_fleet_source_info",
                "The revision being served",
                &["revision"],
            )?,
            source_last_sync,
            source_valid: gauge(
                &r,
                "psql_fleet_source_revision_valid",
                "1 when the newest revision of the source validated",
                &[],
            )?,
            prunes: counter(
                &r,
                "psql_fleet_prune_deletions_total",
                "Objects deleted because no claim renders them",
                &["cluster"],
            )?,
            applies: counter(
                &r,
                "psql_fleet_applies_total",
                "Server-side applies sent",
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
    use crate::model::fleet::ChartVersions;
    use crate::reconcile::{ClaimPlan, ReadinessReport};

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
