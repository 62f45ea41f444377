//! The destination ends as the source: every constraint pgcopy takes out of the way comes
//! back exactly as it was, the destination role is asked only what it may do, sequences
//! are set one by one, and a table is done for `--resume` only once it is on disk.

use crate::util::{self, ClusterOptions, TestDb};
use crate::{both, copy, copy_to, lock_table, spawn_copy, state_lines, wait_for_blocked_pgcopy};
use std::time::{Duration, Instant};

/// Every table constraint of a database: its table, name, definition, whether it is
/// validated, and its comment.
pub fn constraints(db: &TestDb) -> Vec<Vec<Option<String>>> {
    db.rows_text(
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid),
                convalidated::text, obj_description(oid, 'pg_constraint')
         FROM pg_constraint
         WHERE conrelid <> 0 AND connamespace <> 'pg_catalog'::regnamespace ORDER BY 1, 2",
    )
}

#[test]
fn keys_to_a_partitioned_table_come_back_validated_with_their_clones() {
    let (src, dst) = util::pair("keys_to_a_partitioned_table");
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
        assert_eq!(out.code, 0, "{out:?}");
        assert_eq!(constraints(&dst), before, "{mode}: {out:?}");
    }
    assert_eq!(src.checksum("fk", &[]), dst.checksum("fk", &[]));
}

