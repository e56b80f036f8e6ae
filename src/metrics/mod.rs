//! Every metric psql-fleet exports (SPEC 2.6), in one exposition owned here. Label values are
//! bounded: cluster and claim names come from the fleet directory, components and error
//! reasons from fixed sets.
//!
//! Two kinds of series. Counters and the duration histogram count things as they happen.
//! Everything else (readiness, drift, versions, reachability, waves, the source) is what
//! the agent knows now: the latest report of each cluster is kept here, and its series are
//! built from it at scrape time, so the series of a claim or cluster that left the fleet
//! are simply not built again.

mod counts;
mod text;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

use text::{flag, Exposition, Family};

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
    latest: Mutex<Latest>,
    /// The size of the last scrape's answer, so that the next one is written without
    /// growing its buffer (tens of MiB at ten thousand clusters).
    last_size: AtomicUsize,
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
        // The registry holds the few series not kept per cluster; those of the clusters
        // are written at scrape time from what is kept here (see `text`).
        let r = Registry::new();
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
            rollbacks: counter(
                &r,
                "psql_fleet_rollbacks_total",
                "Rollbacks of a rollout wave: its clusters given back the revision they ran before, after the wave failed under rollback: auto or on psql-fleet rollout undo",
                &["wave"],
            )?,
            registry: r,
            counts: counts::ClusterCounts::default(),
            leader,
            shards,
            shard_clusters,
            latest: Mutex::default(),
            last_size: AtomicUsize::new(0),
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
            // Looked up before it is made: a name copied on every pass, for a map that
            // has the cluster from its first pass on.
            let facts = match l.clusters.get_mut(cluster) {
                Some(facts) => facts,
                None => l.clusters.entry(cluster.to_string()).or_default(),
            };
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
        let mut out = Exposition::with_capacity(self.last_size.load(Ordering::Relaxed));
        let mut fixed = String::new();
        let _ = TextEncoder::new().encode_utf8(&self.registry.gather(), &mut fixed);
        out.push_str(&fixed);
        self.counts.write(&mut out);
        if let Ok(latest) = self.latest.lock() {
            latest.write(&mut out);
        }
        let out = out.into_string();
        self.last_size.store(out.len(), Ordering::Relaxed);
        out
    }
}

/// The `reason` of `psql_fleet_release_not_ready_reason` while the cluster does not answer.
const UNREACHABLE: &str = "unreachable";

const fn gauge(name: &'static str, help: &'static str) -> Family {
    Family {
        name,
        help,
        kind: "gauge",
    }
}

