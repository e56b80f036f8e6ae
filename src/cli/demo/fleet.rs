//! `psql-fleet demo`: the pure parts. A copy of an example fleet (normally `fleet/`) laid
//! over the clusters of a simulator, and the one-line progress summary of a status report.
//!
//! Selector claims (`spec.clusterSelector`) are kept as they are: the simulated clusters
//! carry `env` and `region` labels, so each selector picks its share of them. A claim that
//! names an example cluster goes to every simulated cluster with that cluster's `env` and
//! `region` (when the example has no selector claims, to the most alike of all, so that
//! every simulated cluster gets something). So the demo shows the example's claims, pins,
//! overrides and rollout waves on a fleet of any size.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde_yaml::Value;

use crate::status::StatusReport;
use fleet_core::fleetdir::{self, FileTree};

/// A simulated cluster the generated fleet points at.
#[derive(Clone, Debug)]
pub struct SimCluster {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// The `clusters/<name>.yaml` document the simulator wrote.
    pub cluster_file: String,
}

/// The generated fleet: relative path to contents.
pub type Files = BTreeMap<String, String>;

/// Why the example fleet cannot be laid over the simulated clusters.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("the example fleet does not validate:\n{}", .0.join("\n"))]
    Invalid(Vec<String>),
    #[error("{path}: {source}")]
    Yaml {
        path: String,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("{path}: a claim with neither spec.clusterName nor spec.clusterSelector")]
    NoCluster { path: String },
    #[error("the example fleet has no claims")]
    NoClaims,
}

/// Builds the demo fleet from the example fleet's files. Bake times longer than
/// `max_bake` are shortened to it, so that every wave finishes while someone watches.
pub fn generate(
    example: &FileTree,
    sims: &[SimCluster],
    max_bake: Duration,
) -> Result<Files, GenerateError> {
    let outcome = fleetdir::load(example);
    let Some(fleet) = outcome.fleet else {
        let errors = outcome.errors().map(ToString::to_string).collect();
        return Err(GenerateError::Invalid(errors));
    };
    let mut files = Files::new();
    for (path, bytes) in &example.files {
        if path == "fleet.yaml" || path == "fleet.yml" {
            let text = String::from_utf8_lossy(bytes);
            let mut doc: Value = serde_yaml::from_str(&text).map_err(yaml_at(path))?;
            shorten_bake_times(&mut doc, max_bake);
            let text = serde_yaml::to_string(&doc).map_err(yaml_at("fleet.yaml"))?;
            files.insert("fleet.yaml".into(), text);
        }
    }
    // The example's claim documents: by selector, kept whole; by the cluster they name.
    let mut selected: Vec<Value> = Vec::new();
    let mut claims_of: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (path, bytes) in example
        .files
        .iter()
        .filter(|(p, _)| p.starts_with("claims/"))
    {
        let text = String::from_utf8_lossy(bytes);
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let doc = Value::deserialize(doc).map_err(yaml_at(path))?;
            if doc.is_null() {
                continue;
            }
            let spec = doc.get("spec");
            if spec.and_then(|s| s.get("clusterSelector")).is_some() {
                selected.push(doc);
                continue;
            }
            let target = spec
                .and_then(|s| s.get("clusterName"))
                .and_then(Value::as_str)
                .ok_or_else(|| GenerateError::NoCluster { path: path.clone() })?
                .to_string();
            claims_of.entry(target).or_default().push(doc);
        }
    }
    let templates: Vec<(&String, &BTreeMap<String, String>)> = fleet
        .clusters
        .iter()
        .filter(|(name, _)| claims_of.contains_key(*name))
        .map(|(name, c)| (name, &c.labels))
        .collect();
    if templates.is_empty() && selected.is_empty() {
        return Err(GenerateError::NoClaims);
    }
    if !selected.is_empty() {
        let path = "claims/selected.yaml";
        let docs = selected
            .iter()
            .map(|d| serde_yaml::to_string(d).map_err(yaml_at(path)))
            .collect::<Result<Vec<_>, _>>()?;
        files.insert(
            path.into(),
            format!(
                "# The example fleet's selector claims, as they are.\n{}",
                docs.join("---\n")
            ),
        );
    }
    let only_alike = !selected.is_empty();
    let mut next_of_kind: BTreeMap<Vec<String>, usize> = BTreeMap::new();
    for sim in sims {
        files.insert(
            format!("clusters/{}.yaml", sim.name),
            sim.cluster_file.clone(),
        );
        let Some(template) = pick_template(&templates, &sim.labels, only_alike, &mut next_of_kind)
        else {
            continue;
        };
        let mut out = Vec::new();
        for claim in &claims_of[template] {
            let mut claim = claim.clone();
            retarget(&mut claim, template, &sim.name);
            let path = format!("claims/{}.yaml", sim.name);
            out.push(serde_yaml::to_string(&claim).map_err(yaml_at(&path))?);
        }
        files.insert(
            format!("claims/{}.yaml", sim.name),
            format!(
                "# The claims of {template} in the example fleet.\n{}",
                out.join("---\n")
            ),
        );
    }
    Ok(files)
}

