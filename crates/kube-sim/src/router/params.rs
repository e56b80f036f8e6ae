//! A resource request's parts as the verbs take them: the query (write, list and delete
//! options), the headers that matter (Accept, Content-Type, User-Agent) and the body,
//! read whole; and the verb the API server would name the request by.

use std::collections::HashMap;

use bytes::Bytes;
use http::{header, Method};
use http_body_util::BodyExt;
use serde_json::Value;

use super::path::Resolved;
use crate::cluster::Shared;
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::ApiError;
use crate::verbs::{DeleteOpts, ListOpts, PatchKind, Validation, WriteOpts};
use crate::wire::query;

/// A request to a resource path, read whole.
pub(super) struct ResourceRequest {
    pub method: Method,
    pub query: HashMap<String, String>,
    pub accept: String,
    pub content_type: String,
    pub write: WriteOpts,
    pub body: Bytes,
    /// For the audit log, as kube-apiserver's audit events carry `userAgent`.
    pub user_agent: String,
}

impl ResourceRequest {
    pub(super) async fn read(req: http::Request<hyper::body::Incoming>) -> Result<Self, ApiError> {
        let query = query(req.uri().query());
        let accept = header_str(&req, header::ACCEPT, "");
        let content_type = header_str(&req, header::CONTENT_TYPE, "");
        let user_agent = header_str(&req, header::USER_AGENT, "unknown");
        let method = req.method().clone();
        let body = match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return Err(ApiError::bad_request("cannot read the request body")),
        };
        let mut write = write_opts(&query, &user_agent);
        // An apply names its manager itself: the server defaults it for no apply.
        if PatchKind::from_content_type(&content_type) == Some(PatchKind::Apply)
            && method == Method::PATCH
        {
            write.manager = query.get("fieldManager").cloned().unwrap_or_default();
        }
        Ok(Self {
            method,
            query,
            accept,
            content_type,
            write,
            body,
            user_agent,
        })
    }

    /// A GET of a collection with `watch`: answered by a stream, not a verb.
    pub(super) fn is_watch(&self, t: &Resolved<'_>) -> bool {
        self.method == Method::GET && t.name.is_none() && is_true(self.query.get("watch"))
    }

    fn patch_kind(&self) -> Option<PatchKind> {
        PatchKind::from_content_type(&self.content_type)
    }

    /// The verb as `apiserver_request_total` labels it.
    pub(super) fn verb(&self, t: &Resolved<'_>) -> &'static str {
        match (&self.method, t.name.is_some()) {
            _ if self.is_watch(t) => "watch",
            (&Method::GET, false) => "list",
            (&Method::GET, true) => "get",
            (&Method::POST, _) => "create",
            (&Method::PUT, _) => "update",
            (&Method::PATCH, _) if self.patch_kind() == Some(PatchKind::Apply) => "apply",
            (&Method::PATCH, _) => "patch",
            (&Method::DELETE, true) => "delete",
            (&Method::DELETE, false) => "deletecollection",
            _ => "other",
        }
    }

    /// Whether the request changes something, so that it belongs in the audit log: a dry
    /// run does not.
    pub(super) fn mutates(&self) -> bool {
        let dry_run = self.write.dry_run
            || (self.method == Method::DELETE && self.delete_opts().is_ok_and(|o| o.dry_run));
        !dry_run
            && matches!(
                self.method,
                Method::POST | Method::PUT | Method::PATCH | Method::DELETE
            )
    }

    /// A create or update body: JSON or YAML, or protobuf from kubectl's typed clients.
    pub(super) fn object(&self) -> Result<Value, ApiError> {
        if crate::protobuf::is_protobuf(&self.content_type) {
            return crate::protobuf::decode(&self.body);
        }
        parse_json(&self.body)
    }

    pub(super) fn list_opts(&self, sh: &Shared, res: usize) -> Result<ListOpts, ApiError> {
        list_opts(sh, res, &self.query)
    }

    /// DeleteOptions from the query and the body.
    pub(super) fn delete_opts(&self) -> Result<DeleteOpts, ApiError> {
        let b: Value = if self.body.is_empty() {
            Value::Null
        } else {
            parse_json(&self.body)?
        };
        let s = |v: &Value| v.as_str().map(String::from);
        Ok(DeleteOpts {
            dry_run: self.query.get("dryRun").is_some_and(|d| d == "All")
                || b["dryRun"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|d| d == "All")),
            propagation: self
                .query
                .get("propagationPolicy")
                .cloned()
                .or_else(|| s(&b["propagationPolicy"])),
            uid: s(&b["preconditions"]["uid"]),
            resource_version: s(&b["preconditions"]["resourceVersion"]),
        })
    }

    /// The `includeObject` of a Table request.
    pub(super) fn include_object(&self) -> &str {
        self.query
            .get("includeObject")
            .map(String::as_str)
            .unwrap_or("Metadata")
    }
}

fn header_str(
    req: &http::Request<hyper::body::Incoming>,
    name: header::HeaderName,
    default: &str,
) -> String {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or(default)
        .to_string()
}

pub(super) fn is_true(v: Option<&String>) -> bool {
    v.is_some_and(|v| v == "1" || v == "true")
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
    WriteOpts {
        dry_run: q.get("dryRun").is_some_and(|d| d == "All"),
        // Without fieldManager the API server names the manager after the user agent.
        manager: q.get("fieldManager").cloned().unwrap_or_else(|| {
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

/// List options from the query; a watch takes its selectors from them too.
pub(super) fn list_opts(
    sh: &Shared,
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
