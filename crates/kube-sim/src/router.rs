//! Request routing: the cluster prefix and its faults, bearer-token auth, then discovery,
//! OpenAPI, health, and the resource paths (`/api/v1/...`, `/apis/<g>/<v>/...`) mapped to
//! verbs. Every mutating request lands in the audit log.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::Value;

use super::audit::AuditEntry;
use super::cluster::ClusterState;
use super::requests::Counted;
use super::selector::{FieldSelector, LabelSelector};
use super::status::ApiError;
use super::verbs::{self, DeleteOpts, ListOpts, PatchKind, Reply, Target, Validation, WriteOpts};
use super::watch::{self, WatchOpts};
use super::wire::{bearer, error_response, json_response, query, text_response, token_eq, Body};
use super::{discovery, objects, openapi, table, Sim};

/// The connection should be dropped without an answer (an injected "down" cluster).
#[derive(Debug, thiserror::Error)]
#[error("simulated cluster is down")]
pub struct Down;

pub async fn handle(
    sim: Arc<Sim>,
    req: http::Request<hyper::body::Incoming>,
) -> Result<Response<Body>, Down> {
    let path = req.uri().path().to_string();
    if let Some(rest) = path.strip_prefix("/admin") {
        return Ok(super::admin::handle(&sim, req, rest.to_string()).await);
    }
    let Some(rest) = path.strip_prefix("/clusters/") else {
        return Ok(error_response(&ApiError::path_not_found()));
    };
    let (name, sub) = rest
        .split_once('/')
        .map(|(n, s)| (n, format!("/{s}")))
        .unwrap_or((rest, "/".into()));
    let Some(slot) = sim.slot(name) else {
        return Ok(error_response(&ApiError::path_not_found()));
    };
    let faults = slot.faults();
    if faults.down {
        return Err(Down);
    }
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    if !bearer(req.headers()).is_some_and(|t| token_eq(t, &slot.token())) {
        return Ok(error_response(&ApiError::unauthorized()));
    }
    if faults.error_rate > 0.0 {
        let roll =
            f64::from(u32::from_le_bytes(objects::random_bytes::<4>())) / f64::from(u32::MAX);
        if roll < faults.error_rate {
            return Ok(error_response(&ApiError::internal(
                "simulated server error (fault injection)",
            )));
        }
    }
    let prefix = format!("/clusters/{name}");
    let state = sim.state(slot);
    Ok(route(&sim, &state, &prefix, req, &sub).await)
}

