//! Integrity: foreign keys, triggers and sequences handled completely, and the destination
//! always put back, after failures, Ctrl-C and `kill -9` too.

use crate::util::{self, TestDb};
use crate::{
    both, copy, copy_to, finish, foreign_keys, has_state_file, key_names, lock_table, spawn_copy,
    state_count, triggers, wait_for_blocked_pgcopy, wait_for_pgcopy_gone,
};

/// Keys of every kind: a chain a <- b <- c, a cycle x <-> y with deferrable keys, a
/// self-reference, a composite MATCH FULL key.
pub const KEYS_SCHEMA: &str = "
    CREATE TABLE a (id int PRIMARY KEY);
    CREATE TABLE b (id int PRIMARY KEY, a_id int REFERENCES a);
    CREATE TABLE c (id int PRIMARY KEY, b_id int REFERENCES b ON DELETE CASCADE);
    CREATE TABLE x (id int PRIMARY KEY, y_id int);
    CREATE TABLE y (id int PRIMARY KEY, x_id int REFERENCES x DEFERRABLE INITIALLY DEFERRED);
    ALTER TABLE x ADD CONSTRAINT x_y_fk FOREIGN KEY (y_id) REFERENCES y DEFERRABLE;
    CREATE TABLE node (id int PRIMARY KEY, parent int REFERENCES node ON UPDATE CASCADE);
    CREATE TABLE pair_parent (a int, b int, PRIMARY KEY (a, b));
    CREATE TABLE pair_child (id int, a int, b int,
        FOREIGN KEY (a, b) REFERENCES pair_parent MATCH FULL ON DELETE SET NULL);";

const KEYS_DATA: &str = "
    INSERT INTO a SELECT generate_series(1, 300);
    INSERT INTO b SELECT i, i FROM generate_series(1, 300) i;
    INSERT INTO c SELECT i, 301 - i FROM generate_series(1, 300) i;
    BEGIN;
    SET CONSTRAINTS ALL DEFERRED;
    INSERT INTO y SELECT i, i FROM generate_series(1, 50) i;
    INSERT INTO x SELECT i, i FROM generate_series(1, 50) i;
    COMMIT;
    INSERT INTO node VALUES (1, NULL);
    INSERT INTO node SELECT i, i - 1 FROM generate_series(2, 200) i;
    INSERT INTO pair_parent SELECT i, -i FROM generate_series(1, 40) i;
    INSERT INTO pair_child SELECT i, i, -i FROM generate_series(1, 40) i;
    INSERT INTO pair_child VALUES (41, NULL, NULL);";

/// A table without keys whose trigger rejects every row, so that a load that does not keep
/// the triggers quiet fails.
pub const BLOCKER_SCHEMA: &str = "
    CREATE TABLE blocker (id int);
    CREATE FUNCTION reject() RETURNS trigger LANGUAGE plpgsql
        AS $$ BEGIN RAISE EXCEPTION 'rejected by trigger on %', TG_TABLE_NAME; END $$;
    CREATE TRIGGER blocker_reject BEFORE INSERT ON blocker
        FOR EACH ROW EXECUTE FUNCTION reject()";

pub const KEY_TABLES: [&str; 9] = [
    "a",
    "b",
    "c",
    "x",
    "y",
    "node",
    "pair_parent",
    "pair_child",
    "blocker",
];

/// The keys schema on both sides, source data, and different stale rows on the destination.
/// `blocker` has no keys, so a test can lock it without holding up the drop of the keys.
pub fn keys_pair(name: &str) -> (TestDb, TestDb) {
    let (src, dst) = util::pair(name);
    both(&src, &dst, KEYS_SCHEMA);
    both(&src, &dst, BLOCKER_SCHEMA);
    src.exec(KEYS_DATA);
    src.exec("ALTER TABLE blocker DISABLE TRIGGER blocker_reject; INSERT INTO blocker SELECT generate_series(1, 10)");
    src.exec("ALTER TABLE blocker ENABLE TRIGGER blocker_reject");
    dst.exec("INSERT INTO a VALUES (1000); INSERT INTO b VALUES (1000, 1000); INSERT INTO node VALUES (7, 7)");
    dst.exec("ALTER TABLE blocker DISABLE TRIGGER blocker_reject; INSERT INTO blocker VALUES (-1)");
    dst.exec("ALTER TABLE blocker ENABLE TRIGGER blocker_reject");
    (src, dst)
}

pub fn assert_same_data(src: &TestDb, dst: &TestDb, tables: &[&str]) {
    for table in tables {
        assert_eq!(
            src.checksum(table, &[]),
            dst.checksum(table, &[]),
            "{table}"
        );
    }
}

