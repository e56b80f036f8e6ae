//! How the rollout state and a revision's files are written into a ConfigMap: JSON,
//! gzipped into `binaryData`. The state names every cluster with its fingerprint, about
//! 2 MB of JSON at 10,000 clusters; gzipped it stays well under the 1 MiB a ConfigMap
//! holds (kube-apiserver refuses more, and etcd's request limit is 1.5 MiB).

use std::collections::BTreeMap;
use std::io::{Read, Write};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;

use fleet_core::fleetdir::FileTree;
use fleet_core::rollout::store::{files_from_json, files_to_json};
use fleet_core::rollout::{Health, State};
use serde::{Deserialize, Serialize};

/// What a ConfigMap holds at most (`data` and `binaryData` together), less room for the
/// key names.
pub const MAX_BYTES: usize = 1024 * 1024 - 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what} is {bytes} bytes gzipped, more than the {MAX_BYTES} a ConfigMap holds")]
    TooLarge { what: String, bytes: usize },
    #[error("{what} does not decode: {message}")]
    Corrupt { what: String, message: String },
}

fn gzip(json: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(json.len() / 4), Compression::best());
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(json);
    encoder.finish().unwrap_or_default()
}

fn gunzip(what: &str, bytes: &[u8]) -> Result<Vec<u8>, Error> {
    let mut json = Vec::new();
    GzDecoder::new(bytes)
        .read_to_end(&mut json)
        .map_err(|e| Error::Corrupt {
            what: what.into(),
            message: e.to_string(),
        })?;
    Ok(json)
}

fn bounded(what: &str, bytes: Vec<u8>) -> Result<Vec<u8>, Error> {
    if bytes.len() > MAX_BYTES {
        return Err(Error::TooLarge {
            what: what.into(),
            bytes: bytes.len(),
        });
    }
    Ok(bytes)
}

/// A cluster's health as a shard's holder publishes it for the leader (see
/// [`shard_health`](super::shard_health)); its texts cut to [`MAX_TEXT`] characters.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct HealthEntry {
    revision: String,
    ready: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    errors: Option<String>,
}

/// The longest reason or error text a shard publishes per cluster: enough for an operator
/// to see why, and bounded, so that a shard's 10,000 clusters fit one ConfigMap whatever
/// their errors say.
pub const MAX_TEXT: usize = 256;

fn cut(text: &Option<String>) -> Option<String> {
    text.as_ref().map(|t| t.chars().take(MAX_TEXT).collect())
}

/// The health of a shard's clusters.
pub fn encode_health(health: &BTreeMap<String, Health>) -> Result<Vec<u8>, Error> {
    let entries: BTreeMap<&String, HealthEntry> = health
        .iter()
        .map(|(cluster, h)| {
            let entry = HealthEntry {
                revision: h.revision.clone(),
                ready: h.ready,
                reason: cut(&h.reason),
                errors: cut(&h.errors),
            };
            (cluster, entry)
        })
        .collect();
    let json = serde_json::to_vec(&entries).unwrap_or_default();
    bounded("a shard's cluster health", gzip(&json))
}

pub fn decode_health(what: &str, bytes: &[u8]) -> Result<BTreeMap<String, Health>, Error> {
    let json = gunzip(what, bytes)?;
    let entries: BTreeMap<String, HealthEntry> =
        serde_json::from_slice(&json).map_err(|e| Error::Corrupt {
            what: what.into(),
            message: e.to_string(),
        })?;
    Ok(entries
        .into_iter()
        .map(|(cluster, e)| {
            let health = Health {
                revision: e.revision,
                ready: e.ready,
                reason: e.reason,
                errors: e.errors,
            };
            (cluster, health)
        })
        .collect())
}

/// Any other value kept in a ConfigMap (a shard's cluster status), as gzipped JSON.
pub fn encode_json<T: Serialize>(what: &str, value: &T) -> Result<Vec<u8>, Error> {
    let json = serde_json::to_vec(value).unwrap_or_default();
    bounded(what, gzip(&json))
}

pub fn decode_json<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, Error> {
    let json = gunzip(what, bytes)?;
    serde_json::from_slice(&json).map_err(|e| Error::Corrupt {
        what: what.into(),
        message: e.to_string(),
    })
}

pub fn encode_state(state: &State) -> Result<Vec<u8>, Error> {
    let json = serde_json::to_vec(state).unwrap_or_default();
    bounded("the rollout state", gzip(&json))
}

pub fn decode_state(bytes: &[u8]) -> Result<State, Error> {
    let what = "the rollout state";
    serde_json::from_slice(&gunzip(what, bytes)?).map_err(|e| Error::Corrupt {
        what: what.into(),
        message: e.to_string(),
    })
}

pub fn encode_files(revision: &str, tree: &FileTree) -> Result<Vec<u8>, Error> {
    bounded(&format!("revision {revision}"), gzip(&files_to_json(tree)))
}

