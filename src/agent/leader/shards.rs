//! Shard Leases (`run --leader-elect --shards N`): the fleet's clusters are split into N
//! shards (`fleet_core::shard`), each a Lease `<lease>-shard-<i>` taken and renewed with
//! the leader Lease's protocol (`Attempt`, [`decide`](super::record::decide)) and
//! fenced the same way: a shard's [`Fence`] opens on a successful write and closes at the
//! renew deadline counted from when that write was sent, so a replica that cannot renew
//! stops writing to the shard's clusters before anyone else can take it.
//!
//! Which replicas are live is read from their member Leases, `<lease>-member-<id>`,
//! renewed every retry period: one that expired is gone. Every retry period one task lists
//! the Leases, renews the member Lease and the shards held, and follows the pure
//! [`plan`](fleet_core::shard::plan): shards above this replica's share are given up
//! cleanly (fence closed, the run loop's workers of those clusters stopped, then the Lease
//! released with no holder, so the replica that takes it need not wait for it to expire),
//! and free or expired ones are taken.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::record::Record;
use super::{record_of, Attempt, Fence, Hold, Settings};
use crate::error_chain;
use crate::status::{ShardStatus, StatusReport};

/// The shards this replica holds, each with the term it took it in (a shard lost and
/// taken again is a change).
pub type Held = BTreeMap<u32, u64>;

/// The Lease of shard `shard`.
pub fn shard_lease(lease: &str, shard: u32) -> String {
    format!("{lease}-shard-{shard}")
}

/// The member Lease of the replica `identity`: its identity made a Kubernetes name
/// (lowercase letters, digits and dashes, at most 40 characters of it) and the start of
/// its SHA-256, so that identities differing only in what is dropped do not share one.
pub fn member_lease(lease: &str, identity: &str) -> String {
    let mut name: String = identity
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    name = name.trim_matches('-').to_string();
    let digest = Sha256::digest(identity.as_bytes());
    let short: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("{lease}-member-{name}-{short}")
}

/// The run loop's side of the shard Leases: which shards to run workers for, their fences,
/// and where the run loop says which shards' workers still run.
pub struct Shards {
    pub held: watch::Receiver<Held>,
    pub fences: Vec<Fence>,
    pub running: watch::Sender<BTreeSet<u32>>,
    releaser: Releaser,
    task: JoinHandle<()>,
}

impl Shards {
    /// Stops taking and renewing, and releases every Lease this replica holds (at
    /// shutdown, once the workers are done).
    pub async fn release(self) {
        self.task.abort();
        let _ = self.task.await;
        for fence in &self.fences {
            fence.close();
        }
        self.releaser.release().await;
    }
}

#[derive(Clone)]
struct Releaser {
    api: Api<Lease>,
    settings: Settings,
    count: u32,
}

impl Releaser {
    async fn release(&self) {
        let mut names: Vec<String> = (0..self.count)
            .map(|s| shard_lease(&self.settings.lease_name, s))
            .collect();
        names.push(member_lease(
            &self.settings.lease_name,
            &self.settings.identity,
        ));
        for name in &names {
            let attempt = Attempt {
                api: &self.api,
                name,
                me: &self.settings.identity,
                duration: self.settings.lease_duration,
            };
            match attempt.release().await {
                Ok(true) => tracing::info!(lease = %name, "sharding: released the lease"),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(lease = %name, error = %error_chain::chain(&e), "sharding: could not release the lease; it expires after its duration")
                }
            }
        }
    }
}

/// The task that holds this replica's shards.
struct Holder {
    api: Api<Lease>,
    settings: Settings,
    count: u32,
    fences: Vec<Fence>,
    /// Each Lease of this deployment as last listed, and when this replica saw it change.
    observed: BTreeMap<String, (Record, Instant)>,
    /// The shards held, and when their last successful write was sent.
    renewed: BTreeMap<u32, Instant>,
    terms: u64,
    held: watch::Sender<Held>,
    running: watch::Receiver<BTreeSet<u32>>,
    status: Arc<RwLock<StatusReport>>,
}

/// Starts holding shards of `count` on `client` (the management cluster).
pub fn spawn(
    client: kube::Client,
    settings: Settings,
    count: u32,
    status: Arc<RwLock<StatusReport>>,
) -> Shards {
    let api: Api<Lease> = Api::namespaced(client, &settings.namespace);
    let fences: Vec<Fence> = (0..count).map(|_| Fence::closed()).collect();
    let (held_tx, held) = watch::channel(Held::new());
    let (running, running_rx) = watch::channel(BTreeSet::new());
    let releaser = Releaser {
        api: api.clone(),
        settings: settings.clone(),
        count,
    };
    let holder = Holder {
        api,
        settings,
        count,
        fences: fences.clone(),
        observed: BTreeMap::new(),
        renewed: BTreeMap::new(),
        terms: 0,
        held: held_tx,
        running: running_rx,
        status,
    };
    holder.publish(&BTreeSet::new());
    Shards {
        held,
        fences,
        running,
        releaser,
        task: tokio::spawn(holder.run()),
    }
}

