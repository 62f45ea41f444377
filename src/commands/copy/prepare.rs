//! The first phase of a copy: connect to both sides, make sure they are two databases, take
//! pgcopy's lock on the destination and put back what an earlier run left undone (or, in a
//! dry run, only say so).

use crate::cli::config::CopyConfig;
use crate::commands::recover;
use crate::pg::server::{lock_destination, Identity};
use crate::replication::slot;
use crate::state::file::{State, StateFile};
use crate::units::format_bytes;
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

pub(super) fn prepare(cfg: &CopyConfig) -> Result<Prepared> {
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
    warn_left_behind(&mut source, (!cfg.follow).then_some(ours.as_str()));
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

/// Names each slot an earlier `copy --follow` left on the source and nobody streams from:
/// it keeps WAL there until it is dropped. `replaced` is the slot of a follower into this
/// destination, whose data this copy replaces: following cannot go on from it. Best
/// effort: a source that cannot say is not a reason to stop.
pub(super) fn warn_left_behind(source: &mut Client, replaced: Option<&str>) {
    match slot::followers(source) {
        Ok(slots) => {
            for follower in slots.into_iter().filter(|f| !f.active) {
                let (name, held) = (follower.slot, format_bytes(follower.held));
                if Some(name.as_str()) == replaced {
                    log::warn!(
                        "the replication slot {name} of a stopped `pgcopy copy --follow` into \
                         this destination is left on the source, holding {held} of WAL: this \
                         copy replaces the data it followed into, so it cannot go on from \
                         there; drop it with `pgcopy abandon` (a `copy --follow --resume` \
                         starts over with a new copy)"
                    );
                } else {
                    log::warn!(
                        "the replication slot {name} that a `pgcopy copy --follow` made is \
                         left on the source, holding {held} of WAL: go on with `pgcopy copy \
                         --follow --resume`, or drop it with `pgcopy abandon` (both with the \
                         --dest it followed into)"
                    );
                }
            }
        }
        Err(err) => log::debug!("could not list the source's replication slots: {err:#}"),
    }
}
