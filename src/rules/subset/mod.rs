//! Subsets (`[subset."schema.table"]` in the rules file): which rows of each table a copy
//! keeps so that the result is referentially complete, computed by the source inside the
//! copy's snapshot, on read-only sessions (a hot standby too), with nothing kept by pgcopy.
//!
//! What is kept:
//! - a table with a subset rule: the rows its `where`, `percent` and `limit` pick, and
//!   every row that a kept row references through a foreign key, recursively (cycles and
//!   self-references included): "pulled" rows;
//! - a table without one that references such a table, directly or through others (a
//!   "follower"): its rows whose referenced rows are all kept, and those pulled; a row that
//!   references a dropped row goes, and so do the rows referencing it, transitively;
//! - every other table whole.
//!
//! Every row is named by its table's OID and its `ctid`, which hold within one snapshot.
//! The pulled rows are one recursive query (`pgcopy_pull`) that walks foreign keys from
//! child to parent, each step an index lookup on the referenced key; a follower's row is
//! checked the same way, up its parents. Each table's `COPY (WITH RECURSIVE … SELECT …)`
//! carries the part of the closure it needs, so every reader computes the same rows from
//! the same snapshot. For that, a `where` must give the same rows in every session:
//! `now()` and its kin are replaced by the snapshot's time, and `random()` and other
//! functions that differ between sessions are refused.

mod closure;
mod edges;
mod graph;
mod times;

pub(crate) use edges::{edges, logical_tables, Edge};

use edges::primary_key;

use crate::pg::sql::TableName;
use crate::plan::reading::SETTINGS;
use crate::plan::Plan;
use anyhow::{Context, Result};
use graph::{from, row_id, Graph};
use postgres::Client;
use std::collections::BTreeMap;
use times::Times;

/// A table's subset rule.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SubsetRule {
    pub(crate) table: TableName,
    /// `where`: the rows to start from.
    pub(crate) filter: Option<String>,
    /// `percent`: about this share of them, picked by a hash of the primary key (the same
    /// rows in every run while they do not change).
    pub(crate) percent: Option<f64>,
    /// `limit`: at most this many, the first by `order_by` (else the primary key).
    pub(crate) limit: Option<u64>,
    pub(crate) order_by: Option<String>,
    /// `children`: tables whose rows that reference a kept row of this one are kept too
    /// (with what they reference), where by themselves they would not be.
    pub(crate) children: Vec<TableName>,
}

/// A foreign key the rules declare, for an application that has none in its schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeclaredKey {
    pub(crate) table: TableName,
    pub(crate) columns: Vec<String>,
    pub(crate) references: TableName,
    pub(crate) referenced: Vec<String>,
}

/// Puts the subsets on the plan's tables, computed from the rules against the source
/// (`client`, in the copy's snapshot) and the keys between the copied tables (`edges`);
/// what is wrong comes back as refusals. `on_source`: the source's tables, partitioned
/// ones included.
pub(crate) fn apply(
    client: &mut Client,
    plan: &mut Plan,
    rules: &[SubsetRule],
    edges: Vec<Edge>,
    on_source: &BTreeMap<TableName, bool>,
    leaves: &BTreeMap<TableName, Vec<TableName>>,
) -> Result<Vec<String>> {
    let mut refusals = Vec::new();
    if rules.is_empty() {
        return Ok(refusals);
    }
    let logical = logical_tables(plan);
    let mut seeds = BTreeMap::new();
    let times = Times::of_snapshot(client)?;
    for rule in rules {
        if !logical.contains_key(&rule.table) {
            match on_source.get(&rule.table) {
                None => refusals.push(format!(
                    "the rules take a subset of {}, but the source has no table {} (renamed \
                     or dropped?)",
                    rule.table, rule.table
                )),
                Some(_) if plan.tables.iter().any(|t| t.name == rule.table) => {
                    refusals.push(format!(
                        "the rules take a subset of {}, a partition: give the rule to its \
                         partitioned table",
                        rule.table
                    ))
                }
                Some(_) => {}
            }
            continue;
        }
        match seed_sql(client, rule, logical[&rule.table], &times) {
            Ok(sql) => {
                seeds.insert(rule.table.clone(), (sql, describe_rule(rule)));
            }
            Err(why) => refusals.push(format!("the subset of {}: {why:#}", rule.table)),
        }
    }
    for rule in rules.iter().filter(|r| logical.contains_key(&r.table)) {
        for child in &rule.children {
            if !edges
                .iter()
                .any(|e| &e.child == child && e.parent == rule.table)
            {
                refusals.push(format!(
                    "the subset of {} asks for its children in {child}, which has no foreign \
                     key to it that the copy follows (declare one under [[foreign_key]])",
                    rule.table
                ));
            }
        }
    }
    if !refusals.is_empty() {
        return Ok(refusals);
    }
    let children = rules
        .iter()
        .filter(|r| !r.children.is_empty())
        .map(|r| (r.table.clone(), r.children.clone()))
        .collect();
    let graph = Graph::new(logical, leaves.clone(), edges, seeds, children);
    for table in &mut plan.tables {
        let name = table.parent.clone().unwrap_or_else(|| table.name.clone());
        // A partition only the destination has is emptied: nothing of it is read.
        if !table.on_source || !graph.restricted.contains(&name) {
            continue;
        }
        let subset = graph.subset(&name);
        let sql = format!(
            "EXPLAIN (FORMAT JSON) {}",
            subset.select("1", &table.name, "")
        );
        match explain_rows(client, &sql) {
            Ok(rows) => table.estimated_rows = Some(rows),
            Err(err) => {
                refusals.push(format!(
                    "the subset of {} is not valid SQL on the source: {err:#}",
                    table.name
                ));
                continue;
            }
        }
        table.subset = Some(subset);
    }
    Ok(refusals)
}