impl Holder {
    fn me(&self) -> &str {
        &self.settings.identity
    }

    fn attempt<'a>(&'a self, name: &'a str) -> Attempt<'a> {
        Attempt {
            api: &self.api,
            name,
            me: &self.settings.identity,
            duration: self.settings.lease_duration,
        }
    }

    async fn run(mut self) {
        tracing::info!(shards = self.count, identity = %self.settings.identity, "sharding: taking this replica's share of the shard leases");
        loop {
            let round = self.settings.renew_deadline;
            if tokio::time::timeout(round, self.round()).await.is_err() {
                tracing::warn!("sharding: the management cluster did not answer in time");
            }
            self.expire();
            let wait = self
                .settings
                .retry_period
                .mul_f64(1.0 + 0.2 * fastrand::f64());
            tokio::time::sleep(wait).await;
        }
    }

    /// One list of the Leases, then the member Lease renewed, the shards held renewed,
    /// the extras released and free ones taken.
    async fn round(&mut self) {
        let sent = Instant::now();
        let now_text = Timestamp::now().to_string();
        let listed = match self.api.list(&ListParams::default()).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %error_chain::chain(&e), "sharding: cannot list the leases");
                return;
            }
        };
        let prefix = format!("{}-", self.settings.lease_name);
        let leases: BTreeMap<String, Lease> = listed
            .items
            .into_iter()
            .filter_map(|l| Some((l.metadata.name.clone()?, l)))
            .filter(|(name, _)| name.starts_with(&prefix))
            .collect();
        for (name, lease) in &leases {
            let current = record_of(lease);
            if self.observed.get(name).is_none_or(|(r, _)| *r != current) {
                self.observed.insert(name.clone(), (current, sent));
            }
        }
        self.observed.retain(|name, _| leases.contains_key(name));

        let member = member_lease(&self.settings.lease_name, self.me());
        let found = leases.get(&member).cloned();
        if let Err(e) = self.write(&member, found, sent, &now_text).await {
            tracing::warn!(error = %error_chain::chain(&e), "sharding: cannot renew this replica's member lease");
        }
        let members = self.members(sent);

        for shard in self.renewed.keys().copied().collect::<Vec<_>>() {
            let name = shard_lease(&self.settings.lease_name, shard);
            let found = leases.get(&name).cloned();
            match self.write(&name, found, sent, &now_text).await {
                Ok(Hold::Holds(_)) => self.hold(shard, sent),
                Ok(Hold::HeldBy { holder, .. }) => {
                    self.lose(shard, &format!("the lease is held by {holder}"));
                }
                Ok(Hold::Raced) => {}
                Err(e) => {
                    tracing::warn!(lease = %name, error = %error_chain::chain(&e), "sharding: cannot renew the shard lease");
                }
            }
        }
        self.expire();

        let holders: Vec<Option<String>> = (0..self.count)
            .map(|shard| self.holder_of(shard, sent))
            .collect();
        let plan = fleet_core::shard::plan(self.me(), &holders, &members);
        for shard in plan.release {
            self.release(shard).await;
        }
        for shard in plan.take {
            let name = shard_lease(&self.settings.lease_name, shard);
            let found = leases.get(&name).cloned();
            match self.write(&name, found, sent, &now_text).await {
                Ok(Hold::Holds(_)) => {
                    self.terms += 1;
                    self.hold(shard, sent);
                    tracing::info!(shard, lease = %name, "sharding: took the shard; starting the workers of its clusters");
                }
                Ok(Hold::HeldBy { .. } | Hold::Raced) => {}
                Err(e) => {
                    tracing::warn!(lease = %name, error = %error_chain::chain(&e), "sharding: cannot take the shard lease");
                }
            }
        }
        self.publish(&members);
    }

    /// One take-or-renew of the Lease `name` as listed.
    async fn write(
        &mut self,
        name: &str,
        found: Option<Lease>,
        sent: Instant,
        now_text: &str,
    ) -> Result<Hold, kube::Error> {
        let observed_at = self.observed.get(name).map_or(sent, |(_, at)| *at);
        let hold = self
            .attempt(name)
            .hold(found, observed_at, Instant::now(), now_text)
            .await?;
        if let Hold::Holds(written) = &hold {
            self.observed
                .insert(name.to_string(), (written.clone(), Instant::now()));
        }
        Ok(hold)
    }

    /// The replicas whose member Leases have not expired, this one included.
    fn members(&self, now: Instant) -> BTreeSet<String> {
        let prefix = format!("{}-member-", self.settings.lease_name);
        let mut live: BTreeSet<String> = self
            .observed
            .iter()
            .filter(|(name, _)| name.starts_with(&prefix))
            .filter_map(|(_, (r, at))| live_holder(r, *at, now, self.settings.lease_duration))
            .collect();
        live.insert(self.me().to_string());
        live
    }

    /// The live holder of `shard`: this replica for the shards it holds; for the others,
    /// the holder of a Lease that has not expired (`None`: free, released or expired).
    fn holder_of(&self, shard: u32, now: Instant) -> Option<String> {
        if self.renewed.contains_key(&shard) {
            return Some(self.me().to_string());
        }
        let name = shard_lease(&self.settings.lease_name, shard);
        let (record, at) = self.observed.get(&name)?;
        live_holder(record, *at, now, self.settings.lease_duration).filter(|h| h != self.me())
    }

    /// Shard `shard` is this replica's until the renew deadline after `sent`.
    fn hold(&mut self, shard: u32, sent: Instant) {
        if let Some(fence) = self.fences.get(shard as usize) {
            fence.hold_until(sent + self.settings.renew_deadline);
        }
        self.renewed.insert(shard, sent);
    }

    /// Gives up the shards not renewed within the renew deadline (their fences closed by
    /// themselves already).
    fn expire(&mut self) {
        let deadline = self.settings.renew_deadline;
        let now = Instant::now();
        let late: Vec<u32> = self
            .renewed
            .iter()
            .filter(|(_, sent)| **sent + deadline <= now)
            .map(|(s, _)| *s)
            .collect();
        for shard in late {
            self.lose(
                shard,
                &format!("the lease was not renewed within the renew deadline ({deadline:?})"),
            );
        }
    }

    fn lose(&mut self, shard: u32, why: &str) {
        if let Some(fence) = self.fences.get(shard as usize) {
            fence.close();
        }
        if self.renewed.remove(&shard).is_some() {
            tracing::error!(
                shard,
                reason = why,
                "sharding: lost the shard; stopped writing to its clusters"
            );
            let members = self.members(Instant::now());
            self.publish(&members);
        }
    }

    /// Gives up a shard above this replica's share: no more writes to its clusters, its
    /// workers stopped, then the Lease released for another replica to take at once.
    async fn release(&mut self, shard: u32) {
        if let Some(fence) = self.fences.get(shard as usize) {
            fence.close();
        }
        self.renewed.remove(&shard);
        let members = self.members(Instant::now());
        self.publish(&members);
        let stopped = self.running.wait_for(|r| !r.contains(&shard));
        if tokio::time::timeout(self.settings.renew_deadline, stopped)
            .await
            .is_err()
        {
            // Its fence is closed all the same; the Lease expires by itself.
            tracing::warn!(
                shard,
                "sharding: the shard's workers did not stop in time; leaving its lease to expire"
            );
            return;
        }
        let name = shard_lease(&self.settings.lease_name, shard);
        match self.attempt(&name).release().await {
            Ok(_) => {
                tracing::info!(shard, lease = %name, "sharding: released the shard to a replica with fewer");
            }
            Err(e) => {
                tracing::warn!(lease = %name, error = %error_chain::chain(&e), "sharding: could not release the shard lease; it expires after its duration");
            }
        }
    }

    fn publish(&self, members: &BTreeSet<String>) {
        let held: Held = self
            .renewed
            .keys()
            .map(|s| {
                let term = self.held.borrow().get(s).copied().unwrap_or(self.terms);
                (*s, term)
            })
            .collect();
        self.held.send_if_modified(|h| {
            let changed = *h != held;
            if changed {
                *h = held.clone();
            }
            changed
        });
        if let Ok(mut s) = self.status.write() {
            s.shards = Some(ShardStatus {
                shards: self.count,
                held: held.keys().copied().collect(),
                members: members.iter().cloned().collect(),
            });
        }
    }
}

