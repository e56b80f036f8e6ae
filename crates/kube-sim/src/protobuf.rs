//! Request bodies in `application/vnd.kubernetes.protobuf`, which kubectl's typed clients
//! send (`kubectl create namespace`): the `k8s\0` envelope around a `runtime.Unknown`
//! (typeMeta, raw, contentEncoding, contentType) and the few built-in messages the
//! simulator can decode completely (Namespace, Secret). Anything else, or any field this reader
//! does not know, is refused with 415 rather than silently dropped.

use serde_json::{json, Map, Value};

use super::status::ApiError;

pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";
const MAGIC: &[u8] = b"k8s\0";

fn unsupported(what: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        415,
        "UnsupportedMediaType",
        format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml ({what} cannot be decoded from {CONTENT_TYPE} by this server)"),
    )
}

fn malformed() -> ApiError {
    ApiError::bad_request("error decoding the request body: malformed protobuf")
}

enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

/// The fields of one message, in wire order.
fn fields(mut b: &[u8]) -> Result<Vec<(u64, Wire<'_>)>, ApiError> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let tag = varint(&mut b)?;
        let (number, wire) = (tag >> 3, tag & 7);
        let value = match wire {
            0 => Wire::Varint(varint(&mut b)?),
            2 => {
                let len = usize::try_from(varint(&mut b)?).map_err(|_| malformed())?;
                if len > b.len() {
                    return Err(malformed());
                }
                let (v, rest) = b.split_at(len);
                b = rest;
                Wire::Bytes(v)
            }
            // No field of the decoded messages uses fixed-width or group encodings.
            _ => return Err(malformed()),
        };
        out.push((number, value));
    }
    Ok(out)
}

fn varint(b: &mut &[u8]) -> Result<u64, ApiError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = b.split_first().ok_or_else(malformed)?;
        *b = rest;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(malformed())
}

fn string(w: &Wire<'_>) -> Result<String, ApiError> {
    match w {
        Wire::Bytes(b) => String::from_utf8(b.to_vec()).map_err(|_| malformed()),
        Wire::Varint(_) => Err(malformed()),
    }
}

fn bytes<'a>(w: &Wire<'a>) -> Result<&'a [u8], ApiError> {
    match w {
        Wire::Bytes(b) => Ok(b),
        Wire::Varint(_) => Err(malformed()),
    }
}

fn int(w: &Wire<'_>) -> Result<i64, ApiError> {
    match w {
        // int64 fields carry two's complement in ten bytes.
        Wire::Varint(v) => Ok(*v as i64),
        Wire::Bytes(_) => Err(malformed()),
    }
}

/// Sets `key` unless the value is the zero value: gogo-protobuf writes empty strings and
/// zero numbers that the JSON form omits (`omitempty`).
fn set(m: &mut Map<String, Value>, key: &str, v: Value) {
    let empty = match &v {
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_i64() == Some(0),
        Value::Null => true,
        _ => false,
    };
    if !empty {
        m.insert(key.into(), v);
    }
}

fn time(b: &[u8]) -> Result<Value, ApiError> {
    let (mut seconds, mut nanos) = (0i64, 0i64);
    for (n, w) in fields(b)? {
        match n {
            1 => seconds = int(&w)?,
            2 => nanos = int(&w)?,
            _ => return Err(unsupported("a Time field")),
        }
    }
    if seconds == 0 && nanos == 0 {
        return Ok(Value::Null);
    }
    let t = jiff::Timestamp::from_second(seconds).map_err(|_| malformed())?;
    Ok(Value::String(t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()))
}

fn map_entry(b: &[u8], into: &mut Map<String, Value>) -> Result<(), ApiError> {
    let (mut k, mut v) = (String::new(), String::new());
    for (n, w) in fields(b)? {
        match n {
            1 => k = string(&w)?,
            2 => v = string(&w)?,
            _ => return Err(malformed()),
        }
    }
    into.insert(k, Value::String(v));
    Ok(())
}

