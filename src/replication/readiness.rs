//! Whether a source can be followed by logical replication, and what to do where it cannot:
//! `wal_level = logical`, a free replication slot and WAL sender, a role that may replicate
//! and publish the tables, and a usable replica identity on every selected table — without
//! one, publishing a table makes the source application's own `UPDATE` and `DELETE` on it
//! fail — and that a replication session opens. Reads only; creates nothing.

use crate::pg::error::describe;
use crate::pg::sql::{display_ident, TableName};
use crate::pg::target::Target;
use crate::schema::catalog::Table;
use anyhow::{Context, Result};
use postgres::Client;

/// One thing the source needs, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Requirement {
    /// What is needed, in a few words.
    pub(crate) what: String,
    /// What the source has.
    pub(crate) found: String,
    /// Empty when the source meets it; else what to do.
    pub(crate) fix: String,
}

impl Requirement {
    pub(crate) fn met(&self) -> bool {
        self.fix.is_empty()
    }
}

/// A selected table that cannot be published, and the statement that fixes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NoIdentity {
    pub(crate) table: TableName,
    /// `default` without a primary key, `nothing`, or an index that is gone.
    pub(crate) identity: String,
    pub(crate) fix: String,
}

/// What the source offers for following.
#[derive(Debug)]
pub(crate) struct Readiness {
    pub(crate) requirements: Vec<Requirement>,
    pub(crate) no_identity: Vec<NoIdentity>,
}

impl Readiness {
    pub(crate) fn ready(&self) -> bool {
        self.requirements.iter().all(Requirement::met) && self.no_identity.is_empty()
    }
}

/// Checks the server and the role the session is connected as, and `tables`' replica
/// identities.
pub(crate) fn check(client: &mut Client, tables: &[Table]) -> Result<Readiness> {
    let row = client
        .query_one(
            "SELECT current_setting('wal_level'),
                    current_setting('max_replication_slots')::int4,
                    (SELECT count(*) FROM pg_catalog.pg_replication_slots)::int4,
                    current_setting('max_wal_senders')::int4,
                    (SELECT count(*) FROM pg_catalog.pg_stat_activity
                     WHERE backend_type = 'walsender')::int4,
                    (SELECT rolreplication OR rolsuper FROM pg_catalog.pg_roles
                     WHERE rolname = current_user),
                    has_database_privilege(current_database(), 'CREATE'),
                    pg_is_in_recovery(),
                    current_user::text",
            &[],
        )
        .context("reading what the source offers for replication")?;
    let oids: Vec<u32> = tables.iter().map(|t| t.oid).collect();
    let not_owned: Vec<String> = client
        .query(
            "SELECT n.nspname, c.relname
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             WHERE c.oid = ANY($1) AND NOT pg_has_role(c.relowner, 'USAGE')
             ORDER BY 1, 2",
            &[&oids],
        )
        .context("reading the source tables' owners")?
        .iter()
        .map(|r| TableName::new(r.get::<_, String>(0), r.get::<_, String>(1)).to_string())
        .collect();
    let role: String = row.get(8);
    let facts = ServerFacts {
        wal_level: row.get(0),
        slots: (row.get(2), row.get(1)),
        senders: (row.get(4), row.get(3)),
        replication_role: row.get::<_, Option<bool>>(5).unwrap_or(false),
        create_on_database: row.get(6),
        standby: row.get(7),
    };
    Ok(Readiness {
        requirements: requirements(&facts, &role, &not_owned),
        no_identity: no_identity(client, &oids)?,
    })
}

/// Whether a logical replication session of the database opens on `source` (the server's
/// `pg_hba.conf`, a free WAL sender, the REPLICATION attribute, all at once) and says where
/// its WAL is (`IDENTIFY_SYSTEM`).
pub(crate) fn replication_session(source: &Target) -> Requirement {
    let what = "a replication session".to_string();
    let identified = source.connect_replication().and_then(|mut session| {
        let rows = session.query_rows("IDENTIFY_SYSTEM")?;
        let row = rows.into_iter().next().unwrap_or_default();
        let field = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
        Ok(format!("opens: timeline {} at {}", field(1), field(2)))
    });
    match identified {
        Ok(found) => Requirement {
            what,
            found,
            fix: String::new(),
        },
        Err(err) => Requirement {
            what,
            found: "does not open".into(),
            fix: describe(&err),
        },
    }
}

/// What `check` reads of the server, for `requirements`.
struct ServerFacts {
    wal_level: String,
    /// In use, and the most there may be.
    slots: (i32, i32),
    senders: (i32, i32),
    replication_role: bool,
    create_on_database: bool,
    standby: bool,
}

