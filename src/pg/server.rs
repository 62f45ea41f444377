//! What pgcopy asks of a server beyond connecting: its version, who it is (so a state file
//! is never applied to another database or a clone), the advisory lock one pgcopy at a time holds on
//! a destination, and the one way a session enters the copy's snapshot.

use crate::pg::sql::quote_literal;
use anyhow::{bail, Context, Result};
use postgres::{Client, IsolationLevel, Transaction};
use std::fmt;

/// The server's `server_version_num` (150004 for 15.4).
pub(crate) fn version(client: &mut Client) -> Result<i32> {
    Ok(client
        .query_one("SELECT current_setting('server_version_num')::int4", &[])
        .context("asking the server for its version")?
        .get(0))
}

/// A read-only transaction that sees one snapshot throughout: the catalog, the counts and
/// the rows of one moment.
pub(crate) const BEGIN_READ_ONLY: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";

/// The name of a snapshot exported by the session that holds it (`pg_export_snapshot()`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SnapshotId(pub(crate) String);

impl SnapshotId {
    /// The statements that open a read-only transaction in this snapshot, for a reader's
    /// session (see `begin_read_only` for the others): a session that runs them sees exactly
    /// what the exporting one sees.
    pub(crate) fn begin_sql(&self) -> String {
        format!("{BEGIN_READ_ONLY}; {}", self.import_sql())
    }

    fn import_sql(&self) -> String {
        format!("SET TRANSACTION SNAPSHOT {}", quote_literal(&self.0))
    }
}

/// Opens a read-only `REPEATABLE READ` transaction on a postgres-crate session, in `snapshot`
/// when one is given. The transaction rolls back when dropped, so a session that failed
/// inside it goes back to its pool clean.
pub(crate) fn begin_read_only<'c>(
    client: &'c mut Client,
    snapshot: Option<&SnapshotId>,
) -> Result<Transaction<'c>> {
    let mut tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()?;
    if let Some(snapshot) = snapshot {
        tx.batch_execute(&snapshot.import_sql())
            .context("importing the source snapshot")?;
    }
    Ok(tx)
}

/// Who a server and database are, whatever URL reached them (`localhost` or `127.0.0.1`,
/// a socket, another user).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Identity {
    /// `pg_control_system().system_identifier`: set by initdb, shared only by physical copies.
    pub(crate) system_id: String,
    /// The port the server is configured with, which the URL may not show.
    pub(crate) port: String,
    pub(crate) database: String,
    /// The postmaster's start time: tells apart two running copies of one cluster.
    pub(crate) started: String,
}

impl Identity {
    pub(crate) fn read(client: &mut Client) -> Result<Identity> {
        let row = client
            .query_one(
                "SELECT (SELECT system_identifier::text FROM pg_control_system()),
                        current_setting('port'), current_database(),
                        pg_postmaster_start_time()::text",
                &[],
            )
            .context("asking the server who it is")?;
        Ok(Identity {
            system_id: row.get(0),
            port: row.get(1),
            database: row.get(2),
            started: row.get(3),
        })
    }

    /// What names this database across server restarts (state files use it).
    pub(crate) fn key(&self) -> String {
        format!("{}:{}/{}", self.system_id, self.port, self.database)
    }
}

/// Takes the session advisory lock that one pgcopy at a time holds on a destination
/// database. The server releases it when the session ends, even after `kill -9`, so a state
/// file found while holding the lock is one that no running pgcopy is still using.
pub(crate) fn lock_destination(client: &mut Client, target: &dyn fmt::Display) -> Result<()> {
    let locked: bool = client
        .query_one(
            "SELECT pg_try_advisory_lock(hashtext('pgcopy destination'))",
            &[],
        )
        .context("taking pgcopy's lock on the destination")?
        .get(0);
    if !locked {
        bail!("another pgcopy is copying into {target} (it holds pgcopy's advisory lock there); wait for it to finish");
    }
    Ok(())
}

/// Reads a WAL position as PostgreSQL writes it (`16/B374D848`).
pub(crate) fn parse_lsn(text: &str) -> Result<u64> {
    let (high, low) = text
        .split_once('/')
        .with_context(|| format!("{text:?} is not a WAL position"))?;
    let high = u64::from_str_radix(high, 16).with_context(|| format!("reading {text:?}"))?;
    let low = u64::from_str_radix(low, 16).with_context(|| format!("reading {text:?}"))?;
    Ok(high << 32 | low)
}
