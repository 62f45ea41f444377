//! The source as production has it: row-level security, settings on roles and databases,
//! other sessions truncating or locking, a standby, another encoding, columns that name
//! objects by OID. Each case ends in an identical copy or a refusal that changes nothing.

use crate::util::{
    self, assert_exit, both, copy, copy_to, exit, finish, foreign_keys, hold, lock_table, pair,
    shift_oids, spawn_copy, test_name, verify, verify_to, wait_for_blocked_pgcopy,
};
use std::time::{Duration, Instant};

#[test]
fn a_role_that_policies_filter_is_refused_before_anything_changes() {
    let (src, dst) = pair!();
    let role = "policy_filtered_reader";
    both(
        &src,
        &dst,
        r#"CREATE TABLE "odd.name ""t""" (id int PRIMARY KEY, tenant int)"#,
    );
    src.exec(&format!(
        r#"INSERT INTO "odd.name ""t""" SELECT i, i % 3 FROM generate_series(1, 300) i;
           ALTER TABLE "odd.name ""t""" ENABLE ROW LEVEL SECURITY;
           CREATE POLICY one_tenant ON "odd.name ""t""" USING (tenant = 1);
           CREATE ROLE {role} LOGIN;
           GRANT SELECT ON "odd.name ""t""" TO {role}"#
    ));
    dst.exec(r#"INSERT INTO "odd.name ""t""" SELECT i, 0 FROM generate_series(1, 1000) i"#);
    let table = r#""odd.name ""t""""#;

    // The policy shows the role 100 of the 300 rows: refused, by name, with the ways out.
    let out = copy_to(&src.url_as(role), &dst.url(), &[]);
    assert_exit!(out, exit::USAGE);
    for expected in [
        "row-level security lets policy_filtered_reader@",
        "\n  public.\"odd.name \"\"t\"\"\"\n",
        "BYPASSRLS",
        "--exclude-tables",
        "nothing was changed",
    ] {
        assert!(out.stderr.contains(expected), "{expected}: {out:?}");
    }
    assert_eq!(dst.count(table), 1000, "the destination kept its rows");

    // The dry run says the same, after the plan.
    let out = copy_to(&src.url_as(role), &dst.url(), &["--dry-run"]);
    assert_exit!(out, exit::USAGE);
    assert!(
        out.stdout.contains("refused (exit code 2):")
            && out.stdout.contains("row-level security lets"),
        "{out:?}"
    );

    // verify as that role would compare 100 rows with 300: refused too, never "match".
    let out = verify_to(&src.url_as(role), &dst.url(), &[]);
    assert_exit!(out, exit::USAGE);
    assert!(out.stderr.contains("row-level security lets"), "{out:?}");

    // A role that bypasses row-level security copies every row.
    src.exec(&format!("ALTER ROLE {role} BYPASSRLS"));
    let out = copy_to(&src.url_as(role), &dst.url(), &["--verify"]);
    assert_exit!(out, exit::SUCCESS);
    assert_eq!(dst.count(table), 300);
    assert_eq!(src.checksum(table, &[]), dst.checksum(table, &[]));
}

#[test]
fn timeouts_set_on_the_roles_of_either_side_do_not_cut_a_copy_short() {
    let (src, dst) = pair!();
    let (reader, writer) = ("timeouts_source_owner", "timeouts_dest_owner");
    let schema = "CREATE TABLE events (id bigint, payload text);
         CREATE TABLE parent (id int PRIMARY KEY);
         CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent)";
    both(&src, &dst, schema);
    // About 40 MB: reading it takes far longer than the statement timeout below.
    src.exec(
        "INSERT INTO events SELECT i, repeat(md5(i::text), 6) FROM generate_series(1, 200000) i;
         INSERT INTO parent SELECT generate_series(1, 100);
         INSERT INTO child SELECT i, i FROM generate_series(1, 100) i",
    );
    dst.exec("INSERT INTO events VALUES (-1, 'old')");
    // Timeouts as production sets them on an application's roles, far shorter here: every
    // one the server has (idle_session_timeout is 14+, transaction_timeout 17+).
    for (db, role) in [(&src, reader), (&dst, writer)] {
        db.exec(&format!(
            "CREATE ROLE {role} LOGIN;
             ALTER TABLE events OWNER TO {role};
             ALTER TABLE parent OWNER TO {role};
             ALTER TABLE child OWNER TO {role}"
        ));
        let settings = db.rows_text(
            "SELECT name FROM pg_settings
             WHERE name IN ('statement_timeout', 'idle_in_transaction_session_timeout',
                            'idle_session_timeout', 'transaction_timeout', 'lock_timeout')",
        );
        for name in settings.into_iter().flatten().flatten() {
            let value = match name.as_str() {
                "lock_timeout" => "10ms",
                "idle_session_timeout" => "200ms",
                _ => "100ms",
            };
            db.exec(&format!(
                "ALTER ROLE {role} IN DATABASE {} SET {name} = '{value}'",
                db.quoted_name()
            ));
        }
    }
    let (source, dest) = (src.url_as(reader), dst.url_as(writer));
    let keys = foreign_keys(&dst);

    let out = copy_to(&source, &dest, &["--parallel", "2", "--verify"]);
    assert_exit!(out, exit::SUCCESS);
    assert!(
        out.stdout.contains("verified: 3 of 3 copied tables match"),
        "{out:?}"
    );
    for table in ["events", "parent", "child"] {
        assert_eq!(
            src.checksum(table, &[]),
            dst.checksum(table, &[]),
            "{table}"
        );
    }
    assert_eq!(foreign_keys(&dst), keys);

    let out = verify_to(&source, &dest, &[]);
    assert_exit!(out, exit::SUCCESS);
    let out = util::run(util::pgcopy().args(["list", "--exact", "--source", &source]));
    assert_exit!(out, exit::SUCCESS);
    assert!(out.stdout.contains("200000"), "{out:?}");
}