async fn route(
    sim: &Arc<Sim>,
    cl: &Arc<ClusterState>,
    prefix: &str,
    req: http::Request<hyper::body::Incoming>,
    path: &str,
) -> Response<Body> {
    let sh = &sim.shared;
    let get = req.method() == Method::GET;
    let mut counted = Counted::new(&sim.requests, if get { "discovery" } else { "other" });
    let path = path.trim_end_matches('/');
    match path {
        "/version" if get => return json_response(200, &discovery::version(), &[]),
        "/healthz" | "/readyz" | "/livez" if get => return text_response(200, "ok"),
        "/api" if get => return json_response(200, &discovery::core_versions(), &[]),
        "/apis" if get => return json_response(200, &discovery::group_list(sh), &[]),
        "/openapi/v3" if get => return json_response(200, &openapi::index(sh, prefix), &[]),
        "/openapi/v2" if get => return error_response(&ApiError::path_not_found()),
        _ => {}
    }
    if let Some(gv) = path.strip_prefix("/openapi/v3/") {
        let (g, v) = match gv.strip_prefix("api/") {
            Some(v) => ("", v),
            None => gv
                .strip_prefix("apis/")
                .and_then(|x| x.split_once('/'))
                .unwrap_or(("?", "?")),
        };
        return match openapi::document(sh, g, v) {
            Some(doc) => json_response(200, &doc, &[]),
            None => error_response(&ApiError::path_not_found()),
        };
    }
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        ["apis", g] if get => {
            return match discovery::group(sh, g) {
                Some(d) => json_response(200, &d, &[]),
                None => error_response(&ApiError::path_not_found()),
            }
        }
        _ => return error_response(&ApiError::path_not_found()),
    };
    if rest.is_empty() {
        return match (get, discovery::resource_list(sh, group, version)) {
            (true, Some(d)) => json_response(200, &d, &[]),
            _ => error_response(&ApiError::path_not_found()),
        };
    }
    let (namespace, plural, name, subresource) = match rest {
        ["namespaces", ns, "status" | "finalize"] if group.is_empty() => {
            (None, "namespaces", Some(*ns), rest.get(2).copied())
        }
        ["namespaces", ns, plural] => (Some(*ns), *plural, None, None),
        ["namespaces", ns, plural, name] => (Some(*ns), *plural, Some(*name), None),
        ["namespaces", ns, plural, name, sub] => (Some(*ns), *plural, Some(*name), Some(*sub)),
        [plural] => (None, *plural, None, None),
        [plural, name] => (None, *plural, Some(*name), None),
        [plural, name, sub] => (None, *plural, Some(*name), Some(*sub)),
        _ => return error_response(&ApiError::path_not_found()),
    };
    let Some(res) = sh.find(group, version, plural) else {
        return error_response(&ApiError::path_not_found());
    };
    let r = &sh.registry[res];
    // A namespace segment on a cluster-scoped type means the path does not exist.
    if namespace.is_some() && !r.namespaced {
        return error_response(&ApiError::path_not_found());
    }
    if subresource.is_some_and(|s| s != "status" || !r.status_subresource) {
        return error_response(&ApiError::path_not_found());
    }
    let q = query(req.uri().query());
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown")
        .to_string();
    let method = req.method().clone();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return error_response(&ApiError::bad_request("cannot read the request body")),
    };
    let namespace = if r.namespaced { namespace } else { None };
    let target = name.map(|n| Target {
        res,
        namespace,
        name: n,
        subresource,
    });
    let write = write_opts(&q, &user_agent);
    counted.verb = match (&method, target.is_some()) {
        (&Method::GET, false) if is_true(q.get("watch")) => "watch",
        (&Method::GET, false) => "list",
        (&Method::GET, true) => "get",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _)
            if PatchKind::from_content_type(&content_type) == Some(PatchKind::Apply) =>
        {
            "apply"
        }
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => "other",
    };
    let result: Result<Reply, ApiError> = match (&method, target.as_ref()) {
        (&Method::GET, None) if is_true(q.get("watch")) => {
            return watch_response(sim, cl, res, namespace, &q, &accept);
        }
        (&Method::GET, None) => {
            list_opts(sh, res, &q).and_then(|o| verbs::list(sh, cl, res, namespace, &o))
        }
        (&Method::GET, Some(t)) => verbs::get(sh, cl, t),
        (&Method::POST, None) => {
            match namespace
                .map(|_| ())
                .or(if r.namespaced { None } else { Some(()) })
            {
                Some(()) => parse_body(&content_type, &body).and_then(|b| {
                    let name = b["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    verbs::create(
                        sh,
                        cl,
                        &Target {
                            res,
                            namespace,
                            name: &name,
                            subresource: None,
                        },
                        b,
                        &write,
                    )
                }),
                None => Err(ApiError::method_not_allowed(
                    "the server does not allow this method on the requested resource",
                )),
            }
        }
        (&Method::PUT, Some(t)) => {
            parse_body(&content_type, &body).and_then(|b| verbs::update(sh, cl, t, b, &write))
        }
        (&Method::PATCH, Some(t)) => match PatchKind::from_content_type(&content_type) {
            Some(kind) => verbs::patch(sh, cl, t, kind, &body, &write),
            None => Err(ApiError::unsupported_media_type(&content_type)),
        },
        (&Method::DELETE, Some(t)) => {
            delete_opts(&q, &body).and_then(|o| verbs::delete(sh, cl, t, &o))
        }
        (&Method::DELETE, None) => delete_collection(sh, cl, res, namespace, &q, &body),
        _ => Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        )),
    };
    // A dry run changes nothing, so it is not in the log of mutating requests.
    let dry_run = write.dry_run
        || (method == Method::DELETE && delete_opts(&q, &body).is_ok_and(|o| o.dry_run));
    if !dry_run
        && matches!(
            method,
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        )
    {
        let name = name.map(String::from).or_else(|| {
            result
                .as_ref()
                .ok()
                .and_then(|r| r.body["metadata"]["name"].as_str().map(String::from))
        });
        sim.audit.record(AuditEntry {
            time: objects::now(),
            cluster: cl.name.clone(),
            verb: counted.verb.into(),
            resource: if r.group.is_empty() {
                r.plural.clone()
            } else {
                format!("{}.{}", r.plural, r.group)
            },
            namespace: namespace.map(String::from),
            name,
            subresource: subresource.map(String::from),
            field_manager: (method != Method::DELETE).then(|| write.manager.clone()),
            code: result.as_ref().map(|r| r.code).unwrap_or_else(|e| e.code),
        });
    }
    match result {
        Ok(reply) if table::wants_table(&accept) && method == Method::GET => {
            let (items, meta) = match reply.body["items"].as_array() {
                Some(items) => (items.clone(), reply.body["metadata"].clone()),
                None => (
                    vec![reply.body.clone()],
                    serde_json::json!({"resourceVersion": reply.body["metadata"]["resourceVersion"]}),
                ),
            };
            let include = q
                .get("includeObject")
                .map(String::as_str)
                .unwrap_or("Metadata");
            json_response(
                200,
                &table::table(r, &items, meta, include),
                &reply.warnings,
            )
        }
        Ok(reply) => json_response(reply.code, &reply.body, &reply.warnings),
        Err(e) => error_response(&e),
    }
}

