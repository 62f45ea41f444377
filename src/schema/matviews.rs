//! Materialized views on the destination that are built from copied tables, or that the
//! source has populated and the destination does not (a schema from `pg_dump --schema-only`
//! creates every one `WITH NO DATA`): found while planning, refreshed after the load, in
//! dependency order, so the destination does not keep answering from the data it had
//! before (a data-only restore leaves them stale), nor refuse to answer at all.

use crate::pg::error::db_error;
use crate::pg::sql::{name_arrays, TableName};
use anyhow::{Context, Result};
use postgres::Client;
use std::collections::{HashMap, HashSet};
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

/// The destination's materialized views that `wanted` holds (the source's populated ones)
/// and that are built from any of `tables` (through other views and materialized views
/// too) or are not populated on the destination, in an order that refreshes a view after
/// the materialized views it is built from. Those the role does not own, and so may not
/// refresh, are left out with a warning.
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
    let all = all_views(dest)?;
    for (name, view) in &all {
        if wanted.contains(name) && !view.populated && !views.iter().any(|v| &v.name == name) {
            if view.owned {
                views.push(MatView {
                    name: name.clone(),
                    tables: Vec::new(),
                });
            } else {
                log::warn!(
                    "materialized view {name} is populated on the source but not on the \
                     destination, whose role does not own it, so it stays unpopulated: \
                     REFRESH MATERIALIZED VIEW as its owner after the copy"
                );
            }
        }
    }
    Ok(in_dependency_order(views, &all))
}

/// A destination materialized view, as ordering and choosing them needs it.
struct ViewFacts {
    populated: bool,
    owned: bool,
    /// The materialized views it is built from, directly or through plain views.
    built_from: Vec<TableName>,
}

/// Every materialized view of the destination.
fn all_views(dest: &mut Client) -> Result<HashMap<TableName, ViewFacts>> {
    let rows = dest
        .query(
            "WITH RECURSIVE uses(view, used, depth) AS (
                 SELECT r.ev_class, d.refobjid, 1
                 FROM pg_rewrite r
                 JOIN pg_class c ON c.oid = r.ev_class AND c.relkind = 'm'
                 JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                                 AND d.refclassid = 'pg_class'::regclass
                                 AND d.refobjid <> r.ev_class
               UNION
                 SELECT u.view, d.refobjid, u.depth + 1
                 FROM uses u
                 JOIN pg_class v ON v.oid = u.used AND v.relkind = 'v'
                 JOIN pg_rewrite r ON r.ev_class = v.oid
                 JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                                 AND d.refclassid = 'pg_class'::regclass
                                 AND d.refobjid <> v.oid
                 WHERE u.depth < 100
             )
             SELECT n.nspname, c.relname, c.relispopulated,
                    pg_has_role(c.relowner, 'USAGE') AS owned,
                    coalesce(array_agg(mn.nspname) FILTER (WHERE m.oid IS NOT NULL), '{}')
                      AS used_schemas,
                    coalesce(array_agg(m.relname) FILTER (WHERE m.oid IS NOT NULL), '{}')
                      AS used_names
             FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             LEFT JOIN uses u ON u.view = c.oid
             LEFT JOIN pg_class m ON m.oid = u.used AND m.relkind = 'm' AND m.oid <> c.oid
             LEFT JOIN pg_namespace mn ON mn.oid = m.relnamespace
             WHERE c.relkind = 'm'
             GROUP BY n.nspname, c.relname, c.relispopulated, c.relowner",
            &[],
        )
        .context("reading the destination's materialized views")?;
    Ok(rows
        .iter()
        .map(|row| {
            let name = TableName::new(row.get::<_, String>(0), row.get::<_, String>(1));
            let schemas: Vec<String> = row.get("used_schemas");
            let names: Vec<String> = row.get("used_names");
            let facts = ViewFacts {
                populated: row.get(2),
                owned: row.get("owned"),
                built_from: schemas
                    .into_iter()
                    .zip(names)
                    .map(|(s, n)| TableName::new(s, n))
                    .collect(),
            };
            (name, facts)
        })
        .collect())
}

/// `views` ordered so that each comes after the ones of them it is built from, otherwise
/// in the order given.
fn in_dependency_order(views: Vec<MatView>, all: &HashMap<TableName, ViewFacts>) -> Vec<MatView> {
    let chosen: HashSet<TableName> = views.iter().map(|v| v.name.clone()).collect();
    let mut placed: HashSet<TableName> = HashSet::new();
    let mut left = views;
    let mut ordered = Vec::new();
    while !left.is_empty() {
        let ready = |v: &MatView| {
            all.get(&v.name).is_none_or(|f| {
                f.built_from
                    .iter()
                    .all(|d| !chosen.contains(d) || placed.contains(d) || d == &v.name)
            })
        };
        // A cycle cannot be made with materialized views; should one appear, keep order.
        let next = left.iter().position(ready).unwrap_or(0);
        let view = left.remove(next);
        placed.insert(view.name.clone());
        ordered.push(view);
    }
    ordered
}

/// Refreshes the views in order, each in a transaction of its own that waits at most
/// `lock_timeout` for the view's readers, and with `analyze` analyzes it after: its
/// statistics describe what it held before (a restore of production, say) until then.
/// Returns how many were refreshed, and why the others were not.
pub(crate) fn refresh(
    dest: &mut Client,
    views: &[MatView],
    lock_timeout: Duration,
    analyze: bool,
) -> (usize, Vec<String>) {
    let mut refreshed = 0;
    let mut problems = Vec::new();
    for view in views {
        let sql = format!(
            "BEGIN;
             SET LOCAL lock_timeout = {};
             REFRESH MATERIALIZED VIEW {view};
             COMMIT{analyze}",
            lock_timeout.as_millis(),
            view = view.name.quoted(),
            analyze = if analyze {
                format!("; ANALYZE {}", view.name.quoted())
            } else {
                String::new()
            }
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
