//! The `copy` command: plan against both catalogs, confirm, move the foreign keys out of the
//! way, run the byte pipe, put the keys back, report.

use crate::config::CopyConfig;
use crate::conn::{describe, Snapshot};
use crate::constraints::{self, ForeignKey};
use crate::exit;
use crate::pipe::{self, TableOutcome};
use crate::plan::{self, Format, Plan};
use crate::progress::{Counters, Progress};
use crate::report::{format_bytes, write_table, Report};
use anyhow::{bail, Context, Result};
use postgres::Client;
use std::io::{BufRead, IsTerminal, Write};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// Runs a copy. An `Err` means nothing on the destination was changed; once writing has
/// begun, failures end up in the report and the exit code instead.
pub fn run(cfg: &CopyConfig) -> Result<u8> {
    let mut snapshot = Snapshot::export(cfg.source.connect()?)?;
    let all = crate::catalog::tables(&mut snapshot.client)?;
    let selected = plan::select(&all, &cfg.filter)?;
    let plan = plan::build(&mut snapshot.client, &selected)?;
    let mut dest = cfg.dest.connect()?;
    plan::check_destination(&mut dest, &plan)?;
    for table in &plan.tables {
        if let Some(reason) = &table.text_reason {
            log::info!("{} travels in text format: {reason}", table.name);
        }
    }
    let keys = constraints::find(&mut dest, &plan.names())?;
    if cfg.dry_run {
        print_plan(cfg, &plan, &keys).context("writing the plan")?;
        return Ok(exit::SUCCESS);
    }
    confirm(cfg, &mut dest, &plan)?;
    log::info!(
        "copying {} tables ({} on disk) from {} to {}, {} at a time",
        plan.tables.len(),
        format_bytes(plan.data_bytes()),
        cfg.source,
        cfg.dest,
        cfg.parallel
    );

    let started = Instant::now();
    constraints::drop_all(&mut dest, &keys)?;
    let outcomes = copy_tables(cfg, &plan, &snapshot);
    drop(snapshot);
    let problems = put_keys_back(cfg, dest, &keys);

    let report = Report {
        plan: &plan,
        outcomes: &outcomes,
        elapsed: started.elapsed(),
        keys_restored: keys.len(),
        problems: &problems,
    };
    report
        .write(&mut std::io::stdout().lock())
        .context("writing the report")?;
    Ok(if report.failed_tables() > 0 || !problems.is_empty() {
        exit::TABLES_FAILED
    } else {
        exit::SUCCESS
    })
}

/// Runs the byte pipe with progress; never fails as a whole: a table that could not be
/// copied carries its error.
fn copy_tables(cfg: &CopyConfig, plan: &Plan, snapshot: &Snapshot) -> Vec<TableOutcome> {
    let settings = pipe::Settings {
        snapshot_sql: snapshot.import_sql(),
        batch_size: cfg.batch_size,
        parallel: cfg.parallel,
    };
    let counters = Counters::default();
    let quit = AtomicBool::new(false);
    let bar = cfg.progress && std::io::stderr().is_terminal();
    let mut progress = Progress::new(plan, bar);
    let started = Instant::now();
    let result = cfg
        .source
        .pool(cfg.parallel)
        .and_then(|source| Ok((source, cfg.dest.pool(cfg.parallel)?)))
        .and_then(|(source, dest)| {
            pipe::run(plan, &settings, &source, &dest, &counters, &quit, |lanes| {
                progress.tick(&counters, lanes)
            })
        });
    progress.finish();
    match result {
        Ok(outcomes) => outcomes,
        Err(err) => {
            let message = describe(&err);
            plan.tables
                .iter()
                .map(|_| TableOutcome {
                    rows: 0,
                    bytes: 0,
                    elapsed: started.elapsed(),
                    error: Some(anyhow::anyhow!(message.clone())),
                })
                .collect()
        }
    }
}

