//! The Crossplane condition shape shared by Release and Usage status.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A condition as Crossplane writes it (`xpv1.Condition`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Last time this condition transitioned from one status to another (RFC 3339).
    #[schemars(schema_with = "crate::api::schema::date_time")]
    pub last_transition_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    pub reason: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    #[serde(rename = "type")]
    pub type_: String,
}

/// Finds the condition of `type_` in an optional list, the way status readers need it.
pub fn find<'a>(conditions: Option<&'a [Condition]>, type_: &str) -> Option<&'a Condition> {
    conditions?.iter().find(|c| c.type_ == type_)
}
