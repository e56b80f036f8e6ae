//! Leader election (`run --leader-elect`): replicas of the agent take a
//! `coordination.k8s.io/v1` Lease on the management cluster, and only the holder writes to
//! fleet clusters. The protocol is client-go's (`tools/leaderelection`): the Lease's
//! `holderIdentity`, `acquireTime`, `renewTime`, `leaseDurationSeconds` and
//! `leaseTransitions`, every write under the `resourceVersion` read (a replica that loses a
//! race gets 409 Conflict and writes nothing), expiry judged from when a replica saw the
//! Lease change ([`record`]), the holder renewing every retry period and giving up at its
//! renew deadline, which is shorter than the lease duration ([`fence`]).
//!
//! The elector runs as one task and says what this replica is on a watch channel
//! ([`Role`]) and in the status; the run loop starts the rollout and the cluster workers
//! only while it is the leader.

pub mod fence;
pub mod record;
pub mod shards;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error_chain;
use crate::status::{LeaderStatus, StatusReport};
pub use fence::Fence;
use record::{decide, Decision, Record};

/// Where the pod's namespace is mounted with its service account.
pub const POD_NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";
/// The Lease's name unless `--leader-elect-lease-name` says otherwise. Fixed rather than
/// derived from the fleet's name: the name is read from the source, which a standby does
/// not read, and a rename would give one fleet two Leases (and two leaders).
pub const DEFAULT_LEASE_NAME: &str = "psql-fleet";
/// The field manager of the elector's writes to the Lease.
const FIELD_MANAGER: &str = "psql-fleet-leader-election";

/// `--leader-elect` and its flags; client-go's defaults.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The management cluster's kubeconfig; the in-cluster configuration when `None`.
    pub kubeconfig: Option<PathBuf>,
    pub namespace: String,
    pub lease_name: String,
    /// This replica's `holderIdentity`.
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl Settings {
    pub const LEASE_DURATION: Duration = Duration::from_secs(15);
    pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
    pub const RETRY_PERIOD: Duration = Duration::from_secs(2);

    /// Fencing by time needs retry period < renew deadline < lease duration (as client-go
    /// requires); the duration is written in whole seconds.
    pub fn check(&self) -> Result<(), Error> {
        let ok = self.lease_duration >= Duration::from_secs(1)
            && self.renew_deadline < self.lease_duration
            && !self.retry_period.is_zero()
            && self.retry_period < self.renew_deadline;
        if ok {
            Ok(())
        } else {
            Err(Error::Timings)
        }
    }
}

/// The namespace of the pod this runs in, else `default`.
pub fn default_namespace() -> String {
    std::fs::read_to_string(POD_NAMESPACE_FILE)
        .ok()
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".into())
}

/// This replica's identity: its host name and process id.
pub fn default_identity() -> String {
    format!("{}_{}", super::host(), std::process::id())
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Only the kind of problem: kube's own message may quote the file.
    #[error("leader election: kubeconfig {}: {kind}", path.display())]
    Kubeconfig { path: PathBuf, kind: &'static str },
    #[error("leader election: not in a pod (no in-cluster configuration); give --leader-elect-kubeconfig")]
    InCluster,
    #[error("leader election: the management cluster's client cannot be built")]
    Client(#[source] Box<crate::cluster::transport::Error>),
    #[error("leader election: the retry period must be shorter than the renew deadline, and the renew deadline shorter than the lease duration (at least 1s)")]
    Timings,
}

/// A client of the management cluster: from `kubeconfig`, else the pod's service account;
/// every request says `user_agent` (which replica), so its audit log names who wrote.
pub async fn client(kubeconfig: Option<&Path>, user_agent: &str) -> Result<kube::Client, Error> {
    let mut config = match kubeconfig {
        Some(path) => {
            let invalid = |kind| Error::Kubeconfig {
                path: path.to_path_buf(),
                kind,
            };
            let kc = Kubeconfig::read_from(path)
                .map_err(|_| invalid("cannot be read or does not parse as a kubeconfig"))?;
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|_| invalid("context, cluster or user missing or malformed"))?
        }
        None => kube::Config::incluster().map_err(|_| Error::InCluster)?,
    };
    if config.accept_invalid_certs && !crate::cluster::kubeconfig::insecure_allowed() {
        return Err(Error::Kubeconfig {
            path: kubeconfig.map(Path::to_path_buf).unwrap_or_default(),
            kind: "sets insecure-skip-tls-verify; refused unless PSQL_FLEET_ALLOW_INSECURE_TLS=1",
        });
    }
    if let Ok(value) = http::HeaderValue::from_str(user_agent) {
        config.headers.push((http::header::USER_AGENT, value));
    }
    crate::cluster::transport::client(&config).map_err(|e| Error::Client(Box::new(e)))
}

/// What this replica is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Another replica holds the Lease (or it has not been read yet).
    Standby,
    /// This replica holds the Lease and may write until its renew deadline; `term` counts
    /// its leaderships, so that losing and retaking the Lease is seen as a change.
    Leader { term: u64 },
    /// It held the Lease and could not renew it in time: it stopped writing, and tries to
    /// take the Lease again.
    Lost,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Standby => "standby",
            Role::Leader { .. } => "leader",
            Role::Lost => "lost",
        }
    }

    pub fn leads(self) -> bool {
        matches!(self, Role::Leader { .. })
    }
}

