//! The follower's side of the chunked copy (`plan::chunks`): every copied table and chunk
//! with the snapshot it was read in, from the destination's record; and, for each change
//! of a copied table, whether the chunk that holds its row already has it. A transaction
//! the chunk's snapshot saw is in the chunk's rows, and is left; any other is applied onto
//! them, in commit order, as onto a copy made in one snapshot (`plan::chunks::visibility`).

use crate::pg::sql::{quote_ident, TableName, TEXT_SETTINGS};
use crate::pg::target::Target;
use crate::plan::chunks::keys::{Key, Kind, Range};
use crate::plan::chunks::visibility::Snapshot;
use crate::plan::chunks::{self, Recorded};
use crate::replication::decode::{Lsn, Value};
use crate::replication::slot::parse_lsn;
use anyhow::{bail, Context, Result};
use postgres::Client;
use std::collections::HashMap;

/// What becomes of one change, or of one side of a key update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Applied: the chunk's snapshot did not see it.
    Apply,
    /// Left: the chunk's rows have it.
    Skip,
}

/// One chunk read.
#[derive(Debug)]
struct Chunk {
    /// `None` for a table read whole.
    range: Option<Range>,
    /// Its rows, as `WHERE …`; empty for a table read whole.
    condition: String,
    snapshot: Snapshot,
    /// Transactions committed at this WAL position or after are not in its snapshot.
    horizon: Lsn,
}

impl Chunk {
    fn decide(&self, xid: u32, commit: Lsn) -> Decision {
        if commit < self.horizon && self.snapshot.sees(xid) {
            Decision::Skip
        } else {
            Decision::Apply
        }
    }
}

/// A copied table's chunks.
#[derive(Debug)]
struct Table {
    /// The key columns the ranges follow, and how each orders (empty: read whole).
    key: Vec<(String, Kind)>,
    /// In the order of their ranges, which do not overlap.
    chunks: Vec<Chunk>,
}

impl Table {
    /// The chunk whose range holds `key` (the one chunk of a table read whole).
    fn holding(&self, key: Option<&Key>) -> Option<&Chunk> {
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
}

/// The copied tables, as the destination recorded their chunks.
#[derive(Default)]
pub(crate) struct Chunks {
    tables: HashMap<TableName, Table>,
    /// The latest horizon of any chunk: past it, every change applies.
    last: Lsn,
    /// The source, for the rows `fetch` looks up, and the session opened to it for the
    /// first (rarely any: a key update between chunks that left a TOASTed value).
    source: Option<Target>,
    session: Option<Client>,
}

/// How a TRUNCATE of a copied table applies.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Truncation {
    /// To the whole table: no chunk saw it.
    Whole,
    /// To the rows of these chunks (`WHERE …` conditions) only: the others were read after
    /// it, and hold what was inserted since.
    Ranges(Vec<String>),
    /// Not at all: every chunk was read after it.
    None,
}

impl Chunks {
    /// What the destination recorded for the follower of `slot`; `source` is where `fetch`
    /// reads.
    pub(crate) fn load(dest: &mut Client, slot: &str, source: Target) -> Result<Chunks> {
        let mut chunks = Chunks {
            source: Some(source),
            ..Chunks::default()
        };
        let left: Vec<String> = chunks::counts(dest, slot)?
            .into_iter()
            .filter(|(_, done, all)| done < all)
            .map(|(table, done, all)| format!("{table} ({done} of {all})"))
            .collect();
        if !left.is_empty() {
            bail!(
                "the initial copy did not copy every chunk of {}: `pgcopy copy --follow \
                 --resume` copies them",
                left.join(", ")
            );
        }
        for recorded in chunks::load(dest, slot)? {
            chunks.add(recorded)?;
        }
        chunks.sort();
        if !chunks.tables.is_empty() {
            log::debug!(
                "{} tables were copied in chunks; the stream's changes to them are decided by \
                 the chunks' snapshots up to {}",
                chunks.tables.len(),
                crate::replication::slot::LsnText(chunks.last)
            );
        }
        Ok(chunks)
    }

