//! Every metric psql-fleet exports (SPEC 2.6), in one registry owned here. Label values are
//! bounded: cluster and claim names come from the fleet directory, components and error
//! reasons from fixed sets.
//!
//! Two kinds of series. Counters and the duration histogram count things as they happen.
//! Everything else (readiness, drift, versions, reachability, waves, the source) is what
//! the agent knows now: the latest report of each cluster is kept here, and its series are
//! built from it at scrape time, so the series of a claim or cluster that left the fleet
//! are simply not built again.

mod counts;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Encoder, Gauge, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use fleet_core::model::fleet::ChartVersions;
use fleet_core::model::Claim;
use fleet_core::reconcile::{ClaimReadiness, ClusterPlan, Component, ManagerKind};
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
    /// Another writer keeps changing an object this agent owns; its writes are held.
    AnotherWriter,
    /// Another cluster entry of the fleet reaches the same cluster; this one is refused.
    DuplicateCluster,
    /// A desired object exists already, labelled as another fleet's or entry's.
    OwnedElsewhere,
    /// The cluster does not serve the Release or the Usage API.
    MissingApi,
}

impl ErrorReason {
    pub const ALL: [ErrorReason; 12] = [
        Self::Unreachable,
        Self::Timeout,
        Self::Conflict,
        Self::Forbidden,
        Self::Invalid,
        Self::ApiError,
        Self::Kubeconfig,
        Self::MassPrune,
        Self::AnotherWriter,
        Self::DuplicateCluster,
        Self::OwnedElsewhere,
        Self::MissingApi,
    ];

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
            Self::AnotherWriter => "another_writer",
            Self::DuplicateCluster => "duplicate_cluster",
            Self::OwnedElsewhere => "owned_elsewhere",
            Self::MissingApi => "missing_api",
        }
    }
}

pub struct Metrics {
    registry: Registry,
    /// Each cluster's counters and pass durations.
    counts: counts::ClusterCounts,
    rollbacks: IntCounterVec,
    leader: IntGauge,
    /// Under `--shards`: N (no series without sharding).
    shards: IntGaugeVec,
    /// Under `--shards`: the fleet's clusters in each shard this replica holds.
    shard_clusters: IntGaugeVec,
    latest: Arc<Mutex<Latest>>,
}

/// What the agent knows now, as last reported.
/// What the metrics say of one rollout wave of the newest revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaveFacts {
    pub name: String,
    pub state: WaveState,
    /// The batch in progress (or the last one, once the wave is through), from 1; 0 for a
    /// wave taken in one go.
    pub batch: usize,
    /// How many batches the wave takes its changed clusters in (0: one go).
    pub batches: usize,
    /// Clusters the wave completed without, not caught up yet.
    pub stragglers: usize,
}

#[derive(Default)]
struct Latest {
    clusters: BTreeMap<String, ClusterFacts>,
    source: Option<SourceFacts>,
    waves: Vec<WaveFacts>,
}

#[derive(Default)]
struct ClusterFacts {
    reachable: Option<bool>,
    /// The cluster stopped answering after the last pass that read it: once it answers
    /// again, what that pass saw stays unknown until the next pass.
    stale: bool,
    wave: Option<String>,
    /// A cluster has a claim or two: in a B-tree each cluster's one claim took a node of
    /// eleven, about 2 KiB a cluster at ten thousand.
    claims: Vec<(String, ClaimFacts)>,
}

struct ClaimFacts {
    readiness: ClaimReadiness,
    /// What a pass found; `None` while the cluster was never read.
    observed: Option<ObservedFacts>,
}

struct ObservedFacts {
    usage_present: bool,
    drifted: Vec<Component>,
    versions: ChartVersions,
}

