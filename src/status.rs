//! What `/api/v1/status` serves and `psql-fleet status` prints: the source, and per cluster
//! and per claim whether it is ready (with the reason), drift, the applied revision and
//! the last error. Never a secret: errors are built from cluster names, paths and API
//! status codes only.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use fleet_core::rollout::{human, Halt, Rollout};

mod clusters;
mod summary;
pub use clusters::ClusterMap;
pub use summary::{ClaimCounts, ClusterCounts, Summary};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    /// Worked out when the report is read ([`StatusReport::is_ready`]), never stored.
    pub ready: bool,
    /// How many of the newest revision's clusters this replica serves: readiness waits
    /// for a report on each. Set when the revision or the shards held change.
    #[serde(skip)]
    pub served_clusters: usize,
    pub dry_run: bool,
    pub source: SourceStatus,
    /// Shared, so that a read of the report copies no cluster's status: a writer changes
    /// its own copy ([`Arc::make_mut`]) while a read still holds the old one.
    pub clusters: ClusterMap,
    /// The rollout of the newest revision through the waves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStatus>,
    /// Leader election, under `--leader-elect`: whether this replica leads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<LeaderStatus>,
    /// Where the rollout state is kept, under leader election.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<StateStatus>,
    /// `--cluster-api`: the clusters found on the management cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_api: Option<ClusterApiStatus>,
    /// Under `--shards N`: the shards this replica writes to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<ShardStatus>,
    /// Under `--shards N`: the clusters of the shards other replicas hold, as they
    /// published them; merged into `clusters` when the status is served
    /// ([`whole_fleet`](StatusReport::whole_fleet)).
    #[serde(skip)]
    pub served_elsewhere: BTreeMap<String, Arc<ClusterStatus>>,
}

/// The fleet's clusters from Cluster API (`run --cluster-api`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterApiStatus {
    /// Whether both watches (Clusters and kubeconfig Secrets) have listed once; until
    /// then no revision is served, so that no cluster looks removed.
    pub synced: bool,
    /// How many Clusters are in the fleet.
    pub clusters: usize,
    /// Clusters not in the fleet yet, and why (a control plane not initialised yet, no
    /// kubeconfig Secret yet): waited for, not errors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting: Vec<crate::cluster_api::found::Waiting>,
    /// Why a watch failed last (it is retried; the clusters found stay in the fleet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The shards of the fleet this replica holds (`run --leader-elect --shards N`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShardStatus {
    /// N: how many shards the fleet's clusters are split into.
    pub shards: u32,
    /// The shards whose Leases this replica holds; it writes to their clusters only.
    pub held: Vec<u32>,
    /// The replicas it saw live (their member Leases not expired), itself included.
    pub members: Vec<String>,
}

/// The rollout state on the management cluster.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateStatus {
    /// `ConfigMap <namespace>/<name>`.
    pub kept_in: String,
    /// Why it cannot be read back now (nothing is written to fleet clusters until it is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Where this replica stands in leader election (`run --leader-elect`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaderStatus {
    /// This replica's `holderIdentity`.
    pub identity: String,
    /// `namespace/name` of the Lease on the management cluster.
    pub lease: String,
    /// `leader` (it writes to fleet clusters), `standby` (another replica leads; nothing
    /// is written) or `lost` (it could not renew in time and stopped writing).
    pub role: String,
    /// The Lease's holder as last read.
    pub holder: Option<String>,
    /// When this replica took its role (RFC 3339).
    pub since: Option<String>,
    /// The holder's `acquireTime`.
    pub acquire_time: Option<String>,
    /// Why it lost the Lease, or why it cannot read or write it now.
    pub message: Option<String>,
}

