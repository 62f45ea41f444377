//! `copy --follow`: what it checks before anything is created (the source ready, the
//! destination role able to keep the destination quiet and to record its progress, no
//! follower of this destination already there), the slot the copy's snapshot comes from,
//! and after the copy the following itself until the cutover mark, which it ends by setting
//! the sequences from the source's live values, putting back the keys it kept dropped and
//! dropping what it made. `--resume` goes on from the destination's recorded progress; a
//! follower stopped during its initial copy has lost its snapshot and starts over.

use super::joining::Watcher;
use crate::cli::config::{CopyConfig, Verbosity};
use crate::exit::Exit;
use crate::output::format::print_json;
use crate::output::logging;
use crate::output::progress::{draw_status, format_count};
use crate::pg::error::{backoff, describe, kind, TryLater};
use crate::pg::server::{self, begin_read_only, lock_destination, Identity, SnapshotId};
use crate::pg::sql::TableName;
use crate::pg::wire;
use crate::plan;
use crate::replication::apply::{self, Applied, Ended};
use crate::replication::decode::Lsn;
use crate::replication::follow::{self, Sessions};
use crate::replication::progress::{self, Ledger};
use crate::replication::readiness;
use crate::replication::receive;
use crate::replication::slot::{self, LsnText, Slot};
use crate::schema::catalog;
use crate::schema::constraints;
use crate::schema::fk_mode::FkMode;
use crate::schema::large_objects;
use crate::schema::sequences;
use crate::schema::triggers;
use crate::state::file::{State, StateFile};
use crate::state::interrupt;
use crate::units::format_bytes;
use anyhow::{bail, Context, Result};
use postgres::Client;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::io::IsTerminal;
use std::io::Write as _;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

/// The slot and publication's name for this destination.
pub(super) fn name(dest: &mut Client) -> Result<String> {
    Ok(slot::name_for(&Identity::read(dest)?.key()))
}

/// Why this copy may not follow; checked before anything is created on either side.
pub(super) fn refusals(
    cfg: &CopyConfig,
    source: &mut Client,
    dest: &mut Client,
    name: &str,
) -> Result<Vec<String>> {
    let mut refusals = Vec::new();
    source.batch_execute(crate::pg::server::BEGIN_READ_ONLY)?;
    let selected = plan::select(&catalog::tables(source)?, &cfg.filter);
    source.batch_execute("COMMIT")?;
    let mut found = readiness::check(source, &selected?)?;
    found
        .requirements
        .push(readiness::replication_session(&cfg.source));
    for r in found.requirements.iter().filter(|r| !r.met()) {
        refusals.push(format!(
            "--follow needs {}; the source has {}: {}",
            r.what, r.found, r.fix
        ));
    }
    for t in &found.no_identity {
        refusals.push(format!(
            "{} has no usable replica identity (replica identity {}), so publishing it \
             would make the source application's UPDATE and DELETE on it fail: {}",
            t.table, t.identity, t.fix
        ));
    }
    if slot::find(source, name)?.is_some() {
        refusals.push(format!(
            "a follower of this destination is already there (the source's replication slot \
             {name}): go on with `pgcopy copy --follow --resume`, or give it up with \
             `pgcopy abandon`"
        ));
    }
    if cfg.fk_mode == FkMode::None {
        refusals.push(
            "--follow applies the source's changes row by row, which the destination's \
             foreign keys and triggers must not see (a cascade would apply a change twice): \
             use --fk-mode replica, drop or auto, not none"
                .to_string(),
        );
    }
    if let Err(why) = Ledger::choose(dest)? {
        refusals.push(why);
    }
    Ok(refusals)
}

