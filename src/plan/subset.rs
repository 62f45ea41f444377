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

use crate::pg::sql::{display_ident, quote_ident, quote_literal, TableName};
use crate::plan::Plan;
use anyhow::{Context, Result};
use postgres::Client;
use std::collections::{BTreeMap, BTreeSet};

/// The alias of the copied table in every query a subset is part of.
pub(crate) const ROW: &str = "t";

/// Set in each transaction that reads a subset. No JIT: the closure's queries are
/// estimated far above what they cost (the planner cannot see how few rows a recursive
/// step finds), which would have each reader compile them first, for longer than they run.
/// More memory for hashing: a row-by-row test against the pulled rows is a hash table the
/// server builds once only where it expects the table to fit, and scans the rows for each
/// test otherwise.
pub(crate) const SETTINGS: &str = "SET LOCAL jit = off; SET LOCAL hash_mem_multiplier = 8";

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

/// Which rows of a planned table the copy keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Subset {
    /// `WITH RECURSIVE …`, put before the table's `SELECT`.
    pub(crate) with: String,
    /// Joins after the table's `FROM` (the kept keys of the tables it references).
    pub(crate) joins: String,
    /// The condition on the table's rows (as `t`).
    pub(crate) condition: String,
    /// In a few words, for the dry run and the report.
    pub(crate) describe: String,
    /// The rows it keeps, where the dry run counted them.
    pub(crate) counted: Option<u64>,
    /// What its queries read besides the table: `LOCK TABLE` names (`ONLY` for a table,
    /// none for a partitioned one, whose partitions are read too).
    pub(crate) reads: Vec<String>,
}

impl Subset {
    /// `SELECT {list} FROM ONLY {table} AS t WHERE …`, the subset's condition and
    /// `condition` (`WHERE …` or empty) both, with the closure before it.
    pub(crate) fn select(&self, list: &str, table: &TableName, condition: &str) -> String {
        let more = condition
            .trim()
            .strip_prefix("WHERE ")
            .map_or(String::new(), |c| format!(" AND ({c})"));
        format!(
            "{} SELECT {list} FROM ONLY {} AS {ROW}{} WHERE ({}){more}",
            self.with,
            table.quoted(),
            self.joins,
            self.condition
        )
    }
}

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

/// Session-dependent functions a `where` may not call: each reader would get other rows.
const VOLATILE: &[&str] = &[
    "random",
    "setseed",
    "clock_timestamp",
    "statement_timestamp",
    "timeofday",
    "gen_random_uuid",
    "uuid_generate_v1",
    "uuid_generate_v4",
    "uuidv4",
    "uuidv7",
    "nextval",
    "currval",
    "lastval",
    "txid_current",
    "pg_current_xact_id",
    "pg_backend_pid",
    "inet_client_port",
];

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

/// `FROM` of a table, its partitions included where it is partitioned, else alone.
fn from(table: &TableName, partitioned: bool) -> String {
    if partitioned {
        table.quoted()
    } else {
        format!("ONLY {}", table.quoted())
    }
}

/// A row's `ctid` as a number (`tid` cannot be hashed before PostgreSQL 14).
fn row_id(alias: &str) -> String {
    let ctid = if alias.is_empty() {
        "ctid".to_string()
    } else {
        format!("{alias}.ctid")
    };
    format!("(({ctid}::text::point)[0]::int8 * 65536 + ({ctid}::text::point)[1]::int8)")
}

/// The `ctid` of a number `row_id` made.
fn tid_of(id: &str) -> String {
    format!("format('(%s,%s)', {id} / 65536, {id} % 65536)::tid")
}

