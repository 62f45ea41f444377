//! One copied table's chunks as the registry holds them: each chunk's range, its condition
//! and where its read is; which chunk holds a key; and a chunk added from the destination's
//! record.

use super::super::keys::{Key, Kind, Range};
use super::super::visibility::Snapshot;
use super::super::Recorded;
use super::{Decision, Inner};
use crate::pg::server::parse_lsn;
use anyhow::{bail, Context, Result};

/// Where a chunk's read is.
#[derive(Debug)]
pub(super) enum Read {
    /// Not read yet: its snapshot is taken after every change left to it so far.
    Unread,
    /// Being read; `required`, the transactions changes were left to chunks not read yet
    /// for, up to when it began: its snapshot must see them; `seen`, its snapshot and
    /// horizon once taken (a try again takes a later one, which sees what this one saw).
    Reading {
        required: Vec<u32>,
        seen: Option<(Snapshot, u64)>,
    },
    /// Loaded on the destination, read in `snapshot`; transactions committed at `horizon`
    /// or after are not in it.
    Recorded { snapshot: Snapshot, horizon: u64 },
}

#[derive(Debug)]
pub(super) struct Chunk {
    /// `None` for a table read whole.
    pub(super) range: Option<Range>,
    /// Its rows, as `WHERE …`; empty for a table read whole.
    pub(super) condition: String,
    pub(super) read: Read,
}

impl Chunk {
    /// What becomes of a change by `xid`, committed at `commit`, to a row this chunk holds;
    /// `ready`: the chunk's table may take changes where its chunks are loaded.
    pub(super) fn decide(&self, xid: u32, commit: u64, ready: bool) -> Decision {
        let (snapshot, horizon, loaded) = match &self.read {
            Read::Unread => return Decision::Skip,
            Read::Reading { seen: None, .. } => return Decision::Wait,
            Read::Reading {
                seen: Some((snapshot, horizon)),
                ..
            } => (snapshot, *horizon, false),
            Read::Recorded { snapshot, horizon } => (snapshot, *horizon, true),
        };
        if commit < horizon && snapshot.sees(xid) {
            // In its rows, loaded or being loaded: nothing to wait for.
            Decision::Skip
        } else if loaded && ready {
            Decision::Apply
        } else {
            Decision::Wait
        }
    }
}

#[derive(Debug)]
pub(super) struct Table {
    /// The key columns the ranges follow, and how each orders (empty: read whole).
    pub(super) key: Vec<(String, Kind)>,
    /// In the order of their ranges, which do not overlap.
    pub(super) chunks: Vec<Chunk>,
    /// Every chunk is loaded and the table complete on the destination: what takes a
    /// lock its loads would wait for (a TRUNCATE, an identity column's value changed)
    /// applies.
    pub(super) whole: bool,
    /// Its indexes were dropped for the load, built again after its last chunk: changes
    /// to its chunks loaded wait until then (else each would scan the table for its row).
    pub(super) rebuilt: bool,
}

impl Table {
    /// The chunk whose range holds `key` (the one chunk of a table read whole).
    pub(super) fn holding(&self, key: Option<&Key>) -> Option<&Chunk> {
        let Some(key) = key else {
            return self.chunks.first().filter(|c| c.range.is_none());
        };
        let after = self.chunks.partition_point(|c| {
            c.range
                .as_ref()
                .is_some_and(|r| r.low.as_ref() <= Some(key))
        });
        let chunk = self.chunks.get(after.checked_sub(1)?)?;
        chunk
            .range
            .as_ref()
            .is_some_and(|r| r.contains(key))
            .then_some(chunk)
    }

    /// Whether changes to its loaded chunks apply now.
    pub(super) fn ready(&self) -> bool {
        self.whole || !self.rebuilt
    }

    pub(super) fn recorded(&self) -> bool {
        self.chunks
            .iter()
            .all(|c| matches!(c.read, Read::Recorded { .. }))
    }
}

/// Adds one recorded chunk.
pub(super) fn add(inner: &mut Inner, record: Recorded) -> Result<()> {
    let what = || format!("the chunk of {} recorded", record.table);
    let (key, range) = match &record.range {
        None => (Vec::new(), None),
        Some((columns, range)) => {
            let kinds = range
                .types
                .iter()
                .map(|t| Kind::of(t).with_context(|| format!("{}: a key of type {t}", what())))
                .collect::<Result<Vec<Kind>>>()?;
            let parse = |values: &Option<Vec<String>>| -> Result<Option<Key>> {
                values
                    .as_ref()
                    .map(|values| {
                        values
                            .iter()
                            .zip(&kinds)
                            .map(|(value, kind)| kind.parse(value))
                            .collect::<Result<Key>>()
                    })
                    .transpose()
            };
            let range = Range {
                low: parse(&range.low).with_context(what)?,
                high: parse(&range.high).with_context(what)?,
            };
            (columns.iter().cloned().zip(kinds).collect(), Some(range))
        }
    };
    let read = match &record.seen {
        Some(seen) => {
            let horizon = parse_lsn(&seen.horizon).with_context(what)?;
            inner.last = inner.last.max(horizon);
            Read::Recorded {
                snapshot: Snapshot::parse(&seen.snapshot).with_context(what)?,
                horizon,
            }
        }
        None => Read::Unread,
    };
    let described = what();
    let table = inner.tables.entry(record.table).or_insert_with(|| Table {
        key: key.clone(),
        chunks: Vec::new(),
        whole: false,
        rebuilt: false,
    });
    if table.key != key {
        bail!("{described}: its chunks follow different keys");
    }
    table.chunks.push(Chunk {
        range,
        condition: record.condition,
        read,
    });
    Ok(())
}
