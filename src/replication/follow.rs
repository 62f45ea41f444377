//! Following, put together: the slot's session started streaming from where the destination
//! is (`progress`), the receiver on a thread of its own, the applier on the caller's (with
//! the chunks the initial copy recorded, `chunks`), a bounded channel between them.

use crate::pg::error::{sqlstate, TryLater};
use crate::pg::sql::{quote_ident, quote_literal, TableName};
use crate::pg::target::Target;
use crate::pg::wire;
use crate::plan;
use crate::plan::chunks::registry::Registry;
use crate::plan::filter::TableFilter;
use crate::replication::apply::{self, Applied, Applier, Ended, Joined};
use crate::replication::chunks::Chunks;
use crate::replication::decode::Lsn;
use crate::replication::receive::{self, Shared};
use crate::replication::slot::{parse_lsn, LsnText};
use crate::schema::catalog::{self, Table};
use anyhow::{Context, Result};
use postgres::error::SqlState;
use postgres::Client;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Batches of decoded changes on their way to the applier: enough to keep it busy while
/// the receiver reads on (1,024 changes), few enough that the memory they take stays small.
const CHANNEL: usize = 1024 / receive::BATCH;

/// The tables the publication `name` publishes: the followed tables.
pub(crate) fn published(source: &mut Client, name: &str) -> Result<HashSet<TableName>> {
    let rows = source.query(
        "SELECT schemaname::text, tablename::text FROM pg_catalog.pg_publication_tables
          WHERE pubname = $1",
        &[&name],
    )?;
    Ok(rows
        .iter()
        .map(|r| TableName::new(r.get::<_, String>(0), r.get::<_, String>(1)))
        .collect())
}

/// The tables `filter` selects on the source that are not among `followed`: those the
/// role may read (the others are not copied either).
pub(crate) fn unfollowed(
    source: &mut Client,
    filter: &TableFilter,
    followed: &HashSet<TableName>,
) -> Result<Vec<Table>> {
    Ok(plan::wanted(&catalog::tables(source)?, filter)
        .into_iter()
        .filter(|t| t.readable && !followed.contains(&t.name))
        .collect())
}

