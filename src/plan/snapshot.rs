//! The copy's view of the source: the selected tables locked `ACCESS SHARE`, then one
//! `REPEATABLE READ` snapshot taken and exported in the same transaction, which stays open,
//! its locks held, until the run ends; readers and verify import the snapshot.
//!
//! The locks come first because `TRUNCATE` and the statements that rewrite a table
//! (`VACUUM FULL`, `CLUSTER`, `ALTER TABLE … SET TYPE`) are not MVCC-safe: a snapshot taken
//! before such a statement committed sees the table empty afterwards. A snapshot taken after
//! the lock is granted sees the table as it is, and while the lock is held nobody can
//! truncate or rewrite it. A table that appeared between the first look at the catalog and
//! the snapshot is locked after it; if it was rewritten in that moment, a new snapshot is
//! taken. Lock waits are bounded by `--lock-timeout` and name the session waited for.
//!
//! A copy that follows takes its snapshot from a new replication slot instead: the slot is
//! made once the locks are granted (by `ExportFrom`, which `replication` provides) and this
//! transaction imports the snapshot the slot's creation exported, then exports it again for
//! the readers, so the copy sees exactly what precedes the first change the slot streams.

use crate::pg::error::db_error;
use crate::pg::server::{SnapshotId, BEGIN_READ_ONLY};
use crate::pg::sql::{quote_literal, TableName};
use crate::pg::target::Target;
use crate::plan;
use crate::plan::filter::TableFilter;
use crate::schema::catalog::{self, Table};
use anyhow::{bail, Context, Result};
use postgres::error::SqlState;
use postgres::fallible_iterator::FallibleIterator;
use postgres::Client;
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// How long `Snapshot::check` listens for a reason the server sent before it asks.
const LISTEN: Duration = Duration::from_millis(20);

/// How many snapshots are taken before pgcopy gives up on tables that keep being rewritten.
const TRIES: u32 = 3;

/// A source session holding a `REPEATABLE READ` transaction open with its snapshot exported
/// and the copied tables locked: readers that import it see exactly what this transaction
/// sees, for as long as this value lives.
pub(crate) struct Snapshot {
    pub(crate) client: Client,
    pub(crate) id: SnapshotId,
}

impl Snapshot {
    /// Whether the session holding the snapshot is still there; if not, why: a server that
    /// ends a session (a timeout, `pg_terminate_backend`, a shutdown, a recovery conflict)
    /// sends its reason before it closes the socket. The driver reads it only while it waits
    /// on the socket, and hands it to the oldest request still waiting for an answer, so
    /// the check first listens for a moment with nothing in flight, then asks.
    pub(crate) fn check(&mut self) -> Result<(), String> {
        self.client
            .notifications()
            .timeout_iter(LISTEN)
            .next()
            .map_err(|err| db_error(&err))?;
        self.client
            .batch_execute("SELECT 1")
            .map_err(|err| db_error(&err))
    }
}

/// The source as the copy sees it.
pub(crate) struct Source {
    pub(crate) snapshot: Snapshot,
    /// The tables the filters select, locked, with their sizes.
    pub(crate) tables: Vec<Table>,
    /// The source is a standby (in recovery).
    pub(crate) standby: bool,
    /// What taking the snapshot had to wait for or do again, for the log and the dry run.
    pub(crate) findings: Vec<String>,
}

/// Where a snapshot comes from other than this transaction: it is given the tables locked
/// and returns a snapshot exported after their locks were granted.
pub(crate) type ExportFrom<'a> = &'a mut dyn FnMut(&[TableName]) -> Result<SnapshotId>;

