//! The applier's loop: each message in its turn, source transactions applied in commit
//! order several to a group, and each group committed with the ledger's record of where it
//! ends (or skipped, where an earlier run applied it); until the cutover mark, an interrupt,
//! or the end of the stream (`Ended`).

use super::mark::{is_mark_for, MARK_PREFIX};
use super::parts::{match_columns, parts, present, Parts};
use super::pipeline::SYNC_EVERY;
use super::relations::Joined;
use super::sql::{update_columns, Shape};
use super::state::{Applied, Applier, Expect, Folding, Group, What};
use crate::pg::sql::{quote_ident, TableName};
use crate::replication::chunks::Truncation;
use crate::replication::decode::{Lsn, Message, Value};
use crate::replication::net;
use crate::replication::progress::Ledger;
use crate::replication::slot::LsnText;
use anyhow::{bail, Result};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Rows whose net changes are held before they are sent, so that memory stays bounded
/// whatever the size of a source transaction.
const STAGED_ROWS: usize = 5_000;

/// While transactions keep coming, a group commits at most this often.
const COMMIT_SPACING: Duration = Duration::from_millis(20);

/// A group of source transactions commits once it holds this many changes, or is this old,
/// or no more transactions are waiting.
const GROUP_CHANGES: usize = 10_000;
const GROUP_AGE: Duration = Duration::from_millis(500);

/// How often the follower looks for tables its filters select that it does not follow yet.
const WATCH_EVERY: Duration = Duration::from_secs(5);

/// Why the applier stopped.
#[derive(Debug)]
pub(crate) enum Ended {
    /// It applied the cutover mark of this follower and everything before it, which ends
    /// at `at`.
    Cutover { at: Lsn },
    /// An interrupt asked it to stop; everything committed is recorded.
    Interrupted,
    /// The receiver stopped handing changes over; its own result says why.
    StreamGone,
}

