//! psql-fleet: a multi-cluster GitOps agent that keeps the StackGres and Atlas operators
//! (as Crossplane provider-helm Releases, guarded by a Usage) right on every cluster of a
//! fleet, from `Psql` claims kept in Git.
//!
//! This crate is the agent's I/O edge and the command line; the decisions live in
//! `fleet-core` and the simulated clusters in `kube-sim`. The agent's pipeline: [`source`]
//! yields revisions of the fleet directory (with the clusters [`cluster_api`] finds on a
//! management cluster, when asked), [`agent`] accepts them and gives each cluster
//! its assignment, [`cluster`] runs one session per cluster (connect, watch, pass, apply),
//! and what they learn is published through [`metrics`] and [`status`] over HTTP.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        reason = "a failed test panics"
    )
)]

pub mod agent;
pub mod cli;
pub mod cluster;
pub mod cluster_api;
pub mod error_chain;
pub mod file_watch;
pub mod github;
pub mod http_server;
pub mod metrics;
pub mod source;
pub mod status;
pub mod webhook;
