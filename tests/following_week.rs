//! A DBA's week while a follower runs, each shape one that lost, doubled or stopped data
//! before: rows equal but not identical in a `REPLICA IDENTITY FULL` table, identity columns
//! `GENERATED ALWAYS`, composite and `regclass` columns, a deferrable primary key, and the
//! source restarted (fast and immediate) mid-stream.

use crate::util::{
    self, assert_exit, assert_nothing_left, cut_over, exit, logical_cluster, pgbench, test_name,
    wait_following, wait_pgbench, wait_streaming_anew, ClusterOptions,
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
    let (logical, destination) = (
        logical_cluster(),
        util::start_cluster(ClusterOptions::default()),
    );
    let src = logical.create_db(&test_name!());
    let dst = destination.create_db(&test_name!());
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
    let (_, followed) = cut_over(&src, &dst, follower, &["--verify"]);
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
    let streaming = "SELECT coalesce(max(active_pid), 0) FROM pg_replication_slots";
    for stop in ["fast", "immediate"] {
        let writers = pgbench(&src, 2, 3);
        wait_pgbench(writers);
        let before = src.scalar_i64(streaming);
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
    let (_, followed) = cut_over(&src, &dst, follower, &[]);
    assert!(
        followed
            .stderr
            .matches("going on from where the destination is")
            .count()
            >= 2,
        "{followed:?}"
    );
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
