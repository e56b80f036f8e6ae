//! `Cluster` documents (`clusters/*.yaml`): a cluster's name, labels and how to reach it.

use std::collections::BTreeMap;
use std::path::{Component, Path};

use serde::{Deserialize, Serialize};

use super::diagnostic::{Diagnostic, Origin};
use super::document::RawDocument;
use super::fleet::DriftSettings;
use super::inventory::SecretRef;
use super::metadata::{check_api_version, Metadata};
use super::names::check_dns_label;
use super::FLEET_API_VERSION;

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ClusterDocument {
    api_version: String,
    #[allow(dead_code, reason = "checked by the loader before parsing")]
    kind: String,
    metadata: Metadata,
    spec: ClusterSpec,
}

/// How to reach a cluster, and its own settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterSpec {
    /// Kubeconfig file, relative to the credentials directory; never stored in Git.
    pub kubeconfig: String,
    /// Context in the kubeconfig; its current context when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// Drift policy for this cluster, over the fleet's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftSettings>,
    /// Stop reconciling this cluster (nothing applied, nothing pruned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
}

/// A validated `Cluster` document.
#[derive(Clone, Debug, PartialEq)]
pub struct Cluster {
    pub origin: Origin,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub spec: ClusterSpec,
    /// Found on a management cluster ([`super::inventory`]): its kubeconfig is in this
    /// Secret there, not in the credentials directory.
    pub kubeconfig_secret: Option<SecretRef>,
}

impl Cluster {
    /// Parses and checks one `Cluster` document; `None` when it has errors (in `out`).
    pub fn parse(raw: &RawDocument<'_>, out: &mut Vec<Diagnostic>) -> Option<Cluster> {
        let doc: ClusterDocument = match raw.parse() {
            Ok(doc) => doc,
            Err(e) => {
                out.push(e);
                return None;
            }
        };
        let origin = &raw.origin;
        let before = out.len();
        check_api_version(&doc.api_version, FLEET_API_VERSION, origin, out);
        let name = doc.metadata.name.clone().unwrap_or_default();
        if let Err(e) = check_dns_label(&name) {
            out.push(Diagnostic::field(origin, "metadata.name", e));
        }
        if doc.metadata.namespace.is_some() {
            out.push(Diagnostic::field(
                origin,
                "metadata.namespace",
                "a Cluster is not namespaced; remove this field",
            ));
        }
        Metadata::check_labels(doc.metadata.labels.as_ref(), origin, "metadata.labels", out);
        if let Err(e) = check_kubeconfig_path(&doc.spec.kubeconfig) {
            out.push(Diagnostic::field(origin, "spec.kubeconfig", e));
        }
        if doc.spec.context.as_deref() == Some("") {
            out.push(Diagnostic::field(
                origin,
                "spec.context",
                "must not be empty when set",
            ));
        }
        (out.len() == before).then(|| Cluster {
            origin: origin.clone(),
            name,
            labels: doc.metadata.labels.unwrap_or_default(),
            spec: doc.spec,
            kubeconfig_secret: None,
        })
    }

    pub fn suspended(&self) -> bool {
        self.spec.suspend.unwrap_or(false)
    }
}

/// A kubeconfig path must stay inside the credentials directory: relative, and never
/// climbing above it. Checked lexically, since validation runs without credentials.
pub fn check_kubeconfig_path(path: &str) -> Result<(), KubeconfigPathError> {
    if path.is_empty() {
        return Err(KubeconfigPathError::Empty);
    }
    let mut depth = 0i32;
    for component in Path::new(path).components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return Err(KubeconfigPathError::Escapes(path.into()));
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(KubeconfigPathError::Absolute(path.into()))
            }
        }
    }
    if depth == 0 {
        return Err(KubeconfigPathError::NotAFile(path.into()));
    }
    Ok(())
}

/// A kubeconfig path as the file it names: `./eu/../a.yaml` and `a.yaml` are one file.
/// Lexical, like [`check_kubeconfig_path`], which it assumes has passed.
pub fn normalise_kubeconfig_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    parts.join("/")
}

/// Why a kubeconfig path is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KubeconfigPathError {
    #[error("must name a kubeconfig file in the credentials directory")]
    Empty,
    #[error("{0:?} escapes the credentials directory")]
    Escapes(String),
    #[error("{0:?} is absolute; kubeconfig paths are relative to the credentials directory")]
    Absolute(String),
    #[error("{0:?} names the credentials directory itself, not a file")]
    NotAFile(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_paths_normalise_to_the_file_they_name() {
        for (path, file) in [
            ("a.yaml", "a.yaml"),
            ("./a.yaml", "a.yaml"),
            ("eu/../a.yaml", "a.yaml"),
            ("eu//prod.yaml", "eu/prod.yaml"),
        ] {
            assert_eq!(normalise_kubeconfig_path(path), file, "{path}");
        }
    }

    #[test]
    fn kubeconfig_paths_stay_inside_the_credentials_directory() {
        for ok in ["prod.yaml", "eu/prod.yaml", "./a.yaml", "eu/../prod.yaml"] {
            assert!(check_kubeconfig_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/etc/kubeconfig",
            "../x.yaml",
            "eu/../../x.yaml",
            ".",
            "a/..",
        ] {
            assert!(check_kubeconfig_path(bad).is_err(), "{bad}");
        }
    }
}
