//! A lane's reader: it opens the lane's connections, takes the next unit once its writer
//! is ready, and streams the unit's rows from the source to the writer in chunks.

use super::lane::{Lane, Msg};
use super::shared::Shared;
use crate::pg::error::{describe, Stopped};
use crate::pg::pool::{Pool, PooledClient, ReaderPool, ReaderSessions, Sessions};
use crate::pg::wire;
use crate::plan::TablePlan;
use crate::transfer::read::{self, Read};
use crate::transfer::schedule::{Job, Next};
use crate::transfer::sessions::{LaneConnection, Session, SOURCE};
use crate::transfer::TableOutcome;
use anyhow::{anyhow, bail, Context, Result};
use crossbeam_channel::{Receiver, Sender};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// A reader's ends of the channels to its writer.
pub(super) struct LaneEnds {
    pub(super) chunks: Sender<Msg>,
    /// The destination session the reader opens for its writer (`None`: it could not).
    pub(super) dest_conn: Sender<Option<PooledClient>>,
    /// A token each time the writer is done with a unit and waits for the next.
    pub(super) writer_ready: Receiver<()>,
}

/// Takes tables from the plan one after another and streams each to the lane's writer.
/// It opens the lane's two connections first, so a lane that cannot connect takes no table.
/// It takes the next unit only once its writer is done with the last — its indexes built,
/// its statistics given: a unit taken early would wait behind that work while another lane
/// may be idle.
pub(super) fn reader_lane(
    shared: &Shared,
    lane: &Lane,
    source: &ReaderPool,
    dest: &Pool,
    ends: LaneEnds,
) {
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
            Ok(Read {
                rows: 0,
                seen: None,
            })
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

/// Streams one table, or one piece of it, to the lane's writer; returns what it sent.
/// Stops when the writer failed this try or the copy is stopping.
fn read_table(
    shared: &Shared,
    lane: &Lane,
    job: Job,
    table: &TablePlan,
    conn: &mut wire::Connection,
    chunks: &Sender<Msg>,
) -> Result<Read> {
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
