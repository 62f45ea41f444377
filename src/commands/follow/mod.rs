//! `copy --follow`: the checks before anything is created (`checks`), the slot made first,
//! the copy pipeline run in chunks (each table, and each key range of a big one, read in a
//! short snapshot of its own and recorded with it on the destination: `plan::chunks`) with
//! the keys left dropped, and following itself (`stream`) started alongside from the slot's
//! start, each change of a copied table decided by the chunk that holds its row as the copy
//! goes on (`alongside`), with the destination kept quiet (`quiet`), tables that appear on
//! the source taken up as it goes (`joining`), until the cutover mark, which ends it
//! (`end`). `--resume` goes on from the destination's recorded progress and the chunks it
//! recorded (`resume`).

mod alongside;
mod checks;
mod end;
mod joining;
mod lag;
mod quiet;
mod resume;
mod stream;

use crate::cli::config::CopyConfig;
use crate::commands::copy::{self, Chunks, KeyPolicy, Pipeline, SnapshotFrom};
use crate::commands::keys;
use crate::exit::Exit;
use crate::pg::error::describe;
use crate::pg::server::SnapshotId;
use crate::pg::server::{self, lock_destination};
use crate::pg::sql::TableName;
use crate::pg::wire;
use crate::plan::chunks;
use crate::replication::decode::Lsn;
use crate::replication::follow;
use crate::replication::progress::{self, Ledger};
use crate::replication::slot::{self, Slot, SlotMaker};
use alongside::Alongside;
use anyhow::{Context, Result};
use std::cell::RefCell;

/// `copy --follow`: resumes an earlier follower where there is one to go on from; else
/// copies on the snapshot of a slot made for it, and follows from that slot.
pub(crate) fn run(cfg: &CopyConfig, resume: bool) -> Result<Exit> {
    if resume && !cfg.dry_run {
        match resume::resume(cfg)? {
            resume::Resumed::Followed(exit) => return Ok(exit),
            resume::Resumed::Copy { name, start } => return resume_copy(cfg, name, start),
            resume::Resumed::Anew => {}
        }
    }
    let mut dest = cfg.dest.connect()?;
    let name = checks::name(&mut dest)?;
    let chunked = chunks::can_record(&mut dest)?;
    if !chunked {
        log::warn!(
            "reading every table in the one snapshot of the slot, held on the source for the \
             whole copy: the destination role may not create {}, where the chunked copy \
             records what it read",
            chunks::TABLE
        );
    }
    drop(dest);
    let mut check = |source: &mut postgres::Client, dest: &mut postgres::Client| {
        checks::refusals(cfg, source, dest, &name, false)
    };
    // The slot is made first (none in a dry run); planning takes its snapshot, and the
    // chunked copy lets it go once planned.
    let maker = RefCell::new(match cfg.dry_run {
        true => None,
        false => Some(SlotMaker::new(
            &cfg.source,
            name.clone(),
            server::version(&mut cfg.source.connect()?)?,
            cfg.lock_timeout,
            cfg.filter.clone(),
        )),
    });
    std::thread::scope(|scope| {
        let mut alongside = Alongside::new(scope, cfg);
        let copied = {
            let mut make = |tables: &[TableName]| -> Result<SnapshotId> {
                maker
                    .borrow_mut()
                    .as_mut()
                    .context("no slot is made in a dry run")?
                    .make(tables)
            };
            // Once planned: the slot's snapshot goes, and following starts from the slot.
            let mut release = |registry| -> Result<()> {
                let slot = match maker.borrow_mut().as_mut() {
                    Some(maker) => {
                        maker.release_snapshot()?;
                        maker.take_slot()
                    }
                    None => None,
                };
                let Some(slot) = slot else {
                    return Ok(());
                };
                // Until following starts, the slot is this run's to drop if it fails.
                if let Err(err) = ready_to_follow(cfg, &slot.name, slot.consistent_point) {
                    drop_made(&cfg.source, slot);
                    return Err(err);
                }
                alongside.start(
                    &slot.name,
                    slot.consistent_point,
                    Some(slot.session),
                    registry,
                )
            };
            let exports = maker.borrow().is_some();
            copy::run_pipeline(
                cfg,
                Pipeline {
                    command: "copy --follow",
                    checks: Some(&mut check),
                    snapshot: SnapshotFrom::Exported(exports.then_some(&mut make as _)),
                    keys: KeyPolicy::LeaveDropped {
                        why: "while following; they are put back at cutover",
                    },
                    resume: false,
                    chunks: chunked.then(|| Chunks {
                        slot: name.clone(),
                        bytes: cfg.chunk_bytes,
                        release: &mut release,
                    }),
                },
            )
        };
        if alongside.started() {
            return alongside.end(copied);
        }
        // The slot outlives the copy's sessions; until following starts, it is dropped if
        // the run ends, unless it ended with chunks recorded to resume from.
        let mut made = Made {
            slot: maker.into_inner().and_then(SlotMaker::into_slot),
            source: &cfg.source,
        };
        let (copied, report) = copied?;
        match made.take() {
            Some(slot) => after_copy(
                cfg,
                Started {
                    name: slot.name,
                    start: slot.consistent_point,
                    session: Some(slot.session),
                    chunked,
                },
                copied,
                report,
            ),
            None => Ok(copied),
        }
    })
}

