//! One destination table replaced in one transaction: triggers switched off, `TRUNCATE
//! ONLY`, indexes dropped, `COPY … FROM STDIN` of the chunks the reader sends, indexes built
//! again, triggers back on, commit; then its `ANALYZE`. Any error rolls the whole
//! transaction back, so the table keeps its old rows and everything it had. A table copied
//! in pieces (see `plan::pieces`) is emptied first in a transaction of its own, then each
//! piece loads and commits on its own. In the chunked copy, each table or piece records the
//! snapshot it was read in (`plan::chunks`) in the commit that loads it.

use crate::pg::error::describe;
use crate::pg::sql::TEXT_SETTINGS;
use crate::plan::chunks::{self, Seen};
use crate::plan::{Format, TablePlan};
use crate::schema::indexes;
use crate::schema::statistics;
use crate::transfer::read::Read;
use crate::transfer::{ReadSnapshot, Settings, StatsFrom};
use anyhow::{bail, Context, Result};
use postgres::error::SqlState;
use postgres::{Client, GenericClient, Transaction};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What the writer gets next from its reader.
pub(crate) enum Piece {
    Chunk(Vec<u8>),
    /// The end of the table, with what the source sent.
    End(Read),
}

/// Replaces one destination table's rows in one transaction; returns the rows written and
/// the table's file.
/// Any error rolls the transaction back (the `Transaction` is dropped), keeping the old rows.
pub(crate) fn write_table(
    settings: &Settings,
    bytes: &AtomicU64,
    table: &TablePlan,
    client: &mut Client,
    mut next: impl FnMut() -> Result<Piece>,
) -> Result<Loaded> {
    let mut tx = begin_load(settings, table, client)?;
    // In this transaction, so they are back at commit or rollback whatever happens.
    run_each(
        &mut tx,
        table.triggers.iter().map(|t| t.disable_sql(&table.name)),
    )
    .context("disabling the table's triggers for the load")?;
    // Indexes are built again after the data, in this transaction: a sorted build beats
    // maintaining them row by row, and a rollback brings them back as they were.
    empty(&mut tx, settings, table)?;
    let (written, read_seen) = if table.on_source {
        let read = copy_in(&mut tx, table, false, bytes, next)?;
        if let ReadSnapshot::EachRead { slot, .. } = &settings.snapshot {
            let seen = read.seen.as_ref().context("a read without its snapshot")?;
            chunks::record(&mut tx, slot, &table.name, None, seen)?;
        }
        (read.rows, read.seen)
    } else {
        // A partition only the destination has: emptied, nothing to copy.
        match next()? {
            Piece::End(Read { rows: 0, .. }) => (0, None),
            _ => bail!("internal error: rows for a table the source does not have"),
        }
    };
    if !table.indexes.is_empty() {
        // Each lane may be building a table's indexes at the same time.
        tx.batch_execute(&indexes::build_settings(settings.parallel))?;
        run_each(
            &mut tx,
            table.indexes.iter().flat_map(|i| i.create_sql(&table.name)),
        )
        .context("building the table's indexes again")?;
    }
    run_each(
        &mut tx,
        table.triggers.iter().map(|t| t.enable_sql(&table.name)),
    )
    .context("enabling the table's triggers again")?;
    // The file the rows are in now (a TRUNCATE gave the table a new one): what tells this
    // load apart from anything the table held before, for --resume (see `State::done`).
    let filenode = filenode(&mut tx, table)?;
    tx.commit().context("committing on the destination")?;
    recorded(settings, table, "", read_seen.as_ref())?;
    Ok(Loaded {
        rows: written,
        filenode,
    })
}

/// Tells the follower applying the stream during the chunked copy that a chunk of `table`
/// (by its `condition`) is loaded, read as `seen` says.
fn recorded(
    settings: &Settings,
    table: &TablePlan,
    condition: &str,
    seen: Option<&Seen>,
) -> Result<()> {
    if let (ReadSnapshot::EachRead { registry, .. }, Some(seen)) = (&settings.snapshot, seen) {
        registry.recorded(&table.name, condition, seen)?;
    }
    Ok(())
}

