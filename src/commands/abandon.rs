//! The `abandon` command: gives up a `copy --follow` for good. The slot is what costs the
//! source (it keeps every WAL segment from its position on, however long nobody reads it),
//! so it goes first, with the publication; then the destination's record of the follower's
//! progress, and the foreign keys a follower without the replica role kept dropped go back.

use crate::cli::config::AbandonConfig;
use crate::commands::recover;
use crate::exit::Exit;
use crate::pg::server::{lock_destination, Identity};
use crate::replication::slot::LsnText;
use crate::replication::{progress, slot};
use crate::state::file::StateFile;
use crate::units::format_bytes;
use anyhow::Result;

pub(crate) fn run(cfg: &AbandonConfig) -> Result<Exit> {
    let mut dest = cfg.dest.connect()?;
    let identity = Identity::read(&mut dest)?;
    let name = slot::name_for(&identity.key());
    let mut source = cfg.source.connect()?;
    let (slot, publication) = slot::drop_both(&mut source, &name)?;
    let record = progress::forget(&mut dest, &name)?;
    lock_destination(&mut dest, &cfg.dest)?;
    let file = StateFile::new(&cfg.state_dir, &identity.database, &identity.key());
    let keys = file.load()?.map_or(0, |state| state.keys.len());
    recover::pending(&mut dest, &file, &cfg.dest)?;
    let mut done = Vec::new();
    if let Some(slot) = &slot {
        done.push(format!(
            "dropped the replication slot {name} on {}, which held {} of WAL there",
            cfg.source,
            format_bytes(slot.held)
        ));
    }
    if publication {
        done.push(format!("dropped the publication {name}"));
    }
    if let Some(at) = record {
        done.push(format!(
            "dropped the destination's record that it held the source's transactions up to {}",
            LsnText(at)
        ));
    }
    if keys > 0 {
        done.push(format!(
            "put back the {keys} foreign keys the follower kept dropped"
        ));
    }
    if done.is_empty() {
        log::info!(
            "there was no follower of {} on {} to abandon (no replication slot or publication \
             {name}, no record of one on the destination): nothing was changed",
            cfg.dest,
            cfg.source
        );
    } else {
        for line in &done {
            log::info!("{line}");
        }
        log::info!(
            "abandoned the follower of {}: nothing of it is left on either side",
            cfg.dest
        );
    }
    Ok(Exit::Success)
}
