//! A DBA's week while a follower runs, each shape one that lost, doubled or stopped data
//! before: rows equal but not identical in a `REPLICA IDENTITY FULL` table, identity columns
//! `GENERATED ALWAYS`, composite and `regclass` columns, a deferrable primary key, the
//! source restarted (fast and immediate) mid-stream, partitions and tables made while
//! following, a plain copy or a restore between two follows, large transactions streamed,
//! and what a follower says of what stands in its way.

use crate::util::{
    self, assert_exit, assert_nothing_left, cut_over, exit, logical_cluster, pgbench, test_name,
    wait_following, wait_pgbench, wait_published, wait_streaming_anew, ClusterOptions,
};

/// Rows whose every column is equal by `=` to another row's but whose bytes differ: `0` and
/// `-0`, `1.0` and `1.00` (in numeric and in jsonb), two boxes of one area; a composite
/// column and a `regclass` one besides, which a row found by its whole old row must also
/// take. And identity columns `GENERATED ALWAYS`, keyed and not.
const TWINS: &str = "
    CREATE TYPE pair AS (a int, b text);
    CREATE TABLE twins (f float8, n numeric, j jsonb, b box, c pair, r regclass, note text);
    ALTER TABLE twins REPLICA IDENTITY FULL;
    CREATE TABLE ids (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text);
    CREATE TABLE ids_full (id int GENERATED ALWAYS AS IDENTITY, v text);
    ALTER TABLE ids_full REPLICA IDENTITY FULL;";

#[test]
fn full_identity_rows_are_found_by_their_exact_values_and_identity_columns_taken_as_sent() {
    let (_logical, _destination, src, dst) = util::logical_pair(&test_name!());
    util::both(&src, &dst, TWINS);
    // The destination's sequence is elsewhere: the values must come from the source.
    dst.exec("SELECT setval('ids_id_seq', 500); SELECT setval('ids_full_id_seq', 500)");
    src.exec(
        "INSERT INTO twins VALUES
             (0, 1.0, '{\"a\": 1.0}', '(1,1),(0,0)', ROW(1, 'x'), 'twins', 'same'),
             ('-0', 1.00, '{\"a\": 1.00}', '(2,0.5),(0,0)', ROW(1, 'x'), 'twins', 'same');
         INSERT INTO ids (v) SELECT 'v' || i FROM generate_series(1, 3) i;
         INSERT INTO ids_full (v) SELECT 'v' || i FROM generate_series(1, 3) i",
    );
    let mut follower = util::spawn_copy(&src, &dst, &["--follow"]);
    wait_following(&dst, &mut follower);
    // The second twin on the source is the one with -0: the destination must change that one.
    src.exec(
        "UPDATE twins SET note = 'minus zero' WHERE f::text = '-0';
         UPDATE twins SET c = ROW(2, 'y') WHERE n::text = '1.00';
         INSERT INTO twins VALUES
             (1, 2.50, '{\"b\": [1]}', '(3,3),(1,1)', ROW(3, 'z'), 'ids', 'third'),
             (1, 2.5, '{\"b\": [1]}', '(3,3),(1,1)', ROW(3, 'z'), 'ids', 'third');
         DELETE FROM twins WHERE n::text = '2.50';
         UPDATE twins SET r = 'ids_full' WHERE n::text = '2.5';
         INSERT INTO ids (v) VALUES ('streamed');
         UPDATE ids SET v = 'changed' WHERE id = 2;
         INSERT INTO ids_full (v) VALUES ('streamed');
         UPDATE ids_full SET v = 'changed' WHERE id = 2;
         DELETE FROM ids_full WHERE id = 1;
         UPDATE ids SET id = DEFAULT WHERE id = 3;
         UPDATE ids_full SET id = DEFAULT, v = 'renumbered' WHERE id = 3",
    );
    let (_, followed) = cut_over(&src.url(), &dst.url(), follower, &["--verify"]);
    for table in ["twins", "ids", "ids_full"] {
        assert_eq!(
            src.checksum(table, &[]),
            dst.checksum(table, &[]),
            "{table}: {followed:?}"
        );
    }
    assert_eq!(
        dst.scalar_string("SELECT note || ' ' || (c).b FROM twins WHERE f::text = '-0'"),
        "minus zero y"
    );
    assert_nothing_left(&src, &dst);
}

