//! psql-fleet: a multi-cluster GitOps agent that keeps the StackGres and Atlas operators
//! (as Crossplane provider-helm Releases, guarded by a Usage) right on every cluster of a
//! fleet, from `Psql` claims kept in Git.
//!
//! The pipeline reads top to bottom: [`fleetdir`] loads a fleet directory into validated
//! [`model`] documents, [`render`] turns each claim into the [`api`] objects a cluster
//! should hold, and [`cli`] exposes it.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod agent;
pub mod api;
pub mod cli;
pub mod cluster;
pub mod demo;
pub mod fleetdir;
pub mod github;
pub mod metrics;
pub mod model;
pub mod plan;
pub mod reconcile;
pub mod render;
pub mod rollout;
pub mod sim;
pub mod source;
pub mod status;
pub mod webhook;