/// Where the rollout of the newest revision stands (SPEC 2.3).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    pub revision: String,
    /// `progressing`, `complete` or `halted`.
    pub phase: String,
    /// The first wave that is not complete.
    pub current_wave: Option<String>,
    pub halted: Option<Halt>,
    pub waves: Vec<WaveStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaveStatus {
    pub name: String,
    /// As in `psql_fleet_rollout_wave{state}`.
    pub state: String,
    /// The wave's clusters whose desired objects this revision changes.
    pub clusters: Vec<String>,
    pub bake_time: String,
    pub timeout: String,
    pub started_at: Option<String>,
    pub ready_since: Option<String>,
    pub finished_at: Option<String>,
    /// Why it failed, or what it waits for.
    pub reason: Option<String>,
    /// The changed clusters in the batches the wave takes them in (none: one go).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub batches: Vec<Vec<String>>,
    /// The batch in progress, from 1, when the wave has batches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<usize>,
    /// Clusters the wave completed without (unreachable then), until they catch up.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stragglers: Vec<String>,
    /// The wave starts only once approved (`psql-fleet rollout approve <wave>`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub requires_approval: bool,
    /// Who approved it for this revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    /// Metric gates it must pass while it bakes, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<String>,
    /// While it waits for a rollout window: when one next lets it start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_window: Option<String>,
    /// Its clusters were given back the revision they ran before (until it starts again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back: Option<RolledBackStatus>,
}

/// A wave's rollback, as `/api/v1/status` reports it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolledBackStatus {
    /// The clusters given back a previous revision.
    pub clusters: Vec<String>,
    /// Clusters new in the revision rolled back, left as they are (given nothing).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left: Vec<String>,
    /// The revisions given back.
    pub to: Vec<String>,
    /// `auto` (the wave failed under `rollback: auto`), or the control token's name.
    pub by: String,
    pub at: Option<String>,
}

/// A wave's CLUSTERS cell: its changed clusters, the batch in progress, the stragglers.
fn wave_clusters(w: &WaveStatus) -> String {
    let mut cell = if w.clusters.is_empty() {
        "-".to_string()
    } else {
        w.clusters.join(",")
    };
    if let Some(b) = w.batch {
        cell.push_str(&format!(" (batch {b} of {})", w.batches.len()));
    }
    if !w.stragglers.is_empty() {
        cell.push_str(&format!(" (stragglers: {})", w.stragglers.join(",")));
    }
    cell
}

fn rfc3339(ms: Option<u64>) -> Option<String> {
    let ms = i64::try_from(ms?).ok()?;
    jiff::Timestamp::from_millisecond(ms)
        .ok()
        .map(|t| t.to_string())
}

impl RolloutStatus {
    pub fn of(r: &Rollout) -> RolloutStatus {
        let phase = if r.halted.is_some() {
            "halted"
        } else if r.complete() {
            "complete"
        } else {
            "progressing"
        };
        RolloutStatus {
            revision: r.revision.clone(),
            phase: phase.into(),
            current_wave: r.current().map(|w| w.name.clone()),
            halted: r.halted.clone(),
            waves: r
                .waves
                .iter()
                .map(|w| WaveStatus {
                    name: w.name.clone(),
                    state: w.state.as_str().into(),
                    clusters: w.clusters.keys().cloned().collect(),
                    bake_time: human(w.bake_ms),
                    timeout: human(w.timeout_ms),
                    started_at: rfc3339(w.started_ms),
                    ready_since: rfc3339(w.ready_since_ms),
                    finished_at: rfc3339(w.finished_ms),
                    reason: w.reason.clone(),
                    batches: w.batches.clone(),
                    batch: (!w.batches.is_empty()).then_some(w.batch + 1),
                    stragglers: w.stragglers.keys().cloned().collect(),
                    requires_approval: w.require_approval,
                    approved_by: w.approved.as_ref().map(|a| a.by.clone()),
                    gates: w.gates.iter().map(|g| g.name.clone()).collect(),
                    next_window: rfc3339(w.next_window_ms),
                    rolled_back: w.rolled_back.as_ref().map(|b| RolledBackStatus {
                        clusters: b.clusters.clone(),
                        left: b.left.clone(),
                        to: b.to.clone(),
                        by: b.by.clone(),
                        at: rfc3339(Some(b.at_ms)),
                    }),
                })
                .collect(),
        }
    }

