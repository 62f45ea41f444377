//! Decoding one pgoutput message, the whole payload of one XLogData, by its tag: each kind
//! of message, from the transactions' bounds to the changes of rows and the blocks,
//! commits and aborts of streamed transactions.

use super::message::{Column, Message, Relation};
use super::reader::{old_tuple, tuple, Reader};
use anyhow::{bail, Context, Result};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::decode::{Old, Value};

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
