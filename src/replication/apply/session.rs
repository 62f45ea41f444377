//! The destination session the applier runs in: how it keeps the destination quiet (the
//! replica role, or the triggers to switch off), where it records its progress, and the
//! settings it starts with.

use crate::pg::sql::TableName;
use crate::pg::wire;
use crate::replication::progress::Ledger;
use crate::schema::triggers::Trigger;
use anyhow::{Context, Result};
use std::collections::HashMap;

/// How the applier keeps the destination quiet and where it records its progress.
pub(crate) struct Setup {
    pub(crate) ledger: Ledger,
    /// The session runs with `session_replication_role = replica`.
    pub(crate) replica: bool,
    /// The triggers that would fire in the session, by table: switched off inside each
    /// group that changes the table, on again before it commits.
    pub(crate) quiet: HashMap<TableName, Vec<Trigger>>,
}

/// Sets up a destination session to apply with: the replica role where `setup` has it, the
/// text formats the source's values come in, and the ledger's session (an origin `name`
/// must exist).
///
/// Every row is found by its key, one at a time, so an index scan is always the plan to
/// have; but a small table whose statistics say one page (pgbench's branches, a lookup
/// table) gets a sequential scan planned, and its heap grows with every update the
/// follower applies to it, so each update reads more of it. PostgreSQL's own apply worker
/// always looks rows up in the replica identity's index; without a sequential scan, so do
/// these statements.
pub(crate) fn prepare_session(
    session: &mut wire::Connection,
    name: &str,
    setup: &Setup,
) -> Result<()> {
    let role = if setup.replica {
        "SET session_replication_role = replica;"
    } else {
        ""
    };
    session
        .execute(&format!(
            "{role}
             SET datestyle = 'ISO';
             SET intervalstyle = 'postgres';
             SET extra_float_digits = 3;
             SET enable_seqscan = off;
             SET enable_bitmapscan = off;
             {}",
            setup.ledger.session_setup(name)
        ))
        .context("setting up the session that applies the source's changes")
}
