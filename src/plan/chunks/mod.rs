//! The chunked initial copy of `copy --follow`: which tables are read in ranges of a key and
//! which whole (`cut`), the key values pgcopy places in those ranges itself (`keys`), and the
//! destination's record of every range to read and, once read, the snapshot it was read in
//! and the WAL position read with it, written in the same commit as the range's rows; what
//! the lanes and the follower applying the stream meanwhile share of them (`registry`). The
//! follower decides each change of a copied table by the range that holds its key;
//! `--resume` goes on at the ranges not recorded, once every transaction committed is seen;
//! `status` counts them.

pub(crate) mod cut;
pub(crate) mod keys;
pub(crate) mod registry;
pub(crate) mod visibility;

use crate::pg::sql::TableName;
use crate::plan::pieces::KeyRange;
use crate::schema::own::{self, CAN_MAKE_TABLE};
use anyhow::{Context, Result};
use postgres::{Client, GenericClient};
use visibility::Snapshot;

/// The record, in pgcopy's own schema.
pub(crate) const TABLE: &str = "pgcopy.follow_chunks";

/// The statement a chunk's read runs first in its `REPEATABLE READ` transaction: it takes
/// the snapshot, and the WAL's insert position right after. Every transaction the snapshot
/// sees wrote its commit record before that position (a transaction leaves the running set
/// only after its commit record is in), so a change committed there or after is one the
/// chunk does not hold.
pub(crate) const TAKE_SQL: &str =
    "SELECT pg_current_snapshot()::text, pg_current_wal_insert_lsn()::text";

/// What a chunk's read saw, as the source wrote it: `pg_current_snapshot()` and the WAL
/// position after it (see `TAKE_SQL`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Seen {
    pub(crate) snapshot: String,
    pub(crate) horizon: String,
}

/// One range read, as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Recorded {
    pub(crate) table: TableName,
    /// The key columns and the range, for a table read in ranges; `None` for a table read
    /// whole.
    pub(crate) range: Option<(Vec<String>, KeyRange)>,
    /// The range's rows, as `WHERE …` (empty for a table read whole).
    pub(crate) condition: String,
    /// `None` for a range not read yet.
    pub(crate) seen: Option<Seen>,
}

