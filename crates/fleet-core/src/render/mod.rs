//! Claims to desired objects: a pure function of the claim, the cluster's render context
//! (fleet name and pinned chart versions) and observed readiness (SPEC 1.2 to 1.5).

pub mod object;
pub mod values;

use std::collections::BTreeMap;

use kube::core::ObjectMeta;

pub use object::{DesiredObject, ObjectKind, ObjectRef};

use crate::api::release::{ProviderConfigReference, ReleaseParameters};
use crate::api::usage::{NamespacedResource, NamespacedResourceRef, Resource, ResourceRef};
use crate::api::{
    release, ChartSpec, Release, ReleaseSpec, Usage, UsageSpec, LABEL_CLUSTER, LABEL_FLEET,
    LABEL_MANAGED, LABEL_PSQL,
};
use crate::model::fleet::ChartVersions;
use crate::model::{Chart, Claim, Cluster, FleetSettings};

/// `rollbackLimit` of every Release (SPEC 1.3).
pub const ROLLBACK_LIMIT: i32 = 3;

/// What a render needs to know about where the claim lands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderContext {
    /// Values of the inventory labels: the fleet, and the cluster entry.
    pub fleet: String,
    pub cluster: String,
    pub versions: ChartVersions,
}

impl RenderContext {
    pub fn for_cluster(fleet: &FleetSettings, cluster: &Cluster) -> Self {
        Self {
            fleet: fleet.name.clone(),
            cluster: cluster.name.clone(),
            versions: fleet.versions_for(&cluster.labels),
        }
    }
}

/// Observed readiness of a claim's two Releases on its cluster.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    pub stackgres_ready: bool,
    pub atlas_ready: bool,
}

impl Observed {
    pub const BOTH_READY: Observed = Observed {
        stackgres_ready: true,
        atlas_ready: true,
    };

    pub fn both_ready(self) -> bool {
        self.stackgres_ready && self.atlas_ready
    }
}

/// Everything one claim asks of its cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimObjects {
    pub stackgres: Release,
    pub atlas: Release,
    /// Present only once both Releases are Ready (SPEC 1.5).
    pub usage: Option<Usage>,
}

impl ClaimObjects {
    /// The objects in apply order: StackGres, Atlas, then the Usage.
    pub fn into_objects(self) -> Vec<DesiredObject> {
        let mut out = vec![
            DesiredObject::Release(Box::new(self.stackgres)),
            DesiredObject::Release(Box::new(self.atlas)),
        ];
        out.extend(self.usage.map(|u| DesiredObject::Usage(Box::new(u))));
        out
    }
}

/// Renders one claim.
pub fn render_claim(claim: &Claim, ctx: &RenderContext, observed: Observed) -> ClaimObjects {
    let stackgres = render_release(claim, ctx, Chart::Stackgres);
    let atlas = render_release(claim, ctx, Chart::Atlas);
    let usage = observed.both_ready().then(|| render_usage(claim, ctx));
    ClaimObjects {
        stackgres,
        atlas,
        usage,
    }
}

/// Where each object of a claim lives, whether or not its Usage is rendered yet; the loader
/// uses it to find two claims that would write the same object.
pub fn claim_object_refs(claim: &Claim) -> [ObjectRef; 3] {
    let spec = claim.spec();
    let at = |kind, name: &str| ObjectRef {
        kind,
        namespace: claim.namespace().to_string(),
        name: name.to_string(),
    };
    [
        at(ObjectKind::Release, spec.stackgres_name()),
        at(ObjectKind::Release, spec.atlas_name()),
        at(ObjectKind::Usage, &usage_name(claim.name())),
    ]
}

