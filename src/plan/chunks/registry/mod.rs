//! What the chunked copy's lanes and the follower, which applies the stream while they
//! read, share: every copied table's chunks — not read yet, being read, or recorded with
//! the snapshot they were read in and the WAL position after it — and whether the table is
//! whole on the destination. The follower decides each change of a copied table by the chunk
//! holding its row (`Registry::decide`): a chunk not read yet reads the change itself, so it
//! is left; a chunk read (or being read) in a snapshot that saw it holds it, and any other
//! change of a chunk loaded applies (of a chunk being read, once it is loaded; of a table
//! whose indexes are built again, once it is whole); what takes a lock the loads of a table
//! would wait for (a TRUNCATE) waits until the table is whole. A change
//! left to a chunk not read yet must be in that chunk's snapshot: `Registry::begin` hands
//! the chunk's reader the transactions so left, which its snapshot must see
//! (`Snapshot::sees`) before it reads.

mod table;
#[cfg(test)]
mod tests;

use super::keys::{Key, Kind};
use super::visibility::Snapshot;
use super::{Recorded, Seen};
use crate::pg::server::parse_lsn;
use crate::pg::sql::TableName;
use anyhow::{bail, Result};
use std::collections::{HashMap, HashSet};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use table::{add, Chunk, Read, Table};

/// What becomes of one change, or of one side of a key update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Applied: the chunk's snapshot did not see it.
    Apply,
    /// Left: the chunk's rows have it, or its read will.
    Skip,
    /// Decided once its chunk is loaded, and its table whole if its indexes are built again
    /// after its last chunk (`Registry::wait_read`).
    Wait,
}

/// How a TRUNCATE of a copied table applies.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Truncation {
    /// To the whole table: no chunk saw it.
    Whole,
    /// To the rows of these chunks (`WHERE …` conditions) only: the others were read after
    /// it, and hold what was inserted since.
    Ranges(Vec<String>),
    /// Not at all: every chunk was read after it, or will be.
    None,
    /// Decided once the table is whole on the destination.
    Wait,
}

#[derive(Debug, Default)]
struct Inner {
    tables: HashMap<TableName, Table>,
    /// Transactions a change of which was left to a chunk not read yet, that no snapshot
    /// taken since is known to see.
    left: HashSet<u32>,
    /// The latest horizon of any chunk recorded.
    last: u64,
    /// The copy is over: every table is whole, and past `last` every change applies.
    done: bool,
    /// Why the copy stopped before it was over, if it did.
    stopped: Option<String>,
}

/// The chunks of one follower's copy, shared by its lanes and its applier.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    inner: Mutex<Inner>,
    changed: Condvar,
}