#[test]
fn puts_chain_cycle_self_and_composite_keys_back_byte_identical() {
    let (src, dst) = keys_pair("puts_keys_back_byte_identical");
    let keys = foreign_keys(&dst);
    assert_eq!(keys.len(), 6);

    let out = copy(&src, &dst, &[]);
    assert_eq!(out.code, 0, "{out:?}");
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
    let (src, dst) = util::pair("keeps_triggers_from_firing");
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
        assert_eq!(out.code, 0, "{mode}: {out:?}");
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
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("rejected"), "{out:?}");
    assert_eq!(dst.scalar_i64("SELECT id FROM t"), -1, "{out:?}");
    assert_eq!(triggers(&dst), before);
}

#[test]
fn sets_identity_serial_and_standalone_sequences_to_the_source_values() {
    let (src, dst) = util::pair("sets_sequences_to_the_source_values");
    both(
        &src,
        &dst,
        "CREATE TABLE s_serial (id serial PRIMARY KEY, v text);
         CREATE TABLE s_ident (id bigint GENERATED ALWAYS AS IDENTITY, v text);
         CREATE SEQUENCE standalone START 100 INCREMENT 5;
         CREATE SEQUENCE never_used START 42;
         CREATE SCHEMA other;
         CREATE SEQUENCE other.untouched;",
    );
    src.exec(
        "INSERT INTO s_serial (v) SELECT 'x' FROM generate_series(1, 37);
         INSERT INTO s_ident (v) SELECT 'y' FROM generate_series(1, 12);
         SELECT nextval('standalone') FROM generate_series(1, 7);
         SELECT setval('other.untouched', 999);",
    );
    let value =
        |db: &TestDb, seq: &str| db.rows_text(&format!("SELECT last_value, is_called FROM {seq}"));
    let sequences = [
        "s_serial_id_seq",
        "s_ident_id_seq",
        "standalone",
        "never_used",
    ];

    let out = copy(&src, &dst, &["--no-sequences"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        value(&dst, "s_serial_id_seq"),
        [[Some("1".into()), Some("f".into())]]
    );

    let out = copy(&src, &dst, &[]);
    assert_eq!(out.code, 0, "{out:?}");
    for seq in sequences {
        assert_eq!(value(&src, seq), value(&dst, seq), "{seq}");
    }
    assert_eq!(
        value(&dst, "s_ident_id_seq"),
        [[Some("12".into()), Some("t".into())]]
    );
    assert_eq!(
        value(&dst, "other.untouched"),
        [[Some("1".into()), Some("f".into())]],
        "a schema with no copied table is left alone"
    );
    assert!(out.stdout.contains("sequences set: 4"), "{out:?}");
    dst.exec("INSERT INTO s_serial (v) VALUES ('next')");
    assert_eq!(dst.scalar_i64("SELECT max(id) FROM s_serial"), 38);
}

#[test]
fn drop_mode_works_for_a_table_owner_without_superuser() {
    let (src, dst) = keys_pair("drop_mode_works_for_a_table_owner");
    let owner = "owner_of_drop_mode_test";
    dst.exec(&format!("CREATE ROLE {owner} LOGIN"));
    for table in KEY_TABLES {
        dst.exec(&format!("ALTER TABLE {table} OWNER TO {owner}"));
    }
    let keys = foreign_keys(&dst);
    let before = triggers(&dst);
    let as_owner = dst.url().replace("postgres@", &format!("{owner}@"));

    let out = copy_to(&src.url(), &as_owner, &["--fk-mode", "replica"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("--fk-mode replica needs a superuser"),
        "{out:?}"
    );

    let out = copy_to(&src.url(), &as_owner, &[]);
    assert_eq!(out.code, 0, "{out:?}");
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
fn refuses_a_table_outside_the_selection_that_references_a_copied_one() {
    let (src, dst) = util::pair("refuses_outside_references");
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
    assert_eq!(out.code, 2, "{out:?}");
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
    assert_eq!(out.code, 0, "{out:?}");
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
fn a_writer_terminated_mid_copy_leaves_keys_and_triggers_restored() {
    let (src, dst) = keys_pair("a_writer_terminated_mid_copy");
    let keys = foreign_keys(&dst);
    let before = triggers(&dst);
    let locker = lock_table(&dst, "blocker");

    let child = spawn_copy(&src, &dst, &["--fk-mode", "drop", "--retries", "0"]);
    let pid = wait_for_blocked_pgcopy(&dst, &locker);
    assert!(
        foreign_keys(&dst).is_empty(),
        "the keys are dropped mid-copy"
    );
    assert_eq!(state_count(&dst, "fk"), 6, "and recorded in the state file");
    dst.exec(&format!("SELECT pg_terminate_backend({pid})"));
    drop(locker);
    let out = finish(child);

    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("public.blocker:"), "{out:?}");
    assert_eq!(foreign_keys(&dst), keys, "{out:?}");
    assert_eq!(triggers(&dst), before);
    assert_eq!(
        dst.scalar_i64("SELECT id FROM blocker"),
        -1,
        "old rows kept"
    );
    assert_same_data(&src, &dst, &KEY_TABLES[..8]);
    assert_eq!(state_count(&dst, "fk"), 0);
}

#[test]
fn after_kill_9_mid_copy_recover_and_the_next_copy_put_the_keys_back() {
    let (src, dst) = keys_pair("after_kill_9_mid_copy");
    let keys = foreign_keys(&dst);
    let before = triggers(&dst);

    for recovery in ["recover", "copy"] {
        let locker = lock_table(&dst, "blocker");
        let mut child = spawn_copy(&src, &dst, &[]);
        wait_for_blocked_pgcopy(&dst, &locker);
        assert!(
            foreign_keys(&dst).is_empty(),
            "the keys are dropped mid-copy"
        );
        child.kill().expect("sending SIGKILL");
        let killed = finish(child);
        assert_eq!(killed.code, 128 + 9, "{killed:?}");
        drop(locker);
        wait_for_pgcopy_gone(&dst);
        assert!(foreign_keys(&dst).is_empty(), "nobody put them back yet");
        assert_eq!(state_count(&dst, "fk"), 6, "the state file survived");

        let out = match recovery {
            "recover" => util::run(util::pgcopy().args(["recover", "--dest", &dst.url()])),
            _ => copy(&src, &dst, &[]),
        };
        assert!(
            out.stderr.contains("did not finish")
                && out.stderr.contains("putting back the 6 constraints"),
            "{recovery} says what it does: {out:?}"
        );
        assert_eq!(
            key_names(&foreign_keys(&dst)),
            key_names(&keys),
            "{recovery}: every key is back"
        );
        assert_eq!(triggers(&dst), before, "{recovery}");
        if recovery == "copy" || out.code == 0 {
            assert_eq!(out.code, 0, "{recovery}: {out:?}");
            assert_eq!(foreign_keys(&dst), keys, "{recovery}: valid as before");
            assert_eq!(
                state_count(&dst, "fk") + state_count(&dst, "validate"),
                0,
                "{recovery}"
            );
        } else {
            // Tables copied before the kill and tables not yet copied can disagree: a key
            // between them stays NOT VALID, and the state file remembers to validate it.
            assert_eq!(out.code, 1, "{out:?}");
            assert!(
                out.stdout.contains("stay NOT VALID until a copy"),
                "{out:?}"
            );
            assert!(state_count(&dst, "validate") > 0, "{out:?}");
        }
    }
    assert_same_data(&src, &dst, &KEY_TABLES);

    let out = util::run(util::pgcopy().args(["recover", "--dest", &dst.url()]));
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("nothing to recover"), "{out:?}");
}

#[test]
fn sigint_mid_copy_puts_everything_back_and_exits_130() {
    let (src, dst) = keys_pair("sigint_mid_copy");
    let keys = foreign_keys(&dst);
    let before = triggers(&dst);
    let locker = lock_table(&dst, "blocker");

    let child = spawn_copy(&src, &dst, &["--fk-mode", "drop"]);
    wait_for_blocked_pgcopy(&dst, &locker);
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("running kill");
    assert!(status.success());
    let out = finish(child);
    drop(locker);

    assert_eq!(out.code, 130, "{out:?}");
    assert!(out.stderr.contains("interrupted"), "{out:?}");
    assert_eq!(foreign_keys(&dst), keys);
    assert_eq!(triggers(&dst), before);
    assert_eq!(
        dst.scalar_i64("SELECT id FROM blocker"),
        -1,
        "old rows kept"
    );
    assert_eq!(state_count(&dst, "fk"), 0);
}

#[test]
fn refuses_to_copy_a_database_onto_itself_whatever_the_urls_look_like() {
    let (src, _dst) = util::pair("refuses_to_copy_onto_itself");
    src.exec("CREATE TABLE t (id int); INSERT INTO t VALUES (1)");
    let other_spelling = src.url().replace("127.0.0.1", "localhost");
    let key_value = format!(
        "host=127.0.0.1 port={} user=postgres dbname={}",
        src.port, src.name
    );
    for dest in [src.url(), other_spelling, key_value] {
        let out = copy_to(&src.url(), &dest, &[]);
        assert_eq!(out.code, 2, "{out:?}");
        assert!(
            out.stderr
                .contains("refusing to copy a database onto itself"),
            "{out:?}"
        );
    }
    assert_eq!(src.count("t"), 1);
}

#[test]
fn dry_run_shows_keys_triggers_and_sequences_and_changes_nothing() {
    let (src, dst) = keys_pair("dry_run_shows_keys_triggers_sequences");
    both(&src, &dst, "CREATE TABLE counted (id serial PRIMARY KEY)");
    src.exec("INSERT INTO counted DEFAULT VALUES");
    let keys = foreign_keys(&dst);
    let out = copy(&src, &dst, &["--dry-run", "--fk-mode", "drop"]);
    assert_eq!(out.code, 0, "{out:?}");
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