/// Counts the rows each subset keeps, for the dry run: in the snapshot, as the copy would
/// read them.
pub(crate) fn count(client: &mut Client, plan: &mut Plan) -> Result<()> {
    for table in &mut plan.tables {
        let Some(subset) = &mut table.subset else {
            continue;
        };
        let sql = format!(
            "SELECT count(*)::int8 FROM ({}) AS kept",
            subset.select("1", &table.name, "")
        );
        client.batch_execute(SETTINGS)?;
        let rows: i64 = client
            .query_one(&sql, &[])
            .with_context(|| format!("counting the subset of {}", table.name))?
            .get(0);
        subset.counted = Some(rows as u64);
        table.estimated_rows = Some(rows as u64);
    }
    Ok(())
}

/// The dry run's words for a rule.
fn describe_rule(rule: &SubsetRule) -> String {
    let mut parts = Vec::new();
    if let Some(filter) = &rule.filter {
        parts.push(format!("where {filter}"));
    }
    if let Some(percent) = rule.percent {
        parts.push(format!("{percent}% of them"));
    }
    if let Some(limit) = rule.limit {
        match &rule.order_by {
            Some(order) => parts.push(format!("the first {limit} by {order}")),
            None => parts.push(format!("the first {limit}")),
        }
    }
    if parts.is_empty() {
        parts.push("all its rows".into());
    }
    if !rule.children.is_empty() {
        let children: Vec<String> = rule.children.iter().map(|c| c.to_string()).collect();
        parts.push(format!(
            "the rows of {} that reference kept rows",
            children.join(", ")
        ));
    }
    parts.join(", ")
}

/// The query of the rows a rule starts from, as (table OID, row) pairs.
fn seed_sql(
    client: &mut Client,
    rule: &SubsetRule,
    partitioned: bool,
    times: &Times,
) -> Result<String> {
    let mut conditions = Vec::new();
    if let Some(filter) = &rule.filter {
        conditions.push(format!("({})", times.pin(filter)?));
    }
    let key = primary_key(client, &rule.table)?;
    let key_row = if key.is_empty() {
        "tableoid, ctid".to_string()
    } else {
        crate::pg::sql::column_list(key.iter().map(String::as_str))
    };
    if let Some(percent) = rule.percent {
        if !(percent > 0.0 && percent <= 100.0) {
            anyhow::bail!("percent must be above 0 and at most 100, not {percent}");
        }
        conditions.push(format!(
            "abs(hashtextextended(ROW({key_row})::text, 0) % 1000000) < {}",
            (percent * 10_000.0).round() as u64
        ));
    }
    let from = from(&rule.table, partitioned);
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    Ok(match rule.limit {
        None => format!("SELECT tableoid, {} FROM {from}{filter}", row_id("")),
        Some(limit) => {
            let order = match &rule.order_by {
                Some(order) => format!("{}, ", times.pin(order)?),
                None if key.is_empty() => String::new(),
                None => format!("{key_row}, "),
            };
            format!(
                "SELECT tableoid, {} FROM (SELECT tableoid, ctid FROM {from}{filter} \
                 ORDER BY {order}tableoid, ctid LIMIT {limit}) AS pgcopy_first",
                row_id("")
            )
        }
    })
}

/// The planner's estimate of a query's rows (its `EXPLAIN (FORMAT JSON)`), in a savepoint
/// so that an error leaves the snapshot's transaction usable.
fn explain_rows(client: &mut Client, sql: &str) -> Result<u64> {
    client.batch_execute("SAVEPOINT pgcopy_subset")?;
    let result = client.simple_query(sql);
    match result {
        Ok(messages) => {
            client.batch_execute("RELEASE SAVEPOINT pgcopy_subset")?;
            let text = messages
                .iter()
                .find_map(|m| match m {
                    postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
                    _ => None,
                })
                .unwrap_or_default();
            let plan: serde_json::Value =
                serde_json::from_str(&text).context("reading the plan EXPLAIN gave")?;
            Ok(plan[0]["Plan"]["Plan Rows"].as_f64().unwrap_or(0.0).round() as u64)
        }
        Err(err) => {
            client.batch_execute("ROLLBACK TO SAVEPOINT pgcopy_subset")?;
            Err(anyhow::anyhow!(crate::pg::error::db_error(&err)))
        }
    }
}