#[test]
fn constraints_and_indexes_come_back_with_their_comments_and_tablespace() {
    let (src, dst) = util::pair("constraints_come_back_with_their_comments");
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
    assert_eq!(out.code, 0, "{out:?}");
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
    let (src, dst) = util::pair("not_valid_checks_take_the_source_rows");
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
    assert_eq!(out.code, 0, "{out:?}");
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

#[test]
fn a_sequence_the_destination_cannot_take_does_not_hold_back_the_others() {
    let (src, dst) = util::pair("a_sequence_the_destination_cannot_take");
    both(
        &src,
        &dst,
        "CREATE SEQUENCE big_seq; CREATE SEQUENCE small_seq; CREATE TABLE t (id int)",
    );
    src.exec("SELECT setval('big_seq', 5000); SELECT setval('small_seq', 42)");
    dst.exec("ALTER SEQUENCE big_seq MAXVALUE 1000");

    let out = copy(&src, &dst, &[]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout
            .contains("sequence public.big_seq could not be set to the source's 5000"),
        "{out:?}"
    );
    assert_eq!(dst.scalar_i64("SELECT last_value FROM small_seq"), 42);
    assert!(out.stdout.contains("sequences set: 1"), "{out:?}");
}

#[test]
fn a_column_only_the_destination_requires_is_refused_while_planning() {
    let (src, dst) = util::pair("a_column_only_the_destination_requires");
    both(&src, &dst, "CREATE TABLE t (id int PRIMARY KEY)");
    src.exec("INSERT INTO t VALUES (1), (2)");
    dst.exec(
        "ALTER TABLE t ADD COLUMN note text NOT NULL;
         ALTER TABLE t ADD COLUMN flag bool NOT NULL DEFAULT false;
         INSERT INTO t VALUES (7, 'old')",
    );

    let out = copy(&src, &dst, &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("public.t: column \"note\" is NOT NULL without a default on the destination")
            && !out.stderr.contains("\"flag\""),
        "{out:?}"
    );
    assert_eq!(dst.scalar_string("SELECT note FROM t"), "old");
}

#[test]
fn the_destination_role_is_asked_only_what_it_may_do() {
    let (src, dst) = util::pair("the_destination_role_is_asked_only_what_it_may_do");
    let (owner, loader) = ("rights_table_owner", "rights_loader");
    let schema = "CREATE TABLE big (id int PRIMARY KEY, v text); CREATE TABLE audited (id int)";
    both(&src, &dst, schema);
    // About 4 MiB: `--indexes auto` would rebuild its primary key.
    src.exec(
        "INSERT INTO big SELECT i, repeat('x', 100) FROM generate_series(1, 30000) i;
         INSERT INTO audited SELECT generate_series(1, 10)",
    );
    // The tables' owner, without CREATE on the schema (PostgreSQL 15's default for public),
    // and a loader that may write the tables but owns none.
    dst.exec(&format!(
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC;
         CREATE ROLE {owner} LOGIN; CREATE ROLE {loader} LOGIN;
         ALTER TABLE big OWNER TO {owner}; ALTER TABLE audited OWNER TO {owner};
         GRANT SELECT, INSERT, TRUNCATE ON big, audited TO {loader};
         CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql
             AS $$ BEGIN RETURN NEW; END $$;
         CREATE TRIGGER audited_stamp BEFORE INSERT ON audited
             FOR EACH ROW EXECUTE FUNCTION stamp()"
    ));
    let keys = "SELECT count(*) FROM pg_constraint WHERE conname = 'big_pkey'";

    // The owner: auto keeps the indexes it may not build again, and says so.
    let out = copy_to(&src.url(), &dst.url_as(owner), &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .contains("keeping the indexes of 1 tables as they are"),
        "{out:?}"
    );
    assert_eq!(dst.scalar_i64(keys), 1);
    assert_eq!(src.checksum("big", &[]), dst.checksum("big", &[]));

    // Asked to rebuild them: refused while planning, with the reason.
    dst.exec("TRUNCATE big");
    let out = copy_to(&src.url(), &dst.url_as(owner), &["--indexes", "rebuild"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("may not build the indexes of these destination tables again")
            && out.stderr.contains("\n  public.big\n"),
        "{out:?}"
    );
    assert_eq!(dst.count("big"), 0, "nothing was changed");

    // The loader may not switch the trigger off: refused, unless it may fire.
    let out = copy_to(&src.url(), &dst.url_as(loader), &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("whose triggers would fire")
            && out.stderr.contains("\n  public.audited\n"),
        "{out:?}"
    );
    let out = copy_to(&src.url(), &dst.url_as(loader), &["--enable-triggers"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(src.checksum("big", &[]), dst.checksum("big", &[]));
    assert_eq!(src.checksum("audited", &[]), dst.checksum("audited", &[]));
}

#[test]
fn a_table_counts_as_done_for_resume_only_once_its_commit_is_on_disk() {
    let cluster = util::start_cluster(ClusterOptions::default().conf("autovacuum", "off"));
    let src = util::source().create_db("done_only_once_on_disk");
    let dst = cluster.create_db("done_only_once_on_disk");
    both(
        &src,
        &dst,
        "CREATE TABLE first (id int); CREATE TABLE held (id int)",
    );
    // A load that truncates always waits for its WAL (PostgreSQL must not delete the old
    // file first); one that deletes some rows, as for an extension's configuration table,
    // does not.
    for db in [&src, &dst] {
        make_config_table(db, "first", "WHERE id > 0");
    }
    // The larger table goes first, so its lane is past it when it reaches `held`.
    src.exec(
        "INSERT INTO first SELECT generate_series(1, 2000);
         INSERT INTO held SELECT generate_series(1, 10)",
    );
    dst.exec("INSERT INTO first VALUES (7)");
    // On disk before the WAL writer stops (in a statement of its own, after the commit).
    dst.exec("CHECKPOINT");
    // The WAL writer stopped: a commit that does not wait for its WAL (as pgcopy's writers'
    // do not) stays in memory until another commit flushes it, or a crash loses it.
    let walwriter =
        dst.scalar_i64("SELECT pid FROM pg_stat_activity WHERE backend_type = 'walwriter'");
    let stopped = std::process::Command::new("kill")
        .args(["-STOP", &walwriter.to_string()])
        .status()
        .expect("running kill");
    assert!(stopped.success(), "stopping the WAL writer");

    // `first` is loaded; `held` waits for a lock; the destination crashes once the state
    // file says `first` is done, and pgcopy dies with it.
    let locker = lock_table(&dst, "held");
    let mut child = spawn_copy(&src, &dst, &["--parallel", "1", "--no-analyze"]);
    wait_for_blocked_pgcopy(&dst, &locker);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !state_lines(&dst)
        .iter()
        .any(|l| l.starts_with("done\tpublic\tfirst\t"))
    {
        assert!(
            Instant::now() < deadline,
            "first was never recorded as done: {:?}",
            state_lines(&dst)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The crash kills the stopped WAL writer too.
    cluster.crash();
    child.kill().expect("killing pgcopy");
    child.wait().expect("waiting for pgcopy");
    drop(locker);
    cluster.start();

    let out = copy(&src, &dst, &["--resume"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        src.checksum("first", &[]),
        dst.checksum("first", &[]),
        "the table the state file called done is there after the crash"
    );
    assert_eq!(src.checksum("held", &[]), dst.checksum("held", &[]));
}

/// Makes `table` a configuration table of the citext extension, as an extension's script
/// does with `pg_extension_config_dump`: a member of the extension, whose rows `condition`
/// picks are the user's (the others the extension's own).
fn make_config_table(db: &TestDb, table: &str, condition: &str) {
    db.exec(&format!(
        "CREATE EXTENSION IF NOT EXISTS citext;
         ALTER EXTENSION citext ADD TABLE {table};
         UPDATE pg_extension
         SET extconfig = array_append(extconfig, '{table}'::regclass::oid),
             extcondition = array_append(extcondition, '{}')
         WHERE extname = 'citext'",
        condition.replace('\'', "''")
    ));
}

#[test]
fn extension_configuration_tables_carry_the_users_rows_and_keep_the_extensions() {
    let (src, dst) = util::pair("extension_configuration_tables");
    for db in [&src, &dst] {
        db.exec(
            "CREATE TABLE settings (key text PRIMARY KEY, value text,
                                    builtin bool NOT NULL DEFAULT false);
             INSERT INTO settings VALUES ('version', '1', true)",
        );
        make_config_table(db, "settings", "WHERE NOT builtin");
    }
    src.exec("INSERT INTO settings VALUES ('theme', 'dark', false), ('lang', 'fr', false)");
    // The destination's extension has its own version of its own row.
    dst.exec(
        "INSERT INTO settings VALUES ('stale', 'x', false);
         UPDATE settings SET value = '2' WHERE key = 'version'",
    );

    let out = copy(&src, &dst, &["--verify"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        dst.rows_text("SELECT key, value FROM settings ORDER BY key"),
        [["lang", "fr"], ["theme", "dark"], ["version", "2"]]
            .map(|row| row.map(|v| Some(v.to_string())).to_vec())
            .to_vec(),
        "{out:?}"
    );
    assert!(
        out.stdout.contains("verified: 1 of 1 copied tables match"),
        "{out:?}"
    );
}

#[test]
fn partitions_only_the_destination_has_are_emptied_with_their_table() {
    let (src, dst) = util::pair("partitions_only_the_destination_has");
    both(
        &src,
        &dst,
        "CREATE TABLE events (id int, at date) PARTITION BY RANGE (at);
         CREATE TABLE events_2024 PARTITION OF events
             FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
    );
    dst.exec(
        "CREATE TABLE events_2023 PARTITION OF events
             FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
         INSERT INTO events VALUES (1, '2023-05-01'), (2, '2024-05-01')",
    );
    src.exec("INSERT INTO events SELECT i, '2024-01-01'::date + i FROM generate_series(1, 300) i");

    // Naming one partition leaves the others alone.
    let out = copy(&src, &dst, &["--include-tables", "events_2024"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(dst.count("events_2023"), 1);

    // Naming the partitioned table replaces it whole, its destination-only partition too.
    let out = copy(&src, &dst, &["--include-tables", "events", "--verify"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains(
            "public.events_2023 is a partition of public.events only the destination has"
        ),
        "{out:?}"
    );
    assert_eq!(dst.count("events_2023"), 0);
    assert_eq!(src.checksum("events", &[]), dst.checksum("events", &[]));
    assert!(
        out.stdout.contains("verified: 2 of 2 copied tables match"),
        "{out:?}"
    );
}

#[test]
fn a_parent_named_in_a_filter_warns_about_the_inheritance_children_it_leaves_out() {
    let (src, dst) = util::pair("a_parent_named_in_a_filter_warns");
    both(
        &src,
        &dst,
        "CREATE TABLE parent (id int); CREATE TABLE child (extra text) INHERITS (parent)",
    );
    src.exec("INSERT INTO parent VALUES (1); INSERT INTO child VALUES (2, 'x')");

    let out = copy(&src, &dst, &["--include-tables", "parent"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains(
            "public.parent has inheritance children that the filters leave out, so their rows \
             are not copied: public.child"
        ),
        "{out:?}"
    );
    assert_eq!(dst.count("ONLY parent"), 1);
    assert_eq!(dst.count("child"), 0);
    let out = copy(&src, &dst, &["--include-tables", "parent,child"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(!out.stderr.contains("inheritance children"), "{out:?}");
    assert_eq!(dst.count("parent"), 2, "the parent with its child's rows");
}

#[test]
fn materialized_views_built_from_copied_tables_are_refreshed_in_order() {
    let (src, dst) = util::pair("materialized_views_are_refreshed");
    both(
        &src,
        &dst,
        "CREATE TABLE sales (id int, amount int);
         CREATE VIEW big_sales AS SELECT * FROM sales WHERE amount > 10;
         CREATE MATERIALIZED VIEW totals AS SELECT count(*) AS n, sum(amount) AS s FROM big_sales;
         CREATE MATERIALIZED VIEW doubled AS SELECT n * 2 AS n2 FROM totals;
         CREATE MATERIALIZED VIEW never AS SELECT count(*) AS n FROM sales WITH NO DATA",
    );
    src.exec(
        "INSERT INTO sales SELECT i, i % 50 FROM generate_series(1, 1000) i;
         REFRESH MATERIALIZED VIEW totals; REFRESH MATERIALIZED VIEW doubled",
    );
    let view = |db: &TestDb, name: &str| db.rows_text(&format!("TABLE {name}"));

    let out = copy(&src, &dst, &["--no-refresh-materialized-views"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_ne!(
        view(&dst, "totals"),
        view(&src, "totals"),
        "left stale, as asked"
    );

    let out = copy(&src, &dst, &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("materialized views refreshed: 2"),
        "{out:?}"
    );
    assert_eq!(view(&dst, "totals"), view(&src, "totals"));
    assert_eq!(view(&dst, "doubled"), view(&src, "doubled"), "after totals");
    assert_eq!(
        dst.scalar_string("SELECT relispopulated::text FROM pg_class WHERE relname = 'never'"),
        "false",
        "not populated on the source either"
    );
}

#[test]
fn large_objects_are_copied_with_their_oids_owners_and_grants() {
    let (src, dst) = util::pair("large_objects_are_copied");
    let role = "large_object_reader";
    src.exec(&format!("CREATE ROLE {role}"));
    dst.exec(&format!("CREATE ROLE {role}"));
    both(&src, &dst, "CREATE TABLE docs (id int, content oid)");
    // Three pieces and a bit, to go through in several reads.
    src.exec(&format!(
        "SELECT lo_from_bytea(424242, 'hello');
         SELECT lo_from_bytea(424243, decode(repeat('ab', 3 * 1024 * 1024 + 7), 'hex'));
         SELECT lo_from_bytea(424244, '');
         ALTER LARGE OBJECT 424242 OWNER TO {role};
         GRANT SELECT ON LARGE OBJECT 424243 TO {role};
         INSERT INTO docs VALUES (1, 424242), (2, 424243), (3, 424244)"
    ));
    dst.exec("SELECT lo_from_bytea(424242, 'stale'); SELECT lo_from_bytea(999, 'gone')");
    let objects = "SELECT m.oid::text, pg_get_userbyid(m.lomowner)::text,
                          coalesce(md5(lo_get(m.oid)), ''),
                          (SELECT string_agg(pg_get_userbyid(g.grantee) || ':' || g.privilege_type,
                                             ',' ORDER BY 1)
                           FROM aclexplode(m.lomacl) g WHERE g.grantee <> m.lomowner)
                   FROM pg_largeobject_metadata m ORDER BY m.oid";

    // Narrowed to some tables, the copy leaves them alone, as pg_dump -t does.
    let out = copy(&src, &dst, &["--include-tables", "docs"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        dst.scalar_string("SELECT count(*) FROM pg_largeobject_metadata"),
        "2"
    );

    let out = copy(&src, &dst, &["--verify"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("large objects: 3 copied (3.0 MiB)"),
        "{out:?}"
    );
    assert_eq!(dst.rows_text(objects), src.rows_text(objects));
    assert_eq!(
        dst.scalar_string("SELECT convert_from(lo_get(424242), 'UTF8')"),
        "hello"
    );
    assert!(
        out.stdout.contains("verified: 2 of 2 copied tables match"),
        "docs and the large objects: {out:?}"
    );
    let out =
        util::run(util::pgcopy().args(["verify", "--source", &src.url(), "--dest", &dst.url()]));
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("pg_catalog.pg_largeobject"), "{out:?}");

    // --no-large-objects leaves them too; verify then sees the difference.
    dst.exec("SELECT lo_unlink(424244)");
    let out = copy(&src, &dst, &["--no-large-objects"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        dst.scalar_string("SELECT count(*) FROM pg_largeobject_metadata"),
        "2"
    );
    let out =
        util::run(util::pgcopy().args(["verify", "--source", &src.url(), "--dest", &dst.url()]));
    assert_eq!(out.code, 3, "{out:?}");
}

#[test]
fn a_state_file_is_never_applied_to_a_clone_of_its_destination() {
    // pg_basebackup makes the clone: the system's, with a server of its own version.
    let a = util::start_cluster(ClusterOptions::default().server_bindir(util::bindir()));
    let name = "state_file_and_clones";
    let src = util::source().create_db(name);
    let on_a = a.create_db(name);
    let schema = "CREATE TABLE parent (id int PRIMARY KEY);
                  CREATE TABLE child (id int, parent_id int REFERENCES parent);
                  CREATE TABLE held (id int)";
    src.exec(schema);
    on_a.exec(schema);
    src.exec(
        "INSERT INTO parent SELECT generate_series(1, 10);
         INSERT INTO child SELECT i, i FROM generate_series(1, 10) i;
         INSERT INTO held VALUES (1)",
    );
    // A clone of A: the same system identifier and database; promoted, then stopped.
    let mut b = util::start_standby(&a);
    b.db(name).exec("SELECT pg_promote(); CHECKPOINT");
    b.stop();
    let keys = crate::foreign_keys(&on_a);

    // A run on A drops the key and is killed: the state file records it.
    let locker = lock_table(&on_a, "held");
    let mut child = spawn_copy(&src, &on_a, &["--parallel", "1"]);
    wait_for_blocked_pgcopy(&on_a, &locker);
    child.kill().expect("killing pgcopy");
    child.wait().expect("waiting for pgcopy");
    drop(locker);
    assert_eq!(
        crate::foreign_keys(&on_a),
        Vec::<Vec<Option<String>>>::new()
    );

    // The clone takes A's place, same port: the file names this identity, but the key it
    // says is dropped is in place here. It is set aside, and the copy goes on.
    let port = a.port;
    a.stop();
    b.start_on_port(port);
    let on_b = b.db(name);
    let out = copy(&src, &on_b, &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("lists 1 constraints as dropped")
            && out.stderr.contains("It is set aside as"),
        "{out:?}"
    );
    assert_eq!(crate::foreign_keys(&on_b), keys);

    // Back on A, recover finds the file set aside, and puts A's key back (NOT VALID: the
    // killed run left the data half copied), and the next copy validates it.
    b.stop();
    a.start();
    let out = util::run(util::pgcopy().args(["recover", "--dest", &on_a.url()]));
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("was set aside as another server's, but its dropped keys are missing"),
        "{out:?}"
    );
    assert_eq!(
        crate::key_names(&crate::foreign_keys(&on_a)),
        crate::key_names(&keys)
    );
    let out = copy(&src, &on_a, &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(crate::foreign_keys(&on_a), keys, "{out:?}");
}
