//! Foreign keys on the destination: found, dropped before the load (TRUNCATE refuses a table
//! that another table references, and per-row checks would demand parents first), and put
//! back exactly as they were afterwards.

use crate::conn::db_error;
use crate::sql::{quote_ident, TableName};
use anyhow::{Context, Result};
use postgres::Client;

/// A foreign key as the destination defines it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForeignKey {
    /// The referencing table, which owns the constraint.
    pub table: TableName,
    pub name: String,
    /// `pg_get_constraintdef()`: keeps `MATCH`, `ON DELETE/UPDATE`, `DEFERRABLE` and
    /// `NOT VALID` exactly.
    pub definition: String,
    /// Whether the key was validated before the run.
    pub validated: bool,
    /// Whether the owning table is partitioned: PostgreSQL cannot add such a key `NOT VALID`.
    pub on_partitioned: bool,
}

impl ForeignKey {
    pub fn drop_sql(&self) -> String {
        format!(
            "ALTER TABLE {} DROP CONSTRAINT {}",
            self.table.quoted(),
            quote_ident(&self.name)
        )
    }

    /// Adds the key back. Where PostgreSQL allows it the key comes back `NOT VALID` first,
    /// which cannot fail on data, and is validated in a second step: a violation then
    /// leaves the key in place (enforced for new rows) instead of lost.
    pub fn add_sql(&self) -> String {
        let not_valid = if self.on_partitioned || self.definition.ends_with("NOT VALID") {
            ""
        } else {
            " NOT VALID"
        };
        format!(
            "ALTER TABLE {} ADD CONSTRAINT {} {}{not_valid}",
            self.table.quoted(),
            quote_ident(&self.name),
            self.definition
        )
    }

    /// The second step of `add_sql`, for keys that were valid before the run.
    pub fn validate_sql(&self) -> Option<String> {
        (self.validated && !self.on_partitioned).then(|| {
            format!(
                "ALTER TABLE {} VALIDATE CONSTRAINT {}",
                self.table.quoted(),
                quote_ident(&self.name)
            )
        })
    }
}

/// Every foreign key on the destination that references or belongs to one of `tables` (or a
/// partitioned ancestor of one). Keys that a partition inherits from its parent are left
/// out: they come and go with the parent's.
pub fn find(client: &mut Client, tables: &[TableName]) -> Result<Vec<ForeignKey>> {
    let schemas: Vec<&str> = tables.iter().map(|t| t.schema.as_str()).collect();
    let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    let rows = client
        .query(
            "WITH copied AS (
                 SELECT c.oid
                 FROM unnest($1::text[], $2::text[]) AS want(schema_name, table_name)
                 JOIN pg_namespace n ON n.nspname = want.schema_name
                 JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = want.table_name
             ), related AS (
                 SELECT oid FROM copied
                 UNION
                 -- Empty for a table that is not a partition.
                 SELECT pg_partition_ancestors(oid) FROM copied
             )
             SELECT n.nspname, c.relname, con.conname,
                    pg_get_constraintdef(con.oid) AS definition,
                    con.convalidated, c.relkind = 'p' AS on_partitioned
             FROM pg_constraint con
             JOIN pg_class c ON c.oid = con.conrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE con.contype = 'f' AND con.conparentid = 0
               AND (con.conrelid IN (SELECT oid FROM related)
                    OR con.confrelid IN (SELECT oid FROM related))
             ORDER BY n.nspname, c.relname, con.conname",
            &[&schemas, &names],
        )
        .context("reading the destination's foreign keys")?;
    Ok(rows
        .iter()
        .map(|row| ForeignKey {
            table: TableName::new(row.get::<_, String>(0), row.get::<_, String>(1)),
            name: row.get(2),
            definition: row.get(3),
            validated: row.get(4),
            on_partitioned: row.get(5),
        })
        .collect())
}

/// Drops the keys in one transaction: all of them go, or none.
pub fn drop_all(client: &mut Client, keys: &[ForeignKey]) -> Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    let sql: Vec<String> = keys.iter().map(ForeignKey::drop_sql).collect();
    log::info!(
        "dropping {} foreign keys until the load is done",
        keys.len()
    );
    for statement in &sql {
        log::debug!("destination: {statement}");
    }
    let mut tx = client.transaction()?;
    tx.batch_execute(&sql.join(";\n"))
        .context("dropping the destination's foreign keys")?;
    tx.commit()
        .context("committing the drop of the foreign keys")?;
    Ok(())
}

/// Puts every key back, each in its own statement so one failure does not hold back the
/// others. Returns a description of each key that could not be put back (or validated).
pub fn restore_all(client: &mut Client, keys: &[ForeignKey]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut added = Vec::new();
    for key in keys {
        let sql = key.add_sql();
        log::debug!("destination: {sql}");
        match client.batch_execute(&sql) {
            Ok(()) => added.push(key),
            Err(err) => problems.push(format!(
                "foreign key {} on {} could not be put back: {}; run by hand: {sql}",
                key.name,
                key.table,
                db_error(&err)
            )),
        }
    }
    for key in added {
        let Some(sql) = key.validate_sql() else {
            continue;
        };
        log::debug!("destination: {sql}");
        if let Err(err) = client.batch_execute(&sql) {
            problems.push(format!(
                "foreign key {} on {} is back but NOT VALID: the copied data violates it: {}",
                key.name,
                key.table,
                db_error(&err)
            ));
        }
    }
    if problems.is_empty() && !keys.is_empty() {
        log::info!("put back {} foreign keys", keys.len());
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(definition: &str, validated: bool, on_partitioned: bool) -> ForeignKey {
        ForeignKey {
            table: TableName::new("public", "Child"),
            name: "child_fk".into(),
            definition: definition.into(),
            validated,
            on_partitioned,
        }
    }

    #[test]
    fn adds_valid_keys_not_valid_then_validates() {
        let k = key("FOREIGN KEY (p) REFERENCES parent(id)", true, false);
        assert_eq!(
            k.add_sql(),
            "ALTER TABLE \"public\".\"Child\" ADD CONSTRAINT \"child_fk\" \
             FOREIGN KEY (p) REFERENCES parent(id) NOT VALID"
        );
        assert_eq!(
            k.validate_sql().unwrap(),
            "ALTER TABLE \"public\".\"Child\" VALIDATE CONSTRAINT \"child_fk\""
        );
    }

    #[test]
    fn keeps_keys_that_were_not_valid_not_valid() {
        let k = key(
            "FOREIGN KEY (p) REFERENCES parent(id) NOT VALID",
            false,
            false,
        );
        assert!(k.add_sql().ends_with("REFERENCES parent(id) NOT VALID"));
        assert!(k.validate_sql().is_none());
    }

    #[test]
    fn adds_keys_on_partitioned_tables_in_one_step() {
        let k = key("FOREIGN KEY (p) REFERENCES parent(id)", true, true);
        assert!(k.add_sql().ends_with("REFERENCES parent(id)"));
        assert!(k.validate_sql().is_none());
    }
}
