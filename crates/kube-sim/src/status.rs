//! Kubernetes `Status` errors: the reason and code every failed request answers with, in
//! the shape client-go and kube-rs decode (`metav1.Status`).

use serde_json::{json, Value};

/// A failed request, rendered as a `Status` object with the matching HTTP code.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: String,
    pub message: String,
    pub details: Option<Value>,
}

/// Group/kind/name of the object an error is about, for `Status.details`.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub group: &'a str,
    pub plural: &'a str,
    pub name: &'a str,
}

impl Subject<'_> {
    fn resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    fn details(&self) -> Value {
        json!({"name": self.name, "group": self.group, "kind": self.plural})
    }
}

impl ApiError {
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.to_string(),
            message: message.into(),
            details: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn not_found(s: Subject<'_>) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{}\" not found", s.resource(), s.name),
        )
        .with_details(s.details())
    }

    pub fn already_exists(s: Subject<'_>) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{}\" already exists", s.resource(), s.name),
        )
        .with_details(s.details())
    }

    /// Optimistic-concurrency failure, worded as the API server words it.
    pub fn conflict(s: Subject<'_>, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{}\": {why}",
                s.resource(),
                s.name
            ),
        )
        .with_details(s.details())
    }

    /// Refused by admission or authorization, worded as `NewForbidden`: the resource and
    /// name, then why.
    pub fn forbidden(s: Subject<'_>, why: &str) -> Self {
        let what = if s.name.is_empty() {
            s.resource()
        } else {
            format!("{} \"{}\"", s.resource(), s.name)
        };
        let mut details = json!({"group": s.group, "kind": s.plural});
        if !s.name.is_empty() {
            details["name"] = json!(s.name);
        }
        Self::new(403, "Forbidden", format!("{what} is forbidden: {why}")).with_details(details)
    }

    /// A forbidden non-resource path (`/apis`, `/openapi/v3`): no resource to name.
    pub fn forbidden_path(why: &str) -> Self {
        Self::new(403, "Forbidden", format!("forbidden: {why}")).with_details(json!({}))
    }

    /// Adds `causes` to the details.
    pub fn with_causes(mut self, causes: Vec<Value>) -> Self {
        let details = self.details.get_or_insert_with(|| json!({}));
        details["causes"] = Value::Array(causes);
        self
    }

    /// A JSON patch whose `test` operation failed: the generic 422 with empty details.
    pub fn rejected_request() -> Self {
        Self::new(
            422,
            "Invalid",
            "the server rejected our request due to an error in our request",
        )
        .with_details(json!({}))
    }

    pub fn invalid(kind: &str, group: &str, name: &str, causes: Vec<Value>) -> Self {
        let detail: Vec<String> = causes
            .iter()
            .map(|c| {
                format!(
                    "{}: {}",
                    c.get("field").and_then(Value::as_str).unwrap_or(""),
                    c.get("message").and_then(Value::as_str).unwrap_or("")
                )
            })
            .collect();
        let what = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        // An aggregate of several errors prints as `[a, b]`, one alone as itself.
        let detail = match detail.as_slice() {
            [one] => one.clone(),
            many => format!("[{}]", many.join(", ")),
        };
        let mut details = json!({"kind": kind, "causes": causes});
        // Empty name and group are left out, as metav1.StatusDetails omits them.
        if !name.is_empty() {
            details["name"] = json!(name);
        }
        if !group.is_empty() {
            details["group"] = json!(group);
        }
        Self::new(
            422,
            "Invalid",
            format!("{what} \"{name}\" is invalid: {detail}"),
        )
        .with_details(details)
    }

    /// A resourceVersion the server has not reached: what the watch cache answers after
    /// waiting for it (a client ahead of a server that lost writes, or of another one).
    pub fn too_large_resource_version(asked: u64, current: u64) -> Self {
        Self::new(
            504,
            "Timeout",
            format!("Timeout: Too large resource version: {asked}, current: {current}"),
        )
        .with_details(json!({
            "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
            "retryAfterSeconds": 1
        }))
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml; got {content_type:?}"),
        )
    }

    pub fn path_not_found() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    /// A watch or list from a resourceVersion older than the kept event window.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    pub fn service_unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }

    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        // StatusReasonUnknown is the empty reason, which metav1.Status omits.
        if self.reason.is_empty() {
            if let Some(m) = status.as_object_mut() {
                m.remove("reason");
            }
        }
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

/// The `Status` a successful delete of a finalized-away object answers with.
pub fn success(group: &str, plural: &str, name: &str, uid: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": name, "group": group, "kind": plural, "uid": uid}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_names_the_resource_and_group() {
        let e = ApiError::not_found(Subject {
            group: "helm.m.crossplane.io",
            plural: "releases",
            name: "x",
        });
        let s = e.to_status();
        assert_eq!(s["code"], 404);
        assert_eq!(s["reason"], "NotFound");
        assert_eq!(
            s["message"],
            "releases.helm.m.crossplane.io \"x\" not found"
        );
    }

    #[test]
    fn core_resources_carry_no_group_suffix() {
        let e = ApiError::already_exists(Subject {
            group: "",
            plural: "namespaces",
            name: "a",
        });
        assert_eq!(e.message, "namespaces \"a\" already exists");
        assert_eq!(e.code, 409);
    }
}