/// Locks the tables `filter` selects and takes the snapshot (see the module's comment), or
/// imports the one `from` exports. Fails, before anything is changed anywhere, when a lock
/// is not granted within `lock_timeout`: the message names the table and the session that
/// holds it.
pub(crate) fn take(
    target: &Target,
    mut client: Client,
    filter: &TableFilter,
    lock_timeout: Duration,
    mut from: Option<ExportFrom<'_>>,
) -> Result<Source> {
    let standby: bool = client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .context("asking the source whether it is a standby")?
        .get(0);
    let mut findings = Vec::new();
    // The first look at the catalog is outside the snapshot's transaction, so the tables can
    // be locked before the snapshot is taken.
    let mut to_lock = lockable(&mut client, filter)?;
    for _ in 0..TRIES {
        client
            .batch_execute(BEGIN_READ_ONLY)
            .context("starting the source snapshot transaction")?;
        match attempt(
            target,
            &mut client,
            filter,
            &to_lock,
            lock_timeout,
            &mut findings,
            &mut from,
        ) {
            Ok(Attempt::Taken { id, mut tables }) => {
                catalog::sizes(&mut client, &mut tables)?;
                return Ok(Source {
                    snapshot: Snapshot { client, id },
                    tables,
                    standby,
                    findings,
                });
            }
            Ok(Attempt::Rewritten(tables)) => {
                client.batch_execute("ROLLBACK")?;
                to_lock = tables.into_iter().filter(|t| t.readable).collect();
            }
            Err(err) if dropped_meanwhile(&err) => {
                client.batch_execute("ROLLBACK")?;
                to_lock = lockable(&mut client, filter)?;
            }
            Err(err) => return Err(err),
        }
    }
    bail!(
        "source tables kept being truncated, rewritten or dropped by other sessions while \
         pgcopy took its snapshot ({TRIES} tries); nothing was changed: try again when they \
         are quiet"
    )
}

/// How one try at the snapshot went.
enum Attempt {
    /// The snapshot, and the tables selected in it, all locked.
    Taken { id: SnapshotId, tables: Vec<Table> },
    /// Some of these tables were rewritten before they were locked: try again, locking
    /// them all first.
    Rewritten(Vec<Table>),
}

/// One try in the open transaction: lock `to_lock`, take and export the snapshot, select the
/// tables in it, lock those that appeared meanwhile, and check that none was rewritten.
fn attempt(
    target: &Target,
    client: &mut Client,
    filter: &TableFilter,
    to_lock: &[Table],
    lock_timeout: Duration,
    findings: &mut Vec<String>,
    from: &mut Option<ExportFrom<'_>>,
) -> Result<Attempt> {
    // LOCK does not take the transaction's snapshot; the first query after it does.
    findings.extend(lock(target, client, to_lock, lock_timeout)?);
    let imported = from.is_some();
    if let Some(from) = from {
        let names: Vec<TableName> = to_lock.iter().map(|t| t.name.clone()).collect();
        let exported = from(&names)?;
        client
            .batch_execute(&format!(
                "SET TRANSACTION SNAPSHOT {}",
                quote_literal(&exported.0)
            ))
            .context("importing the replication slot's snapshot")?;
    }
    let id = SnapshotId(
        client
            .query_one("SELECT pg_export_snapshot()", &[])
            .context("exporting the source snapshot")?
            .get(0),
    );
    let tables = plan::select(&catalog::tables(client)?, filter)?;
    let locked: HashSet<u32> = to_lock.iter().map(|t| t.oid).collect();
    let late: Vec<Table> = tables
        .iter()
        .filter(|t| t.readable && !locked.contains(&t.oid))
        .cloned()
        .collect();
    if imported && !late.is_empty() {
        // Not in the slot's publication: their changes since the slot would be lost.
        let names = join_names(&late.iter().map(|t| t.name.clone()).collect::<Vec<_>>());
        findings.push(format!(
            "made a new slot: {names} appeared while the first was made"
        ));
        return Ok(Attempt::Rewritten(tables));
    }
    findings.extend(lock(target, client, &late, lock_timeout)?);
    let oids: Vec<u32> = tables.iter().map(|t| t.oid).collect();
    let rewritten = catalog::rewritten(client, &oids)?;
    if rewritten.is_empty() {
        return Ok(Attempt::Taken { id, tables });
    }
    let names = join_names(&rewritten);
    log::warn!(
        "{names}: truncated or rewritten by another session after pgcopy's snapshot was \
         taken, so that snapshot no longer sees their rows; taking a new one"
    );
    findings.push(format!(
        "took a new snapshot: {names} had been truncated or rewritten after the first"
    ));
    Ok(Attempt::Rewritten(tables))
}

/// The tables `filter` selects that the role may lock: locking needs `SELECT` on the table,
/// and those it may not read are refused later, by name (see `refusals`).
fn lockable(client: &mut Client, filter: &TableFilter) -> Result<Vec<Table>> {
    let tables = plan::wanted(&catalog::tables(client)?, filter);
    Ok(tables.into_iter().filter(|t| t.readable).collect())
}

/// A table named in the lock statement no longer exists (dropped or renamed between the
/// first look at the catalog and the lock).
fn dropped_meanwhile(err: &anyhow::Error) -> bool {
    crate::pg::error::sqlstate(err) == Some(SqlState::UNDEFINED_TABLE)
}

