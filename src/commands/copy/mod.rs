//! The copy pipeline, in the phases it goes through: `prepare` (connect, check the two
//! sides are two databases, take pgcopy's lock, recover what an earlier run left),
//! `planning` (the source snapshot and the plan against both catalogs, every refusal before
//! anything changes), `apply` (record the undo, drop the keys, run the lanes) and `finish`
//! (sequences, keys back, views, verify, the state file, the report). A dry run stops after
//! planning. `run` is the `copy` command; `copy --follow` runs the same pipeline on its
//! slot's snapshot (`Pipeline`), and knows what follows it.

mod apply;
mod chunked;
mod finish;
mod planning;
mod prepare;

use crate::cli::config::CopyConfig;
use crate::exit::Exit;
use crate::output::format::print_json;
use crate::output::{confirm, dry_run};
use crate::plan;
use crate::plan::chunks::registry::Registry;
use crate::plan::snapshot::ExportFrom;
use crate::replication::progress;
use anyhow::{Context, Result};
use planning::Work;
use postgres::Client;
use std::sync::Arc;

/// What the command that runs the pipeline gives it, chosen once.
pub(crate) struct Pipeline<'a> {
    /// The command, as a refusal names it.
    pub(crate) command: &'static str,
    /// Refusals of the command's own, checked on the prepared sessions (source, then
    /// destination) before the snapshot is taken, and shown with the plan's.
    pub(crate) checks: Option<Checks<'a>>,
    pub(crate) snapshot: SnapshotFrom<'a>,
    pub(crate) keys: KeyPolicy,
    /// Copy only the tables an interrupted copy did not finish.
    pub(crate) resume: bool,
    /// Read each table or piece in a snapshot of its own (`copy --follow`); `None`: every
    /// table in the one snapshot.
    pub(crate) chunks: Option<Chunks<'a>>,
}

/// The chunked copy (see `plan::chunks`): tables bigger than `bytes` read in ranges of
/// their key, every table and range in a snapshot of its own, each recorded on the
/// destination for the follower of `slot` in the commit that loads its rows.
pub(crate) struct Chunks<'a> {
    pub(crate) slot: String,
    pub(crate) bytes: u64,
    /// Called once planning is done, before the first read, with the chunks every read
    /// and load goes through: ends what else holds the snapshot planning was taken in (the
    /// replication slot's session that exported it), and starts following.
    pub(crate) release: &'a mut dyn FnMut(Arc<Registry>) -> Result<()>,
}

/// A command's own checks (see `Pipeline::checks`).
pub(crate) type Checks<'a> = &'a mut dyn FnMut(&mut Client, &mut Client) -> Result<Vec<String>>;

/// Where the copy's snapshot comes from.
pub(crate) enum SnapshotFrom<'a> {
    /// The copy's own: the copy replaces what the destination held, with it what a stopped
    /// follower had followed into (whose record of its progress goes).
    Own,
    /// Exported, once the tables are locked, by what the command makes then (a replication
    /// slot; `None` in a dry run, which makes nothing).
    Exported(Option<ExportFrom<'a>>),
}

/// What becomes of the destination's foreign keys the load dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyPolicy {
    /// Put back, validated, once the load ends.
    PutBack,
    /// Left dropped in drop mode when everything was copied (recorded in the state file),
    /// for the command that goes on from the copy to put back, as `why` tells the log; its
    /// `--json` report is returned unprinted for that command to complete.
    LeaveDropped { why: &'static str },
}

/// The `copy` command: the pipeline on a snapshot of its own, the keys put back.
pub(crate) fn run(cfg: &CopyConfig, resume: bool) -> Result<Exit> {
    let pipeline = Pipeline {
        command: "copy",
        checks: None,
        snapshot: SnapshotFrom::Own,
        keys: KeyPolicy::PutBack,
        resume,
        chunks: None,
    };
    Ok(run_pipeline(cfg, pipeline)?.0)
}

/// Runs the pipeline; returns its exit code, and the `--json` report where `KeyPolicy`
/// leaves it unprinted. An `Err` means nothing on the destination was changed; once
/// changing has begun, failures end up in the report and the exit code instead, after
/// everything was put back.
pub(crate) fn run_pipeline(
    cfg: &CopyConfig,
    mut pipeline: Pipeline<'_>,
) -> Result<(Exit, Option<serde_json::Value>)> {
    let prepared = prepare::prepare(cfg, &pipeline.snapshot)?;
    let mut work = planning::plan(cfg, prepared, &mut pipeline)?;
    if cfg.dry_run {
        return Ok((show_plan(cfg, &work)?, None));
    }
    confirm::confirm(cfg, &mut work.dest, &work.plan)?;
    if let SnapshotFrom::Own = pipeline.snapshot {
        progress::forget_replaced(&mut work.dest)?;
    }
    let applied = apply::apply(cfg, &mut work, pipeline.chunks.as_mut(), pipeline.resume)?;
    finish::finish(cfg, work, applied, pipeline.keys)
}

/// The dry run: what the copy would do, and why it would be refused, if it would.
fn show_plan(cfg: &CopyConfig, work: &Work) -> Result<Exit> {
    let planned = dry_run::Planned {
        plan: &work.plan,
        mode: work.mode,
        keys: &work.keys,
        sequences: &work.sequences,
        views: &work.views,
        large_objects: work.large_objects.as_ref().map(Vec::len),
        findings: &work.findings,
        refusals: &work.refusals,
    };
    if cfg.json {
        print_json(&planned.to_json(cfg)).context("writing the plan")?;
    } else {
        planned.print(cfg).context("writing the plan")?;
    }
    if !work.refusals.is_empty() {
        log::error!("{}", plan::refusals::refuse("copy", &work.refusals));
        return Ok(Exit::Usage);
    }
    Ok(Exit::Success)
}