struct SourceFacts {
    revision: String,
    valid: bool,
    synced_at: f64,
    /// Why the newest revision is not served, when it is not.
    rejected: Option<&'static str>,
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> Result<IntCounterVec, Error> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

impl Metrics {
    pub fn new() -> Result<Metrics, Error> {
        let r = Registry::new();
        let counts = counts::ClusterCounts::new()?;
        r.register(Box::new(counts.clone()))?;
        let latest = Arc::new(Mutex::new(Latest::default()));
        r.register(Box::new(LatestCollector::new(latest.clone())?))?;
        let leader = IntGauge::new(
            "psql_fleet_leader",
            "1 while this replica writes to fleet clusters (it holds the leader Lease, or runs without leader election), else 0",
        )?;
        leader.set(1);
        r.register(Box::new(leader.clone()))?;
        let shards = IntGaugeVec::new(
            Opts::new(
                "psql_fleet_shards",
                "Under run --shards N: N, how many shards the fleet's clusters are split into",
            ),
            &[],
        )?;
        r.register(Box::new(shards.clone()))?;
        let shard_clusters = IntGaugeVec::new(
            Opts::new(
                "psql_fleet_shard_clusters",
                "Under run --shards: the fleet's clusters in each shard this replica holds (no series for the shards it does not hold)",
            ),
            &["shard"],
        )?;
        r.register(Box::new(shard_clusters.clone()))?;
        Ok(Metrics {
            counts,
            rollbacks: counter(
                &r,
                "psql_fleet_rollbacks_total",
                "Rollbacks of a rollout wave: its clusters given back the revision they ran before, after the wave failed under rollback: auto or on psql-fleet rollout undo",
                &["wave"],
            )?,
            registry: r,
            leader,
            shards,
            shard_clusters,
            latest,
        })
    }

    /// Whether this replica leads now (see `psql_fleet_leader`).
    pub fn set_leader(&self, leads: bool) {
        self.leader.set(i64::from(leads));
    }

    /// Under `--shards`: `shards` is N, `held` the fleet's clusters in each shard this
    /// replica holds; the series of the shards it does not hold are removed.
    pub fn set_shards(&self, shards: u32, held: &BTreeMap<u32, usize>) {
        self.shards
            .with_label_values::<&str>(&[])
            .set(i64::from(shards));
        for shard in 0..shards {
            let label = shard.to_string();
            match held.get(&shard) {
                Some(n) => self
                    .shard_clusters
                    .with_label_values(&[label.as_str()])
                    .set(i64::try_from(*n).unwrap_or(i64::MAX)),
                None => {
                    let _ = self.shard_clusters.remove_label_values(&[label.as_str()]);
                }
            }
        }
    }

    fn with_latest(&self, f: impl FnOnce(&mut Latest)) {
        if let Ok(mut latest) = self.latest.lock() {
            f(&mut latest);
        }
    }

    /// Readiness, drift and versions of every claim of a cluster after a pass; claims no
    /// longer on the cluster are forgotten.
    pub fn record_plan(&self, cluster: &str, plan: &ClusterPlan) {
        let claims = plan
            .claims
            .iter()
            .map(|claim| {
                let facts = ClaimFacts {
                    readiness: claim.readiness.clone(),
                    observed: Some(ObservedFacts {
                        usage_present: claim.usage_present,
                        drifted: claim.drift.iter().map(|(c, _)| *c).collect(),
                        versions: claim.versions.clone(),
                    }),
                };
                (claim.key.to_string(), facts)
            })
            .collect();
        self.with_latest(|l| {
            let facts = l.clusters.entry(cluster.to_string()).or_default();
            facts.claims = claims;
            // A pass over a cluster that does not answer read only what was seen before.
            if facts.reachable != Some(false) {
                facts.stale = false;
            }
        });
    }

    /// The claims of a cluster the agent has not been able to read: those it never read
    /// are not ready, for reason `unobserved`; those a pass saw keep what it found; claims
    /// no longer on the cluster are forgotten.
    pub fn record_unobserved<'a>(
        &self,
        cluster: &str,
        claims: impl IntoIterator<Item = &'a Claim>,
    ) {
        let claims: Vec<&Claim> = claims.into_iter().collect();
        self.with_latest(|l| {
            let known = &mut l.clusters.entry(cluster.to_string()).or_default().claims;
            let mut now = Vec::with_capacity(claims.len());
            for claim in claims {
                let key = claim.key().to_string();
                let facts = match known.iter().position(|(k, _)| *k == key) {
                    Some(i) => known.swap_remove(i).1,
                    None => ClaimFacts {
                        readiness: ClaimReadiness::unobserved(claim),
                        observed: None,
                    },
                };
                now.push((key, facts));
            }
            *known = now;
        });
    }

