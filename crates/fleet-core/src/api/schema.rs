//! Schema helpers for fields whose OpenAPI form schemars cannot infer from the Rust type.

use schemars::{json_schema, Schema, SchemaGenerator};

/// A free-form object (Helm values): Kubernetes must keep unknown fields in it.
pub fn preserve_unknown_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// An RFC 3339 timestamp string.
pub fn date_time(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "format": "date-time"
    })
}

/// An integer without a format, as controller-gen emits for Go `int` fields.
pub fn plain_integer(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "integer"})
}

/// Crossplane management policies: a list of the allowed actions.
pub fn management_policies(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "items": {
            "type": "string",
            "enum": ["Observe", "Create", "Update", "Delete", "LateInitialize", "*"]
        }
    })
}
