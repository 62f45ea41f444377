//! The messages of PostgreSQL's `pgoutput` logical replication plugin, protocol versions 1
//! and 2 (2 adds streamed transactions: their blocks, commits and aborts, and the
//! transaction ID carried by each change inside a block), decoded from the bytes of one
//! XLogData (one message each). Pure functions over bytes with no I/O; unit-tested on bytes
//! captured from a real PostgreSQL 15 server.

use anyhow::{bail, Context, Result};

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

/// Decodes one pgoutput message: the whole payload of one XLogData.
pub(crate) fn parse(bytes: &[u8]) -> Result<Message> {
    let Some(&tag) = bytes.first() else {
        bail!("the pgoutput message is empty");
    };
    let mut r = Reader { bytes, pos: 1 };
    let (kind, message) = match tag {
        b'B' => ("Begin", begin(&mut r)),
        b'C' => ("Commit", commit(&mut r)),
        b'O' => ("Origin", origin(&mut r)),
        b'R' => ("Relation", relation(&mut r)),
        b'Y' => ("Type", type_(&mut r)),
        b'I' => ("Insert", insert(&mut r)),
        b'U' => ("Update", update(&mut r)),
        b'D' => ("Delete", delete(&mut r)),
        b'T' => ("Truncate", truncate(&mut r)),
        b'M' => ("logical decoding", logical_message(&mut r)),
        b'S' => ("Stream Start", stream_start(&mut r)),
        b'E' => ("Stream Stop", Ok(Message::StreamStop)),
        b'c' => ("Stream Commit", stream_commit(&mut r)),
        b'A' => ("Stream Abort", stream_abort(&mut r)),
        _ => bail!(
            "unknown pgoutput message tag {:?} (0x{tag:02x})",
            char::from(tag)
        ),
    };
    let message = message.and_then(|m| r.finish().map(|()| m));
    message.with_context(|| format!("malformed pgoutput {kind} message ('{}')", char::from(tag)))
}

fn begin(r: &mut Reader) -> Result<Message> {
    Ok(Message::Begin {
        final_lsn: r.u64()?,
        commit_time: r.i64()?,
        xid: r.u32()?,
    })
}

fn commit(r: &mut Reader) -> Result<Message> {
    Ok(Message::Commit {
        flags: r.u8()?,
        commit_lsn: r.u64()?,
        end_lsn: r.u64()?,
        commit_time: r.i64()?,
    })
}

fn origin(r: &mut Reader) -> Result<Message> {
    let (commit_lsn, name) = (r.u64()?, r.string()?);
    Ok(Message::Origin { commit_lsn, name })
}

fn relation(r: &mut Reader) -> Result<Message> {
    let (oid, namespace, name, replica_identity) = (r.u32()?, r.string()?, r.string()?, r.u8()?);
    let n = r.u16()?;
    let column = |r: &mut Reader| -> Result<Column> {
        let (key, name, type_oid, type_mod) = (r.flag()?, r.string()?, r.u32()?, r.i32()?);
        Ok(Column {
            key,
            name,
            type_oid,
            type_mod,
        })
    };
    let columns = (1..=n)
        .map(|i| column(r).with_context(|| format!("in column {i} of {n}")))
        .collect::<Result<_>>()?;
    Ok(Message::Relation(Relation {
        oid,
        namespace,
        name,
        replica_identity,
        columns,
    }))
}

fn type_(r: &mut Reader) -> Result<Message> {
    Ok(Message::Type {
        oid: r.u32()?,
        namespace: r.string()?,
        name: r.string()?,
    })
}

fn insert(r: &mut Reader) -> Result<Message> {
    let relation = r.u32()?;
    r.tag(b'N', "the new row")?;
    let new = tuple(r).context("in the new row")?;
    Ok(Message::Insert { relation, new })
}

fn update(r: &mut Reader) -> Result<Message> {
    let relation = r.u32()?;
    let old = match r.u8()? {
        b'N' => None,
        kind => {
            let old = old_tuple(r, kind)?;
            r.tag(b'N', "the new row")?;
            Some(old)
        }
    };
    let new = tuple(r).context("in the new row")?;
    Ok(Message::Update { relation, old, new })
}

fn delete(r: &mut Reader) -> Result<Message> {
    let (relation, kind) = (r.u32()?, r.u8()?);
    let old = old_tuple(r, kind)?;
    Ok(Message::Delete { relation, old })
}

fn old_tuple(r: &mut Reader, kind: u8) -> Result<Old> {
    match kind {
        b'K' => Ok(Old::Key(tuple(r).context("in the old key")?)),
        b'O' => Ok(Old::Row(tuple(r).context("in the old row")?)),
        _ => bail!(
            "expected 'K' or 'O' before the old row, found {:?}",
            char::from(kind)
        ),
    }
}

