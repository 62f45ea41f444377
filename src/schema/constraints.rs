//! Foreign keys (and NOT VALID checks) on the destination: the keys that touch the copied
//! tables, dropped before the load (TRUNCATE refuses a table that another table references,
//! even in replica mode, and per-row checks would demand parents first) and put back exactly
//! as they were afterwards, from the state file if need be.

use crate::pg::error::db_error;
use crate::pg::sql::{display_ident, name_arrays, quote_ident, quote_literal, TableName};
use anyhow::{bail, Context, Result};
use postgres::Client;
use std::collections::HashMap;
use std::time::Duration;

/// Which constraints pgcopy takes out of the load's way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `TRUNCATE` refuses a referenced table, and the rows would be checked in load order.
    ForeignKey,
    /// A `CHECK` constraint added `NOT VALID` over rows it does not hold for: the source has
    /// such rows too, and the load must take them, as the destination once did.
    NotValidCheck,
}

impl Kind {
    /// What a message calls it.
    pub(crate) fn noun(self) -> &'static str {
        match self {
            Kind::ForeignKey => "foreign key",
            Kind::NotValidCheck => "check constraint",
        }
    }
}

/// A constraint as the destination defines it, dropped for the load and put back exactly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Constraint {
    pub(crate) kind: Kind,
    /// The table that owns the constraint (for a foreign key, the referencing one).
    pub(crate) table: TableName,
    pub(crate) name: String,
    /// `pg_get_constraintdef()`: keeps `MATCH`, `ON DELETE/UPDATE`, `DEFERRABLE` and
    /// `NOT VALID` exactly.
    pub(crate) definition: String,
    /// Whether the key was validated before the run.
    pub(crate) validated: bool,
    /// Whether the owning table is partitioned: PostgreSQL cannot add such a key `NOT VALID`.
    pub(crate) on_partitioned: bool,
    /// Whether the referenced table is partitioned: validating such a key leaves the clones
    /// it has for each partition `NOT VALID`, so it comes back validated in one step.
    pub(crate) references_partitioned: bool,
    /// Whether the owning table is outside the copy while the key references a copied
    /// table: its rows may point at rows that are gone, so the key comes back `NOT VALID`.
    pub(crate) outside: bool,
    /// `COMMENT ON CONSTRAINT`, which dropping it loses.
    pub(crate) comment: Option<String>,
}

impl Constraint {
    /// The same constraint: same table, same name.
    pub(crate) fn same_key(&self, other: &Constraint) -> bool {
        self.table == other.table && self.name == other.name
    }

    pub(crate) fn drop_sql(&self) -> String {
        format!(
            "ALTER TABLE {} DROP CONSTRAINT {}",
            self.table.quoted(),
            quote_ident(&self.name)
        )
    }

    /// Whether `add_sql` adds it validated, in one step.
    fn added_valid(&self) -> bool {
        self.on_partitioned || (self.references_partitioned && !self.outside)
    }