/// The holder of `record`, first seen at `at`, unless it released the Lease or its
/// lease has run out by `now`.
fn live_holder(record: &Record, at: Instant, now: Instant, default: Duration) -> Option<String> {
    let holder = record.holder()?;
    let duration = record
        .duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map_or(default, Duration::from_secs);
    (at + duration > now).then(|| holder.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_names_are_kubernetes_names() {
        assert_eq!(shard_lease("psql-fleet", 3), "psql-fleet-shard-3");
        let a = member_lease("psql-fleet", "Pod_A.1");
        assert!(a.starts_with("psql-fleet-member-pod-a-1-"), "{a}");
        assert!(a
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
        assert_ne!(a, member_lease("psql-fleet", "pod-a-1"));
        assert!(member_lease("p", &"x".repeat(300)).len() < 63);
    }

    #[test]
    fn a_holder_is_live_until_its_duration_after_it_was_seen_and_not_once_released() {
        let seen = Instant::now();
        let held = Record {
            holder: Some("a".into()),
            duration_seconds: Some(3),
            ..Record::default()
        };
        let d = Duration::from_secs(15);
        assert_eq!(
            live_holder(&held, seen, seen + Duration::from_millis(2999), d).as_deref(),
            Some("a")
        );
        assert_eq!(
            live_holder(&held, seen, seen + Duration::from_secs(3), d),
            None
        );
        let released = Record {
            holder: Some(String::new()),
            ..held
        };
        assert_eq!(live_holder(&released, seen, seen, d), None);
    }
}