fn is_true(v: Option<&String>) -> bool {
    v.is_some_and(|v| v == "1" || v == "true")
}

/// A create or update body: JSON or YAML, or protobuf from kubectl's typed clients.
fn parse_body(content_type: &str, body: &[u8]) -> Result<Value, ApiError> {
    if super::protobuf::is_protobuf(content_type) {
        return super::protobuf::decode(body);
    }
    parse_json(body)
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .or_else(|_| serde_yaml::from_slice(body))
        .map_err(|e| ApiError::bad_request(format!("error decoding the request body: {e}")))?;
    if v.is_object() {
        Ok(v)
    } else {
        Err(ApiError::bad_request("the request body must be an object"))
    }
}

fn write_opts(q: &HashMap<String, String>, user_agent: &str) -> WriteOpts {
    let is_apply_manager = q.get("fieldManager").cloned();
    WriteOpts {
        dry_run: q.get("dryRun").is_some_and(|d| d == "All"),
        // Without fieldManager the API server names the manager after the user agent.
        manager: is_apply_manager.unwrap_or_else(|| {
            user_agent
                .split('/')
                .next()
                .unwrap_or("unknown")
                .to_string()
        }),
        validation: match q.get("fieldValidation").map(String::as_str) {
            Some("Strict") => Validation::Strict,
            Some("Ignore") => Validation::Ignore,
            _ => Validation::Warn,
        },
        force: is_true(q.get("force")),
    }
}

fn list_opts(
    sh: &super::cluster::Shared,
    res: usize,
    q: &HashMap<String, String>,
) -> Result<ListOpts, ApiError> {
    Ok(ListOpts {
        labels: LabelSelector::parse(q.get("labelSelector").map(String::as_str).unwrap_or(""))?,
        fields: FieldSelector::parse(
            q.get("fieldSelector").map(String::as_str).unwrap_or(""),
            sh.registry[res].field_selectors(),
        )?,
        limit: q.get("limit").and_then(|l| l.parse().ok()),
        continue_token: q.get("continue").filter(|c| !c.is_empty()).cloned(),
    })
}

