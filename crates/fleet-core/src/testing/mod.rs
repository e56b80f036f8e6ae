//! Fleets written in code for tests, here and in the other crates (feature `testing`):
//! typed builders for the three kinds of fleet document (`Fleet`, `Cluster`, `Psql`), each
//! serialised from the model's own spec types, so a test says what its fleet holds and
//! never spells the YAML out by hand. Pure: documents become text and a [`FileTree`];
//! writing them to a directory or a Git repository is the test harness's business.
//!
//! ```
//! use fleet_core::testing::{claim, cluster, fleet, wave, FleetFiles};
//! let files = FleetFiles::new()
//!     .with(&fleet("main").pin("stackgres-operator", "1.19.0").wave(wave("dev", &[("env", "dev")])))
//!     .with(&cluster("dev-1").label("env", "dev"))
//!     .with(&claim("app", "dev-1"));
//! let loaded = fleet_core::fleetdir::load(&files.tree());
//! assert!(loaded.fleet.is_some(), "{:?}", loaded.diagnostics);
//! ```

#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "test builders: a document that cannot be written fails the test that built it"
)]

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{json, Value};

use crate::fleetdir::FileTree;
use crate::model::cluster::ClusterSpec;
use crate::model::fleet::{
    DriftPolicy, DriftSettings, FleetSpec, PinOverride, PruneSettings, RolloutSpec, WaveSpec,
};
use crate::model::selector::LabelSelector;
use crate::model::share::ShareSpec;
use crate::model::FLEET_API_VERSION;

mod claim;

pub use claim::{claim, claims_file, component, selector_claim, Claim, ClaimsFile, Component};

/// One file of a fleet directory: where it goes and what it says.
pub trait Document {
    /// Its path in the fleet directory (`fleet.yaml`, `clusters/…`, `claims/…`).
    fn path(&self) -> String;
    /// Its text, as a person would commit it.
    fn to_yaml(&self) -> String;
}

fn labels_of(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn selector(match_labels: &[(&str, &str)]) -> LabelSelector {
    LabelSelector {
        match_labels: labels_of(match_labels),
        ..LabelSelector::default()
    }
}

/// `apiVersion`, `kind`, `metadata` and `spec` as one YAML document.
fn yaml(api_version: &str, kind: &str, metadata: Value, spec: &impl Serialize) -> String {
    let mut doc = json!({"apiVersion": api_version, "kind": kind});
    if metadata.as_object().is_some_and(|m| !m.is_empty()) {
        doc["metadata"] = metadata;
    }
    doc["spec"] = serde_json::to_value(spec).expect("a spec serialises");
    serde_yaml::to_string(&doc).expect("a document serialises")
}

/// The `Fleet` document (`fleet.yaml`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fleet {
    name: Option<String>,
    spec: FleetSpec,
}

/// A `Fleet` named `name` (the inventory label's value) with every setting at its default.
pub fn fleet(name: &str) -> Fleet {
    Fleet {
        name: Some(name.to_string()),
        spec: FleetSpec::default(),
    }
}

impl Fleet {
    /// A `Fleet` named `default`, the name a fleet without `fleet.yaml` has (a
    /// `fleet.yaml` must name its fleet).
    pub fn unnamed() -> Fleet {
        fleet(crate::model::fleet::DEFAULT_FLEET_NAME)
    }

    /// A fleet-wide pin of `chart` (`stackgres-operator` or `atlas-operator`).
    pub fn pin(mut self, chart: &str, version: &str) -> Fleet {
        self.spec.pins.insert(chart.into(), version.into());
        self
    }

    /// Pins for the clusters whose labels match `match_labels`; the first matching override
    /// wins.
    pub fn override_pins(mut self, match_labels: &[(&str, &str)], pins: &[(&str, &str)]) -> Fleet {
        self.spec.overrides.push(PinOverride {
            selector: selector(match_labels),
            pins: labels_of(pins),
        });
        self
    }

    /// The versions `chart` is known to have: a pin outside them is warned about.
    pub fn known_versions(mut self, chart: &str, versions: &[&str]) -> Fleet {
        self.spec.known_versions.insert(
            chart.into(),
            versions.iter().map(ToString::to_string).collect(),
        );
        self
    }

    /// Appends a rollout wave.
    pub fn wave(mut self, wave: Wave) -> Fleet {
        self.spec
            .rollout
            .get_or_insert_with(RolloutSpec::default)
            .waves
            .push(wave.0);
        self
    }

    pub fn drift(mut self, policy: DriftPolicy) -> Fleet {
        self.spec.drift = Some(DriftSettings { policy });
        self
    }

    pub fn force(mut self, force: bool) -> Fleet {
        self.spec.force = Some(force);
        self
    }