    /// The rollout block of `psql-fleet status` and `psql-fleet rollout status`.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let _ = write!(
            out,
            "rollout of revision {}: {}",
            short(Some(&self.revision)),
            self.phase
        );
        match (&self.halted, &self.current_wave) {
            (Some(h), _) => {
                let _ = writeln!(out, " at wave {}: {}", h.wave, h.reason);
            }
            (None, Some(w)) => {
                let _ = writeln!(out, " (wave {w})");
            }
            (None, None) => out.push('\n'),
        }
        let header = ["WAVE", "STATE", "CLUSTERS", "BAKE", "REASON"].map(String::from);
        let rows: Vec<[String; 5]> = self
            .waves
            .iter()
            .map(|w| {
                [
                    w.name.clone(),
                    w.state.clone(),
                    wave_clusters(w),
                    w.bake_time.clone(),
                    w.reason.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        let mut widths = header.clone().map(|h| h.len());
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row).take(4) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for row in std::iter::once(&header).chain(&rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i < 4 {
                    let _ = write!(line, "{cell:<width$}  ", width = widths[i]);
                } else {
                    line.push_str(cell);
                }
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
        out
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceStatus {
    pub source: String,
    /// The revision being served (the last good one).
    pub revision: Option<String>,
    /// Under `--verify-commits`, who signed the revision served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<String>,
    pub last_sync: Option<String>,
    /// Why the newest revision is not served, when it is not.
    pub rejected: Option<String>,
    #[serde(default)]
    pub diagnostics: Vec<String>,
    pub last_error: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    pub reachable: bool,
    /// At least one pass completed since the agent started.
    pub reconciled: bool,
    pub applied_revision: Option<String>,
    pub suspended: Option<String>,
    pub drift_policy: String,
    pub last_error: Option<String>,
    pub prune_refused: Option<String>,
    /// The rollout wave the cluster belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave: Option<String>,
    /// A newer revision that changes the cluster's objects and waits for its wave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_revision: Option<String>,
    #[serde(default)]
    pub claims: Vec<ClaimStatus>,
    /// The cluster left the fleet: its objects are being pruned, after which it leaves the
    /// status too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub leaving: bool,
    /// The APIs the fleet writes that the cluster does not serve (`releases.helm…/v1beta1`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_apis: Vec<String>,
    /// Since when the cluster cannot be reached (RFC 3339); `None` while it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreachable_since: Option<String>,
    /// Under `--shards`: the replica that writes to the cluster and reported this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_by: Option<String>,
}

impl ClusterStatus {
    /// Keeps the report from claiming more than the agent knows: while the cluster cannot
    /// be reached, the state of its claims is unknown, whatever the last pass saw, and
    /// stays so until a pass reads the cluster again (which rebuilds the claims). `now`
    /// (RFC 3339) is when it was first found unreachable, if it was not already; a cluster
    /// not tried yet (no error, no claims) is not stamped.
    pub fn settle(&mut self, now: impl FnOnce() -> String) {
        if self.reachable {
            self.unreachable_since = None;
            return;
        }
        if self.last_error.is_none() && self.claims.is_empty() {
            return;
        }
        let since = self.unreachable_since.get_or_insert_with(now).clone();
        for claim in &mut self.claims {
            if claim.unknown_since.is_some() {
                continue;
            }
            let seen = if claim.ready { "ready" } else { "not ready" };
            claim.reason = Some(match claim.reason.take() {
                Some(why) => format!("cluster unreachable since {since}; last seen {seen}: {why}"),
                None => format!("cluster unreachable since {since}; last seen {seen}"),
            });
            claim.ready = false;
            claim.unknown_since = Some(since.clone());
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimStatus {
    pub claim: String,
    pub ready: bool,
    pub reason: Option<String>,
    pub usage_present: bool,
    pub suspended: bool,
    #[serde(default)]
    pub drift: Vec<String>,
    /// Set while the claim's cluster cannot be reached: since when its state is unknown
    /// (`ready` is then false, and `reason` says what the last pass saw).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unknown_since: Option<String>,
}

fn short(revision: Option<&str>) -> String {
    revision.map_or_else(|| "-".into(), crate::source::short_id)
}

impl StatusReport {
    /// Ready once a revision is served and every cluster this replica serves has either
    /// been reconciled once or been found unreachable. Worked out when asked (a probe, a
    /// status read), not on a clock: walking ten thousand clusters' statuses twice a
    /// second was about 5% of an idle agent's CPU.
    pub fn is_ready(&self) -> bool {
        self.source.revision.is_some()
            && self.clusters.len() >= self.served_clusters
            && self.clusters.waiting() == 0
    }

    /// The status of the whole fleet: under `--shards`, this replica's clusters (said to
    /// be served by it) and those other replicas published; else the report as it is.
    pub fn whole_fleet(mut self) -> StatusReport {
        if self.shards.is_none() {
            return self;
        }
        let me = self.leader.as_ref().map(|l| l.identity.clone());
        self.clusters.change_all(|_, c| {
            if c.served_by != me {
                Arc::make_mut(c).served_by.clone_from(&me);
            }
        });
        for (name, c) in std::mem::take(&mut self.served_elsewhere) {
            self.clusters.insert_if_absent(name, c);
        }
        self
    }

    /// A table a person reads at a glance: one line per claim, grouped by cluster.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let s = &self.source;
        let _ = writeln!(
            out,
            "source {}  revision {}  last sync {}{}",
            s.source,
            short(s.revision.as_deref()),
            s.last_sync.as_deref().unwrap_or("never"),
            if self.dry_run { "  (dry run)" } else { "" }
        );
        if let Some(verified) = &s.verified {
            let _ = writeln!(out, "revision served is {verified}");
        }
        if let Some(rejected) = &s.rejected {
            let _ = writeln!(out, "newest revision rejected: {rejected}");
            for d in s.diagnostics.iter().take(10) {
                let _ = writeln!(out, "  {d}");
            }
        }
        if let Some(e) = &s.last_error {
            let _ = writeln!(out, "source error: {e}");
        }
        if let Some(l) = &self.leader {
            let _ = writeln!(
                out,
                "leader election: {} is {}{} (lease {}){}",
                l.identity,
                l.role,
                match (&l.holder, l.role.as_str()) {
                    (Some(h), "standby") => format!(", {h} leads"),
                    _ => String::new(),
                },
                l.lease,
                l.message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            );
        }
        if let Some(found) = &self.cluster_api {
            let _ = writeln!(
                out,
                "Cluster API: {}{} clusters in the fleet, {} waited for{}",
                if found.synced { "" } else { "not listed yet, " },
                found.clusters,
                found.waiting.len(),
                found
                    .error
                    .as_deref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            );
            for w in found.waiting.iter().take(10) {
                let _ = writeln!(out, "  {}: {}", w.cluster, w.reason);
            }
        }
        if let Some(state) = &self.state {
            let _ = writeln!(
                out,
                "rollout state: {}{}",
                state.kept_in,
                state
                    .error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            );
        }
        let (clusters, claims) = self.clusters.counts();
        let unknown = claims.unknown;
        let _ = writeln!(
            out,
            "{} clusters, {}/{} claims ready{}{}\n",
            clusters.total,
            claims.ready,
            claims.total,
            if unknown > 0 {
                format!(" ({unknown} unknown: cluster unreachable)")
            } else {
                String::new()
            },
            if self.ready {
                ""
            } else {
                " (agent not ready yet)"
            }
        );
        if let Some(r) = &self.rollout {
            let _ = writeln!(out, "{}", r.to_table());
        }
        let rows: Vec<[String; 6]> = self
            .clusters
            .iter()
            .flat_map(|(name, c)| {
                let cluster_state = if c.leaving {
                    let reach = if c.reachable { "" } else { ", unreachable" };
                    format!("leaving the fleet: pruning{reach}")
                } else if !c.reachable {
                    match &c.unreachable_since {
                        Some(since) => format!("unreachable since {since}"),
                        None if c.last_error.is_none() => "not reached yet".to_string(),
                        None => "unreachable".to_string(),
                    }
                } else if !c.missing_apis.is_empty() {
                    format!("missing API {}", c.missing_apis.join(", "))
                } else if let Some(s) = &c.suspended {
                    format!("suspended ({s})")
                } else if c.pending_revision.is_some() {
                    format!("waits for wave {}", c.wave.as_deref().unwrap_or("-"))
                } else {
                    "ok".to_string()
                };
                let mut rows: Vec<[String; 6]> = c
                    .claims
                    .iter()
                    .map(|claim| {
                        let ready = if claim.unknown_since.is_some() {
                            "unknown".to_string()
                        } else if claim.suspended {
                            "suspended".to_string()
                        } else if claim.ready {
                            "yes".to_string()
                        } else {
                            "no".to_string()
                        };
                        let drift = if claim.drift.is_empty() {
                            "-".to_string()
                        } else {
                            claim.drift.join("; ")
                        };
                        [
                            name.clone(),
                            cluster_state.clone(),
                            claim.claim.clone(),
                            ready,
                            drift,
                            claim.reason.clone().unwrap_or_else(|| "-".into()),
                        ]
                    })
                    .collect();
                if rows.is_empty() {
                    rows.push([
                        name.clone(),
                        cluster_state,
                        "-".into(),
                        "-".into(),
                        "-".into(),
                        "no claims".into(),
                    ]);
                }
                if let Some(e) = c.last_error.as_ref().or(c.prune_refused.as_ref()) {
                    rows.push([
                        String::new(),
                        String::new(),
                        String::new(),
                        String::new(),
                        String::new(),
                        format!("error: {e}"),
                    ]);
                }
                rows
            })
            .collect();
        let header = ["CLUSTER", "STATE", "CLAIM", "READY", "DRIFT", "REASON"].map(String::from);
        let mut widths = header.clone().map(|h| h.len());
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row).take(5) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for row in std::iter::once(&header).chain(&rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i < 5 {
                    let _ = write!(line, "{cell:<width$}  ", width = widths[i]);
                } else {
                    line.push_str(cell);
                }
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_once_each_served_cluster_was_reconciled_or_found_unreachable() {
        let cluster = |reconciled: bool, reachable: bool, error: Option<&str>| ClusterStatus {
            reconciled,
            reachable,
            last_error: error.map(str::to_string),
            ..ClusterStatus::default()
        };
        let mut s = StatusReport {
            served_clusters: 2,
            ..StatusReport::default()
        };
        s.clusters
            .insert("a".into(), cluster(true, true, None).into());
        s.clusters.insert(
            "b".into(),
            cluster(false, false, Some("connection refused")).into(),
        );
        assert!(!s.is_ready(), "no revision read yet");
        s.source.revision = Some("0a1b2c".into());
        assert!(s.is_ready());
        s.clusters
            .insert("b".into(), cluster(false, true, None).into());
        assert!(!s.is_ready(), "b answers and waits for its first pass");
        s.clusters.remove("b");
        assert!(!s.is_ready(), "b is served and has no report yet");
        s.served_clusters = 1;
        assert!(s.is_ready(), "b is another replica's now");
    }

    #[test]
    fn a_sharded_replica_serves_the_whole_fleet_its_own_clusters_winning() {
        let mut report = StatusReport {
            leader: Some(LeaderStatus {
                identity: "agent-a".into(),
                ..LeaderStatus::default()
            }),
            ..StatusReport::default()
        };
        let fresh = ClusterStatus {
            reconciled: true,
            ..ClusterStatus::default()
        };
        report.clusters.insert("mine".into(), fresh.clone().into());
        let published = |by: &str| ClusterStatus {
            served_by: Some(by.into()),
            ..ClusterStatus::default()
        };
        report
            .served_elsewhere
            .insert("mine".into(), published("agent-b").into());
        report
            .served_elsewhere
            .insert("theirs".into(), published("agent-b").into());
        // Not sharded: the report as it is.
        assert_eq!(report.clone().whole_fleet().clusters.len(), 1);
        report.shards = Some(ShardStatus::default());
        let whole = report.whole_fleet();
        assert_eq!(whole.clusters.len(), 2);
        assert_eq!(whole.clusters["mine"].served_by.as_deref(), Some("agent-a"));
        assert!(whole.clusters["mine"].reconciled, "its own status wins");
        assert_eq!(
            whole.clusters["theirs"].served_by.as_deref(),
            Some("agent-b")
        );
        assert!(whole.served_elsewhere.is_empty());
    }

    #[test]
    fn the_table_says_whether_this_replica_leads_and_who_does() {
        let mut report = StatusReport {
            leader: Some(LeaderStatus {
                identity: "host-b_42".into(),
                lease: "default/psql-fleet".into(),
                role: "standby".into(),
                holder: Some("host-a_7".into()),
                ..LeaderStatus::default()
            }),
            ..StatusReport::default()
        };
        let table = report.to_table();
        assert!(
            table.contains(
                "leader election: host-b_42 is standby, host-a_7 leads (lease default/psql-fleet)\n"
            ),
            "{table}"
        );
        if let Some(l) = report.leader.as_mut() {
            l.role = "lost".into();
            l.message = Some("lost the lease: not renewed in time".into());
        }
        let table = report.to_table();
        assert!(
            table.contains("host-b_42 is lost (lease default/psql-fleet): lost the lease: not renewed in time\n"),
            "{table}"
        );
        assert!(!StatusReport::default()
            .to_table()
            .contains("leader election"));
    }

    #[test]
    fn the_table_says_what_cluster_api_found_and_waits_for_and_the_revision_s_two_halves() {
        let mut report = StatusReport {
            cluster_api: Some(ClusterApiStatus {
                synced: true,
                clusters: 3,
                waiting: vec![crate::cluster_api::found::Waiting {
                    cluster: "capi/prod-9".into(),
                    reason: "control plane not initialised yet (Provisioning)".into(),
                }],
                error: None,
            }),
            ..StatusReport::default()
        };
        report.source.revision = Some("0123456789abcdef0123-fedcba9876543210".into());
        let table = report.to_table();
        assert!(table.contains("revision 0123456789ab-fedcba98 "), "{table}");
        assert!(
            table.contains("Cluster API: 3 clusters in the fleet, 1 waited for\n  capi/prod-9: control plane not initialised yet (Provisioning)\n"),
            "{table}"
        );
        assert!(!StatusReport::default().to_table().contains("Cluster API"));
    }

    #[test]
    fn the_table_shows_every_claim_with_its_reason_and_the_clusters_state() {
        let mut report = StatusReport::default();
        report.source.source = "fleet/".into();
        report.source.revision = Some("0123456789abcdef".into());
        report.clusters.insert(
            "prod-1".into(),
            ClusterStatus {
                reachable: true,
                reconciled: true,
                claims: vec![
                    ClaimStatus {
                        claim: "default/a".into(),
                        ready: true,
                        ..Default::default()
                    },
                    ClaimStatus {
                        claim: "default/b".into(),
                        reason: Some("Release default/atlas-operator: does not exist".into()),
                        drift: vec!["stackgres: modified: spec.rollbackLimit".into()],
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }
            .into(),
        );
        report.clusters.insert(
            "down-1".into(),
            ClusterStatus {
                last_error: Some("cluster down-1: connection refused".into()),
                ..Default::default()
            }
            .into(),
        );
        report
            .clusters
            .insert("new-1".into(), ClusterStatus::default().into());
        report.clusters.insert(
            "gone-1".into(),
            ClusterStatus {
                reachable: true,
                leaving: true,
                ..Default::default()
            }
            .into(),
        );
        let table = report.to_table();
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("gone-1") && l.contains("leaving the fleet")),
            "{table}"
        );
        assert!(table.contains("revision 0123456789ab "), "{table}");
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("new-1") && l.contains("not reached yet")),
            "{table}"
        );
        assert!(table.contains("1/2 claims ready"), "{table}");
        assert!(
            table.lines().any(|l| l.starts_with("prod-1")
                && l.contains("default/b")
                && l.contains("no")
                && l.ends_with("does not exist")),
            "{table}"
        );
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("down-1") && l.contains("unreachable")),
            "{table}"
        );
        assert!(
            table.contains("error: cluster down-1: connection refused"),
            "{table}"
        );
        let json = serde_json::to_string(&report).unwrap();
        assert_eq!(serde_json::from_str::<StatusReport>(&json).unwrap(), report);
    }

    #[test]
    fn the_rollout_table_shows_the_batch_in_progress_and_the_stragglers() {
        let wave = |name: &str, clusters: &[&str]| WaveStatus {
            name: name.into(),
            state: "progressing".into(),
            clusters: clusters.iter().map(|c| c.to_string()).collect(),
            ..Default::default()
        };
        let r = RolloutStatus {
            revision: "0123456789abcdef".into(),
            phase: "progressing".into(),
            current_wave: Some("prod".into()),
            waves: vec![
                WaveStatus {
                    stragglers: vec!["dev-3".into()],
                    state: "complete".into(),
                    ..wave("dev", &["dev-1", "dev-3"])
                },
                WaveStatus {
                    batches: vec![vec!["p1".into(), "p2".into()], vec!["p3".into()]],
                    batch: Some(2),
                    ..wave("prod", &["p1", "p2", "p3"])
                },
            ],
            ..Default::default()
        };
        let table = r.to_table();
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("dev") && l.contains("(stragglers: dev-3)")),
            "{table}"
        );
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("prod") && l.contains("p1,p2,p3 (batch 2 of 2)")),
            "{table}"
        );
    }

    fn claim(name: &str, ready: bool, reason: Option<&str>) -> ClaimStatus {
        ClaimStatus {
            claim: name.into(),
            ready,
            reason: reason.map(Into::into),
            usage_present: ready,
            ..Default::default()
        }
    }

    #[test]
    fn the_claims_of_an_unreachable_cluster_are_unknown_since_it_went_away_not_ready() {
        let mut c = ClusterStatus {
            reachable: true,
            reconciled: true,
            claims: vec![
                claim("default/a", true, None),
                claim(
                    "default/b",
                    false,
                    Some("Release default/atlas-operator: not ready"),
                ),
            ],
            ..Default::default()
        };
        let before = c.clone();
        c.settle(|| unreachable!("a reachable cluster needs no time"));
        assert_eq!(c, before, "a reachable cluster's report stands");
        let mut untried = ClusterStatus::default();
        untried.settle(|| unreachable!("a cluster not tried yet is not stamped"));
        assert_eq!(untried, ClusterStatus::default());

        c.reachable = false;
        c.settle(|| "2026-12-03T12:00:00Z".into());
        assert_eq!(c.unreachable_since.as_deref(), Some("2026-12-03T12:00:00Z"));
        assert!(c.claims.iter().all(|c| !c.ready), "{c:?}");
        assert!(c
            .claims
            .iter()
            .all(|c| c.unknown_since.as_deref() == Some("2026-12-03T12:00:00Z")));
        assert_eq!(
            c.claims[0].reason.as_deref(),
            Some("cluster unreachable since 2026-12-03T12:00:00Z; last seen ready")
        );
        assert_eq!(
            c.claims[1].reason.as_deref(),
            Some("cluster unreachable since 2026-12-03T12:00:00Z; last seen not ready: Release default/atlas-operator: not ready")
        );
        // Settled again later (another status update while down): nothing moves.
        let once = c.clone();
        c.settle(|| "2026-12-03T12:05:00Z".into());
        assert_eq!(c, once);

        let mut report = StatusReport::default();
        report.clusters.insert("down-1".into(), c.clone().into());
        let table = report.to_table();
        assert!(
            table.contains("0/2 claims ready (2 unknown: cluster unreachable)"),
            "{table}"
        );
        assert!(
            table.lines().any(|l| l.starts_with("down-1")
                && l.contains("unreachable since 2026-12-03T12:00:00Z")
                && l.contains("default/a")
                && l.contains("unknown")),
            "{table}"
        );

        // Back: the time goes; the claims stay unknown until a pass reads them again.
        c.reachable = true;
        c.settle(|| unreachable!());
        assert_eq!(c.unreachable_since, None);
        assert!(c.claims.iter().all(|c| c.unknown_since.is_some()));
    }
}
