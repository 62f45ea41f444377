//! Destination indexes that are faster built once after a table's load than maintained row
//! by row during it. They are dropped and built again inside the table's own load
//! transaction, so a failure, an interrupt or a crash rolls them back with the rows: like
//! the triggers, there is nothing for a later recovery to put back. A table copied in
//! pieces is the exception: its indexes are dropped when it is emptied, before the first
//! piece, and built after the last; meanwhile the state file holds the statements that
//! build them (`SavedIndex`), for the run's end or a later recovery.

use crate::pg::sql::{name_arrays, quote_ident, quote_literal, TableName};
use anyhow::{Context, Result};
use postgres::{Client, GenericClient};
use std::collections::HashMap;
use std::time::Duration;

/// `--indexes`: what to do with the destination's indexes during the load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IndexMode {
    /// Indexes stay and are maintained as rows arrive.
    Keep,
    /// Indexes are dropped before the load and built after it.
    Rebuild,
    /// `Rebuild` for tables of at least `AUTO_REBUILD_BYTES`, `Keep` for smaller ones, where
    /// dropping and creating costs more than it saves.
    Auto,
}

/// From this much source data up, `auto` rebuilds a table's indexes. Measured with a
/// primary key on PostgreSQL 15: rebuilding took 0.14 s against 0.23 s for a 4 MiB table and
/// 1.16 s against 1.48 s for 128 MiB; at 368 KiB both took the same.
pub(crate) const AUTO_REBUILD_BYTES: u64 = 1024 * 1024;

impl std::str::FromStr for IndexMode {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<IndexMode> {
        Ok(match text {
            "keep" => IndexMode::Keep,
            "rebuild" => IndexMode::Rebuild,
            "auto" => IndexMode::Auto,
            other => anyhow::bail!("unknown --indexes {other:?}: use keep, rebuild or auto"),
        })
    }
}

impl IndexMode {
    /// Whether a table with this much data gets its indexes rebuilt.
    pub(crate) fn rebuilds(self, data_bytes: u64) -> bool {
        match self {
            IndexMode::Keep => false,
            IndexMode::Rebuild => true,
            IndexMode::Auto => data_bytes >= AUTO_REBUILD_BYTES,
        }
    }
}

/// An index to build again after the load, exactly as it was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Index {
    /// The index's own name (in the table's schema).
    pub(crate) name: String,
    /// `pg_get_indexdef()`: method, columns, expressions, `INCLUDE`, `WHERE`, storage
    /// parameters and tablespace.
    pub(crate) definition: String,
    /// The primary key or unique constraint the index backs: its name, `p` or `u`, and
    /// `DEFERRABLE …` if it is.
    pub(crate) constraint: Option<(String, char, String)>,
    pub(crate) comment: Option<String>,
    /// The comment on the constraint (not the index), which dropping the constraint loses.
    pub(crate) constraint_comment: Option<String>,
    /// The tablespace the index is in, when it is not the database's default
    /// (`pg_get_indexdef` leaves it out).
    pub(crate) tablespace: Option<String>,
    pub(crate) clustered: bool,
    /// Columns (by number) given their own statistics target, `ALTER INDEX … ALTER COLUMN n
    /// SET STATISTICS t`: expression columns, whose statistics `ANALYZE` gathers.
    pub(crate) statistics: Vec<(i32, i32)>,
}

impl Index {
    pub(crate) fn drop_sql(&self, table: &TableName) -> String {
        match &self.constraint {
            Some((name, _, _)) => format!(
                "ALTER TABLE {} DROP CONSTRAINT {}",
                table.quoted(),
                quote_ident(name)
            ),
            None => format!(
                "DROP INDEX {}.{}",
                quote_ident(&table.schema),
                quote_ident(&self.name)
            ),
        }
    }