/// `--follow --resume`: follows from where the destination is, when an earlier follower got
/// past its copy; `None` when the copy must be made (again) first, after dropping what a
/// follower stopped during its copy left.
pub(super) fn resume(cfg: &CopyConfig) -> Result<Option<Exit>> {
    let mut source = cfg.source.connect()?;
    let mut dest = cfg.dest.connect()?;
    let name = name(&mut dest)?;
    let slot_exists = slot::find(&mut source, &name)?.is_some();
    match (progress::find(&mut dest, &name)?, slot_exists) {
        (Some((_, at)), true) => {
            same_tables(&mut source, &mut dest, &name)?;
            log::info!(
                "resuming: the destination holds every source transaction up to {}",
                LsnText(at)
            );
            Ok(Some(follow(cfg, &name, None, None)?))
        }
        (Some(_), false) => bail!(
            "the destination was following the source, but the source's replication slot \
             {name} is gone, and with it the changes since: copy again with --follow, \
             without --resume, after `pgcopy abandon` drops the destination's record of it"
        ),
        (None, true) => {
            log::warn!(
                "the destination has no record of the earlier follower's progress: it stopped \
                 during its initial copy, whose snapshot is gone with it, or a copy replaced \
                 its data since; starting over with a new slot and snapshot (dropping {name})"
            );
            slot::drop_both(&mut source, &name)?;
            Ok(None)
        }
        (None, false) => bail!(
            "nothing to resume: no follower of {} on {} (no replication slot {name}, and no \
             record of one on the destination); run `pgcopy copy --follow` without --resume",
            cfg.dest,
            cfg.source
        ),
    }
}

/// Before a copy without `--follow` replaces the destination's data: a follower that
/// stopped there cannot go on from where it was (it would apply again what this copy
/// brings), so its record of how far it got goes. A `--resume` then starts over.
pub(super) fn forget_replaced(dest: &mut Client) -> Result<()> {
    let name = name(dest)?;
    let Some((_, at)) = progress::find(dest, &name)? else {
        return Ok(());
    };
    progress::forget(dest, &name)?;
    log::warn!(
        "this destination was following a source up to {} (the follower {name}, stopped): \
         this copy replaces its data, so that follower's record of its progress is dropped, \
         and `pgcopy copy --follow --resume` starts over with a new copy; `pgcopy abandon` \
         drops its slot on the source",
        LsnText(at)
    );
    Ok(())
}

/// Refuses to go on following into tables that are not those the follower followed into:
/// dropped and made again since (a restore with `--clean`, another tool), they hold other
/// data, and applying the changes since onto it would mix the two.
fn same_tables(source: &mut Client, dest: &mut Client, name: &str) -> Result<()> {
    // Those still published: a table dropped on the source is followed no more.
    let published: HashSet<String> = follow::published(source, name)?
        .iter()
        .map(TableName::quoted)
        .collect();
    let mut recorded = slot::recorded_tables(source, name)?;
    recorded.retain(|table, _| published.contains(table));
    if recorded.is_empty() {
        return Ok(());
    }
    let names: Vec<TableName> = recorded
        .keys()
        .filter_map(|quoted| parse_quoted(quoted))
        .collect();
    let now = follow::dest_oids(dest, &names)?;
    let replaced: Vec<&str> = recorded
        .iter()
        .filter(|(table, oid)| now.get(*table) != Some(*oid))
        .map(|(table, _)| table.as_str())
        .collect();
    if replaced.is_empty() {
        return Ok(());
    }
    bail!(
        "not resuming: these destination tables are not those the follower followed into \
         (dropped and created again since, or gone: a restore, another tool): {}; applying \
         the source's changes since onto what they hold would mix two copies. `pgcopy \
         abandon`, then `pgcopy copy --follow` again",
        replaced.join(", ")
    )
}

/// A table's name back from its quoted form (`"schema"."table"`).
fn parse_quoted(quoted: &str) -> Option<TableName> {
    let mut parts = Vec::new();
    let mut rest = quoted;
    while let Some(after) = rest.strip_prefix('"') {
        let mut name = String::new();
        let mut chars = after.char_indices().peekable();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            if c == '"' {
                if chars.peek().map(|(_, n)| *n) == Some('"') {
                    name.push('"');
                    chars.next();
                } else {
                    end = Some(i + 1);
                    break;
                }
            } else {
                name.push(c);
            }
        }
        parts.push(name);
        rest = after.get(end?..)?.strip_prefix('.').unwrap_or("");
    }
    match parts.as_slice() {
        [schema, table] => Some(TableName::new(schema, table)),
        _ => None,
    }
}

