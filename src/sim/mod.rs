//! The Kubernetes API simulator behind `psql-fleet sim`. Each submodule is one piece of API-server
//! behaviour, pure where it can be so the rules can be tested without a server.

pub mod ssa;
