//! Following a live source with logical replication (`copy --follow`), in rooms: whether a
//! source can be followed (`readiness`); the publication and slot that a copy's snapshot
//! comes from, and what the publication's comment records (`slot`); and the three stages of
//! following, each with one job, put together by `follow` with a bounded channel between
//! them: the receiver, the one thread on the slot's session (`receive`, which holds streamed
//! transactions until they commit: `spool`); the pgoutput decoder, pure functions over bytes
//! (`decode`); and the applier, which owns the destination session and commits its progress
//! with what it applied (`apply`, which folds each group's changes into one per row with
//! `net` and records how far it got with `progress`). Imports `pg/`, `schema/`, `plan/`,
//! `state/` and `units`; imported only by `commands/`.

pub(crate) mod apply;
pub(crate) mod chunks;
pub(crate) mod decode;
pub(crate) mod follow;
pub(crate) mod net;
pub(crate) mod progress;
pub(crate) mod readiness;
pub(crate) mod receive;
pub(crate) mod slot;
pub(crate) mod spool;
