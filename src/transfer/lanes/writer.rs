//! A lane's writer: it loads each unit its reader announces into the destination from the
//! chunks that follow, and records how it went (retried, failed, or copied and analyzed).

use super::lane::{Lane, Msg, IDLE};
use super::shared::Shared;
use crate::pg::error::{self, describe};
use crate::pg::pool::{Pool, PooledClient};
use crate::transfer::sessions::{Session, DEST};
use crate::transfer::splits::SplitProgress;
use crate::transfer::write::{self, Piece};
use crate::transfer::TableOutcome;
use anyhow::{bail, Context, Result};
use crossbeam_channel::{Receiver, Sender};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Writes each table its reader announces, and records how it went; tells the reader each
/// time it is ready for the next.
pub(super) fn writer_lane(
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
                piece,
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
                log::debug!(table:% = table.name, rows = loaded.rows; "copied {what} ({} rows)", loaded.rows);
                if let Some(progress) = shared.piece_done(job, incoming.bytes, Ok(loaded)) {
                    if let Err(unsent) = finished.send((job.index, progress)) {
                        let (index, progress) = unsent.into_inner();
                        shared.complete_split(index, progress, &mut session.client, dest);
                    }
                }
            }
            Ok(write::Loaded { rows, filenode }) => {
                log::debug!(
                    table:% = table.name, rows, bytes = incoming.bytes;
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
                    table:% = table.name, attempt = job.attempt;
                    "{what}: {}; trying again in {} (try {} of {})",
                    describe(&err),
                    crate::units::format_duration(wait),
                    job.attempt + 1,
                    shared.settings.retries + 1
                );
                shared.schedule.retry_later(job, wait);
            }
            Err(err) if job.piece.is_some() => {
                log::error!(table:% = table.name; "{what} failed: {}", describe(&err));
                if let Some(progress) = shared.piece_done(job, incoming.bytes, Err(err)) {
                    if let Err(unsent) = finished.send((job.index, progress)) {
                        let (index, progress) = unsent.into_inner();
                        shared.complete_split(index, progress, &mut session.client, dest);
                    }
                }
            }
            Err(err) => {
                log::error!(table:% = table.name; "{what} failed: {}", describe(&err));
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