    /// The statements that build the index and give it back its constraint, comment and
    /// clustering. A constraint comes back through `ADD CONSTRAINT … USING INDEX`, so the
    /// index keeps every detail `pg_get_indexdef` knows of.
    pub(crate) fn create_sql(&self, table: &TableName) -> Vec<String> {
        let mut sql = Vec::new();
        match &self.tablespace {
            // As pg_dump does: the definition has no TABLESPACE clause to put it in.
            Some(space) => sql.extend([
                format!("SET LOCAL default_tablespace = {}", quote_ident(space)),
                self.definition.clone(),
                "SET LOCAL default_tablespace = ''".to_string(),
            ]),
            None => sql.push(self.definition.clone()),
        }
        let qualified = format!("{}.{}", quote_ident(&table.schema), quote_ident(&self.name));
        if let Some((name, kind, deferrable)) = &self.constraint {
            let kind = if *kind == 'p' {
                "PRIMARY KEY"
            } else {
                "UNIQUE"
            };
            sql.push(
                format!(
                    "ALTER TABLE {} ADD CONSTRAINT {} {kind} USING INDEX {} {deferrable}",
                    table.quoted(),
                    quote_ident(name),
                    quote_ident(&self.name)
                )
                .trim_end()
                .to_string(),
            );
            if let Some(comment) = &self.constraint_comment {
                sql.push(format!(
                    "COMMENT ON CONSTRAINT {} ON {} IS {}",
                    quote_ident(name),
                    table.quoted(),
                    quote_literal(comment)
                ));
            }
        }
        if let Some(comment) = &self.comment {
            sql.push(format!(
                "COMMENT ON INDEX {qualified} IS {}",
                quote_literal(comment)
            ));
        }
        if self.clustered {
            sql.push(format!(
                "ALTER TABLE {} CLUSTER ON {}",
                table.quoted(),
                quote_ident(&self.name)
            ));
        }
        for (column, target) in &self.statistics {
            sql.push(format!(
                "ALTER INDEX {qualified} ALTER COLUMN {column} SET STATISTICS {target}"
            ));
        }
        sql
    }
}

/// An index dropped outside a load transaction, as the state file keeps it: where it
/// belongs and the statements that build it again exactly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SavedIndex {
    pub(crate) table: TableName,
    pub(crate) name: String,
    pub(crate) statements: Vec<String>,
}

impl SavedIndex {
    pub(crate) fn new(table: &TableName, index: &Index) -> SavedIndex {
        SavedIndex {
            table: table.clone(),
            name: index.name.clone(),
            statements: index.create_sql(table),
        }
    }
}

/// Builds the saved indexes that are missing (by name, in their table's schema), each
/// table's in one transaction with `build_settings`. Returns those still missing
/// afterwards, and why.
pub(crate) fn rebuild_missing(
    client: &mut Client,
    saved: &[SavedIndex],
    at_once: usize,
) -> (Vec<SavedIndex>, Vec<String>) {
    let mut left = Vec::new();
    let mut problems = Vec::new();
    let mut tables: Vec<&TableName> = saved.iter().map(|s| &s.table).collect();
    tables.dedup();
    for table in tables {
        let mine: Vec<&SavedIndex> = saved.iter().filter(|s| &s.table == table).collect();
        let result = (|| -> Result<()> {
            let mut tx = client.transaction()?;
            tx.batch_execute(&build_settings(at_once))?;
            for index in &mine {
                if !exists(&mut tx, index)? {
                    for sql in &index.statements {
                        log::debug!("destination: {sql}");
                        tx.batch_execute(sql)?;
                    }
                }
            }
            tx.commit()?;
            Ok(())
        })();
        if let Err(err) = result {
            problems.push(format!(
                "the indexes of {table} could not be built again: {}; they are recorded in \
                 the state file for `pgcopy recover`",
                crate::pg::error::describe(&err)
            ));
            left.extend(mine.into_iter().cloned());
        }
    }
    (left, problems)
}

/// The least `maintenance_work_mem` an index build gets: more memory, fewer sort passes.
const INDEX_BUILD_MEMORY: &str = "256MB";

/// What a transaction that builds indexes sets first: memory for the sorts — at least
/// `INDEX_BUILD_MEMORY`, or the server's own `maintenance_work_mem` where it is larger (an
/// operator who gave builds 2 GB on a big server meant it) — and parallel workers sized to
/// what is free: the server's `max_parallel_workers` shared among the `at_once` builds that
/// may run side by side, each leader counted as one of them.
pub(crate) fn build_settings(at_once: usize) -> String {
    format!(
        "SELECT set_config('maintenance_work_mem',
                greatest(pg_catalog.pg_size_bytes(current_setting('maintenance_work_mem')),
                         pg_catalog.pg_size_bytes('{INDEX_BUILD_MEMORY}')) / 1024 || 'kB',
                true),
                set_config('max_parallel_maintenance_workers',
                greatest(current_setting('max_parallel_workers')::int / {} - 1, 0)::text,
                true)",
        at_once.max(1)
    )
}

