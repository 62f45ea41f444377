//! Moving the rows: the lanes of readers and writers (`lanes`) and what they take next
//! (`schedule`), one table or piece out of the source (`read`) and into the destination
//! (`write`), the sessions each lane keeps (`sessions`), counting rows in the COPY stream
//! (`rows`), tables in pieces (`splits`), rewriting the fields the plan says as they pass
//! (`rewrite`: the rules' keyed masks, through `plan::reading`, never a rules type), and
//! comparing what both sides hold (`compare`). Here: what the lanes share with the main
//! thread — settings in, counters and a stop request across, outcomes out.

pub(crate) mod compare;
pub(crate) mod lanes;
pub(crate) mod read;
pub(crate) mod rewrite;
pub(crate) mod rows;
pub(crate) mod schedule;
pub(crate) mod sessions;
pub(crate) mod splits;
pub(crate) mod write;

use crate::pg::server::SnapshotId;
use crate::plan::chunks::registry::Registry;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Which snapshot each read is in.
#[derive(Clone, Debug)]
pub(crate) enum ReadSnapshot {
    /// The copy's one snapshot, exported: `SET TRANSACTION SNAPSHOT …`.
    Exported(SnapshotId),
    /// A snapshot of its own for each table or piece, held only while it is read; its
    /// writer records it, with the piece's range, in `plan::chunks`' record for this slot,
    /// in the commit that loads the rows (the chunked copy of `copy --follow`), and in the
    /// registry the follower applying the stream meanwhile decides by.
    EachRead {
        slot: String,
        registry: Arc<Registry>,
    },
}

/// What the pipe needs besides the plan.
pub(crate) struct Settings {
    pub(crate) snapshot: ReadSnapshot,
    pub(crate) batch_size: usize,
    pub(crate) parallel: usize,
    /// Writers run with `session_replication_role = replica` (`--fk-mode replica`).
    pub(crate) replica: bool,
    /// Further tries for a table that failed with a transient error.
    pub(crate) retries: u32,
    /// How long a writer waits for a lock on its table before it gives up.
    pub(crate) lock_timeout: Duration,
    /// Writers `ANALYZE` each table right after its commit, while other tables still load.
    pub(crate) analyze: bool,
}

/// Counters shared by the pipe's threads.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Bytes of the COPY streams sent so far.
    pub(crate) bytes: AtomicU64,
    /// Of those, the bytes of tables done (copied or failed).
    pub(crate) bytes_done: AtomicU64,
    /// The tables copied whole, as their data's size on disk (heap and TOAST): what the
    /// progress is measured in, the plan knowing no stream's size beforehand.
    pub(crate) disk_done: AtomicU64,
    pub(crate) rows: AtomicU64,
    pub(crate) tables_done: AtomicUsize,
    /// Plan indexes of the tables copied completely, in the order they finished, with the
    /// file each has now. Locked once per table, never per chunk.
    pub(crate) copied: Mutex<Vec<(usize, u32)>>,
    /// Pieces of split tables copied completely: plan index, piece number, and the table's
    /// file.
    pub(crate) pieces_copied: Mutex<Vec<(usize, usize, u32)>>,
    /// Split tables whose indexes were built again after their last piece: plan indexes.
    pub(crate) indexes_rebuilt: Mutex<Vec<usize>>,
}

/// Why the lanes stop taking and reading tables (an interrupt, the source snapshot lost):
/// set once, by the main thread; the tables cut short say why.
#[derive(Debug, Default)]
pub(crate) struct Stop {
    reason: OnceLock<String>,
}

impl Stop {
    /// Asks the lanes to stop; the first reason given is the one they report.
    pub(crate) fn request(&self, reason: impl Into<String>) {
        // A second reason changes nothing: the lanes are stopping already.
        let _ = self.reason.set(reason.into());
    }

    pub(crate) fn requested(&self) -> bool {
        self.reason.get().is_some()
    }

    pub(crate) fn reason(&self) -> &str {
        self.reason.get().map_or("", String::as_str)
    }
}

/// Where a loaded table's planner statistics came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StatsFrom {
    /// `ANALYZE` on the destination.
    Analyze,
    /// The source's, restored (PostgreSQL 18 destinations).
    Source,
}

/// How one table's copy ended.
#[derive(Debug)]
pub(crate) struct TableOutcome {
    pub(crate) rows: u64,
    pub(crate) bytes: u64,
    /// The time of the last try.
    pub(crate) elapsed: Duration,
    pub(crate) error: Option<anyhow::Error>,
    /// How many times the table was tried.
    pub(crate) attempts: u32,
    /// How the loaded table got its planner statistics: `None` when it was not tried, else
    /// how, or why it did not.
    pub(crate) analyzed: Option<Result<StatsFrom, String>>,
    /// The destination table's file after the load (0 when it was not loaded).
    pub(crate) filenode: u32,
    /// The pieces it was copied in (1 for a table copied whole).
    pub(crate) pieces: usize,
    /// Of those, the pieces that were copied (and committed).
    pub(crate) pieces_copied: usize,
}

impl TableOutcome {
    /// A table that was not copied, and why: the one way a failed outcome is made.
    pub(crate) fn failed(error: anyhow::Error) -> TableOutcome {
        TableOutcome {
            rows: 0,
            bytes: 0,
            elapsed: Duration::ZERO,
            error: Some(error),
            attempts: 0,
            analyzed: None,
            filenode: 0,
            pieces: 1,
            pieces_copied: 0,
        }
    }

    /// A try whose writer went away before it could say how the table went.
    pub(crate) fn lost(attempts: u32) -> TableOutcome {
        TableOutcome {
            attempts,
            ..TableOutcome::failed(anyhow::anyhow!("the destination writer stopped"))
        }
    }
}
