//! The foreign keys a subset follows: the source's (keys declared on leaf partitions lifted
//! to their partitioned table), the rules' declared ones checked against the catalog, and
//! the copied tables as subsets see them.

use crate::pg::sql::{display_ident, TableName};
use crate::plan::Plan;
use crate::rules::subset::DeclaredKey;
use anyhow::{Context, Result};
use postgres::Client;
use std::collections::BTreeMap;

/// A foreign key between two of the copied tables (each named as its partitioned table
/// where it is a partition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Edge {
    pub(crate) child: TableName,
    pub(crate) columns: Vec<String>,
    pub(crate) parent: TableName,
    pub(crate) referenced: Vec<String>,
}

/// The copied tables as subsets and masks see them: a partition as its partitioned table
/// (true), another table as itself (false).
pub(crate) fn logical_tables(plan: &Plan) -> BTreeMap<TableName, bool> {
    let mut logical = BTreeMap::new();
    for table in &plan.tables {
        match &table.parent {
            Some(root) => logical.insert(root.clone(), true),
            None => logical.insert(table.name.clone(), false),
        };
    }
    logical
}

/// The foreign keys between the copied tables that subsets and masks follow: the source's
/// and those the rules declare, each between logical tables (see `logical_tables`): a key
/// declared on a partition (as pagila declares payment's, on each leaf) is its partitioned
/// table's, which every leaf's rows keep to. A declared key that names a table or column
/// the copy lacks comes back as a refusal.
pub(crate) fn edges(
    client: &mut Client,
    plan: &Plan,
    declared: &[DeclaredKey],
    leaves: &BTreeMap<TableName, Vec<TableName>>,
) -> Result<(Vec<Edge>, Vec<String>)> {
    let logical = logical_tables(plan);
    let root_of: BTreeMap<TableName, TableName> = leaves
        .iter()
        .flat_map(|(root, leaves)| leaves.iter().map(move |leaf| (leaf.clone(), root.clone())))
        .collect();
    let logical_name = |name: &TableName| root_of.get(name).unwrap_or(name).clone();
    let mut refusals = Vec::new();
    let mut edges = Vec::new();
    let found = foreign_keys(client)?;
    let declared =
        declared
            .iter()
            .filter_map(|key| match check_declared(key, plan, &logical, &root_of) {
                Ok(()) => Some(Edge {
                    child: key.table.clone(),
                    columns: key.columns.clone(),
                    parent: key.references.clone(),
                    referenced: key.referenced.clone(),
                }),
                Err(why) => {
                    refusals.push(why);
                    None
                }
            });
    let all: Vec<Edge> = found.into_iter().chain(declared).collect();
    for edge in all {
        let edge = Edge {
            child: logical_name(&edge.child),
            parent: logical_name(&edge.parent),
            ..edge
        };
        if logical.contains_key(&edge.child)
            && logical.contains_key(&edge.parent)
            && !edges.contains(&edge)
        {
            edges.push(edge);
        }
    }
    Ok((edges, refusals))
}

/// The table's primary key columns, none without one.
pub(super) fn primary_key(client: &mut Client, table: &TableName) -> Result<Vec<String>> {
    let rows = client
        .query(
            "SELECT a.attname
             FROM pg_catalog.pg_index i
             CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)
             JOIN pg_catalog.pg_attribute a
               ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             WHERE i.indrelid = $1::text::regclass AND i.indisprimary
             ORDER BY k.n",
            &[&table.quoted()],
        )
        .with_context(|| format!("reading the primary key of {table}"))?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// The source's foreign keys, each declared on its own table (a partitioned table's, not
/// the copies its partitions get of it); not one declared `NOT ENFORCED` (PostgreSQL 18),
/// which the data need not keep and the destination does not check.
pub(super) fn foreign_keys(client: &mut Client) -> Result<Vec<Edge>> {
    let enforced = if crate::pg::server::version(client)? >= 180000 {
        "AND f.conenforced"
    } else {
        ""
    };
    let rows = client
        .query(
            &format!(
                "SELECT cn.nspname, c.relname, array_agg(ca.attname ORDER BY k.n),
                    pn.nspname, p.relname, array_agg(pa.attname ORDER BY k.n)
             FROM pg_catalog.pg_constraint f
             CROSS JOIN LATERAL unnest(f.conkey, f.confkey) WITH ORDINALITY AS k(ck, pk, n)
             JOIN pg_catalog.pg_class c ON c.oid = f.conrelid
             JOIN pg_catalog.pg_namespace cn ON cn.oid = c.relnamespace
             JOIN pg_catalog.pg_attribute ca ON ca.attrelid = c.oid AND ca.attnum = k.ck
             JOIN pg_catalog.pg_class p ON p.oid = f.confrelid
             JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace
             JOIN pg_catalog.pg_attribute pa ON pa.attrelid = p.oid AND pa.attnum = k.pk
             WHERE f.contype = 'f' AND f.conparentid = 0 {enforced}
             GROUP BY f.oid, f.conname, cn.nspname, c.relname, pn.nspname, p.relname
             ORDER BY cn.nspname, c.relname, f.conname"
            ),
            &[],
        )
        .context("reading the source's foreign keys")?;
    Ok(rows
        .iter()
        .map(|row| Edge {
            child: TableName::new(row.get::<_, String>(0), row.get::<_, String>(1)),
            columns: row.get(2),
            parent: TableName::new(row.get::<_, String>(3), row.get::<_, String>(4)),
            referenced: row.get(5),
        })
        .collect())
}

/// Whether a declared key names copied tables (or their partitions: `root_of`) and their
/// columns.
pub(super) fn check_declared(
    key: &DeclaredKey,
    plan: &Plan,
    logical: &BTreeMap<TableName, bool>,
    root_of: &BTreeMap<TableName, TableName>,
) -> std::result::Result<(), String> {
    for (table, columns) in [
        (&key.table, &key.columns),
        (&key.references, &key.referenced),
    ] {
        if !logical.contains_key(root_of.get(table).unwrap_or(table)) {
            return Err(format!(
                "the rules declare a foreign key of {} to {}, but {table} is not copied (or \
                 not on the source)",
                key.table, key.references
            ));
        }
        let planned = plan
            .tables
            .iter()
            .find(|t| &t.name == table || t.parent.as_ref() == Some(table))
            .expect("a logical table has a planned table");
        for column in columns {
            let known = planned.columns.iter().any(|c| &c.name == column)
                || planned.generated.contains(column);
            if !known {
                return Err(format!(
                    "the rules declare a foreign key on {table}.{}, a column it does not have",
                    display_ident(column)
                ));
            }
        }
    }
    if key.columns.len() != key.referenced.len() || key.columns.is_empty() {
        return Err(format!(
            "the rules' foreign key of {} to {} needs as many referenced columns as columns",
            key.table, key.references
        ));
    }
    Ok(())
}
