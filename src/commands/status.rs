//! The `status` command: whether the source can be followed by logical replication
//! (`copy --follow`): each requirement with what the source has and what to do, and the
//! selected tables without a usable replica identity with the statement that fixes each;
//! and the followers pgcopy has on it: each slot, whether one streams from it, how far
//! behind it is and the WAL it holds.

use crate::cli::config::StatusConfig;
use crate::exit::Exit;
use crate::output::format::{print_json, write_table};
use crate::pg::server::BEGIN_READ_ONLY;
use crate::plan;
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
    if cfg.json {
        print_json(&status_json(cfg, &found, &followers)).context("writing the status")?;
    } else {
        write_status(&found, &followers).context("writing the status")?;
    }
    Ok(if found.ready() {
        Exit::Success
    } else {
        Exit::Usage
    })
}

fn write_status(found: &Readiness, followers: &[Follower]) -> std::io::Result<()> {
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
fn status_json(cfg: &StatusConfig, found: &Readiness, followers: &[Follower]) -> serde_json::Value {
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
    })
}
