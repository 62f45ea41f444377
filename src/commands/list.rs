//! The `list` command: the tables a copy with the same filters would copy, their rows and
//! size on disk, largest first, partitions under their parent.

use crate::cli::config::ListConfig;
use crate::exit::Exit;
use crate::output::format::{print_json, write_table};
use crate::pg::server::BEGIN_READ_ONLY;
use crate::pg::sql::TableName;
use crate::plan;
use crate::schema::catalog::{self, Table};
use crate::units::format_bytes;
use anyhow::{Context, Result};
use postgres::Client;
use serde_json::json;
use std::collections::BTreeMap;

/// One line of the listing: a table, or a partitioned table with its selected partitions.
struct Entry {
    name: TableName,
    rows: Option<u64>,
    bytes: u64,
    partitions: Vec<Entry>,
}

pub(crate) fn run(cfg: &ListConfig) -> Result<Exit> {
    let mut client = cfg.source.connect()?;
    // One snapshot for the catalog and any counts, so the listing is consistent.
    client.batch_execute(BEGIN_READ_ONLY)?;
    let all = catalog::tables(&mut client)?;
    let mut selected = plan::select(&all, &cfg.filter)?;
    // Waits for a table another session holds an exclusive lock on, as psql's \dt+ would.
    catalog::sizes(&mut client, &mut selected)?;
    let mut leaves = Vec::with_capacity(selected.len());
    for table in &selected {
        let rows = if cfg.exact {
            Some(count(&mut client, &table.name)?)
        } else {
            table.estimated_rows
        };
        leaves.push((table, rows));
    }
    let entries = group(leaves);
    if cfg.json {
        print_json(&listing_json(cfg, &entries)).context("writing the listing")?;
    } else {
        write_listing(&entries, cfg.exact).context("writing the listing")?;
    }
    Ok(Exit::Success)
}

/// The `--json` listing; its fields are documented in the README.
fn listing_json(cfg: &ListConfig, entries: &[Entry]) -> serde_json::Value {
    fn entry(e: &Entry) -> serde_json::Value {
        json!({
            "schema": e.name.schema,
            "table": e.name.name,
            "rows": e.rows,
            "bytes": e.bytes,
            "partitions": e.partitions.iter().map(entry).collect::<Vec<_>>(),
        })
    }
    json!({
        "pgcopy_version": env!("CARGO_PKG_VERSION"),
        "source": cfg.source.to_string(),
        "rows_exact": cfg.exact,
        "tables": entries.iter().map(entry).collect::<Vec<_>>(),
        "totals": {
            "tables": entries.iter().map(|e| e.partitions.len().max(1)).sum::<usize>(),
            "rows": entries.iter().map(|e| e.rows).sum::<Option<u64>>(),
            "bytes": entries.iter().map(|e| e.bytes).sum::<u64>(),
        },
    })
}

fn count(client: &mut Client, table: &TableName) -> Result<u64> {
    let n: i64 = client
        .query_one(&format!("SELECT count(*) FROM {}", table.quoted()), &[])
        .with_context(|| format!("counting the rows of {table}"))?
        .get(0);
    Ok(n as u64)
}

/// Groups partitions under their root parent and sorts by size, largest first.
fn group(leaves: Vec<(&Table, Option<u64>)>) -> Vec<Entry> {
    let mut parents: BTreeMap<TableName, Vec<Entry>> = BTreeMap::new();
    let mut entries = Vec::new();
    for (table, rows) in leaves {
        let entry = Entry {
            name: table.name.clone(),
            rows,
            bytes: table.total_bytes,
            partitions: Vec::new(),
        };
        match &table.parent {
            Some(parent) => parents.entry(parent.clone()).or_default().push(entry),
            None => entries.push(entry),
        }
    }
    for (name, mut partitions) in parents {
        partitions.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.name.cmp(&b.name)));
        entries.push(Entry {
            name,
            rows: partitions.iter().map(|p| p.rows).sum::<Option<u64>>(),
            bytes: partitions.iter().map(|p| p.bytes).sum(),
            partitions,
        });
    }
    entries.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.name.cmp(&b.name)));
    entries
}

fn write_listing(entries: &[Entry], exact: bool) -> std::io::Result<()> {
    let rows_header = if exact { "rows" } else { "est. rows" };
    let mut rows = vec![vec![
        "schema".to_string(),
        "table".into(),
        rows_header.into(),
        // Table, indexes and TOAST: what the database takes, more than a copy carries.
        "on disk".into(),
    ]];
    let line = |entry: &Entry, indent: &str| {
        vec![
            entry.name.schema.clone(),
            format!("{indent}{}", entry.name.name),
            entry.rows.map_or("?".into(), |n| n.to_string()),
            format_bytes(entry.bytes),
        ]
    };
    let mut tables = 0;
    for entry in entries {
        rows.push(line(entry, ""));
        tables += entry.partitions.len().max(1);
        for partition in &entry.partitions {
            rows.push(line(partition, "  "));
        }
    }
    let total_rows: Option<u64> = entries.iter().map(|e| e.rows).sum();
    rows.push(vec![
        "total".into(),
        format!("{tables} tables"),
        total_rows.map_or("?".into(), |n| n.to_string()),
        format_bytes(entries.iter().map(|e| e.bytes).sum()),
    ]);
    write_table(&mut crate::output::format::stdout(), "llrr", &rows)
}
