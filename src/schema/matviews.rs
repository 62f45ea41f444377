//! Materialized views on the destination that are built from copied tables: found while
//! planning, refreshed after the load, in dependency order, so the destination does not
//! keep answering from the data it had before (a data-only restore leaves them stale).

use crate::pg::error::db_error;
use crate::pg::sql::{name_arrays, TableName};
use anyhow::{Context, Result};
use postgres::Client;
use std::collections::HashSet;
use std::time::Duration;

/// A materialized view to refresh after the load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MatView {
    pub(crate) name: TableName,
    /// The copied tables it is built from, directly or through views.
    pub(crate) tables: Vec<TableName>,
}

/// The materialized views of the source that hold data (a view never refreshed there is
/// left as the destination has it).
pub(crate) fn populated(source: &mut Client) -> Result<HashSet<TableName>> {
    let rows = source
        .query(
            "SELECT n.nspname, c.relname FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind = 'm' AND c.relispopulated",
            &[],
        )
        .context("listing the source's materialized views")?;
    Ok(rows
        .iter()
        .map(|row| TableName::new(row.get::<_, String>(0), row.get::<_, String>(1)))
        .collect())
}

/// The destination's materialized views built from any of `tables` (through other views
/// and materialized views too) that `wanted` holds, in an order that refreshes a view after
/// the views it is built from. Those the role does not own, and so may not refresh, are
/// left out with a warning.
pub(crate) fn dependents(
    dest: &mut Client,
    tables: &[TableName],
    wanted: &HashSet<TableName>,
) -> Result<Vec<MatView>> {
    let (schemas, names) = name_arrays(tables);
    let rows = dest
        .query(
            "WITH RECURSIVE copied AS (
                 SELECT c.oid, n.nspname, c.relname
                 FROM unnest($1::text[], $2::text[]) AS want(schema_name, table_name)
                 JOIN pg_namespace n ON n.nspname = want.schema_name
                 JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = want.table_name
             ), built_from(view, source, depth) AS (
                 SELECT r.ev_class, copied.oid, 1
                 FROM copied
                 JOIN pg_depend d ON d.refclassid = 'pg_class'::regclass
                                 AND d.refobjid IN (SELECT copied.oid
                                                    UNION ALL
                                                    SELECT pg_partition_ancestors(copied.oid))
                                 AND d.classid = 'pg_rewrite'::regclass
                 JOIN pg_rewrite r ON r.oid = d.objid
               UNION
                 SELECT r.ev_class, b.source, b.depth + 1
                 FROM built_from b
                 JOIN pg_depend d ON d.refclassid = 'pg_class'::regclass
                                 AND d.refobjid = b.view
                                 AND d.classid = 'pg_rewrite'::regclass
                 JOIN pg_rewrite r ON r.oid = d.objid
                 WHERE r.ev_class <> b.view AND b.depth < 100
             )
             SELECT n.nspname, v.relname, pg_has_role(v.relowner, 'USAGE') AS owned,
                    array_agg(copied.nspname ORDER BY copied.nspname, copied.relname)
                      AS table_schemas,
                    array_agg(copied.relname ORDER BY copied.nspname, copied.relname)
                      AS table_names
             FROM built_from b
             JOIN pg_class v ON v.oid = b.view AND v.relkind = 'm'
             JOIN pg_namespace n ON n.oid = v.relnamespace
             JOIN copied ON copied.oid = b.source
             GROUP BY n.nspname, v.relname, v.relowner
             ORDER BY max(b.depth), 1, 2",
            &[&schemas, &names],
        )
        .context("finding the destination's materialized views built from copied tables")?;
    let mut views = Vec::new();
    for row in rows {
        let name = TableName::new(row.get::<_, String>(0), row.get::<_, String>(1));
        if !wanted.contains(&name) {
            continue;
        }
        if !row.get::<_, bool>("owned") {
            log::warn!(
                "materialized view {name} is built from copied tables, but the destination \
                 role does not own it, so it is not refreshed: REFRESH MATERIALIZED VIEW as its \
                 owner after the copy"
            );
            continue;
        }
        let schemas: Vec<String> = row.get("table_schemas");
        let names: Vec<String> = row.get("table_names");
        let mut tables: Vec<TableName> = schemas
            .into_iter()
            .zip(names)
            .map(|(s, n)| TableName::new(s, n))
            .collect();
        tables.dedup();
        views.push(MatView { name, tables });
    }
    Ok(views)
}

/// Refreshes the views in order, each in a transaction of its own that waits at most
/// `lock_timeout` for the view's readers. Returns how many were refreshed, and why the
/// others were not.
pub(crate) fn refresh(
    dest: &mut Client,
    views: &[MatView],
    lock_timeout: Duration,
) -> (usize, Vec<String>) {
    let mut refreshed = 0;
    let mut problems = Vec::new();
    for view in views {
        let sql = format!(
            "BEGIN;
             SET LOCAL lock_timeout = {};
             REFRESH MATERIALIZED VIEW {};
             COMMIT",
            lock_timeout.as_millis(),
            view.name.quoted()
        );
        log::debug!(
            "destination: REFRESH MATERIALIZED VIEW {}",
            view.name.quoted()
        );
        match dest.batch_execute(&sql) {
            Ok(()) => refreshed += 1,
            Err(err) => {
                // The failed transaction must end before the next statement.
                let _ = dest.batch_execute("ROLLBACK");
                problems.push(format!(
                    "materialized view {} could not be refreshed: {}",
                    view.name,
                    db_error(&err)
                ));
            }
        }
    }
    if refreshed > 0 {
        log::info!("refreshed {refreshed} materialized views");
    }
    (refreshed, problems)
}
