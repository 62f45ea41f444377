//! What the databases hold and how the destination's objects are handled around a load:
//! the catalog, foreign keys and the --fk-mode, indexes, triggers, sequences, large objects,
//! materialized views and planner statistics.

pub(crate) mod catalog;
pub(crate) mod constraints;
pub(crate) mod fk_mode;
pub(crate) mod indexes;
pub(crate) mod large_objects;
pub(crate) mod matviews;
pub(crate) mod own;
pub(crate) mod sequences;
pub(crate) mod statistics;
pub(crate) mod triggers;
