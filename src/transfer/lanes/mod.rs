//! The byte pipe: per lane, a reader thread streams `COPY … TO STDOUT` from the source in
//! chunks through a bounded channel to a writer thread that replaces the destination table
//! with `TRUNCATE` + `COPY … FROM STDIN` in one transaction. Bytes are not decoded on the way.
//! The lanes take units of work: a whole table, or one piece of a split table (see
//! `plan::pieces`), whose table is emptied before the lanes start; a thread of its own
//! completes a split table after its last piece (its indexes, its statistics, its outcome).
//! A reader takes its next unit only once its writer is done with the last, so no unit
//! waits behind another's index builds and `ANALYZE` while a lane is idle.
//!
//! Here: starting the lanes and the thread that completes split tables, and waiting for
//! them; a lane's state is `lane`'s, what its reader does `reader`'s, its writer `writer`'s,
//! and the outcomes they record `shared`'s.

mod lane;
mod reader;
mod shared;
mod writer;

pub(crate) use lane::Lane;

use crate::pg::pool::{Pool, PooledClient, ReaderPool};
use crate::plan::Plan;
use crate::transfer::schedule::Schedule;
use crate::transfer::sessions;
use crate::transfer::splits::{self, SplitProgress, Units};
use crate::transfer::{Counters, Settings, Stop, TableOutcome};
use anyhow::{anyhow, Context, Result};
use crossbeam_channel::{bounded, Receiver};
use lane::IDLE;
use reader::{reader_lane, LaneEnds};
use shared::Shared;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use writer::writer_lane;

/// Chunks queued between a reader and its writer. With one chunk being filled and one being
/// written, a lane holds at most `CHANNEL_DEPTH + 2` chunks.
pub(crate) const CHANNEL_DEPTH: usize = 4;

/// Copies every table of the plan, `parallel` at a time, calling `tick` on this thread
/// about ten times a second until all lanes are done. Returns one outcome per planned table;
/// a table that failed (or never started) carries its error and kept its old rows.
pub(crate) fn run(
    plan: &Plan,
    settings: &Settings,
    source: &ReaderPool,
    dest: &Pool,
    counters: &Counters,
    quit: &Stop,
    mut tick: impl FnMut(&[Lane]),
) -> Result<Vec<TableOutcome>> {
    let lanes: Vec<Lane> = (0..settings.parallel.min(plan.tables.len()).max(1))
        .map(|_| Lane {
            current: AtomicUsize::new(IDLE),
            abandon: AtomicUsize::new(usize::MAX),
            cancel: Mutex::new([None, None]),
        })
        .collect();
    let lane_count = lanes.len();
    // Every reader and every writer blocks on I/O for its whole life, so each gets a thread
    // of its own: a reader must never wait for a writer that has no thread to run on. One
    // more completes split tables (see `completer`).
    let threads = rayon::ThreadPoolBuilder::new()
        .num_threads(lanes.len() * 2 + 1)
        .thread_name(move |i| match (i / 2, i % 2) {
            (lane, _) if lane == lane_count => "pgcopy-complete".to_string(),
            (lane, 0) => format!("pgcopy-read-{lane}"),
            (lane, _) => format!("pgcopy-write-{lane}"),
        })
        .build()
        .context("starting the copy threads")?;
    let Units {
        units,
        outcomes,
        splits,
    } = splits::units(plan, settings, dest, counters);
    let shared = Shared {
        plan,
        settings,
        counters,
        quit,
        schedule: Schedule::new(units),
        outcomes: Mutex::new(outcomes),
        splits: Mutex::new(splits),
        lane_errors: Mutex::new(Vec::new()),
        threads_done: AtomicUsize::new(0),
        losses: [AtomicUsize::new(0), AtomicUsize::new(0)],
    };
    threads.in_place_scope(|scope| {
        // Never full: one message per split table at most.
        let (finished_tx, finished_rx) = bounded(plan.tables.len().max(1));
        for lane in &lanes {
            let (chunks_tx, chunks_rx) = bounded(CHANNEL_DEPTH);
            let (conn_tx, conn_rx) = bounded(1);
            // One token per unit the writer is ready for (see `reader_lane`).
            let (ready_tx, ready_rx) = bounded(1);
            let shared = &shared;
            scope.spawn(move |_| {
                let ends = LaneEnds {
                    chunks: chunks_tx,
                    dest_conn: conn_tx,
                    writer_ready: ready_rx,
                };
                reader_lane(shared, lane, source, dest, ends);
                shared.threads_done.fetch_add(1, Ordering::SeqCst);
            });
            let finished = finished_tx.clone();
            scope.spawn(move |_| {
                writer_lane(shared, lane, dest, chunks_rx, conn_rx, ready_tx, finished);
                shared.threads_done.fetch_add(1, Ordering::SeqCst);
            });
        }
        drop(finished_tx);
        let shared = &shared;
        scope.spawn(move |_| {
            completer(shared, dest, finished_rx);
            shared.threads_done.fetch_add(1, Ordering::SeqCst);
        });
        let mut cancelled = false;
        while shared.threads_done.load(Ordering::SeqCst) < lanes.len() * 2 + 1 {
            if !cancelled && quit.requested() {
                // A statement can wait a long time (a lock, a slow server): cancel what is
                // running so the lanes notice the interrupt now.
                cancelled = true;
                sessions::cancel_all(lanes.iter().map(|lane| &lane.cancel));
            }
            tick(&lanes);
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    tick(&lanes);

    let lane_errors = shared.lane_errors.into_inner().unwrap_or_default();
    let why_not = if quit.requested() {
        format!("not copied: {}", quit.reason())
    } else if lane_errors.is_empty() {
        "not copied".to_string()
    } else {
        format!("not copied: {}", lane_errors.join("; "))
    };
    let outcomes = shared.outcomes.into_inner().unwrap_or_default();
    Ok(outcomes
        .into_iter()
        .map(|outcome| outcome.unwrap_or_else(|| TableOutcome::failed(anyhow!(why_not.clone()))))
        .collect())
}

/// Completes the split tables whose last piece is done, on a session of its own, so that a
/// writer goes on with its next table while the indexes of the last one are built.
fn completer(shared: &Shared, dest: &Pool, finished: Receiver<(usize, SplitProgress)>) {
    let mut session: Option<PooledClient> = None;
    while let Ok((index, progress)) = finished.recv() {
        if session.as_ref().is_none_or(|s| s.is_closed()) {
            session = dest.get().ok();
        }
        match session.as_mut() {
            Some(client) => shared.complete_split(index, progress, client, dest),
            // The run's end builds the indexes from the state file.
            None => shared.table_done(
                index,
                TableOutcome {
                    pieces: progress.pieces,
                    pieces_copied: progress.copied,
                    ..TableOutcome::failed(anyhow!(
                        "could not connect to the destination to complete the table"
                    ))
                },
            ),
        }
    }
}