/// The example cluster whose labels match best, and under `only_alike` only one with the
/// same `env` and `region`; ties are taken in turn, so that a simulated prod fleet spreads
/// over every prod example.
fn pick_template<'a>(
    templates: &[(&'a String, &BTreeMap<String, String>)],
    labels: &BTreeMap<String, String>,
    only_alike: bool,
    next: &mut BTreeMap<Vec<String>, usize>,
) -> Option<&'a String> {
    let score = |l: &BTreeMap<String, String>| {
        let same = |k: &str| l.get(k).is_some() && l.get(k) == labels.get(k);
        u8::from(same("env")) * 2 + u8::from(same("region"))
    };
    let best = templates.iter().map(|(_, l)| score(l)).max()?;
    if only_alike && best < 3 {
        return None;
    }
    let candidates: Vec<&'a String> = templates
        .iter()
        .filter(|(_, l)| score(l) == best)
        .map(|(n, _)| *n)
        .collect();
    let key: Vec<String> = candidates.iter().map(|s| s.to_string()).collect();
    let turn = next.entry(key).or_default();
    let pick = candidates[*turn % candidates.len()];
    *turn += 1;
    Some(pick)
}

/// Points a claim at another cluster: its `clusterName`, and a provider config that was
/// named after the old cluster.
fn retarget(claim: &mut Value, from: &str, to: &str) {
    let Some(spec) = claim.get_mut("spec") else {
        return;
    };
    spec["clusterName"] = Value::from(to);
    if let Some(name) = spec
        .get_mut("helmProviderConfigRef")
        .and_then(|r| r.get_mut("name"))
    {
        if name.as_str() == Some(from) {
            *name = Value::from(to);
        }
    }
}

fn shorten_bake_times(doc: &mut Value, max: Duration) {
    let Some(waves) = doc
        .get_mut("spec")
        .and_then(|s| s.get_mut("rollout"))
        .and_then(|r| r.get_mut("waves"))
        .and_then(Value::as_sequence_mut)
    else {
        return;
    };
    for wave in waves {
        for field in ["bakeTime", "batchBakeTime"] {
            let Some(bake) = wave.get_mut(field) else {
                continue;
            };
            let too_long = bake
                .as_str()
                .and_then(|s| fleet_core::model::duration::parse(s).ok())
                .is_some_and(|d| d > max);
            if too_long {
                *bake = Value::from(format!("{}s", max.as_secs()));
            }
        }
    }
}

fn yaml_at(path: &str) -> impl FnOnce(serde_yaml::Error) -> GenerateError + '_ {
    move |source| GenerateError::Yaml {
        path: path.to_string(),
        source,
    }
}

/// How far the fleet is: what the demo prints, one line per change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub clusters: usize,
    pub ready_clusters: usize,
    pub unreachable: usize,
    pub claims: usize,
    pub ready_claims: usize,
    pub usages: usize,
    /// Per rollout wave, in wave order: name, ready clusters, clusters.
    pub waves: Vec<(String, usize, usize)>,
}

