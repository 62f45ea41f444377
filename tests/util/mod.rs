//! The one helper set of the integration tests: throwaway PostgreSQL clusters, a database per
//! test named after it, data to put in it, the `pgcopy` runner with its exit-code assertion,
//! what a test compares before and after a run, and the shells and man page checkers the
//! completion tests ask.
//!
//! Everything is re-exported here, so a test needs only `crate::util`: it imports what it
//! uses often (`pair!`, `assert_exit!`, `exit`, `copy`, …) and writes `util::source()` for
//! the rest, whichever file of this folder holds it.

#![allow(dead_code)]

mod cluster;
mod compare;
mod corpora;
mod data;
mod db;
mod follow;
mod run;
mod sessions;
mod shells;
mod state;

pub use cluster::*;
pub use compare::*;
pub use corpora::*;
pub use data::*;
pub use db::*;
pub use follow::*;
pub use run::*;
pub use sessions::*;
pub use shells::*;
pub use state::*;
