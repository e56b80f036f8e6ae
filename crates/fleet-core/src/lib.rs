//! psql-fleet's pure core: everything the agent decides, as functions of their inputs and
//! the clock they are given. No async runtime, no Kubernetes client, no Git.
//!
//! The pipeline reads top to bottom: [`fleetdir`] loads a fleet directory into validated
//! [`model`] documents; [`render`] turns each claim into the [`api`] objects a cluster
//! should hold; [`reconcile`] compares them with what a cluster holds and returns the
//! actions that close the gap; [`rollout`] decides which revision each cluster is given,
//! wave by wave, and [`shard`] which replica writes to it; [`plan`] says what a change of
//! the fleet does to each cluster. [`text`] keeps text from outside from steering a
//! terminal or a log.

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

pub mod api;
pub mod fleetdir;
pub mod model;
pub mod plan;
pub mod reconcile;
pub mod render;
pub mod rollout;
pub mod shard;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod text;
