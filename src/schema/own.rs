//! pgcopy's own schema on the destination, `pgcopy`, which holds what following records
//! beside the data (`replication::progress`'s table, `plan::chunks`' record, each with a row
//! per follower): made by pgcopy where it is missing; a follower's rows forgotten, a table
//! dropped with its last row, and the schema once empty if pgcopy made it.

use crate::pg::sql::quote_literal;
use anyhow::{Context, Result};
use postgres::error::SqlState;
use postgres::{Client, GenericClient};

/// The schema.
pub(crate) const SCHEMA: &str = "pgcopy";

/// The comment on a schema pgcopy made itself, which it may therefore drop when empty.
const MADE_HERE: &str = "made by pgcopy copy --follow; dropped when empty";

/// Makes the schema if it is missing, in the caller's transaction.
pub(crate) fn ensure(tx: &mut impl GenericClient) -> Result<()> {
    let exists: Option<bool> = tx
        .query_one("SELECT to_regnamespace($1) IS NOT NULL", &[&SCHEMA])?
        .get(0);
    if exists != Some(true) {
        tx.batch_execute(&format!(
            "CREATE SCHEMA {SCHEMA}; COMMENT ON SCHEMA {SCHEMA} IS {}",
            quote_literal(MADE_HERE)
        ))
        .with_context(|| format!("creating the schema {SCHEMA} on the destination"))?;
    }
    Ok(())
}

/// The SQL that says whether the role may make a table in the schema (`$1`: a table of
/// it, which it may also use if it exists).
pub(crate) const CAN_MAKE_TABLE: &str = "CASE WHEN to_regclass($1) IS NOT NULL
         THEN has_table_privilege($1, 'SELECT, INSERT, UPDATE, DELETE')
         WHEN to_regnamespace('pgcopy') IS NOT NULL
         THEN has_schema_privilege('pgcopy', 'CREATE')
         ELSE has_database_privilege(current_database(), 'CREATE') END";

/// Deletes `slot`'s rows from pgcopy's `table` (keyed by a `slot` column), and the table
/// when no other follower is left in it, in a transaction of its own.
pub(crate) fn forget_rows(dest: &mut Client, table: &str, slot: &str) -> Result<()> {
    let mut tx = dest.transaction()?;
    tx.execute(&format!("DELETE FROM {table} WHERE slot = $1"), &[&slot])?;
    let left: i64 = tx
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])?
        .get(0);
    if left == 0 {
        tx.batch_execute(&format!("DROP TABLE {table}"))?;
    }
    tx.commit()
        .with_context(|| format!("removing {slot} from {table}"))
}

/// Drops the schema once it is empty if pgcopy made it; one that was there before, or
/// holds anything else, stays.
pub(crate) fn drop_if_made_here(dest: &mut Client) -> Result<()> {
    let ours: bool = dest
        .query_one(
            "SELECT coalesce(obj_description(to_regnamespace($1), 'pg_namespace') = $2, false)",
            &[&SCHEMA, &MADE_HERE],
        )?
        .get(0);
    if !ours {
        return Ok(());
    }
    match dest.batch_execute(&format!("DROP SCHEMA {SCHEMA}")) {
        Ok(()) => Ok(()),
        Err(err) if err.code() == Some(&SqlState::DEPENDENT_OBJECTS_STILL_EXIST) => Ok(()),
        Err(err) => Err(err).with_context(|| format!("dropping the schema {SCHEMA}")),
    }
}
