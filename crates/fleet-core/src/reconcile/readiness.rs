//! Claim readiness on a cluster (SPEC 1.6): ready when both Releases report `Ready=True`
//! for their current spec; otherwise not ready, with the reason of each Release that is
//! not. This one value, read from the live view (where each Release's readiness was taken
//! from its status once, when the watch brought it), is what the Usage gate, the status
//! report, the metrics and the rollout gate all read.

use crate::api::release::{NotReadyCause, Readiness};
use crate::model::Claim;
use crate::render::{ObjectKind, ObjectRef, Observed};

use super::live::LiveState;
use super::Component;

/// One Release of a claim, and its readiness.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleaseReadiness {
    pub component: Component,
    /// `<namespace>/<name>`, as the reason names it.
    pub release: String,
    pub readiness: Readiness,
}

/// A claim's readiness on its cluster: its StackGres Release's, then its Atlas Release's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimReadiness {
    pub releases: [ReleaseReadiness; 2],
}

impl ClaimReadiness {
    /// Reads both Releases of `claim` from the live state; a missing one is not ready.
    pub fn observe(claim: &Claim, live: &LiveState) -> ClaimReadiness {
        Self::each(claim, |at| {
            match live.get(at).and_then(|o| o.release_readiness()) {
                Some(readiness) => readiness.clone(),
                None => Readiness::NotReady {
                    reason: "does not exist".to_string(),
                    cause: NotReadyCause::Missing,
                },
            }
        })
    }

    /// A claim on a cluster the agent has not been able to read since it started.
    pub fn unobserved(claim: &Claim) -> ClaimReadiness {
        Self::each(claim, |_| Readiness::NotReady {
            reason: "the cluster has not been read yet".to_string(),
            cause: NotReadyCause::Unobserved,
        })
    }

    fn each(
        claim: &Claim,
        mut readiness_of: impl FnMut(&ObjectRef) -> Readiness,
    ) -> ClaimReadiness {
        let spec = claim.spec();
        let mut release = |component: Component, name: &str| {
            let at = ObjectRef {
                kind: ObjectKind::Release,
                name: name.to_string(),
                namespace: claim.namespace().to_string(),
            };
            ReleaseReadiness {
                component,
                readiness: readiness_of(&at),
                release: format!("{}/{}", at.namespace, at.name),
            }
        };
        ClaimReadiness {
            releases: [
                release(Component::Stackgres, spec.stackgres_name()),
                release(Component::Atlas, spec.atlas_name()),
            ],
        }
    }

    /// What render's Usage gate needs to know.
    pub fn observed(&self) -> Observed {
        let [stackgres, atlas] = &self.releases;
        Observed {
            stackgres_ready: stackgres.readiness.is_ready(),
            atlas_ready: atlas.readiness.is_ready(),
        }
    }

    pub fn is_ready(&self) -> bool {
        self.releases.iter().all(|r| r.readiness.is_ready())
    }

    /// Why the claim is not ready, naming each Release that is not; `None` when it is.
    pub fn reason(&self) -> Option<String> {
        let reasons: Vec<String> = self
            .releases
            .iter()
            .filter_map(|r| match &r.readiness {
                Readiness::Ready => None,
                Readiness::NotReady { reason, .. } => {
                    Some(format!("Release {}: {reason}", r.release))
                }
            })
            .collect();
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::live::fixtures::{served, state};
    use crate::reconcile::tests::{claim, desired_json};

    #[test]
    fn a_claim_with_both_releases_ready_is_ready_without_a_reason() {
        let c = claim("analytics", "prod-1");
        let live = state([
            served(desired_json(&c, "stackgres-operator"), Some(true)),
            served(desired_json(&c, "atlas-operator"), Some(true)),
        ]);
        let r = ClaimReadiness::observe(&c, &live);
        assert!(r.is_ready());
        assert!(r.observed().both_ready());
        assert_eq!(r.reason(), None);
    }

    #[test]
    fn each_release_that_is_not_ready_is_named_with_its_reason() {
        let c = claim("analytics", "prod-1");
        let cases = [
            (
                state([]),
                "Release default/stackgres-operator: does not exist; Release default/atlas-operator: does not exist",
            ),
            (
                state([
                    served(desired_json(&c, "stackgres-operator"), Some(true)),
                    served(desired_json(&c, "atlas-operator"), Some(false)),
                ]),
                "Release default/atlas-operator: Ready=False (Creating)",
            ),
            (
                state([
                    served(desired_json(&c, "stackgres-operator"), None),
                    served(desired_json(&c, "atlas-operator"), Some(true)),
                ]),
                "Release default/stackgres-operator: no Ready condition reported yet",
            ),
        ];
        for (live, want) in cases {
            let r = ClaimReadiness::observe(&c, &live);
            assert!(!r.is_ready());
            assert_eq!(r.reason().as_deref(), Some(want));
        }
    }

    #[test]
    fn a_claim_on_a_cluster_never_read_is_unobserved_for_both_releases() {
        let r = ClaimReadiness::unobserved(&claim("analytics", "prod-1"));
        assert!(!r.is_ready());
        for release in &r.releases {
            assert_eq!(release.readiness.cause(), Some(NotReadyCause::Unobserved));
        }
    }
}
