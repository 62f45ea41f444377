//! The `abandon` command: gives up a `copy --follow` for good. The slot is what costs the
//! source (it keeps every WAL segment from its position on, however long nobody reads it),
//! so it goes first, with the publication; then the destination's replication origin.

use crate::cli::config::AbandonConfig;
use crate::exit::Exit;
use crate::pg::server::Identity;
use crate::replication::{follow, slot};
use anyhow::Result;

pub(crate) fn run(cfg: &AbandonConfig) -> Result<Exit> {
    let mut dest = cfg.dest.connect()?;
    let name = slot::name_for(&Identity::read(&mut dest)?.key());
    let mut source = cfg.source.connect()?;
    slot::drop_both(&mut source, &name)?;
    follow::drop_origin(&mut dest, &name)?;
    log::info!(
        "nothing of a follower of {} is left: no slot or publication {name} on {}, no \
         replication origin on the destination",
        cfg.dest,
        cfg.source
    );
    Ok(Exit::Success)
}