/// Empties a table that is copied in pieces, and drops the indexes built again after the
/// last piece (the state file has them first), in a transaction of its own that commits
/// before the first piece: pieces load in transactions of their own, side by side.
pub(crate) fn empty_for_pieces(
    settings: &Settings,
    table: &TablePlan,
    client: &mut Client,
) -> Result<()> {
    let mut tx = client
        .transaction()
        .context("starting the destination transaction")?;
    tx.batch_execute(&format!(
        "SET LOCAL lock_timeout = {}",
        settings.lock_timeout.as_millis()
    ))?;
    empty(&mut tx, settings, table)?;
    tx.commit().context("committing on the destination")
}

/// Empties the table of the rows the load replaces and drops the indexes built again after
/// it.
fn empty(tx: &mut Transaction, settings: &Settings, table: &TablePlan) -> Result<()> {
    // What was recorded of the table's chunks goes with its rows.
    if let ReadSnapshot::EachRead { slot, .. } = &settings.snapshot {
        chunks::forget_table(tx, slot, &table.name)?;
    }
    let clear = table.clear_sql();
    log::debug!("destination: {clear}");
    tx.batch_execute(&clear)
        .map_err(|err| locked(err, settings.lock_timeout))
        .context("emptying the destination table")?;
    run_each(tx, table.indexes.iter().map(|i| i.drop_sql(&table.name)))
        .context("dropping the table's indexes for the load")?;
    Ok(())
}

/// Loads one piece of a split table in a transaction of its own (see `plan::pieces`);
/// returns the rows written. The table was emptied before; a failure rolls back this piece
/// only. `clear` is the piece's range when an earlier run may have committed it without
/// recording so (it was killed in between): its rows go first, so the piece lands once.
/// In the chunked copy, the piece's snapshot and range are recorded in the same commit.
pub(crate) fn write_piece(
    settings: &Settings,
    bytes: &AtomicU64,
    table: &TablePlan,
    piece: usize,
    clear: Option<&str>,
    client: &mut Client,
    next: impl FnMut() -> Result<Piece>,
) -> Result<Loaded> {
    let mut tx = begin_load(settings, table, client)?;
    if let Some(range) = clear {
        let sql = format!("DELETE FROM ONLY {} {range}", table.name.quoted());
        log::debug!("destination: {sql}");
        tx.batch_execute(&sql)
            .map_err(|err| locked(err, settings.lock_timeout))
            .context("removing what an interrupted run may have left of the piece")?;
    }
    let read = copy_in(&mut tx, table, true, bytes, next).map_err(|err| {
        match err.downcast::<postgres::Error>() {
            Ok(pg) => locked(pg, settings.lock_timeout),
            Err(err) => err,
        }
    })?;
    let mut condition_of = None;
    if let ReadSnapshot::EachRead { slot, .. } = &settings.snapshot {
        let seen = read.seen.as_ref().context("a read without its snapshot")?;
        let split = table
            .split
            .as_ref()
            .context("a piece of a table not split")?;
        let condition = split.pieces.get(piece).context("no such piece")?;
        let range = split
            .ranges
            .get(piece)
            .context("a chunk without its range of keys")?;
        let key = split.key_columns();
        chunks::record(
            &mut tx,
            slot,
            &table.name,
            Some((condition, key, range)),
            seen,
        )?;
        condition_of = Some(condition.as_str());
    }
    let written = read.rows;
    let filenode = filenode(&mut tx, table)?;
    tx.commit().context("committing on the destination")?;
    if let Some(condition) = condition_of {
        recorded(settings, table, condition, read.seen.as_ref())?;
    }
    Ok(Loaded {
        rows: written,
        filenode,
    })
}

/// The table's file now, which a load gave it (see `State::done`).
pub(crate) fn filenode(client: &mut impl GenericClient, table: &TablePlan) -> Result<u32> {
    Ok(client
        .query_one(
            "SELECT pg_relation_filenode($1::text::regclass)",
            &[&table.name.quoted()],
        )?
        .get::<_, Option<u32>>(0)
        .unwrap_or(0))
}

