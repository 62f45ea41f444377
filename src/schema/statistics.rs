//! Planner statistics carried from the source instead of `ANALYZE` on the destination: on a
//! PostgreSQL 18 destination, the source's `pg_class` counts and `pg_stats` rows are written
//! with `pg_restore_relation_stats` and `pg_restore_attribute_stats`, as `pg_dump
//! --statistics` does. Faster than sampling every table again, and the very statistics
//! production plans with. A table the source has no statistics for, or whose restore
//! fails (the role may not MAINTAIN it, say), is analyzed instead.

use crate::pg::server;
use crate::pg::sql::{name_arrays, quote_literal, TableName};
use anyhow::{Context, Result};
use postgres::Client;
use std::collections::{BTreeMap, HashMap};

/// The first destination version with `pg_restore_relation_stats`.
const FIRST_VERSION: i32 = 180000;

/// A value that is SQL already, written as it is.
const EXPRESSION: &str = "";

/// One argument of a restore function: its name, its value (absent: left out) and the type
/// the value is a literal of (or `EXPRESSION`).
type Argument<'a> = (&'a str, Option<String>, &'a str);

/// The statements that give one destination table the source's statistics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Statistics {
    pub(crate) statements: Vec<String>,
}

/// Reads, in the copy's snapshot, the statistics of the tables `names` that have some on
/// the source, when the destination can take them: by table, those it has.
pub(crate) fn read(
    source: &mut Client,
    dest: &mut Client,
    names: &[TableName],
) -> Result<BTreeMap<TableName, Statistics>> {
    let mut found = BTreeMap::new();
    if server::version(dest)? < FIRST_VERSION {
        return Ok(found);
    }
    let version = server::version(source)?;
    let (schemas, tables) = name_arrays(names);
    let relallfrozen = if version >= 180000 {
        "c.relallfrozen::text"
    } else {
        "NULL::text"
    };
    let rows = source
        .query(
            &format!(
                "SELECT n.nspname::text, c.relname::text, c.relpages::text, c.reltuples::text,
                        c.relallvisible::text, {relallfrozen}
                 FROM pg_catalog.pg_class c
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                 JOIN unnest($1::text[], $2::text[]) AS w(s, t)
                   ON w.s = n.nspname AND w.t = c.relname
                 WHERE c.reltuples >= 0"
            ),
            &[&schemas, &tables],
        )
        .context("reading the source's table statistics")?;
    let mut relations: HashMap<TableName, Vec<Argument>> = HashMap::new();
    for row in &rows {
        let table = TableName::new(row.get::<_, String>(0), row.get::<_, String>(1));
        // The planner scales the row count by the table's size now against `relpages`: the
        // size is the destination file's, which a fresh load packs differently from the
        // source's, so the estimates stay the source's.
        let pages = format!(
            "(pg_catalog.pg_relation_size({}::regclass) \
             / pg_catalog.current_setting('block_size')::int8)::integer",
            quote_literal(&table.quoted())
        );
        let at_most_pages = |value: Option<String>| {
            value.map(|v| format!("least({}::integer, {pages})", quote_literal(&v)))
        };
        relations.insert(
            table,
            vec![
                ("relpages", Some(pages.clone()), EXPRESSION),
                ("reltuples", row.get(3), "real"),
                ("relallvisible", at_most_pages(row.get(4)), EXPRESSION),
                ("relallfrozen", at_most_pages(row.get(5)), EXPRESSION),
            ],
        );
    }
    // Range statistics came in 17.
    let ranges = if version >= 170000 {
        "s.range_length_histogram::text, s.range_empty_frac::text, s.range_bounds_histogram::text"
    } else {
        "NULL::text, NULL::text, NULL::text"
    };
    let rows = source
        .query(
            &format!(
                "SELECT s.schemaname::text, s.tablename::text, s.attname::text,
                        s.inherited::text, s.null_frac::text, s.avg_width::text,
                        s.n_distinct::text, s.most_common_vals::text,
                        s.most_common_freqs::text, s.histogram_bounds::text,
                        s.correlation::text, s.most_common_elems::text,
                        s.most_common_elem_freqs::text, s.elem_count_histogram::text, {ranges}
                 FROM pg_catalog.pg_stats s
                 JOIN unnest($1::text[], $2::text[]) AS w(s, t)
                   ON w.s = s.schemaname AND w.t = s.tablename
                 ORDER BY 1, 2, 3, 4"
            ),
            &[&schemas, &tables],
        )
        .context("reading the source's column statistics")?;
    let mut columns: HashMap<TableName, Vec<String>> = HashMap::new();
    for row in &rows {
        let table = TableName::new(row.get::<_, String>(0), row.get::<_, String>(1));
        let fields = [
            ("attname", 2, "text"),
            ("inherited", 3, "boolean"),
            ("null_frac", 4, "real"),
            ("avg_width", 5, "integer"),
            ("n_distinct", 6, "real"),
            ("most_common_vals", 7, "text"),
            ("most_common_freqs", 8, "real[]"),
            ("histogram_bounds", 9, "text"),
            ("correlation", 10, "real"),
            ("most_common_elems", 11, "text"),
            ("most_common_elem_freqs", 12, "real[]"),
            ("elem_count_histogram", 13, "real[]"),
            ("range_length_histogram", 14, "text"),
            ("range_empty_frac", 15, "real"),
            ("range_bounds_histogram", 16, "text"),
        ];
        let args: Vec<Argument> = fields
            .iter()
            .map(|&(name, i, type_name)| (name, row.get(i), type_name))
            .collect();
        columns.entry(table.clone()).or_default().push(restore_call(
            "pg_restore_attribute_stats",
            version,
            &table,
            &args,
        ));
    }
    for name in names {
        // Statistics of the columns only: a table the source never analyzed has none.
        let (Some(relation), Some(attributes)) = (relations.get(name), columns.remove(name)) else {
            continue;
        };
        let mut statements = vec![restore_call(
            "pg_restore_relation_stats",
            version,
            name,
            relation,
        )];
        statements.extend(attributes);
        found.insert(name.clone(), Statistics { statements });
    }
    Ok(found)
}