/// Waits until a snapshot taken now sees every transaction `planned` (the snapshot planning
/// ran in, which the slot exported) saw. A transaction that committed before the slot's
/// consistent point is not in the stream, and has written its commit, but may not have left
/// the source's running set yet: a chunk read in a snapshot that does not see it would lose
/// its changes. Once one snapshot sees them all, every later one does.
pub(crate) fn wait_until_seen(source: &mut Client, planned: &str) -> Result<()> {
    let planned = Snapshot::parse(planned)?;
    let mut waited = 0;
    loop {
        let now: String = source
            .query_one("SELECT pg_current_snapshot()::text", &[])
            .context("reading the source's snapshot")?
            .get(0);
        if Snapshot::parse(&now)?.covers(&planned) {
            if waited > 0 {
                log::debug!("waited {waited} times for transactions committed before the slot");
            }
            return Ok(());
        }
        waited += 1;
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Waits until a snapshot taken now sees every transaction that has committed on the
/// source: one whose commit a follower killed during its copy had from the stream, and left
/// to a chunk not read yet, may not have left the running set (a commit waiting for a
/// synchronous standby, say), and a chunk read in a snapshot that does not see it would lose
/// its changes. A transaction that commits meanwhile makes it look again, until a look finds
/// none. On a standby, which assigns no transaction ids, it waits for a snapshot that sees
/// what one taken now sees.
pub(crate) fn wait_until_committed_seen(source: &mut Client) -> Result<()> {
    let standby: bool = source
        .query_one("SELECT pg_is_in_recovery()", &[])
        .context("asking whether the source is a standby")?
        .get(0);
    if standby {
        let now: String = source
            .query_one("SELECT pg_current_snapshot()::text", &[])
            .context("reading the source's snapshot")?
            .get(0);
        return wait_until_seen(source, &now);
    }
    // Every transaction that could have committed before now has a lower id than this one.
    let next: i64 = source
        .query_one("SELECT pg_current_xact_id()::text::bigint", &[])
        .context("taking a transaction id on the source")?
        .get(0);
    let mut looked = 0;
    loop {
        let committed: i64 = source
            .query_one(
                "WITH s AS (SELECT pg_current_snapshot() AS s)
                 SELECT count(*) FROM s, LATERAL (
                     SELECT x FROM pg_snapshot_xip(s.s) AS x WHERE x::text::bigint < $1
                     UNION ALL
                     SELECT g::text::xid8
                     FROM generate_series(pg_snapshot_xmax(s.s)::text::bigint, $1 - 1) AS g
                 ) AS xs(x)
                 WHERE pg_xact_status(xs.x) = 'committed'",
                &[&next],
            )
            .context("looking for transactions committed on the source and not seen yet")?
            .get(0);
        if committed == 0 {
            if looked > 0 {
                log::debug!("looked {looked} times for committed transactions not seen yet");
            }
            return Ok(());
        }
        looked += 1;
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Whether the destination role may keep the record (it makes the table, and the schema
/// if missing).
pub(crate) fn can_record(dest: &mut Client) -> Result<bool> {
    Ok(dest
        .query_one(&format!("SELECT {CAN_MAKE_TABLE}"), &[&TABLE])
        .context("asking the destination whether pgcopy may record the chunks it copies")?
        .get(0))
}

/// Makes the record's table where it is missing; a copy that starts over (`fresh`) forgets
/// what an earlier follower of `slot` recorded.
pub(crate) fn start(dest: &mut Client, slot: &str, fresh: bool) -> Result<()> {
    let mut tx = dest.transaction()?;
    own::ensure(&mut tx)?;
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {TABLE} (
             slot text NOT NULL,
             table_schema text NOT NULL,
             table_name text NOT NULL,
             condition text NOT NULL,
             key text[],
             types text[],
             low text[],
             high text[],
             snapshot text,
             horizon pg_lsn,
             PRIMARY KEY (slot, table_schema, table_name, condition));
         COMMENT ON TABLE {TABLE} IS 'the ranges pgcopy copy --follow copies, each with its \
         snapshot once copied; dropped at cutover or by pgcopy abandon'"
    ))?;
    if fresh {
        tx.execute(&format!("DELETE FROM {TABLE} WHERE slot = $1"), &[&slot])?;
    }
    tx.commit()
        .with_context(|| format!("making {TABLE} on the destination"))
}

/// One table or range to copy: the table, and for a range its `WHERE …` condition, key
/// columns and range.
pub(crate) type Unit<'a> = (&'a TableName, Option<(&'a str, &'a [String], &'a KeyRange)>);

/// Records what the copy about to start reads, as not read yet, in place of what an
/// earlier plan left to read.
pub(crate) fn plan(dest: &mut Client, slot: &str, units: &[Unit<'_>]) -> Result<()> {
    let mut tx = dest.transaction()?;
    tx.execute(
        &format!("DELETE FROM {TABLE} WHERE slot = $1 AND snapshot IS NULL"),
        &[&slot],
    )?;
    let insert = tx.prepare(&format!(
        "INSERT INTO {TABLE} (slot, table_schema, table_name, condition, key, types, low, high)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING"
    ))?;
    for (table, piece) in units {
        let condition = piece.map_or("", |(condition, _, _)| condition);
        let key = piece.map(|(_, key, _)| key.to_vec());
        let range = piece.map(|(_, _, range)| range);
        tx.execute(
            &insert,
            &[
                &slot,
                &table.schema,
                &table.name,
                &condition,
                &key,
                &range.map(|r| r.types.clone()),
                &range.and_then(|r| r.low.clone()),
                &range.and_then(|r| r.high.clone()),
            ],
        )?;
    }
    tx.commit()
        .with_context(|| format!("recording the chunks to copy in {TABLE}"))
}

/// How many of each table's chunks were copied, and how many it has, for `slot`.
pub(crate) fn counts(dest: &mut Client, slot: &str) -> Result<Vec<(TableName, i64, i64)>> {
    if !table_exists(dest)? {
        return Ok(Vec::new());
    }
    let rows = dest
        .query(
            &format!(
                "SELECT table_schema, table_name, count(snapshot), count(*) FROM {TABLE}
                 WHERE slot = $1 GROUP BY 1, 2 ORDER BY 1, 2"
            ),
            &[&slot],
        )
        .with_context(|| format!("reading {TABLE}"))?;
    Ok(rows
        .iter()
        .map(|r| {
            let table = TableName::new(r.get::<_, String>(0), r.get::<_, String>(1));
            (table, r.get(2), r.get(3))
        })
        .collect())
}

fn table_exists(dest: &mut Client) -> Result<bool> {
    Ok(dest
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&TABLE])?
        .get(0))
}

/// Whether a chunk was copied for `slot`.
pub(crate) fn exists(dest: &mut Client, slot: &str) -> Result<bool> {
    if !table_exists(dest)? {
        return Ok(false);
    }
    Ok(dest
        .query_one(
            &format!(
                "SELECT EXISTS (SELECT FROM {TABLE} WHERE slot = $1 AND snapshot IS NOT NULL)"
            ),
            &[&slot],
        )
        .with_context(|| format!("reading {TABLE}"))?
        .get(0))
}

/// Forgets what was copied of `table`, in the transaction that empties it.
pub(crate) fn forget_table(
    tx: &mut impl GenericClient,
    slot: &str,
    table: &TableName,
) -> Result<()> {
    tx.execute(
        &format!(
            "DELETE FROM {TABLE} WHERE slot = $1 AND table_schema = $2 AND table_name = $3
             AND snapshot IS NOT NULL"
        ),
        &[&slot, &table.schema, &table.name],
    )
    .with_context(|| format!("forgetting the chunks of {table} recorded in {TABLE}"))?;
    Ok(())
}

/// Records, in the transaction that loads its rows, that `table` (or its piece, by
/// `condition`, with its key columns and range) was read as `seen` says.
pub(crate) fn record(
    tx: &mut impl GenericClient,
    slot: &str,
    table: &TableName,
    piece: Option<(&str, &[String], &KeyRange)>,
    seen: &Seen,
) -> Result<()> {
    let condition = piece.map_or("", |(condition, _, _)| condition);
    let key = piece.map(|(_, key, _)| key.to_vec());
    let range = piece.map(|(_, _, range)| range);
    let types = range.map(|r| r.types.clone());
    let low = range.and_then(|r| r.low.clone());
    let high = range.and_then(|r| r.high.clone());
    tx.execute(
        &format!(
            "INSERT INTO {TABLE} AS c (slot, table_schema, table_name, condition, key, types,
                                       low, high, snapshot, horizon)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::text::pg_lsn)
             ON CONFLICT (slot, table_schema, table_name, condition) DO UPDATE
             SET key = excluded.key, types = excluded.types, low = excluded.low,
                 high = excluded.high, snapshot = excluded.snapshot,
                 horizon = excluded.horizon"
        ),
        &[
            &slot,
            &table.schema,
            &table.name,
            &condition,
            &key,
            &types,
            &low,
            &high,
            &seen.snapshot,
            &seen.horizon,
        ],
    )
    .with_context(|| format!("recording the chunk of {table} copied in {TABLE}"))?;
    Ok(())
}

/// Every chunk copied for `slot`; with `unread`, the chunks still to copy too.
pub(crate) fn load(dest: &mut Client, slot: &str, unread: bool) -> Result<Vec<Recorded>> {
    if !table_exists(dest)? {
        return Ok(Vec::new());
    }
    let rows = dest
        .query(
            &format!(
                "SELECT table_schema, table_name, key, types, low, high, snapshot,
                        horizon::text, condition
                 FROM {TABLE} WHERE slot = $1 AND (snapshot IS NOT NULL OR $2)"
            ),
            &[&slot, &unread],
        )
        .with_context(|| format!("reading {TABLE}"))?;
    Ok(rows
        .iter()
        .map(|row| Recorded {
            table: TableName::new(row.get::<_, String>(0), row.get::<_, String>(1)),
            range: row.get::<_, Option<Vec<String>>>(2).map(|key| {
                (
                    key,
                    KeyRange {
                        types: row.get::<_, Option<Vec<String>>>(3).unwrap_or_default(),
                        low: row.get(4),
                        high: row.get(5),
                    },
                )
            }),
            seen: row
                .get::<_, Option<String>>(6)
                .zip(row.get::<_, Option<String>>(7))
                .map(|(snapshot, horizon)| Seen { snapshot, horizon }),
            condition: row.get(8),
        })
        .collect())
}

/// Forgets `slot`'s record; the table goes when no follower is left in it (the schema is
/// the progress ledger's to drop, after it).
pub(crate) fn forget(dest: &mut Client, slot: &str) -> Result<()> {
    if !table_exists(dest)? {
        return Ok(());
    }
    own::forget_rows(dest, TABLE, slot)?;
    own::drop_if_made_here(dest)
}
