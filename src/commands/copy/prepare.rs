//! The first phase of a copy: connect to both sides, make sure they are two databases, take
//! pgcopy's lock on the destination and put back what an earlier run left undone (or, in a
//! dry run, only say so).

use super::SnapshotFrom;
use crate::cli::config::CopyConfig;
use crate::commands::recover;
use crate::pg::server::{lock_destination, Identity};
use crate::replication::slot;
use crate::state::file::{State, StateFile};
use anyhow::{bail, Result};
use postgres::Client;

/// Both sides connected, and the destination's state file read.
pub(super) struct Prepared {
    pub(super) source: Client,
    pub(super) source_id: Identity,
    pub(super) dest: Client,
    pub(super) state_file: StateFile,
    /// What an earlier run left to do on this destination.
    pub(super) previous: Option<State>,
}

pub(super) fn prepare(cfg: &CopyConfig, snapshot: &SnapshotFrom) -> Result<Prepared> {
    let mut source = cfg.source.connect()?;
    let mut dest = cfg.dest.connect()?;
    let dest_id = Identity::read(&mut dest)?;
    let source_id = Identity::read(&mut source)?;
    if source_id == dest_id {
        bail!(
            "the source and the destination are the same database ({} and {} are one server \
             and database); refusing to copy a database onto itself",
            cfg.source,
            cfg.dest
        );
    }
    // Planning reads the catalog; a table locked by another session must give a clear
    // error, not a silent hang (pg_get_indexdef, for one, waits for the lock).
    dest.batch_execute(&format!(
        "SET lock_timeout = {}",
        cfg.lock_timeout.as_millis()
    ))?;
    let ours = slot::name_for(&dest_id.key());
    // A copy on a snapshot of its own replaces what a stopped follower followed into.
    let replaced = matches!(snapshot, SnapshotFrom::Own).then_some(ours.as_str());
    slot::warn_left_behind(&mut source, replaced);
    let state_file = StateFile::new(&cfg.state_dir, &dest_id.database, &dest_id.key());
    let previous = if cfg.dry_run {
        let previous = state_file.load()?;
        if let Some(state) = previous.as_ref().filter(|s| !s.keys.is_empty()) {
            log::warn!(
                "an earlier run left {} foreign keys dropped on {}: `pgcopy recover` or the \
                 next copy puts them back",
                state.keys.len(),
                cfg.dest
            );
        }
        previous
    } else {
        lock_destination(&mut dest, &cfg.dest)?;
        recover::pending(&mut dest, &state_file, &cfg.dest)?
    };

    Ok(Prepared {
        source,
        source_id,
        dest,
        state_file,
        previous,
    })
}
