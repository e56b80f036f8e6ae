//! The Kubernetes types psql-fleet reads (the `Psql` claim) and writes (provider-helm
//! `Release`, Crossplane `Usage`), as `#[derive(CustomResource)]` structs so that one set of
//! Rust types both renders objects and generates the CRDs the simulator serves.

pub mod cluster_api;
pub mod condition;
pub mod provider_config;
pub mod psql;
pub mod release;
pub mod schema;
pub mod usage;

pub use condition::Condition;
pub use provider_config::{ClusterProviderConfig, ProviderConfig};
pub use psql::{
    ClusterCustomization, ComponentSpec, ProviderConfigKind, ProviderConfigRef, Psql, PsqlSpec,
    PsqlStatus, ValuesCustomization,
};
pub use release::{ChartSpec, Release, ReleaseParameters, ReleaseSpec, ReleaseStatus};
pub use usage::{ClusterUsage, ClusterUsageSpec, Usage, UsageSpec};

/// Label every rendered object carries (SPEC 1.2); the reference composition sets it.
pub const LABEL_MANAGED: &str = "hops.ops.com.ai/managed";
/// Label naming the claim an object was rendered from (SPEC 1.2).
pub const LABEL_PSQL: &str = "hops.ops.com.ai/psql";
/// psql-fleet's own inventory label: which fleet owns the object, so that pruning only ever
/// selects objects this fleet applied and two fleets can share a cluster.
pub const LABEL_FLEET: &str = "fleet.hops.ops.com.ai/fleet";
/// The second half of the inventory: which of the fleet's `Cluster` entries applied the
/// object. Two entries that reach one API server (a copied cluster file, two kubeconfigs
/// for one cluster) then each see only their own objects, and neither prunes the other's.
pub const LABEL_CLUSTER: &str = "fleet.hops.ops.com.ai/cluster";
/// Label keys under this prefix belong to psql-fleet; claims may not set them.
pub const RESERVED_LABEL_PREFIX: &str = "fleet.hops.ops.com.ai/";
