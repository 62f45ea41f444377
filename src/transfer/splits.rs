//! The lanes' side of tables copied in pieces (see `plan::pieces`): the units of work a plan
//! makes, each split table emptied (and its indexes dropped) before the lanes start; how its
//! pieces went; and completing it after its last piece — its indexes built again, each on a
//! session of its own at once, then its statistics.

use crate::pg::error::describe;
use crate::pg::pool::Pool;
use crate::plan::{Plan, TablePlan};
use crate::schema::indexes::{self, SavedIndex};
use crate::transfer::write;
use crate::transfer::{Counters, Settings, TableOutcome};
use anyhow::{anyhow, Context};
use postgres::Client;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long completing a split table waits for a spare session to build an index on.
const SPARE_SESSION_WAIT: Duration = Duration::from_millis(500);

/// How the pieces of a split table went so far.
pub(crate) struct SplitProgress {
    /// Pieces without a final outcome yet.
    pub(crate) left: usize,
    /// Pieces of the table, and of those copied (by this run or the one it resumes).
    pub(crate) pieces: usize,
    pub(crate) copied: usize,
    pub(crate) rows: u64,
    pub(crate) bytes: u64,
    pub(crate) started: Instant,
    pub(crate) attempts: u32,
    /// The first piece that failed for good.
    pub(crate) error: Option<anyhow::Error>,
}

/// The work of a plan for the lanes.
pub(crate) struct Units {
    /// A table's plan index, and the piece for a split table.
    pub(crate) units: Vec<(usize, Option<usize>)>,
    /// Outcomes known before the lanes start: split tables that could not be emptied.
    pub(crate) outcomes: Vec<Option<TableOutcome>>,
    /// Per table, how its pieces go, for split tables.
    pub(crate) splits: Vec<Option<SplitProgress>>,
}

/// The units of work of `plan`, after emptying each split table an earlier run did not
/// start (and dropping its indexes), in a transaction of its own.
pub(crate) fn units(plan: &Plan, settings: &Settings, dest: &Pool, counters: &Counters) -> Units {
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
    Units {
        units,
        outcomes,
        splits,
    }
}

/// A split table completed.
pub(crate) struct Completed {
    pub(crate) outcome: TableOutcome,
    /// Its indexes are back: the state file needs them no more.
    pub(crate) rebuilt_indexes: bool,
}

/// Completes a split table once its last piece is done: its indexes built again whatever
/// became of the pieces, then, when every piece was copied, its file and its statistics.
pub(crate) fn complete(
    table: &TablePlan,
    progress: SplitProgress,
    client: &mut Client,
    dest: &Pool,
    statistics: bool,
) -> Completed {
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
    let problems = rebuild_indexes(table, client, dest);
    let rebuilt_indexes = problems.is_empty();
    let error = match (progress.error, problems.is_empty()) {
        (Some(err), _) => Some(err.context(format!(
            "{} of {} pieces were copied and committed; the table holds their rows \
             (copy again, or with --resume for the pieces left)",
            progress.copied, progress.pieces
        ))),
        (None, false) => Some(anyhow!(problems.join("; "))),
        (None, true) => None,
    };
    let outcome = match error {
        Some(err) => TableOutcome {
            error: Some(err),
            ..base
        },
        None => match write::filenode(client, table) {
            Ok(filenode) => TableOutcome {
                filenode,
                analyzed: statistics.then(|| write::give_statistics(client, table)),
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
    Completed {
        outcome,
        rebuilt_indexes,
    }
}

/// Builds the table's dropped indexes again, as pgcopydb does: each in a transaction of its
/// own, on as many sessions at once as the pool can spare (`CREATE INDEX` takes a lock that
/// does not conflict with itself). An index that backs a primary key or a unique constraint
/// is attached to it in its transaction (`ALTER TABLE … ADD CONSTRAINT … USING INDEX`, an
/// exclusive lock): two of those side by side would each wait for the other's build to
/// end, a deadlock, so they take turns, beside the plain builds. Returns what failed; those
/// stay in the state file.
fn rebuild_indexes(table: &TablePlan, client: &mut Client, dest: &Pool) -> Vec<String> {
    let queue: Mutex<Vec<(SavedIndex, bool)>> = Mutex::new(
        table
            .indexes
            .iter()
            .rev()
            .map(|i| (SavedIndex::new(&table.name, i), i.constraint.is_some()))
            .collect(),
    );
    // Sessions the lanes do not need; none spare soon, fewer builds at once.
    let extras: Vec<_> = (1..table.indexes.len())
        .map_while(|_| dest.get_timeout(SPARE_SESSION_WAIT).ok())
        .collect();
    let at_once = extras.len() + 1;
    let problems = Mutex::new(Vec::new());
    let attaching = Mutex::new(());
    let work = |client: &mut Client| {
        while let Some((index, attaches)) = queue.lock().ok().and_then(|mut q| q.pop()) {
            let turn = attaches.then(|| attaching.lock());
            let (_, failed) =
                indexes::rebuild_missing(client, std::slice::from_ref(&index), at_once);
            drop(turn);
            if let Ok(mut problems) = problems.lock() {
                problems.extend(failed);
            }
        }
    };
    std::thread::scope(|scope| {
        for mut extra in extras {
            let work = &work;
            scope.spawn(move || work(&mut extra));
        }
        work(client);
    });
    problems.into_inner().unwrap_or_default()
}