    /// A cluster the fleet has: its counters exist from now on, at 0 until something
    /// happens, so that `rate()` and `increase()` over them read 0 rather than nothing.
    pub fn know_cluster(&self, cluster: &str) {
        self.counts.edit(cluster, |_| {});
    }

    /// Deletes every series of a cluster that left the fleet.
    pub fn forget_cluster(&self, cluster: &str) {
        self.with_latest(|l| {
            l.clusters.remove(cluster);
        });
        self.counts.forget(cluster);
    }

    pub fn set_reachable(&self, cluster: &str, reachable: bool) {
        self.with_latest(|l| {
            let facts = l.clusters.entry(cluster.to_string()).or_default();
            facts.reachable = Some(reachable);
            facts.stale |= !reachable;
        });
    }

    pub fn count_error(&self, cluster: &str, reason: ErrorReason) {
        let i = ErrorReason::ALL.iter().position(|r| *r == reason);
        self.counts.edit(cluster, |c| {
            if let Some(n) = i.and_then(|i| c.errors.get_mut(i)) {
                *n += 1;
            }
        });
    }

    pub fn count_drift_correction(&self, cluster: &str) {
        self.counts.edit(cluster, |c| c.drift_corrections += 1);
    }

    /// A drift found (each once: when first reported, or when corrected), by who made it.
    pub fn count_drift_found(&self, cluster: &str, manager: ManagerKind) {
        let i = ManagerKind::ALL.iter().position(|m| *m == manager);
        self.counts.edit(cluster, |c| {
            if let Some(n) = i.and_then(|i| c.drift_found.get_mut(i)) {
                *n += 1;
            }
        });
    }

    pub fn count_prune(&self, cluster: &str) {
        self.counts.edit(cluster, |c| c.prunes += 1);
    }

    pub fn count_apply(&self, cluster: &str) {
        self.counts.edit(cluster, |c| c.applies += 1);
    }

    pub fn observe_duration(&self, cluster: &str, seconds: f64) {
        self.counts.edit(cluster, |c| {
            c.passes.get_or_insert_default().observe(seconds);
        });
    }

    /// The revision served, and when the source was last read.
    pub fn set_source(&self, revision: &str, valid: bool, synced_at: f64) {
        self.with_latest(|l| {
            l.source = Some(SourceFacts {
                revision: revision.to_string(),
                valid,
                synced_at,
                rejected: None,
            });
        });
    }

    /// Why the newest revision is not served (a bounded reason: `invalid`, `mass_prune`, or
    /// a signature's `unsigned`, `untrusted_key`, ...); cleared by the next
    /// [`Metrics::set_source`].
    pub fn set_source_rejected(&self, reason: &'static str) {
        self.with_latest(|l| {
            if let Some(source) = &mut l.source {
                source.rejected = Some(reason);
            }
        });
    }

    /// The state of each wave of the current rollout.
    pub fn set_rollout_waves(&self, waves: &[WaveFacts]) {
        self.with_latest(|l| {
            l.waves = waves.to_vec();
        });
    }

    /// A wave of the fleet: its rollback counter exists, at 0 until the first rollback,
    /// so that `increase()` reads 0 rather than nothing.
    pub fn know_wave(&self, wave: &str) {
        let _ = self.rollbacks.with_label_values(&[wave]);
    }

    pub fn count_rollback(&self, wave: &str) {
        self.rollbacks.with_label_values(&[wave]).inc();
    }

