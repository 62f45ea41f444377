//! What the applier holds between messages: the tables the stream described, the
//! statements prepared and queued, the open destination transaction (the group), the net
//! changes staged; and what it has applied so far (`Applied`).

use super::session::Setup;
use super::sql::Shape;
use super::table::Target;
use crate::pg::sql::TableName;
use crate::pg::wire;
use crate::plan::chunks::keys::Key;
use crate::replication::chunks::Chunks;
use crate::replication::decode::{Lsn, Message, Value};
use crate::replication::net;
use crate::replication::receive::Shared;
use postgres::Client;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// How much was applied, for the progress lines and the report.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Applied {
    pub(crate) transactions: u64,
    pub(crate) rows: u64,
    /// The source commit time of the last transaction applied, microseconds since 2000.
    pub(crate) last_commit_time: i64,
}

/// A table the stream named, and what statements for it look like.
pub(super) struct Known {
    pub(super) target: Target,
    /// Changes to it are not applied: it is not among the followed tables.
    pub(super) ignored: bool,
    /// Bumped when the source sends the table's description again: its statements change.
    pub(super) generation: u32,
    /// How its changes in a group are folded.
    pub(super) folding: Folding,
}

/// How a table's changes in a group may be folded (see `net`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Folding {
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
pub(super) struct Expect {
    /// The number of rows it must touch, if it must.
    pub(super) rows: Option<u64>,
    pub(super) what: What,
}

/// A queued statement: one run once (`BEGIN`, a `TRUNCATE`), said as it is, or a change of
/// rows, said from its message only if it failed.
pub(super) enum What {
    Statement(String),
    Change(Message),
    /// The net change of one row: its table, `U` or `D`, and its key's values.
    Row(u32, u8, Vec<Value>),
}

/// The open destination transaction.
#[derive(Default)]
pub(super) struct Group {
    pub(super) open: bool,
    /// Its last source transaction is whole: it may commit.
    pub(super) whole: bool,
    pub(super) changes: usize,
    pub(super) started: Option<Instant>,
    /// The end and commit time of its last complete source transaction.
    pub(super) end: Lsn,
    pub(super) commit_time: i64,
    pub(super) transactions: u64,
    pub(super) rows: u64,
}

pub(crate) struct Applier<'a> {
    pub(super) session: wire::Connection,
    /// For questions about the destination's tables, outside the applied transactions.
    pub(super) catalog: Client,
    pub(super) followed: HashSet<TableName>,
    pub(super) slot: String,
    pub(super) shared: &'a Shared,
    pub(super) known: HashMap<u32, Known>,
    pub(super) statements: HashMap<Shape, String>,
    pub(super) queued: Vec<Expect>,
    pub(super) group: Group,
    /// Transactions that end before this were applied before: skipped if sent again.
    pub(super) applied_before: Lsn,
    /// The chunks the initial copy read, which decide the changes of their tables.
    pub(super) chunks: Chunks,
    /// Rows of copied tables a key update moved in whose row the source no longer had when
    /// asked: their changes are left until one inserts the key again.
    pub(super) absent: HashSet<(TableName, Key)>,
    /// The transaction being applied: its id, and where its commit is.
    pub(super) xid: u32,
    pub(super) final_lsn: Lsn,
    pub(super) skipping: bool,
    /// Changes of the transaction being applied queued so far.
    pub(super) changes_queued: usize,
    /// The transaction being applied holds this follower's cutover mark.
    pub(super) cutover: bool,
    /// Where `cutover` said its mark is, when it said so by notification.
    pub(super) notified_end: Option<Lsn>,
    pub(super) setup: Setup,
    /// The tables whose triggers the open group switched off.
    pub(super) quieted: Vec<TableName>,
    /// The net changes held back, by table, and how many rows they are.
    pub(super) staged: HashMap<u32, net::Rows>,
    pub(super) staged_rows: usize,
    /// Numbers the staged inserts of tables whose rows are not folded by key.
    pub(super) inserts: u64,
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
            chunks: Chunks::default(),
            absent: HashSet::new(),
            xid: 0,
            final_lsn: 0,
            skipping: false,
            changes_queued: 0,
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
}

impl Applier<'_> {
    /// Decides the changes of the tables the initial copy read in chunks by `chunks`.
    pub(crate) fn with_chunks(mut self, chunks: Chunks) -> Self {
        self.chunks = chunks;
        self
    }
}