    /// Adds the key back. Where PostgreSQL allows it the key comes back `NOT VALID` first,
    /// which cannot fail on data, and is validated in a second step: a violation then
    /// leaves the key in place (enforced for new rows) instead of lost.
    pub(crate) fn add_sql(&self) -> String {
        let not_valid = if self.added_valid() || self.definition.ends_with("NOT VALID") {
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
    pub(crate) fn validate_sql(&self) -> Option<String> {
        (self.validated && !self.added_valid() && !self.outside).then(|| {
            format!(
                "ALTER TABLE {} VALIDATE CONSTRAINT {}",
                self.table.quoted(),
                quote_ident(&self.name)
            )
        })
    }

    /// How messages name it: `foreign key "Fk" on public.child`.
    pub(crate) fn label(&self) -> String {
        format!(
            "{} {} on {}",
            self.kind.noun(),
            display_ident(&self.name),
            self.table
        )
    }

    /// Gives the constraint its comment back.
    pub(crate) fn comment_sql(&self) -> Option<String> {
        self.comment.as_ref().map(|comment| {
            format!(
                "COMMENT ON CONSTRAINT {} ON {} IS {}",
                quote_ident(&self.name),
                self.table.quoted(),
                quote_literal(comment)
            )
        })
    }
}

/// Every foreign key on the destination that references or belongs to one of `tables` (or a
/// partitioned ancestor of one), and every `NOT VALID` check constraint of those tables.
/// Constraints that a partition inherits from its parent are left out: they come and go
/// with the parent's.
pub(crate) fn find(client: &mut Client, tables: &[TableName]) -> Result<Vec<Constraint>> {
    let (schemas, names) = name_arrays(tables);
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
             SELECT con.contype = 'c' AS is_check, n.nspname, c.relname, con.conname,
                    pg_get_constraintdef(con.oid) AS definition,
                    con.convalidated, c.relkind = 'p' AS on_partitioned,
                    coalesce(r.relkind = 'p', false) AS references_partitioned,
                    con.conrelid NOT IN (SELECT oid FROM related) AS outside,
                    obj_description(con.oid, 'pg_constraint') AS comment
             FROM pg_constraint con
             JOIN pg_class c ON c.oid = con.conrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             LEFT JOIN pg_class r ON r.oid = con.confrelid
             WHERE con.conparentid = 0
               AND ((con.contype = 'f'
                     AND (con.conrelid IN (SELECT oid FROM related)
                          OR con.confrelid IN (SELECT oid FROM related)))
                 OR (con.contype = 'c' AND NOT con.convalidated AND con.coninhcount = 0
                     AND con.conrelid IN (SELECT oid FROM related)))
             ORDER BY n.nspname, c.relname, con.conname",
            &[&schemas, &names],
        )
        .context("reading the destination's foreign keys and NOT VALID checks")?;
    Ok(rows
        .iter()
        .map(|row| Constraint {
            kind: if row.get("is_check") {
                Kind::NotValidCheck
            } else {
                Kind::ForeignKey
            },
            table: TableName::new(
                row.get::<_, String>("nspname"),
                row.get::<_, String>("relname"),
            ),
            name: row.get("conname"),
            definition: row.get("definition"),
            validated: row.get("convalidated"),
            on_partitioned: row.get("on_partitioned"),
            references_partitioned: row.get("references_partitioned"),
            outside: row.get("outside"),
            comment: row.get("comment"),
        })
        .collect())
}

/// Refuses keys from tables outside the selection that reference copied tables, unless the
/// user accepted them: those tables would be left pointing at rows that are gone.
pub(crate) fn check_outside(keys: &[Constraint], allowed: bool) -> Result<()> {
    let outside: Vec<String> = keys
        .iter()
        .filter(|k| k.outside)
        .map(|k| format!("{} ({}: {})", k.table, display_ident(&k.name), k.definition))
        .collect();
    if outside.is_empty() || allowed {
        return Ok(());
    }
    bail!(
        "tables outside the selection reference copied tables, and would be left pointing at \
         rows that are gone; nothing was changed:\n  {}\ninclude them in the copy, or pass \
         --allow-outside-references to accept it (their keys then come back NOT VALID)",
        outside.join("\n  ")
    )
}

/// Drops the keys in one transaction: all of them go, or none.
pub(crate) fn drop_all(
    client: &mut Client,
    keys: &[Constraint],
    lock_timeout: Duration,
) -> Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    let sql: Vec<String> = keys.iter().map(Constraint::drop_sql).collect();
    for statement in &sql {
        log::debug!("destination: {statement}");
    }
    let mut tx = client.transaction()?;
    tx.batch_execute(&format!(
        "SET LOCAL lock_timeout = {}",
        lock_timeout.as_millis()
    ))?;
    tx.batch_execute(&sql.join(";\n"))
        .context("dropping the destination's foreign keys (a table locked by another session fails this after --lock-timeout)")?;
    tx.commit()
        .context("committing the drop of the foreign keys")?;
    Ok(())
}

/// How putting keys back went.
#[derive(Debug, Default)]
pub(crate) struct Restored {
    /// Keys that are in place now (validated or not).
    pub(crate) in_place: usize,
    /// Keys that were put back `NOT VALID` on purpose (their table is outside the copy).
    pub(crate) not_valid: Vec<String>,
    /// Keys that could not be put back: a later recovery must add them.
    pub(crate) missing: Vec<Constraint>,
    /// Keys that are back but `NOT VALID` although they were valid: a later copy that
    /// makes the data whole validates them.
    pub(crate) unvalidated: Vec<Constraint>,
    /// What went wrong with each of those, for the report.
    pub(crate) problems: Vec<String>,
}

/// Puts every key back that is not in place, each in its own statement so one failure does
/// not hold back the others, then validates the keys that were valid before. Keys already
/// there (a recovery after a run that got part of the way) are left as they are, only
/// validated if they should be. An `Err` means the destination could not even be asked.
pub(crate) fn restore_all(client: &mut Client, keys: &[Constraint]) -> Result<Restored> {
    let existing = existing(client, keys)?;
    let mut restored = Restored::default();
    let mut to_validate = Vec::new();
    for key in keys {
        let valid_now = match existing.get(&(key.table.clone(), key.name.clone())) {
            Some(&validated) => validated,
            None => {
                let sql = key.add_sql();
                log::debug!("destination: {sql}");
                if let Err(err) = client.batch_execute(&sql) {
                    restored.problems.push(format!(
                        "{} could not be put back: {}; run by hand: {sql}",
                        key.label(),
                        db_error(&err)
                    ));
                    restored.missing.push(key.clone());
                    continue;
                }
                if let Some(sql) = key.comment_sql() {
                    log::debug!("destination: {sql}");
                    if let Err(err) = client.batch_execute(&sql) {
                        restored.problems.push(format!(
                            "{} is back without its comment: {}; run by hand: {sql}",
                            key.label(),
                            db_error(&err)
                        ));
                    }
                }
                key.added_valid()
            }
        };
        restored.in_place += 1;
        if key.outside {
            restored.not_valid.push(format!(
                "{} on {} (outside the copy)",
                display_ident(&key.name),
                key.table
            ));
        } else if !valid_now {
            to_validate.push(key);
        }
    }
    for key in to_validate {
        let Some(sql) = key.validate_sql() else {
            continue;
        };
        log::debug!("destination: {sql}");
        if let Err(err) = client.batch_execute(&sql) {
            restored.problems.push(format!(
                "{} is back but NOT VALID: the data violates it: {}",
                key.label(),
                db_error(&err)
            ));
            restored.unvalidated.push(key.clone());
        }
    }
    if !keys.is_empty() {
        log::info!(
            "put back {} of {} constraints",
            restored.in_place,
            keys.len()
        );
    }
    Ok(restored)
}