fn truncate(r: &mut Reader) -> Result<Message> {
    let (n, options) = (r.u32()?, r.u8()?);
    // Only these two bits exist; dropping an unknown one would drop what it asks for.
    if options & !3 != 0 {
        bail!("unknown truncate option bits 0x{options:02x}");
    }
    let relations = (1..=n)
        .map(|i| r.u32().with_context(|| format!("in relation {i} of {n}")))
        .collect::<Result<_>>()?;
    Ok(Message::Truncate {
        relations,
        cascade: options & 1 != 0,
        restart_identity: options & 2 != 0,
    })
}

fn logical_message(r: &mut Reader) -> Result<Message> {
    let (transactional, lsn, prefix) = (r.flag()?, r.u64()?, r.string()?);
    Ok(Message::Message {
        transactional,
        lsn,
        prefix,
        content: r.counted().context("in the content")?,
    })
}

fn stream_start(r: &mut Reader) -> Result<Message> {
    Ok(Message::StreamStart {
        xid: r.u32()?,
        first: r.flag()?,
    })
}

fn stream_commit(r: &mut Reader) -> Result<Message> {
    let xid = r.u32()?;
    // Flags, unused (0).
    r.u8()?;
    Ok(Message::StreamCommit {
        xid,
        commit_lsn: r.u64()?,
        end_lsn: r.u64()?,
        commit_time: r.i64()?,
    })
}

fn stream_abort(r: &mut Reader) -> Result<Message> {
    Ok(Message::StreamAbort {
        xid: r.u32()?,
        subxid: r.u32()?,
    })
}

fn tuple(r: &mut Reader) -> Result<Vec<Value>> {
    let n = r.u16()?;
    let value = |r: &mut Reader| -> Result<Value> {
        Ok(match r.u8()? {
            b'n' => Value::Null,
            b'u' => Value::Unchanged,
            b't' => Value::Text(r.counted()?),
            b'b' => Value::Binary(r.counted()?),
            other => bail!("unknown value kind {:?}", char::from(other)),
        })
    };
    (1..=n)
        .map(|i| value(r).with_context(|| format!("in column {i} of {n}")))
        .collect()
}

