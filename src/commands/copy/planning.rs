//! The second phase of a copy: take the source snapshot and plan against both catalogs —
//! the tables, sequences, large objects and views; what an interrupted run finished; the
//! foreign keys to drop, the triggers to keep from firing, the indexes to build again; the
//! pieces, or the chunks of a chunked copy — and every reason to refuse, all before anything
//! changes.

use super::prepare::Prepared;
use super::{Pipeline, SnapshotFrom};
use crate::cli::config::CopyConfig;
use crate::pg::error::{self, describe};
use crate::pg::server::Identity;
use crate::pg::sql::TableName;
use crate::plan::pieces;
use crate::plan::snapshot::{self, ExportFrom, Snapshot, Source};
use crate::plan::{self, Plan, Replace};
use crate::schema::catalog::{self, Rights};
use crate::schema::constraints::{self, Constraint};
use crate::schema::fk_mode::FkMode;
use crate::schema::indexes::{self, IndexMode};
use crate::schema::large_objects::{self, LargeObject, Selection};
use crate::schema::matviews::{self, MatView};
use crate::schema::sequences::{self, Sequence};
use crate::schema::statistics;
use crate::schema::triggers;
use crate::state::file::{Done, PieceState, State, StateFile};
use anyhow::{bail, Result};
use postgres::Client;
use std::collections::{HashMap, HashSet};

/// Everything a copy will do, decided; and the sessions it will do it with.
pub(super) struct Work {
    pub(super) dest: Client,
    pub(super) state_file: StateFile,
    pub(super) snapshot: Snapshot,
    /// The tables copied now: the selection less what an interrupted run finished.
    pub(super) plan: Plan,
    /// Every selected table.
    pub(super) full_plan: Plan,
    pub(super) fingerprint: String,
    /// Tables an interrupted run finished, when resuming.
    pub(super) done_before: Vec<Done>,
    pub(super) mode: FkMode,
    /// Keys dropped for the load and put back after it.
    pub(super) keys: Vec<Constraint>,
    /// Keys an earlier run left NOT VALID that this run validates.
    pub(super) carried: Vec<Constraint>,
    pub(super) sequences: Vec<Sequence>,
    pub(super) large_objects: Option<Vec<LargeObject>>,
    pub(super) views: Vec<MatView>,
    /// What taking the snapshot waited for or did again.
    pub(super) findings: Vec<String>,
    /// Why the copy is refused; empty when it may go on.
    pub(super) refusals: Vec<String>,
    /// The slot the chunked copy records its chunks for (see `Pipeline::chunks`).
    pub(super) chunked: Option<String>,
}

