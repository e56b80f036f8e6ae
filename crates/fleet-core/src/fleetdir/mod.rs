//! Loading a fleet directory (SPEC 2.1) as one whole: every file parsed, every cross-file
//! rule checked, every problem reported. A fleet either loads completely or not at all, so
//! that a bad revision can never be half-applied.

mod documents;
mod expand;
pub mod fuzz;
pub mod load;
mod rules;
pub mod tree;

pub use load::{load, LoadOutcome, LoadedFleet};
pub use tree::{DirStamp, FileTree, OpenError};