impl Progress {
    /// A cluster is ready when it was reached and reconciled at the revision the source
    /// serves (not waiting for its wave), and every claim on it is ready.
    /// `waves` lists the wave names in order and `wave_of` the wave of each cluster.
    pub fn of(
        report: &StatusReport,
        waves: &[String],
        wave_of: &BTreeMap<String, String>,
    ) -> Progress {
        let mut p = Progress {
            clusters: report.clusters.len(),
            waves: waves.iter().map(|w| (w.clone(), 0, 0)).collect(),
            ..Progress::default()
        };
        for (name, c) in &report.clusters {
            p.claims += c.claims.len();
            p.ready_claims += c.claims.iter().filter(|c| c.ready).count();
            p.usages += c.claims.iter().filter(|c| c.usage_present).count();
            let ready = c.reachable
                && c.reconciled
                && c.pending_revision.is_none()
                && c.applied_revision.is_some()
                && c.applied_revision == report.source.revision
                && c.claims.iter().all(|c| c.ready);
            // A cluster not tried yet is not unreachable: only one that failed to answer.
            if !c.reachable && c.unreachable_since.is_some() {
                p.unreachable += 1;
            } else if ready {
                p.ready_clusters += 1;
            }
            let wave = wave_of.get(name);
            if let Some(w) = p.waves.iter_mut().find(|w| Some(&w.0) == wave) {
                w.1 += usize::from(ready);
                w.2 += 1;
            }
        }
        p
    }