const RELEASE_READY: Family = gauge(
    "psql_fleet_release_ready",
    "1 when the claim's Release (component stackgres or atlas) reports Ready=True on the cluster, else 0 (0 too while the cluster does not answer)",
);
const RELEASE_NOT_READY: Family = gauge(
    "psql_fleet_release_not_ready_reason",
    "1 for each of the claim's Releases that is not ready, with why: missing, no_condition, ready_false, ready_unknown, unobserved (the cluster was never read), or unreachable (the cluster does not answer now, so its state is not known); no series for a ready Release",
);
const CLAIM_READY: Family = gauge(
    "psql_fleet_claim_ready",
    "1 when both Releases of the claim are Ready on the cluster, else 0 (0 too while the cluster does not answer: its state is then not known)",
);
const USAGE_PRESENT: Family = gauge(
    "psql_fleet_usage_present",
    "1 when the claim's Usage (Atlas deleted before StackGres) exists on the cluster, else 0",
);
const DRIFT_DETECTED: Family = gauge(
    "psql_fleet_drift_detected",
    "1 while the claim's object (stackgres, atlas or usage) differs from what the fleet directory says, else 0",
);
const CHART_VERSION_INFO: Family = gauge(
    "psql_fleet_chart_version_info",
    "Always 1; the version label is the chart version the fleet pins for the claim's component on the cluster",
);
const CLUSTER_REACHABLE: Family = gauge(
    "psql_fleet_cluster_reachable",
    "1 when the cluster's API server answered the agent's last request, else 0",
);
const SOURCE_INFO: Family = gauge(
    "psql_fleet_source_info",
    "Always 1; the revision label is the fleet revision the agent serves (the last one that validated)",
);
const SOURCE_LAST_SYNC: Family = gauge(
    "psql_fleet_source_last_sync_timestamp_seconds",
    "Unix time at which the agent last read the fleet source successfully",
);
const SOURCE_VALID: Family = gauge(
    "psql_fleet_source_revision_valid",
    "1 when the newest revision of the fleet source validated, 0 when it did not (the last good one is still served)",
);
const SOURCE_REJECTED: Family = gauge(
    "psql_fleet_source_revision_rejected",
    "1 with why the newest revision of the fleet source is not served: invalid, mass_prune, or under --verify-commits unsigned, not_annotated, untrusted_key, bad_signature, unreadable; no series while it is served",
);
const ROLLOUT_WAVE: Family = gauge(
    "psql_fleet_rollout_wave",
    "1 for the current state of each rollout wave",
);
const CLUSTER_WAVE_INFO: Family = gauge(
    "psql_fleet_cluster_wave_info",
    "The rollout wave a cluster belongs to",
);
const ROLLOUT_WAVE_BATCH: Family = gauge(
    "psql_fleet_rollout_wave_batch",
    "The batch a rollout wave is in (the last one once it is through), from 1; 0 for a wave that gives all its changed clusters the revision at once",
);
const ROLLOUT_WAVE_BATCHES: Family = gauge(
    "psql_fleet_rollout_wave_batches",
    "How many batches a rollout wave takes its changed clusters in (maxUnavailable); 0 for a wave taken in one go",
);
const ROLLOUT_WAVE_STRAGGLERS: Family = gauge(
    "psql_fleet_rollout_wave_stragglers",
    "Clusters a rollout wave completed without because they did not answer (maxUnreachable) and that have not caught up yet",
);

/// One claim as its series see it: `known` is false while its cluster does not answer, or
/// was not read since it answers again; then no series says ready, and each Release is not
/// ready for reason `unreachable`.
struct ClaimSeries<'a> {
    cluster: &'a str,
    key: &'a str,
    claim: &'a ClaimFacts,
    known: bool,
}