/// A slot this run made, dropped with its publication if the run ends before following
/// starts (a refusal, an error), so no slot is left keeping WAL for nobody.
pub(super) struct Made<'a> {
    pub(super) slot: Option<Slot>,
    pub(super) source: &'a crate::pg::target::Target,
}

impl Made<'_> {
    /// The slot, which the caller now answers for.
    pub(super) fn take(&mut self) -> Option<Slot> {
        self.slot.take()
    }
}

impl Drop for Made<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            let name = slot.name.clone();
            drop(slot);
            let dropped = self
                .source
                .connect()
                .and_then(|mut source| slot::drop_both(&mut source, &name).map(drop));
            match dropped {
                Ok(()) => log::info!("dropped the replication slot and publication {name}"),
                Err(err) => log::error!(
                    "could not drop the replication slot {name} ({}): `pgcopy abandon` drops \
                     it, else the source keeps WAL for it",
                    describe(&err)
                ),
            }
        }
    }
}

/// After the copy: follows from its slot if the copy succeeded; else drops the slot and the
/// publication, as following cannot start from a copy that is not whole. `report` is the
/// copy's `--json` report, which following completes.
pub(super) fn after_copy(
    cfg: &CopyConfig,
    slot: Slot,
    copied: Exit,
    report: Option<serde_json::Value>,
) -> Result<Exit> {
    let mut dest = cfg.dest.connect()?;
    if copied != Exit::Success {
        log::error!(
            "not following: the copy did not finish whole; dropping the replication slot {}",
            slot.name
        );
        let name = slot.name.clone();
        drop(slot);
        let mut source = cfg.source.connect()?;
        slot::drop_both(&mut source, &name)?;
        lock_destination(&mut dest, &cfg.dest)?;
        put_keys_back(cfg, &mut dest)?;
        return Ok(copied);
    }
    // Which destination tables these are, for a resumed follower to check: recorded
    // before the progress, so that a follower with a record of its progress has them.
    let mut source = cfg.source.connect()?;
    let mut tables: Vec<TableName> = follow::published(&mut source, &slot.name)?
        .into_iter()
        .collect();
    tables.sort();
    slot::record_tables(
        &mut source,
        &slot.name,
        &follow::dest_oids(&mut dest, &tables)?,
    )?;
    drop(source);
    let ledger = Ledger::choose(&mut dest)?.map_err(anyhow::Error::msg)?;
    ledger.create(&mut dest, &slot.name, slot.consistent_point)?;
    if ledger == Ledger::Table {
        log::info!(
            "recording how far following got in {} on the destination (the role may not use \
             a replication origin)",
            progress::TABLE
        );
    }
    drop(dest);
    follow(cfg, &slot.name, Some(slot.session), report)
}

/// How following ended, for the report.
struct Followed {
    exit: Exit,
    /// Where the cutover mark ended it.
    mark: Option<Lsn>,
    sequences_set: usize,
}