pub fn decode_files(revision: &str, bytes: &[u8]) -> Result<FileTree, Error> {
    let what = format!("revision {revision}");
    files_from_json(&gunzip(&what, bytes)?).map_err(|e| Error::Corrupt {
        what,
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use fleet_core::rollout::{Given, Rollout, WaveProgress, WaveState};

    /// A rollout of `n` clusters in two waves, every cluster changed, with names, revisions
    /// and fingerprints shaped as the agent writes them; with `previous`, every cluster's
    /// previous revision kept for a rollback too.
    fn fleet_of(n: usize, previous: bool) -> State {
        let fingerprint = |i: usize| {
            format!(
                "{:032x}",
                (i as u128).wrapping_mul(0x9e3779b97f4a7c15f39cc0605cedc835)
            )
        };
        let old = "3f2a9c0d5e7b8a1c4d6e9f0a2b3c5d7e9f1a3b5c";
        let new = "8b1d3f5a7c9e0b2d4f6a8c0e2b4d6f8a0c2e4b6d";
        let name = |i: usize| format!("prod-{}-{i:05}", ["us", "eu", "ap"][i % 3]);
        let mut state = State::default();
        let mut waves: Vec<WaveProgress> = Vec::new();
        for (w, range) in [("canary", 0..n / 10), ("prod", n / 10..n)] {
            let clusters: BTreeMap<String, String> = range
                .clone()
                .map(|i| (name(i), fingerprint(i + n)))
                .collect();
            waves.push(WaveProgress {
                name: w.into(),
                state: WaveState::Progressing,
                bake_ms: 600_000,
                timeout_ms: 3_600_000,
                batches: vec![clusters.keys().cloned().collect()],
                clusters,
                started_ms: Some(1_700_000_000_000),
                progressing_since_ms: None,
                ready_since_ms: None,
                finished_ms: None,
                reason: None,
                batch: 0,
                batch_bake_ms: 0,
                max_unreachable: 0,
                stragglers: BTreeMap::new(),
                require_approval: false,
                approved: None,
                gates: Vec::new(),
                windows: Vec::new(),
                next_window_ms: None,
                rollback: Default::default(),
                // The most a rollout keeps: what every cluster ran before, as when its
                // last wave has given the revision and might still be rolled back.
                previous: range
                    .clone()
                    .filter(|_| previous)
                    .map(|i| {
                        let before = Given {
                            revision: old.into(),
                            fingerprint: fingerprint(i),
                        };
                        (name(i), Some(before))
                    })
                    .collect(),
                rolled_back: None,
            });
        }
        for i in 0..n {
            let revision = if i < n / 10 { new } else { old };
            state.clusters.insert(
                name(i),
                Given {
                    revision: revision.into(),
                    fingerprint: fingerprint(i),
                },
            );
        }
        state.rollout = Some(Rollout {
            revision: new.into(),
            started_ms: 1_700_000_000_000,
            waves,
            halted: None,
        });
        state
    }

    #[test]
    fn ten_thousand_clusters_fit_a_config_map_with_room_to_spare() {
        let state = fleet_of(10_000, false);
        let bytes = encode_state(&state).unwrap();
        // Half the limit: room for the fleet to grow before the state must be split.
        assert!(bytes.len() < MAX_BYTES / 2, "{} bytes", bytes.len());
        assert_eq!(decode_state(&bytes).unwrap(), state);
    }

    /// What each cluster ran before is kept while a rollback may give it back: at worst
    /// (every cluster given the revision, the rollout not over) about half as much again,
    /// which still fits.
    #[test]
    fn ten_thousand_clusters_with_every_previous_revision_kept_still_fit() {
        let state = fleet_of(10_000, true);
        let bytes = encode_state(&state).unwrap();
        assert!(bytes.len() < MAX_BYTES * 4 / 5, "{} bytes", bytes.len());
        assert!(bytes.len() > encode_state(&fleet_of(10_000, false)).unwrap().len());
        assert_eq!(decode_state(&bytes).unwrap(), state);
    }

    #[test]
    fn a_state_too_large_is_an_error_saying_so() {
        let e = encode_state(&fleet_of(60_000, false))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("the rollout state is") && e.contains("ConfigMap"),
            "{e}"
        );
    }

    /// A shard holding all of 10,000 clusters, each failing with long texts of its own
    /// (cut to MAX_TEXT): still well under a ConfigMap's limit.
    #[test]
    fn ten_thousand_clusters_health_fits_one_config_map() {
        let health: BTreeMap<String, Health> = (0..10_000)
            .map(|i| {
                let cluster = format!("prod-eu-west-{i:05}");
                let h = Health {
                    revision: format!("{:040x}", i % 3),
                    ready: i % 2 == 0,
                    reason: Some(format!("claim data/analytics-{i} on {cluster}: Release stackgres-operator is not ready: {}", "helm install timed out; ".repeat(20))),
                    errors: Some(format!("apply of Release atlas-operator on {cluster} failed: 500 {}", "x".repeat(400))),
                };
                (cluster, h)
            })
            .collect();
        let bytes = encode_health(&health).unwrap();
        assert!(bytes.len() < MAX_BYTES / 2, "{} bytes", bytes.len());
        let back = decode_health("shard 0", &bytes).unwrap();
        assert_eq!(back.len(), 10_000);
        let first = &back["prod-eu-west-00000"];
        assert_eq!(first.revision, health["prod-eu-west-00000"].revision);
        assert_eq!(first.reason.as_ref().unwrap().chars().count(), MAX_TEXT);
        let e = decode_health("shard 0", b"not gzip")
            .unwrap_err()
            .to_string();
        assert!(e.contains("shard 0"), "{e}");
    }

    #[test]
    fn files_round_trip_and_garbage_is_named() {
        let mut tree = FileTree::default();
        tree.insert("fleet.yaml", "kind: Fleet\n");
        tree.insert("claims/a.yaml", "kind: Psql\n");
        let bytes = encode_files("abc", &tree).unwrap();
        assert_eq!(decode_files("abc", &bytes).unwrap().files, tree.files);
        let e = decode_files("abc", b"not gzip").unwrap_err().to_string();
        assert!(e.contains("revision abc"), "{e}");
    }
}
