//! Request routing: the cluster the connection's TLS server name chooses and its faults, bearer-token auth, then what the
//! path addresses (`path`): discovery, OpenAPI and health answered from the path alone,
//! resource paths (`/api/v1/...`, `/apis/<g>/<v>/...`) answered by a verb with the
//! request's options (`params`). Every mutating request lands in the audit log; `/admin`,
//! on a connection without a cluster's server name, goes to [`crate::admin`].

mod params;
mod path;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, Method, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::Value;

use self::params::{is_true, ResourceRequest};
use self::path::{Endpoint, Resolved};
use crate::audit::AuditEntry;
use crate::cluster::{ClusterState, Shared};
use crate::crds::ResourceType;
use crate::requests::Counted;
use crate::sim::{ClusterSlot, Sim};
use crate::status::ApiError;
use crate::verbs::{self, PatchKind, Reply, Target};
use crate::watch::{self, WatchOpts};
use crate::wire::{bearer, error_response, json_response, text_response, token_eq, Body};
use crate::{admin, discovery, kubeconfig, objects, openapi, table, wire};

/// The connection should be dropped without an answer (an injected "down" cluster).
#[derive(Debug, thiserror::Error)]
#[error("simulated cluster is down")]
pub struct Down;

/// Every request on the listener. On a connection whose TLS server name is a cluster's
/// (`<cluster>.kube-sim.test`), that cluster's API at the root; on any other, `/admin/...`.
pub async fn handle(
    sim: Arc<Sim>,
    server_name: Option<Arc<str>>,
    req: http::Request<hyper::body::Incoming>,
) -> Result<Response<Body>, Down> {
    let path = req.uri().path().to_string();
    let cluster = server_name
        .as_deref()
        .and_then(kubeconfig::cluster_of_server_name);
    let Some(name) = cluster else {
        return Ok(match path.strip_prefix("/admin") {
            Some(rest) => admin::handle(&sim, req, rest.to_string()).await,
            None => error_response(&ApiError::path_not_found()),
        });
    };
    let Some(slot) = sim.slot(name) else {
        return Ok(error_response(&ApiError::path_not_found()));
    };
    let anonymous = match admit(slot, req.headers()).await? {
        Admitted::Refused(refused) => return Ok(refused),
        Admitted::Anonymous => true,
        Admitted::User => false,
    };
    let state = sim.state(slot);
    Ok(route(&sim, &state, req, &path, anonymous).await)
}

/// Who a request is, once its cluster let it through.
enum Admitted {
    /// The cluster's bearer token.
    User,
    /// No credentials at all: `system:anonymous`, whom RBAC lets read only the public
    /// info (health, version), as kube-apiserver's default anonymous auth does.
    Anonymous,
    /// The answer of a refused request (a wrong token, an injected error).
    Refused(Response<Body>),
}

/// The plain-text 404 Go's mux answers for a path nothing serves (an unknown resource in
/// a known group included), before any Status is written.
fn page_not_found() -> Response<Body> {
    text_response(404, "404 page not found\n")
}

/// The verb RBAC checks a request to a resource path for.
fn rbac_verb(method: &Method, named: bool, watch: bool) -> &'static str {
    match (method, named) {
        (&Method::GET, false) if watch => "watch",
        (&Method::GET, false) => "list",
        (&Method::GET, true) => "get",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => "unknown",
    }
}

/// The 403 RBAC answers `system:anonymous` with, for a path or a resource.
fn anonymous_forbidden(
    req: &http::Request<hyper::body::Incoming>,
    path: &str,
    resource: Option<&path::ResourcePath<'_>>,
) -> Response<Body> {
    const WHO: &str = "User \"system:anonymous\"";
    let Some(p) = resource else {
        let verb = req.method().as_str().to_lowercase();
        return error_response(&ApiError::forbidden_path(&format!(
            "{WHO} cannot {verb} path \"{path}\""
        )));
    };
    let watch = wire::query(req.uri().query())
        .get("watch")
        .is_some_and(|w| w == "1" || w == "true");
    let verb = rbac_verb(req.method(), p.name.is_some(), watch);
    let resource = match p.subresource {
        Some(sub) => format!("{}/{sub}", p.plural),
        None => p.plural.to_string(),
    };
    let scope = match p.namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".to_string(),
    };
    let subject = crate::status::Subject {
        group: p.group,
        plural: p.plural,
        name: p.name.unwrap_or_default(),
    };
    error_response(&ApiError::forbidden(
        subject,
        &format!(
            "{WHO} cannot {verb} resource \"{resource}\" in API group \"{}\" {scope}",
            p.group
        ),
    ))
}

