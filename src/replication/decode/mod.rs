//! The messages of PostgreSQL's `pgoutput` logical replication plugin, protocol versions 1
//! and 2 (2 adds streamed transactions: their blocks, commits and aborts, and the
//! transaction ID carried by each change inside a block), decoded from the bytes of one
//! XLogData (one message each). Pure functions over bytes with no I/O; unit-tested on bytes
//! captured from a real PostgreSQL 15 server.
//!
//! The messages and what they carry (`message`); one message decoded tag by tag (`parse`)
//! from its fields and rows' tuple data (`reader`); and the messages of streamed
//! transactions, whose changes carry their transaction's ID (`stream`).

mod message;
mod parse;
mod reader;
mod stream;

pub(crate) use message::{Column, Lsn, Message, Old, Relation, Value};
pub(crate) use parse::parse;
pub(crate) use stream::{parse_streamed, streamed_change, streams};
