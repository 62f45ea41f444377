//! Streamed transactions (protocol 2): which messages are about their blocks, commits and
//! aborts, and the changes inside a block, each carrying the ID of its (sub)transaction,
//! decoded with it.

use super::message::Message;
use super::parse::parse;
use anyhow::{Context, Result};

/// Whether a message is about a streamed transaction: its blocks' start and stop, its
/// commit or abort.
pub(crate) fn streams(bytes: &[u8]) -> bool {
    matches!(bytes.first(), Some(b'S' | b'E' | b'c' | b'A'))
}

/// Whether a message inside a streamed block is a change (or a description), which carries
/// the ID of its (sub)transaction after its tag; those are what a streamed transaction
/// holds until its commit.
pub(crate) fn streamed_change(bytes: &[u8]) -> bool {
    matches!(
        bytes.first(),
        Some(b'R' | b'Y' | b'I' | b'U' | b'D' | b'T' | b'M')
    )
}

/// Decodes a change sent inside a streamed block (see `streamed_change`): the ID of the
/// (sub)transaction it belongs to, and the change.
pub(crate) fn parse_streamed(bytes: &[u8]) -> Result<(u32, Message)> {
    let xid = bytes
        .get(1..5)
        .context("a streamed change ends before its transaction ID")?;
    let xid = u32::from_be_bytes([xid[0], xid[1], xid[2], xid[3]]);
    let mut without = Vec::with_capacity(bytes.len() - 4);
    without.push(bytes[0]);
    without.extend_from_slice(&bytes[5..]);
    Ok((xid, parse(&without)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::decode::Value;

    // Captured from PostgreSQL 15.18 with logical_decoding_work_mem = 64kB and
    //   pg_logical_slot_peek_binary_changes('cap', NULL, NULL, 'proto_version', '2',
    //     'publication_names', 'p', 'streaming', 'on')
    // after CREATE TABLE s (id int PRIMARY KEY, v text); CREATE PUBLICATION p FOR TABLE s;
    // and, each its own transaction (727, then 729):
    //   INSERT INTO s SELECT i, repeat('x', 200) FROM generate_series(1, 1000) i;
    //   BEGIN; INSERT INTO s SELECT i, repeat('y', 200) FROM generate_series(10001, 11000) i;
    //     ROLLBACK;
    const STREAM_START: &str = "53000002d701";
    const STREAM_RELATION: &str =
        "52000002d7000040097075626c69630073006400020169640000000017ffffffff00760000000019ffffffff";
    const STREAM_INSERT: &str = "49000002d7000040094e000274000000013174000000c87878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878";
    const STREAM_STOP: &str = "45";
    const STREAM_COMMIT: &str = "63000002d700000000000158d570000000000158d5a0000304ff1f66bc9d";
    const STREAM_ABORT: &str = "41000002d9000002d9";

    fn hex(s: &str) -> Vec<u8> {
        let byte = |i| u8::from_str_radix(&s[i..i + 2], 16).unwrap();
        (0..s.len()).step_by(2).map(byte).collect()
    }

    fn decode(s: &str) -> Message {
        parse(&hex(s)).unwrap()
    }

    fn t(s: &str) -> Value {
        Value::Text(s.as_bytes().to_vec())
    }

    #[test]
    fn streamed_transactions_and_their_changes() {
        assert!(streams(&hex(STREAM_START)) && streams(&hex(STREAM_STOP)));
        assert_eq!(
            decode(STREAM_START),
            Message::StreamStart {
                xid: 727,
                first: true
            }
        );
        assert_eq!(decode(STREAM_STOP), Message::StreamStop);
        let relation = hex(STREAM_RELATION);
        assert!(streamed_change(&relation) && !streams(&relation));
        let (xid, message) = parse_streamed(&relation).unwrap();
        let Message::Relation(r) = message else {
            panic!("not a Relation: {message:?}")
        };
        assert_eq!((xid, r.oid, r.name.as_str()), (727, 16393, "s"));
        let (xid, message) = parse_streamed(&hex(STREAM_INSERT)).unwrap();
        let new = vec![t("1"), t(&"x".repeat(200))];
        assert_eq!(
            (xid, message),
            (
                727,
                Message::Insert {
                    relation: 16393,
                    new
                }
            )
        );
        assert_eq!(
            decode(STREAM_COMMIT),
            Message::StreamCommit {
                xid: 727,
                commit_lsn: 0x158d570,
                end_lsn: 0x158d5a0,
                commit_time: 0x304ff1f66bc9d,
            }
        );
        assert_eq!(
            decode(STREAM_ABORT),
            Message::StreamAbort {
                xid: 729,
                subxid: 729
            }
        );
        // A streamed change read as an unstreamed one is not one.
        assert!(parse(&hex(STREAM_INSERT)).is_err());
    }
}
