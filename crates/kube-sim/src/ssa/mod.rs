//! Server-side apply and field ownership (`metadata.managedFields`), as Kubernetes'
//! structured-merge-diff does them, over plain `serde_json::Value` objects.
//!
//! The server calls [`apply`] for `application/apply-patch+yaml` patches and [`track_update`]
//! for every other write (create, update, merge and JSON patch), after decoding the request and
//! before validation and storage. Both also apply the status-subresource split: a write through
//! the main endpoint of a kind with a status subresource keeps live `status`, a write through
//! `/status` keeps everything but `status`. When the returned object equals the live one
//! ([`is_noop`]) the server makes no write and keeps the resourceVersion.

mod conflict;
mod fieldset;
mod managed;
mod merge;
mod schema;
mod typed;

#[cfg(test)]
mod release_tests;

use serde_json::{json, Value};

pub use conflict::{Conflict, Conflicts};
pub use fieldset::{FieldSet, Path, PathElement};
pub use managed::Operation;
pub use merge::reset_subtree;
pub use schema::Schema;

use managed::{untracked, without_managed_fields, Entry, ManagedFields, ManagerKey};

/// Who is writing, through which endpoint, and when.
#[derive(Clone, Copy, Debug)]
pub struct WriteContext<'a> {
    /// The `fieldManager` (or the server's default for the client).
    pub manager: &'a str,
    /// The `apiVersion` the request was made in.
    pub api_version: &'a str,
    /// `Some("status")` for writes through the status subresource.
    pub subresource: Option<&'a str>,
    /// RFC 3339 time recorded on the manager's entry when the write changes the object.
    pub now: &'a str,
}

/// Server-side apply of `config` over `live` (`None` creates). Returns the new object with
/// `metadata.managedFields` updated: the manager's Apply entry holds exactly what `config` sets,
/// fields it applied before and no longer applies are removed unless another manager owns them,
/// and without `force` a changed field owned by another manager fails the apply. With `force`
/// ownership of such fields moves to the applier.
pub fn apply(
    schema: &Schema,
    live: Option<&Value>,
    config: &Value,
    force: bool,
    ctx: &WriteContext,
) -> Result<Value, Conflicts> {
    let root = &schema.root;
    let live_object = live
        .map(without_managed_fields)
        .unwrap_or_else(|| empty_like(config));
    let config = without_managed_fields(config);
    let mut managed = match live {
        Some(live) => managed_before_apply(schema, live, ctx),
        None => ManagedFields::default(),
    };
    let reset = reset_prefix(schema, ctx.subresource);

    let merged = merge::merge(root, &live_object, &config);
    let applied = filtered(typed::to_field_set(root, &config), reset.as_deref());
    let key = ManagerKey::new(
        ctx.manager,
        Operation::Apply,
        ctx.api_version,
        ctx.subresource,
    );
    let previous = managed.0.remove(&key);

    let mut new_object = merged;
    if let Some(last) = previous.as_ref().filter(|p| !p.fields.is_empty()) {
        // What survives pruning is whatever anyone owns now, the applier's new set included,
        // plus the server-set fields no set tracks.
        let owned_now = managed
            .0
            .values()
            .fold(applied.union(&untracked()), |acc, e| acc.union(&e.fields));
        merge::prune(root, &mut new_object, &last.fields, &owned_now);
    }

    let comparison = compared(schema, &live_object, &new_object, reset.as_deref());
    let taken = comparison.changed();
    let mut conflicts = Vec::new();
    for (other, entry) in &managed.0 {
        for path in entry.fields.intersection(&taken).paths() {
            conflicts.push(Conflict {
                manager: other.manager.clone(),
                operation: other.operation,
                api_version: entry.api_version.clone(),
                subresource: other.subresource.clone(),
                field: path.to_string(),
            });
        }
    }
    if !force && !conflicts.is_empty() {
        return Err(Conflicts(conflicts).sorted());
    }
    release(&mut managed, &taken, &comparison.removed);

    let changed = new_object != live_object;
    let time = match &previous {
        Some(p) if !changed => p.time.clone(),
        _ => Some(ctx.now.to_owned()),
    };
    managed.0.insert(
        key,
        Entry {
            api_version: ctx.api_version.to_owned(),
            time,
            fields: applied.difference(&untracked()),
        },
    );
    managed.drop_empty();
    reset_endpoint_values(schema, ctx.subresource, &live_object, &mut new_object);
    managed::store(&mut new_object, &managed);
    Ok(new_object)
}

/// Ownership tracking for a non-apply write (create, update, merge patch, JSON patch): the
/// fields `new` adds or changes relative to `live` become owned by the manager's Update entry
/// (merged with its earlier updates) and are taken from every other manager; removed fields are
/// released by everyone. Returns `new` with `metadata.managedFields` replaced.
pub fn track_update(
    schema: &Schema,
    live: Option<&Value>,
    new: &Value,
    ctx: &WriteContext,
) -> Value {
    let live_object = live
        .map(without_managed_fields)
        .unwrap_or_else(|| empty_like(new));
    let mut new_object = without_managed_fields(new);
    let mut managed = managed_for_update(live, new, ctx.subresource);
    let reset = reset_prefix(schema, ctx.subresource);

    let comparison = compared(schema, &live_object, &new_object, reset.as_deref());
    let taken = comparison.changed().difference(&untracked());
    release(&mut managed, &taken, &comparison.removed);

    let key = ManagerKey::new(
        ctx.manager,
        Operation::Update,
        ctx.api_version,
        ctx.subresource,
    );
    let previous = managed.0.remove(&key);
    let time = match &previous {
        Some(p) if taken.is_empty() => p.time.clone(),
        _ => Some(ctx.now.to_owned()),
    };
    let fields = match previous {
        Some(p) => p.fields.union(&taken),
        None => taken,
    };
    managed.0.insert(
        key,
        Entry {
            api_version: ctx.api_version.to_owned(),
            time,
            fields,
        },
    );
    managed.drop_empty();
    reset_endpoint_values(schema, ctx.subresource, &live_object, &mut new_object);
    managed::store(&mut new_object, &managed);
    new_object
}