/// What one attempt on the Lease found.
enum Outcome {
    /// This replica holds it now.
    Leading { acquire_time: Option<String> },
    HeldBy {
        holder: String,
        expires_in: Duration,
    },
    /// Another replica wrote first (409): read again.
    Raced,
}

fn record_of(lease: &Lease) -> Record {
    let spec = lease.spec.clone().unwrap_or_default();
    Record {
        holder: spec.holder_identity,
        duration_seconds: spec.lease_duration_seconds,
        acquire_time: spec.acquire_time.map(|t| t.0.to_string()),
        renew_time: spec.renew_time.map(|t| t.0.to_string()),
        transitions: spec.lease_transitions.unwrap_or(0),
    }
}

fn micro_time(text: Option<&str>) -> Option<MicroTime> {
    text.and_then(|t| t.parse::<Timestamp>().ok())
        .map(MicroTime)
}

fn write_spec(spec: &mut LeaseSpec, record: &Record) {
    spec.holder_identity.clone_from(&record.holder);
    spec.lease_duration_seconds = record.duration_seconds;
    spec.acquire_time = micro_time(record.acquire_time.as_deref());
    spec.renew_time = micro_time(record.renew_time.as_deref());
    spec.lease_transitions = Some(record.transitions);
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    }
}

/// What one take-or-renew of a Lease came to.
enum Hold {
    /// This replica holds it, as written.
    Holds(Record),
    HeldBy {
        holder: String,
        expires_in: Duration,
    },
    /// Another replica wrote first (409): read again.
    Raced,
}

/// One Lease as one replica takes or renews it: the leader Lease, a shard's, or a
/// replica's membership.
struct Attempt<'a> {
    api: &'a Api<Lease>,
    name: &'a str,
    me: &'a str,
    duration: Duration,
}

