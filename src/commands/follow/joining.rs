//! Tables that appear on the source while following and that the follower's filters select
//! (a partition a maintenance job creates or attaches, a new table): each is taken up once
//! the destination has it and it can be published. In one source transaction it is locked
//! `SHARE` (its writers wait while its rows are copied: for a new partition, a moment), its
//! snapshot exported and it is added to the publication; its rows are copied into the
//! destination at that snapshot, as the copy does, and only then does that transaction
//! commit. Every change to it that the stream carries commits after that, so none is in the
//! copy too and none is missed; a follower stopped before that commit left it unpublished,
//! and takes it up again.
//!
//! A table that cannot be taken up (the destination lacks it, it has no replica identity,
//! the role may not publish it) is named once, with what stands in the way, and again if
//! that changes; `cutover` refuses to finish while one is left (see `unfollowed`).

use super::quiet::drop_keys_while_following;
use crate::cli::config::CopyConfig;
use crate::pg::error::{describe, kind, Kind};
use crate::pg::server::SnapshotId;
use crate::pg::sql::{quote_ident, TableName};
use crate::plan::filter::TableFilter;
use crate::plan::{self, refusals};
use crate::replication::apply::Joined;
use crate::replication::{follow, readiness, slot};
use crate::schema::catalog::Table;
use crate::schema::triggers;
use crate::transfer::{lanes, Counters, Settings, Stop};
use anyhow::{bail, Context, Result};
use postgres::Client;
use std::collections::{HashMap, HashSet};

/// How long taking a table up waits for its writers before it tries again later: its
/// `SHARE` lock, queued, holds up every writer that comes after it.
const LOCK_WAIT_MS: u64 = 1000;

/// Looks for tables to take up, between the groups the follower applies.
pub(super) struct Watcher<'a> {
    cfg: &'a CopyConfig,
    /// The publication's name.
    name: String,
    filter: TableFilter,
    /// The destination applies as a replica (else keys are dropped and triggers quieted).
    replica: bool,
    /// Sessions opened at the first look.
    sessions: Option<(Client, Client)>,
    /// What was last said of each table not taken up: said again only when it changes.
    said: HashMap<TableName, String>,
    /// The source's tables as of the last look, in a few bytes: while they stay the same
    /// and nothing waits to be taken up, a look ends there.
    seen: Option<String>,
}

