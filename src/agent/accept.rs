//! Whether a new revision is served: it must validate as a whole, and it must not remove
//! more of the fleet's claims than the mass-prune guard allows. A refused revision changes
//! nothing: the last good one keeps being served, so bad input never deletes anything.

use std::collections::BTreeSet;

use crate::cluster::Accepted;
use crate::source::Revision;
use fleet_core::fleetdir::load;
use fleet_core::model::Diagnostic;
use fleet_core::reconcile::{check_mass_prune, fleet_claims, MassPrune};

/// Why a revision is not served.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum Rejected {
    #[error("revision {revision} does not validate ({} errors)", .diagnostics.iter().filter(|d| d.is_error()).count())]
    Invalid {
        revision: String,
        diagnostics: Vec<Diagnostic>,
    },
    /// `--verify-commits`: not signed by a trusted key.
    #[error("revision {revision} refused: {refused}")]
    Unverified {
        revision: String,
        refused: crate::source::verify::Refused,
    },
    #[error("revision {revision} refused by the mass-prune guard: {guard}")]
    MassPrune {
        revision: String,
        guard: MassPrune,
        /// The clusters that would have lost claims.
        clusters: Vec<String>,
    },
}

impl Rejected {
    pub fn reason(&self) -> &'static str {
        match self {
            Rejected::Invalid { .. } => "invalid",
            Rejected::MassPrune { .. } => "mass_prune",
            Rejected::Unverified { refused, .. } => refused.why.reason(),
        }
    }
}