/// The cluster's injected faults and its bearer token, in the order a request meets them:
/// a down cluster drops it, latency delays it, a bad token is refused before an injected
/// error is rolled. `Some` is the answer of a refused request.
async fn admit(slot: &ClusterSlot, headers: &HeaderMap) -> Result<Admitted, Down> {
    let faults = slot.faults();
    if faults.down {
        return Err(Down);
    }
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    let who = if headers.get(header::AUTHORIZATION).is_none() {
        Admitted::Anonymous
    } else if bearer(headers).is_some_and(|t| token_eq(t, &slot.token())) {
        Admitted::User
    } else {
        return Ok(Admitted::Refused(error_response(&ApiError::unauthorized())));
    };
    if faults.error_rate > 0.0 {
        let roll =
            f64::from(u32::from_le_bytes(objects::random_bytes::<4>())) / f64::from(u32::MAX);
        if roll < faults.error_rate {
            return Ok(Admitted::Refused(error_response(&ApiError::internal(
                "simulated server error (fault injection)",
            ))));
        }
    }
    Ok(who)
}

/// A request to one cluster: what its path addresses, then the answer. Counted once under
/// its final verb, whichever way it returns.
async fn route(
    sim: &Arc<Sim>,
    cl: &Arc<ClusterState>,
    req: http::Request<hyper::body::Incoming>,
    path: &str,
    anonymous: bool,
) -> Response<Body> {
    let sh = &sim.shared;
    let get = req.method() == Method::GET;
    let mut counted = Counted::new(&sim.requests, if get { "discovery" } else { "other" });
    let resource = match Endpoint::parse(path.trim_end_matches('/'), get) {
        Endpoint::Resource(p) if anonymous => return anonymous_forbidden(&req, path, Some(&p)),
        Endpoint::Resource(p) => p,
        endpoint @ (Endpoint::Health(_) | Endpoint::Version) => {
            return describe(sh, cl, endpoint, req.uri().query())
        }
        _ if anonymous => return anonymous_forbidden(&req, path, None),
        endpoint => return describe(sh, cl, endpoint, req.uri().query()),
    };
    let Some(t) = resource.resolve(sh).filter(|t| cl.serves(sh, t.res)) else {
        return page_not_found();
    };
    let request = match ResourceRequest::read(req).await {
        Ok(r) => r,
        Err(e) => return error_response(&e),
    };
    counted.verb = request.verb(&t);
    if request.is_watch(&t) {
        return watch_response(sim, cl, &t, &request);
    }
    let result = call(sh, cl, &t, &request);
    if request.mutates() {
        audit(sim, cl, &t, &request, counted.verb, &result);
    }
    respond(&sh.registry[t.res], &request, result)
}

/// Discovery, OpenAPI and health: what the path alone decides.
fn describe(
    sh: &Shared,
    cl: &ClusterState,
    endpoint: Endpoint<'_>,
    query: Option<&str>,
) -> Response<Body> {
    let served = || cl.served(sh);
    let found = match endpoint {
        Endpoint::Version => Some(discovery::version()),
        Endpoint::Health(check) => return text_response(200, discovery::health(check, query)),
        Endpoint::OpenApiV2 => Some(openapi::v2(sh, &served())),
        Endpoint::CoreVersions => Some(discovery::core_versions()),
        Endpoint::Groups => Some(discovery::group_list(sh, &served())),
        Endpoint::OpenApiIndex => Some(openapi::index(sh, &served())),
        Endpoint::OpenApiDocument { group, version } => {
            openapi::document(sh, &served(), group, version)
        }
        Endpoint::Group(g) => discovery::group(sh, &served(), g),
        Endpoint::Resources { group, version } => {
            discovery::resource_list(sh, &served(), group, version)
        }
        Endpoint::Resource(_) | Endpoint::NotFound => None,
    };
    match found {
        Some(doc) => json_response(200, &doc, &[]),
        None => page_not_found(),
    }
}

/// The verb a request to a resource path calls (a watch excepted).
fn call(
    sh: &Shared,
    cl: &ClusterState,
    t: &Resolved<'_>,
    request: &ResourceRequest,
) -> Result<Reply, ApiError> {
    let not_allowed = || {
        ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        )
    };
    let write = &request.write;
    match (&request.method, t.object()) {
        (&Method::GET, None) => request
            .list_opts(sh, t.res)
            .and_then(|o| verbs::list(sh, cl, t.res, t.namespace, &o)),
        (&Method::GET, Some(o)) => verbs::get(sh, cl, &o),
        // A namespaced type is created in a namespace only.
        (&Method::POST, None) if t.namespace.is_none() && sh.registry[t.res].namespaced => {
            Err(not_allowed())
        }
        (&Method::POST, None) => request.object().and_then(|b| {
            let name = b["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let o = Target {
                res: t.res,
                namespace: t.namespace,
                name: &name,
                subresource: None,
            };
            verbs::create(sh, cl, &o, b, write)
        }),
        (&Method::PUT, Some(o)) => request
            .object()
            .and_then(|b| verbs::update(sh, cl, &o, b, write)),
        (&Method::PATCH, Some(o)) => match PatchKind::from_content_type(&request.content_type) {
            Some(kind) => verbs::patch(sh, cl, &o, kind, &request.body, write),
            None => Err(ApiError::unsupported_media_type(&request.content_type)),
        },
        (&Method::DELETE, Some(o)) => request
            .delete_opts()
            .and_then(|d| verbs::delete(sh, cl, &o, &d)),
        (&Method::DELETE, None) => delete_collection(sh, cl, t, request),
        _ => Err(not_allowed()),
    }
}