    pub fn suspend(mut self, suspend: bool) -> Fleet {
        self.spec.suspend = Some(suspend);
        self
    }

    pub fn max_prune_fraction(mut self, fraction: f64) -> Fleet {
        self.spec
            .prune
            .get_or_insert_with(PruneSettings::default)
            .max_fraction = Some(fraction);
        self
    }

    pub fn allow_mass_prune(mut self, allow: bool) -> Fleet {
        self.spec
            .prune
            .get_or_insert_with(PruneSettings::default)
            .allow_mass_prune = Some(allow);
        self
    }
}

impl Document for Fleet {
    fn path(&self) -> String {
        "fleet.yaml".into()
    }

    fn to_yaml(&self) -> String {
        let metadata = match &self.name {
            Some(name) => json!({ "name": name }),
            None => json!({}),
        };
        yaml(FLEET_API_VERSION, "Fleet", metadata, &self.spec)
    }
}

/// One rollout wave of a [`Fleet`].
#[derive(Clone, Debug, PartialEq)]
pub struct Wave(WaveSpec);

/// A wave named `name` of the clusters whose labels match `match_labels`, with no bake
/// time and the default timeout.
pub fn wave(name: &str, match_labels: &[(&str, &str)]) -> Wave {
    Wave(WaveSpec {
        name: name.into(),
        selector: selector(match_labels),
        bake_time: None,
        timeout: None,
        max_unavailable: None,
        batch_bake_time: None,
        spread_by: None,
        max_unreachable: None,
        require_approval: None,
        gates: Vec::new(),
        windows: Vec::new(),
        rollback: None,
    })
}

impl Wave {
    /// How long the wave stays healthy before the next starts (`500ms`, `1s`, `5m`).
    pub fn bake_time(mut self, duration: &str) -> Wave {
        self.0.bake_time = Some(duration.into());
        self
    }

    /// How long the wave may take to become ready before the rollout halts.
    pub fn timeout(mut self, duration: &str) -> Wave {
        self.0.timeout = Some(duration.into());
        self
    }

    /// Batches: at most `share` (`"25%"`, `"3"`) of the changed clusters in progress.
    pub fn max_unavailable(mut self, share: &str) -> Wave {
        self.0.max_unavailable = Some(ShareSpec::Text(share.into()));
        self
    }

    /// How long each batch but the last stays ready before the next.
    pub fn batch_bake_time(mut self, duration: &str) -> Wave {
        self.0.batch_bake_time = Some(duration.into());
        self
    }

    /// The cluster label whose values the batches mix.
    pub fn spread_by(mut self, label: &str) -> Wave {
        self.0.spread_by = Some(label.into());
        self
    }

    /// A failure of the wave gives its clusters back the revision they ran before.
    pub fn rollback_auto(mut self) -> Wave {
        self.0.rollback = Some(crate::model::fleet::Rollback::Auto);
        self
    }

    /// The wave waits for `psql-fleet rollout approve`.
    pub fn require_approval(mut self) -> Wave {
        self.0.require_approval = Some(true);
        self
    }

    /// A metric gate: `query` must stay at or below `max` while the wave bakes.
    pub fn gate_max(mut self, name: &str, query: &str, max: f64) -> Wave {
        self.0.gates.push(crate::model::gate::GateSpec {
            name: name.into(),
            query: query.into(),
            threshold_range: crate::model::gate::ThresholdRange {
                min: None,
                max: Some(max),
            },
        });
        self
    }

    /// A rollout window of the wave: `kind` `allow` or `deny`, a five-field cron
    /// `schedule`, how long it stays open, in UTC.
    pub fn window(mut self, kind: &str, schedule: &str, duration: &str) -> Wave {
        use crate::model::window::{WindowKind, WindowSpec};
        self.0.windows.push(WindowSpec {
            kind: if kind == "deny" {
                WindowKind::Deny
            } else {
                WindowKind::Allow
            },
            schedule: schedule.into(),
            duration: duration.into(),
            time_zone: None,
        });
        self
    }

    /// How many clusters may be left behind unreachable (`"10%"`, `"2"`).
    pub fn max_unreachable(mut self, share: &str) -> Wave {
        self.0.max_unreachable = Some(ShareSpec::Text(share.into()));
        self
    }
}

/// A `Cluster` document (`clusters/<name>.yaml`).
#[derive(Clone, Debug, PartialEq)]
pub struct Cluster {
    name: String,
    labels: BTreeMap<String, String>,
    spec: ClusterSpec,
}

/// A `Cluster` named `name` whose kubeconfig is `<name>.yaml` in the credentials directory
/// (where the simulator writes it), with no labels.
pub fn cluster(name: &str) -> Cluster {
    Cluster {
        name: name.into(),
        labels: BTreeMap::new(),
        spec: ClusterSpec {
            kubeconfig: format!("{name}.yaml"),
            context: None,
            drift: None,
            suspend: None,
        },
    }
}

