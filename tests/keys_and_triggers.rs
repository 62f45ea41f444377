//! Keys, constraints, indexes and triggers: what pgcopy takes out of the way for the load
//! comes back exactly as it was (definition, validity, comment, tablespace), in replica and in
//! drop mode, for a superuser and for a table owner; triggers fire only when asked; and a key
//! from a table outside the selection is refused unless allowed.

use crate::util::{
    self, assert_exit, assert_same_data, both, constraints, copy, copy_to, exit, foreign_keys,
    has_state_file, pair, triggers, with_keys, TestDb, KEY_TABLES,
};

#[test]
fn puts_chain_cycle_self_and_composite_keys_back_byte_identical() {
    let (src, dst) = with_keys(pair!());
    let keys = foreign_keys(&dst);
    assert_eq!(keys.len(), 6);

    let out = copy(&src, &dst, &[]);
    assert_exit!(out, exit::SUCCESS);
    assert_same_data(&src, &dst, &KEY_TABLES);
    assert_eq!(
        foreign_keys(&dst),
        keys,
        "definitions and validity as before"
    );
    assert!(
        out.stdout
            .contains("foreign keys (replica mode): 6 dropped for the load, 6 put back"),
        "a superuser gets replica mode: {out:?}"
    );
    assert!(
        !has_state_file(&dst),
        "the state file is gone after a clean run"
    );
}

#[test]
fn keeps_destination_triggers_from_firing_in_replica_and_drop_mode() {
    let (src, dst) = pair!();
    both(
        &src,
        &dst,
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         CREATE TABLE audit (what text);",
    );
    dst.exec(
        "CREATE FUNCTION reject() RETURNS trigger LANGUAGE plpgsql
             AS $$ BEGIN RAISE EXCEPTION 'rejected'; END $$;
         CREATE FUNCTION audit() RETURNS trigger LANGUAGE plpgsql
             AS $$ BEGIN INSERT INTO audit VALUES (TG_NAME); RETURN NEW; END $$;
         CREATE TRIGGER t_reject BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION reject();
         CREATE TRIGGER t_audit_always AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION audit();
         ALTER TABLE t ENABLE ALWAYS TRIGGER t_audit_always;
         CREATE TRIGGER t_audit_replica AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION audit();
         ALTER TABLE t ENABLE REPLICA TRIGGER t_audit_replica;
         CREATE TRIGGER t_off AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION reject();
         ALTER TABLE t DISABLE TRIGGER t_off;",
    );
    src.exec("INSERT INTO t SELECT i, 'v' || i FROM generate_series(1, 100) i");
    let before = triggers(&dst);

    for mode in ["replica", "drop", "auto"] {
        dst.exec(
            "ALTER TABLE t DISABLE TRIGGER USER; TRUNCATE t; ALTER TABLE t ENABLE TRIGGER t_reject;
                  ALTER TABLE t ENABLE ALWAYS TRIGGER t_audit_always;
                  ALTER TABLE t ENABLE REPLICA TRIGGER t_audit_replica",
        );
        assert_eq!(triggers(&dst), before);
        let out = copy(&src, &dst, &["--fk-mode", mode]);
        assert_exit!(out, exit::SUCCESS, "{mode}");
        assert_same_data(&src, &dst, &["t"]);
        assert_eq!(dst.count("audit"), 0, "{mode}: no trigger fired");
        assert_eq!(triggers(&dst), before, "{mode}: triggers enabled as before");
    }

    // Asked to let them fire, the rejecting trigger stops the table, which keeps its rows.
    dst.exec(
        "TRUNCATE t; ALTER TABLE t DISABLE TRIGGER t_reject; INSERT INTO t VALUES (-1, 'old');
              ALTER TABLE t ENABLE TRIGGER t_reject; DELETE FROM audit",
    );
    let out = copy(&src, &dst, &["--enable-triggers"]);
    assert_exit!(out, exit::TABLES_FAILED);
    assert!(out.stdout.contains("rejected"), "{out:?}");
    assert_eq!(dst.scalar_i64("SELECT id FROM t"), -1, "{out:?}");
    assert_eq!(triggers(&dst), before);
}

