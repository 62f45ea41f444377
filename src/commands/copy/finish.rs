//! The last phase of a copy: set the sequences, put the keys back, refresh the views built
//! from copied tables, verify, record in the state file what is left for later, and report.

use super::apply::{Applied, Copied};
use super::planning::Work;
use super::KeyPolicy;
use crate::cli::config::{CopyConfig, Verbosity};
use crate::exit::Exit;
use crate::output::format::print_json;
use crate::output::logging;
use crate::output::metrics;
use crate::output::report::Report;
use crate::pg::error::{self, describe};
use crate::pg::server::lock_destination;
use crate::pg::sql::TableName;
use crate::plan::snapshot::Snapshot;
use crate::plan::Plan;
use crate::schema::constraints::{self, Restored};
use crate::schema::fk_mode::FkMode;
use crate::schema::indexes;
use crate::schema::matviews::{self, MatView};
use crate::schema::sequences::{self, Sequence};
use crate::state::file::Done;
use crate::state::interrupt;
use crate::transfer::compare;
use crate::transfer::{StatsFrom, TableOutcome};
use anyhow::{Context, Result};
use postgres::Client;
use std::collections::HashMap;

/// Puts everything back and reports; what could not be done is in the report and the exit
/// code, never an `Err` (except for a report that could not be written). Under
/// `KeyPolicy::LeaveDropped`, a copy that copied everything leaves its keys dropped in drop
/// mode, or in chunks (recorded in the state file, for the command that goes on from it:
/// following puts them back at cutover) and its `--json`
/// report unprinted, returned for that command to finish.
pub(super) fn finish(
    cfg: &CopyConfig,
    work: Work,
    applied: Applied,
    key_policy: KeyPolicy,
) -> Result<(Exit, Option<serde_json::Value>)> {
    let Work {
        mut dest,
        state_file,
        snapshot,
        plan,
        full_plan,
        done_before,
        mode,
        mut keys,
        carried,
        sequences,
        large_objects,
        views,
        chunked,
        ..
    } = work;
    let work_chunked = chunked.is_some();
    let Applied {
        started,
        mut journal,
        copied,
    } = applied;
    let Copied {
        outcomes,
        stopped,
        large_objects: objects_copied,
    } = copied;
    let mut problems = Vec::new();
    problems.extend(stopped);
    if let Some(Err(why)) = &objects_copied {
        problems.push(format!(
            "the large objects were not copied (the destination kept its own): {why}"
        ));
    }

    // The destination may have restarted during the load: the rest needs a live session.
    if let Err(err) = ensure_connected(cfg, &mut dest) {
        problems.push(describe(&err));
    }
    let sequences_set = set_sequences(
        &mut dest,
        &full_plan,
        &outcomes_by_name(&plan, &outcomes, &done_before),
        &sequences,
        &mut problems,
    );
    let dropped = keys.len();
    let checks_dropped = keys
        .iter()
        .filter(|k| k.kind == constraints::Kind::NotValidCheck)
        .count();
    keys.extend(carried);
    // Indexes of split tables whose last piece never came (an interrupt, a lost session):
    // before the keys, which may need them.
    if !journal.indexes.is_empty() {
        let (left, failed) = indexes::rebuild_missing(&mut dest, &journal.indexes, 1);
        problems.extend(failed);
        journal.indexes = left;
    }
    let leave_dropped = match key_policy {
        KeyPolicy::LeaveDropped { why } => Some(why),
        KeyPolicy::PutBack => None,
    };
    // In drop mode following needs them dropped; after a chunked copy, following runs
    // alongside, and putting them back would wait for the locks it holds, and it for theirs.
    let keep_dropped = leave_dropped.is_some()
        && (mode == FkMode::Drop || work_chunked)
        && problems.is_empty()
        && outcomes.iter().all(|o| o.error.is_none())
        && !interrupt::requested();
    let restored = if keep_dropped {
        if !keys.is_empty() {
            log::info!(
                "the {} foreign keys stay dropped {}",
                keys.len(),
                leave_dropped.unwrap_or_default()
            );
        }
        Restored {
            missing: keys.clone(),
            ..Restored::default()
        }
    } else {
        crate::commands::keys::put_back(&mut dest, &keys, &mut problems, |dest| {
            ensure_connected(cfg, dest)
        })
    };
    // Views built from a table this run copied, and those built from no copied table that
    // the destination has unpopulated; the others hold what they held.
    let copied = outcomes_by_name(&plan, &outcomes, &[]);
    let fresh: Vec<MatView> = views
        .into_iter()
        .filter(|v| v.tables.is_empty() || v.tables.iter().any(|t| copied.get(t) == Some(&true)))
        .collect();
    // A view built from masked rows has the unmasked values in its statistics until it is
    // analyzed.
    let analyze_views = cfg.analyze || plan.tables.iter().any(|t| t.changed_by_rules());
    let (views_refreshed, failed) =
        matviews::refresh(&mut dest, &fresh, cfg.lock_timeout, analyze_views);
    problems.extend(failed);
    drop(dest);
    let analyzed = outcomes
        .iter()
        .filter(|o| matches!(o.analyzed, Some(Ok(StatsFrom::Analyze))))
        .count();
    let statistics_restored = outcomes
        .iter()
        .filter(|o| matches!(o.analyzed, Some(Ok(StatsFrom::Source))))
        .count();
    problems.extend(outcomes.iter().filter_map(|o| o.analyzed.clone()?.err()));

    let checks = if cfg.verify && work_chunked {
        log::info!(
            "not verifying the copy: its tables were read in snapshots of their own; \
             `pgcopy cutover --verify` compares them once following has caught up"
        );
        None
    } else if cfg.verify && !interrupt::requested() {
        let objects_ok = matches!(objects_copied, Some(Ok(_)));
        verify_copied(cfg, &plan, &outcomes, objects_ok, &snapshot, &mut problems)
    } else {
        None
    };
    drop(snapshot);

    // What is left for later: keys not back, keys to validate, and tables to resume.
    journal.keys = restored.missing.clone();
    journal.validate = restored.unvalidated.clone();
    journal.done = done_before
        .iter()
        .cloned()
        .chain(
            plan.tables
                .iter()
                .zip(&outcomes)
                .filter(|(_, o)| o.error.is_none())
                .map(|(t, o)| Done {
                    table: t.name.clone(),
                    filenode: o.filenode,
                }),
        )
        .collect();
    // A split table done whole needs its pieces no more.
    let done = &journal.done;
    journal
        .pieces
        .retain(|p| !done.iter().any(|d| d.table == p.table));
    if journal.done.len() == full_plan.tables.len() {
        journal.plan = None;
        journal.done.clear();
        journal.pieces.clear();
    }
    if let Err(err) = state_file.store(&journal) {
        problems.push(describe(&err));
    }
    if !restored.missing.is_empty() && !keep_dropped {
        problems.push(format!(
            "some foreign keys are not back; they are recorded in {}: fix the cause and run \
             `pgcopy recover`",
            state_file.path.display()
        ));
    }
    for problem in &problems {
        log::error!("{problem}");
    }
    let failed = outcomes.iter().filter(|o| o.error.is_some()).count();
    metrics::run::copied(
        (outcomes.len() - failed + done_before.len()) as u64,
        failed as u64,
        outcomes.iter().map(|o| o.rows).sum(),
        outcomes.iter().map(|o| o.bytes).sum(),
    );
    if let Some(checks) = &checks {
        metrics::run::verified(checks.iter().all(compare::Check::matches));
    }
    let report = Report {
        source: cfg.source.to_string(),
        dest: cfg.dest.to_string(),
        plan: &plan,
        outcomes: &outcomes,
        elapsed: started.elapsed(),
        fk_mode: mode,
        keys_dropped: dropped,
        checks_dropped,
        keys_restored: restored.in_place,
        keys_not_valid: &restored.not_valid,
        sequences_set,
        views_refreshed,
        large_objects: large_objects
            .as_ref()
            .zip(objects_copied)
            .filter(|(objects, result)| !objects.is_empty() || result.is_err())
            .map(|(objects, result)| (objects.len(), result)),
        analyzed,
        statistics_restored,
        interrupted: interrupt::requested(),
        problems: &problems,
        warnings: logging::warnings(),
        checks: checks.as_deref(),
    };
    let code = report.exit_code();
    if cfg.json && leave_dropped.is_some() && code == Exit::Success {
        return Ok((code, Some(report.to_json())));
    }
    if cfg.json {
        print_json(&report.to_json()).context("writing the report")?;
    } else if cfg.verbosity != Verbosity::Quiet || code != Exit::Success {
        report
            .write(&mut crate::output::format::stdout())
            .context("writing the report")?;
    }
    Ok((code, None))
}