/// Locks `tables` `ACCESS SHARE` in the open transaction. Without waiting if it can; else
/// it says whom it waits for and waits at most `timeout` in all. Returns what it waited for.
fn lock(
    target: &Target,
    client: &mut Client,
    tables: &[Table],
    timeout: Duration,
) -> Result<Option<String>> {
    if tables.is_empty() {
        return Ok(None);
    }
    // ONLY: an inheritance parent's children are tables of their own, locked if selected.
    let names: Vec<String> = tables
        .iter()
        .map(|t| format!("ONLY {}", t.name.quoted()))
        .collect();
    let statement = format!("LOCK TABLE {} IN ACCESS SHARE MODE", names.join(", "));
    log::debug!("source: {statement}");
    let no_wait = format!("SAVEPOINT pgcopy_locks; {statement} NOWAIT; RELEASE pgcopy_locks");
    match client.batch_execute(&no_wait) {
        Ok(()) => return Ok(None),
        Err(err) if err.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {}
        Err(err) => return Err(err).context("locking the source tables"),
    }
    client.batch_execute("ROLLBACK TO SAVEPOINT pgcopy_locks")?;
    let oids: Vec<u32> = tables.iter().map(|t| t.oid).collect();
    let holders = lock_holders(target, &oids);
    log::warn!(
        "waiting up to {}s (--lock-timeout) for locks on the source: {holders}",
        timeout.as_secs()
    );
    let started = Instant::now();
    // Both limits: lock_timeout bounds each table's wait, statement_timeout all of them.
    let ms = timeout.as_millis();
    let wait = format!(
        "SET LOCAL lock_timeout = {ms}; SET LOCAL statement_timeout = {ms};
         {statement};
         SET LOCAL lock_timeout = 0; SET LOCAL statement_timeout = 0;
         RELEASE pgcopy_locks"
    );
    match client.batch_execute(&wait) {
        Ok(()) => Ok(Some(format!(
            "waited {:.1}s for locks on the source: {holders}",
            started.elapsed().as_secs_f64()
        ))),
        Err(err)
            if matches!(
                err.code(),
                Some(&SqlState::LOCK_NOT_AVAILABLE) | Some(&SqlState::QUERY_CANCELED)
            ) =>
        {
            bail!(
                "could not lock the source tables to copy within --lock-timeout {}s: {}; \
                 nothing was changed (pgcopy holds ACCESS SHARE on each table it copies, as \
                 pg_dump does, so that no TRUNCATE or rewrite can empty it under the copy: \
                 wait for that session, or raise --lock-timeout)",
                timeout.as_secs(),
                lock_holders(target, &oids)
            )
        }
        Err(err) => Err(err).context("locking the source tables"),
    }
}

/// Who holds or waits for an `ACCESS EXCLUSIVE` lock on any of `oids` (the one mode that
/// conflicts with `ACCESS SHARE`; a waiter counts because a later request queues behind it),
/// asked on a session of its own: the snapshot's session must not run a query before its
/// locks are granted. Best effort: says "another session" when it cannot tell.
fn lock_holders(target: &Target, oids: &[u32]) -> String {
    let ask = || -> Result<Vec<String>> {
        let mut client = target.connect()?;
        let rows = client.query(
            "SELECT n.nspname, c.relname, l.pid, l.granted, a.usename::text,
                    a.application_name, a.state, left(a.query, 200)
             FROM pg_catalog.pg_locks l
             JOIN pg_catalog.pg_class c ON c.oid = l.relation
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
             WHERE l.locktype = 'relation' AND l.mode = 'AccessExclusiveLock'
               AND l.relation = ANY($1) AND l.pid <> pg_backend_pid()
               AND l.database = (SELECT oid FROM pg_catalog.pg_database
                                 WHERE datname = current_database())
             ORDER BY 1, 2, 3",
            &[&oids],
        )?;
        Ok(rows
            .iter()
            .map(|row| {
                let table = TableName::new(row.get::<_, String>(0), row.get::<_, String>(1));
                let pid: i32 = row.get(2);
                let granted: bool = row.get(3);
                let user: Option<String> = row.get(4);
                let app: Option<String> = row.get(5);
                let state: Option<String> = row.get(6);
                let query: Option<String> = row.get(7);
                let mut text = format!(
                    "{table} {} ACCESS EXCLUSIVE by pid {pid}",
                    if granted { "held in" } else { "wanted in" }
                );
                let who: Vec<String> = [
                    user.map(|u| format!("user {u}")),
                    app.filter(|a| !a.is_empty())
                        .map(|a| format!("application {a}")),
                    state,
                ]
                .into_iter()
                .flatten()
                .collect();
                if !who.is_empty() {
                    text.push_str(&format!(" ({})", who.join(", ")));
                }
                if let Some(query) = query.filter(|q| !q.is_empty()) {
                    text.push_str(&format!(", last statement: {}", one_line(&query)));
                }
                text
            })
            .collect())
    };
    match ask() {
        Ok(found) if !found.is_empty() => found.join("; "),
        _ => "another session holds or waits for an exclusive lock on one of them".into(),
    }
}

