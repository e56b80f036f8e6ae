//! Apply conflicts and how the API server reports them: the 409 message and `Status` causes,
//! worded exactly as Kubernetes words them.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::managed::Operation;

/// One field of the applied configuration that another manager owns with a different value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub manager: String,
    pub operation: Operation,
    pub api_version: String,
    pub subresource: Option<String>,
    /// The path as Kubernetes prints it, e.g. `.spec.forProvider.chart.version`.
    pub field: String,
}

impl Conflict {
    /// The manager as the server names it. Appliers are named alone; updaters with the API
    /// version they wrote (the server's manager identity leaves out the time).
    fn manager_label(&self) -> String {
        let mut label = format!("{:?}", self.manager);
        if let Some(subresource) = &self.subresource {
            label.push_str(&format!(" with subresource {subresource:?}"));
        }
        if self.operation == Operation::Update {
            label.push_str(&format!(" using {}", self.api_version));
        }
        label
    }

    /// The server's manager identity (the JSON of the entry without fields, time, and for
    /// appliers the API version), which it sorts conflicting managers by.
    fn identity(&self) -> String {
        let mut identity = format!(
            "{{\"manager\":{},\"operation\":\"{}\"",
            json!(self.manager),
            self.operation.as_str()
        );
        if self.operation == Operation::Update {
            identity.push_str(&format!(",\"apiVersion\":{}", json!(self.api_version)));
        }
        if let Some(subresource) = &self.subresource {
            identity.push_str(&format!(",\"subresource\":{}", json!(subresource)));
        }
        identity.push('}');
        identity
    }
}

/// The conflicts that failed an apply, in the order Kubernetes lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflicts(pub Vec<Conflict>);

impl Conflicts {
    /// The `Status` message, e.g. `Apply failed with 1 conflict: conflict with "kubectl-edit"
    /// using helm.m.crossplane.io/v1beta1: .spec.forProvider.chart.version`; several are grouped
    /// per manager, one `- path` per line.
    pub fn message(&self) -> String {
        if let [only] = self.0.as_slice() {
            return format!(
                "Apply failed with 1 conflict: conflict with {}: {}",
                only.manager_label(),
                only.field
            );
        }
        let mut by_manager: BTreeMap<String, (String, Vec<&str>)> = BTreeMap::new();
        for conflict in &self.0 {
            by_manager
                .entry(conflict.identity())
                .or_insert_with(|| (conflict.manager_label(), Vec::new()))
                .1
                .push(&conflict.field);
        }
        let mut lines = Vec::new();
        for (label, fields) in by_manager.values() {
            lines.push(format!("conflicts with {label}:"));
            lines.extend(fields.iter().map(|field| format!("- {field}")));
        }
        format!(
            "Apply failed with {} conflicts: {}",
            self.0.len(),
            lines.join("\n")
        )
    }

    /// The `details.causes` of the `Status`.
    pub fn causes(&self) -> Value {
        self.0
            .iter()
            .map(|c| {
                json!({
                    "reason": "FieldManagerConflict",
                    "message": format!("conflict with {}", c.manager_label()),
                    "field": c.field,
                })
            })
            .collect()
    }

    /// The whole 409 `Status` body the server answers a conflicting apply with.
    pub fn status(&self) -> Value {
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message(),
            "reason": "Conflict",
            "details": {"causes": self.causes()},
            "code": 409,
        })
    }

    /// Sorts by manager identity, keeping each manager's fields in path order (the order the
    /// caller produced them in).
    pub(crate) fn sorted(mut self) -> Conflicts {
        self.0.sort_by_cached_key(Conflict::identity);
        self
    }
}

impl std::fmt::Display for Conflicts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for Conflicts {}

#[cfg(test)]
mod tests {
    use super::*;

    fn conflict(manager: &str, operation: Operation, field: &str) -> Conflict {
        Conflict {
            manager: manager.to_owned(),
            operation,
            api_version: "helm.m.crossplane.io/v1beta1".to_owned(),
            subresource: None,
            field: field.to_owned(),
        }
    }

    #[test]
    fn messages_match_the_api_servers_wording() {
        let edit = conflict(
            "kubectl-edit",
            Operation::Update,
            ".spec.forProvider.chart.version",
        );
        let applier = conflict("other-agent", Operation::Apply, ".spec.a");
        let status = Conflict {
            subresource: Some("status".to_owned()),
            ..conflict("ctrl", Operation::Update, ".status.x")
        };
        let cases = [
            (
                vec![edit.clone()],
                "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using \
                 helm.m.crossplane.io/v1beta1: .spec.forProvider.chart.version",
            ),
            (
                vec![applier.clone()],
                "Apply failed with 1 conflict: conflict with \"other-agent\": .spec.a",
            ),
            (
                vec![status],
                "Apply failed with 1 conflict: conflict with \"ctrl\" with subresource \"status\" \
                 using helm.m.crossplane.io/v1beta1: .status.x",
            ),
            (
                vec![
                    edit.clone(),
                    applier.clone(),
                    conflict("kubectl-edit", Operation::Update, ".spec.b"),
                ],
                "Apply failed with 3 conflicts: conflicts with \"kubectl-edit\" using \
                 helm.m.crossplane.io/v1beta1:\n- .spec.forProvider.chart.version\n- .spec.b\n\
                 conflicts with \"other-agent\":\n- .spec.a",
            ),
        ];
        for (conflicts, want) in cases {
            assert_eq!(Conflicts(conflicts).message(), want);
        }
    }

    #[test]
    fn causes_name_the_field_and_the_manager() {
        let conflicts = Conflicts(vec![conflict("kubectl-edit", Operation::Update, ".spec.x")]);
        assert_eq!(
            conflicts.causes(),
            json!([{
                "reason": "FieldManagerConflict",
                "message": "conflict with \"kubectl-edit\" using helm.m.crossplane.io/v1beta1",
                "field": ".spec.x"
            }])
        );
        assert_eq!(conflicts.status()["code"], 409);
        assert_eq!(conflicts.status()["reason"], "Conflict");
    }
}
