//! What the rollout of a change will meet, per wave: its metric gates and its windows,
//! for the waves the change touches.

use serde::Serialize;

use super::Plan;
use crate::model::fleet::FleetSettings;

/// One wave the change touches, with the gates and windows it will meet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WaveRules {
    pub wave: String,
    /// `errors: <query> (threshold max 1)`, `$wave_clusters` as written.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<String>,
    /// `allow 0 22 * * * for 4h (Europe/Berlin)`, the fleet's then the wave's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<String>,
}

/// The waves of `plan`'s changed clusters that have gates or windows, in rollout order.
pub fn rules(settings: &FleetSettings, plan: &Plan) -> Vec<WaveRules> {
    let touched = |wave: Option<&str>| plan.clusters.iter().any(|c| c.wave.as_deref() == wave);
    let fleet_windows = settings.windows.iter().map(|w| w.describe());
    let mut out: Vec<WaveRules> = settings
        .waves
        .iter()
        .filter(|w| touched(Some(&w.name)))
        .map(|w| WaveRules {
            wave: w.name.clone(),
            gates: w
                .gates
                .iter()
                .map(|g| format!("{}: {} (threshold {})", g.name, g.query, g.threshold()))
                .collect(),
            windows: fleet_windows
                .clone()
                .chain(w.windows.iter().map(|w| w.describe()))
                .collect(),
        })
        .collect();
    if touched(None) {
        out.push(WaveRules {
            wave: crate::model::fleet::IMPLICIT_WAVE.into(),
            gates: Vec::new(),
            windows: fleet_windows.collect(),
        });
    }
    out.retain(|r| !r.gates.is_empty() || !r.windows.is_empty());
    out
}
