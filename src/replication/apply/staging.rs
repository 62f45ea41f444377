//! The net changes held back (see `net`): a change folds into what is staged of its table
//! where the table's folding allows, and what is staged is sent per table as deletes, then
//! updates, then inserts, many rows to a statement or a run of them as one `COPY`.

use super::parts::present;
use super::sql::{copy_rows, copy_sql, update_columns, Shape};
use super::state::{Applier, Folding, What};
use crate::replication::decode::{Message, Old, Value};
use crate::replication::net;
use anyhow::Result;

/// Rows one multi-row `INSERT` takes at most (and fewer for wide tables: a statement takes
/// at most 65,535 parameters).
const INSERT_ROWS: usize = 100;

/// A run of at least this many inserts into one table goes as one `COPY`, where folding
/// may send them together: fewer go as multi-row inserts, whose statements are prepared.
const COPY_ROWS: usize = 16;

impl Applier<'_> {
    /// The key of the row a change is to, when the change folds into what is staged: an
    /// insert, an update that keeps the key, a delete by key; only an insert where rows are
    /// not folded by key, under a number of its own.
    pub(super) fn net_key(
        &mut self,
        relation: u32,
        folding: Folding,
        kind: u8,
        message: &Message,
    ) -> Option<Vec<Value>> {
        if folding == Folding::Inserts {
            if kind != b'I' {
                return None;
            }
            self.inserts += 1;
            return Some(vec![Value::Binary(self.inserts.to_le_bytes().to_vec())]);
        }
        let values = match message {
            Message::Insert { new, .. } | Message::Update { new, old: None, .. } => new,
            Message::Delete {
                old: Old::Key(old), ..
            } => old,
            _ => return None,
        };
        let columns = &self.known[&relation].target.relation.columns;
        let key: Vec<Value> = columns
            .iter()
            .zip(values)
            .filter(|(c, _)| c.key)
            .map(|(_, v)| v.clone())
            .collect();
        if key.is_empty()
            || key
                .iter()
                .any(|v| matches!(v, Value::Unchanged | Value::Null))
        {
            return None;
        }
        let accepts = self
            .staged
            .get(&relation)
            .is_none_or(|rows| rows.accepts(&key, kind));
        accepts.then_some(key)
    }

    /// Sends the staged net changes, of one table or of all: per table the deletes, the
    /// updates, then the inserts, many rows to a statement.
    pub(super) fn send_staged(&mut self, only: Option<u32>) -> Result<()> {
        if self.staged_rows == 0 {
            return Ok(());
        }
        let mut staged = std::mem::take(&mut self.staged);
        for (relation, rows) in &mut staged {
            if rows.is_empty() || only.is_some_and(|only| only != *relation) {
                continue;
            }
            let drained = rows.drain();
            let relation = *relation;
            let (generation, keys, width) = {
                let columns = &self.known[&relation].target.relation.columns;
                let keys: Vec<bool> = columns.iter().map(|c| c.key).collect();
                (self.known[&relation].generation, keys, columns.len())
            };
            let all_key = vec![true; keys.iter().filter(|k| **k).count()];
            for key in drained.deletes {
                let shape = Shape {
                    relation,
                    generation,
                    kind: b'D',
                    set: Vec::new(),
                    matched: keys.clone(),
                    guard: Vec::new(),
                    rows: 1,
                };
                self.queue(shape, &present(&key, &all_key)?)?;
                self.expect(1, What::Row(relation, b'D', key))?;
            }
            for (key, values) in drained.updates {
                // The key kept its value: a folded update never changes it.
                let (set, guard) = update_columns(&self.known[&relation].target, &values, None);
                let mut params = present(&values, &set)?;
                params.extend(present(&key, &all_key)?);
                params.extend(present(&values, &guard)?);
                let shape = Shape {
                    relation,
                    generation,
                    kind: b'U',
                    set,
                    matched: keys.clone(),
                    guard,
                    rows: 1,
                };
                self.queue(shape, &params)?;
                self.expect(1, What::Row(relation, b'U', key))?;
            }
            if drained.inserts.len() >= COPY_ROWS {
                let target = &self.known[&relation].target;
                let (sql, name) = (copy_sql(target), target.name.to_string());
                self.session
                    .queue_copy_in(&sql, &copy_rows(&drained.inserts)?)?;
                let rows = drained.inserts.len();
                let what = format!("one of {rows} rows copied into {name}");
                self.expect(rows as u64, What::Statement(what))?;
                continue;
            }
            let batch = INSERT_ROWS.min(65_535 / width.max(1)).max(1);
            let set = vec![true; width];
            for chunk in drained.inserts.chunks(batch) {
                let mut params = Vec::with_capacity(chunk.len() * width);
                for values in chunk {
                    params.extend(present(values, &set)?);
                }
                let shape = Shape {
                    relation,
                    generation,
                    kind: b'I',
                    set: set.clone(),
                    matched: Vec::new(),
                    guard: Vec::new(),
                    rows: chunk.len(),
                };
                self.queue(shape, &params)?;
                let what = format!(
                    "one of {} rows inserted into {}",
                    chunk.len(),
                    self.known[&relation].target.name
                );
                self.expect(chunk.len() as u64, What::Statement(what))?;
            }
        }
        // The tables' maps are kept, emptied, for the next rows.
        self.staged_rows = staged.values().map(net::Rows::len).sum();
        self.staged = staged;
        Ok(())
    }
}
