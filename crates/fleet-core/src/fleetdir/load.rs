//! From a [`FileTree`] to a validated fleet: every file split and parsed, then the
//! cross-file rules of SPEC 2.1 (`rules.rs`), then every finding placed at its field.

use std::collections::BTreeMap;

use crate::model::claim::PSQL_KIND;
use crate::model::document::{split, RawDocument};
use crate::model::inventory::{Inventory, INVENTORY_PATH};
use crate::model::{Claim, Cluster, Diagnostic, FleetSettings};

use super::documents::Documents;
use super::expand::expand_selector_claims;
use super::rules::{
    check_claim_targets, check_helm_release_collisions, check_kubeconfig_reuse,
    check_object_collisions, index_clusters,
};
use super::tree::FileTree;

/// A fleet directory that passed every check.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadedFleet {
    pub settings: FleetSettings,
    /// By cluster name.
    pub clusters: BTreeMap<String, Cluster>,
    /// In file order, then document order; a selector claim is in its place once for
    /// each cluster it selects, by cluster name.
    pub claims: Vec<Claim>,
    /// Positions in `claims` by cluster: with selector claims, a fleet of thousands of
    /// clusters holds hundreds of thousands of claims, too many to scan per cluster.
    by_cluster: BTreeMap<String, Vec<usize>>,
    /// How many claims the index was built over.
    indexed: usize,
}

impl LoadedFleet {
    pub fn new(
        settings: FleetSettings,
        clusters: BTreeMap<String, Cluster>,
        claims: Vec<Claim>,
    ) -> Self {
        let mut by_cluster: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, claim) in claims.iter().enumerate() {
            by_cluster
                .entry(claim.cluster().to_string())
                .or_default()
                .push(i);
        }
        Self {
            settings,
            clusters,
            indexed: claims.len(),
            claims,
            by_cluster,
        }
    }

    pub fn claims_of<'a>(&'a self, cluster: &'a str) -> Box<dyn Iterator<Item = &'a Claim> + 'a> {
        // `claims` is public: when it was changed after loading, scan it instead.
        if self.indexed != self.claims.len() {
            return Box::new(self.claims.iter().filter(move |c| c.cluster() == cluster));
        }
        let positions = self.by_cluster.get(cluster).map(Vec::as_slice);
        Box::new(
            positions
                .unwrap_or_default()
                .iter()
                .filter_map(|&i| self.claims.get(i))
                .filter(move |c| c.cluster() == cluster),
        )
    }
}

/// The result of loading: the fleet when nothing is in error, and every diagnostic
/// (warnings included) sorted by file, document and position.
#[derive(Clone, Debug, Default)]
pub struct LoadOutcome {
    pub fleet: Option<LoadedFleet>,
    pub diagnostics: Vec<Diagnostic>,
}

impl LoadOutcome {
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }
}

/// Loads a whole fleet. Never panics and never stops at the first problem.
pub fn load(tree: &FileTree) -> LoadOutcome {
    let mut out: Vec<Diagnostic> = tree.problems.clone();
    let mut settings: Option<FleetSettings> = None;
    let mut clusters: Vec<Cluster> = Vec::new();
    let mut claims: Vec<Claim> = Vec::new();
    // Every document read, to place the findings made after parsing.
    let mut documents = Documents::default();

    let has_layout = tree.files.keys().any(|p| FileTree::is_fleet_path(p))
        || tree.problems.iter().any(Diagnostic::is_error);
    if !has_layout {
        out.push(Diagnostic::file(
            ".",
            "no fleet.yaml, clusters/*.yaml or claims/**/*.yaml found; is this a fleet directory?",
        ));
    }
    if tree.files.contains_key("fleet.yaml") && tree.files.contains_key("fleet.yml") {
        out.push(Diagnostic::file(
            "fleet.yml",
            "both fleet.yaml and fleet.yml exist; keep one",
        ));
    }

    for (path, bytes) in &tree.files {
        if !FileTree::is_fleet_path(path) {
            continue;
        }
        let file_documents = match split(path, bytes) {
            Ok(documents) => documents,
            Err(e) => {
                out.push(e);
                continue;
            }
        };
        let expected = expected_kind(path);
        if let Some(problem) = empty_file(path, expected, &file_documents) {
            out.push(problem);
            continue;
        }
        if expected == "Fleet" && file_documents.len() > 1 {
            out.push(Diagnostic::file(
                path,
                "fleet.yaml holds one Fleet document, found several",
            ));
            continue;
        }
        for doc in &file_documents {
            if !check_kind(doc, expected, &mut out) {
                continue;
            }
            match expected {
                "Fleet" => settings = FleetSettings::parse(doc, &mut out).or(settings),
                "Cluster" => clusters.extend(Cluster::parse(doc, &mut out)),
                _ => claims.extend(Claim::parse(doc, &mut out)),
            }
        }
        documents.add(file_documents);
    }

    // After the files', so that a name both use is reported on the Cluster API object.
    if let Some(bytes) = tree.files.get(INVENTORY_PATH) {
        clusters.extend(Inventory::clusters(bytes, &mut out));
    }
    let clusters = index_clusters(clusters, &documents, &mut out);
    check_kubeconfig_reuse(&clusters, &documents, &mut out);
    check_claim_targets(&claims, &clusters, &mut out);
    let claims = expand_selector_claims(claims, &clusters, &mut out);
    check_object_collisions(&claims, &documents, &mut out);
    check_helm_release_collisions(&claims, &documents, &mut out);

    for d in &mut out {
        documents.place(d);
    }
    out.sort();
    out.dedup();
    let fleet = (!out.iter().any(Diagnostic::is_error))
        .then(|| LoadedFleet::new(settings.unwrap_or_default(), clusters, claims));
    LoadOutcome {
        fleet,
        diagnostics: out,
    }
}

/// A file with no document: `fleet.yaml` would otherwise silently rename the fleet to
/// the default (and so disown every object it owns); a cluster or claim file contributes
/// nothing, which its author should hear.
fn empty_file(path: &str, expected: &str, documents: &[RawDocument<'_>]) -> Option<Diagnostic> {
    if !documents.is_empty() {
        return None;
    }
    Some(match expected {
        "Fleet" => Diagnostic::file(
            path,
            "holds no document; remove it to use the defaults, or set metadata.name",
        ),
        kind => Diagnostic::file(
            path,
            format!("holds no document, so no {kind} is read from it; skipped"),
        )
        .warning(),
    })
}

fn expected_kind(path: &str) -> &'static str {
    if path.starts_with("clusters/") {
        "Cluster"
    } else if path.starts_with("claims/") {
        PSQL_KIND
    } else {
        "Fleet"
    }
}

fn check_kind(doc: &RawDocument<'_>, expected: &str, out: &mut Vec<Diagnostic>) -> bool {
    match doc.head.kind.as_deref() {
        Some(kind) if kind == expected => true,
        Some(kind) => {
            out.push(Diagnostic::field(
                &doc.origin,
                "kind",
                format!(
                    "expected {expected} in {}, got {kind:?}",
                    where_kind_lives(expected)
                ),
            ));
            false
        }
        None => {
            out.push(Diagnostic::field(
                &doc.origin,
                "kind",
                format!("required field is missing (expected {expected})"),
            ));
            false
        }
    }
}

fn where_kind_lives(kind: &str) -> &'static str {
    match kind {
        "Cluster" => "clusters/",
        "Fleet" => "fleet.yaml",
        _ => "claims/",
    }
}
