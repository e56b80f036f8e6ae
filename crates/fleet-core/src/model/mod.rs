//! The documents of a fleet directory (SPEC 2.1): `Psql` claims, `Cluster` files and the
//! `Fleet` settings, parsed strictly, with diagnostics that name file, document and field.

pub mod chart;
pub mod claim;
pub mod cluster;
pub mod diagnostic;
pub mod document;
pub mod duration;
pub mod fleet;
pub mod gate;
pub mod head;
pub mod inventory;
pub mod keys;
pub mod locate;
pub mod metadata;
pub mod names;
pub mod nesting;
pub mod selector;
pub mod share;
pub mod target;
pub mod version;
pub mod window;

pub use chart::Chart;
pub use claim::{Claim, ClaimKey};
pub use cluster::Cluster;
pub use diagnostic::{Diagnostic, Origin, Severity};
pub use fleet::FleetSettings;
pub use selector::LabelSelector;

/// `apiVersion` of psql-fleet's own documents (`Fleet`, `Cluster`).
pub const FLEET_API_VERSION: &str = "fleet.hops.ops.com.ai/v1alpha1";