/// The table's primary key columns, none without one.
fn primary_key(client: &mut Client, table: &TableName) -> Result<Vec<String>> {
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
fn foreign_keys(client: &mut Client) -> Result<Vec<Edge>> {
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
fn check_declared(
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

/// The snapshot's time, put where a `where` asks for the current one, so that every
/// session reads the same rows.
struct Times {
    /// (function as written, its value as a typed literal)
    values: Vec<(&'static str, bool, String)>,
}

impl Times {
    fn of_snapshot(client: &mut Client) -> Result<Times> {
        let row = client
            .query_one(
                "SELECT now()::text, current_date::text, localtimestamp::text,
                        current_time::text, localtime::text",
                &[],
            )
            .context("reading the snapshot's time")?;
        let at = |i: usize, ty: &str| format!("{}::{ty}", quote_literal(&row.get::<_, String>(i)));
        let now = at(0, "timestamptz");
        Ok(Times {
            values: vec![
                ("now", true, now.clone()),
                ("transaction_timestamp", true, now.clone()),
                ("current_timestamp", false, now),
                ("current_date", false, at(1, "date")),
                ("localtimestamp", false, at(2, "timestamp")),
                ("current_time", false, at(3, "timetz")),
                ("localtime", false, at(4, "time")),
            ],
        })
    }

    /// `expr` with the current time replaced by the snapshot's; an error where it calls
    /// a function whose value differs between sessions.
    fn pin(&self, expr: &str) -> Result<String> {
        let mut out = String::with_capacity(expr.len());
        let mut rest = expr;
        while let Some(c) = rest.chars().next() {
            let skip = match c {
                '\'' => quoted_len(rest, '\'', rest_is_escaped(&out)),
                '"' => quoted_len(rest, '"', false),
                '$' => dollar_len(rest),
                '-' if rest.starts_with("--") => rest.find('\n').unwrap_or(rest.len()),
                '/' if rest.starts_with("/*") => rest.find("*/").map_or(rest.len(), |i| i + 2),
                c if c.is_alphabetic() || c == '_' => {
                    let len = rest
                        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
                        .unwrap_or(rest.len());
                    let word = rest[..len].to_lowercase();
                    let after = rest[len..].trim_start();
                    let called = after.starts_with('(');
                    if called && VOLATILE.contains(&word.as_str()) {
                        anyhow::bail!(
                            "it calls {word}(), whose value differs from session to session, \
                             so that the copy's readers would keep different rows"
                        );
                    }
                    let pinned = self.values.iter().find(|(name, call, _)| {
                        *name == word && (!call || after.starts_with("()") || empty_call(after))
                    });
                    if let Some((_, call, value)) = pinned {
                        if out.to_lowercase().ends_with("pg_catalog.") {
                            out.truncate(out.len() - "pg_catalog.".len());
                        }
                        out.push('(');
                        out.push_str(value);
                        out.push(')');
                        rest = &rest[len..];
                        if *call {
                            let open = rest.find('(').expect("a call has (");
                            let close = rest.find(')').expect("an empty call has )");
                            debug_assert!(open < close);
                            rest = &rest[close + 1..];
                        }
                        continue;
                    }
                    len
                }
                _ => c.len_utf8(),
            };
            let skip = skip.max(1).min(rest.len());
            out.push_str(&rest[..skip]);
            rest = &rest[skip..];
        }
        Ok(out)
    }
}

/// `(` and `)` with only spaces between.
fn empty_call(after: &str) -> bool {
    after
        .strip_prefix('(')
        .is_some_and(|inner| inner.trim_start().starts_with(')'))
}

/// Whether the string about to start is an `E'…'` one (backslash escapes).
fn rest_is_escaped(before: &str) -> bool {
    let mut chars = before.chars().rev();
    matches!(chars.next(), Some('e' | 'E'))
        && !chars
            .next()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
}

/// The length of a quoted string or identifier at the start of `text`, doubled quotes
/// (and backslashes, where `escapes`) inside it.
fn quoted_len(text: &str, quote: char, escapes: bool) -> usize {
    let mut chars = text.char_indices().skip(1).peekable();
    while let Some((i, c)) = chars.next() {
        if escapes && c == '\\' {
            chars.next();
        } else if c == quote {
            if chars.peek().is_some_and(|(_, n)| *n == quote) {
                chars.next();
            } else {
                return i + 1;
            }
        }
    }
    text.len()
}

/// The length of a dollar-quoted string at the start of `text` (`$tag$…$tag$`), or 1
/// where the `$` starts none (a parameter, `$1`).
fn dollar_len(text: &str) -> usize {
    let Some(end) = text[1..].find('$') else {
        return 1;
    };
    let tag = &text[..end + 2];
    if !tag[1..tag.len() - 1]
        .chars()
        .all(|c| c.is_alphanumeric() || c == '_')
        || tag[1..].starts_with(|c: char| c.is_ascii_digit())
    {
        return 1;
    }
    text[tag.len()..]
        .find(tag)
        .map_or(text.len(), |i| tag.len() + i + tag.len())
}

/// The copied tables and the foreign keys between them, and what the rules make of them.
struct Graph {
    /// Each copied table (as a partitioned one where it is a partition), and whether it is
    /// partitioned.
    tables: BTreeMap<TableName, bool>,
    /// The leaf partitions of each partitioned one, on the source.
    leaves: BTreeMap<TableName, Vec<TableName>>,
    edges: Vec<Edge>,
    /// The tables with a rule: the query of the rows it starts from, and its words.
    seeds: BTreeMap<TableName, (String, String)>,
    /// The tables a rule has, and those that reference one of them, transitively.
    restricted: BTreeSet<TableName>,
    /// For a table with a rule, the tables whose rows that reference its kept rows the
    /// rules keep too (`children`).
    children: BTreeMap<TableName, Vec<TableName>>,
    /// Each follower's group: the followers that reference each other in a cycle with it.
    group: BTreeMap<TableName, usize>,
    /// The groups with a cycle (a self-reference is one).
    cyclic: BTreeSet<usize>,
}

/// What one query being written needs: fresh aliases, the tables whose pulled rows it
/// tests.
#[derive(Default)]
struct Writer {
    aliases: usize,
    pulled: BTreeSet<TableName>,
}

impl Writer {
    fn alias(&mut self, stem: &str) -> String {
        self.aliases += 1;
        format!("pgcopy_{stem}{}", self.aliases)
    }
}

impl Graph {
    fn new(
        tables: BTreeMap<TableName, bool>,
        leaves: BTreeMap<TableName, Vec<TableName>>,
        edges: Vec<Edge>,
        seeds: BTreeMap<TableName, (String, String)>,
        children: BTreeMap<TableName, Vec<TableName>>,
    ) -> Graph {
        let mut restricted: BTreeSet<TableName> = seeds.keys().cloned().collect();
        loop {
            let more: Vec<TableName> = edges
                .iter()
                .filter(|e| restricted.contains(&e.parent) && !restricted.contains(&e.child))
                .map(|e| e.child.clone())
                .collect();
            if more.is_empty() {
                break;
            }
            restricted.extend(more);
        }
        // Followers in one group reach each other through followers' keys.
        let followers: Vec<&TableName> = restricted
            .iter()
            .filter(|t| !seeds.contains_key(*t))
            .collect();
        let reach = |from: &TableName| -> BTreeSet<TableName> {
            let mut seen = BTreeSet::new();
            let mut todo = vec![from.clone()];
            while let Some(t) = todo.pop() {
                for e in edges.iter().filter(|e| e.child == t) {
                    if followers.contains(&&e.parent) && seen.insert(e.parent.clone()) {
                        todo.push(e.parent.clone());
                    }
                }
            }
            seen
        };
        let reaches: BTreeMap<&TableName, BTreeSet<TableName>> =
            followers.iter().map(|t| (*t, reach(t))).collect();
        let mut group = BTreeMap::new();
        let mut cyclic = BTreeSet::new();
        for (n, table) in followers.iter().enumerate() {
            if group.contains_key(*table) {
                continue;
            }
            for other in &followers {
                let same = *other == *table
                    || (reaches[table].contains(*other) && reaches[other].contains(*table));
                if same {
                    group.insert((*other).clone(), n);
                }
            }
            if reaches[table].contains(*table) {
                cyclic.insert(n);
            }
        }
        Graph {
            tables,
            leaves,
            edges,
            seeds,
            restricted,
            children,
            group,
            cyclic,
        }
    }

    fn from(&self, table: &TableName) -> String {
        from(table, self.tables[table])
    }

    /// The rows of `table` (a restricted one) the copy keeps.
    fn subset(&self, table: &TableName) -> Subset {
        let mut writer = Writer::default();
        let (joins, condition) = self.kept_rows(table, ROW, &mut writer);
        Subset {
            with: self.pull(&writer.pulled),
            joins,
            condition,
            describe: match self.seeds.get(table) {
                Some((_, words)) => format!("{words}; and the rows kept rows reference"),
                None => {
                    let parents: BTreeSet<String> = self
                        .edges
                        .iter()
                        .filter(|e| &e.child == table && self.restricted.contains(&e.parent))
                        .map(|e| e.parent.to_string())
                        .collect();
                    format!(
                        "the rows whose references to {} are kept",
                        parents.into_iter().collect::<Vec<_>>().join(", ")
                    )
                }
            },
            counted: None,
            // The closure reads only restricted tables.
            reads: self
                .restricted
                .iter()
                .filter(|t| *t != table)
                .map(|t| self.from(t))
                .collect(),
        }
    }

    /// Which rows of `table` (as `alias`) are kept, as sets: joins to add after its `FROM`,
    /// and a condition. A table with a rule: its pulled rows, found by their `ctid`. A
    /// follower outside a cycle: joined to the kept keys of what it references, each such
    /// set computed once (hash joins, which spill to disk where they must). A follower in
    /// a cycle: checked row by row (`kept`).
    fn kept_rows(&self, table: &TableName, alias: &str, writer: &mut Writer) -> (String, String) {
        if self.seeds.contains_key(table) {
            writer.pulled.insert(table.clone());
            return (
                String::new(),
                format!(
                    "({alias}.tableoid, {alias}.ctid) IN (SELECT rel, {} FROM pgcopy_pull)",
                    tid_of("id")
                ),
            );
        }
        if !self.restricted.contains(table) || self.cyclic.contains(&self.group[table]) {
            return (String::new(), self.kept(table, alias, writer));
        }
        let mut joins = String::new();
        let mut conditions = Vec::new();
        for edge in self
            .edges
            .iter()
            .filter(|e| &e.child == table && self.restricted.contains(&e.parent))
        {
            let k = writer.alias("k");
            let keys = self.kept_keys(&edge.parent, &edge.referenced, &k, writer);
            let theirs: Vec<String> = (0..edge.columns.len())
                .map(|i| format!("{k}.{k}_{i}"))
                .collect();
            let ours: Vec<String> = edge
                .columns
                .iter()
                .map(|c| format!("{alias}.{}", quote_ident(c)))
                .collect();
            joins.push_str(&format!(
                " LEFT JOIN ({keys}) AS {k} ON ({}) = ({})",
                theirs.join(", "),
                ours.join(", ")
            ));
            let mut either: Vec<String> = ours.iter().map(|c| format!("{c} IS NULL")).collect();
            either.push(format!("{k}.{k}_0 IS NOT NULL"));
            conditions.push(format!("({})", either.join(" OR ")));
        }
        if conditions.is_empty() {
            conditions.push("true".into());
        }
        (joins, conditions.join(" AND "))
    }

    /// A query of the distinct `columns` of the kept rows of `table`, named `{name}_0`, ….
    fn kept_keys(
        &self,
        table: &TableName,
        columns: &[String],
        name: &str,
        writer: &mut Writer,
    ) -> String {
        let a = writer.alias("r");
        let list: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{a}.{} AS {name}_{i}", quote_ident(c)))
            .collect();
        let list = list.join(", ");
        if self.seeds.contains_key(table) {
            writer.pulled.insert(table.clone());
            let step = writer.alias("w");
            return format!(
                "SELECT DISTINCT {list} FROM pgcopy_pull AS {step} JOIN {} AS {a} ON {}",
                self.from(table),
                self.at_row(table, &a, &step)
            );
        }
        let (joins, condition) = self.kept_rows(table, &a, writer);
        format!(
            "SELECT DISTINCT {list} FROM {} AS {a}{joins} WHERE {condition}",
            self.from(table)
        )
    }

    /// Whether the row `alias` of `table` is kept, tested row by row.
    fn kept(&self, table: &TableName, alias: &str, writer: &mut Writer) -> String {
        if !self.restricted.contains(table) {
            return "true".into();
        }
        if self.seeds.contains_key(table) {
            writer.pulled.insert(table.clone());
            return self.is_pulled(table, alias);
        }
        let group = self.group[table];
        if !self.cyclic.contains(&group) {
            return format!("NOT ({})", self.bad(table, alias, writer));
        }
        // In a cycle of followers, a row goes when one of the rows above it in the cycle
        // (itself included) references a dropped row outside it.
        let members: Vec<&TableName> = self
            .group
            .iter()
            .filter(|(_, g)| **g == group)
            .map(|(t, _)| t)
            .collect();
        let up = writer.alias("up");
        let step = writer.alias("w");
        let mut branches = Vec::new();
        for edge in self
            .edges
            .iter()
            .filter(|e| members.contains(&&e.child) && members.contains(&&e.parent))
        {
            let c = writer.alias("c");
            let p = writer.alias("p");
            branches.push(format!(
                "SELECT {p}.tableoid, {} FROM {} AS {c} JOIN {} AS {p} ON {} WHERE {}",
                row_id(&p),
                self.from(&edge.child),
                self.from(&edge.parent),
                self.joins(edge, &c, &p),
                self.at_row(&edge.child, &c, &step)
            ));
        }
        let found = writer.alias("w");
        let mut bad = Vec::new();
        for member in &members {
            let y = writer.alias("y");
            let why = self.bad(member, &y, writer);
            if why != "false" {
                bad.push(format!(
                    "EXISTS (SELECT 1 FROM {} AS {y} WHERE {} AND ({why}))",
                    self.from(member),
                    self.at_row(member, &y, &found)
                ));
            }
        }
        if bad.is_empty() {
            return "true".into();
        }
        format!(
            "NOT EXISTS (WITH RECURSIVE {up}(rel, id) AS (SELECT {alias}.tableoid, {} UNION \
             SELECT e.rel, e.id FROM {up} AS {step}, LATERAL ({}) AS e(rel, id)) SELECT 1 \
             FROM {up} AS {found} WHERE {})",
            row_id(alias),
            branches.join(" UNION ALL "),
            bad.join(" OR ")
        )
    }

    /// Whether the row `alias` of `table` is one of the pulled rows. One table's at a time,
    /// each an uncorrelated `IN` that the server hashes once; inside `IS TRUE`, so that it
    /// is not made a join, which the planner would run as a scan of the pulled rows for
    /// each row it tests.
    fn is_pulled(&self, table: &TableName, alias: &str) -> String {
        let id = row_id(alias);
        let test = |leaf: &TableName| {
            format!(
                "{id} IN (SELECT id FROM pgcopy_pull WHERE rel = {}::regclass)",
                quote_literal(&leaf.quoted())
            )
        };
        match self.leaves.get(table) {
            None => format!("({}) IS TRUE", test(table)),
            Some(leaves) => {
                let whens: Vec<String> = leaves
                    .iter()
                    .map(|leaf| {
                        format!(
                            "WHEN {}::regclass THEN {}",
                            quote_literal(&leaf.quoted()),
                            test(leaf)
                        )
                    })
                    .collect();
                format!("(CASE {alias}.tableoid {} END) IS TRUE", whens.join(" "))
            }
        }
    }

    /// Whether the row `alias` of the follower `table` references a dropped row outside
    /// its group.
    fn bad(&self, table: &TableName, alias: &str, writer: &mut Writer) -> String {
        let group = self.group.get(table);
        let mut reasons = Vec::new();
        for edge in self.edges.iter().filter(|e| {
            &e.child == table
                && self.restricted.contains(&e.parent)
                && (group.is_none() || self.group.get(&e.parent) != group)
        }) {
            let p = writer.alias("p");
            let not_null: Vec<String> = edge
                .columns
                .iter()
                .map(|c| format!("{alias}.{} IS NOT NULL", quote_ident(c)))
                .collect();
            let kept = self.kept(&edge.parent, &p, writer);
            reasons.push(format!(
                "({} AND NOT EXISTS (SELECT 1 FROM {} AS {p} WHERE {} AND {kept}))",
                not_null.join(" AND "),
                self.from(&edge.parent),
                self.joins(edge, alias, &p)
            ));
        }
        if reasons.is_empty() {
            "false".into()
        } else {
            reasons.join(" OR ")
        }
    }

    /// Whether the rules ask for the rows of the edge's child that reference kept rows of
    /// its parent.
    fn asks_children(&self, edge: &Edge) -> bool {
        self.children
            .get(&edge.parent)
            .is_some_and(|children| children.contains(&edge.child))
    }

    /// `(p.k…) = (c.fk…)`.
    fn joins(&self, edge: &Edge, child: &str, parent: &str) -> String {
        let side = |alias: &str, columns: &[String]| {
            columns
                .iter()
                .map(|c| format!("{alias}.{}", quote_ident(c)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "({}) = ({})",
            side(parent, &edge.referenced),
            side(child, &edge.columns)
        )
    }

    /// That `alias` of `table` is the row `step` names.
    fn at_row(&self, table: &TableName, alias: &str, step: &str) -> String {
        let tag = if self.tables[table] {
            String::new()
        } else {
            format!(
                "{step}.rel = {}::regclass AND ",
                quote_literal(&table.quoted())
            )
        };
        format!(
            "{tag}{alias}.tableoid = {step}.rel AND {alias}.ctid = {}",
            tid_of(&format!("{step}.id"))
        )
    }

    /// `WITH RECURSIVE pgcopy_pull(rel, id) AS (…)`: the rows the rules pick in the tables
    /// from which `needed` can be reached, and the rows they reference, recursively.
    fn pull(&self, needed: &BTreeSet<TableName>) -> String {
        if needed.is_empty() {
            return String::new();
        }
        // Rows are pulled from children to parents among the restricted tables, and from
        // parents to the children the rules ask for: the tables whose pulled rows can
        // reach `needed`…
        let flows: Vec<(&TableName, &TableName, &Edge, bool)> = self
            .edges
            .iter()
            .filter(|e| self.restricted.contains(&e.child) && self.restricted.contains(&e.parent))
            .flat_map(|e| {
                let down = self
                    .asks_children(e)
                    .then_some((&e.parent, &e.child, e, true));
                std::iter::once((&e.child, &e.parent, e, false)).chain(down)
            })
            .collect();
        let spread = |mut set: BTreeSet<TableName>, forward: bool, within: &BTreeSet<TableName>| loop {
            let more: Vec<TableName> = flows
                .iter()
                .map(|(from, to, _, _)| if forward { (*from, *to) } else { (*to, *from) })
                .filter(|(from, to)| {
                    set.contains(*from) && within.contains(*to) && !set.contains(*to)
                })
                .map(|(_, to)| to.clone())
                .collect();
            if more.is_empty() {
                return set;
            }
            set.extend(more);
        };
        let sources = spread(needed.clone(), false, &self.restricted);
        // … and of those, the ones that can hold pulled rows: the rules' tables and the
        // tables their rows reach.
        let seeded = self
            .seeds
            .keys()
            .filter(|t| sources.contains(*t))
            .cloned()
            .collect();
        let sources = spread(seeded, true, &sources);
        let seeds: Vec<String> = self
            .seeds
            .iter()
            .filter(|(t, _)| sources.contains(*t))
            .map(|(_, (sql, _))| format!("({sql})"))
            .collect();
        let mut writer = Writer::default();
        let step = "pgcopy_w";
        let branches: Vec<String> = flows
            .iter()
            .filter(|(from, to, _, _)| sources.contains(*from) && sources.contains(*to))
            .map(|(from, to, edge, _)| {
                let a = writer.alias("a");
                let b = writer.alias("b");
                let (c, p) = if edge.child == **from {
                    (&a, &b)
                } else {
                    (&b, &a)
                };
                format!(
                    "SELECT {b}.tableoid, {} FROM {} AS {a} JOIN {} AS {b} ON {} WHERE {}",
                    row_id(&b),
                    self.from(from),
                    self.from(to),
                    self.joins(edge, c, p),
                    self.at_row(from, &a, step)
                )
            })
            .collect();
        let walk = if branches.is_empty() {
            String::new()
        } else {
            format!(
                " UNION SELECT e.rel, e.id FROM pgcopy_pull AS {step}, LATERAL ({}) AS e(rel, id)",
                branches.join(" UNION ALL ")
            )
        };
        format!(
            "WITH RECURSIVE pgcopy_pull(rel, id) AS ({}{walk})",
            seeds.join(" UNION ALL ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn times() -> Times {
        Times {
            values: vec![
                ("now", true, "'T'::timestamptz".into()),
                ("current_timestamp", false, "'T'::timestamptz".into()),
                ("current_date", false, "'D'::date".into()),
            ],
        }
    }

    #[test]
    fn pins_the_current_time_outside_strings_and_names() {
        let t = times();
        assert_eq!(
            t.pin("created_at > now() - interval '30 days'").unwrap(),
            "created_at > ('T'::timestamptz) - interval '30 days'"
        );
        assert_eq!(
            t.pin("a >= pg_catalog.NOW( ) AND b = CURRENT_DATE")
                .unwrap(),
            "a >= ('T'::timestamptz) AND b = ('D'::date)"
        );
        assert_eq!(
            t.pin("note = 'now()' AND \"current_date\" = 1 AND x = $$now()$$ -- now()")
                .unwrap(),
            "note = 'now()' AND \"current_date\" = 1 AND x = $$now()$$ -- now()"
        );
        assert_eq!(t.pin("s = E'it\\'s now()'").unwrap(), "s = E'it\\'s now()'");
        assert_eq!(t.pin("nowhere = 1").unwrap(), "nowhere = 1");
    }

    #[test]
    fn refuses_what_differs_between_sessions() {
        let t = times();
        for expr in [
            "random() < 0.1",
            "id % 10 = (RANDOM ())::int",
            "at < clock_timestamp()",
        ] {
            let err = t.pin(expr).unwrap_err().to_string();
            assert!(
                err.contains("differs from session to session"),
                "{expr}: {err}"
            );
        }
        assert!(t.pin("'random()' = note").is_ok());
    }

    fn name(n: &str) -> TableName {
        TableName::new("public", n)
    }

    fn edge(child: &str, column: &str, parent: &str) -> Edge {
        Edge {
            child: name(child),
            columns: vec![column.into()],
            parent: name(parent),
            referenced: vec!["id".into()],
        }
    }

    #[test]
    fn followers_and_their_groups() {
        let tables = ["customer", "rental", "payment", "comment", "store", "film"]
            .iter()
            .map(|t| (name(t), false))
            .collect();
        let edges = vec![
            edge("rental", "customer_id", "customer"),
            edge("rental", "store_id", "store"),
            edge("customer", "referred_by", "customer"),
            edge("payment", "rental_id", "rental"),
            edge("comment", "rental_id", "rental"),
            edge("comment", "reply_to", "comment"),
            edge("store", "film_id", "film"),
        ];
        let seeds = BTreeMap::from([(name("rental"), ("SEED".to_string(), String::new()))]);
        let graph = Graph::new(tables, BTreeMap::new(), edges, seeds, BTreeMap::new());
        let restricted: Vec<&str> = graph.restricted.iter().map(|t| t.name.as_str()).collect();
        // The customer table is referenced by the subset, not referencing it: it comes whole.
        assert_eq!(restricted, ["comment", "payment", "rental"]);
        assert!(graph.cyclic.contains(&graph.group[&name("comment")]));
        assert!(!graph.cyclic.contains(&graph.group[&name("payment")]));
        let payment = graph.subset(&name("payment"));
        assert!(payment.with.starts_with("WITH RECURSIVE pgcopy_pull"));
        // Outside a cycle, a follower is joined to its parents' kept keys.
        assert!(
            payment.joins.starts_with(" LEFT JOIN (SELECT DISTINCT"),
            "{}",
            payment.joins
        );
        assert!(
            payment.condition.contains("IS NOT NULL"),
            "{}",
            payment.condition
        );
        let comment = graph.subset(&name("comment"));
        assert!(comment.condition.contains("WITH RECURSIVE pgcopy_up"));
        // Rows are pulled only into restricted tables: the edge to store is not walked.
        assert!(!graph.subset(&name("rental")).with.contains("store"));
    }
}
