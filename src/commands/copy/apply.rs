//! The third phase of a copy, where the destination changes: record what will be undone,
//! drop the foreign keys, and run the lanes (with the large objects beside them), showing
//! progress and recording finished tables as they finish. A chunked copy (`copy --follow`)
//! first records its chunks to read on the destination and lets the planning snapshot go:
//! each read takes its own.

use super::planning::Work;
use super::Chunks;
use crate::cli::config::{CopyConfig, Verbosity};
use crate::output::metrics::live::{Copying, LIVE};
use crate::output::progress::{Display, Progress};
use crate::pg::error::{self, describe};
use crate::pg::server::SnapshotId;
use crate::plan::chunks::registry::Registry;
use crate::plan::misfits;
use crate::plan::snapshot::Snapshot;
use crate::plan::{self, Plan};
use crate::schema::constraints;
use crate::schema::fk_mode::FkMode;
use crate::schema::indexes::SavedIndex;
use crate::schema::large_objects::{self, LargeObject};
use crate::state::file::{Done, PieceState, State, StateFile};
use crate::state::interrupt;
use crate::transfer::lanes::{self, Lane};
use crate::transfer::{Counters, ReadSnapshot, Settings, Stop, TableOutcome};
use crate::units::format_bytes;
use anyhow::{Context, Result};
use std::io::IsTerminal;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the main thread checks that the source snapshot's session is alive.
const SNAPSHOT_CHECK: Duration = Duration::from_secs(2);

/// What the load did, for the last phase.
pub(super) struct Applied {
    pub(super) started: Instant,
    /// The state file's record, as of the end of the load.
    pub(super) journal: State,
    pub(super) copied: Copied,
}

/// Drops the keys and loads the tables, in `chunks` if given (a `resume`d chunked copy
/// keeps what the destination recorded of it). An `Err` means nothing was changed (the keys
/// could not be dropped); after that, failures are in the outcomes.
pub(super) fn apply(
    cfg: &CopyConfig,
    work: &mut Work,
    chunks: Option<&mut Chunks<'_>>,
    resume: bool,
) -> Result<Applied> {
    let Work {
        dest,
        state_file,
        snapshot,
        plan,
        fingerprint,
        done_before,
        mode,
        keys,
        carried,
        large_objects,
        chunked,
        ..
    } = work;
    let mode = *mode;
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
    journal.pieces = resumable_pieces(plan);
    // Split tables lose their indexes when they are emptied, outside any load transaction.
    journal.indexes = plan
        .tables
        .iter()
        .filter(|t| t.split.as_ref().is_some_and(|s| !s.started()))
        .flat_map(|t| t.indexes.iter().map(|i| SavedIndex::new(&t.name, i)))
        .collect();
    state_file.save(&journal)?;
    if !keys.is_empty() {
        log::info!(
            "dropping {} foreign keys for the load (recorded in {})",
            keys.len(),
            state_file.path.display()
        );
    }
    if let Err(err) = constraints::drop_all(dest, keys, cfg.lock_timeout) {
        // The drop is one transaction: it failed whole, so there is nothing to undo.
        journal.keys.clear();
        if done_before.is_empty() {
            journal.plan = None;
        }
        state_file.store(&journal)?;
        return Err(err);
    }
    let read = match chunks {
        Some(chunks) => {
            // Each read takes its own snapshot: the one planning was taken in goes.
            plan::chunks::start(dest, &chunks.slot, !resume)?;
            plan::chunks::plan(dest, &chunks.slot, &chunk_units(plan))?;
            let registry = Arc::new(Registry::new(
                plan::chunks::load(dest, &chunks.slot, true)?,
                false,
            )?);
            // A split table's indexes go for its load, and come back after its last chunk:
            // in this run, or, resumed, in the one it goes on from.
            registry.rebuilt(
                plan.tables
                    .iter()
                    .filter(|t| t.split.is_some() && (resume || !t.indexes.is_empty()))
                    .map(|t| &t.name),
            );
            let planned: String = snapshot
                .client
                .query_one("SELECT pg_current_snapshot()::text", &[])?
                .get(0);
            snapshot
                .client
                .batch_execute("COMMIT")
                .context("ending the planning snapshot's transaction")?;
            (chunks.release)(registry.clone())?;
            plan::chunks::wait_until_seen(&mut snapshot.client, &planned)?;
            if resume {
                // The follower killed before may have left changes to chunks not read yet.
                plan::chunks::wait_until_committed_seen(&mut snapshot.client)?;
            }
            log::info!(
                "reading each table, and each chunk of the tables bigger than {}, in a \
                 snapshot of its own, held only while it is read",
                format_bytes(chunks.bytes)
            );
            ReadSnapshot::EachRead {
                slot: chunks.slot.clone(),
                registry,
            }
        }
        None => ReadSnapshot::Exported(snapshot.id.clone()),
    };
    debug_assert_eq!(
        chunked.is_some(),
        matches!(read, ReadSnapshot::EachRead { .. })
    );
    let copied = catch_unwind(AssertUnwindSafe(|| {
        copy_tables(
            cfg,
            plan,
            snapshot,
            read,
            mode,
            // The chunked copy has no one snapshot to read them in: following copies them
            // at cutover, as they are then.
            large_objects.as_deref().filter(|_| chunked.is_none()),
            (state_file, &mut journal),
        )
    }))
    .unwrap_or_else(|_| Copied {
        outcomes: failed_all(plan, "internal error: a copy thread panicked"),
        stopped: None,
        large_objects: None,
    });
    Ok(Applied {
        started,
        journal,
        copied,
    })
}

