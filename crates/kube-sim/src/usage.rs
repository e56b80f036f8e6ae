//! Crossplane's Usage admission: a DELETE of an object that a Usage names in `spec.of` is
//! refused the way the `nousages.protection.crossplane.io` webhook refuses it (409, the
//! webhook's message as the reason, prefixed by the API server in the message).

use serde_json::Value;

use super::cluster::{key, Shared};
use super::objects::meta_str;
use super::status::ApiError;
use super::store::{Key, Store};

pub const WEBHOOK: &str = "nousages.protection.crossplane.io";

/// A refused deletion and the Usage that refused it.
pub struct Refusal {
    pub error: ApiError,
    pub usage: Key,
    pub replay: bool,
}

/// The Usages (namespaced) naming `target` in `spec.of`, in name order.
pub fn usages_of(sh: &Shared, store: &Store, target: &Key, object: &Value) -> Vec<(Key, Value)> {
    let Some(res) = sh.find("protection.crossplane.io", "v1beta1", "usages") else {
        return Vec::new();
    };
    let (api_version, kind) = (object["apiVersion"].as_str(), object["kind"].as_str());
    store
        .list(res, None, None)
        .filter(|(k, u)| {
            let of = &u["spec"]["of"];
            let ns = of
                .pointer("/resourceRef/namespace")
                .and_then(Value::as_str)
                .unwrap_or(&k.namespace);
            of["apiVersion"].as_str() == api_version
                && of["kind"].as_str() == kind
                && of.pointer("/resourceRef/name").and_then(Value::as_str)
                    == Some(target.name.as_str())
                && ns == target.namespace
        })
        .map(|(k, u)| (k.clone(), (**u).clone()))
        .collect()
}

pub fn refusal(sh: &Shared, store: &Store, target: &Key, object: &Value) -> Option<Refusal> {
    let usages = usages_of(sh, store, target, object);
    let (usage_key, first) = usages.first()?;
    let name = meta_str(first, "name").unwrap_or_default();
    let id = format!("\"{name}\" (in namespace \"{}\")", usage_key.namespace);
    let by = &first["spec"]["by"];
    let msg = match (by["kind"].as_str(), by.pointer("/resourceRef/name").and_then(Value::as_str)) {
        (Some(kind), Some(by_name)) => format!(
            "This resource is in-use by {} usage(s), including the *v1beta1.Usage {id} by resource {kind}/{by_name}.",
            usages.len()
        ),
        _ => match first["spec"]["reason"].as_str() {
            Some(reason) => format!(
                "This resource is in-use by {} usage(s), including the *v1beta1.Usage {id} with reason: \"{reason}\".",
                usages.len()
            ),
            None => format!(
                "This resource is in-use by {} usage(s), including the *v1beta1.Usage {id}.",
                usages.len()
            ),
        },
    };
    let error = ApiError::new(
        409,
        &msg,
        format!("admission webhook \"{WEBHOOK}\" denied the request: {msg}"),
    );
    Some(Refusal {
        error,
        usage: usage_key.clone(),
        replay: first["spec"]["replayDeletion"] == true,
    })
}

/// The `by` object of a Usage, if it still exists.
pub fn by_exists(sh: &Shared, store: &Store, usage_key: &Key, usage: &Value) -> bool {
    let by = &usage["spec"]["by"];
    let (Some(av), Some(kind), Some(name)) = (
        by["apiVersion"].as_str(),
        by["kind"].as_str(),
        by.pointer("/resourceRef/name").and_then(Value::as_str),
    ) else {
        return false;
    };
    let Some(res) = sh.find_kind(av, kind) else {
        return false;
    };
    let ns = if sh.registry[res].namespaced {
        usage_key.namespace.as_str()
    } else {
        ""
    };
    store.get(&key(res, ns, name)).is_some()
}
