//! The end of following, at the cutover mark: the sequences from the source's live values
//! (the application has stopped writing), the large objects again, the foreign keys back,
//! then the slot, the publication and the record of the progress dropped.

use crate::cli::config::CopyConfig;
use crate::commands::keys;
use crate::exit::Exit;
use crate::pg::error::describe;
use crate::pg::server::lock_destination;
use crate::replication::apply::Applied;
use crate::replication::decode::Lsn;
use crate::replication::follow;
use crate::replication::progress;
use crate::replication::slot::{self, LsnText};
use crate::schema::catalog;
use crate::schema::large_objects;
use crate::schema::sequences;
use crate::state::interrupt;
use crate::units::format_bytes;
use anyhow::Result;
use std::io::Write as _;
use std::time::Instant;

/// How following ended, for the report.
pub(super) struct Followed {
    pub(super) exit: Exit,
    /// Where the cutover mark ended it.
    pub(super) mark: Option<Lsn>,
    pub(super) sequences_set: usize,
}

/// The cutover mark is applied: the sequences from the source's live values (the
/// application has stopped writing) and the foreign keys back, then the slot, the
/// publication and the record of the progress go.
pub(super) fn finish(
    cfg: &CopyConfig,
    name: &str,
    at: Lsn,
    applied: &Applied,
    started: Instant,
) -> Result<Followed> {
    let mut source = cfg.source.connect()?;
    let mut dest = cfg.dest.connect()?;
    // Those followed at the end, also the tables taken up while following.
    let followed = follow::published(&mut source, name)?;
    let tables: Vec<catalog::Table> = catalog::tables(&mut source)?
        .into_iter()
        .filter(|t| followed.contains(&t.name))
        .collect();
    let mut exit = Exit::Success;
    let mut sequences_set = 0;
    if cfg.sequences {
        let found = sequences::plan(&mut source, &tables, false)?;
        let owners: Vec<_> = tables
            .iter()
            .map(|t| (&t.name, t.parent.as_ref(), true))
            .collect();
        let (set, failed) = sequences::set(&mut dest, &sequences::to_set(&found, &owners));
        for problem in &failed {
            log::error!("{problem}");
            exit = Exit::TablesFailed;
        }
        log::info!("set {set} sequences from the source's values at cutover");
        sequences_set = set;
    }
    if cfg.large_objects.copies(cfg.filter.narrowed()) {
        if let Err(err) = copy_large_objects(cfg) {
            log::error!(
                "the large objects were not copied again at cutover: {}",
                describe(&err)
            );
            exit = Exit::TablesFailed;
        }
    }
    lock_destination(&mut dest, &cfg.dest)?;
    if !keys::put_back_recorded(&cfg.state_dir, &mut dest)? {
        exit = Exit::TablesFailed;
    }
    progress::forget(&mut dest, name)?;
    // The slot's session has just ended; the server lets the slot go a moment later.
    let mut tries = 0;
    loop {
        match slot::drop_both(&mut source, name) {
            Ok(_) => break,
            Err(err) if tries < 50 => {
                log::debug!("waiting to drop the slot: {}", describe(&err));
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(err) => return Err(err),
        }
    }
    let said = format!(
        "cut over at {}: followed for {:.0}s, applied {} transactions ({} rows); the slot \
         and publication {name} are dropped",
        LsnText(at),
        started.elapsed().as_secs_f64(),
        applied.transactions,
        applied.rows
    );
    // With --json, stdout holds the copy's report and nothing else.
    if cfg.json {
        log::info!("{said}");
    } else if cfg.verbosity != crate::cli::config::Verbosity::Quiet {
        let _ = writeln!(crate::output::format::stdout(), "{said}");
    }
    Ok(Followed {
        exit,
        mark: Some(at),
        sequences_set,
    })
}

/// At cutover, the large objects again, as the source has them now: logical replication
/// does not carry them, and the application has stopped writing.
fn copy_large_objects(cfg: &CopyConfig) -> Result<()> {
    let copied = large_objects::copy_as_now(&cfg.source, &cfg.dest, &interrupt::requested)?;
    if let Some((objects, bytes)) = copied {
        log::info!(
            "copied the {objects} large objects again ({}): logical replication does not \
             carry them",
            format_bytes(bytes)
        );
    }
    Ok(())
}
