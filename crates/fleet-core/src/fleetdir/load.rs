//! From a [`FileTree`] to a validated fleet, with the cross-file rules of SPEC 2.1.

use std::collections::{BTreeMap, HashMap};

use crate::model::claim::PSQL_KIND;
use crate::model::document::{split, RawDocument};
use crate::model::{Claim, Cluster, Diagnostic, FleetSettings, Origin};
use crate::render::{claim_object_refs, ObjectRef};

use super::tree::FileTree;

/// A fleet directory that passed every check.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadedFleet {
    pub settings: FleetSettings,
    /// By cluster name.
    pub clusters: BTreeMap<String, Cluster>,
    /// In file order, then document order.
    pub claims: Vec<Claim>,
}

impl LoadedFleet {
    pub fn claims_of<'a>(&'a self, cluster: &'a str) -> impl Iterator<Item = &'a Claim> + 'a {
        self.claims.iter().filter(move |c| c.cluster() == cluster)
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

    let has_layout =
        tree.files.keys().any(|p| FileTree::is_fleet_path(p)) || !tree.problems.is_empty();
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
        let documents = match split(path, bytes) {
            Ok(documents) => documents,
            Err(e) => {
                out.push(e);
                continue;
            }
        };
        let expected = expected_kind(path);
        if expected == "Fleet" && documents.len() > 1 {
            out.push(Diagnostic::file(
                path,
                "fleet.yaml holds one Fleet document, found several",
            ));
            continue;
        }
        for doc in &documents {
            if !check_kind(doc, expected, &mut out) {
                continue;
            }
            match expected {
                "Fleet" => settings = FleetSettings::parse(doc, &mut out).or(settings),
                "Cluster" => clusters.extend(Cluster::parse(doc, &mut out)),
                _ => claims.extend(Claim::parse(doc, &mut out)),
            }
        }
    }

    let clusters = index_clusters(clusters, &mut out);
    check_claim_targets(&claims, &clusters, &mut out);
    check_object_collisions(&claims, &mut out);

    out.sort();
    out.dedup();
    let fleet = (!out.iter().any(Diagnostic::is_error)).then(|| LoadedFleet {
        settings: settings.unwrap_or_default(),
        clusters,
        claims,
    });
    LoadOutcome {
        fleet,
        diagnostics: out,
    }
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

fn index_clusters(clusters: Vec<Cluster>, out: &mut Vec<Diagnostic>) -> BTreeMap<String, Cluster> {
    let mut by_name: BTreeMap<String, Cluster> = BTreeMap::new();
    for cluster in clusters {
        if let Some(first) = by_name.get(&cluster.name) {
            out.push(Diagnostic::field(
                &cluster.origin,
                "metadata.name",
                format!(
                    "duplicate cluster {:?}, already defined in {}",
                    cluster.name, first.origin
                ),
            ));
            continue;
        }
        by_name.insert(cluster.name.clone(), cluster);
    }
    by_name
}

fn check_claim_targets(
    claims: &[Claim],
    clusters: &BTreeMap<String, Cluster>,
    out: &mut Vec<Diagnostic>,
) {
    for claim in claims {
        if clusters.contains_key(claim.cluster()) {
            continue;
        }
        let known: Vec<&str> = clusters.keys().map(String::as_str).take(10).collect();
        let hint = if known.is_empty() {
            "clusters/ defines none".to_string()
        } else {
            let more = if clusters.len() > known.len() {
                ", ..."
            } else {
                ""
            };
            format!("known clusters: {}{more}", known.join(", "))
        };
        out.push(Diagnostic::field(
            &claim.origin,
            "spec.clusterName",
            format!(
                "no Cluster named {:?} in clusters/ ({hint})",
                claim.cluster()
            ),
        ));
    }
}

/// Two claims may not write the same object on one cluster: the second would silently take
/// the first one's object over.
fn check_object_collisions(claims: &[Claim], out: &mut Vec<Diagnostic>) {
    const FIELDS: [&str; 3] = [
        "spec.stackgresOperator.name",
        "spec.atlasOperator.name",
        "metadata.name",
    ];
    let mut seen: HashMap<(&str, ObjectRef), &Origin> = HashMap::new();
    for claim in claims {
        for (object, field) in claim_object_refs(claim).into_iter().zip(FIELDS) {
            let description = object.to_string();
            match seen.entry((claim.cluster(), object)) {
                std::collections::hash_map::Entry::Occupied(first) => out.push(Diagnostic::field(
                    &claim.origin,
                    field,
                    format!(
                        "renders {description} on cluster {:?}, which {} renders too",
                        claim.cluster(),
                        first.get()
                    ),
                )),
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(&claim.origin);
                }
            }
        }
    }
}
