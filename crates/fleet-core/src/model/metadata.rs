//! The `metadata` block of fleet-directory documents, strict like the rest of them.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::diagnostic::{Diagnostic, Origin};
use super::names::{check_label_key, check_label_value};

#[derive(Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl Metadata {
    /// Checks label syntax, reporting each bad label at `<at>.<key>`.
    pub fn check_labels(
        labels: Option<&BTreeMap<String, String>>,
        origin: &Origin,
        at: &str,
        out: &mut Vec<Diagnostic>,
    ) {
        for (key, value) in labels.into_iter().flatten() {
            let field = format!("{at}.{key}");
            if let Err(e) = check_label_key(key).and_then(|_| check_label_value(value)) {
                out.push(Diagnostic::field(origin, field, e));
            }
        }
    }
}

/// Checks that a document carries the expected `apiVersion`.
pub fn check_api_version(actual: &str, expected: &str, origin: &Origin, out: &mut Vec<Diagnostic>) {
    if actual != expected {
        out.push(Diagnostic::field(
            origin,
            "apiVersion",
            format!("expected {expected}, got {actual:?}"),
        ));
    }
}

/// Parses a boolean-valued annotation; anything but `"true"` or `"false"` is an error.
pub fn flag_annotation(
    annotations: Option<&BTreeMap<String, String>>,
    key: &str,
    origin: &Origin,
    out: &mut Vec<Diagnostic>,
) -> bool {
    match annotations.and_then(|a| a.get(key)).map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            out.push(Diagnostic::field(
                origin,
                format!("metadata.annotations.{key}"),
                format!("expected \"true\" or \"false\", got {other:?}"),
            ));
            false
        }
    }
}