#[test]
fn a_table_truncated_and_reloaded_while_the_copy_plans_is_copied_whole() {
    let (src, dst) = pair!();
    let etl = r#""etl.daily""#;
    both(
        &src,
        &dst,
        &format!("CREATE TABLE {etl} (id int, v text); CREATE TABLE other (id int)"),
    );
    src.exec(&format!(
        "INSERT INTO {etl} SELECT i, 'old' FROM generate_series(1, 500) i;
         INSERT INTO other SELECT generate_series(1, 10)"
    ));
    dst.exec(&format!("INSERT INTO {etl} VALUES (-1, 'stale')"));
    // The usual reload: truncate and fill again in one transaction, still open.
    let reload = format!(
        "TRUNCATE {etl}; INSERT INTO {etl} SELECT i, 'new' FROM generate_series(1, 1000) i"
    );

    // While the reload holds its lock, planning waits at most --lock-timeout, then refuses
    // and names the session it waited for.
    let reloading = hold(&src, &reload);
    let out = copy(&src, &dst, &["--dry-run", "--lock-timeout", "1"]);
    assert_exit!(out, exit::USAGE);
    for expected in [
        "could not lock the source tables to copy within --lock-timeout 1s",
        &format!(
            "public.\"etl.daily\" held in ACCESS EXCLUSIVE by pid {}",
            reloading.pid
        ),
        "TRUNCATE \"etl.daily\"",
        "nothing was changed",
    ] {
        assert!(out.stderr.contains(expected), "{expected}: {out:?}");
    }

    // A dry run that waits says so in the plan.
    let child = spawn_copy(&src, &dst, &["--dry-run"]);
    wait_for_blocked_pgcopy(&src, &reloading);
    reloading.rollback();
    let out = finish(child);
    assert_exit!(out, exit::SUCCESS);
    assert!(
        out.stdout.contains("planning: waited ")
            && out
                .stdout
                .contains("for locks on the source: public.\"etl.daily\" held in"),
        "{out:?}"
    );

    // A copy that starts during the reload waits for it, then copies what it committed.
    let reloading = hold(&src, &reload);
    let child = spawn_copy(&src, &dst, &["--verify"]);
    wait_for_blocked_pgcopy(&src, &reloading);
    reloading.commit();
    let out = finish(child);
    assert_exit!(out, exit::SUCCESS);
    assert!(
        out.stderr
            .contains("waiting up to 60s (--lock-timeout) for locks on the source")
            && out
                .stderr
                .contains("public.\"etl.daily\" held in ACCESS EXCLUSIVE"),
        "{out:?}"
    );
    assert_eq!(dst.count(etl), 1000, "{out:?}");
    assert_eq!(
        dst.scalar_i64(&format!("SELECT count(*) FROM {etl} WHERE v = 'new'")),
        1000
    );
    assert_eq!(src.checksum(etl, &[]), dst.checksum(etl, &[]));
    assert!(
        out.stdout.contains("verified: 2 of 2 copied tables match"),
        "{out:?}"
    );
}