#[test]
fn a_deferrable_primary_key_is_no_replica_identity() {
    let logical = logical_cluster();
    let db = logical.create_db(&test_name!());
    db.exec(
        "CREATE TABLE deferred (id int PRIMARY KEY DEFERRABLE INITIALLY DEFERRED, v text);
         CREATE TABLE nothing (id int PRIMARY KEY, v text);
         ALTER TABLE nothing REPLICA IDENTITY NOTHING",
    );
    let out = util::run(util::pgcopy().args(["status", "--source", &db.url()]));
    assert_exit!(out, exit::USAGE);
    assert!(
        out.stdout.contains(
            "public.deferred (replica identity default, and its primary key is DEFERRABLE, \
             which PostgreSQL does not use as one): ALTER TABLE \"public\".\"deferred\" \
             REPLICA IDENTITY FULL;"
        ),
        "{out:?}"
    );
    // A table with a key whose identity was set to nothing needs only its default back.
    assert!(
        out.stdout.contains(
            "public.nothing (replica identity nothing): ALTER TABLE \"public\".\"nothing\" \
             REPLICA IDENTITY DEFAULT;"
        ),
        "{out:?}"
    );
    // And the application's own UPDATE still works: nothing was published.
    let dest = util::start_cluster(ClusterOptions::default());
    let dst = dest.create_db(&test_name!());
    util::both(
        &db,
        &dst,
        "CREATE TABLE IF NOT EXISTS deferred (id int PRIMARY KEY DEFERRABLE, v text)",
    );
    db.exec("INSERT INTO deferred VALUES (1, 'a')");
    let out = util::copy(&db, &dst, &["--follow", "--include-tables", "deferred"]);
    assert_exit!(out, exit::USAGE);
    assert!(
        out.stderr
            .contains("public.deferred has no usable replica identity"),
        "{out:?}"
    );
    db.exec("UPDATE deferred SET v = 'b'");
    assert_eq!(db.scalar_i64("SELECT count(*) FROM pg_publication"), 0);
}

/// The source restarted under the follower, `-m fast` and then `-m immediate`: each time
/// it goes on from the destination's record, once the source is back.
#[test]
fn a_restarted_source_is_followed_again_without_losing_or_doubling_a_row() {
    let logical = logical_cluster();
    let destination = util::start_cluster(ClusterOptions::default());
    let src = logical.create_db(&test_name!());
    let dst = destination.create_db(&test_name!());
    util::load_pgbench(&src, 1);
    util::pgbench_schema(&dst);
    // A history with a key, so a doubled transaction is a duplicate.
    util::both(
        &src,
        &dst,
        "ALTER TABLE pgbench_history ADD COLUMN id bigserial PRIMARY KEY",
    );
    let mut follower = util::spawn_copy(&src, &dst, &["--follow", "--retries", "8"]);
    wait_following(&dst, &mut follower);
    for stop in ["fast", "immediate"] {
        let writers = pgbench(&src, 2, 3);
        wait_pgbench(writers);
        let before = util::streaming_pid(&src);
        if stop == "fast" {
            logical.stop();
        } else {
            logical.crash();
        }
        logical.start();
        wait_streaming_anew(&src, &mut follower, before);
    }
    let writers = pgbench(&src, 2, 2);
    wait_pgbench(writers);
    let (_, followed) = cut_over(&src.url(), &dst.url(), follower, &[]);
    util::assert_went_on(&followed, 2);
    util::assert_same_data(
        &src,
        &dst,
        &[
            "pgbench_accounts",
            "pgbench_branches",
            "pgbench_tellers",
            "pgbench_history",
        ],
    );
    assert_nothing_left(&src, &dst);
}