/// For sequences: every table of the full plan with whether it is copied now, counting
/// the tables an interrupted run finished as copied.
fn outcomes_by_name(
    plan: &Plan,
    outcomes: &[TableOutcome],
    done_before: &[Done],
) -> HashMap<TableName, bool> {
    plan.tables
        .iter()
        .zip(outcomes)
        .map(|(t, o)| (t.name.clone(), o.error.is_none()))
        .chain(done_before.iter().map(|d| (d.table.clone(), true)))
        .collect()
}

/// Verifies the tables that were copied against the copy's own source snapshot, so rows
/// written to the source since do not show up as differences.
fn verify_copied(
    cfg: &CopyConfig,
    plan: &Plan,
    outcomes: &[TableOutcome],
    large_objects: bool,
    snapshot: &Snapshot,
    problems: &mut Vec<String>,
) -> Option<Vec<compare::Check>> {
    let copied = Plan {
        tables: plan
            .tables
            .iter()
            .zip(outcomes)
            .filter(|(_, o)| o.error.is_none())
            .map(|(t, _)| t.clone())
            .collect(),
    };
    log::info!("verifying {} copied tables", copied.tables.len());
    let result = compare::compare(
        &copied.without_masked(),
        large_objects,
        &snapshot.id,
        &cfg.source.pool(cfg.parallel),
        &cfg.dest.pool(cfg.parallel),
        cfg.parallel,
    );
    match result {
        Ok(mut checks) => {
            crate::commands::verify::note_masked(&copied, &mut checks);
            Some(checks)
        }
        Err(err) => {
            problems.push(format!("verification could not run: {}", describe(&err)));
            None
        }
    }
}

