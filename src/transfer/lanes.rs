//! The byte pipe: per lane, a reader thread streams `COPY … TO STDOUT` from the source in
//! chunks through a bounded channel to a writer thread that replaces the destination table
//! with `TRUNCATE` + `COPY … FROM STDIN` in one transaction. Bytes are not decoded on the way.
//! The lanes take units of work: a whole table, or one piece of a split table (see
//! `plan::pieces`), whose table is emptied before the lanes start; the last piece of a
//! table to finish completes it (its `ANALYZE`, its outcome).

use crate::pg::error::{self, describe};
use crate::pg::pool::{Pool, PooledClient, ReaderPool, ReaderSessions, Sessions};

use crate::pg::sql::TEXT_SETTINGS;
use crate::pg::wire;
use crate::plan::{Format, Plan, TablePlan};
use crate::schema::indexes::{self, SavedIndex};
use crate::transfer::rows::RowCounter;
use crate::transfer::sessions::{self, Cancels, LaneConnection, Losses, Session, DEST, SOURCE};
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

/// One try at one table, or at one piece of a split table.
#[derive(Clone, Copy, Debug)]
struct Job {
    /// The table's index in the plan.
    index: usize,
    /// The piece, for a split table.
    piece: Option<usize>,
    /// 1 for the first try.
    attempt: u32,
    /// Unique per try, so a writer can tell its reader to stop this try and not another.
    ticket: usize,
}

/// The units still to try: new ones in plan order, and failed ones waiting for a retry.
struct Jobs {
    /// Every unit of work: a table's plan index, and the piece for a split table.
    units: Vec<(usize, Option<usize>)>,
    next: usize,
    retries: Vec<(Job, Instant)>,
    /// Units without a final outcome yet: while any is in flight, a retry may still come.
    unfinished: usize,
    tickets: usize,
}

/// How the pieces of a split table went so far.
struct SplitProgress {
    /// Pieces without a final outcome yet.
    left: usize,
    /// Pieces this run copies, and of those copied.
    pieces: usize,
    copied: usize,
    rows: u64,
    bytes: u64,
    started: Instant,
    attempts: u32,
    /// The first piece that failed for good.
    error: Option<anyhow::Error>,
}

/// What a reader lane does next.
enum Next {
    Run(Job),
    /// A retry is waiting for its time, or a table in flight may still need one.
    Wait,
    Done,
}

