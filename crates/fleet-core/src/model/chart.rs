//! The two charts a `Psql` claim installs, with the coordinates and default values of the
//! reference composition (SPEC 1.3, 1.4).

use std::fmt;

use serde_json::{json, Map, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Chart {
    Stackgres,
    Atlas,
}

impl Chart {
    pub const ALL: [Chart; 2] = [Chart::Stackgres, Chart::Atlas];

    /// The chart's name, which is also the key of its pin in `fleet.yaml`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Stackgres => "stackgres-operator",
            Self::Atlas => "atlas-operator",
        }
    }

    pub fn repository(self) -> &'static str {
        match self {
            Self::Stackgres => "https://stackgres.io/downloads/stackgres-k8s/stackgres/helm/",
            Self::Atlas => "oci://ghcr.io/ariga/charts",
        }
    }

    /// The version the reference composition pins when the fleet says nothing.
    pub fn default_version(self) -> &'static str {
        match self {
            Self::Stackgres => "1.18.4",
            Self::Atlas => "0.7.23",
        }
    }

    /// Values the reference composition sets before the claim's own are merged in.
    pub fn default_values(self) -> Map<String, Value> {
        let value = match self {
            Self::Stackgres => json!({"deploy": {"operator": true, "restapi": true}}),
            Self::Atlas => json!({"prewarmDevDB": true}),
        };
        match value {
            Value::Object(map) => map,
            _ => unreachable!("default values are literal objects"),
        }
    }

    /// The short component name used in metrics and status (`stackgres`, `atlas`).
    pub fn component(self) -> &'static str {
        match self {
            Self::Stackgres => "stackgres",
            Self::Atlas => "atlas",
        }
    }

    pub fn from_name(name: &str) -> Option<Chart> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }
}

impl fmt::Display for Chart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