/// Whether every one of `keys` is in place on the destination: then a record that says
/// they were dropped does not describe this destination as it is.
pub(crate) fn all_in_place(client: &mut Client, keys: &[Constraint]) -> Result<bool> {
    Ok(existing(client, keys)?.len() == keys.len())
}

/// Which of the keys exist on the destination now, and whether each is validated.
fn existing(
    client: &mut Client,
    keys: &[Constraint],
) -> Result<HashMap<(TableName, String), bool>> {
    let (schemas, tables) = name_arrays(keys.iter().map(|k| &k.table));
    let names: Vec<&str> = keys.iter().map(|k| k.name.as_str()).collect();
    let rows = client
        .query(
            "SELECT n.nspname, c.relname, con.conname, con.convalidated
             FROM unnest($1::text[], $2::text[], $3::text[])
                  AS want(schema_name, table_name, key_name)
             JOIN pg_namespace n ON n.nspname = want.schema_name
             JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = want.table_name
             JOIN pg_constraint con ON con.conrelid = c.oid AND con.conname = want.key_name
                                   AND con.contype IN ('f', 'c')",
            &[&schemas, &tables, &names],
        )
        .context("reading which foreign keys are in place on the destination")?;
    Ok(rows
        .iter()
        .map(|row| {
            let table = TableName::new(row.get::<_, String>(0), row.get::<_, String>(1));
            ((table, row.get(2)), row.get(3))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(definition: &str, validated: bool, on_partitioned: bool) -> Constraint {
        Constraint {
            kind: Kind::ForeignKey,
            table: TableName::new("public", "Child"),
            name: "child_fk".into(),
            definition: definition.into(),
            validated,
            on_partitioned,
            references_partitioned: false,
            outside: false,
            comment: None,
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
        // Referencing a partitioned table: VALIDATE would leave its per-partition clones
        // NOT VALID, so it comes back validated at once; from outside the copy, NOT VALID.
        let mut k = Constraint {
            references_partitioned: true,
            ..key("FOREIGN KEY (p) REFERENCES parted(id)", true, false)
        };
        assert!(k.add_sql().ends_with("REFERENCES parted(id)"));
        assert!(k.validate_sql().is_none());
        k.outside = true;
        assert!(k.add_sql().ends_with("NOT VALID"));
    }

    #[test]
    fn puts_comments_back_and_keeps_not_valid_checks_not_valid() {
        let k = Constraint {
            kind: Kind::NotValidCheck,
            comment: Some("legacy rows don't pass".into()),
            ..key("CHECK ((a > 0)) NOT VALID", false, false)
        };
        assert_eq!(
            k.add_sql(),
            "ALTER TABLE \"public\".\"Child\" ADD CONSTRAINT \"child_fk\" CHECK ((a > 0)) NOT VALID"
        );
        assert!(k.validate_sql().is_none());
        assert_eq!(
            k.comment_sql().unwrap(),
            "COMMENT ON CONSTRAINT \"child_fk\" ON \"public\".\"Child\" IS 'legacy rows don''t pass'"
        );
    }

    #[test]
    fn refuses_outside_references_unless_allowed() {
        let mut key = Constraint {
            kind: Kind::ForeignKey,
            table: TableName::new("public", "outsider"),
            name: "outsider_fk".into(),
            definition: "FOREIGN KEY (p) REFERENCES parent(id)".into(),
            validated: true,
            on_partitioned: false,
            references_partitioned: false,
            outside: false,
            comment: None,
        };
        assert!(check_outside(std::slice::from_ref(&key), false).is_ok());
        key.outside = true;
        let err = check_outside(std::slice::from_ref(&key), false).unwrap_err();
        assert!(err
            .to_string()
            .contains("public.outsider (outsider_fk: FOREIGN KEY (p) REFERENCES parent(id))"));
        assert!(check_outside(std::slice::from_ref(&key), true).is_ok());
        assert!(
            key.validate_sql().is_none(),
            "an outside key stays NOT VALID"
        );
    }
}