impl Attempt<'_> {
    /// Creates the Lease when `found` is `None`, else decides on it (first seen at
    /// `observed_at`; `now` is when the write is made, `now_text` its RFC 3339 form) and,
    /// when the decision says so, replaces it under the version read.
    async fn hold(
        &self,
        found: Option<Lease>,
        observed_at: Instant,
        now: Instant,
        now_text: &str,
    ) -> Result<Hold, kube::Error> {
        let Some(mut lease) = found else {
            let record = Record {
                holder: Some(self.me.to_string()),
                duration_seconds: Some(record::seconds(self.duration)),
                acquire_time: Some(now_text.to_string()),
                renew_time: Some(now_text.to_string()),
                transitions: 0,
            };
            let mut spec = LeaseSpec::default();
            write_spec(&mut spec, &record);
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.to_string()),
                    ..ObjectMeta::default()
                },
                spec: Some(spec),
            };
            return match self.api.create(&post_params(), &lease).await {
                Ok(created) => Ok(Hold::Holds(record_of(&created))),
                Err(e) if is_conflict(&e) => Ok(Hold::Raced),
                Err(e) => Err(e),
            };
        };
        let current = record_of(&lease);
        match decide(self.me, &current, observed_at, now, now_text, self.duration) {
            Decision::HeldBy { holder, expires_in } => Ok(Hold::HeldBy { holder, expires_in }),
            Decision::Write(record) => {
                // The resourceVersion read stays in the metadata: the update is refused
                // with 409 if anyone wrote in between.
                write_spec(lease.spec.get_or_insert_with(LeaseSpec::default), &record);
                match self.api.replace(self.name, &post_params(), &lease).await {
                    Ok(written) => Ok(Hold::Holds(record_of(&written))),
                    Err(e) if is_conflict(&e) => Ok(Hold::Raced),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Releases the Lease if `me` still holds it (as client-go's ReleaseOnCancel): no
    /// holder, a lease of one second, under the version read. Whether it was released.
    async fn release(&self) -> Result<bool, kube::Error> {
        let Some(mut lease) = self.api.get_opt(self.name).await? else {
            return Ok(false);
        };
        let current = record_of(&lease);
        if current.holder() != Some(self.me) {
            return Ok(false);
        }
        let now = Timestamp::now().to_string();
        let released = Record {
            holder: None,
            duration_seconds: Some(1),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            transitions: current.transitions,
        };
        write_spec(lease.spec.get_or_insert_with(LeaseSpec::default), &released);
        self.api.replace(self.name, &post_params(), &lease).await?;
        Ok(true)
    }
}

/// The elector: one task per agent.
pub struct Elector {
    api: Api<Lease>,
    settings: Settings,
    /// The Lease as last read or written, and when this replica saw it so.
    observed: Option<(Record, Instant)>,
    fence: Fence,
    role: watch::Sender<Role>,
    /// Leaderships so far.
    terms: u64,
    status: Arc<RwLock<StatusReport>>,
}

/// Gives up the Lease at shutdown, so a standby takes over at once instead of after the
/// lease duration.
#[derive(Clone)]
pub struct Releaser {
    api: Api<Lease>,
    settings: Settings,
}

impl Elector {
    /// Starts electing on `client` (the management cluster); writes to fleet clusters are
    /// allowed through `fence` only while this replica leads.
    pub fn spawn(
        client: kube::Client,
        settings: Settings,
        fence: Fence,
        status: Arc<RwLock<StatusReport>>,
    ) -> (watch::Receiver<Role>, Releaser, JoinHandle<()>) {
        let api: Api<Lease> = Api::namespaced(client, &settings.namespace);
        let (role, rx) = watch::channel(Role::Standby);
        let releaser = Releaser {
            api: api.clone(),
            settings: settings.clone(),
        };
        let elector = Elector {
            api,
            settings,
            observed: None,
            fence,
            role,
            terms: 0,
            status,
        };
        elector.publish(Role::Standby, None, None, None);
        (rx, releaser, tokio::spawn(elector.run()))
    }

    fn lease(&self) -> String {
        format!("{}/{}", self.settings.namespace, self.settings.lease_name)
    }

    fn publish(
        &self,
        role: Role,
        holder: Option<String>,
        acquire_time: Option<String>,
        message: Option<String>,
    ) {
        let changed = self.role.send_if_modified(|r| {
            let changed = *r != role;
            *r = role;
            changed
        });
        if let Ok(mut s) = self.status.write() {
            let previous = s.leader.take();
            let since = match &previous {
                Some(p) if !changed => p.since.clone(),
                _ => Some(Timestamp::now().to_string()),
            };
            s.leader = Some(LeaderStatus {
                identity: self.settings.identity.clone(),
                lease: self.lease(),
                role: role.as_str().into(),
                holder,
                since,
                acquire_time,
                message,
            });
        }
    }

    async fn run(mut self) {
        tracing::info!(lease = %self.lease(), identity = %self.settings.identity, "leader election: standby until this replica holds the lease");
        loop {
            let renewed = self.acquire().await;
            self.lead(renewed).await;
        }
    }

    /// One read of the Lease and, when the decision says so, one write under the version
    /// read.
    async fn attempt(&mut self) -> Result<Outcome, kube::Error> {
        let now_text = Timestamp::now().to_string();
        let found = self.api.get_opt(&self.settings.lease_name).await?;
        let now = Instant::now();
        if let Some(lease) = &found {
            let current = record_of(lease);
            if self.observed.as_ref().is_none_or(|(r, _)| *r != current) {
                self.observed = Some((current, now));
            }
        }
        let observed_at = self.observed.as_ref().map_or(now, |(_, at)| *at);
        let attempt = Attempt {
            api: &self.api,
            name: &self.settings.lease_name,
            me: &self.settings.identity,
            duration: self.settings.lease_duration,
        };
        Ok(
            match attempt.hold(found, observed_at, now, &now_text).await? {
                Hold::Holds(written) => {
                    let acquire_time = written.acquire_time.clone();
                    self.observed = Some((written, Instant::now()));
                    Outcome::Leading { acquire_time }
                }
                Hold::HeldBy { holder, expires_in } => Outcome::HeldBy { holder, expires_in },
                Hold::Raced => Outcome::Raced,
            },
        )
    }

    /// Tries every retry period (with a little jitter, and at the holder's expiry when that
    /// comes sooner) until this replica holds the Lease; when the successful attempt was
    /// sent.
    async fn acquire(&mut self) -> Instant {
        let retry = self.settings.retry_period;
        loop {
            let sent = Instant::now();
            let mut wait = retry.mul_f64(1.0 + 0.2 * fastrand::f64());
            match tokio::time::timeout(self.settings.renew_deadline, self.attempt()).await {
                Ok(Ok(Outcome::Leading { acquire_time })) => {
                    self.fence.hold_until(sent + self.settings.renew_deadline);
                    tracing::info!(lease = %self.lease(), identity = %self.settings.identity, "leader election: this replica leads; starting the rollout and the cluster workers");
                    self.terms += 1;
                    let role = Role::Leader { term: self.terms };
                    self.publish(
                        role,
                        Some(self.settings.identity.clone()),
                        acquire_time,
                        None,
                    );
                    return sent;
                }
                Ok(Ok(Outcome::HeldBy { holder, expires_in })) => {
                    let was = *self.role.borrow();
                    if was != Role::Standby {
                        tracing::info!(lease = %self.lease(), %holder, "leader election: standby, another replica leads");
                    }
                    let acquire = self
                        .observed
                        .as_ref()
                        .and_then(|(r, _)| r.acquire_time.clone());
                    self.publish(Role::Standby, Some(holder), acquire, None);
                    // Try again right when the holder's lease would expire.
                    wait = wait.min(expires_in + Duration::from_millis(10));
                }
                Ok(Ok(Outcome::Raced)) => {}
                Ok(Err(e)) => self.failed(&e),
                Err(_) => self.timed_out(),
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Renews every retry period while it can; returns once it could not renew before its
    /// renew deadline (or found another holder), with the fence closed.
    async fn lead(&mut self, mut renewed: Instant) {
        let deadline_after = self.settings.renew_deadline;
        loop {
            tokio::time::sleep(self.settings.retry_period).await;
            let deadline = renewed + deadline_after;
            loop {
                let sent = Instant::now();
                let Some(left) = deadline
                    .checked_duration_since(sent)
                    .filter(|d| !d.is_zero())
                else {
                    return self.lose(&format!(
                        "the lease was not renewed within the renew deadline ({deadline_after:?})"
                    ));
                };
                match tokio::time::timeout(left, self.attempt()).await {
                    Ok(Ok(Outcome::Leading { .. })) => {
                        renewed = sent;
                        self.fence.hold_until(sent + deadline_after);
                        break;
                    }
                    Ok(Ok(Outcome::HeldBy { holder, .. })) => {
                        return self.lose(&format!("the lease is held by {holder}"));
                    }
                    Ok(Ok(Outcome::Raced)) => {}
                    Ok(Err(e)) => self.failed(&e),
                    Err(_) => self.timed_out(),
                }
                let left = deadline.saturating_duration_since(Instant::now());
                tokio::time::sleep(self.settings.retry_period.min(left)).await;
            }
        }
    }

    fn lose(&mut self, why: &str) {
        self.fence.close();
        tracing::error!(lease = %self.lease(), identity = %self.settings.identity, reason = why, "leader election: lost the lease; stopped writing to fleet clusters, stopping the cluster workers, and trying to take the lease again");
        self.publish(
            Role::Lost,
            None,
            None,
            Some(format!(
                "lost the lease: {why}; stopped writing to fleet clusters"
            )),
        );
    }

    fn failed(&self, e: &kube::Error) {
        let e = error_chain::chain(e);
        tracing::warn!(lease = %self.lease(), error = %e, "leader election: cannot read or write the lease");
        if let Ok(mut s) = self.status.write() {
            if let Some(l) = s.leader.as_mut() {
                l.message = Some(format!("cannot read or write the lease: {e}"));
            }
        }
    }

    fn timed_out(&self) {
        tracing::warn!(lease = %self.lease(), "leader election: the management cluster did not answer in time");
        if let Ok(mut s) = self.status.write() {
            if let Some(l) = s.leader.as_mut() {
                l.message = Some("the management cluster did not answer in time".into());
            }
        }
    }
}

impl Releaser {
    /// Releases the Lease if this replica still holds it (as client-go's ReleaseOnCancel):
    /// no holder, a lease of one second. Best effort, under the version read.
    pub async fn release(&self) {
        let attempt = Attempt {
            api: &self.api,
            name: &self.settings.lease_name,
            me: &self.settings.identity,
            duration: self.settings.lease_duration,
        };
        match attempt.release().await {
            Ok(true) => {
                tracing::info!(lease = %format!("{}/{}", self.settings.namespace, self.settings.lease_name), "leader election: released the lease")
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %error_chain::chain(&e), "leader election: could not release the lease; it expires after its duration")
            }
        }
    }
}