/// `--resume` of a follower stopped during its chunked copy: the chunks it did not record
/// are copied now, each in a snapshot of its own, and following starts from the slot's
/// start, `start`, as it would have.
fn resume_copy(cfg: &CopyConfig, name: String, start: Lsn) -> Result<Exit> {
    let mut check = |source: &mut postgres::Client, dest: &mut postgres::Client| {
        checks::refusals(cfg, source, dest, &name, true)
    };
    std::thread::scope(|scope| {
        let mut alongside = Alongside::new(scope, cfg);
        let mut release = |registry| {
            ready_to_follow(cfg, &name, start)?;
            alongside.start(&name, start, None, registry)
        };
        let copied = copy::run_pipeline(
            cfg,
            Pipeline {
                command: "copy --follow --resume",
                checks: Some(&mut check),
                snapshot: SnapshotFrom::Exported(None),
                keys: KeyPolicy::LeaveDropped {
                    why: "while following; they are put back at cutover",
                },
                resume: true,
                chunks: Some(Chunks {
                    slot: name.clone(),
                    bytes: cfg.chunk_bytes,
                    release: &mut release,
                }),
            },
        );
        if alongside.started() {
            return alongside.end(copied);
        }
        let (copied, report) = copied?;
        let started = Started {
            name: name.clone(),
            start,
            session: None,
            chunked: true,
        };
        after_copy(cfg, started, copied, report)
    })
}

/// The slot following starts from: its name, where its stream starts, the session that
/// made it (if this run made it), and whether the copy was chunked.
struct Started {
    name: String,
    start: Lsn,
    session: Option<wire::Connection>,
    chunked: bool,
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
            drop_made(self.source, slot);
        }
    }
}

/// Drops a slot this run made, and its publication, before following started from it.
fn drop_made(source: &crate::pg::target::Target, slot: Slot) {
    let name = slot.name.clone();
    drop(slot);
    let dropped = source
        .connect()
        .and_then(|mut source| slot::drop_both(&mut source, &name).map(drop));
    match dropped {
        Ok(()) => log::info!("dropped the replication slot and publication {name}"),
        Err(err) => log::error!(
            "could not drop the replication slot {name} ({}): `pgcopy abandon` drops it, else \
             the source keeps WAL for it",
            describe(&err)
        ),
    }
}

/// After the copy: follows from its slot if the copy succeeded; else drops the slot and the
/// publication, as following cannot start from a copy that is not whole. `report` is the
/// copy's `--json` report, which following completes.
fn after_copy(
    cfg: &CopyConfig,
    slot: Started,
    copied: Exit,
    report: Option<serde_json::Value>,
) -> Result<Exit> {
    let mut dest = cfg.dest.connect()?;
    if copied != Exit::Success {
        let name = slot.name.clone();
        drop(slot.session);
        if slot.chunked {
            log::error!(
                "not following yet: the copy did not finish whole; the replication slot {name} \
                 stays, and `pgcopy copy --follow --resume` copies the chunks not recorded \
                 (`pgcopy abandon` drops the slot instead)"
            );
        } else {
            log::error!(
                "not following: the copy did not finish whole; dropping the replication slot \
                 {name}"
            );
            let mut source = cfg.source.connect()?;
            slot::drop_both(&mut source, &name)?;
        }
        lock_destination(&mut dest, &cfg.dest)?;
        keys::put_back_recorded(&cfg.state_dir, &mut dest)?;
        return Ok(copied);
    }
    drop(dest);
    ready_to_follow(cfg, &slot.name, slot.start)?;
    stream::follow(cfg, &slot.name, slot.session, move || report, None)
}

/// Records, before following starts from `start`, which destination tables the follower of
/// `name` applies to, and where it is: its progress ledger, made here unless an earlier
/// follower made it.
fn ready_to_follow(cfg: &CopyConfig, name: &str, start: Lsn) -> Result<()> {
    let mut dest = cfg.dest.connect()?;
    if progress::find(&mut dest, name)?.is_some() {
        return Ok(());
    }
    // Which destination tables these are, for a resumed follower to check: recorded
    // before the progress, so that a follower with a record of its progress has them.
    let mut source = cfg.source.connect()?;
    let mut tables: Vec<TableName> = follow::published(&mut source, name)?.into_iter().collect();
    tables.sort();
    slot::record_tables(&mut source, name, &follow::dest_oids(&mut dest, &tables)?)?;
    drop(source);
    let ledger = Ledger::choose(&mut dest)?.map_err(anyhow::Error::msg)?;
    ledger.create(&mut dest, name, start)?;
    if ledger == Ledger::Table {
        log::info!(
            "recording how far following got in {} on the destination (the role may not use \
             a replication origin)",
            progress::TABLE
        );
    }
    Ok(())
}
