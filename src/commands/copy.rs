//! The `copy` command: plan against both catalogs, confirm, record what will be undone, move
//! the foreign keys out of the way, run the byte pipe, set sequences, put the keys back,
//! report.

use crate::cli::config::CopyConfig;
use crate::output::logging::{self, Verbosity};
use crate::output::progress::{Counters, Display, Progress};
use crate::output::report::{format_bytes, print_json, Report};
use crate::pg::error::{self, describe};
use crate::pg::server::{lock_destination, Identity};
use crate::pg::sql::TableName;
use crate::plan::snapshot::{self, Snapshot, Source};
use crate::plan::{self, Plan, Replace};
use crate::schema::constraints::{self, Constraint, FkMode, Restored};
use crate::schema::indexes::{self, IndexMode};
use crate::schema::large_objects::{self, LargeObject};
use crate::schema::matviews::{self, MatView};
use crate::schema::sequences::{self, Sequence};
use crate::state::file::{Done, State, StateFile};
use crate::transfer::lanes::{self, TableOutcome};
use crate::{
    commands::recover, commands::verify, exit, output::confirm, output::dry_run, schema::catalog,
    schema::triggers, state::interrupt,
};
use anyhow::{bail, Context, Result};
use postgres::Client;
use std::collections::{HashMap, HashSet};
use std::io::IsTerminal;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

/// How often the main thread checks that the source snapshot's session is alive.
const SNAPSHOT_CHECK: Duration = Duration::from_secs(2);

