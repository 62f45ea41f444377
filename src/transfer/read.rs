//! One table, or one piece of it, out of the source: a `REPEATABLE READ` transaction in the
//! copy's snapshot, or in one of its own taken for this read (`ReadSnapshot`), the table
//! locked as the snapshot's session has it, and `COPY … TO STDOUT` cut into chunks of the
//! batch size, its rows counted from the stream as they pass.

use crate::pg::server::BEGIN_READ_ONLY;
use crate::pg::sql::TEXT_SETTINGS;
use crate::pg::wire;
use crate::plan::chunks::visibility::Snapshot;
use crate::plan::chunks::{Seen, TAKE_SQL};
use crate::plan::{Format, TablePlan};
use crate::transfer::rewrite::RowRewriter;
use crate::transfer::rows::RowCounter;
use crate::transfer::ReadSnapshot;
use anyhow::{Context, Result};

/// What a read sent.
#[derive(Clone, Debug)]
pub(crate) struct Read {
    pub(crate) rows: u64,
    /// The snapshot it took for itself, if it took one.
    pub(crate) seen: Option<Seen>,
}

/// Reads `table` (or its `piece`) and hands each chunk to `send` with the rows completed in
/// it; returns the rows the source sent. An error of `send` stops the read.
pub(crate) fn read(
    conn: &mut wire::Connection,
    table: &TablePlan,
    piece: Option<usize>,
    snapshot: &ReadSnapshot,
    batch_size: usize,
    mut send: impl FnMut(Vec<u8>, u64) -> Result<()>,
) -> Result<Read> {
    conn.reset().context("ending the last source transaction")?;
    let mut begin = match snapshot {
        ReadSnapshot::Exported(id) => id.begin_sql(),
        ReadSnapshot::EachRead { .. } => BEGIN_READ_ONLY.to_string(),
    };
    // A text table's values, and those the source casts (to text, say), are written in
    // the output settings the destination and `verify` expect.
    let cast = table
        .conversions
        .iter()
        .any(|c| matches!(c.how, crate::plan::conversions::How::Cast(_)));
    if table.format == Format::Text || cast {
        begin = format!("{begin}; {TEXT_SETTINGS}");
    }
    if table.subset.is_some() {
        begin = format!("{begin}; {}", crate::plan::reading::SETTINGS);
    }
    let start = |conn: &mut wire::Connection| -> Result<()> {
        conn.execute(&begin)
            .context("importing the source snapshot")?;
        conn.execute(&table.lock_sql())
            .map_err(|err| table.lock_failed(err))
    };
    let seen = match snapshot {
        ReadSnapshot::Exported(_) => {
            start(conn)?;
            None
        }
        ReadSnapshot::EachRead { registry, .. } => {
            let condition = piece
                .and_then(|p| table.split.as_ref()?.pieces.get(p))
                .map_or("", String::as_str);
            // From now on the follower decides this chunk's changes by its snapshot; those it
            // left to the chunk before must be in that snapshot.
            let required = registry.begin(&table.name, condition);
            let mut tries = 0;
            loop {
                start(conn)?;
                // LOCK takes no snapshot: this statement takes the read's own, once the
                // table is locked, so nothing truncates or rewrites it between the two.
                let seen = take(conn)?;
                let snapshot = Snapshot::parse(&seen.snapshot)?;
                if required.iter().all(|xid| snapshot.sees(*xid)) {
                    registry.taken(&table.name, condition, &snapshot, &seen.horizon)?;
                    if tries > 0 {
                        log::debug!(
                            "{}: took the read's snapshot {} times, until it saw every \
                             transaction the follower left to it",
                            table.name,
                            tries + 1
                        );
                    }
                    break Some(seen);
                }
                // Committed (the stream had it), not out of the running set yet.
                tries += 1;
                if tries == 1000 {
                    let unseen: Vec<u32> = required
                        .iter()
                        .copied()
                        .filter(|xid| !snapshot.sees(*xid))
                        .collect();
                    log::warn!(
                        "{}: still waiting for a snapshot that sees transactions {unseen:?}, \
                         committed on the source (its stream has them) and still in its \
                         running set",
                        table.name
                    );
                }
                conn.execute("ROLLBACK")
                    .context("ending a snapshot taken too early")?;
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
    };
    let sql = table.copy_out_sql(piece);
    log::debug!("source: {sql}");
    let mut counter = RowCounter::new(table.format == Format::Binary);
    // Columns the rules hash are masked here, as the rows pass.
    let mut masker = RowRewriter::for_table(table)?;
    let mut chunk = Vec::with_capacity(batch_size);
    let mut pass = |chunk: Vec<u8>| -> Result<()> {
        let before = counter.rows();
        counter.feed(&chunk)?;
        send(chunk, counter.rows() - before)
    };
    conn.copy_out(&sql, |mut data| {
        if let Some(masker) = masker.as_mut() {
            // Masked straight into the chunk, which may end a message past the batch size.
            masker.feed(data, &mut chunk)?;
            if chunk.len() >= batch_size {
                pass(std::mem::replace(
                    &mut chunk,
                    Vec::with_capacity(batch_size),
                ))?;
            }
            return Ok(());
        }
        while !data.is_empty() {
            let take = data.len().min(batch_size - chunk.len());
            chunk.extend_from_slice(&data[..take]);
            data = &data[take..];
            if chunk.len() == batch_size {
                pass(std::mem::replace(
                    &mut chunk,
                    Vec::with_capacity(batch_size),
                ))?;
            }
        }
        Ok(())
    })
    .map_err(|err| without_values(table, err))
    .context("reading from the source")?;
    if let Some(masker) = &masker {
        masker.finish()?;
    }
    if !chunk.is_empty() {
        pass(chunk)?;
    }
    let rows = counter.finish()?;
    conn.execute("COMMIT")
        .context("ending the source transaction")?;
    Ok(Read { rows, seen })
}

/// Takes the open transaction's snapshot, and the WAL position right after (`TAKE_SQL`).
fn take(conn: &mut wire::Connection) -> Result<Seen> {
    let rows = conn
        .query_rows(TAKE_SQL)
        .context("taking the read's snapshot")?;
    match rows.first().map(Vec::as_slice) {
        Some([Some(snapshot), Some(horizon)]) => Ok(Seen {
            snapshot: snapshot.clone(),
            horizon: horizon.clone(),
        }),
        _ => anyhow::bail!("the source gave no snapshot for the read"),
    }
}

/// A failure of a table the source masks (`sql`, `fixed`, `noise` in its `COPY (SELECT …)`)
/// without the server's message, which may quote the row's unmasked values ("invalid input
/// syntax for type integer: \"ann@corp.com\""): its SQLSTATE, which keeps its kind, and the
/// rules the source applies there. A lost session or a lock, which quote nothing, as it is.
fn without_values(table: &TablePlan, err: anyhow::Error) -> anyhow::Error {
    if table.masks.iter().all(|m| m.in_client) {
        return err;
    }
    let Some(server) = err
        .chain()
        .find_map(|c| c.downcast_ref::<wire::ServerError>())
    else {
        return err;
    };
    if ["08", "25", "40", "53", "55", "57"].contains(&server.code.get(..2).unwrap_or("")) {
        return err;
    }
    let rules: Vec<String> = table
        .masks
        .iter()
        .filter(|m| !m.in_client)
        .map(|m| format!("{} ({})", m.target(), m.describe))
        .collect();
    anyhow::Error::new(wire::ServerError {
        severity: server.severity.clone(),
        code: server.code.clone(),
        message: format!(
            "the source failed on a row of {} while applying the rules there ({}), with \
             SQLSTATE {}; its message is not shown, as it may quote the row's unmasked values",
            table.name,
            rules.join(", "),
            server.code
        ),
        detail: None,
        hint: None,
    })
}
