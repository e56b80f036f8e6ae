//! The status of each shard's clusters, so that every replica serves the whole fleet's
//! status (`--shards`): the holder of shard `i` keeps `<lease>-shard-<i>-status`, a
//! ConfigMap holding the [`ClusterStatus`] of each of the shard's clusters as its own
//! status report has it (gzipped JSON), and every replica reads the ConfigMaps of the
//! shards into [`StatusReport::served_elsewhere`] (its own clusters win the merge).
//!
//! Every retry period one task compares each held shard's clusters in this replica's
//! status with what it last wrote, and writes only what changed (nothing at steady state:
//! a cluster's status carries no clock), only while the shard's fence allows it, under the
//! `resourceVersion` read; then it lists the shards' ConfigMaps (one request) and decodes
//! those whose `resourceVersion` changed.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::ByteString;
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use tokio::task::JoinHandle;

use super::codec;
use crate::agent::leader::Fence;
use crate::error_chain;
use crate::status::{ClusterStatus, StatusReport};
use fleet_core::shard::shard_of;

const STATUS_KEY: &str = "status.json.gz";
/// Which agent's shard status a ConfigMap holds (the Lease's name).
const STATUS_OF: &str = "fleet.hops.ops.com.ai/shard-status-of";
const SHARD: &str = "fleet.hops.ops.com.ai/shard";
const WRITTEN_BY: &str = "fleet.hops.ops.com.ai/written-by";

type Clusters = BTreeMap<String, Arc<ClusterStatus>>;

/// The ConfigMap of shard `shard`'s cluster status.
pub fn status_name(lease: &str, shard: u32) -> String {
    format!("{lease}-shard-{shard}-status")
}

/// Starts publishing this replica's shards' status and reading the others', every
/// `every`.
pub fn spawn(
    client: kube::Client,
    namespace: &str,
    lease: &str,
    identity: &str,
    fences: Vec<Fence>,
    status: Arc<RwLock<StatusReport>>,
    every: Duration,
) -> JoinHandle<()> {
    let task = Publisher {
        api: Api::namespaced(client, namespace),
        lease: lease.into(),
        identity: identity.into(),
        fences,
        status,
        written: BTreeMap::new(),
        read: BTreeMap::new(),
    };
    tokio::spawn(task.run(every))
}

struct Publisher {
    api: Api<ConfigMap>,
    lease: String,
    identity: String,
    fences: Vec<Fence>,
    status: Arc<RwLock<StatusReport>>,
    /// Per shard held, what this replica last wrote.
    written: BTreeMap<u32, Clusters>,
    /// Per shard's ConfigMap: its `resourceVersion`, its shard and its clusters as read.
    read: BTreeMap<String, (String, u32, Clusters)>,
}

