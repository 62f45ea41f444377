//! What the lanes of one run share: the plan, the schedule of units, the counters and the
//! stop request, and the outcomes they record, a split table's pieces adding up to one.

use crate::pg::pool::Pool;
use crate::plan::Plan;
use crate::transfer::schedule::{Job, Schedule};
use crate::transfer::sessions::Losses;
use crate::transfer::splits::{self, SplitProgress};
use crate::transfer::write;
use crate::transfer::{Counters, ReadSnapshot, Settings, Stop, TableOutcome};
use anyhow::Result;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

pub(super) struct Shared<'a> {
    pub(super) plan: &'a Plan,
    pub(super) settings: &'a Settings,
    pub(super) counters: &'a Counters,
    pub(super) quit: &'a Stop,
    pub(super) schedule: Schedule,
    pub(super) outcomes: Mutex<Vec<Option<TableOutcome>>>,
    pub(super) splits: Mutex<Vec<Option<SplitProgress>>>,
    pub(super) lane_errors: Mutex<Vec<String>>,
    pub(super) threads_done: AtomicUsize,
    /// Sessions lost so far on either side: a server restart ends every session, and the
    /// idle ones only find out at their next statement.
    pub(super) losses: Losses,
}

impl Shared<'_> {
    /// A whole table's final outcome.
    pub(super) fn finish(&self, index: usize, outcome: TableOutcome) {
        self.table_done(index, outcome);
        self.schedule.unit_done();
    }

    /// Records a piece's final outcome. When it was the table's last, returns how the
    /// pieces went, for the caller to complete the table (`table_done`).
    pub(super) fn piece_done(
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
    pub(super) fn complete_split(
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
    pub(super) fn table_done(&self, index: usize, outcome: TableOutcome) {
        self.counters
            .bytes_done
            .fetch_add(outcome.bytes, Ordering::Relaxed);
        if outcome.error.is_none() {
            if let ReadSnapshot::EachRead { registry, .. } = &self.settings.snapshot {
                registry.complete(&self.plan.tables[index].name);
            }
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
