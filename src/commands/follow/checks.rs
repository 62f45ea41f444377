//! What `copy --follow` checks before anything is created on either side: the source ready
//! (logical WAL, a replication session, a replica identity on every selected table), no
//! follower of this destination already there, a key mode following can work with, and a
//! destination role able to record its progress.

use crate::cli::config::CopyConfig;
use crate::pg::server::Identity;
use crate::plan;
use crate::replication::progress::Ledger;
use crate::replication::{readiness, slot};
use crate::schema::catalog;
use crate::schema::fk_mode::FkMode;
use anyhow::Result;
use postgres::Client;

/// The slot and publication's name for this destination.
pub(super) fn name(dest: &mut Client) -> Result<String> {
    Ok(slot::name_for(&Identity::read(dest)?.key()))
}

/// Why this copy may not follow; checked before anything is created on either side.
/// `resuming`: the copy goes on with the slot an earlier run made.
pub(super) fn refusals(
    cfg: &CopyConfig,
    source: &mut Client,
    dest: &mut Client,
    name: &str,
    resuming: bool,
) -> Result<Vec<String>> {
    let mut refusals = Vec::new();
    source.batch_execute(crate::pg::server::BEGIN_READ_ONLY)?;
    let selected = plan::select(&catalog::tables(source)?, &cfg.filter);
    source.batch_execute("COMMIT")?;
    let mut found = readiness::check(source, &selected?)?;
    found
        .requirements
        .push(readiness::replication_session(&cfg.source));
    for r in found.requirements.iter().filter(|r| !r.met()) {
        refusals.push(format!(
            "--follow needs {}; the source has {}: {}",
            r.what, r.found, r.fix
        ));
    }
    for t in &found.no_identity {
        refusals.push(format!(
            "{} has no usable replica identity (replica identity {}), so publishing it \
             would make the source application's UPDATE and DELETE on it fail: {}",
            t.table, t.identity, t.fix
        ));
    }
    if !resuming && slot::find(source, name)?.is_some() {
        refusals.push(format!(
            "a follower of this destination is already there (the source's replication slot \
             {name}): go on with `pgcopy copy --follow --resume`, or give it up with \
             `pgcopy abandon`"
        ));
    }
    if cfg.fk_mode == FkMode::None {
        refusals.push(
            "--follow applies the source's changes row by row, which the destination's \
             foreign keys and triggers must not see (a cascade would apply a change twice): \
             use --fk-mode replica, drop or auto, not none"
                .to_string(),
        );
    }
    if let Err(why) = Ledger::choose(dest)? {
        refusals.push(why);
    }
    Ok(refusals)
}
