//! The simulated chart repository: which chart versions exist (an unknown version fails
//! the install the way a missing chart does) and which Deployments each chart creates.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chart {
    pub versions: Vec<String>,
    /// Names of the operator Deployments an install creates in the install namespace.
    pub deployments: Vec<String>,
}

/// Chart name -> chart; loaded from YAML (`charts: {name: {versions, deployments}}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Catalogue {
    pub charts: BTreeMap<String, Chart>,
}

impl Default for Catalogue {
    fn default() -> Self {
        let chart = |versions: &[&str], deployments: &[&str]| Chart {
            versions: versions.iter().map(|s| s.to_string()).collect(),
            deployments: deployments.iter().map(|s| s.to_string()).collect(),
        };
        let mut charts = BTreeMap::new();
        charts.insert(
            "stackgres-operator".into(),
            chart(
                &["1.17.0", "1.17.1", "1.17.2", "1.17.4", "1.18.4", "1.19.0"],
                &["stackgres-operator", "stackgres-restapi"],
            ),
        );
        charts.insert(
            "atlas-operator".into(),
            chart(
                &["0.7.0", "0.7.10", "0.7.20", "0.7.22", "0.7.23"],
                &["atlas-operator"],
            ),
        );
        Self { charts }
    }
}

impl Catalogue {
    pub fn from_yaml(text: &str) -> Result<Self, serde_yaml::Error> {
        serde_yaml::from_str(text)
    }

    /// The chart when `version` exists; otherwise the error Helm's pull fails with.
    pub fn resolve(
        &self,
        name: &str,
        version: &str,
        repository: &str,
    ) -> Result<&Chart, PullError> {
        match self.charts.get(name) {
            Some(c) if c.versions.iter().any(|v| v == version) => Ok(c),
            Some(_) => Err(PullError::VersionNotFound {
                name: name.into(),
                version: version.into(),
                repository: repository.into(),
            }),
            None => Err(PullError::ChartNotFound {
                name: name.into(),
                repository: repository.into(),
            }),
        }
    }
}

/// Why a chart cannot be installed, worded as Helm's pull words it (the Release's
/// conditions and Events carry the message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PullError {
    /// The repository has the chart, but not that version.
    #[error("failed to pull chart: chart \"{name}\" version \"{version}\" not found in {repository} repository")]
    VersionNotFound {
        name: String,
        version: String,
        repository: String,
    },
    /// The repository has no chart of that name.
    #[error("failed to pull chart: chart \"{name}\" not found in {repository} repository")]
    ChartNotFound { name: String, repository: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_catalogue_holds_the_pinned_versions_and_refuses_others() {
        let c = Catalogue::default();
        assert!(c.resolve("stackgres-operator", "1.18.4", "r").is_ok());
        assert!(c.resolve("atlas-operator", "0.7.23", "r").is_ok());
        let e = c
            .resolve("stackgres-operator", "9.9.9", "r")
            .unwrap_err()
            .to_string();
        assert!(e.contains("version \"9.9.9\" not found"));
    }

    #[test]
    fn pull_errors_are_worded_as_helm_words_them() {
        let c = Catalogue::default();
        assert_eq!(
            c.resolve("stackgres-operator", "9.9.9", "https://r")
                .unwrap_err()
                .to_string(),
            "failed to pull chart: chart \"stackgres-operator\" version \"9.9.9\" not found in https://r repository"
        );
        assert_eq!(
            c.resolve("nope", "1.0.0", "https://r")
                .unwrap_err()
                .to_string(),
            "failed to pull chart: chart \"nope\" not found in https://r repository"
        );
    }
}
