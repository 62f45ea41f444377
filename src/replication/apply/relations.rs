//! The tables the stream describes: whether each is followed, whether the source's columns
//! still fit the destination's (`table`), how its changes may fold (asked of the
//! destination's catalog: its triggers, rules and unique indexes), and its triggers switched
//! off inside a group that changes it; and the tables following takes up while it runs.

use super::state::{Applier, Folding, Known};
use super::table::{DestColumn, Target};
use crate::pg::sql::TableName;
use crate::replication::decode::Relation;
use crate::schema::triggers::Trigger;
use anyhow::{Context, Result};

/// A table following takes up while it runs (a partition or a table made since the copy):
/// published, its rows copied, and the triggers to keep quiet in it.
pub(crate) struct Joined {
    pub(crate) table: TableName,
    pub(crate) quiet: Vec<Trigger>,
}

impl Applier<'_> {
    /// Follows the tables `joined` from now on: each is published, and its rows up to the
    /// first change the stream will carry are on the destination.
    pub(super) fn join(&mut self, joined: Vec<Joined>) -> Result<()> {
        for Joined { table, quiet } in joined {
            if !quiet.is_empty() {
                self.setup.quiet.insert(table.clone(), quiet);
            }
            self.followed.insert(table.clone());
            // Described while it was not followed (it never is before it is published):
            // described again, as followed.
            let described: Vec<Relation> = self
                .known
                .values()
                .filter(|k| k.ignored && k.target.name == table)
                .map(|k| k.target.relation.clone())
                .collect();
            for relation in described {
                self.describe(relation)?;
            }
        }
        Ok(())
    }

    /// The table a change is for, unless changes to it are not applied. A change to a table
    /// the stream never described is an error in the stream.
    pub(super) fn followed_table(&self, relation: u32) -> Result<Option<&Known>> {
        let known = self
            .known
            .get(&relation)
            .with_context(|| format!("the stream changed table {relation} before describing it"))?;
        Ok((!known.ignored).then_some(known))
    }

    /// A table's description, sent before its first change and again after the source's
    /// table changed: it must still fit the destination's table, or the follower stops
    /// before it applies the transaction.
    pub(super) fn describe(&mut self, relation: Relation) -> Result<()> {
        // The changes queued so far are made and said with the description they came with.
        if self.known.contains_key(&relation.oid) {
            self.send_staged(None)?;
            if !self.queued.is_empty() {
                self.sync()?;
            }
        }
        let table = TableName::new(&relation.namespace, &relation.name);
        let ignored = !self.followed.contains(&table);
        let oid = relation.oid;
        let keyed = relation.replica_identity != b'f' && relation.columns.iter().any(|c| c.key);
        let (target, folding) = if ignored {
            let columns = vec![DestColumn::default(); relation.columns.len()];
            let target = Target {
                name: table,
                relation,
                columns,
            };
            (target, Folding::Never)
        } else {
            let folding = self.folding(&table, keyed)?;
            (Target::read(&mut self.catalog, table, relation)?, folding)
        };
        let generation = self.known.get(&oid).map_or(0, |k| k.generation + 1);
        self.known.insert(
            oid,
            Known {
                target,
                ignored,
                generation,
                folding,
            },
        );
        Ok(())
    }

    /// How a destination table's changes may be folded. Where no trigger that fires in this
    /// session and no rule sees them, nothing else does (the keys are quiet): its changes
    /// may go before or after other tables', and its inserts together (the source took
    /// them all, so they do not conflict). Where besides the row's key (`keyed`) is its
    /// only unique index, and no exclusion constraint, rows cannot see each other either:
    /// each row's net change may go in any order.
    fn folding(&mut self, table: &TableName, keyed: bool) -> Result<Folding> {
        let firing: &[&str] = if self.setup.replica {
            &["A", "R"]
        } else if self.setup.quiet.contains_key(table) {
            &[]
        } else {
            &["O", "A"]
        };
        let row = self
            .catalog
            .query_one(
                "SELECT EXISTS (SELECT FROM pg_catalog.pg_rewrite
                                 WHERE ev_class = to_regclass($1))
                     OR EXISTS (SELECT FROM pg_catalog.pg_trigger
                                 WHERE tgrelid = to_regclass($1) AND NOT tgisinternal
                                   AND tgenabled::text = ANY($2)),
                    (SELECT count(*) FROM pg_catalog.pg_index
                      WHERE indrelid = to_regclass($1) AND indisunique) <= 1
                    AND NOT EXISTS (SELECT FROM pg_catalog.pg_constraint
                                     WHERE conrelid = to_regclass($1) AND contype = 'x')",
                &[&table.quoted(), &firing],
            )
            .with_context(|| {
                format!("reading the destination's indexes and triggers of {table}")
            })?;
        let (seen, alone): (bool, bool) = (row.get(0), row.get(1));
        Ok(match (seen, keyed && alone) {
            (true, _) => Folding::Never,
            (false, true) => Folding::Rows,
            (false, false) => Folding::Inserts,
        })
    }

    /// Switches off the triggers of a table the open group changes, the first time it does.
    pub(super) fn quiet_triggers(&mut self, relation: u32) -> Result<()> {
        let Some(known) = self.known.get(&relation) else {
            return Ok(());
        };
        let table = &known.target.name;
        let Some(triggers) = self.setup.quiet.get(table) else {
            return Ok(());
        };
        if self.quieted.contains(table) {
            return Ok(());
        }
        let table = table.clone();
        let statements: Vec<String> = triggers.iter().map(|t| t.disable_sql(&table)).collect();
        for sql in statements {
            self.queue_once(&sql, None, format!("`{sql}`"))?;
        }
        self.quieted.push(table);
        Ok(())
    }
}