#[test]
fn a_truncate_queued_behind_the_copy_fails_its_table_instead_of_deadlocking_it() {
    let (src, dst) = pair!();
    both(
        &src,
        &dst,
        "CREATE TABLE big (id int); CREATE TABLE etl (id int)",
    );
    src.exec(
        "INSERT INTO big SELECT generate_series(1, 50000);
         INSERT INTO etl SELECT generate_series(1, 100)",
    );
    dst.exec("INSERT INTO etl VALUES (-1), (-2)");

    // Hold the first table's writer on the destination, so the copy is still running when
    // a TRUNCATE of the second table queues up on the source behind the snapshot's lock.
    // Small chunks, so the reader cannot have read the first table whole into the channel
    // and gone on.
    let locker = lock_table(&dst, "big");
    let child = spawn_copy(
        &src,
        &dst,
        &["--parallel", "1", "--retries", "1", "--batch-size", "16KiB"],
    );
    wait_for_blocked_pgcopy(&dst, &locker);
    let truncater = {
        let src = src.clone();
        std::thread::spawn(move || src.exec("TRUNCATE etl"))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while src.scalar_i64(
        "SELECT count(*) FROM pg_stat_activity
         WHERE wait_event_type = 'Lock' AND query = 'TRUNCATE etl'",
    ) == 0
    {
        assert!(Instant::now() < deadline, "the TRUNCATE never queued");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(locker);
    let out = finish(child);

    // Reading etl would wait behind the TRUNCATE, which waits for the copy to end: etl
    // fails with the reason instead, keeps its old rows, and everything else is copied.
    assert_exit!(out, exit::TABLES_FAILED);
    assert!(
        out.stdout
            .contains("another session is waiting for an exclusive lock on public.etl"),
        "{out:?}"
    );
    assert_eq!(dst.count("etl"), 2);
    assert_eq!(src.checksum("big", &[]), dst.checksum("big", &[]));
    truncater
        .join()
        .expect("the TRUNCATE went through once the copy ended");
}

#[test]
fn reg_columns_travel_as_names_onto_a_destination_whose_oids_differ() {
    let (src, dst) = pair!();
    let role = "reg_columns_role";
    shift_oids(&dst);
    // The same objects on both sides, made in another order on the destination so that
    // their OIDs differ there, as they do between real databases.
    let objects = [
        "CREATE SCHEMA app",
        "CREATE TABLE app.target (id int)",
        "CREATE TYPE app.mood AS ENUM ('ok')",
        "CREATE FUNCTION app.f(int) RETURNS int LANGUAGE sql AS 'SELECT $1'",
        "CREATE FUNCTION app.lt(int, int) RETURNS bool LANGUAGE sql AS 'SELECT $1 < $2'",
        "CREATE OPERATOR app.<<~ (LEFTARG = int, RIGHTARG = int, FUNCTION = app.lt)",
        "CREATE TEXT SEARCH CONFIGURATION app.cfg (COPY = simple)",
        "CREATE TEXT SEARCH DICTIONARY app.dict (TEMPLATE = simple)",
        "CREATE COLLATION app.coll FROM \"C\"",
        "CREATE DOMAIN app.tableref AS regclass",
    ];
    src.exec(&objects.join(";\n"));
    let reordered = [0, 8, 7, 6, 2, 4, 5, 3, 1, 9].map(|i| objects[i]);
    dst.exec(&reordered.join(";\n"));
    // Roles belong to the cluster: each side's has its own OID.
    src.exec(&format!("CREATE ROLE {role}"));
    dst.exec(&format!("CREATE ROLE {role}"));
    both(
        &src,
        &dst,
        "CREATE TABLE refs (id int PRIMARY KEY, c regclass, t regtype, p regproc,
             pp regprocedure, o regoper, oo regoperator, r regrole, n regnamespace,
             cfg regconfig, d regdictionary, col regcollation, arr regclass[],
             dom app.tableref)",
    );
    src.exec(&format!(
        "INSERT INTO refs VALUES (1, 'app.target', 'app.mood', 'app.f', 'app.f(integer)',
             'app.<<~', 'app.<<~(integer,integer)', '{role}', 'app', 'app.cfg', 'app.dict',
             'app.coll', ARRAY['app.target'::regclass, 'pg_class'], 'app.target')"
    ));
    assert_ne!(
        src.scalar_i64("SELECT 'app.target'::regclass::oid"),
        dst.scalar_i64("SELECT 'app.target'::regclass::oid"),
        "the test needs OIDs that differ"
    );

    let out = copy(&src, &dst, &["--verify"]);
    assert_exit!(out, exit::SUCCESS);
    assert!(
        out.stderr.contains("public.refs travels in text format"),
        "{out:?}"
    );
    let row = "SELECT refs::text FROM refs";
    assert_eq!(dst.scalar_string(row), src.scalar_string(row));
    assert!(dst.scalar_string(row).contains("app.target"), "{out:?}");
    assert!(
        out.stdout.contains("verified: 2 of 2 copied tables match"),
        "{out:?}"
    );
}