/// `SELECT pg_restore_…_stats('version', …, 'schemaname', …, 'relname', …, name, value,
/// …)`, the values as literals of their types; absent values left out.
fn restore_call(function: &str, version: i32, table: &TableName, args: &[Argument]) -> String {
    let mut pairs = vec![
        format!("'version', {version}::integer"),
        format!("'schemaname', {}", quote_literal(&table.schema)),
        format!("'relname', {}", quote_literal(&table.name)),
    ];
    for (name, value, type_name) in args {
        if let Some(value) = value {
            let value = match *type_name {
                EXPRESSION => value.clone(),
                _ => format!("{}::{type_name}", quote_literal(value)),
            };
            pairs.push(format!("{}, {value}", quote_literal(name)));
        }
    }
    format!("SELECT pg_catalog.{function}({})", pairs.join(", "))
}

/// Writes the statistics on the destination, in one transaction: all of them or none.
pub(crate) fn restore(client: &mut Client, statistics: &Statistics) -> Result<()> {
    let mut tx = client.transaction()?;
    for sql in &statistics.statements {
        log::debug!("destination: {sql}");
        // The functions warn and go on where a value does not fit; those warnings say what.
        tx.batch_execute(sql)?;
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_restore_calls_with_typed_literals() {
        let sql = restore_call(
            "pg_restore_attribute_stats",
            170004,
            &TableName::new("s", "it's"),
            &[
                ("attname", Some("a".into()), "text"),
                ("inherited", Some("false".into()), "boolean"),
                ("null_frac", Some("0.25".into()), "real"),
                ("histogram_bounds", None, "text"),
                ("relpages", Some("(1 + 1)::integer".into()), EXPRESSION),
                ("most_common_freqs", Some("{0.5,0.25}".into()), "real[]"),
            ],
        );
        assert_eq!(
            sql,
            "SELECT pg_catalog.pg_restore_attribute_stats('version', 170004::integer, \
             'schemaname', 's', 'relname', 'it''s', 'attname', 'a'::text, \
             'inherited', 'false'::boolean, 'null_frac', '0.25'::real, \
             'relpages', (1 + 1)::integer, 'most_common_freqs', '{0.5,0.25}'::real[])"
        );
    }
}
