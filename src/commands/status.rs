//! The `status` command: whether the source can be followed by logical replication
//! (`copy --follow`): each requirement with what the source has and what to do, and the
//! selected tables without a usable replica identity with the statement that fixes each;
//! and the followers pgcopy has on it: each slot, whether one streams from it, how far
//! behind it is and the WAL it holds; with `--dest`, the chunks of that destination's
//! follower's initial copy, copied and to copy, per table and in all.

use crate::cli::config::StatusConfig;
use crate::exit::Exit;
use crate::output::format::{print_json, write_table};
use crate::pg::server::{Identity, BEGIN_READ_ONLY};
use crate::pg::sql::TableName;
use crate::plan;
use crate::plan::chunks;
use crate::replication::readiness::{self, Readiness};
use crate::replication::slot::{self, Follower};
use crate::schema::catalog;
use crate::units::format_bytes;
use anyhow::{Context, Result};
use serde_json::json;
use std::io::Write;

/// The `status` command: exit 0 when the source is ready to be followed, 2 when not.
pub(crate) fn run(cfg: &StatusConfig) -> Result<Exit> {
    let mut client = cfg.source.connect()?;
    client.batch_execute(BEGIN_READ_ONLY)?;
    let all = catalog::tables(&mut client)?;
    let selected = plan::select(&all, &cfg.filter)?;
    let mut found = readiness::check(&mut client, &selected)?;
    client.batch_execute("COMMIT")?;
    let followers = slot::followers(&mut client)?;
    found
        .requirements
        .push(readiness::replication_session(&cfg.source));
    let copy = match &cfg.dest {
        Some(dest) => Some(initial_copy(&mut dest.connect()?)?),
        None => None,
    };
    if cfg.json {
        print_json(&status_json(cfg, &found, &followers, copy.as_ref()))
            .context("writing the status")?;
    } else {
        write_status(&found, &followers, copy.as_ref()).context("writing the status")?;
    }
    Ok(if found.ready() {
        Exit::Success
    } else {
        Exit::Usage
    })
}

/// The chunks of the initial copy of the follower of a destination: its slot, and per
/// table the chunks copied and in all (none when it copied none or ended).
struct InitialCopy {
    slot: String,
    tables: Vec<(TableName, i64, i64)>,
}

impl InitialCopy {
    fn totals(&self) -> (i64, i64) {
        self.tables
            .iter()
            .fold((0, 0), |(d, a), (_, done, all)| (d + done, a + all))
    }
}

fn initial_copy(dest: &mut postgres::Client) -> Result<InitialCopy> {
    let slot = slot::name_for(&Identity::read(dest)?.key());
    let tables = chunks::counts(dest, &slot)?;
    Ok(InitialCopy { slot, tables })
}

fn write_status(
    found: &Readiness,
    followers: &[Follower],
    copy: Option<&InitialCopy>,
) -> std::io::Result<()> {
    let mut out = crate::output::format::stdout();
    let mut rows = vec![vec![
        "follow needs".to_string(),
        "the source has".into(),
        "to do".into(),
    ]];
    for r in &found.requirements {
        let fix = if r.met() {
            "ok".to_string()
        } else {
            r.fix.clone()
        };
        rows.push(vec![r.what.clone(), r.found.clone(), fix]);
    }
    write_table(&mut out, "lll", &rows)?;
    if !found.no_identity.is_empty() {
        writeln!(
            out,
            "tables without a usable replica identity (publishing them would make the \
             source's own UPDATE and DELETE on them fail):"
        )?;
        for t in &found.no_identity {
            writeln!(
                out,
                "  {} (replica identity {}): {};",
                t.table, t.identity, t.fix
            )?;
        }
    }
    for f in followers {
        writeln!(
            out,
            "follower {}: {}, {} behind the source{}, the slot holds {} of WAL",
            f.slot,
            if f.active {
                "streaming"
            } else {
                "idle: nobody streams from it (`pgcopy copy --follow --resume` or `pgcopy abandon`)"
            },
            format_bytes(f.behind),
            f.lag.map(|s| format!(" (lag {s:.1}s)")).unwrap_or_default(),
            format_bytes(f.held)
        )?;
    }
    if let Some(copy) = copy.filter(|c| !c.tables.is_empty()) {
        let (done, all) = copy.totals();
        let left: Vec<&(TableName, i64, i64)> =
            copy.tables.iter().filter(|(_, d, a)| d < a).collect();
        writeln!(
            out,
            "initial copy of follower {}: {done} of {all} chunks copied, {} of {} tables whole",
            copy.slot,
            copy.tables.len() - left.len(),
            copy.tables.len()
        )?;
        for (table, done, all) in left {
            writeln!(out, "  {table}: {done} of {all} chunks copied")?;
        }
    }
    writeln!(
        out,
        "{}",
        if found.ready() {
            "the source is ready to be followed"
        } else {
            "the source is not ready to be followed"
        }
    )
}

/// The `--json` status; its fields are documented in the README.
fn status_json(
    cfg: &StatusConfig,
    found: &Readiness,
    followers: &[Follower],
    copy: Option<&InitialCopy>,
) -> serde_json::Value {
    let copy = copy.map(|copy| {
        let (done, all) = copy.totals();
        json!({
            "slot": copy.slot,
            "chunks_copied": done,
            "chunks": all,
            "tables": copy.tables.iter().map(|(table, done, all)| json!({
                "schema": table.schema,
                "table": table.name,
                "chunks_copied": done,
                "chunks": all,
            })).collect::<Vec<_>>(),
        })
    });
    json!({
        "pgcopy_version": env!("CARGO_PKG_VERSION"),
        "source": cfg.source.to_string(),
        "ready": found.ready(),
        "requirements": found.requirements.iter().map(|r| json!({
            "needs": r.what,
            "found": r.found,
            "met": r.met(),
            "fix": (!r.met()).then_some(&r.fix),
        })).collect::<Vec<_>>(),
        "tables_without_replica_identity": found.no_identity.iter().map(|t| json!({
            "schema": t.table.schema,
            "table": t.table.name,
            "identity": t.identity,
            "fix": t.fix,
        })).collect::<Vec<_>>(),
        "followers": followers.iter().map(|f| json!({
            "slot": f.slot,
            "active": f.active,
            "behind_bytes": f.behind,
            "wal_held_bytes": f.held,
            "lag_seconds": f.lag,
        })).collect::<Vec<_>>(),
        "initial_copy": copy,
    })
}