/// The audit log entry of a mutating request, refused ones included.
fn audit(
    sim: &Sim,
    cl: &ClusterState,
    t: &Resolved<'_>,
    request: &ResourceRequest,
    verb: &'static str,
    result: &Result<Reply, ApiError>,
) {
    let r = &sim.shared.registry[t.res];
    // A create names its object in the body.
    let name = t.name.map(String::from).or_else(|| {
        result
            .as_ref()
            .ok()
            .and_then(|r| r.body["metadata"]["name"].as_str().map(String::from))
    });
    sim.audit.record(AuditEntry {
        time: objects::now(),
        cluster: cl.name.clone(),
        verb: verb.into(),
        resource: if r.group.is_empty() {
            r.plural.clone()
        } else {
            format!("{}.{}", r.plural, r.group)
        },
        namespace: t.namespace.map(String::from),
        name,
        subresource: t.subresource.map(String::from),
        field_manager: (request.method != Method::DELETE).then(|| request.write.manager.clone()),
        code: result.as_ref().map(|r| r.code).unwrap_or_else(|e| e.code),
        user_agent: Some(request.user_agent.clone()),
    });
}

/// The verb's answer: JSON, a Table when kubectl asks a GET for one, or a Status.
fn respond(
    r: &ResourceType,
    request: &ResourceRequest,
    result: Result<Reply, ApiError>,
) -> Response<Body> {
    match result {
        Ok(reply) if table::wants_table(&request.accept) && request.method == Method::GET => {
            let (items, meta) = match reply.body["items"].as_array() {
                Some(items) => (items.clone(), reply.body["metadata"].clone()),
                None => (
                    vec![reply.body.clone()],
                    serde_json::json!({"resourceVersion": reply.body["metadata"]["resourceVersion"]}),
                ),
            };
            json_response(
                200,
                &table::table(r, &items, meta, request.include_object()),
                &reply.warnings,
            )
        }
        Ok(reply) => json_response(reply.code, &reply.body, &reply.warnings),
        Err(e) => error_response(&e),
    }
}

fn delete_collection(
    sh: &Shared,
    cl: &ClusterState,
    t: &Resolved<'_>,
    request: &ResourceRequest,
) -> Result<Reply, ApiError> {
    let lo = request.list_opts(sh, t.res)?;
    let o = request.delete_opts()?;
    let listed = verbs::list(sh, cl, t.res, t.namespace, &lo)?;
    let mut deleted = Vec::new();
    for item in listed.body["items"].as_array().into_iter().flatten() {
        let name = item["metadata"]["name"].as_str().unwrap_or_default();
        let ns = item["metadata"]["namespace"].as_str();
        let t = Target {
            res: t.res,
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

/// A watch: its events as a chunked body, each a Table row when the client asks for
/// Tables (kubectl `get -w`).
fn watch_response(
    sim: &Arc<Sim>,
    cl: &Arc<ClusterState>,
    t: &Resolved<'_>,
    request: &ResourceRequest,
) -> Response<Body> {
    let sh = &sim.shared;
    let (res, q) = (t.res, &request.query);
    let lo = match request.list_opts(sh, res) {
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
    let table = table::wants_table(&request.accept).then(|| {
        (
            sh.registry[res].clone(),
            request.include_object().to_string(),
        )
    });
    match watch::start(
        sh.clone(),
        cl.clone(),
        res,
        t.namespace.map(String::from),
        o,
    ) {
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
fn as_table_event(r: &ResourceType, include: &str, chunk: &Bytes) -> Option<Bytes> {
    let mut e: Value = serde_json::from_slice(chunk).ok()?;
    if e["type"] == "ERROR" || e["type"] == "BOOKMARK" {
        return None;
    }
    let meta = serde_json::json!({"resourceVersion": e["object"]["metadata"]["resourceVersion"]});
    let rows = table::table(r, &[e["object"].take()], meta, include);
    Some(watch::line(e["type"].as_str()?, &rows))
}