/// Whether every saved index exists.
pub(crate) fn all_present(client: &mut Client, saved: &[SavedIndex]) -> Result<bool> {
    for index in saved {
        if !exists(client, index)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Whether an index of the saved one's name is in its table's schema.
fn exists(client: &mut impl GenericClient, index: &SavedIndex) -> Result<bool> {
    let name = format!(
        "{}.{}",
        quote_ident(&index.table.schema),
        quote_ident(&index.name)
    );
    Ok(client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])?
        .get(0))
}

/// The indexes of the given destination tables that can be dropped and built again inside
/// a load transaction: not those of partitions attached to a partitioned index, not the one
/// that is the replica identity, not exclusion constraints, none that another object (a
/// view, say) depends on, and — unless the foreign keys are out of the way for the load
/// (`keys_dropped`) — none that a foreign key depends on.
pub(crate) fn rebuildable(
    client: &mut Client,
    tables: &[TableName],
    keys_dropped: bool,
) -> Result<HashMap<TableName, Vec<Index>>> {
    let (schemas, names) = name_arrays(tables);
    let mut tx = client.transaction()?;
    // pg_get_indexdef waits for locks on the table: give up soon (a `LockTimeout` failure, see `pg::error`).
    tx.batch_execute(&format!(
        "SET LOCAL lock_timeout = {}",
        LOCK_WAIT.as_millis()
    ))?;
    let rows = tx
        .query(
            "SELECT n.nspname, c.relname, i.relname AS index_name,
                    pg_get_indexdef(x.indexrelid) AS definition,
                    con.conname, con.contype::text,
                    CASE WHEN con.condeferred THEN 'DEFERRABLE INITIALLY DEFERRED'
                         WHEN con.condeferrable THEN 'DEFERRABLE'
                         ELSE '' END AS deferrable,
                    obj_description(x.indexrelid, 'pg_class') AS comment,
                    obj_description(con.oid, 'pg_constraint') AS constraint_comment,
                    (SELECT t.spcname FROM pg_tablespace t
                     WHERE t.oid = i.reltablespace) AS tablespace,
                    x.indisclustered,
                    ARRAY(SELECT a.attnum::int4 FROM pg_attribute a
                          WHERE a.attrelid = x.indexrelid AND a.attstattarget >= 0
                          ORDER BY a.attnum) AS stat_columns,
                    ARRAY(SELECT a.attstattarget::int4 FROM pg_attribute a
                          WHERE a.attrelid = x.indexrelid AND a.attstattarget >= 0
                          ORDER BY a.attnum) AS stat_targets,
                    x.indisreplident
                      OR coalesce(con.contype = 'x', false)
                      OR EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhrelid = x.indexrelid)
                      AS pinned,
                    EXISTS (SELECT 1 FROM pg_depend d
                            WHERE d.refclassid = 'pg_class'::regclass
                              AND d.refobjid = x.indexrelid
                              AND d.classid = 'pg_constraint'::regclass
                              AND d.deptype = 'n') AS referenced,
                    EXISTS (SELECT 1 FROM pg_depend d
                            WHERE d.deptype = 'n'
                              AND d.classid <> 'pg_constraint'::regclass
                              AND ((d.refclassid = 'pg_class'::regclass
                                    AND d.refobjid = x.indexrelid)
                                OR (d.refclassid = 'pg_constraint'::regclass
                                    AND d.refobjid = con.oid))) AS depended_on
             FROM unnest($1::text[], $2::text[]) AS want(schema_name, table_name)
             JOIN pg_namespace n ON n.nspname = want.schema_name
             JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = want.table_name
             JOIN pg_index x ON x.indrelid = c.oid
             JOIN pg_class i ON i.oid = x.indexrelid
             LEFT JOIN pg_constraint con
                    ON con.conindid = x.indexrelid AND con.conrelid = c.oid
                   AND con.contype IN ('p', 'u', 'x')
             ORDER BY n.nspname, c.relname, i.relname",
            &[&schemas, &names],
        )
        .context("reading the destination's indexes")?;
    tx.commit()?;
    let mut map: HashMap<TableName, Vec<Index>> = HashMap::new();
    for row in rows {
        let pinned: bool = row.get("pinned");
        let referenced: bool = row.get("referenced");
        // A view grouping by the primary key depends on it, for one: dropping it would fail.
        let depended_on: bool = row.get("depended_on");
        if pinned || depended_on || (referenced && !keys_dropped) {
            continue;
        }
        let conname: Option<String> = row.get("conname");
        let contype: Option<String> = row.get("contype");
        let constraint = conname.zip(contype).map(|(name, kind)| {
            (
                name,
                kind.chars().next().unwrap_or('u'),
                row.get::<_, String>("deferrable"),
            )
        });
        map.entry(TableName::new(
            row.get::<_, String>(0),
            row.get::<_, String>(1),
        ))
        .or_default()
        .push(Index {
            name: row.get("index_name"),
            definition: row.get("definition"),
            constraint,
            comment: row.get("comment"),
            constraint_comment: row.get("constraint_comment"),
            tablespace: row.get("tablespace"),
            clustered: row.get("indisclustered"),
            statistics: row
                .get::<_, Vec<i32>>("stat_columns")
                .into_iter()
                .zip(row.get::<_, Vec<i32>>("stat_targets"))
                .collect(),
        });
    }
    Ok(map)
}