#[test]
fn drop_mode_works_for_a_table_owner_without_superuser() {
    let (src, dst) = with_keys(pair!());
    let owner = "owner_of_drop_mode_test";
    dst.exec(&format!("CREATE ROLE {owner} LOGIN"));
    for table in KEY_TABLES {
        dst.exec(&format!("ALTER TABLE {table} OWNER TO {owner}"));
    }
    let keys = foreign_keys(&dst);
    let before = triggers(&dst);
    let as_owner = dst.url().replace("postgres@", &format!("{owner}@"));

    let out = copy_to(&src.url(), &as_owner, &["--fk-mode", "replica"]);
    assert_exit!(out, exit::USAGE);
    assert!(
        out.stderr.contains("--fk-mode replica needs a superuser"),
        "{out:?}"
    );

    let out = copy_to(&src.url(), &as_owner, &[]);
    assert_exit!(out, exit::SUCCESS);
    assert!(
        out.stdout.contains("foreign keys (drop mode): 6 dropped"),
        "{out:?}"
    );
    assert!(out.stderr.contains("foreign keys in drop mode"), "{out:?}");
    assert_same_data(&src, &dst, &KEY_TABLES);
    assert_eq!(foreign_keys(&dst), keys);
    assert_eq!(
        triggers(&dst),
        before,
        "the rejecting trigger is back, and did not fire"
    );
}

#[test]
fn keys_to_a_partitioned_table_come_back_validated_with_their_clones() {
    let (src, dst) = pair!();
    both(
        &src,
        &dst,
        "CREATE TABLE pk (a int PRIMARY KEY) PARTITION BY RANGE (a);
         CREATE TABLE pk1 PARTITION OF pk FOR VALUES FROM (0) TO (1000);
         CREATE TABLE pk2 PARTITION OF pk FOR VALUES FROM (1000) TO (2000);
         CREATE TABLE fk (a int REFERENCES pk)",
    );
    src.exec(
        "INSERT INTO pk SELECT generate_series(1, 1500);
         INSERT INTO fk SELECT generate_series(1, 1500, 7)",
    );
    let before = constraints(&dst);
    // Named fk_a_fkey1 up to PostgreSQL 17, fk_a_fkey_1 from 18.
    assert!(
        before.iter().any(|c| c[1]
            .as_deref()
            .is_some_and(|n| n.starts_with("fk_a_fkey") && n != "fk_a_fkey")),
        "a clone of the key for each partition: {before:?}"
    );
    for mode in ["drop", "replica"] {
        let out = copy(&src, &dst, &["--fk-mode", mode]);
        assert_exit!(out, exit::SUCCESS);
        assert_eq!(constraints(&dst), before, "{mode}: {out:?}");
    }
    assert_eq!(src.checksum("fk", &[]), dst.checksum("fk", &[]));
}

#[test]
fn constraints_and_indexes_come_back_with_their_comments_and_tablespace() {
    let (src, dst) = pair!();
    let space = "comments_test_space";
    let location = util::dest().tablespace_dir(space);
    dst.exec(&format!(
        "CREATE TABLESPACE {space} LOCATION '{}'",
        location.display()
    ));
    both(
        &src,
        &dst,
        "CREATE TABLE parent (id int CONSTRAINT parent_pk PRIMARY KEY, v text);
         CREATE TABLE child (id int, parent_id int CONSTRAINT child_parent_fk REFERENCES parent);
         CREATE INDEX child_parent_idx ON child (parent_id)",
    );
    dst.exec(&format!(
        "COMMENT ON CONSTRAINT child_parent_fk ON child IS 'every child has a parent';
         COMMENT ON CONSTRAINT parent_pk ON parent IS 'the parent''s key';
         ALTER INDEX child_parent_idx SET TABLESPACE {space}"
    ));
    src.exec(
        "INSERT INTO parent SELECT i, 'v' || i FROM generate_series(1, 100) i;
         INSERT INTO child SELECT i, i FROM generate_series(1, 100) i",
    );
    let before = constraints(&dst);
    let where_is = "SELECT coalesce(t.spcname, 'default') FROM pg_class c
                    LEFT JOIN pg_tablespace t ON t.oid = c.reltablespace
                    WHERE c.relname = 'child_parent_idx'";

    let out = copy(&src, &dst, &["--indexes", "rebuild"]);
    assert_exit!(out, exit::SUCCESS);
    assert!(
        out.stdout
            .contains("indexes dropped for the load and built after it: 2"),
        "{out:?}"
    );
    assert_eq!(constraints(&dst), before, "{out:?}");
    assert_eq!(dst.scalar_string(where_is), space);
    assert_eq!(src.checksum("child", &[]), dst.checksum("child", &[]));
}