#[test]
fn a_search_path_set_on_one_side_makes_no_false_mismatch_and_keys_name_their_schema() {
    let (src, dst) = pair!();
    both(
        &src,
        &dst,
        "CREATE SCHEMA s;
         CREATE TYPE s.mood AS ENUM ('sad', 'ok');
         CREATE TABLE s.parent (id int PRIMARY KEY);
         CREATE TABLE public.parent (id int PRIMARY KEY);
         CREATE TABLE feel (id int PRIMARY KEY, m s.mood, p int REFERENCES s.parent)",
    );
    src.exec(&format!(
        "ALTER DATABASE {} SET search_path = public, s;
         INSERT INTO s.parent VALUES (1), (2);
         INSERT INTO feel VALUES (1, 'ok', 1), (2, 'sad', 2)",
        src.quoted_name()
    ));
    // On the destination s comes first: a key read under that path would name s.parent
    // without its schema, and come back against public.parent under another.
    dst.exec(&format!(
        "ALTER DATABASE {} SET search_path = s, public",
        dst.quoted_name()
    ));

    let out = copy(&src, &dst, &["--dry-run", "--json"]);
    assert_exit!(out, exit::SUCCESS);
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).expect("the plan is JSON");
    let definitions: Vec<&str> = plan["foreign_keys"]
        .as_array()
        .expect("foreign_keys")
        .iter()
        .filter_map(|key| key["definition"].as_str())
        .collect();
    assert_eq!(
        definitions,
        ["FOREIGN KEY (p) REFERENCES s.parent(id)"],
        "{out:?}"
    );

    let out = copy(&src, &dst, &["--verify"]);
    assert_exit!(out, exit::SUCCESS);
    assert_eq!(src.checksum("feel", &[]), dst.checksum("feel", &[]));
    assert_eq!(
        dst.scalar_string(
            "SELECT n.nspname FROM pg_constraint k
             JOIN pg_class r ON r.oid = k.confrelid
             JOIN pg_namespace n ON n.oid = r.relnamespace
             WHERE k.conname = 'feel_p_fkey'"
        ),
        "s",
        "the key came back against the table it referenced"
    );
}