pub(super) fn plan(
    cfg: &CopyConfig,
    prepared: Prepared,
    pipeline: &mut Pipeline<'_>,
) -> Result<Work> {
    let Prepared {
        mut source,
        source_id,
        mut dest,
        state_file,
        previous,
    } = prepared;
    let mut refusals = Vec::new();
    if let Some(checks) = pipeline.checks.as_mut() {
        refusals.extend(checks(&mut source, &mut dest)?);
        if !refusals.is_empty() && !cfg.dry_run {
            return Err(plan::refusals::refuse(pipeline.command, &refusals));
        }
    }
    let export: Option<ExportFrom<'_>> = match &mut pipeline.snapshot {
        SnapshotFrom::Exported(Some(export)) => Some(&mut **export),
        _ => None,
    };
    let taken = snapshot::take(&cfg.source, source, &cfg.filter, cfg.lock_timeout, export);
    let Source {
        mut snapshot,
        tables: selected,
        standby,
        findings,
    } = taken?;
    let mut plan = plan::build(&mut snapshot.client, &selected)?;
    plan::add_destination_only_partitions(&mut dest, &mut plan, &cfg.filter)?;
    if let Some(rules) = &cfg.rules {
        refusals.extend(rules.apply_to(&mut snapshot.client, &mut plan)?);
    }
    let sequences = if cfg.sequences {
        // A source with no tables, copied whole, still carries its standalone sequences.
        let empty_source = selected.is_empty() && !cfg.filter.given();
        sequences::plan(&mut snapshot.client, &selected, empty_source)?
    } else {
        Vec::new()
    };
    let carried = cfg.large_objects.copies(cfg.filter.narrowed());
    let large_objects = match &cfg.rules {
        None if carried => Some(large_objects::plan(&mut snapshot.client)?),
        None => None,
        Some(rules) => {
            if rules.leave_out_large_objects(carried) {
                let message = "the large objects are not copied: no rule reaches inside one, \
                               so the rules must say large_objects = \"copy\" (as they are) or \
                               \"empty\" (the destination's removed)";
                if cfg.large_objects == Selection::Always {
                    refusals.push(format!("--large-objects asks for them, but {message}"));
                } else {
                    log::warn!("{message}");
                }
            }
            match rules.large_objects(carried) {
                Some(true) => Some(large_objects::plan(&mut snapshot.client)?),
                Some(false) => Some(Vec::new()),
                None => None,
            }
        }
    };
    let populated = if cfg.refresh_views {
        matviews::populated(&mut snapshot.client)?
    } else {
        HashSet::new()
    };
    refusals.extend(snapshot::refusals(&selected, standby, &cfg.source));
    refusals.extend(
        plan::refusals::check_destination(&mut snapshot.client, &mut dest, &mut plan)?.refusals(
            sequences::check_destination(&mut dest, &sequences)?,
            &cfg.dest.to_string(),
            cfg.allow_narrowing,
        ),
    );
    refusals.extend(crate::rules::wire_refusals(&plan));
    let fingerprint = fingerprint(&source_id, &plan);
    let full_plan = plan.clone();
    let resume_tables = pipeline.resume;
    let mut previous = previous;
    if let (true, Some(chunks), Some(previous)) = (resume_tables, &pipeline.chunks, &mut previous) {
        super::chunked::take_up_recorded(&mut dest, &chunks.slot, previous)?;
    }
    let done_before = if resume_tables {
        resume(&mut dest, &mut plan, previous.as_ref(), &fingerprint)?
    } else {
        Vec::new()
    };
    for table in &plan.tables {
        if let Some(reason) = &table.text_reason {
            log::info!("{} travels in text format: {reason}", table.name);
        }
        for line in plan::conversions::lines(table) {
            log::info!("converts {line}");
        }
    }
    let mode = cfg.fk_mode.resolve(&mut dest, cfg.enable_triggers)?;
    // Keys are found for the whole selection, also when resuming: a table an earlier run
    // finished is part of this copy, not outside it, and its keys to the tables copied now
    // must be out of the way too.
    let mut keys = if mode.drops_keys() {
        constraints::find(&mut dest, &full_plan.names())?
    } else {
        Vec::new()
    };
    // Keys an earlier run left NOT VALID although they were valid are validated at the end;
    // one that this run drops anyway comes back validated like the others.
    let saved_pieces = match (&previous, resume_tables) {
        (Some(previous), true) => previous.pieces.clone(),
        _ => Vec::new(),
    };
    let mut carried = previous.map(|p| p.validate).unwrap_or_default();
    carried.retain(|old| match keys.iter_mut().find(|k| k.same_key(old)) {
        Some(key) => {
            key.validated = true;
            false
        }
        None => true,
    });
    constraints::check_outside(&keys, cfg.allow_outside_references)?;
    let views = if populated.is_empty() {
        Vec::new()
    } else {
        matviews::dependents(&mut dest, &full_plan.names(), &populated)?
    };
    let mut touched = full_plan.names();
    touched.extend(keys.iter().map(|k| k.table.clone()));
    let rights = catalog::rights(&mut dest, &touched)?;
    if !cfg.enable_triggers {
        let mut firing = triggers::firing(&mut dest, &plan.names(), mode == FkMode::Replica)?;
        for table in &mut plan.tables {
            table.triggers = firing.remove(&table.name).unwrap_or_default();
        }
    }
    if cfg.index_mode != IndexMode::Keep {
        choose_index_rebuilds(cfg, &mut dest, &mut plan, &rights, mode)?;
    }
    let notes = match &pipeline.chunks {
        Some(chunks) => plan::chunks::cut::cut(&mut snapshot.client, &mut plan, chunks.bytes)?,
        None => pieces::cut(&mut snapshot.client, &mut dest, &mut plan, cfg.split)?,
    };
    for note in notes {
        log::info!("{note}");
    }
    resume_pieces(&mut dest, &mut plan, &saved_pieces)?;
    if cfg.analyze {
        let mut found = statistics::read(&mut snapshot.client, &mut dest, &plan.names())?;
        for table in &mut plan.tables {
            table.statistics = found.remove(&table.name);
        }
        // The source's statistics describe the source's rows: a masked table's would
        // carry its values (most common values, histograms), a subset's the whole table.
        // Those tables are analyzed instead.
        for table in &mut plan.tables {
            if !table.masks.is_empty() || table.subset.is_some() {
                table.statistics = None;
            }
        }
    }
    if cfg.dry_run {
        crate::rules::subset::count(&mut snapshot.client, &mut plan)?;
    }
    refusals.extend(plan::refusals::rights_refusals(
        &plan,
        &keys,
        &rights,
        &cfg.dest.to_string(),
    ));
    if !refusals.is_empty() && !cfg.dry_run {
        return Err(plan::refusals::refuse(pipeline.command, &refusals));
    }
    Ok(Work {
        dest,
        state_file,
        snapshot,
        plan,
        full_plan,
        fingerprint,
        done_before,
        mode,
        keys,
        carried,
        sequences,
        large_objects,
        views,
        findings,
        refusals,
        chunked: pipeline.chunks.as_ref().map(|c| c.slot.clone()),
    })
}