/// Validates `revision` and checks it against the revision served now, if any.
pub fn accept(
    current: Option<&Accepted>,
    revision: &Revision,
    allow_mass_prune: bool,
) -> Result<Accepted, Rejected> {
    let outcome = load(&revision.tree);
    let id = revision.short_id().to_string();
    let Some(fleet) = outcome.fleet else {
        return Err(Rejected::Invalid {
            revision: id,
            diagnostics: outcome.diagnostics,
        });
    };
    if let Some(current) = current {
        let allowed = allow_mass_prune || fleet.settings.allow_mass_prune();
        let (before, after) = (fleet_claims(&current.fleet), fleet_claims(&fleet));
        check_mass_prune(
            &before,
            &after,
            fleet.settings.max_prune_fraction(),
            allowed,
        )
        .map_err(|guard| {
            let clusters: BTreeSet<String> =
                before.difference(&after).map(|(c, _)| c.clone()).collect();
            Rejected::MassPrune {
                revision: id,
                guard,
                clusters: clusters.into_iter().collect(),
            }
        })?;
    }
    Ok(Accepted {
        revision: revision.id.clone(),
        fleet,
        has_baseline: current.is_some(),
        former_names: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::content_hash;
    use fleet_core::testing::{claim, cluster, selector_claim, Document, Fleet, FleetFiles};

    /// Cluster `c1` with one claim of each name, and `extra` documents.
    fn revision(claims: &[&str], extra: &[&dyn Document]) -> Revision {
        let mut files = FleetFiles::new().with(&cluster("c1"));
        for c in claims {
            files.add(&claim(c, "c1").namespace(c).install_namespace(c));
        }
        for doc in extra {
            files.add(*doc);
        }
        revision_of(&files)
    }

    /// The files as a revision named by their content, unsigned.
    fn revision_of(files: &FleetFiles) -> Revision {
        let tree = files.tree();
        Revision {
            id: content_hash(&tree),
            tree,
            verified: None,
        }
    }

    #[test]
    fn the_first_valid_revision_is_served_without_a_baseline() {
        let a = accept(None, &revision(&["a", "b"], &[]), false).unwrap();
        assert!(!a.has_baseline);
        assert_eq!(a.fleet.claims.len(), 2);
    }

    #[test]
    fn an_invalid_revision_is_rejected_with_its_diagnostics() {
        let current = accept(None, &revision(&["a"], &[]), false).unwrap();
        let nowhere = claim("bad", "nowhere");
        let bad = revision(&["a"], &[&nowhere]);
        match accept(Some(&current), &bad, false) {
            Err(Rejected::Invalid { diagnostics, .. }) => {
                assert!(diagnostics
                    .iter()
                    .any(|d| d.file == nowhere.path()
                        && d.field.as_deref() == Some("spec.clusterName")));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn removing_most_claims_at_once_is_refused_unless_allowed() {
        let current = accept(None, &revision(&["a", "b", "c", "d"], &[]), false).unwrap();
        let wipe = revision(&["a"], &[]);
        match accept(Some(&current), &wipe, false) {
            Err(Rejected::MassPrune { clusters, .. }) => assert_eq!(clusters, vec!["c1"]),
            other => panic!("{other:?}"),
        }
        assert!(accept(Some(&current), &wipe, true).unwrap().has_baseline);
        let allow_in_fleet = revision(&["a"], &[&Fleet::unnamed().allow_mass_prune(true)]);
        assert!(accept(Some(&current), &allow_in_fleet, false).is_ok());
        assert!(accept(Some(&current), &revision(&["a", "b", "c"], &[]), false).is_ok());
    }

    /// Four prod clusters carrying one selector claim, `relabelled` of them moved to dev.
    fn selected(relabelled: usize) -> Revision {
        let mut files = FleetFiles::new().with(&selector_claim("db", &[("env", "prod")]));
        for i in 0..4 {
            let env = if i < relabelled { "dev" } else { "prod" };
            files.add(&cluster(&format!("p{i}")).label("env", env));
        }
        revision_of(&files)
    }

    #[test]
    fn relabelling_most_clusters_out_of_a_selector_at_once_is_refused_as_a_mass_prune() {
        let current = accept(None, &selected(0), false).unwrap();
        assert_eq!(current.fleet.claims.len(), 4);
        match accept(Some(&current), &selected(3), false) {
            Err(Rejected::MassPrune { clusters, .. }) => {
                assert_eq!(clusters, vec!["p0", "p1", "p2"])
            }
            other => panic!("{other:?}"),
        }
        let one = accept(Some(&current), &selected(1), false).unwrap();
        assert_eq!(one.fleet.claims_of("p0").count(), 0);
        assert_eq!(one.fleet.claims_of("p1").count(), 1);
    }

    /// One selector claim over four prod clusters found on Cluster API, `relabelled` of
    /// them moved to dev there.
    fn found(relabelled: usize) -> Revision {
        use fleet_core::model::inventory::{FoundCluster, Inventory};
        let files = FleetFiles::new().with(&selector_claim("db", &[("env", "prod")]));
        let inventory = Inventory {
            clusters: (0..4)
                .map(|i| FoundCluster {
                    namespace: "capi".into(),
                    name: format!("w{i}"),
                    labels: [(
                        "env".to_string(),
                        if i < relabelled { "dev" } else { "prod" }.to_string(),
                    )]
                    .into(),
                })
                .collect(),
        };
        revision_of(&files).with_inventory(&inventory)
    }

    #[test]
    fn relabelling_most_cluster_api_clusters_at_once_is_refused_as_a_mass_prune() {
        let current = accept(None, &found(0), false).unwrap();
        assert_eq!(current.fleet.claims.len(), 4);
        match accept(Some(&current), &found(3), false) {
            Err(Rejected::MassPrune { clusters, .. }) => assert_eq!(clusters, ["w0", "w1", "w2"]),
            other => panic!("{other:?}"),
        }
        let one = accept(Some(&current), &found(1), false).unwrap();
        assert_eq!(one.fleet.claims_of("w0").count(), 0);
        assert!(one.revision.starts_with(&content_hash(
            &revision_of(&FleetFiles::new().with(&selector_claim("db", &[("env", "prod")]))).tree
        )));
    }
}