/// The partition job of a DBA's week, on both sides: next month's partition created, a
/// table filled elsewhere and attached, and a new table; rows routed into them and moved
/// into them by `UPDATE`, before the follower takes them up and after.
#[test]
fn partitions_and_tables_made_while_following_are_followed_from_their_first_row() {
    let (_logical, _destination, src, dst) = util::logical_pair(&test_name!());
    util::both(
        &src,
        &dst,
        "CREATE TABLE events (id int, at date NOT NULL, note text, PRIMARY KEY (id, at))
             PARTITION BY RANGE (at);
         CREATE TABLE events_2026_11 PARTITION OF events
             FOR VALUES FROM ('2026-11-01') TO ('2026-12-01');
         CREATE TABLE events_2026_12 PARTITION OF events
             FOR VALUES FROM ('2026-12-01') TO ('2027-01-01')",
    );
    src.exec(
        "INSERT INTO events SELECT i, date '2026-11-01' + i % 60, 'old'
           FROM generate_series(1, 600) i",
    );
    let mut follower = util::spawn_copy(&src, &dst, &["--follow"]);
    wait_following(&dst, &mut follower);
    util::both(
        &src,
        &dst,
        "CREATE TABLE events_2027_01 PARTITION OF events
             FOR VALUES FROM ('2027-01-01') TO ('2027-02-01');
         CREATE TABLE events_2027_02 (id int NOT NULL, at date NOT NULL, note text);
         CREATE TABLE audit (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, what text)",
    );
    src.exec(
        "INSERT INTO events SELECT i, date '2027-01-01' + i % 31, 'new'
           FROM generate_series(1001, 1050) i;
         UPDATE events SET at = '2027-01-15' WHERE id <= 5;
         INSERT INTO events_2027_02 SELECT i, date '2027-02-01' + i % 28, 'attached'
           FROM generate_series(2001, 2040) i;
         INSERT INTO audit (what) SELECT 'a' || i FROM generate_series(1, 20) i",
    );
    util::both(
        &src,
        &dst,
        "ALTER TABLE events ATTACH PARTITION events_2027_02
             FOR VALUES FROM ('2027-02-01') TO ('2027-03-01')",
    );
    for table in ["events_2027_01", "events_2027_02", "audit"] {
        wait_published(&src, &mut follower, table);
    }
    // Streamed now.
    src.exec(
        "INSERT INTO events SELECT i, date '2027-01-01' + i % 31, 'streamed'
           FROM generate_series(3001, 3020) i;
         UPDATE events SET at = '2027-02-15', note = 'moved' WHERE id BETWEEN 6 AND 10;
         UPDATE events SET note = 'changed' WHERE id = 2001;
         DELETE FROM events WHERE id = 2002;
         INSERT INTO audit (what) VALUES ('streamed')",
    );
    let (out, followed) = cut_over(&src.url(), &dst.url(), follower, &["--verify"]);
    assert!(
        out.stdout.contains("verified 5 tables: 5 match, 0 differ"),
        "{out:?}"
    );
    assert!(
        followed
            .stderr
            .contains("following public.events_2027_02, new on the source: copied its 40 rows"),
        "{followed:?}"
    );
    util::assert_same_data(
        &src,
        &dst,
        &[
            "events_2026_11",
            "events_2026_12",
            "events_2027_01",
            "events_2027_02",
            "audit",
        ],
    );
    assert_eq!(dst.count("events_2027_01"), 50 + 5 + 20);
    assert_eq!(
        dst.scalar_i64("SELECT last_value FROM audit_id_seq"),
        21,
        "the new table's sequence, set at cutover"
    );
    assert_nothing_left(&src, &dst);
}

