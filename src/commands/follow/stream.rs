//! Following itself: the follower's sessions set up from the destination's recorded
//! progress, the stream applied until the cutover mark or a stop, a lost session tried
//! again from where the destination is, and the progress line; with `--json`, the run's
//! one document.

use super::end::Followed;
use super::joining::Watcher;
use super::lag::Lag;
use super::quiet::quiet_destination;
use crate::cli::config::{CopyConfig, Verbosity};
use crate::exit::Exit;
use crate::output::format::print_json;
use crate::output::logging;
use crate::output::metrics::live::{Following, LIVE};
use crate::output::metrics::unix_seconds;
use crate::output::progress::{draw_status, format_count};
use crate::pg::error::{backoff, describe, kind, TryLater};
use crate::pg::server::{self, lock_destination};
use crate::pg::wire;
use crate::plan::chunks::registry::Registry;
use crate::replication::apply::{self, Applied, Ended};
use crate::replication::decode::Lsn;
use crate::replication::follow::{self, Sessions};
use crate::replication::progress;
use crate::replication::slot::LsnText;
use crate::state::interrupt;
use anyhow::{Context, Result};
use serde_json::json;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Follows (see `run`) and, with `--json`, prints the run's one document: the copy's
/// report when this run copied (`report` gives it once the copy is over), with what
/// following did added as `following`. A failure is in that document too, and in the exit
/// code. `copying`: the chunks of a copy going on meanwhile (see `Chunks::sharing`).
pub(super) fn follow(
    cfg: &CopyConfig,
    name: &str,
    first: Option<wire::Connection>,
    report: impl FnOnce() -> Option<serde_json::Value>,
    copying: Option<Arc<Registry>>,
) -> Result<Exit> {
    let started = Instant::now();
    let mut total = Applied::default();
    let stopped_with_copy = copying.clone();
    let result = run(cfg, name, first, &mut total, started, copying);
    logging::end_bar();
    if !cfg.json {
        return result.map(|followed| followed.exit);
    }
    let report = report();
    let (exit, ended, error) = match &result {
        Ok(followed) if followed.mark.is_some() => (followed.exit, "cutover", None),
        Ok(followed) => (followed.exit, "interrupted", None),
        Err(err) => (Exit::Usage, "failed", Some(describe(err))),
    };
    let followed = result.as_ref().ok();
    let mut doc = report.unwrap_or_else(|| {
        json!({
            "pgcopy_version": env!("CARGO_PKG_VERSION"),
            "source": cfg.source.to_string(),
            "destination": cfg.dest.to_string(),
        })
    });
    // A copy that stopped stopped following: the run ends as the copy's report says.
    if !stopped_with_copy.is_some_and(|c| c.stopped()) {
        doc["status"] = json!(exit.status());
        doc["exit_code"] = json!(exit.code());
    }
    doc["following"] = json!({
        "slot": name,
        "ended": ended,
        "mark": followed.and_then(|f| f.mark).map(|at| LsnText(at).to_string()),
        "seconds": started.elapsed().as_secs_f64(),
        "transactions": total.transactions,
        "rows": total.rows,
        "sequences_set": followed.map(|f| f.sequences_set),
        "error": error,
    });
    print_json(&doc).context("writing the report")?;
    if let Some(error) = error {
        log::error!("{error}");
    }
    Ok(exit)
}

/// Follows the slot `name` until the cutover mark, then finishes: from `first`, the slot's
/// session that made it, or a new one. A lost connection to either side (a restart, a
/// failover, a network cut) is tried again `--retries` times, from where the destination's
/// record says it is, so nothing is lost or applied twice across tries. What was applied
/// adds up in `total`.
fn run(
    cfg: &CopyConfig,
    name: &str,
    first: Option<wire::Connection>,
    total: &mut Applied,
    started: Instant,
    copying: Option<Arc<Registry>>,
) -> Result<Followed> {
    interrupt::install()?;
    let mut first = first;
    let mut tries = 0;
    let stopped = || copying.as_ref().is_some_and(|c| c.stopped());
    loop {
        let before = total.transactions;
        let result = follow_once(cfg, name, first.take(), total, copying.clone());
        let err = match result {
            Ok(Ended::Cutover { at }) => {
                // The cutover mark came before the copy was over: the chunks still to read
                // are read first.
                if let Some(copying) = &copying {
                    copying.wait(None)?;
                }
                return super::end::finish(cfg, name, at, total, started);
            }
            Ok(Ended::Interrupted) => {
                log::warn!(
                    "stopped following after {} transactions: the destination holds each of \
                     them whole; go on with `pgcopy copy --follow --resume`",
                    total.transactions
                );
                return Ok(Followed {
                    exit: Exit::Interrupted,
                    mark: None,
                    sequences_set: 0,
                });
            }
            Ok(Ended::StreamGone) => {
                anyhow::Error::new(TryLater("the replication stream ended".into()))
            }
            Err(err) => err,
        };
        if total.transactions > before {
            tries = 0;
        }
        if stopped() {
            log::warn!(
                "stopped following after {} transactions, as the copy stopped: {}",
                total.transactions,
                describe(&err)
            );
            return Ok(Followed {
                exit: Exit::Interrupted,
                mark: None,
                sequences_set: 0,
            });
        }
        if tries >= cfg.retries || !kind(&err).is_worth_retrying() || interrupt::requested() {
            return Err(err.context(
                "following stopped; go on with `pgcopy copy --follow --resume` once the cause \
                 is fixed",
            ));
        }
        tries += 1;
        LIVE.retried();
        let wait = backoff(tries);
        log::warn!(
            "following stopped: {}; going on from where the destination is in {}s (try {tries} \
             of {})",
            describe(&err),
            wait.as_secs(),
            cfg.retries
        );
        std::thread::sleep(wait);
    }
}