/// The transaction a table or a piece loads in, set up. A table locked by another session
/// fails with a clear message instead of hanging. The commit waits for its WAL to reach
/// disk even where the server or the role would not (`synchronous_commit = off`): the state
/// file calls the table (or piece) done once it commits, and a crash must not take back what
/// `--resume` then skips. (A transaction that truncated a table waits anyway; one that
/// deleted some rows would not.)
fn begin_load<'c>(
    settings: &Settings,
    table: &TablePlan,
    client: &'c mut Client,
) -> Result<Transaction<'c>> {
    let mut tx = client
        .transaction()
        .context("starting the destination transaction")?;
    tx.batch_execute(&format!(
        "SET LOCAL lock_timeout = {};
         SELECT set_config('synchronous_commit', 'local', true)
         WHERE current_setting('synchronous_commit') = 'off'",
        settings.lock_timeout.as_millis()
    ))?;
    if table.format == Format::Text {
        tx.batch_execute(TEXT_SETTINGS)?;
    }
    if settings.replica {
        tx.batch_execute("SET LOCAL session_replication_role = replica")
            .context("switching to replica mode")?;
    }
    Ok(tx)
}

/// What a load did.
pub(crate) struct Loaded {
    pub(crate) rows: u64,
    /// `pg_relation_filenode` of the table after the load.
    pub(crate) filenode: u32,
}

/// Streams the reader's chunks into `COPY … FROM STDIN`; returns what the reader said it
/// sent, whose rows the destination must have taken.
fn copy_in(
    tx: &mut Transaction,
    table: &TablePlan,
    piece: bool,
    bytes: &AtomicU64,
    mut next: impl FnMut() -> Result<Piece>,
) -> Result<Read> {
    let sql = table.copy_in_sql(piece);
    log::debug!("destination: {sql}");
    let mut writer = tx
        .copy_in(&sql)
        .context("starting COPY on the destination")?;
    let sent = loop {
        match next()? {
            Piece::Chunk(chunk) => {
                writer
                    .write_all(&chunk)
                    .context("writing to the destination")?;
                bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
            Piece::End(read) => break read,
        }
    };
    let written = writer
        .finish()
        .context("finishing COPY on the destination")?;
    if written != sent.rows {
        bail!(
            "the source sent {} rows but the destination took {written}",
            sent.rows
        );
    }
    Ok(sent)
}

/// Gives the freshly loaded table planner statistics: without them the first queries
/// against it get bad plans. The source's where they were read (see `schema::statistics`),
/// else — or when restoring them fails — `ANALYZE`. A failure is reported, but the data
/// stays.
pub(crate) fn give_statistics(client: &mut Client, table: &TablePlan) -> Result<StatsFrom, String> {
    if let Some(statistics) = &table.statistics {
        match statistics::restore(client, statistics) {
            Ok(()) => return Ok(StatsFrom::Source),
            Err(err) => log::warn!(
                "{}: the source's statistics could not be restored ({}); analyzing instead",
                table.name,
                describe(&err)
            ),
        }
    }
    analyze(client, table).map(|()| StatsFrom::Analyze)
}

fn analyze(client: &mut Client, table: &TablePlan) -> Result<(), String> {
    let sql = format!("ANALYZE {}", table.name.quoted());
    log::debug!("destination: {sql}");
    client
        .batch_execute(&sql)
        .map_err(|err| format!("ANALYZE {} failed: {}", table.name, describe(&err.into())))
}

/// Says in words what a lock timeout means for the operator.
fn locked(err: postgres::Error, timeout: Duration) -> anyhow::Error {
    if err.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) {
        anyhow::Error::new(err).context(format!(
            "the table is locked by another session; gave up after --lock-timeout {}s",
            timeout.as_secs()
        ))
    } else {
        err.into()
    }
}

fn run_each(
    tx: &mut Transaction,
    statements: impl Iterator<Item = String>,
) -> Result<(), postgres::Error> {
    for sql in statements {
        log::debug!("destination: {sql}");
        tx.batch_execute(&sql)?;
    }
    Ok(())
}