/// Marks for rebuilding the indexes of the tables big enough (`--indexes`), where the role
/// may build them again.
fn choose_index_rebuilds(
    cfg: &CopyConfig,
    dest: &mut Client,
    plan: &mut Plan,
    rights: &HashMap<TableName, Rights>,
    mode: FkMode,
) -> Result<()> {
    let (big, kept): (Vec<TableName>, Vec<TableName>) = plan
        .tables
        .iter()
        // A load that deletes only some rows keeps the others indexed.
        .filter(|t| cfg.index_mode.rebuilds(t.data_bytes) && t.replace == Replace::All)
        .map(|t| t.name.clone())
        .partition(|name| {
            // auto keeps what the role may not build again; rebuild refuses it below.
            cfg.index_mode != IndexMode::Auto
                || rights
                    .get(name)
                    .is_some_and(|r| r.owner && r.create_in_schema)
        });
    if !kept.is_empty() {
        log::info!(
            "keeping the indexes of {} tables as they are: {} may not build them again \
             (that needs the table's owner and CREATE on its schema)",
            kept.len(),
            cfg.dest
        );
    }
    let mut rebuildable = match indexes::rebuildable(dest, &big, mode.drops_keys()) {
        Ok(rebuildable) => rebuildable,
        // Reading an index definition waits for a lock another session holds on its
        // table: keep every index rather than hold up or fail the whole copy; that
        // table's own writer then waits for its lock, up to --lock-timeout.
        Err(err) if error::kind(&err) == error::Kind::LockTimeout => {
            log::warn!(
                "could not read the destination's indexes (a table is locked by another \
                 session), so every index stays as it is: {}",
                describe(&err)
            );
            HashMap::new()
        }
        Err(err) => return Err(err),
    };
    for table in &mut plan.tables {
        table.indexes = rebuildable.remove(&table.name).unwrap_or_default();
    }
    Ok(())
}

/// What a run copies, in a few characters: the source database and, per table, its name,
/// columns and format. A run may only resume one with the same fingerprint.
fn fingerprint(source: &Identity, plan: &Plan) -> String {
    let mut text = source.key();
    let mut tables: Vec<String> = plan
        .tables
        .iter()
        .map(|t| {
            let columns: Vec<&str> = t.column_names().collect();
            let masks: Vec<String> = t
                .masks
                .iter()
                .map(|m| {
                    // A keyed mask under another key is another copy: the key's
                    // fingerprint, never the key.
                    let key = m.key.as_deref().unwrap_or_default();
                    format!("{}={}{key}", m.target(), m.describe)
                })
                .collect();
            format!(
                "{}|{}|{}|{}|{}",
                t.name,
                columns.join(","),
                t.format,
                masks.join(","),
                // The closure's time too: a subset of another moment is another subset.
                t.subset
                    .as_ref()
                    .map_or(String::new(), |s| format!("{} {}", s.with, s.condition))
            )
        })
        .collect();
    tables.sort();
    for table in tables {
        text.push('\n');
        text.push_str(&table);
    }
    format!("{:016x}", crate::state::file::fnv1a(text.as_bytes()))
}

