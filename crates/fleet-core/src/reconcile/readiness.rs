//! Claim readiness on a cluster (SPEC 1.6): ready when both Releases report `Ready=True`;
//! otherwise not ready, with the reason of each Release that is not.

use serde::Serialize;

use crate::api::release::Readiness;
use crate::model::Claim;
use crate::render::{ObjectKind, ObjectRef, Observed};

use super::live::LiveState;

/// Readiness of a claim's two Releases as the cluster reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimReadiness {
    pub stackgres: Readiness,
    pub atlas: Readiness,
}

/// Ready or not, with the reason when not, as status and metrics show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReadinessReport {
    pub ready: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl ClaimReadiness {
    /// Reads both Releases of `claim` from the live state; a missing one is not ready.
    pub fn observe(claim: &Claim, live: &LiveState) -> ClaimReadiness {
        let spec = claim.spec();
        let of = |name: &str| {
            let at = ObjectRef {
                kind: ObjectKind::Release,
                name: name.to_string(),
                namespace: claim.namespace().to_string(),
            };
            match live.get(&at) {
                Some(object) => object.release_readiness(),
                None => Readiness::NotReady {
                    reason: "does not exist".to_string(),
                    cause: crate::api::release::NotReadyCause::Missing,
                },
            }
        };
        ClaimReadiness {
            stackgres: of(spec.stackgres_name()),
            atlas: of(spec.atlas_name()),
        }
    }

    pub fn observed(&self) -> Observed {
        Observed {
            stackgres_ready: self.stackgres.is_ready(),
            atlas_ready: self.atlas.is_ready(),
        }
    }

    pub fn is_ready(&self) -> bool {
        self.observed().both_ready()
    }

    /// The claim's verdict, naming each Release that is not ready and why.
    pub fn report(&self, claim: &Claim) -> ReadinessReport {
        let spec = claim.spec();
        let reasons: Vec<String> = [
            (spec.stackgres_name(), &self.stackgres),
            (spec.atlas_name(), &self.atlas),
        ]
        .into_iter()
        .filter_map(|(name, readiness)| match readiness {
            Readiness::Ready => None,
            Readiness::NotReady { reason, .. } => {
                Some(format!("Release {}/{name}: {reason}", claim.namespace()))
            }
        })
        .collect();
        ReadinessReport {
            ready: reasons.is_empty(),
            reason: (!reasons.is_empty()).then(|| reasons.join("; ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

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
        assert_eq!(
            r.report(&c),
            ReadinessReport {
                ready: true,
                reason: None
            }
        );
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
            let report = ClaimReadiness::observe(&c, &live).report(&c);
            assert!(!report.ready);
            assert_eq!(report.reason.as_deref(), Some(want));
        }
        let _ = json!(null);
    }
}
