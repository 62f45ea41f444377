//! The destination's record of how far following got, written in the same commit as what
//! was applied: a replication origin where the destination role may use one (as
//! PostgreSQL's own subscriptions keep theirs), else a row of `pgcopy.follow_progress`, a
//! table pgcopy makes for a role without those privileges and drops again at the end. A
//! copy that replaces the destination's data voids a stopped follower's record
//! (`forget_replaced`), and the chunks its initial copy recorded (`plan::chunks`).

use crate::pg::server::Identity;
use crate::pg::sql::{display_ident, quote_literal};
use crate::plan::chunks;
use crate::replication::decode::Lsn;
use crate::replication::slot::{parse_lsn, LsnText};
use crate::schema::own::{self, CAN_MAKE_TABLE, SCHEMA};
use anyhow::{Context, Result};
use postgres::Client;

/// The table a role without replication origins keeps its progress in (in pgcopy's own
/// schema, `schema::own`).
pub(crate) const TABLE: &str = "pgcopy.follow_progress";

/// Where the progress is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ledger {
    /// A replication origin named after the slot.
    Origin,
    /// A row of `pgcopy.follow_progress` keyed by the slot's name.
    Table,
}

impl Ledger {
    /// Which ledger the destination role can keep, or why it can keep neither.
    pub(crate) fn choose(dest: &mut Client) -> Result<std::result::Result<Ledger, String>> {
        let row = dest
            .query_one(
                &format!(
                    "SELECT has_function_privilege('pg_catalog.pg_replication_origin_create(text)',
                                               'EXECUTE')
                    -- Before 14 the functions run for superusers only, whoever may call them.
                    AND (current_setting('server_version_num')::int >= 140000
                         OR (SELECT rolsuper FROM pg_catalog.pg_roles
                             WHERE rolname = current_user))
                    AND has_function_privilege(
                            'pg_catalog.pg_replication_origin_session_setup(text)', 'EXECUTE')
                    AND has_function_privilege(
                            'pg_catalog.pg_replication_origin_xact_setup(pg_lsn, timestamptz)',
                            'EXECUTE'),
                        {CAN_MAKE_TABLE},
                        current_user::text, current_database()::text"
                ),
                &[&TABLE],
            )
            .context("asking the destination where following may record its progress")?;
        if row.get::<_, bool>(0) {
            return Ok(Ok(Ledger::Origin));
        }
        if row.get::<_, bool>(1) {
            return Ok(Ok(Ledger::Table));
        }
        let role = display_ident(row.get(2));
        let database = display_ident(row.get(3));
        Ok(Err(format!(
            "--follow records how far it applied on the destination, in the same commit: in a \
             replication origin, which the role {role} may not use (a superuser may, or a role \
             granted EXECUTE on the pg_replication_origin_* functions), or else in the table \
             {TABLE}, which it may not create: `GRANT CREATE ON DATABASE {database} TO \
             {role}`, or `CREATE SCHEMA {SCHEMA} AUTHORIZATION {role}`"
        )))
    }

    /// Records that the destination holds every source transaction before `at`.
    pub(crate) fn create(self, dest: &mut Client, name: &str, at: Lsn) -> Result<()> {
        let at = LsnText(at).to_string();
        match self {
            Ledger::Origin => dest.batch_execute(&format!(
                "SELECT pg_catalog.pg_replication_origin_create({name});
                 SELECT pg_catalog.pg_replication_origin_advance({name}, {at}::pg_lsn)",
                name = quote_literal(name),
                at = quote_literal(&at),
            )),
            Ledger::Table => {
                let mut tx = dest.transaction()?;
                own::ensure(&mut tx)?;
                tx.batch_execute(&format!(
                    "CREATE TABLE IF NOT EXISTS {TABLE} (
                         slot text PRIMARY KEY,
                         lsn pg_lsn NOT NULL,
                         committed timestamptz);
                     COMMENT ON TABLE {TABLE} IS 'how far pgcopy copy --follow applied the \
                     source; dropped at cutover or by pgcopy abandon'"
                ))?;
                tx.execute(
                    &format!(
                        "INSERT INTO {TABLE} (slot, lsn) VALUES ($1, $2::text::pg_lsn)
                         ON CONFLICT (slot) DO UPDATE SET lsn = excluded.lsn, committed = NULL"
                    ),
                    &[&name, &at],
                )?;
                tx.commit()
            }
        }
        .with_context(|| format!("recording on the destination where following {name} starts"))
    }

    /// The statement an apply session runs once before it applies anything.
    pub(crate) fn session_setup(self, name: &str) -> String {
        match self {
            Ledger::Origin => format!(
                "SELECT pg_catalog.pg_replication_origin_session_setup({})",
                quote_literal(name)
            ),
            Ledger::Table => String::new(),
        }
    }

    /// The statement that records, inside the applied transaction, that it holds everything
    /// up to `$1` (an LSN as text), committed at `$2` (microseconds since 2000, as text) on
    /// the source; the table's also takes the slot's name as `$3` and must update one row.
    pub(crate) fn record_sql(self) -> String {
        const COMMITTED: &str = "'2000-01-01 00:00:00+00'::timestamptz
                     + $2::text::bigint * interval '1 microsecond'";
        match self {
            Ledger::Origin => format!(
                "SELECT pg_catalog.pg_replication_origin_xact_setup($1::text::pg_lsn, \
                 {COMMITTED})"
            ),
            Ledger::Table => format!(
                "UPDATE {TABLE} SET lsn = $1::text::pg_lsn, committed = {COMMITTED} \
                 WHERE slot = $3"
            ),
        }
    }
}

