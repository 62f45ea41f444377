//! The applier's side of the chunked copy: a change of a copied table, committed before the
//! last chunk's snapshot, goes through `replication::chunks` first. It applies as it is
//! where the chunk holding its row did not see it, and not at all where it did; a key update
//! that moves a row between a chunk that saw it and one that did not applies as the half
//! the destination lacks (the old row deleted, or the new one inserted, its unchanged
//! TOASTed values read from the source). A TRUNCATE empties only the chunks read before it.
//! While the copy goes on, a change a chunk being read did not see waits until the chunk is
//! loaded (and its table whole, where its indexes are built again), and a TRUNCATE until its
//! table is whole on the destination.

use super::parts::parts;
use super::state::Applier;
use crate::pg::sql::TableName;
use crate::plan::chunks::keys::Key;
use crate::replication::chunks::{Decision, Truncation};
use crate::replication::decode::{Message, Old, Value};
use anyhow::{bail, Context, Result};

impl Applier<'_> {
    /// `message` as it applies onto the chunks' rows: itself, one half of a key update, or
    /// `None` where the chunk holding its row has it already.
    pub(super) fn through_chunks(&mut self, message: Message) -> Result<Option<Message>> {
        let Some(parts) = parts(&message) else {
            bail!("not a change of rows");
        };
        let known = &self.known[&parts.relation];
        let table = known.target.name.clone();
        if !self.chunks.decides(&table, self.final_lsn) {
            return Ok(Some(message));
        }
        let columns: Vec<String> = known
            .target
            .relation
            .columns
            .iter()
            .map(|c| c.name.clone())
            .collect();
        let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
        let (xid, at) = (self.xid, self.final_lsn);
        let chunks = &self.chunks;
        // Whether the destination holds the row with this key (from its chunk, or as the
        // changes applied since made it), and must get this change.
        let place = |values: &[Value]| -> Result<(Option<Key>, Decision)> {
            let key = chunks.key_of(&table, &columns, values)?;
            let decision = chunks.decide(&table, key.as_ref(), xid, at)?;
            Ok((key, decision))
        };
        let absent = |key: &Option<Key>| {
            key.as_ref()
                .is_some_and(|k| self.absent.contains(&(table.clone(), k.clone())))
        };
        let (old, new) = match &message {
            Message::Insert { new, .. } => (None, Some(place(new)?)),
            Message::Delete { old, .. } => (Some(place(values(old))?), None),
            Message::Update { old: None, new, .. } => (Some(place(new)?), Some(place(new)?)),
            Message::Update {
                old: Some(old),
                new,
                ..
            } => (Some(place(values(old))?), Some(place(new)?)),
            _ => return Ok(Some(message)),
        };
        let waits: Vec<&Option<Key>> = [&old, &new]
            .into_iter()
            .flatten()
            .filter(|(_, d)| *d == Decision::Wait)
            .map(|(key, _)| key)
            .collect();
        if !waits.is_empty() {
            let keys: Vec<Option<Key>> = waits.into_iter().cloned().collect();
            self.commit_before_waiting()?;
            for key in keys {
                self.chunks.wait_read(&table, key.as_ref())?;
            }
            return self.through_chunks(message);
        }
        let apply = |side: Option<(Option<Key>, Decision)>| {
            side.map(|(key, decision)| (key, decision == Decision::Apply))
        };
        let (old, new) = (apply(old), apply(new));
        let moved = matches!((&old, &new), (Some((a, _)), Some((b, _))) if a != b);
        let lacking = old.as_ref().is_some_and(|(key, _)| absent(key));
        let forget = |applier: &mut Self, key: &Option<Key>| {
            if let Some(key) = key {
                applier.absent.remove(&(table.clone(), key.clone()));
            }
        };
        Ok(match (message, old, new) {
            (message @ Message::Insert { .. }, None, Some((key, true))) => {
                forget(self, &key);
                Some(message)
            }
            (message @ Message::Delete { .. }, Some((key, true)), None) => {
                forget(self, &key);
                (!lacking).then_some(message)
            }
            (message @ Message::Update { .. }, Some((_, true)), Some(_)) if !moved => {
                (!lacking).then_some(message)
            }
            (
                Message::Update { relation, old, new },
                Some((old_key, before)),
                Some((key, after)),
            ) if moved => {
                let before = before && !lacking;
                forget(self, &old_key);
                match (before, after) {
                    (true, true) => Some(Message::Update { relation, old, new }),
                    (false, false) => None,
                    // The row moved out of a chunk read before the update into one read
                    // after it: the destination keeps it at its old key.
                    (true, false) => old.map(|old| Message::Delete { relation, old }),
                    // From a chunk read after the update into one read before: the
                    // destination lacks it at either key.
                    (false, true) => self.moved_in(relation, &table, &columns, key, new)?,
                }
            }
            _ => None,
        })
    }

    /// The insert of a row a key update moved into a chunk read before it, whose old row
    /// the destination never had: the new row as the stream sent it, with the TOASTed
    /// values it left out (unchanged) read from the source. `None` where the source has no
    /// such row any more: a later change deleted it or moved it on, and the changes of its
    /// key up to that one are left too.
    fn moved_in(
        &mut self,
        relation: u32,
        table: &TableName,
        columns: &[&str],
        key: Option<Key>,
        mut new: Vec<Value>,
    ) -> Result<Option<Message>> {
        if new.iter().any(|v| matches!(v, Value::Unchanged)) {
            let key = key.context("a key update of a table read whole")?;
            match self.chunks.fetch(table, columns, &key)? {
                Some(now) => {
                    for (value, fetched) in new.iter_mut().zip(now) {
                        if matches!(value, Value::Unchanged) {
                            *value = fetched.map_or(Value::Null, |t| Value::Text(t.into_bytes()));
                        }
                    }
                }
                None => {
                    self.absent.insert((table.clone(), key));
                    return Ok(None);
                }
            }
        }
        Ok(Some(Message::Insert { relation, new }))
    }

    /// Commits the transactions the open group holds whole before this one waits for a
    /// chunk, if nothing of this one is queued yet: what was applied is recorded, and its
    /// locks go, while the wait lasts. The group goes on in a new destination transaction.
    fn commit_before_waiting(&mut self) -> Result<()> {
        if self.group.open && self.group.transactions > 0 && self.changes_queued == 0 {
            self.commit_group()?;
            self.begin()?;
        }
        Ok(())
    }

    /// How a TRUNCATE of `table` in the transaction being applied applies (see `chunks`),
    /// once its chunks can tell.
    pub(super) fn truncation(&mut self, table: &TableName) -> Result<Truncation> {
        if !self.chunks.decides(table, self.final_lsn) {
            return Ok(Truncation::Whole);
        }
        match self.chunks.truncation(table, self.xid, self.final_lsn) {
            Truncation::Wait => {
                self.commit_before_waiting()?;
                self.chunks.wait(table)?;
                self.truncation(table)
            }
            truncation => Ok(truncation),
        }
    }
}

fn values(old: &Old) -> &[Value] {
    match old {
        Old::Key(values) | Old::Row(values) => values,
    }
}