/// Runs a copy. An `Err` means nothing on the destination was changed; once changing has
/// begun, failures end up in the report and the exit code instead, after everything was
/// put back.
pub(crate) fn run(cfg: &CopyConfig) -> Result<u8> {
    let mut source = cfg.source.connect()?;
    let mut dest = cfg.dest.connect()?;
    let dest_id = Identity::read(&mut dest)?;
    let source_id = Identity::read(&mut source)?;
    if source_id == dest_id {
        bail!(
            "the source and the destination are the same database ({} and {} are one server \
             and database); refusing to copy a database onto itself",
            cfg.source,
            cfg.dest
        );
    }
    // Planning reads the catalog; a table locked by another session must give a clear
    // error, not a silent hang (pg_get_indexdef, for one, waits for the lock).
    dest.batch_execute(&format!(
        "SET lock_timeout = {}",
        cfg.lock_timeout.as_millis()
    ))?;
    let state_file = StateFile::new(&cfg.state_dir, &dest_id.database, &dest_id.key());
    let previous = if cfg.dry_run {
        let previous = state_file.load()?;
        if let Some(state) = previous.as_ref().filter(|s| !s.keys.is_empty()) {
            log::warn!(
                "an earlier run left {} foreign keys dropped on {}: `pgcopy recover` or the \
                 next copy puts them back",
                state.keys.len(),
                cfg.dest
            );
        }
        previous
    } else {
        lock_destination(&mut dest, &cfg.dest)?;
        recover::pending(&mut dest, &state_file, &cfg.dest)?
    };

    let Source {
        mut snapshot,
        tables: selected,
        standby,
        findings,
    } = snapshot::take(&cfg.source, source, &cfg.filter, cfg.lock_timeout)?;
    let mut plan = plan::build(&mut snapshot.client, &selected)?;
    plan::add_destination_only_partitions(&mut dest, &mut plan, &cfg.filter)?;
    let sequences = if cfg.sequences {
        sequences::plan(&mut snapshot.client, &selected)?
    } else {
        Vec::new()
    };
    let large_objects = if cfg.large_objects.copies(cfg.filter.narrowed()) {
        Some(large_objects::plan(&mut snapshot.client)?)
    } else {
        None
    };
    let populated = if cfg.refresh_views {
        matviews::populated(&mut snapshot.client)?
    } else {
        HashSet::new()
    };
    let mut refusals = snapshot::refusals(&selected, standby, &cfg.source);
    refusals.extend(plan::check_destination(&mut dest, &plan)?.refusals(
        sequences::check_destination(&mut dest, &sequences)?,
        &cfg.dest.to_string(),
    ));
    let fingerprint = fingerprint(&source_id, &plan);
    let full_plan = plan.clone();
    let done_before = if cfg.resume {
        resume(&mut dest, &mut plan, previous.as_ref(), &fingerprint)?
    } else {
        Vec::new()
    };
    for table in &plan.tables {
        if let Some(reason) = &table.text_reason {
            log::info!("{} travels in text format: {reason}", table.name);
        }
    }
    let mode = cfg.fk_mode.resolve(&mut dest, cfg.enable_triggers)?;
    // Keys are found for the whole selection, also when resuming: a table an earlier run
    // finished is part of this copy, not outside it, and its keys to the tables copied now
    // must be out of the way too.
    let mut keys = if mode.drops_keys() {
        constraints::find(&mut dest, &full_plan.names())?
    } else {
        Vec::new()
    };
    // Keys an earlier run left NOT VALID although they were valid are validated at the end;
    // one that this run drops anyway comes back validated like the others.
    let mut carried = previous.map(|p| p.validate).unwrap_or_default();
    carried.retain(|old| match keys.iter_mut().find(|k| k.same_key(old)) {
        Some(key) => {
            key.validated = true;
            false
        }
        None => true,
    });
    constraints::check_outside(&keys, cfg.allow_outside_references)?;
    let views = if populated.is_empty() {
        Vec::new()
    } else {
        matviews::dependents(&mut dest, &full_plan.names(), &populated)?
    };
    let mut touched = full_plan.names();
    touched.extend(keys.iter().map(|k| k.table.clone()));
    let rights = catalog::rights(&mut dest, &touched)?;
    if !cfg.enable_triggers {
        let mut firing = triggers::firing(&mut dest, &plan.names(), mode == FkMode::Replica)?;
        for table in &mut plan.tables {
            table.triggers = firing.remove(&table.name).unwrap_or_default();
        }
    }
    if cfg.index_mode != IndexMode::Keep {
        let (big, kept): (Vec<TableName>, Vec<TableName>) = plan
            .tables
            .iter()
            // A load that deletes only some rows keeps the others indexed.
            .filter(|t| cfg.index_mode.rebuilds(t.data_bytes) && t.replace == Replace::All)
            .map(|t| t.name.clone())
            .partition(|name| {
                // auto keeps what the role may not build again; rebuild refuses it below.
                cfg.index_mode != IndexMode::Auto
                    || rights
                        .get(name)
                        .is_some_and(|r| r.owner && r.create_in_schema)
            });
        if !kept.is_empty() {
            log::info!(
                "keeping the indexes of {} tables as they are: {} may not build them again \
                 (that needs the table's owner and CREATE on its schema)",
                kept.len(),
                cfg.dest
            );
        }
        let mut rebuildable = match indexes::rebuildable(&mut dest, &big, mode.drops_keys()) {
            Ok(rebuildable) => rebuildable,
            // Reading an index definition waits for a lock another session holds on its
            // table: keep every index rather than hold up or fail the whole copy; that
            // table's own writer then waits for its lock, up to --lock-timeout.
            Err(err) if error::kind(&err) == error::Kind::LockTimeout => {
                log::warn!(
                    "could not read the destination's indexes (a table is locked by another \
                     session), so every index stays as it is: {}",
                    describe(&err)
                );
                HashMap::new()
            }
            Err(err) => return Err(err),
        };
        for table in &mut plan.tables {
            table.indexes = rebuildable.remove(&table.name).unwrap_or_default();
        }
    }
    refusals.extend(plan::rights_refusals(
        &plan,
        &keys,
        &rights,
        &cfg.dest.to_string(),
    ));
    if !refusals.is_empty() && !cfg.dry_run {
        return Err(plan::refuse("copy", &refusals));
    }
    if cfg.dry_run {
        let planned = dry_run::Planned {
            plan: &plan,
            mode,
            keys: &keys,
            sequences: &sequences,
            views: &views,
            large_objects: large_objects.as_ref().map(Vec::len),
            findings: &findings,
            refusals: &refusals,
        };
        if cfg.json {
            print_json(&planned.to_json(cfg)).context("writing the plan")?;
        } else {
            planned.print(cfg).context("writing the plan")?;
        }
        if !refusals.is_empty() {
            log::error!("{}", plan::refuse("copy", &refusals));
            return Ok(exit::USAGE);
        }
        return Ok(exit::SUCCESS);
    }
    confirm::confirm(cfg, &mut dest, &plan)?;
    // Putting keys back must wait for locks rather than give up and leave them to recover.
    // Not RESET: that would go back to a lock_timeout the role may have.
    dest.batch_execute("SET lock_timeout = 0")?;
    interrupt::install()?;
    log::info!(
        "copying {} tables ({} on disk) from {} to {}, {} at a time, foreign keys in {mode} mode",
        plan.tables.len(),
        format_bytes(plan.data_bytes()),
        cfg.source,
        cfg.dest,
        cfg.parallel
    );

    let started = Instant::now();
    // The undo record is durable before the first change it undoes.
    let mut journal = State::new(cfg.dest.to_string());
    journal.keys = keys.clone();
    journal.validate = carried.clone();
    journal.plan = Some(fingerprint.clone());
    journal.done = done_before.clone();
    state_file.save(&journal)?;
    if !keys.is_empty() {
        log::info!(
            "dropping {} foreign keys for the load (recorded in {})",
            keys.len(),
            state_file.path.display()
        );
    }
    if let Err(err) = constraints::drop_all(&mut dest, &keys, cfg.lock_timeout) {
        // The drop is one transaction: it failed whole, so there is nothing to undo.
        journal.keys.clear();
        if done_before.is_empty() {
            journal.plan = None;
        }
        state_file.store(&journal)?;
        return Err(err);
    }
    let mut problems = Vec::new();
    let outcomes = catch_unwind(AssertUnwindSafe(|| {
        copy_tables(
            cfg,
            &plan,
            &mut snapshot,
            mode,
            large_objects.as_deref(),
            (&state_file, &mut journal),
        )
    }))
    .unwrap_or_else(|_| Copied {
        outcomes: failed_all(&plan, "internal error: a copy thread panicked"),
        stopped: None,
        large_objects: None,
    });
    let Copied {
        outcomes,
        stopped,
        large_objects: objects_copied,
    } = outcomes;
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
    let restored = put_keys_back(cfg, &mut dest, &keys, &mut problems);
    // Views built from a table this run copied; the others hold what they held.
    let copied = outcomes_by_name(&plan, &outcomes, &[]);
    let fresh: Vec<MatView> = views
        .into_iter()
        .filter(|v| v.tables.iter().any(|t| copied.get(t) == Some(&true)))
        .collect();
    let (views_refreshed, failed) = matviews::refresh(&mut dest, &fresh, cfg.lock_timeout);
    problems.extend(failed);
    drop(dest);
    let analyzed = outcomes
        .iter()
        .filter(|o| matches!(o.analyzed, Some(Ok(()))))
        .count();
    problems.extend(outcomes.iter().filter_map(|o| o.analyzed.clone()?.err()));

    let checks = if cfg.verify && !interrupt::requested() {
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
    if journal.done.len() == full_plan.tables.len() {
        journal.plan = None;
        journal.done.clear();
    }
    if let Err(err) = state_file.store(&journal) {
        problems.push(describe(&err));
    }
    if !restored.missing.is_empty() {
        problems.push(format!(
            "some foreign keys are not back; they are recorded in {}: fix the cause and run \
             `pgcopy recover`",
            state_file.path.display()
        ));
    }
    for problem in &problems {
        log::error!("{problem}");
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
        interrupted: interrupt::requested(),
        problems: &problems,
        warnings: logging::warnings(),
        checks: checks.as_deref(),
    };
    let code = report.exit_code();
    if cfg.json {
        print_json(&report.to_json()).context("writing the report")?;
    } else if cfg.verbosity != Verbosity::Quiet || code != exit::SUCCESS {
        report
            .write(&mut std::io::stdout().lock())
            .context("writing the report")?;
    }
    Ok(code)
}

/// What a run copies, in a few characters: the source database and, per table, its name,
/// columns and format. A run may only resume one with the same fingerprint.
fn fingerprint(source: &Identity, plan: &Plan) -> String {
    let mut text = source.key();
    let mut tables: Vec<String> = plan
        .tables
        .iter()
        .map(|t| {
            let columns: Vec<&str> = t.column_names().collect();
            format!("{}|{}|{}", t.name, columns.join(","), t.format)
        })
        .collect();
    tables.sort();
    for table in tables {
        text.push('\n');
        text.push_str(&table);
    }
    format!("{:016x}", crate::state::file::fnv1a(text.as_bytes()))
}

/// Narrows the plan to the tables an interrupted run did not finish; returns those it did.
/// A table it finished that no longer has the file its load left it in is copied again:
/// it changed since, or this is not the destination the run wrote to (a clone).
fn resume(
    dest: &mut Client,
    plan: &mut Plan,
    previous: Option<&State>,
    fingerprint: &str,
) -> Result<Vec<Done>> {
    let Some(previous) = previous.filter(|p| p.plan.is_some()) else {
        bail!("nothing to resume: no interrupted copy left tables to do on this destination; run without --resume");
    };
    if previous.plan.as_deref() != Some(fingerprint) {
        bail!(
            "cannot resume: the source, the selected tables or their columns changed since the \
             interrupted run; run without --resume to copy everything"
        );
    }
    let names: Vec<TableName> = previous.done.iter().map(|d| d.table.clone()).collect();
    let now = catalog::filenodes(dest, &names)?;
    let (done, changed): (Vec<Done>, Vec<Done>) = previous
        .done
        .iter()
        .cloned()
        .partition(|d| d.filenode == 0 || now.get(&d.table) == Some(&d.filenode));
    if !changed.is_empty() {
        log::warn!(
            "{} tables the interrupted run copied are not as it left them on this destination \
             (changed since, or the state file is another server's: a clone?), so they are \
             copied again: {}",
            changed.len(),
            changed
                .iter()
                .map(|d| d.table.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let skipped: HashSet<&TableName> = done.iter().map(|d| &d.table).collect();
    plan.tables.retain(|t| !skipped.contains(&t.name));
    log::warn!(
        "resuming: {} tables were copied by the interrupted run, from its own older snapshot; \
         the {} left are copied now, from a new one",
        done.len(),
        plan.tables.len()
    );
    Ok(done)
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
) -> Option<Vec<verify::Check>> {
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
    let result = verify::compare(
        &copied,
        large_objects,
        &snapshot.id,
        &cfg.source.pool(cfg.parallel),
        &cfg.dest.pool(cfg.parallel),
        cfg.parallel,
    );
    match result {
        Ok(checks) => Some(checks),
        Err(err) => {
            problems.push(format!("verification could not run: {}", describe(&err)));
            None
        }
    }
}

/// Runs the byte pipe with progress, and copies `objects` (the large objects, if the copy
/// carries them) beside it; never fails as a whole: a table that could not be copied
/// carries its error.
fn copy_tables(
    cfg: &CopyConfig,
    plan: &Plan,
    snapshot: &mut Snapshot,
    mode: FkMode,
    objects: Option<&[LargeObject]>,
    journal: (&StateFile, &mut State),
) -> Copied {
    let (state_file, journal) = journal;
    let settings = lanes::Settings {
        snapshot: snapshot.id.clone(),
        batch_size: cfg.batch_size,
        parallel: cfg.parallel,
        replica: mode == FkMode::Replica,
        retries: cfg.retries,
        lock_timeout: cfg.lock_timeout,
        analyze: cfg.analyze,
    };
    let counters = Counters::default();
    let display = if cfg.verbosity == Verbosity::Quiet {
        Display::Off
    } else if cfg.progress && std::io::stderr().is_terminal() {
        Display::Bar
    } else {
        Display::Lines(cfg.progress_interval)
    };
    let mut progress = Progress::new(plan, display);
    // Tables are recorded as done in the state file about once a second, so that after a
    // crash `--resume` repeats at most the last second's worth.
    let done_before = journal.done.clone();
    let mut recorded = 0;
    let mut last_record = Instant::now();
    let mut record = |force: bool| {
        let done = counters
            .copied
            .lock()
            .map(|d| d.clone())
            .unwrap_or_default();
        if done.len() == recorded || (!force && last_record.elapsed().as_secs() < 1) {
            return;
        }
        recorded = done.len();
        last_record = Instant::now();
        journal.done = done_before
            .iter()
            .cloned()
            .chain(done.iter().map(|&(i, filenode)| Done {
                table: plan.tables[i].name.clone(),
                filenode,
            }))
            .collect();
        if let Err(err) = state_file.save(journal) {
            log::warn!("could not record progress: {}", describe(&err));
        }
    };
    // Twice the lanes: a lane replacing a lost connection never waits for a free one.
    let stop = lanes::Stop::default();
    let mut source_lost = None;
    let mut last_check = Instant::now();
    // The first check also takes in what planning left in flight on the session (the
    // driver closes prepared statements lazily), so later checks hear the server first.
    if let Err(why) = snapshot.check() {
        let lost = snapshot_lost(&why);
        stop.request(lost.clone());
        source_lost = Some(lost);
    }
    let source = cfg.source.reader_pool(cfg.parallel * 2);
    let snapshot_id = snapshot.id.clone();
    let (result, large_objects) = std::thread::scope(|scope| {
        // The large objects go on a thread of their own, beside the lanes.
        let large_objects = objects.map(|objects| {
            scope.spawn(|| {
                let stopping = || stop.requested() || interrupt::requested();
                large_objects::copy(
                    &cfg.source,
                    &cfg.dest,
                    &snapshot_id,
                    objects,
                    &counters.bytes,
                    &stopping,
                )
                .map_err(|err| describe(&err))
            })
        });
        let dest = cfg.dest.pool(cfg.parallel * 2);
        let result = {
            lanes::run(plan, &settings, &source, &dest, &counters, &stop, |lanes| {
                progress.tick(&counters, lanes);
                record(false);
                if interrupt::requested() {
                    stop.request("the copy was interrupted");
                }
                // The snapshot lives in this session: once it is gone nothing more can
                // be read consistently, so the copy stops instead of retrying in vain.
                if last_check.elapsed() >= SNAPSHOT_CHECK && source_lost.is_none() {
                    last_check = Instant::now();
                    if let Err(why) = snapshot.check() {
                        let lost = snapshot_lost(&why);
                        log::error!("{lost}: stopping");
                        stop.request(lost.clone());
                        source_lost = Some(lost);
                    }
                }
            })
        };
        let large_objects = large_objects.map(|thread| {
            thread.join().unwrap_or_else(|_| {
                Err("internal error: the large objects' thread panicked".into())
            })
        });
        (result, large_objects)
    });
    record(true);
    progress.finish();
    let stopped = source_lost.map(|lost| {
        format!("{lost}; the tables not copied kept their old rows: copy again, or with --resume")
    });
    let outcomes = result.unwrap_or_else(|err| failed_all(plan, &describe(&err)));
    Copied {
        outcomes,
        stopped,
        large_objects,
    }
}

/// What `copy_tables` did.
struct Copied {
    outcomes: Vec<TableOutcome>,
    /// Why the copy stopped short, if the source's snapshot was lost.
    stopped: Option<String>,
    /// The bytes of large objects copied, or why they were not; `None` when not asked.
    large_objects: Option<Result<u64, String>>,
}

/// Says that the snapshot is gone, and why.
fn snapshot_lost(why: &str) -> String {
    format!("the source session holding the snapshot was lost ({why})")
}

fn failed_all(plan: &Plan, why: &str) -> Vec<TableOutcome> {
    plan.tables
        .iter()
        .map(|_| TableOutcome::failed(anyhow::anyhow!(why.to_string())))
        .collect()
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

/// Puts the foreign keys back, on a new connection if the first one was lost meanwhile.
fn put_keys_back(
    cfg: &CopyConfig,
    dest: &mut Client,
    keys: &[Constraint],
    problems: &mut Vec<String>,
) -> Restored {
    let nothing_back = || Restored {
        missing: keys.to_vec(),
        ..Restored::default()
    };
    if keys.is_empty() {
        return Restored::default();
    }
    if let Err(err) = ensure_connected(cfg, dest) {
        problems.push(format!(
            "could not reconnect to put the foreign keys back: {}",
            describe(&err)
        ));
        return nothing_back();
    }
    match constraints::restore_all(dest, keys) {
        Ok(restored) => {
            problems.extend(restored.problems.iter().cloned());
            restored
        }
        Err(err) => {
            problems.push(describe(&err));
            nothing_back()
        }
    }
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