fn delete_opts(q: &HashMap<String, String>, body: &[u8]) -> Result<DeleteOpts, ApiError> {
    let b: Value = if body.is_empty() {
        Value::Null
    } else {
        parse_json(body)?
    };
    let s = |v: &Value| v.as_str().map(String::from);
    Ok(DeleteOpts {
        dry_run: q.get("dryRun").is_some_and(|d| d == "All")
            || b["dryRun"]
                .as_array()
                .is_some_and(|a| a.iter().any(|d| d == "All")),
        propagation: q
            .get("propagationPolicy")
            .cloned()
            .or_else(|| s(&b["propagationPolicy"])),
        uid: s(&b["preconditions"]["uid"]),
        resource_version: s(&b["preconditions"]["resourceVersion"]),
    })
}

fn delete_collection(
    sh: &super::cluster::Shared,
    cl: &ClusterState,
    res: usize,
    namespace: Option<&str>,
    q: &HashMap<String, String>,
    body: &[u8],
) -> Result<Reply, ApiError> {
    let lo = list_opts(sh, res, q)?;
    let o = delete_opts(q, body)?;
    let listed = verbs::list(sh, cl, res, namespace, &lo)?;
    let mut deleted = Vec::new();
    for item in listed.body["items"].as_array().into_iter().flatten() {
        let name = item["metadata"]["name"].as_str().unwrap_or_default();
        let ns = item["metadata"]["namespace"].as_str();
        let t = Target {
            res,
            namespace: ns,
            name,
            subresource: None,
        };
        deleted.push(verbs::delete(sh, cl, &t, &o)?.body);
    }
    let mut reply = listed;
    reply.body["items"] = Value::Array(deleted);
    Ok(reply)
}

fn watch_response(
    sim: &Arc<Sim>,
    cl: &Arc<ClusterState>,
    res: usize,
    namespace: Option<&str>,
    q: &HashMap<String, String>,
    accept: &str,
) -> Response<Body> {
    let sh = &sim.shared;
    let lo = match list_opts(sh, res, q) {
        Ok(o) => o,
        Err(e) => return error_response(&e),
    };
    let o = WatchOpts {
        labels: lo.labels,
        fields: lo.fields,
        resource_version: q.get("resourceVersion").cloned(),
        bookmarks: is_true(q.get("allowWatchBookmarks")),
        send_initial_events: is_true(q.get("sendInitialEvents")),
        timeout: q
            .get("timeoutSeconds")
            .and_then(|t| t.parse().ok())
            .map(Duration::from_secs),
    };
    let table = table::wants_table(accept).then(|| {
        (
            sh.registry[res].clone(),
            q.get("includeObject")
                .cloned()
                .unwrap_or_else(|| "Metadata".into()),
        )
    });
    match watch::start(sh.clone(), cl.clone(), res, namespace.map(String::from), o) {
        Ok(rx) => {
            let stream = futures::stream::unfold(rx, move |mut rx| {
                let table = table.clone();
                async move {
                    let chunk = rx.recv().await?;
                    let chunk = match &table {
                        Some((r, include)) => as_table_event(r, include, &chunk).unwrap_or(chunk),
                        None => chunk,
                    };
                    Some((Ok::<_, Infallible>(Frame::data(chunk)), rx))
                }
            });
            let mut resp = Response::new(BodyExt::boxed_unsync(StreamBody::new(stream)));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            resp.headers_mut().insert(
                header::CACHE_CONTROL,
                header::HeaderValue::from_static("no-cache, private"),
            );
            resp
        }
        Err(e) => error_response(&e),
    }
}

/// kubectl `get -w` asks for Table rows in watch events too.
fn as_table_event(r: &super::crds::ResourceType, include: &str, chunk: &Bytes) -> Option<Bytes> {
    let mut e: Value = serde_json::from_slice(chunk).ok()?;
    if e["type"] == "ERROR" || e["type"] == "BOOKMARK" {
        return None;
    }
    let meta = serde_json::json!({"resourceVersion": e["object"]["metadata"]["resourceVersion"]});
    e["object"] = table::table(r, &[e["object"].clone()], meta, include);
    let mut s = e.to_string();
    s.push('\n');
    Some(Bytes::from(s))
}
