//! Fleets written in code for tests, here and in the other crates (feature `testing`):
//! documents are made by the same few functions everywhere, so no test spells a fleet's
//! YAML out by hand.

/// A `Cluster` document named `name`, its kubeconfig `<name>.yaml`, with `extra` lines
/// appended under `spec:` (each indented two spaces).
pub fn cluster_yaml(name: &str, extra: &str) -> String {
    format!("apiVersion: fleet.hops.ops.com.ai/v1alpha1\nkind: Cluster\nmetadata: {{name: {name}}}\nspec:\n  kubeconfig: {name}.yaml\n{extra}")
}

/// A `Psql` claim `name` in namespace `name` for `cluster`; `annotations` are lines under
/// `metadata:` (each indented two spaces).
pub fn claim_yaml(name: &str, cluster: &str, annotations: &str) -> String {
    format!("apiVersion: stacks.hops.ops.com.ai/v1alpha1\nkind: Psql\nmetadata:\n  name: {name}\n  namespace: {name}\n{annotations}spec:\n  clusterName: {cluster}\n")
}