impl Latest {
    fn claims(&self) -> impl Iterator<Item = ClaimSeries<'_>> {
        self.clusters.iter().flat_map(|(cluster, facts)| {
            // What the last pass saw of a cluster that does not answer now, or has not
            // been read since it answers again, is not known.
            let known = !facts.stale && facts.reachable != Some(false);
            facts.claims.iter().map(move |(key, claim)| ClaimSeries {
                cluster,
                key,
                claim,
                known,
            })
        })
    }

    /// The series of what the agent knows now, family by family (labels in the order of
    /// their names).
    fn write(&self, out: &mut Exposition) {
        self.write_claims(out);
        let mut reachable = out.samples(CLUSTER_REACHABLE);
        for (cluster, facts) in &self.clusters {
            if let Some(r) = facts.reachable {
                reachable.sample("", &[("cluster", cluster)], flag(r));
            }
        }
        self.write_source(out);
        self.write_waves(out);
    }

    fn write_claims(&self, out: &mut Exposition) {
        let mut samples = out.samples(RELEASE_READY);
        for c in self.claims() {
            for release in &c.claim.readiness.releases {
                let labels = [
                    ("claim", c.key),
                    ("cluster", c.cluster),
                    ("component", release.component.as_str()),
                ];
                samples.sample("", &labels, flag(c.known && release.readiness.is_ready()));
            }
        }
        let mut samples = out.samples(RELEASE_NOT_READY);
        for c in self.claims() {
            for release in &c.claim.readiness.releases {
                let cause = if c.known {
                    release.readiness.cause().map(|c| c.as_str())
                } else {
                    Some(UNREACHABLE)
                };
                if let Some(cause) = cause {
                    let labels = [
                        ("claim", c.key),
                        ("cluster", c.cluster),
                        ("component", release.component.as_str()),
                        ("reason", cause),
                    ];
                    samples.sample("", &labels, 1.0);
                }
            }
        }
        let mut samples = out.samples(CLAIM_READY);
        for c in self.claims() {
            let labels = [("claim", c.key), ("cluster", c.cluster)];
            samples.sample("", &labels, flag(c.known && c.claim.readiness.is_ready()));
        }
        let observed = || {
            self.claims()
                .filter_map(|c| c.claim.observed.as_ref().map(|o| (c.key, c.cluster, o)))
        };
        let mut samples = out.samples(USAGE_PRESENT);
        for (key, cluster, o) in observed() {
            let labels = [("claim", key), ("cluster", cluster)];
            samples.sample("", &labels, flag(o.usage_present));
        }
        let mut samples = out.samples(DRIFT_DETECTED);
        for (key, cluster, o) in observed() {
            for component in Component::ALL {
                let labels = [
                    ("claim", key),
                    ("cluster", cluster),
                    ("component", component.as_str()),
                ];
                samples.sample("", &labels, flag(o.drifted.contains(&component)));
            }
        }
        let mut samples = out.samples(CHART_VERSION_INFO);
        for (key, cluster, o) in observed() {
            for (component, version) in [
                ("stackgres", &o.versions.stackgres),
                ("atlas", &o.versions.atlas),
            ] {
                let labels = [
                    ("claim", key),
                    ("cluster", cluster),
                    ("component", component),
                    ("version", version),
                ];
                samples.sample("", &labels, 1.0);
            }
        }
    }

    fn write_source(&self, out: &mut Exposition) {
        let source = self.source.as_ref();
        if let Some(source) = source {
            out.samples(SOURCE_INFO)
                .sample("", &[("revision", &source.revision)], 1.0);
        }
        // A plain gauge: there before the first read, at 0.
        out.samples(SOURCE_LAST_SYNC)
            .sample("", &[], source.map_or(0.0, |s| s.synced_at));
        let Some(source) = source else { return };
        out.samples(SOURCE_VALID)
            .sample("", &[], flag(source.valid));
        if let Some(reason) = source.rejected {
            out.samples(SOURCE_REJECTED)
                .sample("", &[("reason", reason)], 1.0);
        }
    }

    fn write_waves(&self, out: &mut Exposition) {
        let mut samples = out.samples(ROLLOUT_WAVE);
        for wave in &self.waves {
            for s in WaveState::ALL {
                let labels = [("state", s.as_str()), ("wave", wave.name.as_str())];
                samples.sample("", &labels, flag(s == wave.state));
            }
        }
        let mut samples = out.samples(CLUSTER_WAVE_INFO);
        for (cluster, facts) in &self.clusters {
            if let Some(wave) = &facts.wave {
                samples.sample("", &[("cluster", cluster), ("wave", wave)], 1.0);
            }
        }
        for (family, value) in [
            (
                ROLLOUT_WAVE_BATCH,
                (|w: &WaveFacts| w.batch) as fn(&WaveFacts) -> usize,
            ),
            (ROLLOUT_WAVE_BATCHES, |w| w.batches),
            (ROLLOUT_WAVE_STRAGGLERS, |w| w.stragglers),
        ] {
            let mut samples = out.samples(family);
            for wave in &self.waves {
                samples.sample("", &[("wave", wave.name.as_str())], value(wave) as f64);
            }
        }
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

    /// In the order of their labels (the format leaves a family's order free).
    fn not_ready_series(text: &str) -> Vec<&str> {
        let mut series: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("psql_fleet_release_not_ready_reason{"))
            .collect();
        series.sort_unstable();
        series
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
        let text = m.encode();
        let mut families = Vec::new();
        let mut current = "";
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap();
                assert!(name.starts_with("psql_fleet_"));
                assert!(help.split_whitespace().count() >= 8, "{name}: {help}");
                assert!(!families.contains(&name), "{name} twice");
                families.push(name);
                current = name;
            } else if !line.starts_with("# TYPE ") {
                // A family's samples follow its header, before the next family's.
                assert!(line.starts_with(current), "{line} after # HELP {current}");
            }
        }
        // Drifts found too: a cluster's counters all exist from its first count.
        assert_eq!(families.len(), 17, "{families:?}");
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
