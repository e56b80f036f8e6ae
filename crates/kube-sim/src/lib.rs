//! kube-sim: a fleet of Kubernetes-API-compatible clusters on one loopback HTTPS listener
//! (`https://127.0.0.1:PORT`, each cluster at the root under its TLS server name
//! `<name>.kube-sim.test`), honest enough for kubectl and kube-rs
//! unchanged: discovery, OpenAPI, real verb semantics, watches, server-side apply, Status
//! errors, simulated provider-helm and Crossplane Usage controllers, fault injection, an
//! audit log and a state file that survives restarts. It is psql-fleet's test and demo
//! infrastructure.
//!
//! [`start`] is the entry point; `psql-fleet sim` and `psql-fleet demo` wrap it, the
//! integration tests call it directly. The crate knows nothing of the agent: it uses only
//! `fleet-core`'s API types, to generate and serve their CRDs.
//!
//! HTTP is served with hyper directly rather than through a web framework, because the
//! Kubernetes wire details are the product here: chunked watch streams, protobuf request
//! bodies, content negotiation (Tables, aggregated discovery fallback), plain-text
//! health answers, `Warning` headers and dropped connections for a cluster that is down.
//!
//! A request goes `server` (TLS, HTTP/1.1 and HTTP/2) → `router` (cluster, faults, auth,
//! path) → `verbs` or `watch` over one cluster's `store`; the `controllers` of each used
//! cluster follow its change events and write through the same `verbs`.

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

pub mod admin;
pub mod audit;
pub mod catalogue;
pub mod cel;
pub mod cluster;
pub mod config;
pub mod controllers;
pub mod crds;
pub mod discovery;
pub mod events;
pub mod kubeconfig;
pub mod objects;
pub mod openapi;
pub mod persist;
pub mod protobuf;
pub mod requests;
pub mod router;
pub mod selector;
pub mod server;
pub mod sim;
pub mod ssa;
pub mod status;
pub mod store;
pub mod table;
pub mod tls;
pub mod typed;
pub mod usage;
pub mod validation;
pub mod verbs;
pub mod watch;
pub mod wire;

pub use config::SimConfig;
pub use server::{start, SimError, SimHandle};
pub use sim::{ClusterSlot, Faults, Sim};
