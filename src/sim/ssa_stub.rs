//! Placeholder for the server-side-apply engine that lands from branch `sim-ssa`
//! (`src/sim/ssa/`), with the same API so the server compiles and serves apply requests
//! until the merge. It is NOT server-side apply: it merges the configuration over the live
//! object (JSON merge patch rules), never reports conflicts, and records one managedFields
//! entry per manager without a field set. Replaced wholesale by the real module.

use serde_json::{json, Value};

pub struct Schema;

impl Schema {
    pub fn from_openapi_v3(_schema: &Value) -> Schema {
        Schema
    }
    pub fn deduced() -> Schema {
        Schema
    }
}

pub struct Conflict {
    pub manager: String,
    pub api_version: String,
    pub field: String,
}

pub struct Conflicts(pub Vec<Conflict>);

impl Conflicts {
    pub fn message(&self) -> String {
        let fields: Vec<String> = self
            .0
            .iter()
            .map(|c| format!("- {}: {}", c.manager, c.field))
            .collect();
        format!(
            "Apply failed with {} conflict(s):\n{}",
            self.0.len(),
            fields.join("\n")
        )
    }
    pub fn causes(&self) -> Value {
        Value::Array(
            self.0
                .iter()
                .map(|c| json!({"type": "FieldManagerConflict", "message": format!("conflict with \"{}\"", c.manager), "field": c.field}))
                .collect(),
        )
    }
}

pub struct WriteContext<'a> {
    pub manager: &'a str,
    pub api_version: &'a str,
    pub subresource: Option<&'a str>,
    pub now: &'a str,
}

fn entry(ctx: &WriteContext<'_>, operation: &str) -> Value {
    let mut e = json!({
        "manager": ctx.manager,
        "operation": operation,
        "apiVersion": ctx.api_version,
        "time": ctx.now,
        "fieldsType": "FieldsV1",
        "fieldsV1": {},
    });
    if let Some(sub) = ctx.subresource {
        e["subresource"] = Value::String(sub.to_string());
    }
    e
}

fn with_entry(
    mut obj: Value,
    live: Option<&Value>,
    ctx: &WriteContext<'_>,
    operation: &str,
) -> Value {
    let mut entries: Vec<Value> = live
        .and_then(|l| l.pointer("/metadata/managedFields"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    entries.retain(|e| !(e["manager"] == ctx.manager && e["operation"] == operation));
    entries.push(entry(ctx, operation));
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("managedFields".into(), Value::Array(entries));
    }
    obj
}

pub fn apply(
    _schema: &Schema,
    live: Option<&Value>,
    config: &Value,
    _force: bool,
    ctx: &WriteContext<'_>,
) -> Result<Value, Conflicts> {
    let mut merged = live.cloned().unwrap_or_else(|| json!({}));
    json_patch::merge(&mut merged, config);
    Ok(with_entry(merged, live, ctx, "Apply"))
}

pub fn track_update(
    _schema: &Schema,
    live: Option<&Value>,
    new: &Value,
    ctx: &WriteContext<'_>,
) -> Value {
    with_entry(new.clone(), live, ctx, "Update")
}