/// Reads the big-endian fields of one message; `pos` never passes the end of `bytes`.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        let (len, pos) = (self.bytes.len(), self.pos);
        let Some(taken) = self.bytes[pos..].get(..n) else {
            bail!("the pgoutput message ends after {len} bytes, inside a {n}-byte field at byte {pos}");
        };
        self.pos += n;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut array = [0; N];
        array.copy_from_slice(self.bytes(N)?);
        Ok(array)
    }

    fn u8(&mut self) -> Result<u8> {
        self.array().map(u8::from_be_bytes)
    }

    fn u16(&mut self) -> Result<u16> {
        self.array().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Result<u32> {
        self.array().map(u32::from_be_bytes)
    }

    fn i32(&mut self) -> Result<i32> {
        self.array().map(i32::from_be_bytes)
    }

    fn u64(&mut self) -> Result<u64> {
        self.array().map(u64::from_be_bytes)
    }

    fn i64(&mut self) -> Result<i64> {
        self.array().map(i64::from_be_bytes)
    }

    fn tag(&mut self, expected: u8, before: &str) -> Result<()> {
        match self.u8()? {
            found if found == expected => Ok(()),
            found => bail!(
                "expected {:?} before {before}, found {:?}",
                char::from(expected),
                char::from(found)
            ),
        }
    }

    fn flag(&mut self) -> Result<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => bail!("the flags at byte {} are {other}, not 0 or 1", self.pos - 1),
        }
    }

    fn string(&mut self) -> Result<String> {
        let (rest, pos) = (&self.bytes[self.pos..], self.pos);
        let Some(len) = rest.iter().position(|&b| b == 0) else {
            bail!("the pgoutput message ends inside the string at byte {pos}, before its NUL");
        };
        let text = std::str::from_utf8(&rest[..len])
            .with_context(|| format!("the string at byte {pos} is not UTF-8"))?;
        self.pos += len + 1;
        Ok(text.to_owned())
    }

    /// An Int32 length and that many bytes.
    fn counted(&mut self) -> Result<Vec<u8>> {
        let len = self.i32()?;
        let Ok(len) = usize::try_from(len) else {
            bail!("negative length {len} at byte {}", self.pos - 4);
        };
        Ok(self.bytes(len)?.to_vec())
    }

    fn finish(&self) -> Result<()> {
        match self.bytes.len() - self.pos {
            0 => Ok(()),
            extra => bail!("{extra} byte(s) left over after the message's last field"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from PostgreSQL 15.18 (wal_level=logical) with
    //   SELECT lsn, encode(data, 'hex') FROM pg_logical_slot_peek_binary_changes('cap', NULL, NULL,
    //     'proto_version', '1', 'publication_names', 'cap_pub', 'messages', 'true')
    // (for INSERT_BINARY also 'binary', 'true'), after this setup:
    //   CREATE TABLE items (id int PRIMARY KEY, label text, amount numeric(30,10), blob bytea,
    //     big text); ALTER TABLE items ALTER COLUMN big SET STORAGE EXTERNAL;
    //   CREATE TABLE full_t (id int, note text); ALTER TABLE full_t REPLICA IDENTITY FULL;
    //   CREATE SCHEMA "Odd.Schema"; CREATE TYPE "Odd.Schema".mood AS ENUM ('ok', 'meh');
    //   CREATE TABLE "Odd.Schema"."we""ird" (id int PRIMARY KEY, m "Odd.Schema".mood);
    //   CREATE TABLE parent (id serial PRIMARY KEY);
    //   CREATE TABLE child (id serial PRIMARY KEY, parent_id int REFERENCES parent);
    //   CREATE PUBLICATION cap_pub FOR TABLE items, full_t, "Odd.Schema"."we""ird", parent, child;
    //   INSERT INTO items VALUES (1, 'first', 1.5, '\x01',
    //     (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 320) i));
    //   INSERT INTO full_t VALUES (1, 'old note');
    //   INSERT INTO parent DEFAULT VALUES; INSERT INTO child (parent_id) VALUES (1);
    //   SELECT pg_create_logical_replication_slot('cap', 'pgoutput');
    // and then these statements, each its own transaction unless shown:
    //   INSERT INTO items VALUES (2, NULL, 12345678901234567890.0123456789, '\xdeadbeef', NULL);
    //   UPDATE items SET id = 3 WHERE id = 2;
    //   UPDATE items SET label = 'changed' WHERE id = 1;
    //   UPDATE full_t SET note = 'new note' WHERE id = 1;
    //   INSERT INTO "Odd.Schema"."we""ird" VALUES (7, 'meh');
    //   DELETE FROM items WHERE id = 3;
    //   TRUNCATE parent, child RESTART IDENTITY CASCADE;
    //   BEGIN; SELECT pg_logical_emit_message(true, 'pgcopy', 'in a transaction');
    //     INSERT INTO full_t VALUES (2, 'x'); COMMIT;
    //   SELECT pg_logical_emit_message(false, 'pgcopy', '\x00ff'::bytea);
    //   SELECT pg_replication_origin_create('upstream');
    //   SELECT pg_replication_origin_session_setup('upstream');
    //   BEGIN; SELECT pg_replication_origin_xact_setup('0/ABCDEF', '2024-01-02 03:04:05+00');
    //     DELETE FROM full_t WHERE id = 2; COMMIT;
    const BEGIN: &str = "42000000000193aca0000304b5ec72f12c000002e3";
    const RELATION_ITEMS: &str = "52000040017075626c6963006974656d73006400050169640000000017ffffffff006c6162656c0000000019ffffffff00616d6f756e7400000006a4001e000e00626c6f620000000011ffffffff006269670000000019ffffffff";
    const INSERT_NULLS: &str = "49000040014e00057400000001326e740000001f31323334353637383930313233343536373839302e30313233343536373839740000000a5c7864656164626565666e";
    const INSERT_BINARY: &str = "49000040014e00056200000004000000026e6200000018000800040000000a04d2162e23340d801ed2007b11d722c46200000004deadbeef6e";
    const COMMIT: &str = "4300000000000193aca0000000000193acd0000304b5ec72f12c";
    const UPDATE_KEY: &str = "55000040014b00057400000001326e6e6e6e4e00057400000001336e740000001f31323334353637383930313233343536373839302e30313233343536373839740000000a5c7864656164626565666e";
    const UPDATE_UNCHANGED: &str = "55000040014e000574000000013174000000076368616e676564740000000c312e3530303030303030303074000000045c78303175";
    const RELATION_FULL: &str = "52000040087075626c69630066756c6c5f74006600020169640000000017ffffffff016e6f74650000000019ffffffff";
    const UPDATE_FULL: &str = "55000040084f000274000000013174000000086f6c64206e6f74654e000274000000013174000000086e6577206e6f7465";
    const TYPE_MOOD: &str = "590000400f4f64642e536368656d61006d6f6f6400";
    const RELATION_ODD: &str = "52000040134f64642e536368656d6100776522697264006400020169640000000017ffffffff006d000000400fffffffff";
    const DELETE_KEY: &str = "44000040014b00057400000001336e6e6e6e";
    const RELATION_PARENT: &str =
        "52000040197075626c696300706172656e74006400010169640000000017ffffffff";
    const RELATION_CHILD: &str = "52000040207075626c6963006368696c64006400020169640000000017ffffffff00706172656e745f69640000000017ffffffff";
    const TRUNCATE: &str = "5400000002030000401900004020";
    const MESSAGE_TX: &str =
        "4d01000000000193c3c87067636f70790000000010696e2061207472616e73616374696f6e";
    const MESSAGE_NON_TX: &str = "4d00000000000193c4787067636f7079000000000200ff";
    const BEGIN_ORIGIN: &str = "42000000000193c7280002b0ec8515f340000002ec";
    const ORIGIN: &str = "4f0000000000abcdef757073747265616d00";
    const DELETE_FULL: &str = "44000040084f0002740000000132740000000178";
    const COMMIT_ORIGIN: &str = "4300000000000193c728000000000193c7700002b0ec8515f340";

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

    fn error(bytes: &[u8]) -> String {
        format!("{:#}", parse(bytes).unwrap_err())
    }

    fn t(s: &str) -> Value {
        Value::Text(s.as_bytes().to_vec())
    }

    fn relation(s: &str) -> Relation {
        match decode(s) {
            Message::Relation(r) => r,
            other => panic!("not a Relation: {other:?}"),
        }
    }

    /// The columns as (key, name, type oid, type modifier).
    fn columns(r: &Relation) -> Vec<(bool, &str, u32, i32)> {
        let c = &r.columns;
        c.iter()
            .map(|c| (c.key, &c.name[..], c.type_oid, c.type_mod))
            .collect()
    }

    #[test]
    fn begin_and_commit_agree() {
        let (final_lsn, commit_time, xid) = (0x193aca0, 0x304b5ec72f12c, 739);
        assert_eq!(
            decode(BEGIN),
            Message::Begin {
                final_lsn,
                commit_time,
                xid
            }
        );
        let (flags, commit_lsn, end_lsn) = (0, final_lsn, 0x193acd0);
        let commit = Message::Commit {
            flags,
            commit_lsn,
            end_lsn,
            commit_time,
        };
        assert_eq!(decode(COMMIT), commit);
    }

    #[test]
    fn relation_with_key_and_typmod() {
        let r = relation(RELATION_ITEMS);
        assert_eq!(
            (r.oid, r.namespace.as_str(), r.name.as_str()),
            (16385, "public", "items")
        );
        assert_eq!(r.replica_identity, b'd');
        // numeric(30,10) is ((precision << 16) | scale) + VARHDRSZ.
        let numeric = ((30 << 16) | 10) + 4;
        let expected = [
            (true, "id", 23, -1),
            (false, "label", 25, -1),
            (false, "amount", 1700, numeric),
            (false, "blob", 17, -1),
            (false, "big", 25, -1),
        ];
        assert_eq!(columns(&r), expected);
    }

    #[test]
    fn inserts_as_text_and_binary() {
        let (relation, n) = (16385, Value::Null);
        let amount = t("12345678901234567890.0123456789");
        let new = vec![t("2"), n.clone(), amount, t("\\xdeadbeef"), n.clone()];
        assert_eq!(decode(INSERT_NULLS), Message::Insert { relation, new });
        let b = Value::Binary;
        let Message::Insert { new, .. } = decode(INSERT_BINARY) else {
            panic!()
        };
        assert_eq!(new[..2], [b(vec![0, 0, 0, 2]), n.clone()]);
        assert!(matches!(&new[2], Value::Binary(numeric) if numeric.len() == 24));
        assert_eq!(new[3..], [b(vec![0xde, 0xad, 0xbe, 0xef]), n]);
    }

    #[test]
    fn key_change_and_delete_send_the_old_key() {
        let key = |id| Old::Key([vec![t(id)], vec![Value::Null; 4]].concat());
        let Message::Update { relation, old, new } = decode(UPDATE_KEY) else {
            panic!()
        };
        assert_eq!(
            (relation, old, &new[0], new.len()),
            (16385, Some(key("2")), &t("3"), 5)
        );
        let old = key("3");
        assert_eq!(decode(DELETE_KEY), Message::Delete { relation, old });
    }

    #[test]
    fn update_leaves_toasted_value_unchanged() {
        let (relation, old) = (16385, None);
        let new = vec![
            t("1"),
            t("changed"),
            t("1.5000000000"),
            t("\\x01"),
            Value::Unchanged,
        ];
        assert_eq!(
            decode(UPDATE_UNCHANGED),
            Message::Update { relation, old, new }
        );
    }

    #[test]
    fn replica_identity_full_sends_whole_rows() {
        let r = relation(RELATION_FULL);
        assert_eq!(
            (r.oid, r.name.as_str(), r.replica_identity),
            (16392, "full_t", b'f')
        );
        assert_eq!(columns(&r), [(true, "id", 23, -1), (true, "note", 25, -1)]);
        let relation = r.oid;
        let old = Some(Old::Row(vec![t("1"), t("old note")]));
        let new = vec![t("1"), t("new note")];
        assert_eq!(decode(UPDATE_FULL), Message::Update { relation, old, new });
        let old = Old::Row(vec![t("2"), t("x")]);
        assert_eq!(decode(DELETE_FULL), Message::Delete { relation, old });
    }

    #[test]
    fn names_are_sent_unquoted_with_custom_types() {
        let (oid, namespace, name) = (16399, "Odd.Schema".to_owned(), "mood".to_owned());
        assert_eq!(
            decode(TYPE_MOOD),
            Message::Type {
                oid,
                namespace,
                name
            }
        );
        let r = relation(RELATION_ODD);
        let names = (r.namespace.as_str(), r.name.as_str());
        assert_eq!((r.oid, names), (16403, ("Odd.Schema", "we\"ird")));
        assert_eq!(columns(&r), [(true, "id", 23, -1), (false, "m", oid, -1)]);
    }

    #[test]
    fn truncate_with_options() {
        let relations = vec![relation(RELATION_PARENT).oid, relation(RELATION_CHILD).oid];
        assert_eq!(relations, [16409, 16416]);
        let Message::Truncate {
            relations: truncated,
            cascade: true,
            restart_identity: true,
        } = decode(TRUNCATE)
        else {
            panic!("not a cascading, identity-restarting Truncate")
        };
        assert_eq!(truncated, relations);
    }

    #[test]
    fn logical_messages() {
        let message = |transactional, lsn, content: &[u8]| {
            let (prefix, content) = ("pgcopy".to_owned(), content.to_vec());
            Message::Message {
                transactional,
                lsn,
                prefix,
                content,
            }
        };
        assert_eq!(
            decode(MESSAGE_TX),
            message(true, 0x193c3c8, b"in a transaction")
        );
        assert_eq!(
            decode(MESSAGE_NON_TX),
            message(false, 0x193c478, &[0, 0xff])
        );
    }

    #[test]
    fn origin_and_its_timestamp() {
        let (commit_lsn, name) = (0xabcdef, "upstream".to_owned());
        assert_eq!(decode(ORIGIN), Message::Origin { commit_lsn, name });
        // The commit time becomes the one given to pg_replication_origin_xact_setup:
        // 2024-01-02 03:04:05 UTC, 8767 days and 11045 s after 2000-01-01.
        let commit_time = (8767 * 86400 + 11045) * 1_000_000;
        let (final_lsn, xid) = (0x193c728, 748);
        assert_eq!(
            decode(BEGIN_ORIGIN),
            Message::Begin {
                final_lsn,
                commit_time,
                xid
            }
        );
        let (flags, commit_lsn, end_lsn) = (0, final_lsn, 0x193c770);
        let commit = Message::Commit {
            flags,
            commit_lsn,
            end_lsn,
            commit_time,
        };
        assert_eq!(decode(COMMIT_ORIGIN), commit);
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

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = hex(RELATION_ITEMS);
        assert!(error(&[]).contains("empty"));
        for len in 1..bytes.len() {
            let error = error(&bytes[..len]);
            assert!(
                error.contains("malformed pgoutput Relation message"),
                "{len}: {error}"
            );
        }
        assert!(error(&bytes[..40]).contains("in column 2 of 5"));
    }

    #[test]
    fn malformed_messages_are_errors() {
        assert!(error(b"Z\0").contains("unknown pgoutput message tag 'Z'"));
        let trailing = [hex(TRUNCATE), vec![0]].concat();
        assert!(error(&trailing).contains("1 byte(s) left over"));
        assert!(error(&hex("590000400fff006d6f6f6400")).contains("not UTF-8"));
        assert!(error(&hex("49000040014e000178")).contains("unknown value kind 'x'"));
        assert!(error(&hex("49000040014b0000")).contains("expected 'N' before the new row"));
    }
}