/// What the chunked copy reads: each table the source has, whole or in its ranges.
fn chunk_units(plan: &Plan) -> Vec<plan::chunks::Unit<'_>> {
    let mut units = Vec::new();
    for table in plan.tables.iter().filter(|t| t.on_source) {
        match &table.split {
            Some(split) => units.extend(split.pieces.iter().zip(&split.ranges).map(
                |(condition, range)| {
                    let piece = (condition.as_str(), split.key_columns(), range);
                    (&table.name, Some(piece))
                },
            )),
            None => units.push((&table.name, None)),
        }
    }
    units
}

/// The pieces of the tables split by key, as the state file records them before the load:
/// those an earlier run finished marked done.
fn resumable_pieces(plan: &Plan) -> Vec<PieceState> {
    plan.tables
        .iter()
        .filter_map(|table| Some((table, table.split.as_ref().filter(|s| s.resumable())?)))
        .flat_map(|(table, split)| {
            split
                .pieces
                .iter()
                .zip(&split.done)
                .enumerate()
                .map(|(piece, (condition, &done))| PieceState {
                    table: table.name.clone(),
                    key: split.key_columns().join(", "),
                    condition: condition.clone(),
                    done,
                    filenode: split.filenode,
                    range: split.ranges.get(piece).map(|r| r.to_text()),
                })
        })
        .collect()
}

