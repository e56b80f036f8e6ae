//! Object metadata rules the API server enforces on every write: server-owned fields
//! (uid, creationTimestamp, generation, resourceVersion), generation bumps on spec
//! changes, and the split between the main resource and its `status` subresource.

use serde_json::{Map, Value};

/// RFC 3339 UTC timestamp with second precision, the form metav1.Time serialises to.
pub fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// A random RFC 4122 version 4 UUID.
pub fn uid() -> String {
    let mut b = random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Bytes from the system CSPRNG; the fallback only ever runs if the OS refuses, and then
/// time-derived bytes keep uids distinct (they are not secrets; tokens use `token()`).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    use ring::rand::SecureRandom;
    let mut b = [0u8; N];
    if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        for (i, x) in b.iter_mut().enumerate() {
            *x = (t >> ((i % 16) * 8)) as u8 ^ i as u8;
        }
    }
    b
}

/// A bearer token: 32 random bytes, hex.
pub fn token() -> Result<String, ring::error::Unspecified> {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

pub fn meta(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata").and_then(Value::as_object)
}

pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = Value::Object(Map::new());
    }
    match obj.get_mut("metadata") {
        Some(Value::Object(m)) => m,
        _ => unreachable!("metadata was made an object above"),
    }
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    meta(obj)?.get(field)?.as_str()
}

/// Everything but metadata and status: what a generation bump watches.
fn spec_part(obj: &Value) -> Map<String, Value> {
    obj.as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| {
                    !matches!(k.as_str(), "metadata" | "status" | "apiVersion" | "kind")
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// Fills server-owned metadata on a new object.
pub fn init_metadata(obj: &mut Value, namespace: Option<&str>, track_generation: bool) {
    let created = now();
    let m = meta_mut(obj);
    if let Some(ns) = namespace {
        m.insert("namespace".into(), Value::String(ns.into()));
    } else {
        m.remove("namespace");
    }
    m.insert("uid".into(), Value::String(uid()));
    m.insert("creationTimestamp".into(), Value::String(created));
    m.remove("deletionTimestamp");
    m.remove("deletionGracePeriodSeconds");
    if track_generation {
        m.insert("generation".into(), Value::from(1));
    } else {
        m.remove("generation");
    }
}

/// Merges a client's write onto the live object the way the API server does: server-owned
/// metadata is kept, status writes only change status, main-resource writes never change
/// status, and generation goes up when anything outside metadata and status changed.
pub fn carry_over(old: &Value, new: &mut Value, subresource: Option<&str>, has_status: bool) {
    match subresource {
        Some("status") => {
            let status = new.get("status").cloned();
            let mut merged = old.clone();
            if let Some(obj) = merged.as_object_mut() {
                match status {
                    Some(s) => obj.insert("status".into(), s),
                    None => obj.remove("status"),
                };
            }
            // The status strategy keeps everything but status from the live object.
            *new = merged;
        }
        _ => {
            if has_status {
                if let Some(obj) = new.as_object_mut() {
                    match old.get("status") {
                        Some(s) => obj.insert("status".into(), s.clone()),
                        None => obj.remove("status"),
                    };
                }
            }
        }
    }
    let old_meta = meta(old).cloned().unwrap_or_default();
    let changed = spec_part(old) != spec_part(new);
    let m = meta_mut(new);
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "namespace",
        "name",
    ] {
        match old_meta.get(field) {
            Some(v) => m.insert(field.into(), v.clone()),
            None => m.remove(field),
        };
    }
    if let Some(generation) = old_meta.get("generation").and_then(Value::as_i64) {
        let next = if changed { generation + 1 } else { generation };
        m.insert("generation".into(), Value::from(next));
    }
}

pub fn finalizers(obj: &Value) -> Vec<String> {
    meta(obj)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

pub fn is_deleting(obj: &Value) -> bool {
    meta_str(obj, "deletionTimestamp").is_some()
}

/// Metadata as the server stores it: an empty `labels`, `annotations`, `finalizers` or
/// `ownerReferences` is left out, since ObjectMeta omits empty ones when it is encoded
/// (a custom resource's metadata goes through ObjectMeta too).
pub fn drop_empty_metadata(obj: &mut Value) {
    let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    for field in ["labels", "annotations", "finalizers", "ownerReferences"] {
        let empty = match m.get(field) {
            Some(Value::Object(o)) => o.is_empty(),
            Some(Value::Array(a)) => a.is_empty(),
            Some(Value::Null) => true,
            _ => false,
        };
        if empty {
            m.remove(field);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn uids_are_version_4_and_distinct() {
        let (a, b) = (uid(), uid());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
    }

    #[test]
    fn spec_changes_bump_generation_and_status_is_kept_on_main_writes() {
        let old = json!({"metadata": {"name": "a", "uid": "u", "generation": 1}, "spec": {"x": 1}, "status": {"s": 1}});
        let mut new =
            json!({"metadata": {"name": "a", "uid": "evil"}, "spec": {"x": 2}, "status": {"s": 9}});
        carry_over(&old, &mut new, None, true);
        assert_eq!(new["metadata"]["generation"], 2);
        assert_eq!(new["metadata"]["uid"], "u");
        assert_eq!(new["status"]["s"], 1);
    }

    #[test]
    fn status_writes_change_only_status() {
        let old = json!({"metadata": {"name": "a", "generation": 3}, "spec": {"x": 1}});
        let mut new =
            json!({"metadata": {"name": "a"}, "spec": {"x": 5}, "status": {"ready": true}});
        carry_over(&old, &mut new, Some("status"), true);
        assert_eq!(new["spec"]["x"], 1);
        assert_eq!(new["status"]["ready"], true);
        assert_eq!(new["metadata"]["generation"], 3);
    }
}
