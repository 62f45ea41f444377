//! The applier: the destination session that turns decoded changes into statements and
//! commits them, and its record of how far it got. Source transactions are applied in their
//! commit order, several to one destination transaction when they come faster than one
//! commit each (never a part of one: a group commits whole or not at all). The end of the
//! group's last source transaction is recorded in the same commit (`progress`), so what the
//! destination holds and where a resumed follower starts can never disagree: nothing lost,
//! nothing applied twice.
//!
//! Statements are prepared once per table and shape (`statements`), sent pipelined
//! (`wire::pipeline`) and synced every few hundred, each checked for the one row it must
//! touch; a run of inserts into a table that nothing on the destination watches goes as one
//! `COPY`, checked for its row count. The destination's
//! triggers and foreign keys stay quiet, as during the copy: the session runs with
//! `session_replication_role = replica` where the role may set it, as PostgreSQL's own apply
//! worker does; else the keys stay dropped until cutover and each group switches off the
//! triggers of the tables it changes, on again before it commits.

use crate::pg::sql::{quote_ident, TableName};
use crate::pg::wire;
use crate::replication::decode::{Column, Lsn, Message, Old, Relation, Value};
use crate::replication::net;
use crate::replication::progress::Ledger;
use crate::replication::receive::Shared;
use crate::replication::slot::{parse_lsn, LsnText};
use crate::replication::statements::{
    copy_rows, copy_sql, key_text, match_columns, parts, present, statement_sql, update_columns,
    DestColumn, Parts, Shape, Target,
};
use crate::schema::triggers::Trigger;
use anyhow::{anyhow, bail, Context, Result};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use postgres::fallible_iterator::FallibleIterator;
use postgres::Client;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Statements queued before their answers are read.
const SYNC_EVERY: usize = 500;

/// Rows whose net changes are held before they are sent, so that memory stays bounded
/// whatever the size of a source transaction.
const STAGED_ROWS: usize = 5_000;

/// Rows one multi-row `INSERT` takes at most (and fewer for wide tables: a statement takes
/// at most 65,535 parameters).
const INSERT_ROWS: usize = 100;

/// A run of at least this many inserts into one table goes as one `COPY`, where folding
/// may send them together: fewer go as multi-row inserts, whose statements are prepared.
const COPY_ROWS: usize = 16;

/// While transactions keep coming, a group commits at most this often.
const COMMIT_SPACING: Duration = Duration::from_millis(20);

/// A group of source transactions commits once it holds this many changes, or is this old,
/// or no more transactions are waiting.
const GROUP_CHANGES: usize = 10_000;
const GROUP_AGE: Duration = Duration::from_millis(500);

/// How often the follower looks for tables its filters select that it does not follow yet.
const WATCH_EVERY: Duration = Duration::from_secs(5);

/// The prefix of the messages `cutover` writes into the source's WAL.
pub(crate) const MARK_PREFIX: &str = "pgcopy";

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

/// How much was applied, for the progress lines and the report.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Applied {
    pub(crate) transactions: u64,
    pub(crate) rows: u64,
    /// The source commit time of the last transaction applied, microseconds since 2000.
    pub(crate) last_commit_time: i64,
}

/// A table following takes up while it runs (a partition or a table made since the copy):
/// published, its rows copied, and the triggers to keep quiet in it.
pub(crate) struct Joined {
    pub(crate) table: TableName,
    pub(crate) quiet: Vec<Trigger>,
}

/// How the applier keeps the destination quiet and where it records its progress.
pub(crate) struct Setup {
    pub(crate) ledger: Ledger,
    /// The session runs with `session_replication_role = replica`.
    pub(crate) replica: bool,
    /// The triggers that would fire in the session, by table: switched off inside each
    /// group that changes the table, on again before it commits.
    pub(crate) quiet: HashMap<TableName, Vec<Trigger>>,
}