/// A table made on the source only: the follower names it, cutover waits for it; once the
/// destination has it too, it is followed. Another the destination never gets is left out
/// only when cutover is told to.
#[test]
fn a_table_only_the_source_has_holds_up_the_cutover_until_it_is_followed() {
    let (_logical, _destination, src, dst) = util::logical_pair(&test_name!());
    util::both(&src, &dst, "CREATE TABLE kept (id int PRIMARY KEY)");
    src.exec("INSERT INTO kept SELECT generate_series(1, 10)");
    let mut follower = util::spawn_copy(&src, &dst, &["--follow"]);
    wait_following(&dst, &mut follower);
    src.exec(
        "CREATE TABLE fresh (id int PRIMARY KEY, v text);
         INSERT INTO fresh SELECT i, 'v' FROM generate_series(1, 30) i;
         CREATE TABLE bare (v text);
         INSERT INTO bare VALUES ('x')",
    );
    let out = util::run(&mut util::cutover_command(&src.url(), &dst.url(), &[]));
    assert_exit!(out, exit::USAGE);
    for expected in [
        "not cutting over",
        "public.fresh: the destination has no such table",
        "public.bare: the destination has no such table",
        "--allow-unfollowed",
    ] {
        assert!(out.stderr.contains(expected), "{expected}: {out:?}");
    }
    dst.exec("CREATE TABLE fresh (id int PRIMARY KEY, v text); CREATE TABLE bare (v text)");
    wait_published(&src, &mut follower, "fresh");
    src.exec("UPDATE fresh SET v = 'w' WHERE id <= 3; INSERT INTO kept VALUES (11)");
    // `bare` has no key: publishing it would break the application's updates.
    let out = util::run(&mut util::cutover_command(&src.url(), &dst.url(), &[]));
    assert_exit!(out, exit::USAGE);
    assert!(
        out.stderr.contains(
            "public.bare: it has no usable replica identity: ALTER TABLE \"public\".\"bare\" \
             REPLICA IDENTITY FULL"
        ),
        "{out:?}"
    );
    assert!(!out.stderr.contains("public.fresh"), "{out:?}");
    let out = util::run(&mut util::cutover_command(
        &src.url(),
        &dst.url(),
        &["--allow-unfollowed", "--verify"],
    ));
    let followed = util::finish(follower);
    assert_exit!(followed, exit::SUCCESS);
    assert_exit!(out, exit::VERIFY_MISMATCH);
    // Named by the follower too, with what stands in its way.
    assert!(
        followed.stderr.contains(
            "public.bare is new on the source and the filters select it, but it is not \
             followed yet: it has no usable replica identity"
        ),
        "{followed:?}"
    );
    assert!(
        out.stderr.contains("cutting over without these tables"),
        "{out:?}"
    );
    // `bare` is compared too, and differs: the destination never got its row.
    assert!(
        out.stdout.contains("verified 3 tables: 2 match, 1 differ"),
        "{out:?}"
    );
    util::assert_same_data(&src, &dst, &["kept", "fresh"]);
    assert_nothing_left(&src, &dst);
}

