//! The fleet's name and the names it had before. A rename in `fleet.yaml` (or a
//! `fleet.yaml` removed, which falls back to the default name) changes the inventory label
//! of everything the fleet renders; the objects labelled with an earlier name stay the
//! fleet's, to relabel (the next apply does it) or to prune, so a rename orphans nothing
//! and reads as no drift. The names are kept beside the rollout state, so that a rename
//! made while the agent was down is followed too.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use fleet_core::rollout::store::write_atomic;

const FILE: &str = "fleet-names.json";
/// Earlier names kept: enough for any run of renames, bounded so the watch stays cheap.
const KEPT: usize = 8;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FleetNames {
    pub current: Option<String>,
    /// Oldest first.
    pub former: Vec<String>,
}

impl FleetNames {
    /// The fleet is now called `name`; the earlier name, when that is a rename.
    pub fn serve(&mut self, name: &str) -> Option<String> {
        let old = self.current.replace(name.to_string()).filter(|o| o != name);
        if let Some(old) = &old {
            self.former.retain(|n| n != old);
            self.former.push(old.clone());
        }
        self.former.retain(|n| n != name);
        if self.former.len() > KEPT {
            self.former.drain(..self.former.len() - KEPT);
        }
        old
    }
}

/// Where the names are kept; `None` keeps them in memory only (a dry run).
pub struct Kept {
    path: Option<PathBuf>,
    pub names: FleetNames,
}

impl Kept {
    pub fn open(dir: Option<&Path>) -> Kept {
        let path = dir.map(|d| d.join(FILE));
        let names = path
            .as_deref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|bytes| match serde_json::from_slice(&bytes) {
                Ok(names) => Some(names),
                Err(e) => {
                    tracing::warn!(error = %e, file = FILE, "cannot read the fleet's earlier names; starting without them");
                    None
                }
            })
            .unwrap_or_default();
        Kept { path, names }
    }

    /// Serves `name`, keeping the change on disk.
    pub fn serve(&mut self, name: &str) -> Option<String> {
        let before = self.names.clone();
        let old = self.names.serve(name);
        if self.names != before {
            if let Some(path) = &self.path {
                let bytes = serde_json::to_vec_pretty(&self.names).unwrap_or_default();
                if let Err(e) = write_atomic(path, &bytes) {
                    tracing::warn!(error = %crate::error_chain::chain(&e), "cannot keep the fleet's names; a rename while the agent is down would not be followed");
                }
            }
        }
        old
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renames_remember_earlier_names_once_each_and_a_name_taken_back_is_not_former() {
        let mut names = FleetNames::default();
        assert_eq!(names.serve("main"), None);
        assert_eq!(names.serve("main"), None);
        assert_eq!(names.serve("payments").as_deref(), Some("main"));
        assert_eq!(names.former, vec!["main"]);
        assert_eq!(names.serve("main").as_deref(), Some("payments"));
        assert_eq!(names.former, vec!["payments"]);
        for i in 0..20 {
            names.serve(&format!("n{i}"));
        }
        assert_eq!(names.former.len(), KEPT);
        assert_eq!(names.former.last().map(String::as_str), Some("n18"));
    }

    #[test]
    fn the_names_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut kept = Kept::open(Some(dir.path()));
        kept.serve("main");
        kept.serve("payments");
        let again = Kept::open(Some(dir.path()));
        assert_eq!(again.names.current.as_deref(), Some("payments"));
        assert_eq!(again.names.former, vec!["main"]);
    }
}