    /// Puts each table's chunks in the order of their ranges, for `Table::holding`.
    fn sort(&mut self) {
        for table in self.tables.values_mut() {
            table.chunks.sort_by(|a, b| {
                let low = |c: &Chunk| c.range.as_ref().map(|r| r.low.clone());
                low(a).cmp(&low(b))
            });
        }
    }

    fn add(&mut self, recorded: Recorded) -> Result<()> {
        let what = || format!("the chunk of {} recorded", recorded.table);
        let (key, range) = match &recorded.range {
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
        let horizon = parse_lsn(&recorded.seen.horizon).with_context(what)?;
        let snapshot = Snapshot::parse(&recorded.seen.snapshot).with_context(what)?;
        let described = what();
        self.last = self.last.max(horizon);
        let table = self.tables.entry(recorded.table).or_insert_with(|| Table {
            key: key.clone(),
            chunks: Vec::new(),
        });
        if table.key != key {
            bail!("{described}: its chunks follow different keys");
        }
        table.chunks.push(Chunk {
            range,
            condition: recorded.condition,
            snapshot,
            horizon,
        });
        Ok(())
    }

    /// Whether changes of `table` committed at `commit` are decided by chunks.
    pub(crate) fn decides(&self, table: &TableName, commit: Lsn) -> bool {
        commit < self.last && self.tables.contains_key(table)
    }

    /// The key of a row of `table`, from its values as the stream sent them in the order of
    /// `columns` (the table's description); `None` for a table read whole.
    pub(crate) fn key_of(
        &self,
        table: &TableName,
        columns: &[&str],
        values: &[Value],
    ) -> Result<Option<Key>> {
        let Some(known) = self.tables.get(table).filter(|t| !t.key.is_empty()) else {
            return Ok(None);
        };
        let mut key = Key::with_capacity(known.key.len());
        for (name, kind) in &known.key {
            let position = columns
                .iter()
                .position(|c| c == name)
                .with_context(|| format!("{table}: the stream has no column {name}"))?;
            match values.get(position) {
                Some(Value::Text(text)) => key.push(kind.parse(&String::from_utf8_lossy(text))?),
                _ => bail!("{table}: a change without a value of its key column {name}"),
            }
        }
        Ok(Some(key))
    }

    /// What to do with a change to the row of `table` with `key` (`None`: a table read
    /// whole) by the transaction `xid`, committed at `commit`.
    pub(crate) fn decide(
        &self,
        table: &TableName,
        key: Option<&Key>,
        xid: u32,
        commit: Lsn,
    ) -> Result<Decision> {
        let Some(known) = self.tables.get(table) else {
            return Ok(Decision::Apply);
        };
        match known.holding(key) {
            Some(chunk) => Ok(chunk.decide(xid, commit)),
            None => bail!(
                "{table}: no chunk recorded holds the row {key:?}: its initial copy is not \
                 whole"
            ),
        }
    }

    /// The row of `table` with `key` on the source now, as text in the order of `columns`;
    /// `None` where the source has no such row any more.
    pub(crate) fn fetch(
        &mut self,
        table: &TableName,
        columns: &[&str],
        key: &Key,
    ) -> Result<Option<Vec<Option<String>>>> {
        let known = self.tables.get(table).context("not a copied table")?;
        let select: Vec<String> = columns
            .iter()
            .map(|c| format!("{}::text", quote_ident(c)))
            .collect();
        let condition: Vec<String> = known
            .key
            .iter()
            .enumerate()
            .map(|(i, (name, kind))| {
                let type_name = match kind {
                    Kind::Int => "bigint",
                    Kind::Uuid => "uuid",
                };
                format!("{} = ${}::text::{type_name}", quote_ident(name), i + 1)
            })
            .collect();
        let sql = format!(
            "SELECT {} FROM ONLY {} WHERE {}",
            select.join(", "),
            table.quoted(),
            condition.join(" AND ")
        );
        let texts: Vec<String> = key.iter().map(|part| part.to_text()).collect();
        let params: Vec<&(dyn postgres::types::ToSql + Sync)> = texts
            .iter()
            .map(|t| t as &(dyn postgres::types::ToSql + Sync))
            .collect();
        if self.session.is_none() {
            let target = self.source.as_ref().context("no source to read from")?;
            self.session = Some(target.connect()?);
        }
        let source = self
            .session
            .as_mut()
            .context("no source session to read from")?;
        let mut tx = source.transaction()?;
        tx.batch_execute(TEXT_SETTINGS)?;
        let row = tx
            .query_opt(&sql, &params)
            .with_context(|| format!("reading a row of {table} on the source"))?;
        tx.commit()?;
        Ok(row.map(|row| (0..columns.len()).map(|i| row.get(i)).collect()))
    }

    /// How a TRUNCATE of `table` by the transaction `xid`, committed at `commit`, applies.
    pub(crate) fn truncation(&self, table: &TableName, xid: u32, commit: Lsn) -> Truncation {
        let Some(known) = self.tables.get(table) else {
            return Truncation::Whole;
        };
        let unseen: Vec<&Chunk> = known
            .chunks
            .iter()
            .filter(|chunk| chunk.decide(xid, commit) == Decision::Apply)
            .collect();
        if unseen.len() == known.chunks.len() {
            Truncation::Whole
        } else if unseen.is_empty() {
            Truncation::None
        } else {
            Truncation::Ranges(unseen.iter().map(|c| c.condition.clone()).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::chunks::Seen;
    use crate::plan::pieces::KeyRange;

    fn chunk(low: Option<&str>, high: Option<&str>, snapshot: &str, horizon: &str) -> Recorded {
        let bound = |b: Option<&str>| b.map(|b| vec![b.to_string()]);
        Recorded {
            table: TableName::new("public", "t"),
            range: Some((
                vec!["id".into()],
                KeyRange {
                    types: vec!["bigint".into()],
                    low: bound(low),
                    high: bound(high),
                },
            )),
            condition: format!("WHERE id >= {}", low.unwrap_or("-1")),
            seen: Seen {
                snapshot: snapshot.into(),
                horizon: horizon.into(),
            },
        }
    }

    #[test]
    fn decides_by_the_snapshot_of_the_chunk_that_holds_the_row() {
        let mut chunks = Chunks::default();
        // Read before transaction 105 committed, and after; recorded in any order.
        chunks
            .add(chunk(Some("100"), None, "106:106:", "0/200"))
            .unwrap();
        chunks
            .add(chunk(None, Some("100"), "105:105:", "0/100"))
            .unwrap();
        chunks.sort();
        let t = TableName::new("public", "t");
        let key = |n: i64| Some(vec![crate::plan::chunks::keys::Part::Int(n)]);
        let decide = |n, xid, at| chunks.decide(&t, key(n).as_ref(), xid, at).unwrap();
        assert_eq!(
            decide(5, 105, 0x90),
            Decision::Apply,
            "not seen by the first"
        );
        assert_eq!(decide(500, 105, 0x90), Decision::Skip, "seen by the second");
        assert_eq!(decide(500, 104, 0x80), Decision::Skip);
        assert_eq!(decide(500, 106, 0x190), Decision::Apply);
        assert_eq!(
            decide(500, 105, 0x200),
            Decision::Apply,
            "at the horizon: after"
        );
        assert_eq!(
            decide(100, 105, 0x90),
            Decision::Skip,
            "a low bound is in its range"
        );
        assert_eq!(decide(99, 105, 0x90), Decision::Apply);
        assert!(chunks.decides(&t, 0x1ff) && !chunks.decides(&t, 0x200));
        assert_eq!(
            chunks.truncation(&t, 105, 0x90),
            Truncation::Ranges(vec!["WHERE id >= -1".into()])
        );
        assert_eq!(chunks.truncation(&t, 106, 0x190), Truncation::Whole);
        assert_eq!(chunks.truncation(&t, 100, 0x10), Truncation::None);
        let columns = ["name", "id"];
        let values = [Value::Null, Value::Text(b"-7".to_vec())];
        assert_eq!(chunks.key_of(&t, &columns, &values).unwrap(), key(-7));
    }
}
