//! A document's identifying head: its `apiVersion` and `kind`. The key check reads it on
//! its walk; a document the check cannot read it from is parsed for it alone.

use serde::Deserialize;

/// The identifying head of a document, read before its kind-specific parse; absent or null
/// as `None`.
#[derive(Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct Head {
    #[serde(rename = "apiVersion", default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
}