/// How long reading the index definitions waits for a lock.
const LOCK_WAIT: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_rebuilds_only_big_tables() {
        assert!(!IndexMode::Auto.rebuilds(AUTO_REBUILD_BYTES - 1));
        assert!(IndexMode::Auto.rebuilds(AUTO_REBUILD_BYTES));
        assert!(IndexMode::Rebuild.rebuilds(0));
        assert!(!IndexMode::Keep.rebuilds(u64::MAX));
        assert!("sometimes".parse::<IndexMode>().is_err());
    }

    #[test]
    fn rebuilds_constraint_indexes_through_using_index() {
        let table = TableName::new("s", "T");
        let index = Index {
            name: "T_pkey".into(),
            definition: "CREATE UNIQUE INDEX \"T_pkey\" ON s.\"T\" USING btree (id)".into(),
            constraint: Some(("T_pkey".into(), 'p', String::new())),
            comment: Some("it's the key".into()),
            constraint_comment: Some("the key's constraint".into()),
            tablespace: None,
            clustered: true,
            statistics: vec![(1, 500)],
        };
        assert_eq!(
            index.drop_sql(&table),
            "ALTER TABLE \"s\".\"T\" DROP CONSTRAINT \"T_pkey\""
        );
        assert_eq!(
            index.create_sql(&table),
            [
                "CREATE UNIQUE INDEX \"T_pkey\" ON s.\"T\" USING btree (id)",
                "ALTER TABLE \"s\".\"T\" ADD CONSTRAINT \"T_pkey\" PRIMARY KEY USING INDEX \"T_pkey\"",
                "COMMENT ON CONSTRAINT \"T_pkey\" ON \"s\".\"T\" IS 'the key''s constraint'",
                "COMMENT ON INDEX \"s\".\"T_pkey\" IS 'it''s the key'",
                "ALTER TABLE \"s\".\"T\" CLUSTER ON \"T_pkey\"",
                "ALTER INDEX \"s\".\"T_pkey\" ALTER COLUMN 1 SET STATISTICS 500",
            ]
        );
        let plain = Index {
            constraint: None,
            comment: None,
            tablespace: Some("fast disk".into()),
            clustered: false,
            statistics: Vec::new(),
            ..index
        };
        assert_eq!(plain.drop_sql(&table), "DROP INDEX \"s\".\"T_pkey\"");
        assert_eq!(
            plain.create_sql(&table),
            [
                "SET LOCAL default_tablespace = \"fast disk\"",
                "CREATE UNIQUE INDEX \"T_pkey\" ON s.\"T\" USING btree (id)",
                "SET LOCAL default_tablespace = ''",
            ]
        );
    }
}
