//! Following a live source with logical replication (`copy --follow`): whether a source can
//! be followed (`readiness`); the publication and slot that a copy's snapshot comes from
//! (`slot`); and the three stages of following, each with one job, bounded channels
//! between them: the receiver on the slot's session (`receive`), the pgoutput decoder,
//! pure functions over bytes (`decode`), and the applier that owns the destination session
//! and commits its progress with what it applied (`apply`, `progress`). Imports `pg/` and `plan/`; imported only by `commands/`.

pub(crate) mod apply;
pub(crate) mod decode;
pub(crate) mod follow;
pub(crate) mod net;
pub(crate) mod progress;
pub(crate) mod readiness;
pub(crate) mod receive;
pub(crate) mod slot;
pub(crate) mod spool;
pub(crate) mod statements;
