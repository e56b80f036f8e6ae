//! Kubernetes label selectors (`matchLabels`, `matchExpressions`) over cluster labels.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::names::{check_label_key, check_label_value};

/// A label selector as Kubernetes writes it. The empty selector matches every cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<Requirement>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl LabelSelector {
    /// The empty selector: it matches every cluster, which a claim should say on purpose.
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }

    /// Problems as (field path below the selector, message), checked the way the API
    /// server checks a `metav1.LabelSelector`.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (key, value) in &self.match_labels {
            if let Err(e) = check_label_key(key) {
                out.push((format!("matchLabels.{key}"), e.to_string()));
            }
            if let Err(e) = check_label_value(value) {
                out.push((format!("matchLabels.{key}"), e.to_string()));
            }
        }
        for (i, r) in self.match_expressions.iter().enumerate() {
            let at = format!("matchExpressions[{i}]");
            if let Err(e) = check_label_key(&r.key) {
                out.push((format!("{at}.key"), e.to_string()));
            }
            match r.operator {
                Operator::In | Operator::NotIn if r.values.is_empty() => out.push((
                    format!("{at}.values"),
                    format!("must not be empty with operator {:?}", r.operator),
                )),
                Operator::Exists | Operator::DoesNotExist if !r.values.is_empty() => out.push((
                    format!("{at}.values"),
                    format!("must be empty with operator {:?}", r.operator),
                )),
                _ => {}
            }
        }
        out
    }
}

impl Requirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::In => value.is_some_and(|v| self.values.contains(v)),
            Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn selector(yaml: &str) -> LabelSelector {
        serde_yaml::from_str(yaml).expect("selector parses")
    }

    #[test]
    fn empty_selector_matches_everything() {
        assert!(LabelSelector::default().matches(&labels(&[])));
    }

    #[test]
    fn match_labels_needs_every_pair() {
        let s = selector("matchLabels: {env: prod, region: eu}");
        assert!(s.matches(&labels(&[("env", "prod"), ("region", "eu"), ("x", "y")])));
        assert!(!s.matches(&labels(&[("env", "prod")])));
    }

    #[test]
    fn expressions_follow_kubernetes_semantics() {
        let s = selector(
            "matchExpressions:\n- {key: env, operator: In, values: [dev, staging]}\n- {key: frozen, operator: DoesNotExist}\n- {key: region, operator: NotIn, values: [us]}",
        );
        assert!(s.matches(&labels(&[("env", "dev")])));
        assert!(!s.matches(&labels(&[("env", "prod")])));
        assert!(!s.matches(&labels(&[("env", "dev"), ("frozen", "")])));
        assert!(!s.matches(&labels(&[("env", "dev"), ("region", "us")])));
        assert!(selector("matchExpressions: [{key: env, operator: Exists}]")
            .matches(&labels(&[("env", "")])));
    }

    #[test]
    fn problems_name_the_bad_part() {
        let s =
            selector("matchLabels: {'bad key': x}\nmatchExpressions: [{key: env, operator: In}]");
        let fields: Vec<_> = s.problems().into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            vec!["matchLabels.bad key", "matchExpressions[0].values"]
        );
    }
}