fn owner_reference(b: &[u8]) -> Result<Value, ApiError> {
    let mut m = Map::new();
    for (n, w) in fields(b)? {
        match n {
            1 => set(&mut m, "kind", Value::String(string(&w)?)),
            3 => set(&mut m, "name", Value::String(string(&w)?)),
            4 => set(&mut m, "uid", Value::String(string(&w)?)),
            5 => set(&mut m, "apiVersion", Value::String(string(&w)?)),
            6 => {
                m.insert("controller".into(), Value::Bool(int(&w)? != 0));
            }
            7 => {
                m.insert("blockOwnerDeletion".into(), Value::Bool(int(&w)? != 0));
            }
            _ => return Err(unsupported("an ownerReferences field")),
        }
    }
    Ok(Value::Object(m))
}

fn object_meta(b: &[u8]) -> Result<Value, ApiError> {
    let mut m = Map::new();
    let (mut labels, mut annotations) = (Map::new(), Map::new());
    let (mut owners, mut finalizers) = (Vec::new(), Vec::new());
    for (n, w) in fields(b)? {
        let key = match n {
            1 => "name",
            2 => "generateName",
            3 => "namespace",
            4 => "selfLink",
            5 => "uid",
            6 => "resourceVersion",
            7 => {
                set(&mut m, "generation", json!(int(&w)?));
                continue;
            }
            8 => {
                set(&mut m, "creationTimestamp", time(bytes(&w)?)?);
                continue;
            }
            9 => {
                set(&mut m, "deletionTimestamp", time(bytes(&w)?)?);
                continue;
            }
            10 => {
                m.insert("deletionGracePeriodSeconds".into(), json!(int(&w)?));
                continue;
            }
            11 => {
                map_entry(bytes(&w)?, &mut labels)?;
                continue;
            }
            12 => {
                map_entry(bytes(&w)?, &mut annotations)?;
                continue;
            }
            13 => {
                owners.push(owner_reference(bytes(&w)?)?);
                continue;
            }
            14 => {
                finalizers.push(Value::String(string(&w)?));
                continue;
            }
            // managedFields (17) and anything newer: not decoded, so not accepted.
            _ => return Err(unsupported(format!("metadata field {n}"))),
        };
        set(&mut m, key, Value::String(string(&w)?));
    }
    for (key, v) in [
        ("labels", Value::Object(labels)),
        ("annotations", Value::Object(annotations)),
        ("ownerReferences", Value::Array(owners)),
        ("finalizers", Value::Array(finalizers)),
    ] {
        let empty =
            v.as_object().is_some_and(Map::is_empty) || v.as_array().is_some_and(Vec::is_empty);
        if !empty {
            m.insert(key.into(), v);
        }
    }
    Ok(Value::Object(m))
}

fn namespace(raw: &[u8]) -> Result<Value, ApiError> {
    let mut ns =
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {}, "spec": {}, "status": {}});
    for (n, w) in fields(raw)? {
        match n {
            1 => ns["metadata"] = object_meta(bytes(&w)?)?,
            2 => {
                let mut finalizers = Vec::new();
                for (n, w) in fields(bytes(&w)?)? {
                    match n {
                        1 => finalizers.push(Value::String(string(&w)?)),
                        _ => return Err(unsupported(format!("NamespaceSpec field {n}"))),
                    }
                }
                if !finalizers.is_empty() {
                    ns["spec"]["finalizers"] = Value::Array(finalizers);
                }
            }
            3 => {
                for (n, w) in fields(bytes(&w)?)? {
                    match n {
                        1 => set(
                            ns["status"].as_object_mut().ok_or_else(malformed)?,
                            "phase",
                            Value::String(string(&w)?),
                        ),
                        _ => return Err(unsupported(format!("NamespaceStatus field {n}"))),
                    }
                }
            }
            _ => return Err(unsupported(format!("Namespace field {n}"))),
        }
    }
    Ok(ns)
}

/// `v1.Secret` (generated.proto: metadata 1, data 2 as bytes, type 3, stringData 4,
/// immutable 5), which `kubectl create secret` sends; `data` as JSON carries base64.
fn secret(raw: &[u8]) -> Result<Value, ApiError> {
    use base64::Engine;
    let mut secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {}});
    let (mut data, mut string_data) = (Map::new(), Map::new());
    for (n, w) in fields(raw)? {
        match n {
            1 => secret["metadata"] = object_meta(bytes(&w)?)?,
            2 => {
                let (mut k, mut v) = (String::new(), Vec::new());
                for (n, w) in fields(bytes(&w)?)? {
                    match n {
                        1 => k = string(&w)?,
                        2 => v = bytes(&w)?.to_vec(),
                        _ => return Err(malformed()),
                    }
                }
                let encoded = base64::engine::general_purpose::STANDARD.encode(v);
                data.insert(k, Value::String(encoded));
            }
            3 => set(
                secret.as_object_mut().ok_or_else(malformed)?,
                "type",
                Value::String(string(&w)?),
            ),
            4 => map_entry(bytes(&w)?, &mut string_data)?,
            5 => secret["immutable"] = Value::Bool(int(&w)? != 0),
            _ => return Err(unsupported(format!("Secret field {n}"))),
        }
    }
    if !data.is_empty() {
        secret["data"] = Value::Object(data);
    }
    if !string_data.is_empty() {
        secret["stringData"] = Value::Object(string_data);
    }
    Ok(secret)
}

