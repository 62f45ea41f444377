//! The statements' pipeline on the destination session: each statement prepared once per
//! shape and executed with its parameters, or run once; queued without waiting for answers
//! and synced every few hundred, each answer checked for the rows its statement must touch,
//! and a failed one said in words.

use super::parts::{key_text, match_columns, parts, Parts};
use super::sql::{statement_sql, Shape};
use super::state::{Applier, Expect, What};
use crate::replication::decode::{Column, Relation};
use anyhow::{anyhow, bail, Result};

/// Statements queued before their answers are read.
pub(super) const SYNC_EVERY: usize = 500;

impl Applier<'_> {
    /// Records what the statement just queued must do, and reads the answers when enough
    /// are queued.
    pub(super) fn expect(&mut self, rows: u64, what: What) -> Result<()> {
        self.queued.push(Expect {
            rows: Some(rows),
            what,
        });
        if self.queued.len() >= SYNC_EVERY {
            self.sync()?;
        }
        Ok(())
    }

    /// What a queued statement was, in words.
    fn say(&self, what: &What) -> String {
        let message = match what {
            What::Statement(text) => return text.clone(),
            What::Row(relation, kind, key) => {
                let Some(known) = self.known.get(relation) else {
                    return "a change".into();
                };
                let verb = if *kind == b'U' {
                    "the update of"
                } else {
                    "the delete from"
                };
                let matched = vec![true; key.len()];
                let relation = &known.target.relation;
                let columns: Vec<Column> =
                    relation.columns.iter().filter(|c| c.key).cloned().collect();
                let keyed = Relation {
                    columns,
                    ..relation.clone()
                };
                let table = &known.target.name;
                return format!("{verb} {table} {}", key_text(&keyed, key, &matched));
            }
            What::Change(message) => message,
        };
        let Some(Parts {
            relation, kind, by, ..
        }) = parts(message)
        else {
            return "a change".into();
        };
        let verb = match kind {
            b'I' => "the insert into",
            b'U' | b'u' => "the update of",
            _ => "the delete from",
        };
        let full = kind.is_ascii_lowercase();
        let Some(known) = self.known.get(&relation) else {
            return "a change".into();
        };
        let (table, relation) = (&known.target.name, &known.target.relation);
        match by {
            None => format!("{verb} {table}"),
            Some(values) => {
                let matched = match_columns(relation, values, full);
                let key = key_text(relation, values, &matched);
                format!("{verb} {table} {key}")
            }
        }
    }

    /// Sends one execution of a change's statement, preparing it the first time its shape is
    /// seen.
    pub(super) fn queue(&mut self, shape: Shape, params: &[Option<&[u8]>]) -> Result<()> {
        let name = match self.statements.get(&shape) {
            Some(name) => name.clone(),
            None => {
                let known = &self.known[&shape.relation];
                let (sql, types) = statement_sql(&known.target, &shape)?;
                let name = format!("pgcopy_{}", self.statements.len());
                self.session.queue_prepare_typed(&name, &sql, &types)?;
                self.statements.insert(shape, name.clone());
                name
            }
        };
        self.session.queue_execute(&name, params)
    }

    /// Queues a statement that is run once, not prepared.
    pub(super) fn queue_once(
        &mut self,
        sql: &str,
        params: Option<&[Option<&[u8]>]>,
        what: String,
    ) -> Result<()> {
        self.session.queue_prepare("", sql)?;
        self.session.queue_execute("", params.unwrap_or(&[]))?;
        self.queued.push(Expect {
            rows: None,
            what: What::Statement(what),
        });
        Ok(())
    }

    /// Reads the answers to what was queued: the first statement that failed, or touched no
    /// row where it had to touch one, stops the follower, nothing of its group committed.
    pub(super) fn sync(&mut self) -> Result<()> {
        let synced = self.session.sync()?;
        let queued = std::mem::take(&mut self.queued);
        if let Some((index, error)) = synced.failed {
            let what = queued
                .get(index)
                .map_or_else(|| "a statement".into(), |e| self.say(&e.what));
            return Err(anyhow!(error).context(format!("applying {what} on the destination")));
        }
        for (expect, rows) in queued.iter().zip(&synced.rows) {
            if let Some(wanted) = expect.rows {
                if *rows != wanted {
                    bail!(
                        "the destination has no such row for {}: it changed since the copy, \
                         not through pgcopy; nothing of that source transaction was applied",
                        self.say(&expect.what)
                    );
                }
            }
        }
        Ok(())
    }
}