/// Where the destination is, and which ledger says so: the end of the last source
/// transaction it committed; `None` when neither knows of `name`.
pub(crate) fn find(dest: &mut Client, name: &str) -> Result<Option<(Ledger, Lsn)>> {
    // Only a role that may use origins may ask for one's progress, even of none.
    let row = dest
        .query_one(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_replication_origin WHERE roname = $1),
                    to_regclass($2) IS NOT NULL",
            &[&name, &TABLE],
        )
        .context("reading how far the destination followed")?;
    if row.get::<_, bool>(0) {
        let lsn: Option<String> = dest
            .query_one(
                "SELECT pg_catalog.pg_replication_origin_progress($1, true)::text",
                &[&name],
            )
            .with_context(|| format!("reading the replication origin {name}"))?
            .get(0);
        let at = lsn.as_deref().map_or(Ok(0), parse_lsn)?;
        return Ok(Some((Ledger::Origin, at)));
    }
    if !row.get::<_, bool>(1) {
        return Ok(None);
    }
    let lsn: Option<String> = dest
        .query_opt(
            &format!("SELECT lsn::text FROM {TABLE} WHERE slot = $1"),
            &[&name],
        )
        .with_context(|| format!("reading {TABLE}"))?
        .map(|row| row.get(0));
    lsn.map(|lsn| Ok((Ledger::Table, parse_lsn(&lsn)?)))
        .transpose()
}

/// Forgets `name` in either ledger; the table goes when no follower is left in it, and the
/// schema with it if pgcopy made it and nothing else is in it. Returns where the record
/// said the destination was, if there was one.
pub(crate) fn forget(dest: &mut Client, name: &str) -> Result<Option<Lsn>> {
    // The chunks its initial copy recorded go with it.
    chunks::forget(dest, name)?;
    let found = find(dest, name)?;
    match found {
        Some((Ledger::Origin, _)) => {
            dest.execute("SELECT pg_catalog.pg_replication_origin_drop($1)", &[&name])
                .with_context(|| format!("dropping the replication origin {name}"))?;
        }
        Some((Ledger::Table, _)) => {
            own::forget_rows(dest, TABLE, name)?;
            own::drop_if_made_here(dest)?;
        }
        None => {}
    }
    Ok(found.map(|(_, at)| at))
}

/// Before a copy without `--follow` replaces the destination's data: a follower that
/// stopped there cannot go on from where it was (it would apply again what this copy
/// brings), so its record of how far it got goes. A `--resume` then starts over.
pub(crate) fn forget_replaced(dest: &mut Client) -> Result<()> {
    let name = crate::replication::slot::name_for(&Identity::read(dest)?.key());
    let Some((_, at)) = find(dest, &name)? else {
        // A follower stopped during its chunked copy: what it copied is replaced.
        return chunks::forget(dest, &name);
    };
    forget(dest, &name)?;
    log::warn!(
        "this destination was following a source up to {} (the follower {name}, stopped): \
         this copy replaces its data, so that follower's record of its progress is dropped, \
         and `pgcopy copy --follow --resume` starts over with a new copy; `pgcopy abandon` \
         drops its slot on the source",
        LsnText(at)
    );
    Ok(())
}