/// Whether a write left the object exactly as it was, managed fields included; the server then
/// skips storage and keeps the resourceVersion, as Kubernetes does for a repeated apply.
pub fn is_noop(live: &Value, new: &Value) -> bool {
    live == new
}

/// The field set of `manager`'s entry for `operation`, for callers (and tests) that need to ask
/// who owns what.
pub fn managed_fields_of(
    object: &Value,
    manager: &str,
    operation: Operation,
    subresource: Option<&str>,
) -> Option<FieldSet> {
    ManagedFields::decode(object)
        .0
        .into_iter()
        .find(|(key, _)| {
            key.manager == manager
                && key.operation == operation
                && key.subresource.as_deref() == subresource
        })
        .map(|(_, entry)| entry.fields)
}

/// The managers an apply starts from. An object that has none (written before ownership was
/// tracked, or seeded by the server) is first owned whole by an Update manager named
/// `before-first-apply`, so an apply cannot silently take over fields someone else set.
fn managed_before_apply(schema: &Schema, live: &Value, ctx: &WriteContext) -> ManagedFields {
    let managed = ManagedFields::decode(live);
    if !managed.0.is_empty() {
        return managed;
    }
    let seed = WriteContext {
        manager: BEFORE_FIRST_APPLY,
        subresource: None,
        ..*ctx
    };
    let owned = track_update(schema, None, live, &seed);
    ManagedFields::decode(&owned)
}

/// The manager Kubernetes gives the fields of an untracked object at its first apply.
pub const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// The managers an update starts from. Through the main endpoint a client may set managedFields
/// itself: `[]` or `[{}]` resets them, any other non-empty list replaces them; a request that
/// leaves them out (or sends what it read) keeps live's. Subresources always keep live's.
fn managed_for_update(
    live: Option<&Value>,
    new: &Value,
    subresource: Option<&str>,
) -> ManagedFields {
    let from_live = || live.map(ManagedFields::decode).unwrap_or_default();
    if subresource.is_some_and(|s| !s.is_empty()) {
        return from_live();
    }
    match new["metadata"]["managedFields"].as_array() {
        Some(entries) if entries.is_empty() => ManagedFields::default(),
        Some(entries) if entries.len() == 1 && entries[0] == json!({}) => ManagedFields::default(),
        Some(_) => {
            let requested = ManagedFields::decode(new);
            if requested.0.is_empty() {
                from_live()
            } else {
                requested
            }
        }
        None => from_live(),
    }
}

/// The creation baseline: Kubernetes compares a new object against an empty one of its kind.
fn empty_like(object: &Value) -> Value {
    json!({"apiVersion": object["apiVersion"], "kind": object["kind"]})
}

/// The subtree whose ownership this endpoint does not record, as Kubernetes' reset fields: the
/// main endpoint of a kind with a status subresource ignores `.status`, `/status` ignores
/// `.spec`.
fn reset_prefix(schema: &Schema, subresource: Option<&str>) -> Option<Vec<PathElement>> {
    if !schema.status_subresource {
        return None;
    }
    let top = match subresource {
        None | Some("") => "status",
        Some("status") => "spec",
        Some(_) => return None,
    };
    Some(vec![PathElement::Field(top.to_owned())])
}

fn filtered(set: FieldSet, reset: Option<&[PathElement]>) -> FieldSet {
    match reset {
        Some(prefix) => set.without_prefix(prefix),
        None => set,
    }
}

fn compared(
    schema: &Schema,
    live: &Value,
    new: &Value,
    reset: Option<&[PathElement]>,
) -> typed::Comparison {
    let comparison = typed::compare(&schema.root, live, new);
    match reset {
        Some(prefix) => comparison.without_prefix(prefix),
        None => comparison,
    }
}

/// Takes changed fields away from every manager and drops removed ones from every set.
fn release(managed: &mut ManagedFields, taken: &FieldSet, removed: &FieldSet) {
    for entry in managed.0.values_mut() {
        entry.fields = entry.fields.difference(taken).difference(removed);
    }
}

/// The values the endpoint may not change, put back from live: `status` at the main endpoint of
/// a kind with a status subresource, everything but `status` at `/status`.
fn reset_endpoint_values(
    schema: &Schema,
    subresource: Option<&str>,
    live: &Value,
    new: &mut Value,
) {
    if !schema.status_subresource {
        return;
    }
    match subresource {
        None | Some("") => reset_subtree(live, new, &["status"]),
        Some("status") => {
            let mut kept = live.clone();
            reset_subtree(new, &mut kept, &["status"]);
            *new = kept;
        }
        Some(_) => {}
    }
}