#[test]
fn a_standby_source_copies_and_refuses_its_unlogged_tables_by_name() {
    // pg_basebackup makes the standby: the system's, with a server of its own version.
    let primary =
        util::start_cluster(util::ClusterOptions::default().server_bindir(util::bindir()));
    let on_primary = primary.create_db(&test_name!());
    on_primary.exec(
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t SELECT i, md5(i::text) FROM generate_series(1, 1000) i;
         CREATE UNLOGGED TABLE scratch (id int);
         INSERT INTO scratch SELECT generate_series(1, 100)",
    );
    let standby = util::start_standby(&primary);
    let src = standby.db(&on_primary.name);
    // Rows written after the base backup arrive by streaming.
    on_primary.exec("INSERT INTO t SELECT i, md5(i::text) FROM generate_series(1001, 1100) i");
    wait_for(
        || src.count("t") == 1100,
        "the standby to replay the new rows",
    );
    assert_eq!(
        src.scalar_string("SELECT pg_is_in_recovery()::text"),
        "true"
    );

    let dst = util::dest().create_db(&test_name!());
    dst.exec(
        "CREATE TABLE t (id int PRIMARY KEY, v text); CREATE TABLE scratch (id int);
         INSERT INTO t VALUES (-1, 'old'); INSERT INTO scratch VALUES (-1)",
    );

    let out = copy(&src, &dst, &[]);
    assert_exit!(out, exit::USAGE);
    assert!(
        out.stderr
            .contains("the source is a standby, and a standby has no rows for unlogged tables")
            && out.stderr.contains("\n  public.scratch\n"),
        "{out:?}"
    );
    assert_eq!(dst.count("t"), 1, "nothing was changed");

    let out = copy(&src, &dst, &["--exclude-tables", "scratch", "--verify"]);
    assert_exit!(out, exit::SUCCESS);
    assert_eq!(on_primary.checksum("t", &[]), dst.checksum("t", &[]));
    assert!(
        out.stdout.contains("verified: 1 of 1 copied tables match"),
        "{out:?}"
    );
    assert_eq!(dst.count("scratch"), 1, "left out, left alone");
}

#[test]
fn a_latin1_source_copies_and_verifies_against_a_utf8_destination() {
    let src = util::source().create_db_encoded(&test_name!(), "LATIN1");
    let dst = util::dest().create_db(&test_name!());
    both(
        &src,
        &dst,
        "CREATE TYPE mood AS ENUM ('gaîté', 'ennui');
         CREATE TABLE words (id int PRIMARY KEY, w text, moods mood[])",
    );
    src.exec("INSERT INTO words VALUES (1, 'éèà', '{gaîté}'), (2, 'Ça coûte £5', '{ennui,gaîté}')");

    let out = copy(&src, &dst, &["--verify"]);
    assert_exit!(out, exit::SUCCESS);
    assert_eq!(dst.scalar_string("SELECT w FROM words WHERE id = 1"), "éèà");
    // Compared as the client reads them (UTF-8 from both): a checksum on each server would
    // hash each one's own encoding.
    let rows = "SELECT id, w, moods::text FROM words ORDER BY id";
    assert_eq!(src.rows_text(rows), dst.rows_text(rows));
    assert!(
        out.stdout.contains("verified: 1 of 1 copied tables match"),
        "{out:?}"
    );
    let out = verify(&src, &dst, &[]);
    assert_exit!(out, exit::SUCCESS);
}

/// Polls `done` for up to a minute.
fn wait_for(mut done: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "waited a minute for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
