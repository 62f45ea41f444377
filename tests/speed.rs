//! Speed levers that change how tables are loaded, checked for correctness: the data, the
//! indexes and the constraints come out identical, and a failure puts everything back.

use crate::util::{self, TestDb};
use crate::{both, copy};

/// Every index of `table` with its definition, clustering, comment and per-column
/// statistics targets, and every constraint of it: what must survive a rebuild exactly.
fn index_shape(db: &TestDb, table: &str) -> Vec<Vec<Option<String>>> {
    let mut rows = db.rows_text(&format!(
        "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid),
                indisclustered::text, obj_description(indexrelid, 'pg_class'),
                (SELECT string_agg(attnum || '=' || attstattarget, ',' ORDER BY attnum)
                 FROM pg_attribute WHERE attrelid = indexrelid AND attstattarget >= 0)
         FROM pg_index WHERE indrelid = '{table}'::regclass ORDER BY 1"
    ));
    rows.extend(db.rows_text(&format!(
        "SELECT conname, pg_get_constraintdef(oid), condeferrable::text, condeferred::text
         FROM pg_constraint WHERE conrelid = '{table}'::regclass ORDER BY 1"
    )));
    rows
}

fn shapes(db: &TestDb) -> Vec<Vec<Option<String>>> {
    let mut rows = index_shape(db, "r");
    rows.extend(index_shape(db, "child"));
    rows
}

#[test]
fn rebuilt_indexes_come_back_exactly_and_a_failure_rolls_them_back() {
    let (src, dst) = util::pair("rebuilt_indexes_come_back_exactly");
    both(
        &src,
        &dst,
        "CREATE TABLE r (id int, code text, amount numeric, note text,
             CONSTRAINT r_pkey PRIMARY KEY (id) WITH (fillfactor = 90));
         ALTER TABLE r ADD CONSTRAINT r_code_key UNIQUE (code) DEFERRABLE INITIALLY DEFERRED;
         CREATE INDEX r_amount_partial ON r (amount) INCLUDE (note) WHERE amount > 10;
         CREATE INDEX r_lower_note ON r (lower(note));
         COMMENT ON INDEX r_lower_note IS 'for case-insensitive search';
         ALTER INDEX r_lower_note ALTER COLUMN 1 SET STATISTICS 500;
         ALTER TABLE r CLUSTER ON r_pkey;
         CREATE TABLE child (id int, r_id int CONSTRAINT child_r_fk REFERENCES r);
         CREATE TABLE grouped (id int PRIMARY KEY, label text);
         -- Depends on grouped's primary key (label is functionally dependent on id).
         CREATE VIEW by_id AS SELECT id, label FROM grouped GROUP BY id",
    );
    src.exec(
        "INSERT INTO r SELECT i, 'c' || i, i % 50, 'Note ' || i FROM generate_series(1, 5000) i;
         INSERT INTO child SELECT i, i FROM generate_series(1, 100) i;
         INSERT INTO grouped SELECT i, 'g' || i FROM generate_series(1, 100) i",
    );
    dst.exec("INSERT INTO r VALUES (-1, 'old', 1, 'old')");
    let original = shapes(&dst);

    let out = copy(&src, &dst, &["--indexes", "rebuild"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .contains("indexes dropped for the load and built after it: 4"),
        "r's four indexes (child has none): {out:?}"
    );
    assert_eq!(
        shapes(&dst),
        original,
        "indexes and constraints as they were"
    );
    assert_eq!(
        dst.count("by_id"),
        100,
        "a primary key a view depends on stays"
    );
    for table in ["r", "child", "grouped"] {
        assert_eq!(
            src.checksum(table, &[]),
            dst.checksum(table, &[]),
            "{table}"
        );
    }
    // The rebuilt indexes work: the unique constraint still refuses a duplicate.
    let duplicate = dst
        .client()
        .batch_execute("INSERT INTO r VALUES (9999, 'c1', 0, 'x')");
    assert!(duplicate.is_err(), "the unique constraint was rebuilt");
    assert_eq!(
        dst.scalar_string("SELECT count(*) FROM r WHERE lower(note) = 'note 77'"),
        "1"
    );

    // A load that fails after its indexes were dropped rolls back to the old rows and the
    // old indexes.
    dst.exec(
        "TRUNCATE r, child; INSERT INTO r VALUES (-1, 'old', 1, 'old');
         ALTER TABLE r ADD CONSTRAINT r_small CHECK (amount < 49)",
    );
    let before = index_shape(&dst, "r");
    let out = copy(&src, &dst, &["--indexes", "rebuild"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout.contains("public.r: ") && out.stdout.contains("r_small"),
        "{out:?}"
    );
    assert_eq!(index_shape(&dst, "r"), before);
    assert_eq!(dst.scalar_i64("SELECT id FROM r"), -1);

    // Kept: nothing is dropped; and the key that the failed run left NOT VALID (r kept its
    // old rows, child got the new ones) is validated again now that the data is whole.
    dst.exec("ALTER TABLE r DROP CONSTRAINT r_small");
    let out = copy(&src, &dst, &["--indexes", "keep"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("built after it: 0"), "{out:?}");
    assert_eq!(shapes(&dst), original);
}
