//! Get and list: selectors, `limit` and continue tokens that expire with the event
//! window, as a consistent paginated list does.

use serde_json::{json, Value};

use super::{subject, target_key, ListOpts, Reply, Target};
use crate::cluster::{key, ClusterState, Shared};
use crate::status::ApiError;
use crate::store::Key;

pub fn get(sh: &Shared, cl: &ClusterState, t: &Target<'_>) -> Result<Reply, ApiError> {
    let obj = cl.store().get(&target_key(t));
    obj.map(|o| Reply::ok(200, (*o).clone()))
        .ok_or_else(|| ApiError::not_found(subject(sh, t.res, t.name)))
}

fn encode_continue(rv: u64, last: &Key) -> String {
    use base64::Engine;
    let token = json!({"rv": rv, "ns": last.namespace, "name": last.name});
    base64::engine::general_purpose::STANDARD.encode(token.to_string())
}

fn decode_continue(token: &str, res: usize) -> Result<(u64, Key), ApiError> {
    use base64::Engine;
    let bad = || {
        ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = v["rv"].as_u64().ok_or_else(bad)?;
    let ns = v["ns"].as_str().ok_or_else(bad)?;
    let name = v["name"].as_str().ok_or_else(bad)?;
    Ok((rv, key(res, ns, name)))
}

pub fn list(
    sh: &Shared,
    cl: &ClusterState,
    res: usize,
    namespace: Option<&str>,
    o: &ListOpts,
) -> Result<Reply, ApiError> {
    let r = &sh.registry[res];
    let store = cl.store();
    let after = match &o.continue_token {
        Some(t) => {
            let (rv, k) = decode_continue(t, res)?;
            if store.events_since(rv).is_err() {
                return Err(ApiError::expired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue value from the response to start a consistent list."));
            }
            Some(k)
        }
        None => None,
    };
    let mut items = Vec::new();
    let mut last = None;
    let mut remaining = 0usize;
    for (k, obj) in store.list(res, namespace, after.as_ref()) {
        if !(o.labels.matches(obj) && o.fields.matches(obj)) {
            continue;
        }
        if o.limit.is_some_and(|l| l > 0 && items.len() >= l) {
            remaining += 1;
            continue;
        }
        items.push((**obj).clone());
        last = Some(k.clone());
    }
    let rv = store.resource_version();
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if remaining > 0 {
        if let Some(last) = last {
            metadata["continue"] = Value::String(encode_continue(rv, &last));
            // The server counts what remains only of an unfiltered list: a selector's
            // matches are not known without reading them all.
            if o.labels.is_empty() && o.fields.is_empty() {
                metadata["remainingItemCount"] = Value::from(remaining);
            }
        }
    }
    Ok(Reply::ok(
        200,
        json!({
            "apiVersion": r.api_version(),
            "kind": format!("{}List", r.kind),
            "metadata": metadata,
            "items": items,
        }),
    ))
}