    pub fn all_ready(&self) -> bool {
        self.clusters > 0 && self.ready_clusters == self.clusters && self.usages == self.claims
    }
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} clusters ready, {}/{} claims ready, {}/{} Usages",
            self.ready_clusters,
            self.clusters,
            self.ready_claims,
            self.claims,
            self.usages,
            self.claims
        )?;
        if self.unreachable > 0 {
            write!(f, ", {} unreachable", self.unreachable)?;
        }
        let waves: Vec<String> = self
            .waves
            .iter()
            .filter(|w| w.2 > 0)
            .map(|(name, ready, all)| format!("{name} {ready}/{all}"))
            .collect();
        if !waves.is_empty() {
            write!(f, "  (waves: {})", waves.join(", "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{ClaimStatus, ClusterStatus};

    fn tree(dir: &str) -> FileTree {
        FileTree::from_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)).unwrap()
    }

    /// The repository's example fleet: selector claims and one named claim.
    fn example() -> FileTree {
        tree("fleet")
    }

    /// An example fleet of named claims only (the plan goldens' copy of an earlier
    /// `fleet/`).
    fn named_only() -> FileTree {
        tree("tests/golden/plan/fleet")
    }

    fn sims() -> [SimCluster; 5] {
        [
            sim("sim-000", "dev", "us"),
            sim("sim-001", "staging", "eu"),
            sim("sim-002", "prod", "us"),
            sim("sim-003", "prod", "eu"),
            sim("sim-004", "prod", "us"),
        ]
    }

    fn loaded(files: &Files) -> fleetdir::LoadedFleet {
        let mut tree = FileTree::default();
        for (path, text) in files {
            tree.insert(path.clone(), text.clone());
        }
        let outcome = fleetdir::load(&tree);
        let errors: Vec<String> = outcome.errors().map(ToString::to_string).collect();
        assert!(errors.is_empty(), "{errors:?}");
        outcome.fleet.unwrap()
    }

    fn claims_of(fleet: &fleetdir::LoadedFleet, cluster: &str) -> Vec<String> {
        let mut keys: Vec<String> = fleet
            .claims_of(cluster)
            .map(|c| c.key().to_string())
            .collect();
        keys.sort();
        keys
    }

    #[test]
    fn selector_claims_pick_their_simulated_clusters_and_a_named_claim_goes_to_the_alike() {
        let fleet = loaded(&generate(&example(), &sims(), Duration::from_secs(10)).unwrap());
        let claims = |c: &str| claims_of(&fleet, c);
        assert_eq!(claims("sim-000"), ["default/psql"]);
        assert_eq!(claims("sim-001"), ["default/psql"]);
        assert_eq!(claims("sim-002"), ["default/psql", "orders/orders"]);
        assert_eq!(claims("sim-003"), ["default/psql", "payments/payments"]);
        assert_eq!(claims("sim-004"), ["default/psql", "orders/orders"]);
        // The example's batches stay, their bake shortened like the waves'.
        let prod = fleet
            .settings
            .waves
            .iter()
            .find(|w| w.name == "prod")
            .unwrap();
        assert!(prod.max_unavailable.is_some());
        assert_eq!(prod.batch_bake_time, Duration::from_secs(10));
    }

    fn sim(name: &str, env: &str, region: &str) -> SimCluster {
        let labels: BTreeMap<String, String> = [("env", env), ("region", region)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        SimCluster {
            name: name.into(),
            cluster_file: kube_sim::kubeconfig::cluster_file(
                name,
                &labels.clone().into_iter().collect::<Vec<_>>(),
            ),
            labels,
        }
    }

    #[test]
    fn without_selector_claims_every_simulated_cluster_gets_those_of_the_example_like_it() {
        let fleet = loaded(&generate(&named_only(), &sims(), Duration::from_secs(10)).unwrap());
        let claims = |c: &str| claims_of(&fleet, c);
        assert_eq!(claims("sim-000"), ["default/psql"]);
        assert_eq!(claims("sim-001"), ["data/analytics"]);
        assert_eq!(claims("sim-002"), ["orders/orders", "reporting/reporting"]);
        assert_eq!(claims("sim-003"), ["payments/payments"]);
        assert_eq!(claims("sim-004"), ["orders/orders", "reporting/reporting"]);
        // The rollout stays, with bake times a person can wait for; the dev override
        // still pins the dev cluster.
        let waves = &fleet.settings.waves;
        assert_eq!(waves.len(), 3);
        assert!(waves.iter().all(|w| w.bake_time <= Duration::from_secs(10)));
        assert_eq!(
            fleet
                .settings
                .wave_of(&fleet.clusters["sim-002"].labels)
                .unwrap()
                .name,
            "prod"
        );
    }

    #[test]
    fn a_cluster_is_ready_when_reached_reconciled_and_every_claim_is_ready() {
        let claim = |ready| ClaimStatus {
            claim: "default/psql".into(),
            ready,
            usage_present: ready,
            ..ClaimStatus::default()
        };
        let mut report = StatusReport::default();
        report.source.revision = Some("r1".into());
        report.clusters.insert(
            "a".into(),
            ClusterStatus {
                reachable: true,
                reconciled: true,
                applied_revision: Some("r1".into()),
                claims: vec![claim(true), claim(true)],
                ..ClusterStatus::default()
            }
            .into(),
        );
        report.clusters.insert(
            "b".into(),
            ClusterStatus {
                reachable: true,
                reconciled: true,
                applied_revision: Some("r1".into()),
                claims: vec![claim(true), claim(false)],
                ..ClusterStatus::default()
            }
            .into(),
        );
        report.clusters.insert(
            "c".into(),
            ClusterStatus {
                unreachable_since: Some("2026-12-03T12:00:00Z".into()),
                ..ClusterStatus::default()
            }
            .into(),
        );
        // Not tried yet: neither ready nor unreachable.
        report
            .clusters
            .insert("d".into(), ClusterStatus::default().into());
        let waves = ["dev".to_string(), "prod".to_string(), "none".to_string()];
        let wave_of: BTreeMap<String, String> = [("a", "dev"), ("b", "prod"), ("c", "prod")]
            .into_iter()
            .map(|(c, w)| (c.to_string(), w.to_string()))
            .collect();
        let p = Progress::of(&report, &waves, &wave_of);
        assert_eq!(
            p.to_string(),
            "1/4 clusters ready, 3/4 claims ready, 3/4 Usages, 1 unreachable  (waves: dev 1/1, prod 0/2)"
        );
        assert!(!p.all_ready());
    }

    #[test]
    fn a_cluster_waiting_for_its_wave_or_not_yet_at_the_revision_is_not_ready() {
        let mut report = StatusReport::default();
        report.clusters.insert(
            "prod".into(),
            ClusterStatus {
                reachable: true,
                reconciled: true,
                pending_revision: Some("0123abcd".into()),
                ..ClusterStatus::default()
            }
            .into(),
        );
        // Given the revision, but not yet reconciled at it.
        report.source.revision = Some("r1".into());
        report.clusters.insert(
            "given".into(),
            ClusterStatus {
                reachable: true,
                reconciled: true,
                applied_revision: Some("r0".into()),
                ..ClusterStatus::default()
            }
            .into(),
        );
        let p = Progress::of(&report, &[], &BTreeMap::new());
        assert_eq!(p.ready_clusters, 0);
        assert!(!p.all_ready());
    }
}
