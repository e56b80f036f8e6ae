//! A desired object of either kind, addressable and serializable the same way.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use serde::Serialize;
use serde_json::Value;

use crate::api::{release, usage, Release, Usage};

/// The kinds psql-fleet writes, in the order rendered output lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum ObjectKind {
    Release,
    Usage,
}

impl ObjectKind {
    pub fn api_version(self) -> &'static str {
        match self {
            Self::Release => release::API_VERSION,
            Self::Usage => usage::API_VERSION,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Release => release::KIND,
            Self::Usage => usage::KIND,
        }
    }
}

/// Where an object lives on its cluster. Orders by kind, then name, then namespace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ObjectRef {
    pub kind: ObjectKind,
    pub name: String,
    pub namespace: String,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind.as_str(), self.namespace, self.name)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum DesiredObject {
    Release(Box<Release>),
    Usage(Box<Usage>),
}

impl DesiredObject {
    pub fn kind(&self) -> ObjectKind {
        match self {
            Self::Release(_) => ObjectKind::Release,
            Self::Usage(_) => ObjectKind::Usage,
        }
    }

    fn metadata(&self) -> &ObjectMeta {
        match self {
            Self::Release(r) => &r.metadata,
            Self::Usage(u) => &u.metadata,
        }
    }

    pub fn labels(&self) -> Option<&BTreeMap<String, String>> {
        self.metadata().labels.as_ref()
    }

    pub fn object_ref(&self) -> ObjectRef {
        let meta = self.metadata();
        ObjectRef {
            kind: self.kind(),
            name: meta.name.clone().unwrap_or_default(),
            namespace: meta.namespace.clone().unwrap_or_default(),
        }
    }

    /// The object as JSON, with `apiVersion` and `kind`, exactly as it is applied.
    pub fn to_json(&self) -> Value {
        let result = match self {
            Self::Release(r) => serde_json::to_value(r),
            Self::Usage(u) => serde_json::to_value(u),
        };
        // Serializing plain structs of strings, maps and numbers into a Value cannot fail.
        result.unwrap_or(Value::Null)
    }
}