/// A follower killed once caught up, the source written on, then a plain copy by a
/// colleague: going on from the follower's position would apply again what the copy
/// brought (doubling the rows of a table without a key). The copy drops that position, so
/// `--resume` starts over; with nothing left to resume, `--resume` refuses.
#[test]
fn a_plain_copy_between_two_follows_is_never_applied_over_again() {
    let (_logical, _destination, src, dst) = util::logical_pair(&test_name!());
    util::both(
        &src,
        &dst,
        "CREATE TABLE log (v text); ALTER TABLE log REPLICA IDENTITY FULL;
         CREATE TABLE keyed (id int PRIMARY KEY, v text)",
    );
    let write = |from: i32, to: i32| {
        src.exec(&format!(
            "INSERT INTO log SELECT 'row ' || i FROM generate_series({from}, {to}) i;
             INSERT INTO keyed SELECT i, 'row' FROM generate_series({from}, {to}) i"
        ))
    };
    write(1, 100);
    let mut follower = util::spawn_copy(&src, &dst, &["--follow"]);
    wait_following(&dst, &mut follower);
    write(101, 150);
    let started = std::time::Instant::now();
    while dst.count("log") < 150 {
        assert!(
            started.elapsed().as_secs() < 60,
            "the follower never caught up"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    follower.kill().expect("kill -9 of the follower");
    util::finish(follower);
    write(151, 200);
    let copied = util::copy(&src, &dst, &[]);
    assert_exit!(copied, exit::SUCCESS);
    let mut resumed = util::spawn_copy(&src, &dst, &["--follow", "--resume"]);
    wait_following(&dst, &mut resumed);
    write(201, 210);
    let (_, followed) = cut_over(&src.url(), &dst.url(), resumed, &["--verify"]);
    assert!(followed.stderr.contains("starting over"), "{followed:?}");
    assert_eq!(dst.count("log"), 210);
    assert_eq!(src.checksum("keyed", &[]), dst.checksum("keyed", &[]));
    assert_nothing_left(&src, &dst);
    assert!(
        copied.stderr.contains(
            "this copy replaces its data, so that follower's record of its progress is dropped"
        ),
        "{copied:?}"
    );
    assert!(
        copied.stderr.contains("drop it with `pgcopy abandon`"),
        "{copied:?}"
    );

    let out = util::copy(&src, &dst, &["--follow", "--resume"]);
    assert_exit!(out, exit::USAGE);
    assert!(out.stderr.contains("nothing to resume"), "{out:?}");
    assert_eq!(dst.count("log"), 210, "nothing copied again");
}

/// What the commands say when something stands in the way or there is nothing to do: a
/// prepared transaction the slot waits for, named with how to end it; a second cutover
/// after the first completed; `abandon` with something to drop and with nothing.
#[test]
fn followers_say_what_stands_in_their_way_and_what_they_did() {
    let logical =
        util::start_cluster(util::logical_options().conf("max_prepared_transactions", "2"));
    let destination = util::start_cluster(ClusterOptions::default());
    let src = logical.create_db(&test_name!());
    let dst = destination.create_db(&test_name!());
    util::both(&src, &dst, "CREATE TABLE t (id int PRIMARY KEY)");
    src.exec("BEGIN; INSERT INTO t VALUES (1); PREPARE TRANSACTION 'week_gid'");
    let out = util::copy(&src, &dst, &["--follow", "--lock-timeout", "2"]);
    assert_exit!(out, exit::USAGE);
    assert!(
        out.stderr
            .contains("the prepared transaction 'week_gid' (postgres in "),
        "{out:?}"
    );
    assert!(
        out.stderr.contains("ROLLBACK PREPARED 'week_gid'"),
        "{out:?}"
    );
    src.exec("ROLLBACK PREPARED 'week_gid'");
    let abandon = || {
        util::run(util::pgcopy().args(["abandon", "--source", &src.url(), "--dest", &dst.url()]))
    };
    let out = abandon();
    assert_exit!(out, exit::SUCCESS);
    assert!(
        out.stderr
            .contains("to abandon (no replication slot or publication"),
        "{out:?}"
    );

    let mut follower = util::spawn_copy(&src, &dst, &["--follow"]);
    wait_following(&dst, &mut follower);
    cut_over(&src.url(), &dst.url(), follower, &[]);
    let out = util::run(&mut util::cutover_command(&src.url(), &dst.url(), &[]));
    assert_exit!(out, exit::USAGE);
    assert!(
        out.stderr
            .contains("A cutover that timed out or was stopped still completes"),
        "{out:?}"
    );

    let mut follower = util::spawn_copy(&src, &dst, &["--follow"]);
    wait_following(&dst, &mut follower);
    follower.kill().expect("kill -9 of the follower");
    util::finish(follower);
    let out = abandon();
    assert_exit!(out, exit::SUCCESS);
    for expected in [
        "dropped the replication slot pgcopy_follow_",
        "dropped the publication pgcopy_follow_",
        "dropped the destination's record that it held the source's transactions up to",
    ] {
        assert!(out.stderr.contains(expected), "{expected}: {out:?}");
    }
    assert_nothing_left(&src, &dst);
}

/// Transactions too large for the source's `logical_decoding_work_mem`: streamed as they run
/// rather than spilled to the source's disk (its slot's statistics say which), held by the
/// follower until they commit, while smaller ones commit in between; one that aborts, and
/// a savepoint rolled back inside one that commits, leave nothing on the destination.
#[test]
fn large_transactions_stream_as_they_run_and_aborted_ones_leave_nothing() {
    let logical =
        util::start_cluster(util::logical_options().conf("logical_decoding_work_mem", "64kB"));
    let destination = util::start_cluster(ClusterOptions::default());
    let src = logical.create_db(&test_name!());
    let dst = destination.create_db(&test_name!());
    util::both(
        &src,
        &dst,
        "CREATE TABLE big (id int PRIMARY KEY, v text); CREATE TABLE small (id int PRIMARY KEY)",
    );
    let mut follower = util::spawn_copy(&src, &dst, &["--follow"]);
    wait_following(&dst, &mut follower);
    let mut long = src.client();
    long.batch_execute(
        "BEGIN;
         INSERT INTO big SELECT i, repeat('x', 100) FROM generate_series(1, 20000) i;
         SAVEPOINT half;
         INSERT INTO big SELECT i, 'rolled back' FROM generate_series(20001, 30000) i;
         ROLLBACK TO half;
         UPDATE big SET v = 'updated' WHERE id <= 5000",
    )
    .expect("a large transaction, open");
    // Committed while the large one streams.
    src.exec("INSERT INTO small VALUES (1)");
    src.exec(
        "BEGIN;
         INSERT INTO big SELECT i, 'aborted' FROM generate_series(40001, 60000) i;
         ROLLBACK",
    );
    long.batch_execute("INSERT INTO small VALUES (2); COMMIT")
        .expect("committing the large transaction");
    src.exec("INSERT INTO small VALUES (3)");
    let started = std::time::Instant::now();
    while dst.count("small") < 3 {
        assert!(
            started.elapsed().as_secs() < 120,
            "the follower never applied them"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // A source of PostgreSQL 14 or later streams them to the follower as they run (13 can
    // only spill them to its own disk, and keeps no statistics of its slots).
    let streams = src.scalar_i64("SELECT current_setting('server_version_num')::int") >= 140000;
    let stats = streams.then(|| {
        src.scalar_string(
            "SELECT stream_txns || ' streamed, ' || spill_txns || ' spilled'
               FROM pg_stat_replication_slots WHERE slot_name LIKE 'pgcopy_follow_%'",
        )
    });
    let (_, followed) = cut_over(&src.url(), &dst.url(), follower, &["--verify"]);
    if let Some(stats) = stats {
        assert!(
            stats.ends_with(" streamed, 0 spilled"),
            "{stats}: {followed:?}"
        );
        assert!(!stats.starts_with("0 "), "{stats}: {followed:?}");
    }
    assert_eq!(dst.count("big"), 20000);
    assert_eq!(dst.count("big WHERE v = 'updated'"), 5000);
    util::assert_same_data(&src, &dst, &["big", "small"]);
    assert_nothing_left(&src, &dst);
}

/// A colleague's restore between two follows (`pg_restore --clean`: tables dropped and
/// made again, another copy's rows in them): going on would apply the changes since onto
/// other data. The resumed follower refuses, naming the tables.
#[test]
fn a_restore_between_two_follows_is_refused_by_the_resumed_follower() {
    let (_logical, _destination, src, dst) = util::logical_pair(&test_name!());
    let schema = "CREATE TABLE log (v text); ALTER TABLE log REPLICA IDENTITY FULL;
                  CREATE TABLE kept (id int PRIMARY KEY)";
    util::both(&src, &dst, schema);
    src.exec("INSERT INTO log VALUES ('a'); INSERT INTO kept VALUES (1)");
    let mut follower = util::spawn_copy(&src, &dst, &["--follow"]);
    wait_following(&dst, &mut follower);
    follower.kill().expect("kill -9 of the follower");
    util::finish(follower);
    src.exec("INSERT INTO log VALUES ('b')");
    dst.exec("DROP TABLE log; CREATE TABLE log (v text); INSERT INTO log VALUES ('a'), ('b')");
    let out = util::copy(&src, &dst, &["--follow", "--resume"]);
    assert_exit!(out, exit::USAGE);
    assert!(
        out.stderr.contains(
            "not resuming: these destination tables are not those the follower followed into"
        ) && out.stderr.contains("\"public\".\"log\""),
        "{out:?}"
    );
    assert_eq!(dst.count("log"), 2, "nothing applied over the restore");
    let out =
        util::run(util::pgcopy().args(["abandon", "--source", &src.url(), "--dest", &dst.url()]));
    assert_exit!(out, exit::SUCCESS);
    assert_nothing_left(&src, &dst);
}
