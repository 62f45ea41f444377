//! The registry's decisions, as the copy goes on and once it is over.

use super::*;
use crate::plan::chunks::keys::Part;
use crate::plan::pieces::KeyRange;

fn chunk(low: Option<&str>, high: Option<&str>, seen: Option<(&str, &str)>) -> Recorded {
    let bound = |b: Option<&str>| b.map(|b| vec![b.to_string()]);
    Recorded {
        table: TableName::new("public", "t"),
        range: Some((
            vec!["id".into()],
            KeyRange {
                types: vec!["bigint".into()],
                low: bound(low),
                high: bound(high),
            },
        )),
        condition: format!("WHERE id >= {}", low.unwrap_or("-1")),
        seen: seen.map(|(snapshot, horizon)| Seen {
            snapshot: snapshot.into(),
            horizon: horizon.into(),
        }),
    }
}

fn seen(snapshot: &str, horizon: &str) -> Seen {
    Seen {
        snapshot: snapshot.into(),
        horizon: horizon.into(),
    }
}

fn t() -> TableName {
    TableName::new("public", "t")
}

fn key(n: i64) -> Option<Key> {
    Some(vec![Part::Int(n)])
}

#[test]
fn decides_by_the_snapshot_of_the_chunk_that_holds_the_row() {
    // Read before transaction 105 committed, and after; recorded in any order.
    let chunks = Registry::new(
        vec![
            chunk(Some("100"), None, Some(("106:106:", "0/200"))),
            chunk(None, Some("100"), Some(("105:105:", "0/100"))),
        ],
        true,
    )
    .unwrap();
    let t = t();
    let decide = |n, xid, at| chunks.decide(&t, key(n).as_ref(), xid, at).unwrap();
    assert_eq!(
        decide(5, 105, 0x90),
        Decision::Apply,
        "not seen by the first"
    );
    assert_eq!(decide(500, 105, 0x90), Decision::Skip, "seen by the second");
    assert_eq!(decide(500, 104, 0x80), Decision::Skip);
    assert_eq!(decide(500, 106, 0x190), Decision::Apply);
    assert_eq!(
        decide(500, 105, 0x200),
        Decision::Apply,
        "at the horizon: after"
    );
    assert_eq!(
        decide(100, 105, 0x90),
        Decision::Skip,
        "a low bound is in its range"
    );
    assert_eq!(decide(99, 105, 0x90), Decision::Apply);
    assert!(chunks.decides(&t, 0x1ff) && !chunks.decides(&t, 0x200));
    assert_eq!(
        chunks.truncation(&t, 105, 0x90),
        Truncation::Ranges(vec!["WHERE id >= -1".into()])
    );
    assert_eq!(chunks.truncation(&t, 106, 0x190), Truncation::Whole);
    assert_eq!(chunks.truncation(&t, 100, 0x10), Truncation::None);
    // A table not copied in chunks: its changes apply.
    let other = TableName::new("public", "u");
    assert_eq!(chunks.decide(&other, None, 1, 1).unwrap(), Decision::Apply);
    assert!(Registry::new(vec![chunk(None, None, None)], true).is_err());
}