#[test]
fn not_valid_checks_take_the_source_rows_and_stay_not_valid() {
    let (src, dst) = pair!();
    both(
        &src,
        &dst,
        "CREATE TABLE readings (id int PRIMARY KEY, celsius numeric)",
    );
    // A legacy row the check was added NOT VALID over, on both sides.
    src.exec("INSERT INTO readings VALUES (1, -300), (2, 20)");
    dst.exec(
        "INSERT INTO readings VALUES (1, -300);
         ALTER TABLE readings ADD CONSTRAINT physical CHECK (celsius >= -273.15) NOT VALID;
         COMMENT ON CONSTRAINT physical ON readings IS 'legacy rows are below'",
    );
    let before = constraints(&dst);

    let out = copy(&src, &dst, &[]);
    assert_exit!(out, exit::SUCCESS);
    assert!(
        out.stdout
            .contains("of which NOT VALID check constraints: 1"),
        "{out:?}"
    );
    assert_eq!(src.checksum("readings", &[]), dst.checksum("readings", &[]));
    assert_eq!(
        constraints(&dst),
        before,
        "back NOT VALID, with its comment"
    );
    let rejected = dst
        .client()
        .batch_execute("INSERT INTO readings VALUES (3, -500)");
    assert!(rejected.is_err(), "still checked for new rows");
}

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
    let (src, dst) = pair!();
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
    assert_exit!(out, exit::SUCCESS);
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
    assert_exit!(out, exit::TABLES_FAILED);
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
    assert_exit!(out, exit::SUCCESS);
    assert!(out.stdout.contains("built after it: 0"), "{out:?}");
    assert_eq!(shapes(&dst), original);
}

#[test]
fn refuses_a_table_outside_the_selection_that_references_a_copied_one() {
    let (src, dst) = pair!();
    both(
        &src,
        &dst,
        "CREATE TABLE parent (id int PRIMARY KEY);
         CREATE TABLE outsider (id int, parent_id int CONSTRAINT outsider_parent_fk REFERENCES parent)",
    );
    src.exec("INSERT INTO parent VALUES (1), (2)");
    dst.exec("INSERT INTO parent VALUES (5); INSERT INTO outsider VALUES (1, 5)");
    let keys = foreign_keys(&dst);

    let out = copy(&src, &dst, &["--include-tables", "parent"]);
    assert_exit!(out, exit::USAGE);
    assert!(
        out.stderr.contains("public.outsider (outsider_parent_fk")
            && out.stderr.contains("REFERENCES public.parent(id)"),
        "names both tables: {out:?}"
    );
    assert_eq!(
        dst.scalar_i64("SELECT id FROM parent"),
        5,
        "nothing changed"
    );
    assert_eq!(foreign_keys(&dst), keys);

    let out = copy(
        &src,
        &dst,
        &["--include-tables", "parent", "--allow-outside-references"],
    );
    assert_exit!(out, exit::SUCCESS);
    assert!(
        out.stdout
            .contains("NOT VALID as asked: outsider_parent_fk"),
        "{out:?}"
    );
    assert_eq!(
        dst.scalar_string(
            "SELECT pg_get_constraintdef(oid) || ' ' || convalidated FROM pg_constraint
             WHERE conname = 'outsider_parent_fk'"
        ),
        "FOREIGN KEY (parent_id) REFERENCES parent(id) NOT VALID false"
    );
    assert_eq!(dst.count("parent"), 2);
}

#[test]
fn dry_run_shows_keys_triggers_and_sequences_and_changes_nothing() {
    let (src, dst) = with_keys(pair!());
    both(&src, &dst, "CREATE TABLE counted (id serial PRIMARY KEY)");
    src.exec("INSERT INTO counted DEFAULT VALUES");
    let keys = foreign_keys(&dst);
    let out = copy(&src, &dst, &["--dry-run", "--fk-mode", "drop"]);
    assert_exit!(out, exit::SUCCESS);
    for expected in [
        "foreign key mode: drop",
        "foreign keys dropped for the load and put back after it: 6",
        "x_y_fk on public.x: FOREIGN KEY (y_id) REFERENCES public.y(id) DEFERRABLE",
        "triggers disabled during each table's load: 1",
        "blocker_reject on public.blocker",
        "setval('\"public\".\"counted_id_seq\"', 1, true)",
    ] {
        assert!(out.stdout.contains(expected), "{expected}: {out:?}");
    }
    assert_eq!(foreign_keys(&dst), keys);
    assert_eq!(dst.count("a"), 1);
    assert!(!has_state_file(&dst), "a dry run writes no state");
}
