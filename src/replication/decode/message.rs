//! The pgoutput messages as decoded, and what they carry: WAL positions (`Lsn`), a table's
//! description, a row's values, and the old key or row an update or delete finds its row by.

/// A position in the source's WAL.
pub(crate) type Lsn = u64;

/// One pgoutput message. Timestamps are microseconds since 2000-01-01 00:00 UTC.
#[derive(Debug, Clone, PartialEq, Eq)]
// `Message::Message` is the protocol's own name for what `pg_logical_emit_message` sends.
#[allow(clippy::enum_variant_names)]
pub(crate) enum Message {
    /// The start of a transaction whose commit record is at `final_lsn`.
    Begin {
        final_lsn: Lsn,
        commit_time: i64,
        xid: u32,
    },
    /// The end of the transaction; `flags` is unused (0) in protocol 1.
    Commit {
        flags: u8,
        commit_lsn: Lsn,
        end_lsn: Lsn,
        commit_time: i64,
    },
    /// The transaction came from replication origin `name`, where it committed at `commit_lsn`.
    Origin {
        commit_lsn: Lsn,
        name: String,
    },
    /// The shape of a table, sent before its first change in a session and again after DDL.
    Relation(Relation),
    /// A type that is not built in, sent before the first Relation with a column of it.
    Type {
        oid: u32,
        namespace: String,
        name: String,
    },
    /// A row inserted into the table with oid `relation`.
    Insert {
        relation: u32,
        new: Vec<Value>,
    },
    /// `old` is the replica identity key ('K') or the whole old row ('O'), when the server sent one.
    Update {
        relation: u32,
        old: Option<Old>,
        new: Vec<Value>,
    },
    /// A row deleted, identified by its key or, for `REPLICA IDENTITY FULL`, its whole row.
    Delete {
        relation: u32,
        old: Old,
    },
    /// `TRUNCATE` of the published tables among `relations`, with its options.
    Truncate {
        relations: Vec<u32>,
        cascade: bool,
        restart_identity: bool,
    },
    /// `pg_logical_emit_message`.
    Message {
        transactional: bool,
        lsn: Lsn,
        prefix: String,
        content: Vec<u8>,
    },
    /// The start of a block of a streamed transaction's changes (protocol 2): each change
    /// until `StreamStop` is of it, or of one of its subtransactions.
    StreamStart {
        xid: u32,
        first: bool,
    },
    StreamStop,
    /// A streamed transaction committed: its changes, streamed before, are applied now.
    StreamCommit {
        xid: u32,
        commit_lsn: Lsn,
        end_lsn: Lsn,
        commit_time: i64,
    },
    /// A streamed transaction (`subxid == xid`) or one of its subtransactions aborted:
    /// what it streamed is dropped.
    StreamAbort {
        xid: u32,
        subxid: u32,
    },
}

/// A table as pgoutput describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Relation {
    /// The table's oid, which the row messages refer to.
    pub(crate) oid: u32,
    /// The schema, unquoted, as sent: `pg_catalog` is sent as the empty string.
    pub(crate) namespace: String,
    /// The table name, unquoted.
    pub(crate) name: String,
    /// `pg_class.relreplident`: b'd' default, b'n' nothing, b'f' full, b'i' index.
    pub(crate) replica_identity: u8,
    /// The columns in order, without generated columns.
    pub(crate) columns: Vec<Column>,
}

/// One column of a [`Relation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Column {
    /// Whether the column is part of the replica identity (every column, for FULL).
    pub(crate) key: bool,
    /// The column name, unquoted.
    pub(crate) name: String,
    /// The oid of the column's type.
    pub(crate) type_oid: u32,
    /// The type modifier (`atttypmod`), -1 when there is none.
    pub(crate) type_mod: i32,
}

/// The old row an Update or Delete identifies its row by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Old {
    /// The replica identity key; every column is sent, those outside the key as [`Value::Null`].
    Key(Vec<Value>),
    /// The whole old row, for `REPLICA IDENTITY FULL`.
    Row(Vec<Value>),
}

/// One column's value in a row.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Value {
    /// SQL NULL.
    Null,
    /// An unchanged TOASTed value the server did not send ('u').
    Unchanged,
    /// The value in the type's text output format.
    Text(Vec<u8>),
    /// The value in the type's binary send format (only with the `binary` option).
    Binary(Vec<u8>),
}