/// Runs the byte pipe with progress, and copies `objects` (the large objects, if the copy
/// carries them) beside it; never fails as a whole: a table that could not be copied
/// carries its error.
fn copy_tables(
    cfg: &CopyConfig,
    plan: &Plan,
    snapshot: &mut Snapshot,
    read: ReadSnapshot,
    mode: FkMode,
    objects: Option<&[LargeObject]>,
    journal: (&StateFile, &mut State),
) -> Copied {
    let (state_file, journal) = journal;
    let chunked = matches!(read, ReadSnapshot::EachRead { .. });
    let settings = Settings {
        snapshot: read,
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
    let mut progress = match chunked {
        true => Progress::new(plan, display).in_chunks(),
        false => Progress::new(plan, display),
    };
    // Tables are recorded as done in the state file about once a second, so that after a
    // crash `--resume` repeats at most the last second's worth.
    let done_before = journal.done.clone();
    let mut recorded = (0, 0);
    let mut last_record = Instant::now();
    let mut record = |force: bool| {
        let done = counters
            .copied
            .lock()
            .map(|d| d.clone())
            .unwrap_or_default();
        let pieces = counters
            .pieces_copied
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default();
        if (done.len(), pieces.len()) == recorded || (!force && last_record.elapsed().as_secs() < 1)
        {
            return;
        }
        recorded = (done.len(), pieces.len());
        let rebuilt = counters
            .indexes_rebuilt
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default();
        journal
            .indexes
            .retain(|i| !rebuilt.iter().any(|&t| plan.tables[t].name == i.table));
        last_record = Instant::now();
        for &(index, piece, filenode) in &pieces {
            let table = &plan.tables[index];
            let condition = table.split.as_ref().and_then(|s| s.pieces.get(piece));
            if let Some(state) = journal
                .pieces
                .iter_mut()
                .find(|p| p.table == table.name && Some(&p.condition) == condition)
            {
                state.done = true;
                state.filenode = filenode;
            }
        }
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
    let stop = Stop::default();
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
                live_figures(plan, &counters, lanes);
                record(false);
                if interrupt::requested() {
                    stop.request("interrupted");
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
    live_figures(plan, &counters, &[]);
    progress.last(&counters);
    progress.finish();
    let stopped = source_lost.map(|lost| {
        format!("{lost}; the tables not copied kept their old rows: copy again, or with --resume")
    });
    let mut outcomes = result.unwrap_or_else(|err| failed_all(plan, &describe(&err)));
    // The rows that did not fit are looked for in the copy's one snapshot.
    if !chunked {
        explain_misfits(cfg, plan, &snapshot.id, &mut outcomes);
    }
    Copied {
        outcomes,
        stopped,
        large_objects,
    }
}

/// What `--metrics-listen` serves of the copy: from the lanes' counters, on the main
/// thread at each tick.
fn live_figures(plan: &Plan, counters: &Counters, lanes: &[Lane]) {
    let copied = counters.copied.lock().map(|c| c.len()).unwrap_or_default() as u64;
    let done = counters.tables_done.load(Ordering::Relaxed) as u64;
    LIVE.copying(Copying {
        tables_planned: plan.tables.len() as u64,
        tables_in_flight: lanes.iter().filter(|l| l.busy()).count() as u64,
        tables_done: copied,
        tables_failed: done.saturating_sub(copied),
        planned_bytes: plan.data_bytes(),
        bytes: counters.bytes.load(Ordering::Relaxed),
        in_flight_bytes: counters
            .bytes
            .load(Ordering::Relaxed)
            .saturating_sub(counters.bytes_done.load(Ordering::Relaxed)),
        rows: counters.rows.load(Ordering::Relaxed),
    });
}

/// Names the source row that did not fit, for each table that failed on a value of a
/// narrowed column (`--allow-narrowing`, a data exception): the server's error names only
/// the line of the COPY stream.
fn explain_misfits(
    cfg: &CopyConfig,
    plan: &Plan,
    snapshot: &SnapshotId,
    outcomes: &mut [TableOutcome],
) {
    for (table, outcome) in plan.tables.iter().zip(outcomes.iter_mut()) {
        let data_exception = outcome.error.as_ref().and_then(error::sqlstate);
        if !data_exception.is_some_and(|code| code.code().starts_with("22"))
            || table.conversions.iter().all(|c| c.exact)
        {
            continue;
        }
        let found = cfg.source.connect().and_then(|mut source| {
            let mut dest = cfg.dest.connect()?;
            misfits::find_misfit(&mut source, snapshot, &mut dest, table)
        });
        match found {
            Ok(Some(misfit)) => outcome.error = outcome.error.take().map(|e| e.context(misfit)),
            Ok(None) => {}
            Err(err) => log::warn!(
                "could not find the row of {} that did not fit: {}",
                table.name,
                describe(&err)
            ),
        }
    }
}

/// What `copy_tables` did.
pub(super) struct Copied {
    pub(super) outcomes: Vec<TableOutcome>,
    /// Why the copy stopped short, if the source's snapshot was lost.
    pub(super) stopped: Option<String>,
    /// The bytes of large objects copied, or why they were not; `None` when not asked.
    pub(super) large_objects: Option<Result<u64, String>>,
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
