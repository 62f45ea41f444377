//! The `copy` command, in the phases it goes through: `prepare` (connect, check the two sides
//! are two databases, take pgcopy's lock, recover what an earlier run left), `planning` (the
//! source snapshot and the plan against both catalogs, every refusal before anything
//! changes), `apply` (record the undo, drop the keys, run the lanes) and `finish` (sequences,
//! keys back, views, verify, the state file, the report). A dry run stops after planning.
//! With `--follow`, `follow` runs the follower after the copy, and `joining` takes up the
//! tables that appear on the source while it follows.

mod apply;
mod finish;
mod follow;
mod joining;
mod planning;
mod prepare;

use crate::cli::config::CopyConfig;
use crate::exit::Exit;
use crate::output::format::print_json;
use crate::output::{confirm, dry_run};
use crate::plan;
use anyhow::{Context, Result};
use planning::Work;

/// Runs a copy. An `Err` means nothing on the destination was changed; once changing has
/// begun, failures end up in the report and the exit code instead, after everything was
/// put back.
pub(crate) fn run(cfg: &CopyConfig) -> Result<Exit> {
    if cfg.follow && cfg.resume && !cfg.dry_run {
        if let Some(exit) = follow::resume(cfg)? {
            return Ok(exit);
        }
    }
    let prepared = prepare::prepare(cfg)?;
    let mut work = planning::plan(cfg, prepared)?;
    if cfg.dry_run {
        return show_plan(cfg, &work);
    }
    confirm::confirm(cfg, &mut work.dest, &work.plan)?;
    if !cfg.follow {
        follow::forget_replaced(&mut work.dest)?;
    }
    let applied = apply::apply(cfg, &mut work)?;
    // The slot outlives the copy's sessions; until following starts, it is dropped if the
    // run ends.
    let mut made = follow::Made {
        slot: work.slot.take(),
        source: &cfg.source,
    };
    let following = made.slot.is_some();
    let (copied, report) = finish::finish(cfg, work, applied, following)?;
    match made.take() {
        Some(slot) => follow::after_copy(cfg, slot, copied, report),
        None => Ok(copied),
    }
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