/// Whether a Content-Type header names the protobuf encoding.
pub fn is_protobuf(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|m| m.trim().eq_ignore_ascii_case(CONTENT_TYPE))
}

/// Decodes a protobuf request body into the JSON object the simulator stores.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let envelope = body.strip_prefix(MAGIC).ok_or_else(malformed)?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), None);
    for (n, w) in fields(envelope)? {
        match n {
            1 => {
                for (n, w) in fields(bytes(&w)?)? {
                    match n {
                        1 => api_version = string(&w)?,
                        2 => kind = string(&w)?,
                        _ => return Err(malformed()),
                    }
                }
            }
            2 => raw = Some(bytes(&w)?),
            3 | 4 if bytes(&w)?.is_empty() => {}
            3 => return Err(unsupported("a content-encoded body")),
            4 => return Err(unsupported("an embedded content type")),
            _ => return Err(malformed()),
        }
    }
    let raw = raw.unwrap_or_default();
    match (api_version.as_str(), kind.as_str()) {
        ("v1", "Namespace") => namespace(raw),
        ("v1", "Secret") => secret(raw),
        _ => Err(unsupported(format!("{kind} ({api_version})"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut tag = n << 3 | 2;
        while tag >= 0x80 {
            out.push((tag as u8) | 0x80);
            tag >>= 7;
        }
        out.extend([tag as u8, payload.len() as u8]);
        out.extend_from_slice(payload);
        out
    }

    fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let type_meta = [field(1, api_version.as_bytes()), field(2, kind.as_bytes())].concat();
        [
            MAGIC.to_vec(),
            field(1, &type_meta),
            field(2, raw),
            field(3, b""),
            field(4, b""),
        ]
        .concat()
    }

    #[test]
    fn a_secret_decodes_with_its_bytes_as_base64_and_its_type() {
        let meta = field(1, b"w1-kubeconfig");
        let entry = [field(1, b"value"), field(2, b"apiVersion: v1")].concat();
        let raw = [
            field(1, &meta),
            field(2, &entry),
            field(3, b"cluster.x-k8s.io/secret"),
        ]
        .concat();
        let v = decode(&envelope("v1", "Secret", &raw)).unwrap();
        assert_eq!(v["metadata"]["name"], "w1-kubeconfig");
        assert_eq!(v["data"]["value"], "YXBpVmVyc2lvbjogdjE=");
        assert_eq!(v["type"], "cluster.x-k8s.io/secret");
    }

    #[test]
    fn a_namespace_decodes_with_its_labels_and_zero_values_omitted() {
        let label = [field(1, b"team"), field(2, b"data")].concat();
        let meta = [
            field(1, b"x"),
            field(2, b""),
            field(11, &label),
            field(8, b""),
        ]
        .concat();
        let raw = [field(1, &meta), field(2, b""), field(3, b"")].concat();
        let v = decode(&envelope("v1", "Namespace", &raw)).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": "x", "labels": {"team": "data"}}, "spec": {}, "status": {}})
        );
    }

    #[test]
    fn other_kinds_and_unknown_fields_are_415_and_garbage_is_400() {
        let e = decode(&envelope("apps/v1", "Deployment", b"")).unwrap_err();
        assert_eq!(e.code, 415);
        let meta = field(17, b"");
        let e = decode(&envelope("v1", "Namespace", &field(1, &meta))).unwrap_err();
        assert_eq!(e.code, 415);
        assert_eq!(decode(b"{}").unwrap_err().code, 400);
        assert_eq!(decode(b"k8s\0\x0a\x05ab").unwrap_err().code, 400);
    }
}
