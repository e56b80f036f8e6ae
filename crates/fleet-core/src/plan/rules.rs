//! What the rollout of a change will meet, per wave it touches: how many of its clusters
//! change and in how many batches, whether a person must approve it, its metric gates and
//! its windows, and the least time it takes once it starts (its batches' bake times and
//! its own). The sum over the waves is a floor for the whole rollout: the time clusters
//! take to become ready, and waits for windows and approvals, come on top.

use serde::Serialize;

use super::{ClusterChange, Plan};
use crate::model::fleet::{FleetSettings, Wave};
use crate::rollout::batches::cut;
use crate::rollout::human;

/// One wave the change touches, and what it will meet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WaveRules {
    pub wave: String,
    /// Its clusters whose desired objects change.
    pub changed: usize,
    /// How many batches they go in (1: all at once).
    pub batches: usize,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub requires_approval: bool,
    /// `errors: <query> (threshold max 1)`, `$wave_clusters` as written.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<String>,
    /// `allow 0 22 * * * for 4h (Europe/Berlin)`, the fleet's then the wave's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<String>,
    /// The least time the wave takes once started, in milliseconds: a batch bake time
    /// between batches, then the wave's bake time.
    pub at_least_ms: u64,
}

impl WaveRules {
    /// `5 clusters in 3 batches, approval, at least 25m`: the parts a reader weighs first.
    pub fn summary(&self) -> String {
        let mut parts = vec![match self.batches {
            1 => format!("{} cluster{}", self.changed, plural(self.changed)),
            b => format!("{} clusters in {b} batches", self.changed),
        }];
        if self.requires_approval {
            parts.push("waits for approval".into());
        }
        if self.at_least_ms > 0 {
            parts.push(format!("at least {}", human(self.at_least_ms)));
        }
        parts.join(", ")
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The waves of `plan`'s changed clusters, in rollout order.
pub fn rules(settings: &FleetSettings, plan: &Plan) -> Vec<WaveRules> {
    let changed = |wave: Option<&str>| -> Vec<String> {
        // A cluster leaving the fleet is emptied outside the waves.
        plan.clusters
            .iter()
            .filter(|c| c.wave.as_deref() == wave && c.change != ClusterChange::Removed)
            .map(|c| c.name.clone())
            .collect()
    };
    let fleet_windows: Vec<String> = settings.windows.iter().map(|w| w.describe()).collect();
    let mut out: Vec<WaveRules> = settings
        .waves
        .iter()
        .filter_map(|w| {
            let clusters = changed(Some(&w.name));
            (!clusters.is_empty()).then(|| of_wave(w, &clusters, &fleet_windows))
        })
        .collect();
    let rest = changed(None);
    if !rest.is_empty() {
        out.push(WaveRules {
            wave: crate::model::fleet::IMPLICIT_WAVE.into(),
            changed: rest.len(),
            batches: 1,
            requires_approval: false,
            gates: Vec::new(),
            windows: fleet_windows,
            at_least_ms: 0,
        });
    }
    out
}

fn of_wave(w: &Wave, clusters: &[String], fleet_windows: &[String]) -> WaveRules {
    let batches = cut(clusters, w.max_unavailable).len().max(1);
    let between = u64::try_from(batches - 1).unwrap_or(u64::MAX);
    WaveRules {
        wave: w.name.clone(),
        changed: clusters.len(),
        batches,
        requires_approval: w.require_approval,
        gates: w
            .gates
            .iter()
            .map(|g| format!("{}: {} (threshold {})", g.name, g.query, g.threshold()))
            .collect(),
        windows: fleet_windows
            .iter()
            .cloned()
            .chain(w.windows.iter().map(|w| w.describe()))
            .collect(),
        at_least_ms: ms(w.batch_bake_time)
            .saturating_mul(between)
            .saturating_add(ms(w.bake_time)),
    }
}

/// The least time the whole rollout takes: every touched wave's floor, one after another.
pub fn at_least_ms(rules: &[WaveRules]) -> u64 {
    rules.iter().map(|r| r.at_least_ms).sum()
}
