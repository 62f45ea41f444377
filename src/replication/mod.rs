//! Following a live source with logical replication (`copy --follow`): whether a source can
//! be followed (`readiness`); the publication and slot that a copy's snapshot comes from,
//! and what the publication's comment records (`slot`); and the three stages of following,
//! each with one job, bounded channels between them: the receiver on the slot's session
//! (`receive`, which holds streamed transactions until they commit: `spool`), the pgoutput
//! decoder, pure functions over bytes (`decode`), and the applier that owns the destination
//! session and commits its progress with what it applied (`apply`, its statements in
//! `statements`, net changes in `net`, the record in `progress`). Imports `pg/`, `schema/`
//! and `plan/`; imported only by `commands/`.

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