    /// The wave a cluster belongs to (`none` for the implicit last wave).
    pub fn set_cluster_wave(&self, cluster: &str, wave: &str) {
        self.with_latest(|l| {
            l.clusters.entry(cluster.to_string()).or_default().wave = Some(wave.to_string());
        });
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// The `reason` of `psql_fleet_release_not_ready_reason` while the cluster does not answer.
const UNREACHABLE: &str = "unreachable";

/// The series of what the agent knows now, built from [`Latest`] at every scrape.
struct LatestCollector {
    latest: Arc<Mutex<Latest>>,
    descs: Vec<Desc>,
}

/// The gauges of one scrape, built afresh each time.
struct Gauges {
    release_ready: IntGaugeVec,
    release_not_ready: IntGaugeVec,
    claim_ready: IntGaugeVec,
    usage_present: IntGaugeVec,
    drift_detected: IntGaugeVec,
    chart_version_info: IntGaugeVec,
    cluster_reachable: IntGaugeVec,
    source_info: IntGaugeVec,
    source_last_sync: Gauge,
    source_valid: IntGaugeVec,
    source_rejected: IntGaugeVec,
    rollout_wave: IntGaugeVec,
    cluster_wave_info: IntGaugeVec,
    rollout_wave_batch: IntGaugeVec,
    rollout_wave_batches: IntGaugeVec,
    rollout_wave_stragglers: IntGaugeVec,
}

impl Gauges {
    fn new() -> Result<Gauges, prometheus::Error> {
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            IntGaugeVec::new(Opts::new(name, help), labels)
        };
        let cc = &["cluster", "claim"];
        let ccc = &["cluster", "claim", "component"];
        Ok(Gauges {
            release_ready: gauge(
                "psql_fleet_release_ready",
                "1 when the claim's Release (component stackgres or atlas) reports Ready=True on the cluster, else 0 (0 too while the cluster does not answer)",
                ccc,
            )?,
            release_not_ready: gauge(
                "psql_fleet_release_not_ready_reason",
                "1 for each of the claim's Releases that is not ready, with why: missing, no_condition, ready_false, ready_unknown, unobserved (the cluster was never read), or unreachable (the cluster does not answer now, so its state is not known); no series for a ready Release",
                &["cluster", "claim", "component", "reason"],
            )?,
            claim_ready: gauge(
                "psql_fleet_claim_ready",
                "1 when both Releases of the claim are Ready on the cluster, else 0 (0 too while the cluster does not answer: its state is then not known)",
                cc,
            )?,
            usage_present: gauge(
                "psql_fleet_usage_present",
                "1 when the claim's Usage (Atlas deleted before StackGres) exists on the cluster, else 0",
                cc,
            )?,
            drift_detected: gauge(
                "psql_fleet_drift_detected",
                "1 while the claim's object (stackgres, atlas or usage) differs from what the fleet directory says, else 0",
                ccc,
            )?,
            chart_version_info: gauge(
                "psql_fleet_chart_version_info",
                "Always 1; the version label is the chart version the fleet pins for the claim's component on the cluster",
                &["cluster", "claim", "component", "version"],
            )?,
            cluster_reachable: gauge(
                "psql_fleet_cluster_reachable",
                "1 when the cluster's API server answered the agent's last request, else 0",
                &["cluster"],
            )?,
            source_info: gauge(
                "psql_fleet_source_info",
                "Always 1; the revision label is the fleet revision the agent serves (the last one that validated)",
                &["revision"],
            )?,
            source_last_sync: Gauge::new(
                "psql_fleet_source_last_sync_timestamp_seconds",
                "Unix time at which the agent last read the fleet source successfully",
            )?,
            source_valid: gauge(
                "psql_fleet_source_revision_valid",
                "1 when the newest revision of the fleet source validated, 0 when it did not (the last good one is still served)",
                &[],
            )?,
            source_rejected: gauge(
                "psql_fleet_source_revision_rejected",
                "1 with why the newest revision of the fleet source is not served: invalid, mass_prune, or under --verify-commits unsigned, not_annotated, untrusted_key, bad_signature, unreadable; no series while it is served",
                &["reason"],
            )?,
            rollout_wave: gauge(
                "psql_fleet_rollout_wave",
                "1 for the current state of each rollout wave",
                &["wave", "state"],
            )?,
            cluster_wave_info: gauge(
                "psql_fleet_cluster_wave_info",
                "The rollout wave a cluster belongs to",
                &["cluster", "wave"],
            )?,
            rollout_wave_batch: gauge(
                "psql_fleet_rollout_wave_batch",
                "The batch a rollout wave is in (the last one once it is through), from 1; 0 for a wave that gives all its changed clusters the revision at once",
                &["wave"],
            )?,
            rollout_wave_batches: gauge(
                "psql_fleet_rollout_wave_batches",
                "How many batches a rollout wave takes its changed clusters in (maxUnavailable); 0 for a wave taken in one go",
                &["wave"],
            )?,
            rollout_wave_stragglers: gauge(
                "psql_fleet_rollout_wave_stragglers",
                "Clusters a rollout wave completed without because they did not answer (maxUnreachable) and that have not caught up yet",
                &["wave"],
            )?,
        })
    }

    fn collectors(&self) -> [&dyn Collector; 16] {
        [
            &self.release_ready,
            &self.release_not_ready,
            &self.claim_ready,
            &self.usage_present,
            &self.drift_detected,
            &self.chart_version_info,
            &self.cluster_reachable,
            &self.source_info,
            &self.source_last_sync,
            &self.source_valid,
            &self.source_rejected,
            &self.rollout_wave,
            &self.cluster_wave_info,
            &self.rollout_wave_batch,
            &self.rollout_wave_batches,
            &self.rollout_wave_stragglers,
        ]
    }

    fn fill(&self, latest: &Latest) {
        for (cluster, facts) in &latest.clusters {
            if let Some(reachable) = facts.reachable {
                self.cluster_reachable
                    .with_label_values(&[cluster])
                    .set(i64::from(reachable));
            }
            if let Some(wave) = &facts.wave {
                self.cluster_wave_info
                    .with_label_values(&[cluster.as_str(), wave])
                    .set(1);
            }
            // What the last pass saw of a cluster that does not answer now, or has not been
            // read since it answers again, is not known.
            let known = !facts.stale && facts.reachable != Some(false);
            for (key, claim) in &facts.claims {
                self.fill_claim(cluster, key, claim, known);
            }
        }
        if let Some(source) = &latest.source {
            self.source_last_sync.set(source.synced_at);
            self.source_valid
                .with_label_values::<&str>(&[])
                .set(i64::from(source.valid));
            if let Some(reason) = source.rejected {
                self.source_rejected.with_label_values(&[reason]).set(1);
            }
            self.source_info
                .with_label_values(&[source.revision.as_str()])
                .set(1);
        }
        for wave in &latest.waves {
            let w = wave.name.as_str();
            for s in WaveState::ALL {
                self.rollout_wave
                    .with_label_values(&[w, s.as_str()])
                    .set(i64::from(s == wave.state));
            }
            let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
            self.rollout_wave_batch
                .with_label_values(&[w])
                .set(count(wave.batch));
            self.rollout_wave_batches
                .with_label_values(&[w])
                .set(count(wave.batches));
            self.rollout_wave_stragglers
                .with_label_values(&[w])
                .set(count(wave.stragglers));
        }
    }

    /// The series of one claim; under `known == false` (its cluster does not answer, or was
    /// not read since it answers again) none
    /// says ready, and each Release is not ready for reason `unreachable`.
    fn fill_claim(&self, cluster: &str, key: &str, claim: &ClaimFacts, known: bool) {
        let cc = [cluster, key];
        self.claim_ready
            .with_label_values(&cc)
            .set(i64::from(known && claim.readiness.is_ready()));
        for release in &claim.readiness.releases {
            let component = release.component.as_str();
            self.release_ready
                .with_label_values(&[cluster, key, component])
                .set(i64::from(known && release.readiness.is_ready()));
            let cause = if known {
                release.readiness.cause().map(|c| c.as_str())
            } else {
                Some(UNREACHABLE)
            };
            if let Some(cause) = cause {
                self.release_not_ready
                    .with_label_values(&[cluster, key, component, cause])
                    .set(1);
            }
        }
        let Some(observed) = &claim.observed else {
            return;
        };
        self.usage_present
            .with_label_values(&cc)
            .set(i64::from(observed.usage_present));
        for component in Component::ALL {
            self.drift_detected
                .with_label_values(&[cluster, key, component.as_str()])
                .set(i64::from(observed.drifted.contains(&component)));
        }
        for (component, version) in [
            ("stackgres", &observed.versions.stackgres),
            ("atlas", &observed.versions.atlas),
        ] {
            self.chart_version_info
                .with_label_values(&[cluster, key, component, version])
                .set(1);
        }
    }
}

impl LatestCollector {
    fn new(latest: Arc<Mutex<Latest>>) -> Result<LatestCollector, prometheus::Error> {
        let descs = Gauges::new()?
            .collectors()
            .iter()
            .flat_map(|c| c.desc().into_iter().cloned())
            .collect();
        Ok(LatestCollector { latest, descs })
    }
}

impl Collector for LatestCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        // The names and labels are fixed above and were accepted when the collector was
        // registered, so building them again cannot fail.
        let Ok(gauges) = Gauges::new() else {
            return Vec::new();
        };
        if let Ok(latest) = self.latest.lock() {
            gauges.fill(&latest);
        }
        gauges
            .collectors()
            .iter()
            .flat_map(|c| c.collect())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use fleet_core::api::release::{NotReadyCause, Readiness};
    use fleet_core::fleetdir::load;
    use fleet_core::reconcile::{ClaimPlan, ReleaseReadiness};
    use fleet_core::testing::{claim, cluster, FleetFiles};