/// Follows (see `run`) and, with `--json`, prints the run's one document: the copy's
/// `report` when this run copied, with what following did added as `following`. A failure
/// is in that document too, and in the exit code.
fn follow(
    cfg: &CopyConfig,
    name: &str,
    first: Option<wire::Connection>,
    report: Option<serde_json::Value>,
) -> Result<Exit> {
    let started = Instant::now();
    let mut total = Applied::default();
    let result = run(cfg, name, first, &mut total, started);
    logging::end_bar();
    if !cfg.json {
        return result.map(|followed| followed.exit);
    }
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
    doc["status"] = json!(exit.status());
    doc["exit_code"] = json!(exit.code());
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
) -> Result<Followed> {
    interrupt::install()?;
    let mut first = first;
    let mut tries = 0;
    loop {
        let before = total.transactions;
        let result = follow_once(cfg, name, first.take(), total);
        let err = match result {
            Ok(Ended::Cutover { at }) => return finish(cfg, name, at, total, started),
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
        if tries >= cfg.retries || !kind(&err).is_worth_retrying() || interrupt::requested() {
            return Err(err.context(
                "following stopped; go on with `pgcopy copy --follow --resume` once the cause \
                 is fixed",
            ));
        }
        tries += 1;
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
) -> Result<Ended> {
    let mut catalog = cfg.dest.connect()?;
    lock_destination(&mut catalog, &cfg.dest)?;
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
    let mut last = (Applied::default(), Instant::now());
    let bar = cfg.progress && cfg.verbosity != Verbosity::Quiet && std::io::stderr().is_terminal();
    let report = |applied: &Applied, _server_end: Lsn| {
        let lag = Lag::now(&mut source, name, applied);
        let seconds = last.1.elapsed().as_secs_f64().max(0.001);
        let transactions = base.transactions + applied.transactions;
        let rows = base.rows + applied.rows;
        let per_second = |now: u64, then: u64| (now - then) as f64 / seconds;
        if bar {
            draw_status(&format!(
                "following: {} tx {}/s · {} rows {}/s{}",
                format_count(transactions),
                format_count(per_second(applied.transactions, last.0.transactions) as u64),
                format_count(rows),
                format_count(per_second(applied.rows, last.0.rows) as u64),
                lag.short()
            ));
        } else {
            log::info!(
                "following: {transactions} transactions applied ({:.0}/s), {rows} rows \
                 ({:.0}/s){}",
                per_second(applied.transactions, last.0.transactions),
                per_second(applied.rows, last.0.rows),
                lag.sentence()
            );
        }
        last = (*applied, Instant::now());
    };
    let sessions = Sessions {
        stream,
        apply: apply_session,
        catalog,
    };
    let what = follow::Stream {
        name: name.to_string(),
        followed,
        start,
        version: source_version,
        setup,
    };
    let (ended, applied) = follow::run(
        sessions,
        what,
        &interrupt::requested,
        if bar {
            Duration::from_secs(1)
        } else {
            cfg.progress_interval
        },
        report,
        |followed| watcher.look(followed),
    )?;
    total.transactions += applied.transactions;
    total.rows += applied.rows;
    total.last_commit_time = applied.last_commit_time;
    Ok(ended)
}

/// How the destination is kept quiet while changes are applied: as a replica where the role
/// may be one; else with the keys touching the followed tables dropped until cutover
/// (recorded in the state file, as a copy records them, so `recover` or `abandon` puts them
/// back after a crash; dropped again here if something put them back meanwhile) and the
/// triggers switched off inside each applied transaction.
fn quiet_destination(
    cfg: &CopyConfig,
    dest: &mut Client,
    followed: &HashSet<TableName>,
    ledger: Ledger,
) -> Result<apply::Setup> {
    let replica = cfg.fk_mode.resolve(dest, cfg.enable_triggers)? == FkMode::Replica;
    let mut tables: Vec<TableName> = followed.iter().cloned().collect();
    tables.sort();
    let mut quiet = HashMap::new();
    if !replica {
        drop_keys_while_following(cfg, dest, &tables)?;
        if !cfg.enable_triggers {
            quiet = triggers::firing(dest, &tables, false)?;
        }
    }
    Ok(apply::Setup {
        ledger,
        replica,
        quiet,
    })
}

/// Drops the foreign keys touching `tables` until cutover, recorded in the state file first
/// (as a copy records them) so that `recover` or `abandon` puts them back after a crash.
pub(super) fn drop_keys_while_following(
    cfg: &CopyConfig,
    dest: &mut Client,
    tables: &[TableName],
) -> Result<()> {
    let keys = constraints::find(dest, tables)?;
    if keys.is_empty() {
        return Ok(());
    }
    let file = state_file(cfg, dest)?;
    let mut state = file
        .load()?
        .unwrap_or_else(|| State::new(cfg.dest.to_string()));
    for key in &keys {
        if !state.keys.iter().any(|k| k.same_key(key)) {
            state.keys.push(key.clone());
        }
    }
    file.store(&state)?;
    log::info!(
        "dropping {} foreign keys while following (recorded in {}); they are put back at \
         cutover",
        keys.len(),
        file.path.display()
    );
    constraints::drop_all(dest, &keys, cfg.lock_timeout)
}

/// The state file of the destination `dest` is connected to.
fn state_file(cfg: &CopyConfig, dest: &mut Client) -> Result<StateFile> {
    let identity = Identity::read(dest)?;
    Ok(StateFile::new(
        &cfg.state_dir,
        &identity.database,
        &identity.key(),
    ))
}

/// At cutover, the large objects again, as the source has them now: logical replication
/// does not carry them, and the application has stopped writing.
fn copy_large_objects(cfg: &CopyConfig, dest: &mut Client) -> Result<()> {
    let mut holder = cfg.source.connect()?;
    let mut snapshot = begin_read_only(&mut holder, None)?;
    let id = SnapshotId(
        snapshot
            .query_one("SELECT pg_catalog.pg_export_snapshot()", &[])?
            .get(0),
    );
    let objects = large_objects::plan(&mut snapshot)?;
    let dest_has: bool = dest
        .query_one(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_largeobject_metadata)",
            &[],
        )?
        .get(0);
    if objects.is_empty() && !dest_has {
        return Ok(());
    }
    let bytes = large_objects::copy(
        &cfg.source,
        &cfg.dest,
        &id,
        &objects,
        &AtomicU64::new(0),
        &interrupt::requested,
    )?;
    log::info!(
        "copied the {} large objects again ({}): logical replication does not carry them",
        objects.len(),
        format_bytes(bytes)
    );
    Ok(())
}

/// At cutover: the foreign keys following kept dropped (or a copy in drop mode left for it)
/// go back, validated. What cannot go back stays recorded for `recover`.
fn put_keys_back(cfg: &CopyConfig, dest: &mut Client) -> Result<bool> {
    let file = state_file(cfg, dest)?;
    let Some(state) = file.load()? else {
        return Ok(true);
    };
    if state.keys.is_empty() {
        return Ok(true);
    }
    let restored = constraints::restore_all(dest, &state.keys)?;
    for problem in &restored.problems {
        log::error!("{problem}");
    }
    let whole = restored.missing.is_empty() && restored.unvalidated.is_empty();
    file.store(&State {
        keys: restored.missing,
        validate: state
            .validate
            .into_iter()
            .chain(restored.unvalidated)
            .collect(),
        ..state
    })?;
    Ok(whole)
}

/// What the source and the applier say of how far behind the follower is.
struct Lag {
    /// The slot, as the source sees it (when it could be asked).
    slot: Option<slot::Follower>,
    /// Seconds since the last applied transaction committed on the source.
    last_commit_ago: Option<f64>,
}

impl Lag {
    fn now(source: &mut Client, name: &str, applied: &Applied) -> Lag {
        Lag {
            slot: slot::find(source, name).ok().flatten(),
            last_commit_ago: (applied.last_commit_time != 0).then(|| {
                ((receive::now_micros() - applied.last_commit_time) as f64 / 1e6).max(0.0)
            }),
        }
    }

    /// `, 1.2 MiB behind the source (lag 0.4s), the slot holds 3.4 MiB of WAL, the last
    /// transaction applied committed there 0.8s ago`, or what of it is known.
    fn sentence(&self) -> String {
        let mut text = String::new();
        if let Some(f) = &self.slot {
            text.push_str(&format!(
                ", {} behind the source{}, the slot holds {} of WAL",
                format_bytes(f.behind),
                f.lag.map(|s| format!(" (lag {s:.1}s)")).unwrap_or_default(),
                format_bytes(f.held)
            ));
        }
        if let Some(ago) = self.last_commit_ago {
            text.push_str(&format!(
                ", the last transaction applied committed there {ago:.1}s ago"
            ));
        }
        text
    }

    /// The same in few words, for the status line on a terminal.
    fn short(&self) -> String {
        match &self.slot {
            Some(f) => format!(
                " · {} behind{} · slot holds {}",
                format_bytes(f.behind),
                f.lag.map(|s| format!(", lag {s:.1}s")).unwrap_or_default(),
                format_bytes(f.held)
            ),
            None => String::new(),
        }
    }
}

/// The cutover mark is applied: the sequences from the source's live values (the
/// application has stopped writing) and the foreign keys back, then the slot, the
/// publication and the record of the progress go.
fn finish(
    cfg: &CopyConfig,
    name: &str,
    at: Lsn,
    applied: &Applied,
    started: Instant,
) -> Result<Followed> {
    let mut source = cfg.source.connect()?;
    let mut dest = cfg.dest.connect()?;
    // Those followed at the end, also the tables taken up while following.
    let followed = follow::published(&mut source, name)?;
    let tables: Vec<catalog::Table> = catalog::tables(&mut source)?
        .into_iter()
        .filter(|t| followed.contains(&t.name))
        .collect();
    let mut exit = Exit::Success;
    let mut sequences_set = 0;
    if cfg.sequences {
        let found = sequences::plan(&mut source, &tables, false)?;
        let owners: Vec<_> = tables
            .iter()
            .map(|t| (&t.name, t.parent.as_ref(), true))
            .collect();
        let (set, failed) = sequences::set(&mut dest, &sequences::to_set(&found, &owners));
        for problem in &failed {
            log::error!("{problem}");
            exit = Exit::TablesFailed;
        }
        log::info!("set {set} sequences from the source's values at cutover");
        sequences_set = set;
    }
    if cfg.large_objects.copies(cfg.filter.narrowed()) {
        if let Err(err) = copy_large_objects(cfg, &mut dest) {
            log::error!(
                "the large objects were not copied again at cutover: {}",
                describe(&err)
            );
            exit = Exit::TablesFailed;
        }
    }
    lock_destination(&mut dest, &cfg.dest)?;
    if !put_keys_back(cfg, &mut dest)? {
        exit = Exit::TablesFailed;
    }
    progress::forget(&mut dest, name)?;
    // The slot's session has just ended; the server lets the slot go a moment later.
    let mut tries = 0;
    loop {
        match slot::drop_both(&mut source, name) {
            Ok(_) => break,
            Err(err) if tries < 50 => {
                log::debug!("waiting to drop the slot: {}", describe(&err));
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(err) => return Err(err),
        }
    }
    let said = format!(
        "cut over at {}: followed for {:.0}s, applied {} transactions ({} rows); the slot \
         and publication {name} are dropped",
        LsnText(at),
        started.elapsed().as_secs_f64(),
        applied.transactions,
        applied.rows
    );
    // With --json, stdout holds the copy's report and nothing else.
    if cfg.json {
        log::info!("{said}");
    } else if cfg.verbosity != crate::cli::config::Verbosity::Quiet {
        let _ = writeln!(crate::output::format::stdout(), "{said}");
    }
    Ok(Followed {
        exit,
        mark: Some(at),
        sequences_set,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_quoted_table_names() {
        let odd = TableName::new("we\"ird", "a.b");
        assert_eq!(parse_quoted(&odd.quoted()), Some(odd));
        assert_eq!(
            parse_quoted("\"public\".\"t\""),
            Some(TableName::new("public", "t"))
        );
        assert_eq!(parse_quoted("public.t"), None);
    }
}
