//! Asking before data is replaced: on a terminal, the tables and what they hold now, and a
//! yes/no question; without one, a refusal unless `--yes` was given.

use crate::cli::config::CopyConfig;
use crate::output::format::write_table;
use crate::pg::sql::TableName;
use crate::plan::Plan;
use anyhow::{bail, Context, Result};
use postgres::Client;
use std::io::{BufRead, IsTerminal, Write};

/// Asks before replacing data, unless `--yes`. Without a terminal to ask on, refuses.
pub(crate) fn confirm(cfg: &CopyConfig, dest: &mut Client, plan: &Plan) -> Result<()> {
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
fn current_rows(dest: &mut Client, table: &TableName) -> Result<String> {
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