/// The requirements, each with what to do where it is not met. Pure.
fn requirements(facts: &ServerFacts, role: &str, not_owned: &[String]) -> Vec<Requirement> {
    let need = |what: &str, found: String, met: bool, fix: String| Requirement {
        what: what.into(),
        found,
        fix: if met { String::new() } else { fix },
    };
    let role = display_ident(role);
    vec![
        need(
            "a primary, not a standby",
            if facts.standby {
                "a standby"
            } else {
                "a primary"
            }
            .into(),
            !facts.standby,
            "follow the primary: the copy's slot and snapshot are taken there".into(),
        ),
        need(
            "wal_level = logical",
            format!("wal_level = {}", facts.wal_level),
            facts.wal_level == "logical",
            "ALTER SYSTEM SET wal_level = logical, then restart the server".into(),
        ),
        need(
            "a free replication slot",
            format!(
                "{} of max_replication_slots = {} in use",
                facts.slots.0, facts.slots.1
            ),
            facts.slots.0 < facts.slots.1,
            "raise max_replication_slots (a restart), or drop a slot nobody uses".into(),
        ),
        need(
            "a free WAL sender",
            format!(
                "{} of max_wal_senders = {} in use",
                facts.senders.0, facts.senders.1
            ),
            facts.senders.0 < facts.senders.1,
            "raise max_wal_senders (a restart)".into(),
        ),
        need(
            "a role that may replicate",
            format!(
                "{role} {} REPLICATION",
                if facts.replication_role {
                    "has"
                } else {
                    "lacks"
                }
            ),
            facts.replication_role,
            format!(
                "ALTER ROLE {role} REPLICATION (as a superuser), or follow as a role that has it"
            ),
        ),
        need(
            "a role that may publish the tables",
            if !facts.create_on_database {
                format!("{role} lacks CREATE on the database")
            } else if !not_owned.is_empty() {
                format!("{role} does not own {}", not_owned.join(", "))
            } else {
                format!("{role} owns the tables and may create publications")
            },
            facts.create_on_database && not_owned.is_empty(),
            "CREATE PUBLICATION needs CREATE on the database and the tables' ownership: \
             GRANT CREATE ON DATABASE, follow as the tables' owner, or leave them out"
                .into(),
        ),
    ]
}

/// The tables among `oids` without a usable replica identity, each with the statement that
/// gives it one. PostgreSQL's own test, as the relation cache makes it: with `DEFAULT`, a
/// primary key that is valid and immediate (a `DEFERRABLE` one is not used, and publishing
/// the table makes its `UPDATE` and `DELETE` fail); with `USING INDEX`, that index still
/// there; `FULL` always; `NOTHING` never. The fix is `DEFAULT` where a usable primary key is
/// there (identity set to nothing, or to an index since dropped), else the first unique,
/// immediate, non-partial index on NOT NULL columns (`USING INDEX`), else `FULL` (every
/// column identifies the row; updates and deletes carry the whole old row).
pub(crate) fn no_identity(client: &mut Client, oids: &[u32]) -> Result<Vec<NoIdentity>> {
    let rows = client
        .query(
            "SELECT n.nspname, c.relname,
                    CASE WHEN c.relreplident = 'n' THEN 'nothing'
                         WHEN c.relreplident = 'i' THEN 'an index that is gone'
                         WHEN pk.indexrelid IS NULL THEN 'default, and no primary key'
                         WHEN NOT pk.indimmediate
                         THEN 'default, and its primary key is DEFERRABLE, which PostgreSQL \
                               does not use as one'
                         ELSE 'default, and its primary key is not valid' END,
                    pk.indexrelid IS NOT NULL AND pk.indimmediate AND pk.indisvalid,
                    (SELECT ic.relname
                     FROM pg_catalog.pg_index i
                     JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
                     WHERE i.indrelid = c.oid AND i.indisunique AND i.indimmediate
                       AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL
                       AND NOT EXISTS (
                             SELECT 1 FROM unnest(i.indkey) AS k(attnum)
                             JOIN pg_catalog.pg_attribute a
                               ON a.attrelid = c.oid AND a.attnum = k.attnum
                             WHERE NOT a.attnotnull)
                     ORDER BY ic.relname LIMIT 1)
             FROM pg_catalog.pg_class c
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             LEFT JOIN pg_catalog.pg_index pk ON pk.indrelid = c.oid AND pk.indisprimary
             WHERE c.oid = ANY($1)
               AND CASE c.relreplident
                     WHEN 'f' THEN false
                     WHEN 'n' THEN true
                     WHEN 'd' THEN pk.indexrelid IS NULL OR NOT pk.indimmediate
                                   OR NOT pk.indisvalid
                     ELSE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_index i
                                      WHERE i.indrelid = c.oid AND i.indisreplident)
                   END
             ORDER BY 1, 2",
            &[&oids],
        )
        .context("reading the source tables' replica identities")?;
    Ok(rows
        .iter()
        .map(|row| {
            let table = TableName::new(row.get::<_, String>(0), row.get::<_, String>(1));
            let identity: String = row.get(2);
            let usable_primary_key: bool = row.get(3);
            let candidate: Option<String> = row.get(4);
            let fix = if usable_primary_key {
                format!("ALTER TABLE {} REPLICA IDENTITY DEFAULT", table.quoted())
            } else if let Some(index) = candidate {
                format!(
                    "ALTER TABLE {} REPLICA IDENTITY USING INDEX {}",
                    table.quoted(),
                    crate::pg::sql::quote_ident(&index)
                )
            } else {
                format!("ALTER TABLE {} REPLICA IDENTITY FULL", table.quoted())
            };
            NoIdentity {
                table,
                identity,
                fix,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> ServerFacts {
        ServerFacts {
            wal_level: "logical".into(),
            slots: (0, 10),
            senders: (1, 10),
            replication_role: true,
            create_on_database: true,
            standby: false,
        }
    }

    #[test]
    fn a_logical_primary_with_room_and_rights_meets_every_requirement() {
        assert!(requirements(&facts(), "app", &[])
            .iter()
            .all(Requirement::met));
    }

    #[test]
    fn each_missing_thing_says_how_to_get_it() {
        let mut f = facts();
        f.wal_level = "replica".into();
        f.slots = (10, 10);
        f.replication_role = false;
        let unmet: Vec<String> = requirements(&f, "app", &["public.t".into()])
            .into_iter()
            .filter(|r| !r.met())
            .map(|r| r.fix)
            .collect();
        assert_eq!(unmet.len(), 4, "{unmet:?}");
        assert!(unmet[0].contains("wal_level = logical"));
        assert!(unmet[1].contains("max_replication_slots"));
        assert!(unmet[2].contains("ALTER ROLE app REPLICATION"));
        assert!(unmet[3].contains("CREATE PUBLICATION"));
    }
}