/// Renders every claim of one cluster, sorted by kind, then name, then namespace.
pub fn render_cluster<'a>(
    fleet: &FleetSettings,
    cluster: &Cluster,
    claims: impl IntoIterator<Item = &'a Claim>,
    observed: impl Fn(&Claim) -> Observed,
) -> Vec<DesiredObject> {
    let ctx = RenderContext::for_cluster(fleet, cluster);
    let mut objects: Vec<DesiredObject> = claims
        .into_iter()
        .filter(|c| c.cluster() == cluster.name)
        .flat_map(|c| render_claim(c, &ctx, observed(c)).into_objects())
        .collect();
    objects.sort_by_cached_key(DesiredObject::object_ref);
    objects
}

/// `<claim name>-delete-atlas-operator-before-stackgres-operator` (SPEC 1.5).
pub fn usage_name(claim_name: &str) -> String {
    format!("{claim_name}-delete-atlas-operator-before-stackgres-operator")
}

/// The reference labels over the claim's own, plus the inventory labels (SPEC 1.2).
fn object_labels(claim: &Claim, ctx: &RenderContext) -> BTreeMap<String, String> {
    let mut labels = claim.spec().labels.clone().unwrap_or_default();
    labels.insert(LABEL_MANAGED.to_string(), "true".to_string());
    labels.insert(LABEL_PSQL.to_string(), claim.name().to_string());
    labels.insert(LABEL_FLEET.to_string(), ctx.fleet.clone());
    labels.insert(LABEL_CLUSTER.to_string(), ctx.cluster.clone());
    labels
}

fn metadata(claim: &Claim, ctx: &RenderContext, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(claim.namespace().to_string()),
        labels: Some(object_labels(claim, ctx)),
        ..ObjectMeta::default()
    }
}

fn render_release(claim: &Claim, ctx: &RenderContext, chart: Chart) -> Release {
    let spec = claim.spec();
    let (component, name) = match chart {
        Chart::Stackgres => (spec.stackgres_operator.as_ref(), spec.stackgres_name()),
        Chart::Atlas => (spec.atlas_operator.as_ref(), spec.atlas_name()),
    };
    let values = values::component_values(
        &chart.default_values(),
        component.and_then(|c| c.values.as_ref()),
        component.and_then(|c| c.override_all_values.as_ref()),
    );
    Release {
        metadata: metadata(claim, ctx, name),
        spec: ReleaseSpec {
            for_provider: ReleaseParameters {
                chart: ChartSpec {
                    name: Some(chart.name().to_string()),
                    repository: Some(chart.repository().to_string()),
                    version: Some(ctx.versions.get(chart).to_string()),
                    ..ChartSpec::default()
                },
                namespace: Some(spec.component_namespace(component).to_string()),
                values: Some(values),
                ..ReleaseParameters::default()
            },
            management_policies: Some(spec.management_policies()),
            provider_config_ref: Some(ProviderConfigReference {
                kind: spec.provider_config_kind().to_string(),
                name: spec.provider_config_name().to_string(),
            }),
            rollback_limit: Some(ROLLBACK_LIMIT),
            ..ReleaseSpec::default()
        },
        status: None,
    }
}

fn render_usage(claim: &Claim, ctx: &RenderContext) -> Usage {
    let spec = claim.spec();
    Usage {
        metadata: metadata(claim, ctx, &usage_name(claim.name())),
        spec: UsageSpec {
            of: NamespacedResource {
                api_version: Some(release::API_VERSION.to_string()),
                kind: Some(release::KIND.to_string()),
                resource_ref: Some(NamespacedResourceRef {
                    name: spec.stackgres_name().to_string(),
                    namespace: None,
                }),
                resource_selector: None,
            },
            by: Some(Resource {
                api_version: Some(release::API_VERSION.to_string()),
                kind: Some(release::KIND.to_string()),
                resource_ref: Some(ResourceRef {
                    name: spec.atlas_name().to_string(),
                }),
                resource_selector: None,
            }),
            reason: None,
            replay_deletion: Some(true),
        },
        status: None,
    }
}

#[cfg(test)]
mod tests;