#[test]
fn while_the_copy_goes_on_a_change_is_left_to_a_chunk_not_read_and_waits_for_one_being_read() {
    let chunks = Registry::new(
        vec![
            chunk(None, Some("100"), Some(("105:105:", "0/100"))),
            chunk(Some("100"), Some("200"), None),
            chunk(Some("200"), None, None),
        ],
        false,
    )
    .unwrap();
    let t = t();
    let decide = |n, xid, at| chunks.decide(&t, key(n).as_ref(), xid, at).unwrap();
    assert!(
        chunks.decides(&t, u64::MAX),
        "every change, while the copy goes on"
    );
    // Not read yet: its read will have it, and must see transactions 110 and 111.
    assert_eq!(decide(150, 110, 0x300), Decision::Skip);
    assert_eq!(decide(250, 111, 0x310), Decision::Skip);
    // Loaded: by its snapshot, whether or not the others are.
    assert_eq!(decide(5, 110, 0x300), Decision::Apply);
    assert_eq!(decide(5, 104, 0x90), Decision::Skip);
    // A TRUNCATE waits for the table to be whole.
    assert_eq!(chunks.truncation(&t, 112, 0x320), Truncation::Wait);
    // The reader of the second chunk begins: its snapshot must see what was left.
    let mut required = chunks.begin(&t, "WHERE id >= 100");
    required.sort_unstable();
    assert_eq!(required, vec![110, 111]);
    assert_eq!(decide(150, 113, 0x330), Decision::Wait, "being read");
    // A try again must see the same, and a snapshot that saw them forgets them.
    assert_eq!(chunks.begin(&t, "WHERE id >= 100").len(), 2);
    assert_eq!(decide(250, 112, 0x320), Decision::Skip);
    assert_eq!(decide(250, 113, 0x330), Decision::Skip);
    chunks
        .taken(
            &t,
            "WHERE id >= 100",
            &Snapshot::parse("112:113:112").unwrap(),
            "0/335",
        )
        .unwrap();
    // Its snapshot taken: what it saw is left at once, the rest waits for its load.
    assert_eq!(decide(150, 111, 0x310), Decision::Skip);
    assert_eq!(decide(150, 112, 0x320), Decision::Wait);
    let mut left = chunks.begin(&t, "WHERE id >= 200");
    left.sort_unstable();
    assert_eq!(
        left,
        vec![112, 113],
        "left to it, and not seen by the last snapshot"
    );
    chunks
        .recorded(&t, "WHERE id >= 100", &seen("113:113:", "0/340"))
        .unwrap();
    chunks.wait_read(&t, key(150).as_ref()).unwrap();
    assert_eq!(decide(150, 113, 0x330), Decision::Apply);
    assert_eq!(decide(150, 112, 0x320), Decision::Skip);
    chunks.complete(&t);
    assert_eq!(decide(250, 113, 0x330), Decision::Wait, "still being read");
    assert_eq!(chunks.truncation(&t, 114, 0x360), Truncation::Wait);
    chunks
        .recorded(&t, "WHERE id >= 200", &seen("114:114:", "0/350"))
        .unwrap();
    chunks.complete(&t);
    chunks.wait(Some(&t)).unwrap();
    assert_eq!(decide(250, 113, 0x330), Decision::Skip);
    assert_eq!(
        chunks.truncation(&t, 113, 0x330),
        Truncation::Ranges(vec!["WHERE id >= -1".into(), "WHERE id >= 100".into()])
    );
    assert!(!chunks.done());
    chunks.finish();
    assert!(chunks.done() && !chunks.decides(&t, 0x350));
}

#[test]
fn waiting_for_a_copy_that_stopped_fails() {
    let chunks = Registry::new(vec![chunk(None, None, None)], false).unwrap();
    chunks.stop("interrupted");
    let err = chunks.wait(Some(&t())).unwrap_err();
    assert!(err.to_string().contains("interrupted"), "{err}");
    assert!(chunks.wait(None).is_err());
}

#[test]
fn a_table_whose_indexes_are_built_again_takes_changes_once_whole() {
    let chunks = Registry::new(
        vec![
            chunk(None, Some("100"), Some(("105:105:", "0/100"))),
            chunk(Some("100"), None, None),
        ],
        false,
    )
    .unwrap();
    let t = t();
    chunks.rebuilt([&t]);
    let decide = |n, xid, at| chunks.decide(&t, key(n).as_ref(), xid, at).unwrap();
    assert_eq!(
        decide(5, 110, 0x300),
        Decision::Wait,
        "loaded, its index not back"
    );
    assert_eq!(decide(150, 110, 0x300), Decision::Skip, "not read yet");
    chunks.begin(&t, "WHERE id >= 100");
    chunks
        .recorded(&t, "WHERE id >= 100", &seen("111:111:", "0/400"))
        .unwrap();
    assert_eq!(
        decide(5, 110, 0x300),
        Decision::Wait,
        "every chunk loaded, not whole"
    );
    chunks.complete(&t);
    chunks.wait_read(&t, key(5).as_ref()).unwrap();
    assert_eq!(decide(5, 110, 0x300), Decision::Apply);
    assert_eq!(decide(150, 110, 0x300), Decision::Skip);
}