/// Sets up a destination session to apply with: the replica role where `setup` has it, the
/// text formats the source's values come in, and the ledger's session (an origin `name`
/// must exist).
///
/// Every row is found by its key, one at a time, so an index scan is always the plan to
/// have; but a small table whose statistics say one page (pgbench's branches, a lookup
/// table) gets a sequential scan planned, and its heap grows with every update the
/// follower applies to it, so each update reads more of it. PostgreSQL's own apply worker
/// always looks rows up in the replica identity's index; without a sequential scan, so do
/// these statements.
pub(crate) fn prepare_session(
    session: &mut wire::Connection,
    name: &str,
    setup: &Setup,
) -> Result<()> {
    let role = if setup.replica {
        "SET session_replication_role = replica;"
    } else {
        ""
    };
    session
        .execute(&format!(
            "{role}
             SET datestyle = 'ISO';
             SET intervalstyle = 'postgres';
             SET extra_float_digits = 3;
             SET enable_seqscan = off;
             SET enable_bitmapscan = off;
             {}",
            setup.ledger.session_setup(name)
        ))
        .context("setting up the session that applies the source's changes")
}

/// A table the stream named, and what statements for it look like.
struct Known {
    target: Target,
    /// Changes to it are not applied: it is not among the followed tables.
    ignored: bool,
    /// Bumped when the source sends the table's description again: its statements change.
    generation: u32,
    /// How its changes in a group are folded.
    folding: Folding,
}

/// How a table's changes in a group may be folded (see `net`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Folding {
    /// Not at all: a trigger or a rule of the table sees what else the group changed, so
    /// what is staged goes first.
    Never,
    /// Its inserts go together, many rows to a statement; its other changes one by one,
    /// after those.
    Inserts,
    /// Each row's changes fold into one: the key is its only unique index.
    Rows,
}

/// What a queued statement must do, to check its answer and to say what failed.
struct Expect {
    /// The number of rows it must touch, if it must.
    rows: Option<u64>,
    what: What,
}

/// A queued statement: one run once (`BEGIN`, a `TRUNCATE`), said as it is, or a change of
/// rows, said from its message only if it failed.
enum What {
    Statement(String),
    Change(Message),
    /// The net change of one row: its table, `U` or `D`, and its key's values.
    Row(u32, u8, Vec<Value>),
}

/// The open destination transaction.
#[derive(Default)]
struct Group {
    open: bool,
    /// Its last source transaction is whole: it may commit.
    whole: bool,
    changes: usize,
    started: Option<Instant>,
    /// The end and commit time of its last complete source transaction.
    end: Lsn,
    commit_time: i64,
    transactions: u64,
    rows: u64,
}

pub(crate) struct Applier<'a> {
    session: wire::Connection,
    /// For questions about the destination's tables, outside the applied transactions.
    catalog: Client,
    followed: HashSet<TableName>,
    slot: String,
    shared: &'a Shared,
    known: HashMap<u32, Known>,
    statements: HashMap<Shape, String>,
    queued: Vec<Expect>,
    group: Group,
    /// Transactions that end before this were applied before: skipped if sent again.
    applied_before: Lsn,
    skipping: bool,
    /// The transaction being applied holds this follower's cutover mark.
    cutover: bool,
    /// Where `cutover` said its mark is, when it said so by notification.
    notified_end: Option<Lsn>,
    setup: Setup,
    /// The tables whose triggers the open group switched off.
    quieted: Vec<TableName>,
    /// The net changes held back, by table, and how many rows they are.
    staged: HashMap<u32, net::Rows>,
    staged_rows: usize,
    /// Numbers the staged inserts of tables whose rows are not folded by key.
    inserts: u64,
    pub(crate) applied: Applied,
}

