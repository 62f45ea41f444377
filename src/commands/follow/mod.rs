//! `copy --follow`: the checks before anything is created (`checks`), the slot the copy's
//! snapshot comes from, the copy pipeline run on that snapshot with the keys left dropped,
//! then following itself (`stream`) with the destination kept quiet (`quiet`), tables that
//! appear on the source taken up as it goes (`joining`), until the cutover mark, which ends
//! it (`end`). `--resume` goes on from the destination's recorded progress (`resume`); a
//! follower stopped during its initial copy has lost its snapshot and starts over.

mod checks;
mod end;
mod joining;
mod lag;
mod quiet;
mod resume;
mod stream;

use crate::cli::config::CopyConfig;
use crate::commands::copy::{self, KeyPolicy, Pipeline, SnapshotFrom};
use crate::commands::keys;
use crate::exit::Exit;
use crate::pg::error::describe;
use crate::pg::server::{self, lock_destination};
use crate::pg::sql::TableName;
use crate::replication::follow;
use crate::replication::progress::{self, Ledger};
use crate::replication::slot::{self, Slot, SlotMaker};
use anyhow::Result;

/// `copy --follow`: resumes an earlier follower where there is one to go on from; else
/// copies on the snapshot of a slot made for it, and follows from that slot.
pub(crate) fn run(cfg: &CopyConfig, resume: bool) -> Result<Exit> {
    if resume && !cfg.dry_run {
        if let Some(exit) = resume::resume(cfg)? {
            return Ok(exit);
        }
    }
    let name = checks::name(&mut cfg.dest.connect()?)?;
    let mut check = |source: &mut postgres::Client, dest: &mut postgres::Client| {
        checks::refusals(cfg, source, dest, &name)
    };
    // The snapshot comes from the slot (none in a dry run).
    let mut maker = match cfg.dry_run {
        true => None,
        false => Some(SlotMaker::new(
            &cfg.source,
            name.clone(),
            server::version(&mut cfg.source.connect()?)?,
            cfg.lock_timeout,
            cfg.filter.clone(),
        )),
    };
    let copied = {
        let mut make = maker
            .as_mut()
            .map(|maker| move |tables: &[TableName]| maker.make(tables));
        copy::run_pipeline(
            cfg,
            Pipeline {
                command: "copy --follow",
                checks: Some(&mut check),
                snapshot: SnapshotFrom::Exported(make.as_mut().map(|f| f as _)),
                keys: KeyPolicy::LeaveDropped {
                    why: "while following; they are put back at cutover",
                },
                resume: false,
            },
        )
    };
    // The slot outlives the copy's sessions; until following starts, it is dropped if the
    // run ends.
    let mut made = Made {
        slot: maker.and_then(SlotMaker::into_slot),
        source: &cfg.source,
    };
    let (copied, report) = copied?;
    match made.take() {
        Some(slot) => after_copy(cfg, slot, copied, report),
        None => Ok(copied),
    }
}

/// A slot this run made, dropped with its publication if the run ends before following
/// starts (a refusal, an error), so no slot is left keeping WAL for nobody.
struct Made<'a> {
    slot: Option<Slot>,
    source: &'a crate::pg::target::Target,
}

impl Made<'_> {
    /// The slot, which the caller now answers for.
    fn take(&mut self) -> Option<Slot> {
        self.slot.take()
    }
}

impl Drop for Made<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            let name = slot.name.clone();
            drop(slot);
            let dropped = self
                .source
                .connect()
                .and_then(|mut source| slot::drop_both(&mut source, &name).map(drop));
            match dropped {
                Ok(()) => log::info!("dropped the replication slot and publication {name}"),
                Err(err) => log::error!(
                    "could not drop the replication slot {name} ({}): `pgcopy abandon` drops \
                     it, else the source keeps WAL for it",
                    describe(&err)
                ),
            }
        }
    }
}

/// After the copy: follows from its slot if the copy succeeded; else drops the slot and the
/// publication, as following cannot start from a copy that is not whole. `report` is the
/// copy's `--json` report, which following completes.
fn after_copy(
    cfg: &CopyConfig,
    slot: Slot,
    copied: Exit,
    report: Option<serde_json::Value>,
) -> Result<Exit> {
    let mut dest = cfg.dest.connect()?;
    if copied != Exit::Success {
        log::error!(
            "not following: the copy did not finish whole; dropping the replication slot {}",
            slot.name
        );
        let name = slot.name.clone();
        drop(slot);
        let mut source = cfg.source.connect()?;
        slot::drop_both(&mut source, &name)?;
        lock_destination(&mut dest, &cfg.dest)?;
        keys::put_back_recorded(&cfg.state_dir, &mut dest)?;
        return Ok(copied);
    }
    // Which destination tables these are, for a resumed follower to check: recorded
    // before the progress, so that a follower with a record of its progress has them.
    let mut source = cfg.source.connect()?;
    let mut tables: Vec<TableName> = follow::published(&mut source, &slot.name)?
        .into_iter()
        .collect();
    tables.sort();
    slot::record_tables(
        &mut source,
        &slot.name,
        &follow::dest_oids(&mut dest, &tables)?,
    )?;
    drop(source);
    let ledger = Ledger::choose(&mut dest)?.map_err(anyhow::Error::msg)?;
    ledger.create(&mut dest, &slot.name, slot.consistent_point)?;
    if ledger == Ledger::Table {
        log::info!(
            "recording how far following got in {} on the destination (the role may not use \
             a replication origin)",
            progress::TABLE
        );
    }
    drop(dest);
    stream::follow(cfg, &slot.name, Some(slot.session), report)
}
