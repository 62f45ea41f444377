//! Statements sent without waiting for each answer: the extended query protocol's `Parse`,
//! `Bind` and `Execute` queued and written together, then one `Sync`, whose answers are read
//! in one go. The follower applies a source transaction's changes this way, one round trip
//! for hundreds of rows instead of one each. Parameters and results are in text format, as
//! the decoded changes are.
//!
//! The server answers every statement (a few dozen bytes) while it reads the next ones; the
//! caller syncs every few hundred statements, so those answers always fit in the socket's
//! buffers and neither side waits on the other.

use super::{Connection, ServerError};
use anyhow::{anyhow, Result};
use bytes::BytesMut;
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;
use postgres_protocol::IsNull;

/// Queued bytes past this are written at once, before the next statement is queued.
const WRITE_AT: usize = 256 * 1024;

/// The rows of a queued `COPY` go in `CopyData` messages of at most this many bytes.
const COPY_CHUNK: usize = 64 * 1024;

/// What the server said about the statements since the last sync.
#[derive(Debug)]
pub(crate) struct Synced {
    /// Rows each statement affected, in the order they were queued, up to the first that
    /// failed.
    pub(crate) rows: Vec<u64>,
    /// The first statement that failed, by its place in the queue, and why; the server
    /// skipped every statement after it.
    pub(crate) failed: Option<(usize, ServerError)>,
}

impl Connection {
    /// Queues the preparation of a named statement whose parameter types the server infers.
    pub(crate) fn queue_prepare(&mut self, name: &str, sql: &str) -> Result<()> {
        self.queue_prepare_typed(name, sql, &[])
    }

    /// Queues the preparation of a named statement with its parameters' types (OIDs; those
    /// not given, the server infers).
    pub(crate) fn queue_prepare_typed(
        &mut self,
        name: &str,
        sql: &str,
        types: &[u32],
    ) -> Result<()> {
        frontend::parse(name, sql, types.iter().copied(), &mut self.outgoing)?;
        self.write_if_full()
    }

    /// Queues one execution of a prepared statement with text parameters (`None` is NULL).
    pub(crate) fn queue_execute(
        &mut self,
        statement: &str,
        params: &[Option<&[u8]>],
    ) -> Result<()> {
        let bound = frontend::bind(
            "",
            statement,
            std::iter::once(0),
            params.iter(),
            |param, buf| match param {
                Some(bytes) => {
                    buf.extend_from_slice(bytes);
                    Ok(IsNull::No)
                }
                None => Ok(IsNull::Yes),
            },
            std::iter::once(0),
            &mut self.outgoing,
        );
        if bound.is_err() {
            return Err(anyhow!(
                "a statement's parameters do not fit in one message"
            ));
        }
        frontend::execute("", 0, &mut self.outgoing)?;
        self.write_if_full()
    }

    /// Queues a `COPY … FROM STDIN` and its rows (`data`, in the COPY format the statement
    /// names) without waiting for the server to ask for them: it reads them in order, after
    /// the statement. Its answer is the rows copied; a failure makes the server skip what
    /// follows up to the next sync, rows included.
    pub(crate) fn queue_copy_in(&mut self, sql: &str, data: &[u8]) -> Result<()> {
        frontend::parse("", sql, std::iter::empty(), &mut self.outgoing)?;
        let bound = frontend::bind(
            "",
            "",
            std::iter::empty::<i16>(),
            std::iter::empty::<Option<&[u8]>>(),
            |_: Option<&[u8]>, _| Ok(IsNull::Yes),
            std::iter::empty::<i16>(),
            &mut self.outgoing,
        );
        if bound.is_err() {
            return Err(anyhow!("a COPY statement could not be bound"));
        }
        frontend::execute("", 0, &mut self.outgoing)?;
        for chunk in data.chunks(COPY_CHUNK) {
            frontend::CopyData::new(chunk)?.write(&mut self.outgoing);
            self.write_if_full()?;
        }
        frontend::copy_done(&mut self.outgoing);
        self.write_if_full()
    }

    /// Sends what is queued and a `Sync`, and reads every answer up to the server's
    /// `ReadyForQuery`.
    pub(crate) fn sync(&mut self) -> Result<Synced> {
        frontend::sync(&mut self.outgoing);
        self.write_queued()?;
        let mut synced = Synced {
            rows: Vec::new(),
            failed: None,
        };
        loop {
            match self.message()? {
                Message::CommandComplete(body) => {
                    // "INSERT 0 5", "UPDATE 3", "BEGIN": the count is the last word, if any.
                    let tag = body.tag()?;
                    let rows = tag
                        .rsplit(' ')
                        .next()
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                    synced.rows.push(rows);
                }
                Message::EmptyQueryResponse => synced.rows.push(0),
                Message::ErrorResponse(body) if synced.failed.is_none() => {
                    synced.failed = Some((synced.rows.len(), ServerError::parse(&body)));
                }
                Message::ReadyForQuery(body) => {
                    self.status = body.status();
                    return Ok(synced);
                }
                // ParseComplete, BindComplete, rows of a SELECT, notices.
                _ => {}
            }
        }
    }

    /// Whether the session is inside a transaction block (after the last sync).
    pub(crate) fn in_transaction(&self) -> bool {
        self.status != b'I'
    }

    fn write_if_full(&mut self) -> Result<()> {
        if self.outgoing.len() >= WRITE_AT {
            self.write_queued()?;
        }
        Ok(())
    }

    fn write_queued(&mut self) -> Result<()> {
        let queued = std::mem::replace(&mut self.outgoing, BytesMut::new());
        let result = self.write_all(&queued);
        self.outgoing = queued;
        self.outgoing.clear();
        result
    }
}