struct Shared<'a> {
    plan: &'a Plan,
    settings: &'a Settings,
    counters: &'a Counters,
    quit: &'a Stop,
    jobs: Mutex<Jobs>,
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
    // Every reader and every writer blocks on I/O for its whole life, so each gets a thread
    // of its own: a reader must never wait for a writer that has no thread to run on.
    let threads = rayon::ThreadPoolBuilder::new()
        .num_threads(lanes.len() * 2)
        .thread_name(|i| {
            format!(
                "pgcopy-{}-{}",
                if i % 2 == 0 { "read" } else { "write" },
                i / 2
            )
        })
        .build()
        .context("starting the copy threads")?;
    let mut outcomes: Vec<Option<TableOutcome>> = (0..plan.tables.len()).map(|_| None).collect();
    let mut splits: Vec<Option<SplitProgress>> = (0..plan.tables.len()).map(|_| None).collect();
    let mut units = Vec::new();
    for (index, table) in plan.tables.iter().enumerate() {
        let Some(split) = &table.split else {
            units.push((index, None));
            continue;
        };
        if !split.started() {
            let emptied = dest
                .get()
                .context("connecting to the destination")
                .and_then(|mut client| write::empty_for_pieces(settings, table, &mut client));
            if let Err(err) = emptied {
                log::error!("{} failed: {}", table.name, describe(&err));
                outcomes[index] = Some(TableOutcome {
                    pieces: split.pieces.len(),
                    ..TableOutcome::failed(err)
                });
                counters.tables_done.fetch_add(1, Ordering::SeqCst);
                continue;
            }
        }
        let left: Vec<usize> = (0..split.pieces.len())
            .filter(|&piece| !split.done[piece])
            .collect();
        splits[index] = Some(SplitProgress {
            left: left.len(),
            pieces: split.pieces.len(),
            copied: split.pieces.len() - left.len(),
            rows: 0,
            bytes: 0,
            started: Instant::now(),
            attempts: 0,
            error: None,
        });
        units.extend(left.into_iter().map(|piece| (index, Some(piece))));
    }
    let shared = Shared {
        plan,
        settings,
        counters,
        quit,
        jobs: Mutex::new(Jobs {
            unfinished: units.len(),
            units,
            next: 0,
            retries: Vec::new(),
            tickets: 0,
        }),
        outcomes: Mutex::new(outcomes),
        splits: Mutex::new(splits),
        lane_errors: Mutex::new(Vec::new()),
        threads_done: AtomicUsize::new(0),
        losses: [AtomicUsize::new(0), AtomicUsize::new(0)],
    };
    threads.in_place_scope(|scope| {
        for lane in &lanes {
            let (chunks_tx, chunks_rx) = bounded(CHANNEL_DEPTH);
            let (conn_tx, conn_rx) = bounded(1);
            let shared = &shared;
            scope.spawn(move |_| {
                reader_lane(shared, lane, source, dest, chunks_tx, conn_tx);
                shared.threads_done.fetch_add(1, Ordering::SeqCst);
            });
            scope.spawn(move |_| {
                writer_lane(shared, lane, dest, chunks_rx, conn_rx);
                shared.threads_done.fetch_add(1, Ordering::SeqCst);
            });
        }
        let mut cancelled = false;
        while shared.threads_done.load(Ordering::SeqCst) < lanes.len() * 2 {
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
    fn next_job(&self) -> Next {
        let Ok(mut jobs) = self.jobs.lock() else {
            return Next::Done;
        };
        let now = Instant::now();
        if let Some(ready) = jobs.retries.iter().position(|(_, at)| *at <= now) {
            let (mut job, _) = jobs.retries.remove(ready);
            job.ticket = jobs.tickets;
            jobs.tickets += 1;
            return Next::Run(job);
        }
        if let Some(&(index, piece)) = jobs.units.get(jobs.next) {
            let job = Job {
                index,
                piece,
                attempt: 1,
                ticket: jobs.tickets,
            };
            jobs.next += 1;
            jobs.tickets += 1;
            return Next::Run(job);
        }
        if jobs.unfinished > 0 {
            Next::Wait
        } else {
            Next::Done
        }
    }

    fn retry_later(&self, job: Job, wait: Duration) {
        if let Ok(mut jobs) = self.jobs.lock() {
            let next = Job {
                attempt: job.attempt + 1,
                ..job
            };
            jobs.retries.push((next, Instant::now() + wait));
        }
    }

    /// Records a unit's final outcome: a whole table's, or a piece's (`piece_done`).
    fn unit_done(&self) {
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.unfinished = jobs.unfinished.saturating_sub(1);
        }
    }

    /// A whole table's final outcome.
    fn finish(&self, index: usize, outcome: TableOutcome) {
        self.table_done(index, outcome);
        self.unit_done();
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
        self.unit_done();
        finished
    }

    /// A table's final outcome.
    fn table_done(&self, index: usize, outcome: TableOutcome) {
        if outcome.error.is_none() {
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

/// Takes tables from the plan one after another and streams each to the lane's writer.
/// It opens the lane's two connections first, so a lane that cannot connect takes no table.
fn reader_lane(
    shared: &Shared,
    lane: &Lane,
    source: &ReaderPool,
    dest: &Pool,
    chunks: Sender<Msg>,
    dest_conn: Sender<Option<PooledClient>>,
) {
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
    loop {
        if shared.quit.requested() {
            break;
        }
        let job = match shared.next_job() {
            Next::Run(job) => job,
            Next::Wait => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            Next::Done => break,
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

/// Streams one table, or one piece of it, out of the source snapshot; returns the number of
/// rows sent.
fn read_table(
    shared: &Shared,
    lane: &Lane,
    job: Job,
    table: &TablePlan,
    conn: &mut wire::Connection,
    chunks: &Sender<Msg>,
) -> Result<u64> {
    let batch_size = shared.settings.batch_size;
    conn.reset().context("ending the last source transaction")?;
    let mut begin = shared.settings.snapshot.begin_sql();
    if table.format == Format::Text {
        begin = format!("{begin}; {TEXT_SETTINGS}");
    }
    conn.execute(&begin)
        .context("importing the source snapshot")?;
    conn.execute(&table.lock_sql())
        .map_err(|err| table.lock_failed(err))?;
    let sql = table.copy_out_sql(job.piece);
    log::debug!("source: {sql}");
    let mut counter = RowCounter::new(table.format == Format::Binary);
    let mut chunk = Vec::with_capacity(batch_size);
    let mut send = |chunk: Vec<u8>| -> Result<()> {
        let before = counter.rows();
        counter.feed(&chunk)?;
        shared
            .counters
            .rows
            .fetch_add(counter.rows() - before, Ordering::Relaxed);
        if lane.abandon.load(Ordering::SeqCst) == job.ticket {
            bail!("stopped reading because the destination failed");
        }
        if shared.quit.requested() {
            bail!("stopped: {}", shared.quit.reason());
        }
        chunks
            .send(Msg::Chunk(chunk))
            .map_err(|_| anyhow!("the destination writer stopped"))
    };
    conn.copy_out(&sql, |mut data| {
        while !data.is_empty() {
            let take = data.len().min(batch_size - chunk.len());
            chunk.extend_from_slice(&data[..take]);
            data = &data[take..];
            if chunk.len() == batch_size {
                send(std::mem::replace(
                    &mut chunk,
                    Vec::with_capacity(batch_size),
                ))?;
            }
        }
        Ok(())
    })
    .context("reading from the source")?;
    if !chunk.is_empty() {
        send(chunk)?;
    }
    let rows = counter.finish()?;
    conn.execute("COMMIT")
        .context("ending the source transaction")?;
    Ok(rows)
}

/// Writes each table its reader announces, and records how it went.
fn writer_lane(
    shared: &Shared,
    lane: &Lane,
    dest: &Pool,
    chunks: Receiver<Msg>,
    conn: Receiver<Option<PooledClient>>,
) {
    let Ok(Some(client)) = conn.recv() else {
        return;
    };
    let mut session = Session::new(DEST, dest, client, &shared.losses);
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
                    complete_split(shared, job.index, progress, &mut session.client);
                }
            }
            Ok(write::Loaded { rows, filenode }) => {
                log::debug!(
                    "copied {} ({rows} rows, {})",
                    table.name,
                    crate::units::format_bytes(incoming.bytes)
                );
                let elapsed = started.elapsed();
                let analyzed = (shared.settings.analyze && !shared.quit.requested())
                    .then(|| write::give_statistics(&mut session.client, table));
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
                shared.retry_later(job, wait);
            }
            Err(err) if job.piece.is_some() => {
                log::error!("{what} failed: {}", describe(&err));
                if let Some(progress) = shared.piece_done(job, incoming.bytes, Err(err)) {
                    complete_split(shared, job.index, progress, &mut session.client);
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
    }
}

/// Completes a split table once its last piece is done: its file and `ANALYZE` when every
/// piece was copied, and its outcome.
fn complete_split(
    shared: &Shared,
    index: usize,
    progress: SplitProgress,
    client: &mut postgres::Client,
) {
    let table = &shared.plan.tables[index];
    let base = TableOutcome {
        rows: progress.rows,
        bytes: progress.bytes,
        elapsed: progress.started.elapsed(),
        error: None,
        attempts: progress.attempts,
        analyzed: None,
        filenode: 0,
        pieces: progress.pieces,
        pieces_copied: progress.copied,
    };
    // The indexes dropped before the first piece come back whatever became of the pieces.
    let rebuilt = if table.indexes.is_empty() {
        Ok(())
    } else {
        let saved: Vec<SavedIndex> = table
            .indexes
            .iter()
            .map(|i| SavedIndex::new(&table.name, i))
            .collect();
        match indexes::rebuild_missing(client, &saved) {
            (left, _) if left.is_empty() => {
                if let Ok(mut rebuilt) = shared.counters.indexes_rebuilt.lock() {
                    rebuilt.push(index);
                }
                Ok(())
            }
            (_, problems) => Err(anyhow!(problems.join("; "))),
        }
    };
    let error = match (progress.error, rebuilt) {
        (Some(err), _) => Some(err),
        (None, Err(err)) => Some(err),
        (None, Ok(())) => None,
    };
    let outcome = match error {
        Some(err) => TableOutcome {
            error: Some(err.context(format!(
                "{} of {} pieces were copied and committed; the table holds their rows \
                 (copy again, or with --resume for the pieces left)",
                progress.copied, progress.pieces
            ))),
            ..base
        },
        None => match write::filenode(client, table) {
            Ok(filenode) => TableOutcome {
                filenode,
                analyzed: (shared.settings.analyze && !shared.quit.requested())
                    .then(|| write::give_statistics(client, table)),
                ..base
            },
            Err(err) => TableOutcome {
                error: Some(err.context("reading the loaded table's file")),
                ..base
            },
        },
    };
    if outcome.error.is_none() {
        log::debug!(
            "copied {} in {} pieces ({} rows)",
            table.name,
            progress.pieces,
            outcome.rows
        );
    }
    shared.table_done(index, outcome);
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
