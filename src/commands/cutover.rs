//! The `cutover` command, run once the application has stopped writing to the source: it
//! checks that every table the follower's filters select is followed (or that it may go
//! on without some, `--allow-unfollowed`), writes the mark into the source's WAL (a transactional `pg_logical_emit_message`, so
//! every transaction committed before it comes before it in the stream), and waits until
//! the follower has applied everything up to it, set the sequences and dropped its slot,
//! which is when the destination is ready. That time is the downtime, and it says so. A
//! source before PostgreSQL 14 does not stream the mark: cutover then tells the follower
//! where it is through the destination (`NOTIFY`), again every second until it is done.

use crate::cli::config::{CutoverConfig, Verbosity, VerifyConfig};
use crate::commands::verify;
use crate::exit::Exit;
use crate::output::checks::{checks_json, exit_code};
use crate::output::format::print_json;
use crate::pg::server::Identity;
use crate::pg::sql::TableName;
use crate::plan::filter::{Glob, TableFilter};
use crate::replication::{follow, progress, readiness, slot};
use crate::schema::catalog;
use crate::schema::large_objects::Selection;
use crate::units::format_bytes;
use anyhow::{bail, Context, Result};
use postgres::Client;
use serde_json::json;
use std::io::Write as _;
use std::time::{Duration, Instant};

/// How often the slot is looked at.
const POLL: Duration = Duration::from_millis(50);

/// How long cutover waits for the follower to take up tables made since the copy (it looks
/// every few seconds) before it says which are left out.
const TAKE_UP: Duration = Duration::from_secs(15);

/// How long the slot may be without a follower before cutover stops waiting for one.
const ORPHANED: Duration = Duration::from_secs(10);

pub(crate) fn run(cfg: &CutoverConfig) -> Result<Exit> {
    let started = Instant::now();
    let mut dest = cfg.dest.connect()?;
    let name = slot::name_for(&Identity::read(&mut dest)?.key());
    let mut source = cfg.source.connect()?;
    // A follower between two tries, or just done with its copy, streams again in a moment.
    loop {
        match slot::find(&mut source, &name)?.map(|f| f.active) {
            None => return Err(no_follower(cfg, &mut dest, &name)),
            Some(false) if started.elapsed() >= ORPHANED => bail!(
                "the follower of {} is not running (its slot {name} on the source has been idle \
                 for {}s): start it with `pgcopy copy --follow --resume`, then cut over",
                cfg.dest,
                ORPHANED.as_secs()
            ),
            Some(false) => std::thread::sleep(POLL),
            Some(true) => break,
        }
    }
    // Verify compares every table the follower's filters select (the publication records
    // them, until the follower drops it), once none is left out or that is allowed.
    let compared = TableFilter {
        include_tables: to_compare(cfg, &mut source, &mut dest, &name)?
            .iter()
            .map(|t| Glob::new(&t.dotted()))
            .collect(),
        ..TableFilter::default()
    };
    let mark = follow::write_mark(&mut source, &name)?;
    log::info!(
        "wrote the cutover mark at {}; waiting for the follower to apply everything before it",
        slot::LsnText(mark)
    );
    let mut idle_since: Option<Instant> = None;
    let mut last_said = Instant::now();
    let mut last_notified: Option<Instant> = None;
    loop {
        // Again now and then: a notification is lost on a follower not listening yet.
        if last_notified.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            follow::notify_mark(&mut dest, &name, mark)?;
            last_notified = Some(Instant::now());
        }
        match slot::find(&mut source, &name)? {
            None => break,
            Some(follower) => {
                let behind = follower.behind;
                if follower.active {
                    idle_since = None;
                } else if idle_since.get_or_insert_with(Instant::now).elapsed() >= ORPHANED {
                    bail!(
                        "the follower stopped before it reached the cutover mark: start it \
                         again with `pgcopy copy --follow --resume`; it finishes at the mark"
                    );
                }
                if started.elapsed() >= cfg.timeout {
                    bail!(
                        "the follower did not reach the cutover mark within {}s ({} behind); \
                         it goes on, and finishes when it does",
                        cfg.timeout.as_secs(),
                        format_bytes(behind)
                    );
                }
                if last_said.elapsed() >= Duration::from_secs(5) {
                    log::info!("the follower is {} behind the mark", format_bytes(behind));
                    last_said = Instant::now();
                }
            }
        }
        std::thread::sleep(POLL);
    }
    // The downtime ends when the destination is ready; a comparison comes after it.
    let downtime = started.elapsed();
    let checks = if cfg.verify {
        Some(verify::checks(&VerifyConfig {
            source: cfg.source.clone(),
            dest: cfg.dest.clone(),
            filter: compared,
            parallel: 2,
            lock_timeout: Duration::from_secs(60),
            large_objects: Selection::Never,
            rules: None,
            json: false,
            verbosity: cfg.verbosity,
        })?)
    } else {
        None
    };
    let exit = checks.as_deref().map_or(Exit::Success, exit_code);
    if cfg.json {
        print_json(&json!({
            "pgcopy_version": env!("CARGO_PKG_VERSION"),
            "status": exit.status(),
            "exit_code": exit.code(),
            "source": cfg.source.to_string(),
            "destination": cfg.dest.to_string(),
            "slot": name,
            "mark": slot::LsnText(mark).to_string(),
            "downtime_seconds": downtime.as_secs_f64(),
            "verified": checks.as_deref().map(checks_json),
        }))
        .context("writing the result")?;
    } else if cfg.verbosity != Verbosity::Quiet || exit != Exit::Success {
        if let Some(checks) = &checks {
            verify::write_summary(checks)?;
        }
        let _ = writeln!(
            crate::output::format::stdout(),
            "cut over in {:.1}s: the destination holds every transaction the source \
             committed before the mark{}",
            downtime.as_secs_f64(),
            match exit {
                _ if checks.is_none() => "",
                Exit::Success => ", verified",
                _ => ", but the comparison found differences",
            }
        );
    }
    Ok(exit)
}

