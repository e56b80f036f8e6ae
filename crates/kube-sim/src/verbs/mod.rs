//! The API verbs on one cluster with the API server's semantics: reads (`read`: get,
//! list with continue tokens), creates and updates (`write`, which also holds the commit
//! every write ends in), patches and server-side apply (`patch`) and deletion (`delete`,
//! with finalizers, preconditions and Usage refusals). HTTP parsing lives in the router,
//! watches in [`crate::watch`]; the simulated controllers write through these too.

mod configmap;
mod delete;
mod patch;
mod read;
mod secret;
mod write;

use serde_json::Value;

use crate::cluster::{key, Shared};
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::Subject;
use crate::store::Key;

pub use delete::{delete, FOREGROUND, ORPHAN};
pub use patch::patch;
pub use read::{get, list};
pub use write::{create, update};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validation {
    Strict,
    Warn,
    Ignore,
}

/// Options every write carries (query parameters of the request).
#[derive(Debug, Clone)]
pub struct WriteOpts {
    pub dry_run: bool,
    pub manager: String,
    pub validation: Validation,
    pub force: bool,
}

/// A successful answer: HTTP code, body and `Warning` headers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub code: u16,
    pub body: Value,
    pub warnings: Vec<String>,
}

impl Reply {
    fn ok(code: u16, body: Value) -> Self {
        Self {
            code,
            body,
            warnings: Vec::new(),
        }
    }
}

/// Which object a request addresses.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub res: usize,
    pub namespace: Option<&'a str>,
    pub name: &'a str,
    pub subresource: Option<&'a str>,
}

fn subject<'a>(sh: &'a Shared, res: usize, name: &'a str) -> Subject<'a> {
    let r = &sh.registry[res];
    Subject {
        group: &r.group,
        plural: &r.plural,
        name,
    }
}

fn target_key(t: &Target<'_>) -> Key {
    key(t.res, t.namespace.unwrap_or_default(), t.name)
}

/// The patch content types the server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Apply,
    Merge,
    Json,
    Strategic,
}

impl PatchKind {
    pub fn from_content_type(ct: &str) -> Option<Self> {
        match ct.split(';').next().unwrap_or_default().trim() {
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Some(Self::Apply),
            "application/merge-patch+json" => Some(Self::Merge),
            "application/json-patch+json" => Some(Self::Json),
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            _ => None,
        }
    }
}

/// List parameters, parsed from the query.
#[derive(Debug, Default)]
pub struct ListOpts {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
}

/// DeleteOptions from the request body and query.
#[derive(Debug, Clone, Default)]
pub struct DeleteOpts {
    pub dry_run: bool,
    pub propagation: Option<String>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}