impl Applier<'_> {
    /// Applies what arrives on `changes` until the cutover mark, an interrupt, or the end of
    /// the stream. `progress` is called about every `every` with what was applied so far.
    pub(crate) fn run(
        &mut self,
        changes: &Receiver<Vec<Message>>,
        interrupted: impl Fn() -> bool,
        every: Duration,
        mut progress: impl FnMut(&Applied),
        mut watch: impl FnMut(&HashSet<TableName>) -> Result<Vec<Joined>>,
    ) -> Result<Ended> {
        let mut last_progress = Instant::now();
        // The first look a moment in: a follower that only catches up never needs one.
        let mut last_watch = Instant::now();
        let mut last_commit = Instant::now();
        let mut batch = Vec::new().into_iter();
        loop {
            if last_progress.elapsed() >= every {
                progress(&self.applied);
                last_progress = Instant::now();
            }
            // Between two destination transactions: taking a table up may drop its keys,
            // which waits for the locks an open one holds.
            if !self.group.open && last_watch.elapsed() >= WATCH_EVERY {
                let joined = watch(&self.followed)?;
                self.join(joined)?;
                last_watch = Instant::now();
            }
            if interrupted() {
                return Ok(Ended::Interrupted);
            }
            // A group whose transactions are whole waits a moment for more before it
            // commits: a commit waits for the destination's disk.
            let pending = self.group.open && self.group.whole;
            let wait = if pending {
                COMMIT_SPACING
                    .saturating_sub(last_commit.elapsed())
                    .max(Duration::from_millis(1))
            } else {
                Duration::from_millis(200)
            };
            let next = match batch.next() {
                Some(message) => Ok(Some(message)),
                None => changes.recv_timeout(wait).map(|received| {
                    batch = received.into_iter();
                    batch.next()
                }),
            };
            let message = match next {
                Ok(Some(message)) => message,
                Ok(None) => continue,
                Err(RecvTimeoutError::Timeout) => {
                    if pending {
                        self.commit_group()?;
                        last_commit = Instant::now();
                    }
                    if let Some(at) = self.reached_notified_end()? {
                        return Ok(Ended::Cutover { at });
                    }
                    continue;
                }
                // The receiver also stops on an interrupt, maybe before this loop sees it.
                Err(RecvTimeoutError::Disconnected) if interrupted() => {
                    return Ok(Ended::Interrupted)
                }
                Err(RecvTimeoutError::Disconnected) => return Ok(Ended::StreamGone),
            };
            if let Message::Commit { end_lsn, .. } = message {
                let was_skipping = self.skipping;
                self.apply(message)?;
                if was_skipping {
                    continue;
                }
                let full = self.group.changes >= GROUP_CHANGES
                    || self.group.started.is_some_and(|t| t.elapsed() >= GROUP_AGE);
                let spaced = last_commit.elapsed() >= COMMIT_SPACING;
                let idle = batch.len() == 0 && changes.is_empty();
                if full || self.cutover || (idle && spaced) {
                    self.commit_group()?;
                    last_commit = Instant::now();
                }
                if self.cutover {
                    return Ok(Ended::Cutover { at: end_lsn });
                }
            } else {
                self.apply(message)?;
            }
        }
    }

    fn apply(&mut self, message: Message) -> Result<()> {
        match message {
            Message::Begin { final_lsn, xid, .. } => {
                self.xid = xid;
                self.final_lsn = final_lsn;
                // A transaction whose commit lies before where the destination already is
                // was applied by an earlier run.
                self.skipping = final_lsn < self.applied_before;
                self.changes_queued = 0;
                if self.skipping {
                    log::debug!(
                        "skipping the transaction at {}: applied before",
                        LsnText(final_lsn)
                    );
                } else if !self.group.open {
                    self.begin()?;
                } else {
                    self.group.whole = false;
                }
            }
            Message::Commit {
                end_lsn,
                commit_time,
                ..
            } => {
                if self.skipping {
                    self.skipping = false;
                } else {
                    self.group.end = end_lsn;
                    self.group.commit_time = commit_time;
                    self.group.transactions += 1;
                    self.group.whole = true;
                }
            }
            Message::Relation(relation) => self.describe(relation)?,
            _ if self.skipping => {}
            change @ (Message::Insert { .. } | Message::Update { .. } | Message::Delete { .. }) => {
                self.change(change)?
            }
            Message::Truncate {
                relations,
                cascade,
                restart_identity,
            } => {
                self.send_staged(None)?;
                let mut names = Vec::new();
                for relation in relations {
                    let Some(known) = self.followed_table(relation)? else {
                        continue;
                    };
                    let name = known.target.name.clone();
                    match self.truncation(&name)? {
                        Truncation::Whole => {
                            self.absent.retain(|(table, _)| table != &name);
                            names.push(name.quoted());
                        }
                        Truncation::None | Truncation::Wait => continue,
                        Truncation::Ranges(conditions) => {
                            let conditions: Vec<&str> = conditions
                                .iter()
                                .map(|c| c.trim_start_matches("WHERE "))
                                .collect();
                            let sql = format!(
                                "DELETE FROM ONLY {} WHERE ({})",
                                name.quoted(),
                                conditions.join(") OR (")
                            );
                            self.queue_once(&sql, None, format!("`{sql}`"))?;
                        }
                    }
                    self.quiet_triggers(relation)?;
                }
                if names.is_empty() {
                    return Ok(());
                }
                // ONLY: the source named every table it emptied, partitions included.
                let mut sql = format!("TRUNCATE ONLY {}", names.join(", ONLY "));
                if restart_identity {
                    sql.push_str(" RESTART IDENTITY");
                }
                if cascade {
                    sql.push_str(" CASCADE");
                }
                self.queue_once(&sql, None, format!("`{sql}`"))?;
            }
            Message::Message {
                transactional,
                prefix,
                content,
                ..
            } => {
                if transactional && prefix == MARK_PREFIX && is_mark_for(&content, &self.slot) {
                    self.cutover = true;
                }
            }
            Message::Type { .. } | Message::Origin { .. } => {}
            // The receiver holds streamed transactions until their commit, and hands them
            // over as transactions of their own (see `spool`).
            Message::StreamStart { .. }
            | Message::StreamStop
            | Message::StreamCommit { .. }
            | Message::StreamAbort { .. } => {
                bail!("the receiver handed over a streamed transaction's block unassembled")
            }
        }
        Ok(())
    }

    /// Queues an insert, update or delete. The message is kept until its answer is read,
    /// to say which row it was if it fails: formatting that for every row would cost more
    /// than the row.
    fn change(&mut self, message: Message) -> Result<()> {
        let Some(Parts { relation, .. }) = parts(&message) else {
            bail!("not a change of rows");
        };
        if self.followed_table(relation)?.is_none() {
            return Ok(());
        }
        let Some(message) = self.through_chunks(message)? else {
            return Ok(());
        };
        self.changes_queued += 1;
        let Some(Parts { kind, .. }) = parts(&message) else {
            bail!("not a change of rows");
        };
        let full = kind.is_ascii_lowercase();
        self.quiet_triggers(relation)?;
        let folding = self.known[&relation].folding;
        if folding != Folding::Never {
            if let Some(key) = self.net_key(relation, folding, kind, &message) {
                let change = match message {
                    Message::Insert { new, .. } => net::Change::Insert(new),
                    Message::Update { new, .. } => net::Change::Update(new),
                    _ => net::Change::Delete,
                };
                self.staged.entry(relation).or_default().fold(key, change);
                self.staged_rows += 1;
                self.group.changes += 1;
                self.group.rows += 1;
                if self.staged_rows >= STAGED_ROWS {
                    self.send_staged(None)?;
                }
                return Ok(());
            }
        }
        // Sent as it is, after what is staged of its table; and of every table when its
        // triggers or rules would see them.
        self.send_staged((folding != Folding::Never).then_some(relation))?;
        let Some(Parts { new, by, old, .. }) = parts(&message) else {
            bail!("not a change of rows");
        };
        let known = &self.known[&relation];
        let target = &known.target;
        let (set, guard) = match new {
            Some(values) if kind != b'I' => update_columns(target, values, old),
            Some(values) => {
                let set: Vec<bool> = values
                    .iter()
                    .map(|v| !matches!(v, Value::Unchanged))
                    .collect();
                let guard = vec![false; set.len()];
                (set, guard)
            }
            None => (Vec::new(), Vec::new()),
        };
        let matched = by.map_or_else(Vec::new, |values| {
            match_columns(&target.relation, values, full)
        });
        let mut params = new.map_or(Ok(Vec::new()), |values| present(values, &set))?;
        if let Some(values) = by {
            params.extend(present(values, &matched)?);
        }
        if let Some(values) = new {
            params.extend(present(values, &guard)?);
        }
        let shape = Shape {
            relation,
            generation: known.generation,
            kind,
            set,
            matched,
            guard,
            rows: 1,
        };
        // An identity column GENERATED ALWAYS that the source changed takes the source's
        // value with the column BY DEFAULT for this one statement, in this transaction.
        let table = target.name.quoted();
        let overridden: Vec<String> = shape
            .overridden(target)
            .iter()
            .map(|column| quote_ident(column))
            .collect();
        // Its lock waits for the table's loads, and they for it: while the copy goes on,
        // once the table is whole.
        if !overridden.is_empty() && self.chunks.decides(&target.name, self.final_lsn) {
            let name = target.name.clone();
            self.chunks.wait(&name)?;
        }
        for column in &overridden {
            let sql = format!("ALTER TABLE {table} ALTER COLUMN {column} SET GENERATED BY DEFAULT");
            self.queue_once(&sql, None, format!("`{sql}`"))?;
        }
        self.queue(shape, &params)?;
        self.queued.push(Expect {
            rows: Some(1),
            what: What::Change(message),
        });
        for column in &overridden {
            let sql = format!("ALTER TABLE {table} ALTER COLUMN {column} SET GENERATED ALWAYS");
            self.queue_once(&sql, None, format!("`{sql}`"))?;
        }
        self.group.changes += 1;
        self.group.rows += 1;
        if self.queued.len() >= SYNC_EVERY {
            self.sync()?;
        }
        Ok(())
    }

    pub(super) fn begin(&mut self) -> Result<()> {
        self.quieted.clear();
        self.queue_once("BEGIN", None, "BEGIN".into())?;
        self.group = Group {
            open: true,
            started: Some(Instant::now()),
            ..Group::default()
        };
        Ok(())
    }

    /// Switches the triggers back on, records the group's end as the ledger's progress and
    /// commits; only then is it reported to the source as flushed.
    pub(super) fn commit_group(&mut self) -> Result<()> {
        if !self.group.open {
            return Ok(());
        }
        self.send_staged(None)?;
        let on_again: Vec<String> = std::mem::take(&mut self.quieted)
            .iter()
            .flat_map(|table| {
                self.setup.quiet[table]
                    .iter()
                    .map(move |t| t.enable_sql(table))
            })
            .collect();
        for sql in on_again {
            self.queue_once(&sql, None, format!("`{sql}`"))?;
        }
        let lsn = LsnText(self.group.end).to_string();
        let time = self.group.commit_time.to_string();
        let sql = self.setup.ledger.record_sql();
        let what = "recording the progress".to_string();
        match self.setup.ledger {
            Ledger::Origin => self.queue_once(
                &sql,
                Some(&[Some(lsn.as_bytes()), Some(time.as_bytes())]),
                what,
            )?,
            Ledger::Table => {
                let slot = self.slot.clone();
                let params = [
                    Some(lsn.as_bytes()),
                    Some(time.as_bytes()),
                    Some(slot.as_bytes()),
                ];
                self.queue_once(&sql, Some(&params), what)?;
                if let Some(expect) = self.queued.last_mut() {
                    expect.rows = Some(1);
                }
            }
        }
        self.sync()?;
        self.queue_once("COMMIT", None, "COMMIT".into())?;
        self.sync()?;
        if self.session.in_transaction() {
            bail!("the destination did not commit the applied transactions");
        }
        self.applied.transactions += self.group.transactions;
        self.applied.rows += self.group.rows;
        self.applied.last_commit_time = self.group.commit_time;
        self.shared.applied.store(self.group.end, Ordering::SeqCst);
        self.group = Group::default();
        Ok(())
    }
}