/// The tables to compare after cutover: every table the follower's filters select, once
/// none of them is left unfollowed (tables made since the copy are taken up by the follower
/// within seconds, when it can) or `--allow-unfollowed` says to go on without them; those
/// the destination lacks are not compared. A publication that records no filters (an older
/// pgcopy's) has its tables compared.
fn to_compare(
    cfg: &CutoverConfig,
    source: &mut Client,
    dest: &mut Client,
    name: &str,
) -> Result<Vec<TableName>> {
    let Some(filter) = slot::recorded_filter(source, name)? else {
        return Ok(follow::published(source, name)?.into_iter().collect());
    };
    let started = Instant::now();
    let (followed, left) = loop {
        let followed = follow::published(source, name)?;
        let left = follow::unfollowed(source, &filter, &followed)?;
        let reasons = why_unfollowed(source, dest, &left)?;
        // A table with no reason in the way is one the follower is taking up.
        if reasons.iter().all(Option::is_some) || started.elapsed() >= TAKE_UP {
            break (followed, left.into_iter().zip(reasons).collect::<Vec<_>>());
        }
        std::thread::sleep(POLL * 10);
    };
    let mut compared: Vec<TableName> = followed.into_iter().collect();
    if left.is_empty() {
        return Ok(compared);
    }
    let lines: Vec<String> = left
        .iter()
        .map(|(table, why)| {
            format!(
                "{}: {}",
                table.name,
                why.as_deref()
                    .unwrap_or("the follower has not taken it up (its log says why)")
            )
        })
        .collect();
    if !cfg.allow_unfollowed {
        bail!(
            "not cutting over: these tables the follower's filters select are not followed, so \
             the destination would not have their rows:\n  {}\nthe follower takes each up \
             within seconds once it can; or cut over without them: --allow-unfollowed",
            lines.join("\n  ")
        );
    }
    log::warn!(
        "cutting over without these tables the follower's filters select (--allow-unfollowed): \
         {}",
        lines.join("; ")
    );
    let missing = missing_on(
        dest,
        &left.iter().map(|(t, _)| t.name.clone()).collect::<Vec<_>>(),
    )?;
    compared.extend(
        left.into_iter()
            .map(|(t, _)| t.name)
            .filter(|name| !missing.contains(name)),
    );
    Ok(compared)
}

/// What keeps each of `tables` from being followed, where cutover can tell: the destination
/// lacks it, or it has no replica identity.
fn why_unfollowed(
    source: &mut Client,
    dest: &mut Client,
    tables: &[catalog::Table],
) -> Result<Vec<Option<String>>> {
    if tables.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<TableName> = tables.iter().map(|t| t.name.clone()).collect();
    let missing = missing_on(dest, &names)?;
    let oids: Vec<u32> = tables.iter().map(|t| t.oid).collect();
    let lacking: Vec<readiness::NoIdentity> = readiness::no_identity(source, &oids)?;
    Ok(tables
        .iter()
        .map(|t| {
            if missing.contains(&t.name) {
                Some("the destination has no such table".to_string())
            } else {
                lacking
                    .iter()
                    .find(|n| n.table == t.name)
                    .map(|n| format!("it has no usable replica identity: {}", n.fix))
            }
        })
        .collect())
}

/// Which of `tables` the destination does not have.
fn missing_on(dest: &mut Client, tables: &[TableName]) -> Result<Vec<TableName>> {
    let mut missing = Vec::new();
    for table in tables {
        let there: bool = dest
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table.quoted()])
            .context("looking for a table on the destination")?
            .get(0);
        if !there {
            missing.push(table.clone());
        }
    }
    Ok(missing)
}

/// Why there is no follower to cut over, as far as the destination can tell.
fn no_follower(cfg: &CutoverConfig, dest: &mut Client, name: &str) -> anyhow::Error {
    match progress::find(dest, name) {
        Ok(Some((_, at))) => anyhow::anyhow!(
            "the source {} has no replication slot {name}, though the destination holds a \
             follower's record of having applied everything up to {}: the slot was dropped or \
             lost (a failover to a server without it), and the changes since with it; \
             `pgcopy abandon`, then `pgcopy copy --follow` again",
            cfg.source,
            slot::LsnText(at)
        ),
        Ok(None) => anyhow::anyhow!(
            "no follower of {} on {}: the source has no replication slot {name} and the \
             destination no record of one. A cutover that timed out or was stopped still \
             completes once the follower reaches its mark, and the follower then drops both, \
             as now (its output says \"cut over at …\"); else nothing follows into this \
             destination: start with `pgcopy copy --follow`",
            cfg.dest,
            cfg.source
        ),
        Err(err) => err.context(format!(
            "no follower of {} on {}: the source has no replication slot {name}",
            cfg.dest, cfg.source
        )),
    }
}
