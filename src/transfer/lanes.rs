//! The byte pipe: per lane, a reader thread streams `COPY … TO STDOUT` from the source in
//! chunks through a bounded channel to a writer thread that replaces the destination table
//! with `TRUNCATE` + `COPY … FROM STDIN` in one transaction. Bytes are not decoded on the way.
//! The lanes take units of work: a whole table, or one piece of a split table (see
//! `plan::pieces`), whose table is emptied before the lanes start; a thread of its own
//! completes a split table after its last piece (its indexes, its statistics, its outcome).
//! A reader takes its next unit only once its writer is done with the last, so no unit
//! waits behind another's index builds and `ANALYZE` while a lane is idle.

use crate::pg::error::{self, describe, Stopped};
use crate::pg::pool::{Pool, PooledClient, ReaderPool, ReaderSessions, Sessions};

use crate::pg::wire;
use crate::plan::{Plan, TablePlan};
use crate::transfer::read;
use crate::transfer::schedule::{Job, Next, Schedule};
use crate::transfer::sessions::{self, Cancels, LaneConnection, Losses, Session, DEST, SOURCE};
use crate::transfer::splits::{self, SplitProgress, Units};
use crate::transfer::write::{self, Piece};
use crate::transfer::{Counters, Settings, Stop, TableOutcome};
use anyhow::{anyhow, bail, Context, Result};
use crossbeam_channel::{bounded, Receiver, Sender};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Chunks queued between a reader and its writer. With one chunk being filled and one being
/// written, a lane holds at most `CHANNEL_DEPTH + 2` chunks.
pub(crate) const CHANNEL_DEPTH: usize = 4;

/// No table in flight on a lane.
const IDLE: usize = usize::MAX;

/// What a reader tells its writer.
enum Msg {
    /// The next table to write.
    Begin(Job),
    Chunk(Vec<u8>),
    /// The table's stream ended: the rows the source sent, or why it stopped.
    End(Result<u64>),
}

/// One reader–writer pair; its counters let the main thread show what is in flight.
pub(crate) struct Lane {
    /// The plan index of the table being written, or `IDLE`.
    pub(crate) current: AtomicUsize,
    /// The ticket of a try whose writer failed: its reader stops reading.
    abandon: AtomicUsize,
    /// Cancel handles for the lane's two connections, used when the user interrupts.
    cancel: Mutex<Cancels>,
}

struct Shared<'a> {
    plan: &'a Plan,
    settings: &'a Settings,
    counters: &'a Counters,
    quit: &'a Stop,
    schedule: Schedule,
    outcomes: Mutex<Vec<Option<TableOutcome>>>,
    splits: Mutex<Vec<Option<SplitProgress>>>,
    lane_errors: Mutex<Vec<String>>,
    threads_done: AtomicUsize,
    /// Sessions lost so far on either side: a server restart ends every session, and the
    /// idle ones only find out at their next statement.
    losses: Losses,
}

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

