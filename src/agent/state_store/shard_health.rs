//! The health of each shard's clusters, for the leader's rollout decisions (`--shards`):
//! the holder of shard `i` keeps `<lease>-shard-<i>-health`, a ConfigMap in the agent's
//! namespace holding the last [`Health`] of each of the shard's clusters (gzipped JSON,
//! [`codec::encode_health`]); the leader lists these ConfigMaps and feeds the health of the
//! clusters it does not serve itself to its rollout driver.
//!
//! A shard's ConfigMap is written only by the replica holding the shard, only while the
//! shard's fence allows it, and only when some cluster's health changed; each write starts
//! from what the ConfigMap holds (a new holder keeps its predecessor's facts until its own
//! passes replace them) and is made under the `resourceVersion` read.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::ByteString;
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use tokio::sync::mpsc;

use super::codec;
use crate::agent::leader::Fence;
use crate::error_chain;
use fleet_core::rollout::Health;

const HEALTH_KEY: &str = "health.json.gz";
/// Which agent's shard health a ConfigMap holds (the Lease's name).
const HEALTH_OF: &str = "fleet.hops.ops.com.ai/shard-health-of";
const SHARD: &str = "fleet.hops.ops.com.ai/shard";

/// The ConfigMap of shard `shard`'s health.
pub fn health_name(lease: &str, shard: u32) -> String {
    format!("{lease}-shard-{shard}-health")
}

/// A cluster's health, to publish for its shard.
pub struct Published {
    pub shard: u32,
    pub cluster: String,
    pub health: Health,
}

/// Starts the task that publishes this replica's shards' health every `every`; the
/// run loop sends each worker's report to the sender returned.
pub fn spawn_writer(
    client: kube::Client,
    namespace: &str,
    lease: &str,
    fences: Vec<Fence>,
    every: Duration,
) -> mpsc::UnboundedSender<Published> {
    let (tx, rx) = mpsc::unbounded_channel();
    let writer = Writer {
        api: Api::namespaced(client, namespace),
        lease: lease.into(),
        fences,
        changed: BTreeMap::new(),
    };
    tokio::spawn(writer.run(rx, every));
    tx
}

struct Writer {
    api: Api<ConfigMap>,
    lease: String,
    fences: Vec<Fence>,
    /// Per shard, the health reported since its last write.
    changed: BTreeMap<u32, BTreeMap<String, Health>>,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Published>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                published = rx.recv() => match published {
                    Some(p) => {
                        self.changed.entry(p.shard).or_default().insert(p.cluster, p.health);
                    }
                    None => return,
                },
                _ = tick.tick() => self.write_changed().await,
            }
        }
    }

    async fn write_changed(&mut self) {
        let shards: Vec<u32> = self.changed.keys().copied().collect();
        for shard in shards {
            let allowed = self
                .fences
                .get(shard as usize)
                .is_some_and(Fence::allows_writes);
            if !allowed {
                // Not this replica's shard (any more): its holder publishes.
                self.changed.remove(&shard);
                continue;
            }
            let Some(changed) = self.changed.get(&shard) else {
                continue;
            };
            match self.write(shard, changed).await {
                Ok(()) => {
                    self.changed.remove(&shard);
                }
                Err(e) => {
                    tracing::warn!(shard, error = %e, "sharding: cannot publish the shard's cluster health; retrying");
                }
            }
        }
    }

    /// What the ConfigMap holds, with `changed` over it, replaced under the version read.
    async fn write(&self, shard: u32, changed: &BTreeMap<String, Health>) -> Result<(), String> {
        let name = health_name(&self.lease, shard);
        let found = self
            .api
            .get_opt(&name)
            .await
            .map_err(|e| error_chain::chain(&e))?;
        let mut health = found
            .as_ref()
            .and_then(|cm| codec::decode_health(&name, binary(cm)).ok())
            .unwrap_or_default();
        let before = health.clone();
        health.extend(changed.iter().map(|(c, h)| (c.clone(), h.clone())));
        if found.is_some() && health == before {
            return Ok(());
        }
        let bytes = codec::encode_health(&health).map_err(|e| e.to_string())?;
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(BTreeMap::from([
                    (
                        "app.kubernetes.io/managed-by".to_string(),
                        "psql-fleet".to_string(),
                    ),
                    (HEALTH_OF.to_string(), self.lease.clone()),
                    (SHARD.to_string(), shard.to_string()),
                ])),
                resource_version: found.and_then(|cm| cm.metadata.resource_version),
                ..ObjectMeta::default()
            },
            binary_data: Some(BTreeMap::from([(HEALTH_KEY.into(), ByteString(bytes))])),
            ..ConfigMap::default()
        };
        // Checked again just before the write: the reads above take time.
        if !self
            .fences
            .get(shard as usize)
            .is_some_and(Fence::allows_writes)
        {
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
}