/// The destination's OIDs of `tables` (by quoted name), those it has: which tables a
/// follower applies to, to tell them from tables dropped and made again since.
pub(crate) fn dest_oids(dest: &mut Client, tables: &[TableName]) -> Result<BTreeMap<String, u32>> {
    let names: Vec<String> = tables.iter().map(TableName::quoted).collect();
    let rows = dest
        .query(
            "SELECT t.name, pg_catalog.to_regclass(t.name)::oid
               FROM unnest($1::text[]) AS t(name)
              WHERE pg_catalog.to_regclass(t.name) IS NOT NULL",
            &[&names],
        )
        .context("reading the destination's tables")?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// What to follow with.
pub(crate) struct Sessions {
    /// The slot's replication session on the source, not streaming yet.
    pub(crate) stream: wire::Connection,
    /// A destination session set up by `apply::prepare_session`.
    pub(crate) apply: wire::Connection,
    /// Another destination session, for the applier's questions about tables.
    pub(crate) catalog: Client,
    /// The source, for rows a change left values out of (see `chunks::fetch`).
    pub(crate) source: Target,
    /// The chunks of the copy going on while this follows; else the destination's record
    /// of them is read.
    pub(crate) copying: Option<Arc<Registry>>,
}

/// What is followed, and from where.
pub(crate) struct Stream {
    /// The slot's, the publication's and the origin's name.
    pub(crate) name: String,
    /// The published tables.
    pub(crate) followed: HashSet<TableName>,
    /// The destination holds every source transaction that ends before this.
    pub(crate) start: Lsn,
    /// The source's `server_version_num`.
    pub(crate) version: i32,
    /// What the apply session was set up with.
    pub(crate) setup: apply::Setup,
}

/// Streams the slot from where the destination is and applies every transaction to the
/// followed tables, until the cutover mark, an interrupt or a failure. `progress` is called
/// about every `every`; `watch`, between two applied groups every few seconds, with the
/// tables followed, returns those to follow from then on (see `Applier::run`).
pub(crate) fn run(
    sessions: Sessions,
    what: Stream,
    interrupted: &(dyn Fn() -> bool + Sync),
    every: Duration,
    progress: impl FnMut(&Applied, Lsn),
    watch: impl FnMut(&HashSet<TableName>) -> Result<Vec<Joined>>,
) -> Result<(Ended, Applied)> {
    let Sessions {
        mut stream,
        apply,
        mut catalog,
        source,
        copying,
    } = sessions;
    let Stream {
        name,
        followed,
        start,
        version,
        setup,
    } = what;
    let name = name.as_str();
    catalog
        .batch_execute(&format!("LISTEN {}", quote_ident(name)))
        .context("listening for cutover on the destination")?;
    // The values come as the source's output functions write them: in the formats the
    // destination's session reads back (see `apply::prepare_session`), whatever the source's
    // settings are.
    stream
        .execute(
            "SET datestyle = 'ISO'; SET intervalstyle = 'postgres'; SET extra_float_digits = 3;
             SET bytea_output = 'hex'",
        )
        .context("setting up the replication session")?;
    // From 14 on, pgoutput carries `pg_logical_emit_message`'s messages (the cutover
    // mark), and streams a large transaction as it runs (protocol 2) instead of spilling it
    // to the source's disk until it commits: the receiver holds it until then (`spool`).
    let options = if version >= 140000 {
        "proto_version '2', streaming 'on', messages 'true'"
    } else {
        "proto_version '1'"
    };
    stream
        .start_copy_both(&format!(
            "START_REPLICATION SLOT {} LOGICAL {} ({options}, publication_names {})",
            quote_ident(name),
            LsnText(start),
            quote_literal(&quote_ident(name)),
        ))
        .map_err(|err| {
            // The session before a lost connection may hold the slot a moment longer.
            if sqlstate(&err) == Some(SqlState::OBJECT_IN_USE) {
                err.context(TryLater(format!(
                    "the replication slot {name} is still in use"
                )))
            } else {
                err.context(format!("starting to stream the replication slot {name}"))
            }
        })?;
    log::info!("following the source from {}", LsnText(start));
    let shared = Shared::default();
    let (send, changes) = crossbeam_channel::bounded(CHANNEL);
    let mut catalog = catalog;
    let chunks = match copying {
        Some(registry) => Chunks::sharing(registry, source),
        None => Chunks::load(&mut catalog, name, source)?,
    };
    let mut applier = Applier::new(
        apply,
        catalog,
        followed,
        name.to_string(),
        &shared,
        start,
        setup,
    )
    .with_chunks(chunks);
    std::thread::scope(|scope| {
        let receiver = scope.spawn(|| receive::receive(stream, send, &shared, interrupted));
        let mut progress = progress;
        let applied = applier.run(
            &changes,
            interrupted,
            every,
            |applied| progress(applied, shared.server_end.load(Ordering::SeqCst)),
            watch,
        );
        // However the applier ended, the receiver stops: its stream has nobody to go to.
        shared.stop.store(true, Ordering::SeqCst);
        drop(changes);
        let received = receiver
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the receiver's thread panicked")));
        let ended = applied?;
        match (&ended, received) {
            (Ended::StreamGone, Err(err)) => Err(err),
            (_, Err(err)) if !matches!(ended, Ended::Cutover { .. }) => Err(err),
            _ => Ok((ended, applier.applied)),
        }
    })
}

/// Tells the follower of `name`, through the destination, where the cutover mark is: how a
/// follower of a source before PostgreSQL 14 learns of it (see `Applier`).
pub(crate) fn notify_mark(dest: &mut Client, name: &str, mark: Lsn) -> Result<()> {
    dest.execute(
        "SELECT pg_catalog.pg_notify($1, $2)",
        &[&name, &LsnText(mark).to_string()],
    )
    .context("telling the follower where the cutover mark is")?;
    Ok(())
}

/// Writes the cutover mark for the follower of `name` into the source's WAL, in a
/// transaction of its own: every transaction committed before it is before it in the
/// stream. Returns where it is.
pub(crate) fn write_mark(source: &mut Client, name: &str) -> Result<Lsn> {
    let row = source
        .query_one(
            "SELECT pg_catalog.pg_logical_emit_message(true, $1, $2)::text",
            &[&apply::MARK_PREFIX, &apply::mark(name)],
        )
        .context("writing the cutover mark into the source's WAL")?;
    parse_lsn(&row.get::<_, String>(0))
}