impl Cluster {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn label(mut self, key: &str, value: &str) -> Cluster {
        self.labels.insert(key.into(), value.into());
        self
    }

    pub fn kubeconfig(mut self, path: &str) -> Cluster {
        self.spec.kubeconfig = path.into();
        self
    }

    pub fn context(mut self, context: &str) -> Cluster {
        self.spec.context = Some(context.into());
        self
    }

    /// This cluster's drift policy, over the fleet's.
    pub fn drift(mut self, policy: DriftPolicy) -> Cluster {
        self.spec.drift = Some(DriftSettings { policy });
        self
    }

    pub fn suspend(mut self, suspend: bool) -> Cluster {
        self.spec.suspend = Some(suspend);
        self
    }
}

impl Document for Cluster {
    fn path(&self) -> String {
        format!("clusters/{}.yaml", self.name)
    }

    fn to_yaml(&self) -> String {
        let mut metadata = json!({ "name": self.name });
        if !self.labels.is_empty() {
            metadata["labels"] = json!(self.labels);
        }
        yaml(FLEET_API_VERSION, "Cluster", metadata, &self.spec)
    }
}

/// A whole fleet directory: files by path, in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FleetFiles {
    files: BTreeMap<String, String>,
}

impl FleetFiles {
    pub fn new() -> FleetFiles {
        FleetFiles::default()
    }

    /// Adds (or replaces) `doc` at its path.
    pub fn with(mut self, doc: &(impl Document + ?Sized)) -> FleetFiles {
        self.add(doc);
        self
    }

    pub fn add(&mut self, doc: &(impl Document + ?Sized)) {
        self.files.insert(doc.path(), doc.to_yaml());
    }

    /// The files, path to text.
    pub fn files(&self) -> &BTreeMap<String, String> {
        &self.files
    }

    /// The files as the fleet loader reads them.
    pub fn tree(&self) -> FileTree {
        let mut tree = FileTree::default();
        for (path, text) in &self.files {
            tree.insert(path.clone(), text.clone());
        }
        tree
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ProviderConfigKind;
    use crate::fleetdir::load;

    #[test]
    fn every_builder_option_loads_without_a_diagnostic() {
        let files = FleetFiles::new()
            .with(
                &fleet("main")
                    .pin("stackgres-operator", "1.18.4")
                    .override_pins(&[("env", "dev")], &[("atlas-operator", "0.7.24")])
                    .known_versions("stackgres-operator", &["1.18.4"])
                    .wave(
                        wave("dev", &[("env", "dev")])
                            .bake_time("1s")
                            .timeout("20s"),
                    )
                    .drift(DriftPolicy::Report)
                    .force(true)
                    .suspend(false)
                    .max_prune_fraction(0.5)
                    .allow_mass_prune(false),
            )
            .with(
                &cluster("dev-1")
                    .label("env", "dev")
                    .context("admin@dev-1")
                    .drift(DriftPolicy::Correct)
                    .suspend(false),
            )
            .with(
                &claim("app", "dev-1")
                    .namespace("data")
                    .suspended()
                    .install_namespace("ops")
                    .label("team", "data")
                    .management_policies(&["Observe"])
                    .provider_config(None, Some(ProviderConfigKind::ClusterProviderConfig))
                    .stackgres(
                        component()
                            .name("sg")
                            .values(json!({"deploy": {"restapi": false}})),
                    )
                    .atlas(
                        component()
                            .namespace("atlas")
                            .override_all_values(json!({"a": 1})),
                    ),
            )
            .with(&claims_file(
                "claims/more.yaml",
                vec![
                    claim("one", "dev-1").namespace("one"),
                    claim("two", "dev-1")
                        .namespace("two")
                        .install_namespace("two"),
                ],
            ));
        let outcome = load(&files.tree());
        assert!(outcome.diagnostics.is_empty(), "{:?}", outcome.diagnostics);
        let loaded = outcome.fleet.unwrap();
        assert_eq!(loaded.claims.len(), 3);
        assert_eq!(loaded.settings.name, "main");
        assert_eq!(loaded.settings.waves[0].name, "dev");
    }

    #[test]
    fn a_raw_spec_field_reaches_the_loader_as_written() {
        let files = FleetFiles::new().with(&cluster("c")).with(
            &claim("bad", "c").raw_spec_field("helmProviderConfigRef", json!({"kind": "Foo"})),
        );
        let outcome = load(&files.tree());
        assert!(outcome.fleet.is_none());
        assert!(
            outcome
                .diagnostics
                .iter()
                .any(|d| d.to_string().contains("spec.helmProviderConfigRef.kind")),
            "{:?}",
            outcome.diagnostics
        );
    }
}