impl<'a> Watcher<'a> {
    /// A watcher for the follower of `name`, with the filters the publication records
    /// (those of the `copy --follow` that made it), else this run's.
    pub(super) fn new(
        cfg: &'a CopyConfig,
        source: &mut Client,
        name: &str,
        replica: bool,
    ) -> Result<Watcher<'a>> {
        let filter = slot::recorded_filter(source, name)?.unwrap_or_else(|| cfg.filter.clone());
        Ok(Watcher {
            cfg,
            name: name.to_string(),
            filter,
            replica,
            sessions: None,
            said: HashMap::new(),
            seen: None,
        })
    }

    /// Takes up the tables the filters select that `followed` lacks, those it can; returns
    /// them. A lost session is an error (following tries again); anything else that stands
    /// in a table's way is said, and the table looked at again next time.
    pub(super) fn look(&mut self, followed: &HashSet<TableName>) -> Result<Vec<Joined>> {
        if self.sessions.is_none() {
            self.sessions = Some((self.cfg.source.connect()?, self.cfg.dest.connect()?));
        }
        let Some((source, _)) = self.sessions.as_mut() else {
            return Ok(Vec::new());
        };
        let seen = tables_fingerprint(source)?;
        if self.said.is_empty() && self.seen.as_ref() == Some(&seen) {
            return Ok(Vec::new());
        }
        self.seen = Some(seen);
        let new = follow::unfollowed(source, &self.filter, followed)?;
        // What was said of tables gone since (dropped, or taken up) is said no more.
        self.said
            .retain(|said, _| new.iter().any(|t| &t.name == said));
        if new.is_empty() {
            return Ok(Vec::new());
        }
        let oids: Vec<u32> = new.iter().map(|t| t.oid).collect();
        let lacking: HashMap<TableName, String> = readiness::no_identity(source, &oids)?
            .into_iter()
            .map(|t| {
                (
                    t.table,
                    format!("it has no usable replica identity: {}", t.fix),
                )
            })
            .collect();
        let mut joined = Vec::new();
        for table in new {
            if let Some(why) = lacking.get(&table.name) {
                self.say(&table.name, why.clone());
                continue;
            }
            match self.take_up(&table) {
                Ok((quiet, rows)) => {
                    self.said.remove(&table.name);
                    log::info!(
                        "following {}, new on the source: copied its {rows} rows, and its \
                         changes since",
                        table.name
                    );
                    joined.push(Joined {
                        table: table.name,
                        quiet,
                    });
                }
                Err(err) if kind(&err) == Kind::LockTimeout => self.say(
                    &table.name,
                    "its writers hold it; trying again in a few seconds".into(),
                ),
                Err(err) if kind(&err) == Kind::Lost => return Err(err),
                Err(err) => self.say(&table.name, describe(&err)),
            }
        }
        Ok(joined)
    }

    fn say(&mut self, table: &TableName, why: String) {
        if self.said.get(table) == Some(&why) {
            return;
        }
        log::warn!(
            "{table} is new on the source and the filters select it, but it is not followed \
             yet: {why}; it is followed once that is fixed, and `pgcopy cutover` waits for it"
        );
        self.said.insert(table.clone(), why);
    }

    /// Publishes `table` and copies its rows at the snapshot of that moment (see the
    /// module's comment); returns the triggers to keep quiet in it and the rows copied.
    fn take_up(&mut self, table: &Table) -> Result<(Vec<triggers::Trigger>, u64)> {
        let cfg = self.cfg;
        let quoted = table.name.quoted();
        let mut holder = cfg.source.connect()?;
        holder.batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ;
             SET LOCAL lock_timeout = {LOCK_WAIT_MS};
             LOCK TABLE ONLY {quoted} IN SHARE MODE"
        ))?;
        // LOCK takes no snapshot: this first query does, once every writer of it is done.
        let snapshot = SnapshotId(
            holder
                .query_one("SELECT pg_catalog.pg_export_snapshot()", &[])?
                .get(0),
        );
        holder
            .batch_execute(&format!(
                "ALTER PUBLICATION {} ADD TABLE ONLY {quoted}",
                quote_ident(&self.name)
            ))
            .with_context(|| format!("publishing {}", table.name))?;
        let mut plan = plan::build(&mut holder, std::slice::from_ref(table))?;
        let Some((_, dest)) = self.sessions.as_mut() else {
            bail!("the watcher's sessions are not open");
        };
        let refused = refusals::check_destination(&mut holder, dest, &mut plan)?.refusals(
            Vec::new(),
            &cfg.dest.to_string(),
            cfg.allow_narrowing,
        );
        if !refused.is_empty() {
            bail!("{}", refused.join("; "));
        }
        let names = plan.names();
        let mut quiet = Vec::new();
        if !self.replica {
            drop_keys_while_following(cfg, dest, &names)?;
        }
        if !cfg.enable_triggers {
            let firing = triggers::firing(dest, &names, self.replica)?;
            if let Some(firing) = firing.get(&table.name) {
                plan.tables[0].triggers = firing.clone();
                if !self.replica {
                    quiet = firing.clone();
                }
            }
        }
        let settings = Settings {
            snapshot: crate::transfer::ReadSnapshot::Exported(snapshot),
            batch_size: cfg.batch_size,
            parallel: 1,
            replica: self.replica,
            retries: cfg.retries,
            lock_timeout: cfg.lock_timeout,
            analyze: cfg.analyze,
        };
        let outcomes = lanes::run(
            &plan,
            &settings,
            &cfg.source.reader_pool(2),
            &cfg.dest.pool(2),
            &Counters::default(),
            &Stop::default(),
            |_| {},
        )?;
        let outcome = outcomes
            .into_iter()
            .next()
            .context("the copy of a new table said nothing")?;
        if let Some(err) = outcome.error {
            return Err(err.context(format!("copying {}", table.name)));
        }
        holder
            .batch_execute("COMMIT")
            .with_context(|| format!("publishing {}", table.name))?;
        let oids = follow::dest_oids(dest, &names)?;
        if let Some((source, _)) = self.sessions.as_mut() {
            slot::record_tables(source, &self.name, &oids)?;
        }
        Ok((quiet, outcome.rows))
    }
}

/// The source's tables and partitions, in a few bytes: which there are, their names and
/// whether they are partitions. Cheaper than the catalog's whole listing, which a look
/// needs only when this changed.
fn tables_fingerprint(source: &mut Client) -> Result<String> {
    Ok(source
        .query_one(
            "SELECT coalesce(md5(string_agg(c.oid::text || ' ' || c.relnamespace::text || ' ' ||
                                            c.relname || ' ' || c.relispartition::text,
                                            ',' ORDER BY c.oid)), '')
               FROM pg_catalog.pg_class c
              WHERE c.relkind IN ('r', 'p') AND c.relpersistence <> 't'",
            &[],
        )
        .context("looking at the source's tables")?
        .get(0))
}
