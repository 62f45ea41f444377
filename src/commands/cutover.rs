//! The `cutover` command, run once the application has stopped writing to the source: it
//! writes the mark into the source's WAL (a transactional `pg_logical_emit_message`, so
//! every transaction committed before it comes before it in the stream), and waits until
//! the follower has applied everything up to it, set the sequences and dropped its slot,
//! which is when the destination is ready. That time is the downtime, and it says so. A
//! source before PostgreSQL 14 does not stream the mark: cutover then tells the follower
//! where it is through the destination (`NOTIFY`), again every second until it is done.

use crate::cli::config::{CutoverConfig, Verbosity, VerifyConfig};
use crate::commands::verify;
use crate::exit::Exit;
use crate::pg::server::Identity;
use crate::plan::filter::{Glob, TableFilter};
use crate::replication::{follow, slot};
use crate::schema::large_objects::Selection;
use crate::units::format_bytes;
use anyhow::{bail, Result};
use std::time::{Duration, Instant};

/// How often the slot is looked at.
const POLL: Duration = Duration::from_millis(50);

/// How long the slot may be without a follower before cutover stops waiting for one.
const ORPHANED: Duration = Duration::from_secs(10);

pub(crate) fn run(cfg: &CutoverConfig) -> Result<Exit> {
    let started = Instant::now();
    let mut dest = cfg.dest.connect()?;
    let name = slot::name_for(&Identity::read(&mut dest)?.key());
    let mut source = cfg.source.connect()?;
    match slot::find(&mut source, &name)?.map(|f| f.active) {
        None => bail!(
            "no follower of {} on {}: the source has no replication slot {name}",
            cfg.dest,
            cfg.source
        ),
        Some(false) => bail!(
            "the follower of {} is not running (its slot {name} on the source is idle): start \
             it with `pgcopy copy --follow --resume`, then cut over",
            cfg.dest
        ),
        Some(true) => {}
    }
    // Verify compares what was followed; the publication says which tables, until the
    // follower drops it.
    let followed = TableFilter {
        include_tables: follow::published(&mut source, &name)?
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
    let mut exit = Exit::Success;
    if cfg.verify {
        exit = verify::run(&VerifyConfig {
            source: cfg.source.clone(),
            dest: cfg.dest.clone(),
            filter: followed,
            parallel: 2,
            lock_timeout: Duration::from_secs(60),
            large_objects: Selection::Never,
            json: false,
            verbosity: cfg.verbosity,
        })?;
    }
    if cfg.verbosity != Verbosity::Quiet {
        println!(
            "cut over in {:.1}s: the destination holds every transaction the source \
             committed before the mark{}",
            started.elapsed().as_secs_f64(),
            if cfg.verify { ", verified" } else { "" }
        );
    }
    Ok(exit)
}