    use super::*;

    /// Claims named `names` on cluster `c1`, each in the namespace of its name.
    fn claims(names: &[&str]) -> Vec<Claim> {
        let mut files = FleetFiles::new().with(&cluster("c1"));
        for name in names {
            files.add(&claim(name, "c1").namespace(name).install_namespace(name));
        }
        load(&files.tree()).fleet.unwrap().claims
    }

    fn readiness(causes: [Option<NotReadyCause>; 2]) -> ClaimReadiness {
        let release = |component, cause: Option<NotReadyCause>| ReleaseReadiness {
            component,
            release: "x/y".into(),
            readiness: match cause {
                None => Readiness::Ready,
                Some(cause) => Readiness::NotReady {
                    reason: cause.as_str().into(),
                    cause,
                },
            },
        };
        ClaimReadiness {
            releases: [
                release(Component::Stackgres, causes[0]),
                release(Component::Atlas, causes[1]),
            ],
        }
    }

    fn plan(names: &[&str], version: &str) -> ClusterPlan {
        ClusterPlan {
            claims: claims(names)
                .iter()
                .map(|claim| ClaimPlan {
                    key: claim.key(),
                    readiness: readiness([None, None]),
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
        m.count_apply("c1");
        let text = m.encode();
        assert!(
            text.contains(r#"psql_fleet_claim_ready{claim="b/b",cluster="c1"} 1"#),
            "{text}"
        );
        m.record_plan("c1", &plan(&["a"], "1.19.0"));
        let text = m.encode();
        assert!(!text.contains("b/b"));
        assert!(!text.contains("1.18.4"));
        assert!(text.contains("1.19.0"));
        m.forget_cluster("c1");
        let text = m.encode();
        assert!(!text.contains(r#"cluster="c1""#), "{text}");
    }

    #[test]
    fn a_claim_on_a_cluster_that_does_not_answer_is_not_ready_for_reason_unreachable() {
        let m = Metrics::new().unwrap();
        m.record_plan("c1", &plan(&["a"], "1.18.4"));
        m.set_reachable("c1", true);
        let text = m.encode();
        assert!(text.contains(r#"psql_fleet_claim_ready{claim="a/a",cluster="c1"} 1"#));
        assert!(not_ready_series(&text).is_empty(), "{text}");

        m.set_reachable("c1", false);
        let text = m.encode();
        assert!(
            text.contains(r#"psql_fleet_claim_ready{claim="a/a",cluster="c1"} 0"#),
            "{text}"
        );
        for component in ["atlas", "stackgres"] {
            assert!(text.contains(&format!(
                r#"psql_fleet_release_ready{{claim="a/a",cluster="c1",component="{component}"}} 0"#
            )));
        }
        assert_eq!(
            not_ready_series(&text),
            [
                r#"psql_fleet_release_not_ready_reason{claim="a/a",cluster="c1",component="atlas",reason="unreachable"} 1"#,
                r#"psql_fleet_release_not_ready_reason{claim="a/a",cluster="c1",component="stackgres",reason="unreachable"} 1"#,
            ],
            "{text}"
        );
        // A pass while it does not answer reads nothing new; answering again is not yet
        // being read again: unknown until the next pass.
        m.record_plan("c1", &plan(&["a"], "1.18.4"));
        m.set_reachable("c1", true);
        assert!(m
            .encode()
            .contains(r#"psql_fleet_release_not_ready_reason{claim="a/a",cluster="c1",component="atlas",reason="unreachable"} 1"#));
        m.record_plan("c1", &plan(&["a"], "1.18.4"));
        let text = m.encode();
        assert!(text.contains(r#"psql_fleet_claim_ready{claim="a/a",cluster="c1"} 1"#));
        assert!(not_ready_series(&text).is_empty(), "{text}");
    }

    #[test]
    fn the_counters_of_a_cluster_read_zero_from_the_start_and_go_with_it() {
        let m = Metrics::new().unwrap();
        m.know_cluster("c1");
        let text = m.encode();
        for name in [
            "psql_fleet_drift_corrections_total",
            "psql_fleet_prune_deletions_total",
            "psql_fleet_applies_total",
        ] {
            assert!(
                text.contains(&format!(r#"{name}{{cluster="c1"}} 0"#)),
                "{name}:\n{text}"
            );
        }
        for reason in ErrorReason::ALL {
            let series = format!(
                r#"psql_fleet_reconcile_errors_total{{cluster="c1",reason="{}"}} 0"#,
                reason.as_str()
            );
            assert!(text.contains(&series), "{series}:\n{text}");
        }
        for manager in ["kubectl", "helm", "other", "unknown"] {
            let series =
                format!(r#"psql_fleet_drift_found_total{{cluster="c1",manager="{manager}"}} 0"#);
            assert!(text.contains(&series), "{series}:\n{text}");
        }
        m.count_drift_found("c1", ManagerKind::Kubectl);
        assert!(m
            .encode()
            .contains(r#"psql_fleet_drift_found_total{cluster="c1",manager="kubectl"} 1"#));
        m.count_error("c1", ErrorReason::Conflict);
        assert!(m
            .encode()
            .contains(r#"psql_fleet_reconcile_errors_total{cluster="c1",reason="conflict"} 1"#));
        m.forget_cluster("c1");
        assert!(!m.encode().contains(r#"cluster="c1""#));
    }

    fn not_ready_series(text: &str) -> Vec<&str> {
        text.lines()
            .filter(|l| l.starts_with("psql_fleet_release_not_ready_reason{"))
            .collect()
    }

    #[test]
    fn a_release_has_one_not_ready_reason_series_until_it_is_ready_or_gone() {
        let m = Metrics::new().unwrap();
        m.record_unobserved("c1", &claims(&["a", "b"]));
        let text = m.encode();
        assert_eq!(not_ready_series(&text).len(), 4, "{text}");
        assert!(text.contains(r#"psql_fleet_release_not_ready_reason{claim="a/a",cluster="c1",component="atlas",reason="unobserved"} 1"#), "{text}");
        assert!(text.contains(r#"psql_fleet_claim_ready{claim="b/b",cluster="c1"} 0"#));

        // The first pass: a's StackGres Release has no condition yet, its Atlas one is
        // missing; b is gone from the fleet.
        let mut p = plan(&["a"], "1.18.4");
        p.claims[0].readiness = readiness([
            Some(NotReadyCause::NoCondition),
            Some(NotReadyCause::Missing),
        ]);
        m.record_plan("c1", &p);
        let text = m.encode();
        assert_eq!(
            not_ready_series(&text),
            [
                r#"psql_fleet_release_not_ready_reason{claim="a/a",cluster="c1",component="atlas",reason="missing"} 1"#,
                r#"psql_fleet_release_not_ready_reason{claim="a/a",cluster="c1",component="stackgres",reason="no_condition"} 1"#,
            ],
            "{text}"
        );
        assert!(!text.contains("b/b"), "{text}");

        p.claims[0].readiness = readiness([Some(NotReadyCause::ReadyFalse), None]);
        m.record_plan("c1", &p);
        let text = m.encode();
        assert_eq!(
            not_ready_series(&text),
            [
                r#"psql_fleet_release_not_ready_reason{claim="a/a",cluster="c1",component="stackgres",reason="ready_false"} 1"#
            ],
        );
        // What a pass found stands while the cluster cannot be read again.
        m.record_unobserved("c1", &claims(&["a"]));
        assert!(m.encode().contains(r#"reason="ready_false""#));
        // A claim gone from the fleet while the cluster is unreachable loses its series too.
        m.record_unobserved("c1", &[]);
        assert!(!m.encode().contains("a/a"));
        m.record_plan("c1", &p);
        m.forget_cluster("c1");
        assert!(not_ready_series(&m.encode()).is_empty());
    }

    #[test]
    fn every_metric_has_a_help_text_a_person_can_read() {
        let m = Metrics::new().unwrap();
        let mut p = plan(&["a"], "1.18.4");
        p.claims[0].readiness = readiness([Some(NotReadyCause::Missing), None]);
        m.record_plan("c1", &p);
        m.set_reachable("c1", true);
        m.count_error("c1", ErrorReason::Timeout);
        m.count_drift_correction("c1");
        m.count_prune("c1");
        m.count_apply("c1");
        m.observe_duration("c1", 0.2);
        m.set_source("abc", true, 1.0);
        let families = m.registry.gather();
        // Drifts found too: a cluster's counters all exist from its first count.
        assert_eq!(families.len(), 17);
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

    fn wave(name: &str, state: WaveState) -> WaveFacts {
        WaveFacts {
            name: name.into(),
            state,
            batch: 0,
            batches: 0,
            stragglers: 0,
        }
    }

    #[test]
    fn wave_series_follow_the_rollout_and_the_clusters() {
        let m = Metrics::new().unwrap();
        m.set_rollout_waves(&[
            wave("dev", WaveState::Complete),
            WaveFacts {
                batch: 2,
                batches: 4,
                stragglers: 1,
                ..wave("prod", WaveState::Halted)
            },
        ]);
        m.set_cluster_wave("c1", "dev");
        let text = m.encode();
        assert!(text.contains(r#"psql_fleet_rollout_wave{state="halted",wave="prod"} 1"#));
        assert!(text.contains(r#"psql_fleet_rollout_wave{state="pending",wave="prod"} 0"#));
        assert!(text.contains(r#"psql_fleet_cluster_wave_info{cluster="c1",wave="dev"} 1"#));
        assert!(text.contains(r#"psql_fleet_rollout_wave_batch{wave="prod"} 2"#));
        assert!(text.contains(r#"psql_fleet_rollout_wave_batches{wave="prod"} 4"#));
        assert!(text.contains(r#"psql_fleet_rollout_wave_stragglers{wave="prod"} 1"#));
        assert!(text.contains(r#"psql_fleet_rollout_wave_batches{wave="dev"} 0"#));
        m.set_rollout_waves(&[wave("dev", WaveState::Progressing)]);
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
        assert!(m
            .encode()
            .contains("psql_fleet_source_last_sync_timestamp_seconds 0"));
        m.set_source("aaa", true, 1.0);
        m.set_source("bbb", true, 2.0);
        let text = m.encode();
        assert!(text.contains(r#"psql_fleet_source_info{revision="bbb"} 1"#));
        assert!(!text.contains(r#"revision="aaa""#));
        assert!(text.contains("psql_fleet_source_last_sync_timestamp_seconds 2"));
    }
}