impl Shared<'_> {
    /// A whole table's final outcome.
    fn finish(&self, index: usize, outcome: TableOutcome) {
        self.table_done(index, outcome);
        self.schedule.unit_done();
    }

    /// Records a piece's final outcome. When it was the table's last, returns how the
    /// pieces went, for the caller to complete the table (`table_done`).
    fn piece_done(
        &self,
        job: Job,
        bytes: u64,
        result: Result<write::Loaded>,
    ) -> Option<SplitProgress> {
        let filenode = result.as_ref().ok().map(|loaded| loaded.filenode);
        let finished = self.splits.lock().ok().and_then(|mut splits| {
            let progress = splits[job.index].as_mut()?;
            progress.left = progress.left.saturating_sub(1);
            progress.bytes += bytes;
            progress.attempts = progress.attempts.max(job.attempt);
            match result {
                Ok(loaded) => {
                    progress.rows += loaded.rows;
                    progress.copied += 1;
                }
                Err(err) => {
                    progress.error.get_or_insert(err);
                }
            }
            if progress.left == 0 {
                splits[job.index].take()
            } else {
                None
            }
        });
        if let (Some(filenode), Some(piece), Ok(mut copied)) =
            (filenode, job.piece, self.counters.pieces_copied.lock())
        {
            copied.push((job.index, piece, filenode));
        }
        self.schedule.unit_done();
        finished
    }

    /// Completes a split table after its last piece (see `splits::complete`).
    fn complete_split(
        &self,
        index: usize,
        progress: SplitProgress,
        client: &mut postgres::Client,
        dest: &Pool,
    ) {
        let completed = splits::complete(
            &self.plan.tables[index],
            progress,
            client,
            dest,
            (self.settings.analyze || self.plan.tables[index].changed_by_rules())
                && !self.quit.requested(),
        );
        if completed.rebuilt_indexes {
            if let Ok(mut rebuilt) = self.counters.indexes_rebuilt.lock() {
                rebuilt.push(index);
            }
        }
        self.table_done(index, completed.outcome);
    }

    /// A table's final outcome.
    fn table_done(&self, index: usize, outcome: TableOutcome) {
        self.counters
            .bytes_done
            .fetch_add(outcome.bytes, Ordering::Relaxed);
        if outcome.error.is_none() {
            self.counters
                .disk_done
                .fetch_add(self.plan.tables[index].data_bytes, Ordering::Relaxed);
            if let Ok(mut copied) = self.counters.copied.lock() {
                copied.push((index, outcome.filenode));
            }
        }
        if let Ok(mut outcomes) = self.outcomes.lock() {
            outcomes[index] = Some(outcome);
        }
        self.counters.tables_done.fetch_add(1, Ordering::SeqCst);
    }
}

/// A reader's ends of the channels to its writer.
struct LaneEnds {
    chunks: Sender<Msg>,
    /// The destination session the reader opens for its writer (`None`: it could not).
    dest_conn: Sender<Option<PooledClient>>,
    /// A token each time the writer is done with a unit and waits for the next.
    writer_ready: Receiver<()>,
}

/// Takes tables from the plan one after another and streams each to the lane's writer.
/// It opens the lane's two connections first, so a lane that cannot connect takes no table.
/// It takes the next unit only once its writer is done with the last — its indexes built,
/// its statistics given: a unit taken early would wait behind that work while another lane
/// may be idle.
fn reader_lane(shared: &Shared, lane: &Lane, source: &ReaderPool, dest: &Pool, ends: LaneEnds) {
    let LaneEnds {
        chunks,
        dest_conn,
        writer_ready,
    } = ends;
    let conns = source
        .get()
        .context("connecting to the source")
        .and_then(|s| Ok((s, dest.get().context("connecting to the destination")?)));
    let mut session = match conns {
        Ok((s, d)) => {
            if let Ok(mut tokens) = lane.cancel.lock() {
                *tokens = [ReaderSessions::cancel(&s), Sessions::cancel(&d)];
            }
            // A failed send means the writer is gone; the next send below notices too.
            let _ = dest_conn.send(Some(d));
            Session::new(SOURCE, source, s, &shared.losses)
        }
        Err(err) => {
            let _ = dest_conn.send(None);
            if let Ok(mut errors) = shared.lane_errors.lock() {
                errors.push(describe(&err));
            }
            return;
        }
    };
    // An error: the writer is gone.
    while writer_ready.recv().is_ok() {
        let Some(job) = next_job(shared) else {
            break;
        };
        let table = &shared.plan.tables[job.index];
        if chunks.send(Msg::Begin(job)).is_err() {
            // The writer is gone: the table must still get an outcome, or the other lanes
            // would wait for it forever.
            shared.finish(job.index, TableOutcome::lost(job.attempt));
            break;
        }
        session.renew(&shared.losses, &lane.cancel);
        let result = if table.on_source {
            read_table(shared, lane, job, table, &mut session.client, &chunks)
        } else {
            Ok(0)
        };
        session.ended(&shared.losses, &result, true);
        if chunks.send(Msg::End(result)).is_err() {
            shared.finish(job.index, TableOutcome::lost(job.attempt));
            break;
        }
    }
}

