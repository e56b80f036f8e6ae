//! `Psql` claims (`claims/**/*.yaml`), parsed strictly into the kube `Psql` type and checked
//! so that everything rendered from them will be accepted by the API server.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use kube::core::ObjectMeta;
use serde::{Deserialize, Serialize};

use super::diagnostic::{Diagnostic, Origin};
use super::document::RawDocument;
use super::metadata::{check_api_version, flag_annotation, Metadata};
use super::names::{check_dns_label, check_dns_subdomain};
use super::selector::LabelSelector;
use crate::api::psql::{ComponentSpec, DEFAULT_CLAIM_NAME, DEFAULT_CLAIM_NAMESPACE};
use crate::api::{Psql, PsqlSpec, PsqlStatus, LABEL_MANAGED, LABEL_PSQL, RESERVED_LABEL_PREFIX};

pub const PSQL_API_VERSION: &str = "stacks.hops.ops.com.ai/v1alpha1";
pub const PSQL_KIND: &str = "Psql";
/// Annotation that stops psql-fleet from applying or pruning a claim's objects.
pub const SUSPEND_ANNOTATION: &str = "fleet.hops.ops.com.ai/suspend";
/// Values provider-helm accepts in `managementPolicies`.
pub const MANAGEMENT_ACTIONS: [&str; 6] = [
    "Observe",
    "Create",
    "Update",
    "Delete",
    "LateInitialize",
    "*",
];
/// Helm refuses release names longer than this.
const MAX_RELEASE_NAME: usize = 53;

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ClaimDocument {
    api_version: String,
    #[allow(dead_code, reason = "checked by the loader before parsing")]
    kind: String,
    #[serde(default)]
    metadata: Metadata,
    spec: PsqlSpec,
    #[serde(default)]
    status: Option<PsqlStatus>,
}

/// A claim's identity within the fleet: its namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ClaimKey {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ClaimKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A validated claim with its defaults resolvable, and where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Claim {
    pub origin: Origin,
    pub psql: Psql,
    pub suspended: bool,
    /// Set on the claims a selector claim expands into, one per matching cluster: the
    /// selector that put it there. Such a claim's spec names its cluster like any other.
    pub selector: Option<Arc<LabelSelector>>,
}

impl Claim {
    /// Parses and checks one `Psql` document; `None` when it has errors (in `out`).
    pub fn parse(raw: &RawDocument<'_>, out: &mut Vec<Diagnostic>) -> Option<Claim> {
        let doc: ClaimDocument = match raw.parse() {
            Ok(doc) => doc,
            Err(e) => {
                out.push(e);
                return None;
            }
        };
        let origin = &raw.origin;
        let before = out.len();
        check_api_version(&doc.api_version, PSQL_API_VERSION, origin, out);
        let name = doc
            .metadata
            .name
            .clone()
            .unwrap_or_else(|| DEFAULT_CLAIM_NAME.into());
        let namespace = doc
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| DEFAULT_CLAIM_NAMESPACE.into());
        // The name becomes a label value, so it must be a DNS label, not just a subdomain.
        if let Err(e) = check_dns_label(&name) {
            out.push(Diagnostic::field(origin, "metadata.name", e));
        }
        if let Err(e) = check_dns_label(&namespace) {
            out.push(Diagnostic::field(origin, "metadata.namespace", e));
        }
        Metadata::check_labels(doc.metadata.labels.as_ref(), origin, "metadata.labels", out);
        let suspended = flag_annotation(
            doc.metadata.annotations.as_ref(),
            SUSPEND_ANNOTATION,
            origin,
            out,
        );
        let name_written = || {
            raw.parse::<Written>()
                .is_ok_and(|w| w.spec.is_some_and(|s| s.cluster_name.is_some()))
        };
        check_spec(&doc.spec, name_written, origin, out);
        if out.len() > before {
            return None;
        }
        warn_shadowed_labels(&doc.spec, origin, out);
        if doc
            .spec
            .cluster_selector
            .as_ref()
            .is_some_and(LabelSelector::is_empty)
        {
            out.push(
                Diagnostic::field(
                    origin,
                    "spec.clusterSelector",
                    "the empty selector matches every cluster in the fleet, including clusters added later",
                )
                .warning(),
            );
        }
        let psql = Psql {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(namespace),
                labels: doc.metadata.labels,
                annotations: doc.metadata.annotations,
                ..ObjectMeta::default()
            },
            spec: doc.spec,
            status: doc.status,
        };
        Some(Claim {
            origin: origin.clone(),
            psql,
            suspended,
            selector: None,
        })
    }

    pub fn name(&self) -> &str {
        self.psql
            .metadata
            .name
            .as_deref()
            .unwrap_or(DEFAULT_CLAIM_NAME)
    }

    pub fn namespace(&self) -> &str {
        self.psql
            .metadata
            .namespace
            .as_deref()
            .unwrap_or(DEFAULT_CLAIM_NAMESPACE)
    }

    pub fn cluster(&self) -> &str {
        &self.psql.spec.cluster_name
    }

    pub fn spec(&self) -> &PsqlSpec {
        &self.psql.spec
    }

    pub fn key(&self) -> ClaimKey {
        ClaimKey {
            namespace: self.namespace().to_string(),
            name: self.name().to_string(),
        }
    }
}

