//! The `abandon` command: gives up a `copy --follow` for good. The slot is what costs the
//! source (it keeps every WAL segment from its position on, however long nobody reads it),
//! so it goes first, with the publication; then the destination's record of the follower's
//! progress, and the foreign keys a follower without the replica role kept dropped go back.

use crate::cli::config::AbandonConfig;
use crate::commands::recover;
use crate::exit::Exit;
use crate::pg::server::{lock_destination, Identity};
use crate::replication::{progress, slot};
use crate::state::file::StateFile;
use anyhow::Result;

pub(crate) fn run(cfg: &AbandonConfig) -> Result<Exit> {
    let mut dest = cfg.dest.connect()?;
    let identity = Identity::read(&mut dest)?;
    let name = slot::name_for(&identity.key());
    let mut source = cfg.source.connect()?;
    slot::drop_both(&mut source, &name)?;
    progress::forget(&mut dest, &name)?;
    lock_destination(&mut dest, &cfg.dest)?;
    let file = StateFile::new(&cfg.state_dir, &identity.database, &identity.key());
    recover::pending(&mut dest, &file, &cfg.dest)?;
    log::info!(
        "nothing of a follower of {} is left: no slot or publication {name} on {}, no \
         record of its progress on the destination",
        cfg.dest,
        cfg.source
    );
    Ok(Exit::Success)
}