/// Sets the sequences of the tables that were copied, and the standalone ones.
fn set_sequences(
    dest: &mut Client,
    full_plan: &Plan,
    copied: &HashMap<TableName, bool>,
    sequences: &[Sequence],
    problems: &mut Vec<String>,
) -> usize {
    let tables: Vec<_> = full_plan
        .tables
        .iter()
        .map(|t| {
            let ok = copied.get(&t.name).copied().unwrap_or(false);
            (&t.name, t.parent.as_ref(), ok)
        })
        .collect();
    let (set, failed) = sequences::set(dest, &sequences::to_set(sequences, &tables));
    problems.extend(failed);
    set
}

/// Checks that the main destination session is alive, and replaces it (taking pgcopy's
/// lock again) if the server closed it, after a restart for example.
fn ensure_connected(cfg: &CopyConfig, dest: &mut Client) -> Result<()> {
    if !dest.is_closed() && dest.batch_execute("SELECT 1").is_ok() {
        return Ok(());
    }
    log::warn!("the destination connection was lost; reconnecting");
    let mut attempt = 1;
    let mut fresh = loop {
        match cfg.dest.connect() {
            Ok(client) => break client,
            // A server that is restarting refuses connections for a moment.
            Err(err) if attempt <= cfg.retries.max(3) && error::kind(&err).is_worth_retrying() => {
                std::thread::sleep(crate::pg::error::backoff(attempt));
                attempt += 1;
            }
            Err(err) => return Err(err),
        }
    };
    lock_destination(&mut fresh, &cfg.dest)?;
    *dest = fresh;
    Ok(())
}