/// Takes up the split tables an interrupted run copied some pieces of: the same pieces, those
/// done skipped, the table not emptied again. A table whose file changed since (emptied or
/// rewritten, or this is a clone of the destination) is copied again whole instead.
fn resume_pieces(dest: &mut Client, plan: &mut Plan, saved: &[PieceState]) -> Result<()> {
    let started: Vec<TableName> = plan
        .tables
        .iter()
        .filter(|t| saved.iter().any(|p| p.table == t.name && p.done))
        .map(|t| t.name.clone())
        .collect();
    if started.is_empty() {
        return Ok(());
    }
    let now = catalog::filenodes(dest, &started)?;
    for table in plan.tables.iter_mut().filter(|t| started.contains(&t.name)) {
        let pieces: Vec<&PieceState> = saved.iter().filter(|p| p.table == table.name).collect();
        let filenode = pieces.iter().map(|p| p.filenode).max().unwrap_or(0);
        let same_file = pieces
            .iter()
            .filter(|p| p.done)
            .all(|p| now.get(&table.name) == Some(&p.filenode));
        if !same_file {
            log::warn!(
                "{} is not as the interrupted run left it on this destination (changed since, \
                 or the state file is another server's: a clone?), so it is copied again whole",
                table.name
            );
            continue;
        }
        let done = pieces.iter().filter(|p| p.done).count();
        log::warn!(
            "resuming {}: {done} of its {} pieces were copied by the interrupted run; the \
             others are copied now, into the table as it is",
            table.name,
            pieces.len()
        );
        table.split = Some(pieces::Split {
            by: pieces::By::Key(pieces[0].key.split(", ").map(String::from).collect()),
            pieces: pieces.iter().map(|p| p.condition.clone()).collect(),
            done: pieces.iter().map(|p| p.done).collect(),
            filenode,
            ranges: pieces
                .iter()
                .map(|p| p.range.as_deref().map(pieces::KeyRange::from_text))
                .collect::<Option<Result<Vec<_>>>>()
                .transpose()?
                .unwrap_or_default(),
        });
        table.indexes.clear();
    }
    Ok(())
}

/// Narrows the plan to the tables an interrupted run did not finish; returns those it did.
/// A table it finished that no longer has the file its load left it in is copied again:
/// it changed since, or this is not the destination the run wrote to (a clone).
fn resume(
    dest: &mut Client,
    plan: &mut Plan,
    previous: Option<&State>,
    fingerprint: &str,
) -> Result<Vec<Done>> {
    let Some(previous) = previous.filter(|p| p.plan.is_some()) else {
        bail!("nothing to resume: no interrupted copy left tables to do on this destination; run without --resume");
    };
    if previous.plan.as_deref() != Some(fingerprint) {
        bail!(
            "cannot resume: the source, the selected tables or their columns, the rules or the \
             masking key changed since the interrupted run; run without --resume to copy \
             everything"
        );
    }
    let names: Vec<TableName> = previous.done.iter().map(|d| d.table.clone()).collect();
    let now = catalog::filenodes(dest, &names)?;
    let (done, changed): (Vec<Done>, Vec<Done>) = previous
        .done
        .iter()
        .cloned()
        .partition(|d| d.filenode == 0 || now.get(&d.table) == Some(&d.filenode));
    if !changed.is_empty() {
        log::warn!(
            "{} tables the interrupted run copied are not as it left them on this destination \
             (changed since, or the state file is another server's: a clone?), so they are \
             copied again: {}",
            changed.len(),
            changed
                .iter()
                .map(|d| d.table.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let skipped: HashSet<&TableName> = done.iter().map(|d| &d.table).collect();
    plan.tables.retain(|t| !skipped.contains(&t.name));
    log::warn!(
        "resuming: {} tables were copied by the interrupted run, from its own older snapshot; \
         the {} left are copied now, from a new one",
        done.len(),
        plan.tables.len()
    );
    Ok(done)
}