/// A statement on one line, shortened.
fn one_line(sql: &str) -> String {
    let words: Vec<&str> = sql.split_whitespace().collect();
    let text = words.join(" ");
    match text.char_indices().nth(120) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

fn join_names(tables: &[TableName]) -> String {
    tables
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the source side refuses before anything is changed: tables the role may not read,
/// tables row-level security would filter for it (it would copy only the rows its policies
/// show), and unlogged tables of a standby (a standby has no rows for them). One paragraph
/// per kind, naming the tables and the ways out.
pub(crate) fn refusals(tables: &[Table], standby: bool, target: &Target) -> Vec<String> {
    let mut found = Vec::new();
    let mut refuse = |applies: &dyn Fn(&Table) -> bool, why: String, way_out: &str| {
        let names: Vec<String> = tables
            .iter()
            .filter(|t| applies(t))
            .map(|t| t.name.to_string())
            .collect();
        if !names.is_empty() {
            found.push(format!("{why}:\n  {}\n{way_out}", names.join("\n  ")));
        }
    };
    refuse(
        &|t| !t.readable,
        format!(
            "{target} may not read these source tables (permission denied: it needs SELECT on \
             each, which also lets pgcopy lock them for the copy)"
        ),
        "GRANT SELECT on them to the role, or leave them out with --exclude-tables",
    );
    refuse(
        &|t| t.policies_apply,
        format!(
            "row-level security lets {target} read only some rows of these source tables; \
             copying them would copy only those"
        ),
        "copy as a role with BYPASSRLS (or a superuser), or as the tables' owner where they \
         do not FORCE ROW LEVEL SECURITY, or leave them out with --exclude-tables",
    );
    refuse(
        &|t| standby && t.unlogged,
        "the source is a standby, and a standby has no rows for unlogged tables (they are not \
         replicated)"
            .into(),
        "copy them from the primary, or leave them out with --exclude-tables",
    );
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str, readable: bool, policies_apply: bool, unlogged: bool) -> Table {
        Table {
            oid: 0,
            name: TableName::new("public", name),
            parent: None,
            partitioned: false,
            estimated_rows: None,
            data_bytes: 0,
            total_bytes: 0,
            unlogged,
            policies_apply,
            readable,
            extension_rows: None,
            inherits: None,
        }
    }

    #[test]
    fn refuses_each_kind_of_table_in_a_paragraph_of_its_own() {
        let target = Target::parse("postgres://app@db/prod").unwrap();
        let tables = [
            table("fine", true, false, false),
            table("secret", false, false, false),
            table("tenants", true, true, false),
            table("scratch", true, false, true),
        ];
        let on_primary = refusals(&tables, false, &target);
        assert_eq!(on_primary.len(), 2, "{on_primary:?}");
        assert!(on_primary[0].starts_with("app@db:5432/prod may not read"));
        assert!(on_primary[0].contains(":\n  public.secret\nGRANT SELECT"));
        assert!(on_primary[1].contains(":\n  public.tenants\ncopy as a role with BYPASSRLS"));
        let on_standby = refusals(&tables, true, &target);
        assert_eq!(on_standby.len(), 3);
        assert!(on_standby[2].contains("standby"));
        assert!(on_standby[2].contains("\n  public.scratch\n"));
        assert!(refusals(&tables[..1], true, &target).is_empty());
    }

    #[test]
    fn shortens_statements_to_one_line() {
        assert_eq!(one_line("TRUNCATE\n    etl ;"), "TRUNCATE etl ;");
        let long = "x".repeat(200);
        assert_eq!(one_line(&long).chars().count(), 121);
    }
}