/// The next unit to copy, once there is one; `None` when there is nothing left or the copy
/// is stopping.
fn next_job(shared: &Shared) -> Option<Job> {
    loop {
        if shared.quit.requested() {
            return None;
        }
        match shared.schedule.next() {
            Next::Run(job) => return Some(job),
            Next::Wait => std::thread::sleep(Duration::from_millis(50)),
            Next::Done => return None,
        }
    }
}

/// Streams one table, or one piece of it, to the lane's writer; returns the number of rows
/// sent. Stops when the writer failed this try or the copy is stopping.
fn read_table(
    shared: &Shared,
    lane: &Lane,
    job: Job,
    table: &TablePlan,
    conn: &mut wire::Connection,
    chunks: &Sender<Msg>,
) -> Result<u64> {
    let settings = shared.settings;
    read::read(
        conn,
        table,
        job.piece,
        &settings.snapshot,
        settings.batch_size,
        |chunk, rows| {
            shared.counters.rows.fetch_add(rows, Ordering::Relaxed);
            if lane.abandon.load(Ordering::SeqCst) == job.ticket {
                bail!("stopped reading because the destination failed");
            }
            if shared.quit.requested() {
                return Err(anyhow::Error::new(Stopped(format!(
                    "not copied, {}: it kept its old rows",
                    shared.quit.reason()
                ))));
            }
            chunks
                .send(Msg::Chunk(chunk))
                .map_err(|_| anyhow!("the destination writer stopped"))
        },
    )
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

/// Writes each table its reader announces, and records how it went; tells the reader each
/// time it is ready for the next.
fn writer_lane(
    shared: &Shared,
    lane: &Lane,
    dest: &Pool,
    chunks: Receiver<Msg>,
    conn: Receiver<Option<PooledClient>>,
    ready: Sender<()>,
    finished: Sender<(usize, SplitProgress)>,
) {
    let Ok(Some(client)) = conn.recv() else {
        return;
    };
    let mut session = Session::new(DEST, dest, client, &shared.losses);
    // A failed send: the reader is gone, and the next receive below ends the loop.
    let _ = ready.send(());
    while let Ok(msg) = chunks.recv() {
        let Msg::Begin(job) = msg else {
            continue;
        };
        session.renew(&shared.losses, &lane.cancel);
        let table = &shared.plan.tables[job.index];
        lane.current.store(job.index, Ordering::SeqCst);
        let started = Instant::now();
        let mut incoming = Incoming {
            chunks: &chunks,
            ended: false,
            bytes: 0,
            source_failed: false,
        };
        let result = match job.piece {
            None => write::write_table(
                shared.settings,
                &shared.counters.bytes,
                table,
                &mut session.client,
                || incoming.next(),
            ),
            Some(piece) => write::write_piece(
                shared.settings,
                &shared.counters.bytes,
                table,
                table
                    .split
                    .as_ref()
                    .filter(|s| s.started())
                    .and_then(|s| s.pieces.get(piece))
                    .map(String::as_str),
                &mut session.client,
                || incoming.next(),
            ),
        };
        // A source failure the reader passed on says nothing about the destination session.
        session.ended(&shared.losses, &result, !incoming.source_failed);
        if !incoming.ended {
            lane.abandon.store(job.ticket, Ordering::SeqCst);
            incoming.drain();
        }
        lane.current.store(IDLE, Ordering::SeqCst);
        let what = match job.piece {
            Some(piece) => format!(
                "{} (piece {} of {})",
                table.name,
                piece + 1,
                table.piece_count()
            ),
            None => table.name.to_string(),
        };
        match result {
            Ok(loaded) if job.piece.is_some() => {
                log::debug!("copied {what} ({} rows)", loaded.rows);
                if let Some(progress) = shared.piece_done(job, incoming.bytes, Ok(loaded)) {
                    if let Err(unsent) = finished.send((job.index, progress)) {
                        let (index, progress) = unsent.into_inner();
                        shared.complete_split(index, progress, &mut session.client, dest);
                    }
                }
            }
            Ok(write::Loaded { rows, filenode }) => {
                log::debug!(
                    "copied {} ({rows} rows, {})",
                    table.name,
                    crate::units::format_bytes(incoming.bytes)
                );
                let elapsed = started.elapsed();
                let analyze = shared.settings.analyze || table.changed_by_rules();
                let analyzed = (analyze && !shared.quit.requested()).then(|| {
                    let given = write::give_statistics(&mut session.client, table);
                    if given.is_ok() || session.answers(&shared.losses) {
                        return given;
                    }
                    // The session was lost meanwhile (a restart): once more on another.
                    session.renew(&shared.losses, &lane.cancel);
                    write::give_statistics(&mut session.client, table)
                });
                let outcome = TableOutcome {
                    rows,
                    bytes: incoming.bytes,
                    elapsed,
                    error: None,
                    attempts: job.attempt,
                    analyzed,
                    filenode,
                    pieces: 1,
                    pieces_copied: 1,
                };
                shared.finish(job.index, outcome);
            }
            Err(err)
                if job.attempt <= shared.settings.retries
                    && error::kind(&err).is_worth_retrying()
                    && !shared.quit.requested() =>
            {
                let wait = error::backoff(job.attempt);
                log::warn!(
                    "{what}: {}; trying again in {} (try {} of {})",
                    describe(&err),
                    crate::units::format_duration(wait),
                    job.attempt + 1,
                    shared.settings.retries + 1
                );
                shared.schedule.retry_later(job, wait);
            }
            Err(err) if job.piece.is_some() => {
                log::error!("{what} failed: {}", describe(&err));
                if let Some(progress) = shared.piece_done(job, incoming.bytes, Err(err)) {
                    if let Err(unsent) = finished.send((job.index, progress)) {
                        let (index, progress) = unsent.into_inner();
                        shared.complete_split(index, progress, &mut session.client, dest);
                    }
                }
            }
            Err(err) => {
                log::error!("{what} failed: {}", describe(&err));
                let outcome = TableOutcome {
                    bytes: incoming.bytes,
                    elapsed: started.elapsed(),
                    attempts: job.attempt,
                    ..TableOutcome::failed(err)
                };
                shared.finish(job.index, outcome);
            }
        }
        let _ = ready.send(());
    }
}

/// The chunks of the table being written, as the writer consumes them.
struct Incoming<'a> {
    chunks: &'a Receiver<Msg>,
    /// Whether the reader's `End` for this table has arrived.
    ended: bool,
    bytes: u64,
    /// The reader ended the table with an error of its own.
    source_failed: bool,
}

impl Incoming<'_> {
    fn next(&mut self) -> Result<Piece> {
        match self.chunks.recv() {
            Ok(Msg::Chunk(chunk)) => {
                self.bytes += chunk.len() as u64;
                Ok(Piece::Chunk(chunk))
            }
            Ok(Msg::End(result)) => {
                self.ended = true;
                self.source_failed = result.is_err();
                Ok(Piece::End(result.context("reading the source")?))
            }
            Ok(Msg::Begin(_)) => {
                self.ended = true;
                bail!("internal error: a new table began before the last one ended")
            }
            Err(_) => {
                self.ended = true;
                bail!("the source reader stopped")
            }
        }
    }

    /// Discards the rest of an abandoned table so its reader is never blocked on us.
    fn drain(&mut self) {
        while !self.ended {
            if let Err(_) | Ok(Msg::End(_)) = self.chunks.recv() {
                self.ended = true;
            }
        }
    }
}