impl Registry {
    /// The chunks recorded on the destination, read (with their snapshot) or not yet
    /// (`seen` is `None`). A table whose chunks were all read is whole; with `done`, the
    /// copy is over (and every chunk must have been read).
    pub(crate) fn new(records: Vec<Recorded>, done: bool) -> Result<Registry> {
        let mut inner = Inner {
            done,
            ..Inner::default()
        };
        for record in records {
            add(&mut inner, record)?;
        }
        for (name, table) in &mut inner.tables {
            table.chunks.sort_by(|a, b| {
                let low = |c: &Chunk| c.range.as_ref().map(|r| r.low.clone());
                low(a).cmp(&low(b))
            });
            table.whole = table.recorded();
            if done && !table.whole {
                let read = table
                    .chunks
                    .iter()
                    .filter(|c| matches!(c.read, Read::Recorded { .. }))
                    .count();
                bail!(
                    "the initial copy did not copy every chunk of {name} ({read} of {}): \
                     `pgcopy copy --follow --resume` copies them",
                    table.chunks.len()
                );
            }
        }
        Ok(Registry {
            inner: Mutex::new(inner),
            changed: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The copied tables and the key columns each one's ranges follow (empty: read whole).
    pub(crate) fn keys(&self) -> HashMap<TableName, Vec<(String, Kind)>> {
        self.lock()
            .tables
            .iter()
            .map(|(name, table)| (name.clone(), table.key.clone()))
            .collect()
    }

    /// How many tables were copied in chunks, and the latest horizon of any chunk.
    pub(crate) fn extent(&self) -> (usize, u64) {
        let inner = self.lock();
        (inner.tables.len(), inner.last)
    }

    /// A reader begins the chunk of `table` with `condition`: returns the transactions its
    /// snapshot must see (those whose changes were left to it, and to others, before now).
    /// A try after a failed one must see the same.
    pub(crate) fn begin(&self, table: &TableName, condition: &str) -> Vec<u32> {
        let mut inner = self.lock();
        let left: Vec<u32> = inner.left.iter().copied().collect();
        let Some(chunk) = inner
            .tables
            .get_mut(table)
            .and_then(|t| t.chunks.iter_mut().find(|c| c.condition == condition))
        else {
            return Vec::new();
        };
        match &chunk.read {
            Read::Unread => {
                chunk.read = Read::Reading {
                    required: left.clone(),
                    seen: None,
                };
                left
            }
            Read::Reading { required, .. } => required.clone(),
            Read::Recorded { .. } => Vec::new(),
        }
    }

    /// The reader of the chunk of `table` with `condition` took its snapshot, which saw
    /// every transaction it must (`begin`), with `horizon` the WAL position after it: the
    /// changes it saw are left at once. Every snapshot a chunk not begun yet takes is later,
    /// and sees what this one sees too.
    pub(crate) fn taken(
        &self,
        table: &TableName,
        condition: &str,
        snapshot: &Snapshot,
        horizon: &str,
    ) -> Result<()> {
        let horizon = parse_lsn(horizon)?;
        let mut inner = self.lock();
        inner.left.retain(|xid| !snapshot.sees(*xid));
        if let Some(Read::Reading { seen, .. }) = inner
            .tables
            .get_mut(table)
            .and_then(|t| t.chunks.iter_mut().find(|c| c.condition == condition))
            .map(|c| &mut c.read)
        {
            *seen = Some((snapshot.clone(), horizon));
        }
        Ok(())
    }

    /// The chunk of `table` with `condition` is loaded on the destination, read as `seen`.
    pub(crate) fn recorded(&self, table: &TableName, condition: &str, seen: &Seen) -> Result<()> {
        let snapshot = Snapshot::parse(&seen.snapshot)?;
        let horizon = parse_lsn(&seen.horizon)?;
        let mut inner = self.lock();
        inner.last = inner.last.max(horizon);
        if let Some(chunk) = inner
            .tables
            .get_mut(table)
            .and_then(|t| t.chunks.iter_mut().find(|c| c.condition == condition))
        {
            chunk.read = Read::Recorded { snapshot, horizon };
        }
        self.changed.notify_all();
        Ok(())
    }

    /// `table` is complete on the destination, if every chunk of it is loaded.
    pub(crate) fn complete(&self, table: &TableName) {
        let mut inner = self.lock();
        if let Some(table) = inner.tables.get_mut(table) {
            table.whole = table.recorded();
        }
        self.changed.notify_all();
    }

    /// The copy is over, every table whole on the destination.
    pub(crate) fn finish(&self) {
        let mut inner = self.lock();
        inner.done = true;
        for table in inner.tables.values_mut() {
            table.whole = true;
        }
        self.changed.notify_all();
    }

    /// The copy stopped before it was over, `why`: what waits for it fails.
    pub(crate) fn stop(&self, why: &str) {
        self.lock().stopped.get_or_insert_with(|| why.to_string());
        self.changed.notify_all();
    }

    /// Whether the copy is over.
    pub(crate) fn done(&self) -> bool {
        self.lock().done
    }

    /// Whether the copy stopped before it was over.
    pub(crate) fn stopped(&self) -> bool {
        self.lock().stopped.is_some()
    }

    /// Waits until `table` is whole on the destination (or, with `None`, the whole copy is
    /// over); fails if the copy stopped first.
    pub(crate) fn wait(&self, table: Option<&TableName>) -> Result<()> {
        self.until(|inner| match table {
            Some(table) => inner.tables.get(table).is_none_or(|t| t.whole),
            None => inner.done,
        })
    }

    /// Waits until `ready` holds of what the lanes recorded; fails if the copy stopped
    /// first.
    fn until(&self, ready: impl Fn(&Inner) -> bool) -> Result<()> {
        let mut inner = self.lock();
        loop {
            if ready(&inner) {
                return Ok(());
            }
            if let Some(why) = &inner.stopped {
                bail!("the initial copy stopped: {why}");
            }
            inner = self
                .changed
                .wait_timeout(inner, Duration::from_secs(1))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// The tables whose indexes are dropped for the load and built again after their last
    /// chunk: changes to their chunks wait until then.
    pub(crate) fn rebuilt<'a>(&self, tables: impl IntoIterator<Item = &'a TableName>) {
        let mut inner = self.lock();
        for name in tables {
            if let Some(table) = inner.tables.get_mut(name) {
                table.rebuilt = true;
            }
        }
    }

    /// Waits until a change to the row of `table` with `key` can be decided (see
    /// `Decision::Wait`): its chunk loaded, and its table whole if its indexes are built
    /// again; fails if the copy stopped first.
    pub(crate) fn wait_read(&self, table: &TableName, key: Option<&Key>) -> Result<()> {
        self.until(|inner| {
            inner.tables.get(table).is_none_or(|t| {
                t.holding(key)
                    .is_none_or(|c| !matches!(c.read, Read::Reading { .. }))
                    && t.ready()
            })
        })
    }

    /// Whether changes of `table` committed at `commit` are decided by its chunks.
    pub(crate) fn decides(&self, table: &TableName, commit: u64) -> bool {
        let inner = self.lock();
        inner.tables.contains_key(table) && (!inner.done || commit < inner.last)
    }

    /// What to do with a change to the row of `table` with `key` (`None`: a table read
    /// whole) by the transaction `xid`, committed at `commit`. A change left to a chunk not
    /// read yet is one its snapshot must see.
    pub(crate) fn decide(
        &self,
        table: &TableName,
        key: Option<&Key>,
        xid: u32,
        commit: u64,
    ) -> Result<Decision> {
        let mut inner = self.lock();
        let Some(known) = inner.tables.get(table) else {
            return Ok(Decision::Apply);
        };
        let Some(chunk) = known.holding(key) else {
            bail!("{table}: no chunk holds the row {key:?}: its initial copy is not whole");
        };
        let decision = chunk.decide(xid, commit, known.ready());
        if matches!(chunk.read, Read::Unread) {
            inner.left.insert(xid);
        }
        Ok(decision)
    }

    /// How a TRUNCATE of `table` by the transaction `xid`, committed at `commit`, applies.
    pub(crate) fn truncation(&self, table: &TableName, xid: u32, commit: u64) -> Truncation {
        let mut inner = self.lock();
        let Some(known) = inner.tables.get(table) else {
            return Truncation::Whole;
        };
        if !known.whole {
            return Truncation::Wait;
        }
        let decisions: Vec<Decision> = known
            .chunks
            .iter()
            .map(|chunk| chunk.decide(xid, commit, true))
            .collect();
        let unread = known.chunks.iter().any(|c| matches!(c.read, Read::Unread));
        let truncation = if decisions.iter().all(|d| *d == Decision::Apply) {
            Truncation::Whole
        } else if !decisions.contains(&Decision::Apply) {
            Truncation::None
        } else {
            Truncation::Ranges(
                known
                    .chunks
                    .iter()
                    .zip(&decisions)
                    .filter(|(_, d)| **d == Decision::Apply)
                    .map(|(c, _)| c.condition.clone())
                    .collect(),
            )
        };
        if unread {
            inner.left.insert(xid);
        }
        truncation
    }
}
