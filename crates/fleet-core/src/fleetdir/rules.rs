//! The rules across files (SPEC 2.1): what no single document shows wrong, but two of
//! them together, or a claim and the clusters, do.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};

use crate::model::cluster::normalise_kubeconfig_path;
use crate::model::{Claim, Cluster, Diagnostic, Origin};
use crate::render::{claim_object_refs, ObjectRef};

use super::documents::Documents;

/// Clusters by name; a second `Cluster` of one name is an error naming the first.
pub(super) fn index_clusters(
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

/// Every claim goes to a cluster that has a `Cluster` file.
pub(super) fn check_claim_targets(
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
pub(super) fn check_object_collisions(
    claims: &[Claim],
    documents: &Documents<'_>,
    out: &mut Vec<Diagnostic>,
) {
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
pub(super) fn check_helm_release_collisions(
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
pub(super) fn check_kubeconfig_reuse(
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

#[cfg(test)]
mod tests {
    use crate::fleetdir::load;
    use crate::model::Diagnostic;
    use crate::testing::{claim, cluster, component, FleetFiles};

    fn errors(files: &FleetFiles) -> Vec<Diagnostic> {
        load(&files.tree()).errors().cloned().collect()
    }

    #[test]
    fn claims_in_two_namespaces_installing_one_helm_release_are_an_error_naming_both() {
        let files = FleetFiles::new()
            .with(&cluster("c1"))
            .with(&claim("a", "c1").namespace("team-a"))
            .with(&claim("b", "c1").namespace("team-b").install_namespace("b"))
            .with(
                &claim("c", "c1")
                    .namespace("team-c")
                    .stackgres(component().name("sg")),
            );
        let found = errors(&files);
        // Only the Atlas Release of c clashes: b installs elsewhere, c's StackGres is "sg".
        assert_eq!(found.len(), 1, "{found:?}");
        let d = &found[0];
        assert_eq!(d.file, "claims/c1/c.yaml");
        assert_eq!(d.field.as_deref(), Some("spec.atlasOperator.name"));
        assert!(d.line.is_some());
        assert!(
            d.message.starts_with("installs Helm release \"atlas-operator\" into namespace \"stackgres\" on cluster \"c1\", as claim team-a/a in claims/c1/a.yaml:"),
            "{d}"
        );
    }

    #[test]
    fn two_clusters_on_one_kubeconfig_and_context_are_an_error_naming_both() {
        let files = FleetFiles::new()
            .with(&cluster("a").kubeconfig("eu/k.yaml"))
            .with(&cluster("b").kubeconfig("./eu/x/../k.yaml"))
            .with(&cluster("c").kubeconfig("eu/k.yaml").context("other"))
            .with(&cluster("d").kubeconfig("eu/k.yaml").context("other"));
        let found = errors(&files);
        let named: Vec<_> = found.iter().map(|d| d.file.as_str()).collect();
        assert_eq!(named, vec!["clusters/b.yaml", "clusters/d.yaml"]);
        assert!(found[0]
            .message
            .contains("as cluster \"a\" in clusters/a.yaml:"));
        assert!(found[0].message.contains("its current context"));
        assert!(found[1].message.contains("context \"other\""));
    }
}