fn binary(cm: &ConfigMap) -> &[u8] {
    cm.binary_data
        .as_ref()
        .and_then(|d| d.get(HEALTH_KEY))
        .map(|b| b.0.as_slice())
        .unwrap_or_default()
}

/// The leader's side: the shards' health ConfigMaps, read when they changed.
pub struct Reader {
    api: Api<ConfigMap>,
    lease: String,
    /// Each ConfigMap's `resourceVersion` as last read.
    seen: BTreeMap<String, String>,
    /// The rollout driver's count of the moments it forgot every cluster's health (a
    /// resume), as at the last read.
    asked: u64,
}

impl Reader {
    pub fn new(client: kube::Client, namespace: &str, lease: &str) -> Reader {
        Reader {
            api: Api::namespaced(client, namespace),
            lease: lease.into(),
            seen: BTreeMap::new(),
            asked: 0,
        }
    }

    /// The health in the ConfigMaps that changed since the last read (one list), or in all
    /// of them once `asked` moved: a resumed rollout forgot every cluster's health, and a
    /// shard's ConfigMap is written again only when a health in it changes, so the clusters
    /// other replicas serve would never be reported again.
    pub async fn changed(&mut self, asked: u64) -> Result<BTreeMap<String, Health>, String> {
        if asked != self.asked {
            self.seen.clear();
            self.asked = asked;
        }
        let selector = format!("{HEALTH_OF}={}", self.lease);
        let list = self
            .api
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| error_chain::chain(&e))?;
        let mut health = BTreeMap::new();
        for cm in list.items {
            let (Some(name), Some(version)) = (
                cm.metadata.name.clone(),
                cm.metadata.resource_version.clone(),
            ) else {
                continue;
            };
            if self.seen.get(&name) == Some(&version) {
                continue;
            }
            match codec::decode_health(&name, binary(&cm)) {
                Ok(h) => health.extend(h),
                Err(e) => {
                    tracing::warn!(configmap = %name, error = %e, "sharding: a shard's cluster health does not decode; its clusters are judged when it is written again");
                }
            }
            self.seen.insert(name, version);
        }
        Ok(health)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_config_maps_are_named_after_the_shard_lease() {
        assert_eq!(health_name("psql-fleet", 4), "psql-fleet-shard-4-health");
    }

    /// A shard's ConfigMap unchanged since the last read is skipped, until the rollout
    /// forgot every cluster's health (a resume): then it is read again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unchanged_shard_is_read_again_once_the_rollout_forgot_its_health() {
        let (_out, handle) = test_support::sim::start(kube_sim::SimConfig {
            clusters: 1,
            ..kube_sim::SimConfig::default()
        })
        .await;
        let client = test_support::sim::client(&handle, &handle.cluster_names[0]).await;
        let health = BTreeMap::from([(
            "east-1".to_string(),
            Health {
                revision: "abc".into(),
                ready: true,
                reason: None,
                errors: None,
            },
        )]);
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(health_name("fleet", 1)),
                labels: Some(BTreeMap::from([(
                    HEALTH_OF.to_string(),
                    "fleet".to_string(),
                )])),
                ..ObjectMeta::default()
            },
            binary_data: Some(BTreeMap::from([(
                HEALTH_KEY.into(),
                ByteString(codec::encode_health(&health).unwrap()),
            )])),
            ..ConfigMap::default()
        };
        Api::<ConfigMap>::namespaced(client.clone(), "default")
            .create(&PostParams::default(), &cm)
            .await
            .unwrap();
        let mut reader = Reader::new(client, "default", "fleet");
        assert_eq!(reader.changed(0).await.unwrap(), health);
        assert!(reader.changed(0).await.unwrap().is_empty());
        assert_eq!(reader.changed(1).await.unwrap(), health);
        assert!(reader.changed(1).await.unwrap().is_empty());
        handle.shutdown().await;
    }
}