impl Publisher {
    async fn run(mut self, every: Duration) {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            self.publish().await;
            if let Err(e) = self.read_others().await {
                tracing::warn!(error = %e, "sharding: cannot read the other shards' cluster status");
            }
        }
    }

    fn holds(&self, shard: u32) -> bool {
        self.fences
            .get(shard as usize)
            .is_some_and(Fence::allows_writes)
    }

    async fn publish(&mut self) {
        let count = u32::try_from(self.fences.len()).unwrap_or(1);
        let mut own: BTreeMap<u32, Clusters> = BTreeMap::new();
        if let Ok(s) = self.status.read() {
            for (name, c) in &s.clusters {
                own.entry(shard_of(name, count))
                    .or_default()
                    .insert(name.clone(), c.clone());
            }
        }
        for shard in 0..count {
            if !self.holds(shard) {
                self.written.remove(&shard);
                continue;
            }
            let clusters = own.remove(&shard).unwrap_or_default();
            match self.written.get(&shard) {
                Some(w) if *w == clusters => continue,
                // Just taken, no pass reported yet: what the last holder wrote stands.
                None if clusters.is_empty() => continue,
                _ => {}
            }
            match self.write(shard, &clusters).await {
                Ok(()) => {
                    self.written.insert(shard, clusters);
                }
                Err(e) => {
                    tracing::warn!(shard, error = %e, "sharding: cannot publish the shard's cluster status; retrying");
                }
            }
        }
    }

    async fn write(&self, shard: u32, clusters: &Clusters) -> Result<(), String> {
        let name = status_name(&self.lease, shard);
        let bytes = codec::encode_json(&format!("shard {shard}'s cluster status"), clusters)
            .map_err(|e| e.to_string())?;
        let version = self
            .api
            .get_opt(&name)
            .await
            .map_err(|e| error_chain::chain(&e))?
            .and_then(|cm| cm.metadata.resource_version);
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(BTreeMap::from([
                    (
                        "app.kubernetes.io/managed-by".to_string(),
                        "psql-fleet".to_string(),
                    ),
                    (STATUS_OF.to_string(), self.lease.clone()),
                    (SHARD.to_string(), shard.to_string()),
                ])),
                annotations: Some(BTreeMap::from([(
                    WRITTEN_BY.to_string(),
                    self.identity.clone(),
                )])),
                resource_version: version,
                ..ObjectMeta::default()
            },
            binary_data: Some(BTreeMap::from([(STATUS_KEY.into(), ByteString(bytes))])),
            ..ConfigMap::default()
        };
        if !self.holds(shard) {
            return Ok(());
        }
        let pp = PostParams {
            field_manager: Some(crate::cluster::apply::FIELD_MANAGER.into()),
            ..PostParams::default()
        };
        let written = match cm.metadata.resource_version {
            Some(_) => self.api.replace(&name, &pp, &cm).await,
            None => self.api.create(&pp, &cm).await,
        };
        written.map(|_| ()).map_err(|e| error_chain::chain(&e))
    }

    /// The clusters of every shard, as their holders published them, into the status
    /// report.
    async fn read_others(&mut self) -> Result<(), String> {
        let selector = format!("{STATUS_OF}={}", self.lease);
        let list = self
            .api
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| error_chain::chain(&e))?;
        let mut names = Vec::new();
        for cm in list.items {
            let (Some(name), Some(version)) = (
                cm.metadata.name.clone(),
                cm.metadata.resource_version.clone(),
            ) else {
                continue;
            };
            names.push(name.clone());
            if self.read.get(&name).is_some_and(|(v, _, _)| *v == version) {
                continue;
            }
            let shard = cm
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SHARD))
                .and_then(|s| s.parse::<u32>().ok());
            let writer = cm
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(WRITTEN_BY))
                .cloned();
            let bytes = cm
                .binary_data
                .as_ref()
                .and_then(|d| d.get(STATUS_KEY))
                .map(|b| b.0.as_slice())
                .unwrap_or_default();
            match (shard, codec::decode_json::<Clusters>(&name, bytes)) {
                (Some(shard), Ok(mut clusters)) => {
                    for c in clusters.values_mut() {
                        Arc::make_mut(c).served_by.clone_from(&writer);
                    }
                    self.read.insert(name, (version, shard, clusters));
                }
                (_, Err(e)) => {
                    tracing::warn!(configmap = %name, error = %e, "sharding: a shard's cluster status does not decode");
                }
                (None, _) => {}
            }
        }
        self.read.retain(|name, _| names.contains(name));
        // The shards held too: a shard just taken keeps showing what its last holder
        // published until this replica's own passes (which win the merge) replace it.
        let elsewhere: Clusters = self
            .read
            .values()
            .flat_map(|(_, _, clusters)| clusters.clone())
            .collect();
        if let Ok(mut s) = self.status.write() {
            s.served_elsewhere = elsewhere;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::ClaimStatus;

    #[test]
    fn status_config_maps_are_named_after_the_shard_lease() {
        assert_eq!(status_name("psql-fleet", 4), "psql-fleet-shard-4-status");
    }

    /// A shard holding all of 10,000 clusters with two claims each, every claim failing
    /// with a reason of its own: well under a ConfigMap's limit.
    #[test]
    fn ten_thousand_clusters_status_fits_one_config_map() {
        let clusters: Clusters = (0..10_000)
            .map(|i| {
                let name = format!("prod-eu-west-{i:05}");
                let claim = |n: &str| ClaimStatus {
                    claim: format!("data/{n}-{i}"),
                    ready: false,
                    reason: Some(format!("Release stackgres-operator on {name} is not ready: helm install timed out after 5m0s")),
                    usage_present: true,
                    drift: vec!["spec.forProvider.values.deploy".into()],
                    ..ClaimStatus::default()
                };
                let c = ClusterStatus {
                    reachable: true,
                    reconciled: true,
                    applied_revision: Some(format!("{:040x}", i % 3)),
                    drift_policy: "correct".into(),
                    wave: Some("prod".into()),
                    claims: vec![claim("analytics"), claim("payments")],
                    ..ClusterStatus::default()
                };
                (name, c.into())
            })
            .collect();
        let bytes = codec::encode_json("shard 0's cluster status", &clusters).unwrap();
        assert!(bytes.len() < codec::MAX_BYTES / 2, "{} bytes", bytes.len());
        let back: Clusters = codec::decode_json("shard 0", &bytes).unwrap();
        assert_eq!(back, clusters);
    }
}