/// Only whether `spec.clusterName` is written, to tell `clusterName: ""` from no field.
#[derive(Deserialize)]
struct Written {
    spec: Option<WrittenSpec>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WrittenSpec {
    cluster_name: Option<serde::de::IgnoredAny>,
}

fn check_spec(
    spec: &PsqlSpec,
    name_written: impl FnOnce() -> bool,
    origin: &Origin,
    out: &mut Vec<Diagnostic>,
) {
    check_target(spec, name_written, origin, out);
    if let Some(ns) = &spec.namespace {
        if let Err(e) = check_dns_label(ns) {
            out.push(Diagnostic::field(origin, "spec.namespace", e));
        }
    }
    for (key, value) in spec.labels.iter().flatten() {
        let field = format!("spec.labels.{key}");
        if key.starts_with(RESERVED_LABEL_PREFIX) {
            out.push(Diagnostic::field(
                origin,
                field,
                format!("labels under {RESERVED_LABEL_PREFIX} are reserved for psql-fleet"),
            ));
        } else if let Err(e) =
            super::names::check_label_key(key).and_then(|_| super::names::check_label_value(value))
        {
            out.push(Diagnostic::field(origin, field, e));
        }
    }
    for (i, policy) in spec.management_policies.iter().flatten().enumerate() {
        if !MANAGEMENT_ACTIONS.contains(&policy.as_str()) {
            out.push(Diagnostic::field(
                origin,
                format!("spec.managementPolicies[{i}]"),
                format!(
                    "expected one of {}, got {policy:?}",
                    MANAGEMENT_ACTIONS.join(", ")
                ),
            ));
        }
    }
    if let Some(name) = spec
        .helm_provider_config_ref
        .as_ref()
        .and_then(|r| r.name.as_deref())
    {
        if let Err(e) = check_dns_subdomain(name) {
            out.push(Diagnostic::field(
                origin,
                "spec.helmProviderConfigRef.name",
                e,
            ));
        }
    }
    check_component(
        spec.stackgres_operator.as_ref(),
        "spec.stackgresOperator",
        origin,
        out,
    );
    check_component(
        spec.atlas_operator.as_ref(),
        "spec.atlasOperator",
        origin,
        out,
    );
    if spec.stackgres_name() == spec.atlas_name() {
        out.push(Diagnostic::field(
            origin,
            "spec.atlasOperator.name",
            format!(
                "both Releases would be named {:?}; give them different names",
                spec.atlas_name()
            ),
        ));
    }
}

fn check_component(
    component: Option<&ComponentSpec>,
    at: &str,
    origin: &Origin,
    out: &mut Vec<Diagnostic>,
) {
    let Some(component) = component else { return };
    if let Some(name) = &component.name {
        if let Err(e) = check_dns_label(name) {
            out.push(Diagnostic::field(origin, format!("{at}.name"), e));
        } else if name.len() > MAX_RELEASE_NAME {
            out.push(Diagnostic::field(
                origin,
                format!("{at}.name"),
                format!("{name:?} is longer than the {MAX_RELEASE_NAME} characters Helm allows for a release name"),
            ));
        }
    }
    if let Some(ns) = &component.namespace {
        if let Err(e) = check_dns_label(ns) {
            out.push(Diagnostic::field(origin, format!("{at}.namespace"), e));
        }
    }
}

/// A claim names one cluster or selects some, never both and never neither.
fn check_target(
    spec: &PsqlSpec,
    name_written: impl FnOnce() -> bool,
    origin: &Origin,
    out: &mut Vec<Diagnostic>,
) {
    match &spec.cluster_selector {
        Some(_) if !spec.cluster_name.is_empty() => out.push(Diagnostic::field(
            origin,
            "spec.clusterSelector",
            "set either spec.clusterName (one cluster) or spec.clusterSelector (every cluster whose labels match), not both",
        )),
        Some(selector) => check_selector(selector, "spec.clusterSelector", origin, out),
        None => {
            if spec.cluster_name.is_empty() && !name_written() {
                out.push(Diagnostic::field(
                    origin,
                    "spec.clusterName",
                    "required field is missing (or select clusters by label with spec.clusterSelector)",
                ));
            } else if let Err(e) = check_dns_label(&spec.cluster_name) {
                out.push(Diagnostic::field(origin, "spec.clusterName", e));
            }
            if !spec.cluster_customizations.is_empty() {
                out.push(Diagnostic::field(
                    origin,
                    "spec.clusterCustomizations",
                    "only a claim with spec.clusterSelector varies by cluster; put the values in spec.stackgresOperator and spec.atlasOperator",
                ));
            }
        }
    }
    for (i, c) in spec.cluster_customizations.iter().enumerate() {
        let at = format!("spec.clusterCustomizations[{i}]");
        check_selector(&c.selector, &format!("{at}.selector"), origin, out);
    }
}

fn check_selector(selector: &LabelSelector, at: &str, origin: &Origin, out: &mut Vec<Diagnostic>) {
    for (field, e) in selector.problems() {
        out.push(Diagnostic::field(origin, format!("{at}.{field}"), e));
    }
}

/// The reference labels win over a claim's labels of the same key; say so rather than
/// silently dropping what the claim asked for.
fn warn_shadowed_labels(spec: &PsqlSpec, origin: &Origin, out: &mut Vec<Diagnostic>) {
    let labels: &BTreeMap<String, String> = match &spec.labels {
        Some(labels) => labels,
        None => return,
    };
    for key in [LABEL_MANAGED, LABEL_PSQL] {
        if labels.contains_key(key) {
            out.push(
                Diagnostic::field(
                    origin,
                    format!("spec.labels.{key}"),
                    "ignored: psql-fleet sets this label itself",
                )
                .warning(),
            );
        }
    }
}
