//! From a [`FileTree`] to a validated fleet, with the cross-file rules of SPEC 2.1.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};

use crate::model::claim::PSQL_KIND;
use crate::model::cluster::normalise_kubeconfig_path;
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

    let clusters = index_clusters(clusters, &documents, &mut out);
    check_kubeconfig_reuse(&clusters, &documents, &mut out);
    check_claim_targets(&claims, &clusters, &mut out);
    check_object_collisions(&claims, &documents, &mut out);
    check_helm_release_collisions(&claims, &documents, &mut out);

    for d in &mut out {
        documents.place(d);
    }
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

fn index_clusters(
    clusters: Vec<Cluster>,
    documents: &Documents<'_>,
    out: &mut Vec<Diagnostic>,
) -> BTreeMap<String, Cluster> {
    let mut by_name: BTreeMap<String, Cluster> = BTreeMap::new();
    for cluster in clusters {
        if let Some(first) = by_name.get(&cluster.name) {
            out.push(Diagnostic::field(
                &cluster.origin,
                "metadata.name",
                format!(
                    "duplicate cluster {:?}, already defined in {}",
                    cluster.name,
                    documents.describe(&first.origin, "metadata.name")
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
fn check_object_collisions(claims: &[Claim], documents: &Documents<'_>, out: &mut Vec<Diagnostic>) {
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
                Entry::Occupied(first) => out.push(Diagnostic::field(
                    &claim.origin,
                    field,
                    format!(
                        "renders {description} on cluster {:?}, which {} renders too",
                        claim.cluster(),
                        documents.describe(first.get(), field)
                    ),
                )),
                Entry::Vacant(slot) => {
                    slot.insert(&claim.origin);
                }
            }
        }
    }
}

/// provider-helm names the Helm release after its `Release` object, so two claims whose
/// Releases share a name and a target namespace on one cluster install one Helm release,
/// each taking it over from the other, even when the Releases themselves live in
/// different namespaces. Releases of claims in one namespace are one object, which
/// [`check_object_collisions`] reports.
fn check_helm_release_collisions(
    claims: &[Claim],
    documents: &Documents<'_>,
    out: &mut Vec<Diagnostic>,
) {
    let mut seen: HashMap<(&str, &str, &str), (&Claim, &str)> = HashMap::new();
    for claim in claims {
        let spec = claim.spec();
        let releases = [
            (
                spec.stackgres_name(),
                spec.component_namespace(spec.stackgres_operator.as_ref()),
                "spec.stackgresOperator",
            ),
            (
                spec.atlas_name(),
                spec.component_namespace(spec.atlas_operator.as_ref()),
                "spec.atlasOperator",
            ),
        ];
        for (name, namespace, at) in releases {
            match seen.entry((claim.cluster(), name, namespace)) {
                Entry::Occupied(first) => {
                    let (other, other_at) = *first.get();
                    if other.namespace() == claim.namespace() {
                        continue;
                    }
                    out.push(Diagnostic::field(
                        &claim.origin,
                        format!("{at}.name"),
                        format!(
                            "installs Helm release {name:?} into namespace {namespace:?} on cluster {:?}, as claim {} in {} does; provider-helm names the Helm release after the Release, so each would take it over from the other (give one a different name or namespace)",
                            claim.cluster(),
                            other.key(),
                            documents.describe(&other.origin, &format!("{other_at}.name")),
                        ),
                    ));
                }
                Entry::Vacant(slot) => {
                    slot.insert((claim, at));
                }
            }
        }
    }
}

/// Two `Cluster` files that reach one API server (the same kubeconfig file and context)
/// would give it two workers, each applying and pruning as if it were alone.
fn check_kubeconfig_reuse(
    clusters: &BTreeMap<String, Cluster>,
    documents: &Documents<'_>,
    out: &mut Vec<Diagnostic>,
) {
    let mut seen: HashMap<(String, Option<&str>), &Cluster> = HashMap::new();
    let mut in_file_order: Vec<&Cluster> = clusters.values().collect();
    in_file_order.sort_by(|a, b| a.origin.cmp(&b.origin));
    for cluster in in_file_order {
        let key = (
            normalise_kubeconfig_path(&cluster.spec.kubeconfig),
            cluster.spec.context.as_deref(),
        );
        let context = match key.1 {
            Some(context) => format!("context {context:?}"),
            None => "its current context".to_string(),
        };
        match seen.entry(key) {
            Entry::Occupied(first) => out.push(Diagnostic::field(
                &cluster.origin,
                "spec.kubeconfig",
                format!(
                    "cluster {:?} reaches the same API server as cluster {:?} in {} (kubeconfig {:?}, {context}); the agent would run two workers against it",
                    cluster.name,
                    first.get().name,
                    documents.describe(&first.get().origin, "spec.kubeconfig"),
                    first.key().0,
                ),
            )),
            Entry::Vacant(slot) => {
                slot.insert(cluster);
            }
        }
    }
}

/// The documents of a fleet by origin, to give findings made after parsing the position
/// of the field they name.
#[derive(Default)]
struct Documents<'a> {
    by_origin: HashMap<Origin, RawDocument<'a>>,
}

impl<'a> Documents<'a> {
    fn add(&mut self, documents: Vec<RawDocument<'a>>) {
        self.by_origin
            .extend(documents.into_iter().map(|d| (d.origin.clone(), d)));
    }

    fn locate(&self, origin: &Origin, field: &str) -> Option<(usize, usize)> {
        self.by_origin.get(origin)?.locate(field)
    }

    /// `file:line:column: document N`, naming where another document sets `field`.
    fn describe(&self, origin: &Origin, field: &str) -> String {
        match self.locate(origin, field) {
            Some((line, column)) => format!(
                "{}:{line}:{column}: document {}",
                origin.file, origin.document
            ),
            None => origin.to_string(),
        }
    }

    /// Gives a field's finding the field's position, when the parser did not.
    fn place(&self, d: &mut Diagnostic) {
        if d.line.is_some() {
            return;
        }
        let (Some(document), Some(field)) = (d.document, d.field.as_deref()) else {
            return;
        };
        let origin = Origin {
            file: d.file.clone(),
            document,
        };
        if let Some((line, column)) = self.locate(&origin, field) {
            d.line = Some(line);
            d.column = Some(column);
        }
    }
}