/// One try at following, from where the destination's origin is; adds what it applied to
/// `total`.
fn follow_once(
    cfg: &CopyConfig,
    name: &str,
    stream: Option<wire::Connection>,
    total: &mut Applied,
    copying: Option<Arc<Registry>>,
) -> Result<Ended> {
    let mut catalog = cfg.dest.connect()?;
    // Alongside a copy, the copy holds pgcopy's lock on the destination.
    if copying.as_ref().is_none_or(|c| c.done()) {
        lock_destination(&mut catalog, &cfg.dest)?;
    }
    let (ledger, start) = progress::find(&mut catalog, name)?.with_context(|| {
        format!("the destination's record of how far it followed {name} is gone")
    })?;
    let mut source = cfg.source.connect()?;
    let followed = follow::published(&mut source, name)?;
    let setup = quiet_destination(cfg, &mut catalog, &followed, ledger)?;
    let mut watcher = Watcher::new(cfg, &mut source, name, setup.replica)?;
    let mut apply_session = cfg.dest.connect_reader()?;
    apply::prepare_session(&mut apply_session, name, &setup)?;
    let source_version = server::version(&mut source)?;
    let stream = match stream {
        Some(stream) => stream,
        None => cfg.source.connect_replication()?,
    };
    let base = *total;
    let bar = cfg.progress && cfg.verbosity != Verbosity::Quiet && std::io::stderr().is_terminal();
    // The status line and the metrics endpoint are brought up to date every second; log
    // lines come every progress interval.
    let tick = match bar || cfg.metrics_listen.is_some() {
        true => Duration::from_secs(1),
        false => cfg.progress_interval,
    };
    let mut last = (Applied::default(), Instant::now());
    let mut logged = last;
    let report = |applied: &Applied, _server_end: Lsn| {
        let lag = Lag::now(&mut source, name, applied);
        let transactions = base.transactions + applied.transactions;
        let rows = base.rows + applied.rows;
        let rate = |since: &(Applied, Instant), now: u64, then: u64| {
            (now - then) as f64 / since.1.elapsed().as_secs_f64().max(0.001)
        };
        let per_second = |now: u64, then: u64| rate(&last, now, then);
        // The copy's own progress line is drawn while it goes on.
        if bar && copying.as_ref().is_none_or(|c| c.done()) {
            draw_status(&format!(
                "following: {} tx {}/s · {} rows {}/s{}",
                format_count(transactions),
                format_count(per_second(applied.transactions, last.0.transactions) as u64),
                format_count(rows),
                format_count(per_second(applied.rows, last.0.rows) as u64),
                lag.short()
            ));
        } else if logged.1.elapsed() + tick / 2 >= cfg.progress_interval {
            log::info!(
                transactions,
                rows,
                lag_bytes = lag.slot.as_ref().map(|f| f.behind),
                lag_seconds = lag.seconds();
                "following: {transactions} transactions applied ({:.0}/s), {rows} rows \
                 ({:.0}/s){}",
                rate(&logged, applied.transactions, logged.0.transactions),
                rate(&logged, applied.rows, logged.0.rows),
                lag.sentence()
            );
            logged = (*applied, Instant::now());
        }
        LIVE.following(Following {
            transactions,
            rows,
            per_second: per_second(applied.transactions, last.0.transactions),
            lag_bytes: lag.slot.as_ref().map(|f| f.behind),
            lag_seconds: lag.seconds(),
            slot_bytes: lag.slot.as_ref().map(|f| f.held),
            last_commit: lag
                .last_commit_ago
                .map(|ago| unix_seconds(SystemTime::now()) - ago),
        });
        last = (*applied, Instant::now());
    };
    let sessions = Sessions {
        stream,
        apply: apply_session,
        catalog,
        source: cfg.source.clone(),
        copying: copying.clone(),
    };
    let what = follow::Stream {
        name: name.to_string(),
        followed,
        start,
        version: source_version,
        setup,
    };
    let copy_stopped = copying.clone();
    let interrupted =
        move || interrupt::requested() || copy_stopped.as_ref().is_some_and(|c| c.stopped());
    let (ended, applied) = follow::run(sessions, what, &interrupted, tick, report, |followed| {
        watcher.look(followed)
    })?;
    total.transactions += applied.transactions;
    total.rows += applied.rows;
    total.last_commit_time = applied.last_commit_time;
    Ok(ended)
}