/// Puts the foreign keys back, on a new connection if the first one was lost meanwhile.
fn put_keys_back(cfg: &CopyConfig, mut dest: Client, keys: &[ForeignKey]) -> Vec<String> {
    if keys.is_empty() {
        return Vec::new();
    }
    if dest.is_closed() {
        match cfg.dest.connect() {
            Ok(client) => dest = client,
            Err(err) => {
                return keys
                    .iter()
                    .map(|key| {
                        format!(
                            "foreign key {} on {} could not be put back ({}); run by hand: {}",
                            key.name,
                            key.table,
                            describe(&err),
                            key.add_sql()
                        )
                    })
                    .collect()
            }
        }
    }
    constraints::restore_all(&mut dest, keys)
}

/// Asks before replacing data, unless `--yes`. Without a terminal to ask on, refuses.
fn confirm(cfg: &CopyConfig, dest: &mut Client, plan: &Plan) -> Result<()> {
    if cfg.yes {
        return Ok(());
    }
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    if !interactive {
        bail!(
            "refusing to replace the data of {} tables in {} without confirmation: \
             pass --yes, or run on a terminal to be asked (--dry-run shows the plan)",
            plan.tables.len(),
            cfg.dest
        );
    }
    let mut rows = vec![vec![
        "table".to_string(),
        "rows now on the destination".into(),
    ]];
    for table in &plan.tables {
        rows.push(vec![
            table.name.to_string(),
            current_rows(dest, &table.name)?,
        ]);
    }
    let mut err = std::io::stderr().lock();
    writeln!(err, "These tables in {} will be replaced:", cfg.dest)?;
    write_table(&mut err, "lr", &rows)?;
    write!(
        err,
        "Replace the data of these {} tables? [y/N] ",
        plan.tables.len()
    )?;
    err.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        bail!("not confirmed; nothing was changed");
    }
    Ok(())
}

/// "empty", or the planner's estimate of the rows a table holds (cheap on any size).
fn current_rows(dest: &mut Client, table: &crate::sql::TableName) -> Result<String> {
    let row = dest
        .query_one(
            &format!(
                "SELECT EXISTS (SELECT 1 FROM {0}),
                        (SELECT reltuples::float8 FROM pg_class WHERE oid = $1::text::regclass)",
                table.quoted()
            ),
            &[&table.quoted()],
        )
        .with_context(|| format!("looking at {table} on the destination"))?;
    let any: bool = row.get(0);
    let estimate: Option<f64> = row.get(1);
    Ok(match (any, estimate) {
        (false, _) => "empty".into(),
        (true, Some(n)) if n > 0.0 => format!("~{}", n as u64),
        (true, _) => "some (not yet analyzed)".into(),
    })
}

/// The `--dry-run` output: everything the copy would do, and nothing done.
fn print_plan(cfg: &CopyConfig, plan: &Plan, keys: &[ForeignKey]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "dry run: nothing was changed")?;
    writeln!(out, "source:      {}", cfg.source)?;
    writeln!(out, "destination: {}", cfg.dest)?;
    writeln!(
        out,
        "{} tables, {} on disk, {} at a time",
        plan.tables.len(),
        format_bytes(plan.data_bytes()),
        cfg.parallel
    )?;
    let mut rows = vec![vec![
        "table".to_string(),
        "est. rows".into(),
        "size".into(),
        "format".into(),
        "left out".into(),
    ]];
    for table in &plan.tables {
        rows.push(vec![
            table.name.to_string(),
            table
                .estimated_rows
                .map_or("?".into(), |rows| rows.to_string()),
            format_bytes(table.data_bytes),
            table.format.to_string(),
            table
                .generated
                .iter()
                .map(|c| format!("{c} (generated)"))
                .collect::<Vec<_>>()
                .join(", "),
        ]);
    }
    write_table(&mut out, "lrrll", &rows)?;
    for table in plan.tables.iter().filter(|t| t.format == Format::Text) {
        if let Some(reason) = &table.text_reason {
            writeln!(out, "{} travels as text: {reason}", table.name)?;
        }
    }
    writeln!(
        out,
        "foreign keys dropped for the load and put back after it: {}",
        keys.len()
    )?;
    for key in keys {
        writeln!(out, "  {} on {}: {}", key.name, key.table, key.definition)?;
    }
    Ok(())
}