impl<'a> Applier<'a> {
    /// An applier on `session` (set up by `prepare_session` with `setup`) for the
    /// `followed` tables, whose destination already holds every source transaction that
    /// ends before `applied_before`.
    pub(crate) fn new(
        session: wire::Connection,
        catalog: Client,
        followed: HashSet<TableName>,
        slot: String,
        shared: &'a Shared,
        applied_before: Lsn,
        setup: Setup,
    ) -> Applier<'a> {
        shared.applied.store(applied_before, Ordering::SeqCst);
        Applier {
            session,
            catalog,
            followed,
            slot,
            shared,
            known: HashMap::new(),
            statements: HashMap::new(),
            queued: Vec::new(),
            group: Group::default(),
            applied_before,
            skipping: false,
            cutover: false,
            notified_end: None,
            setup,
            quieted: Vec::new(),
            staged: HashMap::new(),
            staged_rows: 0,
            inserts: 0,
            applied: Applied::default(),
        }
    }

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

    /// Follows the tables `joined` from now on: each is published, and its rows up to the
    /// first change the stream will carry are on the destination.
    fn join(&mut self, joined: Vec<Joined>) -> Result<()> {
        for Joined { table, quiet } in joined {
            if !quiet.is_empty() {
                self.setup.quiet.insert(table.clone(), quiet);
            }
            self.followed.insert(table.clone());
            // Described while it was not followed (it never is before it is published):
            // described again, as followed.
            let described: Vec<Relation> = self
                .known
                .values()
                .filter(|k| k.ignored && k.target.name == table)
                .map(|k| k.target.relation.clone())
                .collect();
            for relation in described {
                self.describe(relation)?;
            }
        }
        Ok(())
    }

    /// The other way `cutover` ends following, for sources whose pgoutput does not carry
    /// its mark (before 14): it notifies the destination of where the mark is in the WAL,
    /// and once the follower may confirm that position — every transaction that ends
    /// before it committed here, and the server said it has sent everything before it —
    /// the follower is done. `cutover` runs when the application has stopped writing, so
    /// nothing the application committed comes after the mark.
    fn reached_notified_end(&mut self) -> Result<Option<Lsn>> {
        let mut notifications = self.catalog.notifications();
        // `iter` only hands out what the driver already read; waiting reads the socket.
        let mut pending = notifications.timeout_iter(Duration::from_millis(1));
        while let Some(notification) = pending.next()? {
            if notification.channel() == self.slot {
                let at = parse_lsn(notification.payload())?;
                self.notified_end = Some(self.notified_end.map_or(at, |e| e.max(at)));
            }
        }
        let confirmed = self.shared.confirmed.load(Ordering::SeqCst);
        Ok(self
            .notified_end
            .filter(|end| !self.group.open && confirmed >= *end))
    }

    fn apply(&mut self, message: Message) -> Result<()> {
        match message {
            Message::Begin { final_lsn, .. } => {
                // A transaction whose commit lies before where the destination already is
                // was applied by an earlier run.
                self.skipping = final_lsn < self.applied_before;
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
                    if let Some(known) = self.followed_table(relation)? {
                        names.push(known.target.name.quoted());
                        self.quiet_triggers(relation)?;
                    }
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
        let Some(Parts { relation, kind, .. }) = parts(&message) else {
            bail!("not a change of rows");
        };
        let full = kind.is_ascii_lowercase();
        if self.followed_table(relation)?.is_none() {
            return Ok(());
        }
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

    /// The key of the row a change is to, when the change folds into what is staged: an
    /// insert, an update that keeps the key, a delete by key; only an insert where rows are
    /// not folded by key, under a number of its own.
    fn net_key(
        &mut self,
        relation: u32,
        folding: Folding,
        kind: u8,
        message: &Message,
    ) -> Option<Vec<Value>> {
        if folding == Folding::Inserts {
            if kind != b'I' {
                return None;
            }
            self.inserts += 1;
            return Some(vec![Value::Binary(self.inserts.to_le_bytes().to_vec())]);
        }
        let values = match message {
            Message::Insert { new, .. } | Message::Update { new, old: None, .. } => new,
            Message::Delete {
                old: Old::Key(old), ..
            } => old,
            _ => return None,
        };
        let columns = &self.known[&relation].target.relation.columns;
        let key: Vec<Value> = columns
            .iter()
            .zip(values)
            .filter(|(c, _)| c.key)
            .map(|(_, v)| v.clone())
            .collect();
        if key.is_empty()
            || key
                .iter()
                .any(|v| matches!(v, Value::Unchanged | Value::Null))
        {
            return None;
        }
        let accepts = self
            .staged
            .get(&relation)
            .is_none_or(|rows| rows.accepts(&key, kind));
        accepts.then_some(key)
    }

    /// Sends the staged net changes, of one table or of all: per table the deletes, the
    /// updates, then the inserts, many rows to a statement.
    fn send_staged(&mut self, only: Option<u32>) -> Result<()> {
        if self.staged_rows == 0 {
            return Ok(());
        }
        let mut staged = std::mem::take(&mut self.staged);
        for (relation, rows) in &mut staged {
            if rows.is_empty() || only.is_some_and(|only| only != *relation) {
                continue;
            }
            let drained = rows.drain();
            let relation = *relation;
            let (generation, keys, width) = {
                let columns = &self.known[&relation].target.relation.columns;
                let keys: Vec<bool> = columns.iter().map(|c| c.key).collect();
                (self.known[&relation].generation, keys, columns.len())
            };
            let all_key = vec![true; keys.iter().filter(|k| **k).count()];
            for key in drained.deletes {
                let shape = Shape {
                    relation,
                    generation,
                    kind: b'D',
                    set: Vec::new(),
                    matched: keys.clone(),
                    guard: Vec::new(),
                    rows: 1,
                };
                self.queue(shape, &present(&key, &all_key)?)?;
                self.expect(1, What::Row(relation, b'D', key))?;
            }
            for (key, values) in drained.updates {
                // The key kept its value: a folded update never changes it.
                let (set, guard) = update_columns(&self.known[&relation].target, &values, None);
                let mut params = present(&values, &set)?;
                params.extend(present(&key, &all_key)?);
                params.extend(present(&values, &guard)?);
                let shape = Shape {
                    relation,
                    generation,
                    kind: b'U',
                    set,
                    matched: keys.clone(),
                    guard,
                    rows: 1,
                };
                self.queue(shape, &params)?;
                self.expect(1, What::Row(relation, b'U', key))?;
            }
            if drained.inserts.len() >= COPY_ROWS {
                let target = &self.known[&relation].target;
                let (sql, name) = (copy_sql(target), target.name.to_string());
                self.session
                    .queue_copy_in(&sql, &copy_rows(&drained.inserts)?)?;
                let rows = drained.inserts.len();
                let what = format!("one of {rows} rows copied into {name}");
                self.expect(rows as u64, What::Statement(what))?;
                continue;
            }
            let batch = INSERT_ROWS.min(65_535 / width.max(1)).max(1);
            let set = vec![true; width];
            for chunk in drained.inserts.chunks(batch) {
                let mut params = Vec::with_capacity(chunk.len() * width);
                for values in chunk {
                    params.extend(present(values, &set)?);
                }
                let shape = Shape {
                    relation,
                    generation,
                    kind: b'I',
                    set: set.clone(),
                    matched: Vec::new(),
                    guard: Vec::new(),
                    rows: chunk.len(),
                };
                self.queue(shape, &params)?;
                let what = format!(
                    "one of {} rows inserted into {}",
                    chunk.len(),
                    self.known[&relation].target.name
                );
                self.expect(chunk.len() as u64, What::Statement(what))?;
            }
        }
        // The tables' maps are kept, emptied, for the next rows.
        self.staged_rows = staged.values().map(net::Rows::len).sum();
        self.staged = staged;
        Ok(())
    }

    /// Records what the statement just queued must do, and reads the answers when enough
    /// are queued.
    fn expect(&mut self, rows: u64, what: What) -> Result<()> {
        self.queued.push(Expect {
            rows: Some(rows),
            what,
        });
        if self.queued.len() >= SYNC_EVERY {
            self.sync()?;
        }
        Ok(())
    }

    /// What a queued statement was, in words.
    fn say(&self, what: &What) -> String {
        let message = match what {
            What::Statement(text) => return text.clone(),
            What::Row(relation, kind, key) => {
                let Some(known) = self.known.get(relation) else {
                    return "a change".into();
                };
                let verb = if *kind == b'U' {
                    "the update of"
                } else {
                    "the delete from"
                };
                let matched = vec![true; key.len()];
                let relation = &known.target.relation;
                let columns: Vec<Column> =
                    relation.columns.iter().filter(|c| c.key).cloned().collect();
                let keyed = Relation {
                    columns,
                    ..relation.clone()
                };
                let table = &known.target.name;
                return format!("{verb} {table} {}", key_text(&keyed, key, &matched));
            }
            What::Change(message) => message,
        };
        let Some(Parts {
            relation, kind, by, ..
        }) = parts(message)
        else {
            return "a change".into();
        };
        let verb = match kind {
            b'I' => "the insert into",
            b'U' | b'u' => "the update of",
            _ => "the delete from",
        };
        let full = kind.is_ascii_lowercase();
        let Some(known) = self.known.get(&relation) else {
            return "a change".into();
        };
        let (table, relation) = (&known.target.name, &known.target.relation);
        match by {
            None => format!("{verb} {table}"),
            Some(values) => {
                let matched = match_columns(relation, values, full);
                let key = key_text(relation, values, &matched);
                format!("{verb} {table} {key}")
            }
        }
    }

    /// The table a change is for, unless changes to it are not applied. A change to a table
    /// the stream never described is an error in the stream.
    fn followed_table(&self, relation: u32) -> Result<Option<&Known>> {
        let known = self
            .known
            .get(&relation)
            .with_context(|| format!("the stream changed table {relation} before describing it"))?;
        Ok((!known.ignored).then_some(known))
    }

    /// A table's description, sent before its first change and again after the source's
    /// table changed: it must still fit the destination's table, or the follower stops
    /// before it applies the transaction.
    fn describe(&mut self, relation: Relation) -> Result<()> {
        // The changes queued so far are made and said with the description they came with.
        if self.known.contains_key(&relation.oid) {
            self.send_staged(None)?;
            if !self.queued.is_empty() {
                self.sync()?;
            }
        }
        let table = TableName::new(&relation.namespace, &relation.name);
        let ignored = !self.followed.contains(&table);
        let oid = relation.oid;
        let keyed = relation.replica_identity != b'f' && relation.columns.iter().any(|c| c.key);
        let (target, folding) = if ignored {
            let columns = vec![DestColumn::default(); relation.columns.len()];
            let target = Target {
                name: table,
                relation,
                columns,
            };
            (target, Folding::Never)
        } else {
            let folding = self.folding(&table, keyed)?;
            (Target::read(&mut self.catalog, table, relation)?, folding)
        };
        let generation = self.known.get(&oid).map_or(0, |k| k.generation + 1);
        self.known.insert(
            oid,
            Known {
                target,
                ignored,
                generation,
                folding,
            },
        );
        Ok(())
    }

    /// How a destination table's changes may be folded. Where no trigger that fires in this
    /// session and no rule sees them, nothing else does (the keys are quiet): its changes
    /// may go before or after other tables', and its inserts together (the source took
    /// them all, so they do not conflict). Where besides the row's key (`keyed`) is its
    /// only unique index, and no exclusion constraint, rows cannot see each other either:
    /// each row's net change may go in any order.
    fn folding(&mut self, table: &TableName, keyed: bool) -> Result<Folding> {
        let firing: &[&str] = if self.setup.replica {
            &["A", "R"]
        } else if self.setup.quiet.contains_key(table) {
            &[]
        } else {
            &["O", "A"]
        };
        let row = self
            .catalog
            .query_one(
                "SELECT EXISTS (SELECT FROM pg_catalog.pg_rewrite
                                 WHERE ev_class = to_regclass($1))
                     OR EXISTS (SELECT FROM pg_catalog.pg_trigger
                                 WHERE tgrelid = to_regclass($1) AND NOT tgisinternal
                                   AND tgenabled::text = ANY($2)),
                    (SELECT count(*) FROM pg_catalog.pg_index
                      WHERE indrelid = to_regclass($1) AND indisunique) <= 1
                    AND NOT EXISTS (SELECT FROM pg_catalog.pg_constraint
                                     WHERE conrelid = to_regclass($1) AND contype = 'x')",
                &[&table.quoted(), &firing],
            )
            .with_context(|| {
                format!("reading the destination's indexes and triggers of {table}")
            })?;
        let (seen, alone): (bool, bool) = (row.get(0), row.get(1));
        Ok(match (seen, keyed && alone) {
            (true, _) => Folding::Never,
            (false, true) => Folding::Rows,
            (false, false) => Folding::Inserts,
        })
    }

    /// Switches off the triggers of a table the open group changes, the first time it does.
    fn quiet_triggers(&mut self, relation: u32) -> Result<()> {
        let Some(known) = self.known.get(&relation) else {
            return Ok(());
        };
        let table = &known.target.name;
        let Some(triggers) = self.setup.quiet.get(table) else {
            return Ok(());
        };
        if self.quieted.contains(table) {
            return Ok(());
        }
        let table = table.clone();
        let statements: Vec<String> = triggers.iter().map(|t| t.disable_sql(&table)).collect();
        for sql in statements {
            self.queue_once(&sql, None, format!("`{sql}`"))?;
        }
        self.quieted.push(table);
        Ok(())
    }

    fn begin(&mut self) -> Result<()> {
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
    fn commit_group(&mut self) -> Result<()> {
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

    /// Sends one execution of a change's statement, preparing it the first time its shape is
    /// seen.
    fn queue(&mut self, shape: Shape, params: &[Option<&[u8]>]) -> Result<()> {
        let name = match self.statements.get(&shape) {
            Some(name) => name.clone(),
            None => {
                let known = &self.known[&shape.relation];
                let (sql, types) = statement_sql(&known.target, &shape)?;
                let name = format!("pgcopy_{}", self.statements.len());
                self.session.queue_prepare_typed(&name, &sql, &types)?;
                self.statements.insert(shape, name.clone());
                name
            }
        };
        self.session.queue_execute(&name, params)
    }

    /// Queues a statement that is run once, not prepared.
    fn queue_once(
        &mut self,
        sql: &str,
        params: Option<&[Option<&[u8]>]>,
        what: String,
    ) -> Result<()> {
        self.session.queue_prepare("", sql)?;
        self.session.queue_execute("", params.unwrap_or(&[]))?;
        self.queued.push(Expect {
            rows: None,
            what: What::Statement(what),
        });
        Ok(())
    }

    /// Reads the answers to what was queued: the first statement that failed, or touched no
    /// row where it had to touch one, stops the follower, nothing of its group committed.
    fn sync(&mut self) -> Result<()> {
        let synced = self.session.sync()?;
        let queued = std::mem::take(&mut self.queued);
        if let Some((index, error)) = synced.failed {
            let what = queued
                .get(index)
                .map_or_else(|| "a statement".into(), |e| self.say(&e.what));
            return Err(anyhow!(error).context(format!("applying {what} on the destination")));
        }
        for (expect, rows) in queued.iter().zip(&synced.rows) {
            if let Some(wanted) = expect.rows {
                if *rows != wanted {
                    bail!(
                        "the destination has no such row for {}: it changed since the copy, \
                         not through pgcopy; nothing of that source transaction was applied",
                        self.say(&expect.what)
                    );
                }
            }
        }
        Ok(())
    }
}

/// Whether a cutover mark's content is for the follower of `slot`: other followers of the
/// same source see it too.
fn is_mark_for(content: &[u8], slot: &str) -> bool {
    serde_json::from_slice::<serde_json::Value>(content)
        .ok()
        .and_then(|mark| mark.get("cutover")?.as_str().map(|s| s == slot))
        .unwrap_or(false)
}

/// The content of the cutover mark for the follower of `slot`.
pub(crate) fn mark(slot: &str) -> String {
    serde_json::json!({ "cutover": slot }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_its_own_cutover_mark() {
        let content = mark("pgcopy_follow_1");
        assert!(is_mark_for(content.as_bytes(), "pgcopy_follow_1"));
        assert!(!is_mark_for(content.as_bytes(), "pgcopy_follow_2"));
        assert!(!is_mark_for(b"not json", "pgcopy_follow_1"));
    }
}
