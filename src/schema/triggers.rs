//! User triggers on the destination: which of them would fire for the copied rows, and the
//! statements that keep them quiet during a table's load. They run inside the table's own
//! load transaction, so the triggers are back the moment it commits or rolls back, whatever
//! happens to pgcopy: there is nothing to put back after a crash.

use crate::pg::sql::{name_arrays, quote_ident, TableName};
use anyhow::{Context, Result};
use postgres::Client;
use std::collections::HashMap;

/// A user (not internal) trigger and how it is enabled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Trigger {
    pub(crate) name: String,
    /// `pg_trigger.tgenabled`: `O` fires in origin sessions, `A` always, `R` only in
    /// replica sessions, `D` never.
    pub(crate) enabled: char,
}

impl Trigger {
    /// Whether the trigger fires in a session with the given `session_replication_role`.
    pub(crate) fn fires(&self, replica: bool) -> bool {
        match self.enabled {
            'A' => true,
            'O' => !replica,
            'R' => replica,
            _ => false,
        }
    }

    pub(crate) fn disable_sql(&self, table: &TableName) -> String {
        format!(
            "ALTER TABLE {} DISABLE TRIGGER {}",
            table.quoted(),
            quote_ident(&self.name)
        )
    }

    /// Enables the trigger exactly as it was.
    pub(crate) fn enable_sql(&self, table: &TableName) -> String {
        let how = match self.enabled {
            'A' => "ENABLE ALWAYS",
            'R' => "ENABLE REPLICA",
            _ => "ENABLE",
        };
        format!(
            "ALTER TABLE {} {how} TRIGGER {}",
            table.quoted(),
            quote_ident(&self.name)
        )
    }
}

/// The user triggers of the given destination tables that would fire in the writers'
/// sessions (replica or not), keyed by table.
pub(crate) fn firing(
    client: &mut Client,
    tables: &[TableName],
    replica: bool,
) -> Result<HashMap<TableName, Vec<Trigger>>> {
    let (schemas, names) = name_arrays(tables);
    let rows = client
        .query(
            "SELECT n.nspname, c.relname, t.tgname, t.tgenabled::text
             FROM unnest($1::text[], $2::text[]) AS want(schema_name, table_name)
             JOIN pg_namespace n ON n.nspname = want.schema_name
             JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = want.table_name
             JOIN pg_trigger t ON t.tgrelid = c.oid AND NOT t.tgisinternal
             ORDER BY n.nspname, c.relname, t.tgname",
            &[&schemas, &names],
        )
        .context("reading the destination's triggers")?;
    let mut map: HashMap<TableName, Vec<Trigger>> = HashMap::new();
    for row in rows {
        let enabled: String = row.get(3);
        let trigger = Trigger {
            name: row.get(2),
            enabled: enabled.chars().next().unwrap_or('D'),
        };
        if trigger.fires(replica) {
            map.entry(TableName::new(
                row.get::<_, String>(0),
                row.get::<_, String>(1),
            ))
            .or_default()
            .push(trigger);
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_which_triggers_fire_in_which_session() {
        let t = |c| Trigger {
            name: "t".into(),
            enabled: c,
        };
        assert!(t('O').fires(false) && !t('O').fires(true));
        assert!(t('A').fires(false) && t('A').fires(true));
        assert!(!t('R').fires(false) && t('R').fires(true));
        assert!(!t('D').fires(false) && !t('D').fires(true));
    }

    #[test]
    fn enables_triggers_as_they_were() {
        let table = TableName::new("public", "T");
        let t = |c| Trigger {
            name: "audit".into(),
            enabled: c,
        };
        assert_eq!(
            t('O').disable_sql(&table),
            "ALTER TABLE \"public\".\"T\" DISABLE TRIGGER \"audit\""
        );
        assert_eq!(
            t('O').enable_sql(&table),
            "ALTER TABLE \"public\".\"T\" ENABLE TRIGGER \"audit\""
        );
        assert!(t('A').enable_sql(&table).contains("ENABLE ALWAYS TRIGGER"));
        assert!(t('R').enable_sql(&table).contains("ENABLE REPLICA TRIGGER"));
    }
}
