//! The follower's side of the chunked copy (`plan::chunks`): each change of a copied table
//! decided by the chunk that holds its row (`plan::chunks::registry`), while the copy goes on
//! or from the destination's record of it once it is over; the source's rows a key update
//! between chunks left values out of; and TRUNCATEs. A transaction the chunk's snapshot saw
//! is in the chunk's rows, and is left; any other is applied onto them, in commit order, as
//! onto a copy made in one snapshot (`plan::chunks::visibility`).

use crate::pg::sql::{quote_ident, TableName, TEXT_SETTINGS};
use crate::pg::target::Target;
use crate::plan::chunks;
use crate::plan::chunks::keys::{Key, Kind};
use crate::plan::chunks::registry::Registry;
pub(crate) use crate::plan::chunks::registry::{Decision, Truncation};
use crate::replication::decode::{Lsn, Value};
use crate::replication::slot::LsnText;
use anyhow::{bail, Context, Result};
use postgres::Client;
use std::collections::HashMap;
use std::sync::Arc;

/// The copied tables' chunks, as the copy goes on or as the destination recorded them.
#[derive(Default)]
pub(crate) struct Chunks {
    registry: Arc<Registry>,
    /// The key columns each copied table's ranges follow (empty: read whole).
    keys: HashMap<TableName, Vec<(String, Kind)>>,
    /// The source, for the rows `fetch` looks up, and the session opened to it for the
    /// first (rarely any: a key update between chunks that left a TOASTed value).
    source: Option<Target>,
    session: Option<Client>,
}

impl Chunks {
    /// What the destination recorded for the follower of `slot`, whose copy is over;
    /// `source` is where `fetch` reads.
    pub(crate) fn load(dest: &mut Client, slot: &str, source: Target) -> Result<Chunks> {
        let registry = Registry::new(chunks::load(dest, slot, true)?, true)?;
        let chunks = Chunks::sharing(Arc::new(registry), source);
        let (tables, last) = chunks.registry.extent();
        if tables > 0 {
            log::debug!(
                "{tables} tables were copied in chunks; the stream's changes to them are \
                 decided by the chunks' snapshots up to {}",
                LsnText(last)
            );
        }
        Ok(chunks)
    }

    /// The chunks of a copy going on, as its lanes read them.
    pub(crate) fn sharing(registry: Arc<Registry>, source: Target) -> Chunks {
        Chunks {
            keys: registry.keys(),
            registry,
            source: Some(source),
            session: None,
        }
    }

    /// Whether changes of `table` committed at `commit` are decided by chunks.
    pub(crate) fn decides(&self, table: &TableName, commit: Lsn) -> bool {
        self.registry.decides(table, commit)
    }

    /// Waits until `table` is whole on the destination (see `Truncation::Wait`).
    pub(crate) fn wait(&self, table: &TableName) -> Result<()> {
        self.registry.wait(Some(table))
    }

    /// Waits until the chunk of `table` holding `key` is loaded (see `Decision::Wait`).
    pub(crate) fn wait_read(&self, table: &TableName, key: Option<&Key>) -> Result<()> {
        self.registry.wait_read(table, key)
    }

    /// The key of a row of `table`, from its values as the stream sent them in the order of
    /// `columns` (the table's description); `None` for a table read whole.
    pub(crate) fn key_of(
        &self,
        table: &TableName,
        columns: &[&str],
        values: &[Value],
    ) -> Result<Option<Key>> {
        let Some(known) = self.keys.get(table).filter(|k| !k.is_empty()) else {
            return Ok(None);
        };
        let mut key = Key::with_capacity(known.len());
        for (name, kind) in known {
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
        self.registry.decide(table, key, xid, commit)
    }

    /// The row of `table` with `key` on the source now, as text in the order of `columns`;
    /// `None` where the source has no such row any more.
    pub(crate) fn fetch(
        &mut self,
        table: &TableName,
        columns: &[&str],
        key: &Key,
    ) -> Result<Option<Vec<Option<String>>>> {
        let known = self.keys.get(table).context("not a copied table")?;
        let select: Vec<String> = columns
            .iter()
            .map(|c| format!("{}::text", quote_ident(c)))
            .collect();
        let condition: Vec<String> = known
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
        self.registry.truncation(table, xid, commit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::chunks::{Recorded, Seen};
    use crate::plan::pieces::KeyRange;

    #[test]
    fn a_rows_key_is_read_from_its_values_in_the_streams_order() {
        let recorded = Recorded {
            table: TableName::new("public", "t"),
            range: Some((
                vec!["id".into()],
                KeyRange {
                    types: vec!["bigint".into()],
                    low: None,
                    high: None,
                },
            )),
            condition: "WHERE true".into(),
            seen: Some(Seen {
                snapshot: "5:5:".into(),
                horizon: "0/10".into(),
            }),
        };
        let registry = Arc::new(Registry::new(vec![recorded], true).unwrap());
        let chunks = Chunks {
            keys: registry.keys(),
            registry,
            source: None,
            session: None,
        };
        let t = TableName::new("public", "t");
        let columns = ["name", "id"];
        let values = [Value::Null, Value::Text(b"-7".to_vec())];
        assert_eq!(
            chunks.key_of(&t, &columns, &values).unwrap(),
            Some(vec![crate::plan::chunks::keys::Part::Int(-7)])
        );
        assert!(chunks
            .key_of(&t, &columns, &[Value::Null, Value::Null])
            .is_err());
        let other = TableName::new("public", "u");
        assert_eq!(chunks.key_of(&other, &columns, &values).unwrap(), None);
    }
}
