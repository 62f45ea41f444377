//! Scale: many small tables with catalog work that does not grow per table, one very large
//! value, and lanes that leave no table waiting while one of them is free.

use crate::util::{
    self, assert_exit, assert_same_data, both, copy, exit, pair, test_name, ClusterOptions,
};
use std::time::{Duration, Instant};

const TABLES: usize = 5000;

#[test]
fn copies_5000_small_tables_with_a_fixed_number_of_catalog_queries() {
    // Its own server, counting every statement (pg_stat_statements ships with PostgreSQL).
    let cluster = util::start_cluster(
        ClusterOptions::default()
            .conf("shared_preload_libraries", "pg_stat_statements")
            .conf("pg_stat_statements.track", "all")
            // Not the 5,000 COPY and ANALYZE statements: they would crowd the catalog
            // queries out of pg_stat_statements' table.
            .conf("pg_stat_statements.track_utility", "off")
            .conf("max_locks_per_transaction", "256"),
    );
    let src = cluster.create_db(&test_name!("source"));
    let dst = cluster.create_db(&test_name!("dest"));
    for batch in 0..TABLES / 500 {
        let (from, to) = (batch * 500 + 1, (batch + 1) * 500);
        let create = |fill: &str| {
            format!(
                "DO $$ BEGIN FOR i IN {from}..{to} LOOP
                     EXECUTE format('CREATE TABLE t%s (id serial PRIMARY KEY, v text)', i);
                     {fill}
                 END LOOP; END $$"
            )
        };
        src.exec(&create(
            "EXECUTE format('INSERT INTO t%s (v) VALUES (''row of %s'')', i, i);",
        ));
        dst.exec(&create(""));
    }
    src.exec("CREATE EXTENSION pg_stat_statements; SELECT pg_stat_statements_reset()");

    let out = copy(&src, &dst, &["--no-progress"]);
    assert_exit!(out, exit::SUCCESS);
    assert!(
        out.stdout
            .contains(&format!("total: {TABLES} of {TABLES} tables")),
        "{out:?}"
    );
    assert!(
        out.stdout.contains(&format!("sequences set: {TABLES}")),
        "{out:?}"
    );
    for i in [1, 2500, TABLES] {
        assert_eq!(
            dst.scalar_string(&format!("SELECT v FROM t{i}")),
            format!("row of {i}")
        );
    }
    // Catalog queries on the source: the same handful whatever the number of tables.
    let catalog_calls = src.scalar_i64(
        "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND query ~ '\\m(pg_class|pg_attribute|pg_namespace|pg_type|pg_depend)\\M'
           AND query !~ 'pg_stat_statements'",
    );
    assert!(
        (1..=10).contains(&catalog_calls),
        "{catalog_calls} catalog queries for {TABLES} tables: {:?}",
        src.rows_text(
            "SELECT calls, dbid::text, left(query, 60) FROM pg_stat_statements
             WHERE query LIKE '%pg_class%' OR query LIKE '%pg_attribute%'"
        )
    );
}

#[test]
fn copies_a_single_200_mib_bytea_value() {
    let (src, dst) = pair!();
    both(
        &src,
        &dst,
        "CREATE TABLE blob (id int PRIMARY KEY, data bytea)",
    );
    src.exec(
        "INSERT INTO blob
         SELECT 1, decode(repeat(md5('x'), 200 * 1024 * 1024 / 16), 'hex')",
    );
    assert_eq!(
        src.scalar_i64("SELECT octet_length(data) FROM blob"),
        200 * 1024 * 1024
    );
    let out = copy(&src, &dst, &["--verify"]);
    assert_exit!(out, exit::SUCCESS);
    assert!(
        out.stdout.contains("verified: 1 of 1 copied tables match"),
        "{out:?}"
    );
    assert_eq!(
        dst.scalar_string("SELECT octet_length(data) || ':' || md5(data) FROM blob"),
        src.scalar_string("SELECT octet_length(data) || ':' || md5(data) FROM blob")
    );
}

/// A lane takes its next table only once its writer is done with the last, so a table never
/// waits behind another table's index builds and `ANALYZE` while a lane is free. `slow`
/// comes first (the largest file, of dead rows), and its `ANALYZE` (of an expression index
/// on a function) waits on the destination for an advisory lock the test holds; `other`
/// holds the second lane at a lock until `slow`'s index is being built. `last` must then be
/// copied on the second lane while `slow`'s build still waits: it cannot finish before the
/// test lets it, so no timing decides the outcome, only the order of events.
#[test]
fn a_table_never_waits_behind_another_tables_index_builds() {
    let (src, dst) = pair!();
    both(
        &src,
        &dst,
        "CREATE FUNCTION nap(x int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
         BEGIN
             IF x < 0 AND current_setting('pgcopy_test.nap', true) = 'on'
                AND current_query() ~* '^\\s*(ANALYZE|CREATE)' THEN
                 PERFORM pg_advisory_lock_shared(4242);
                 PERFORM pg_advisory_unlock_shared(4242);
             END IF;
             RETURN x;
         END $$;
         CREATE TABLE slow (id int PRIMARY KEY, x int NOT NULL, pad text NOT NULL);
         CREATE INDEX slow_nap ON slow (nap(x));
         CREATE TABLE other (id int PRIMARY KEY, note text NOT NULL);
         CREATE TABLE last (id int PRIMARY KEY, note text NOT NULL);",
    );
    // More than a lane's channel and sockets hold, so other's reader stays blocked.
    src.exec(
        "INSERT INTO slow SELECT i, i, repeat('x', 200) FROM generate_series(1, 200000) AS i;
         DELETE FROM slow;
         INSERT INTO slow SELECT -i, -i, '' FROM generate_series(1, 5) AS i;
         INSERT INTO other SELECT i, repeat(md5(i::text), 3) FROM generate_series(1, 200000) AS i;
         INSERT INTO last SELECT i, md5(i::text) FROM generate_series(1, 100) AS i;",
    );
    assert!(
        src.scalar_i64("SELECT pg_table_size('slow') - pg_table_size('other')") > 0,
        "slow must be planned first"
    );
    dst.exec(&format!(
        "ALTER DATABASE {} SET pgcopy_test.nap = 'on'",
        dst.quoted_name()
    ));
    // slow's index build waits for this session's lock until it is let go.
    let mut gate = dst.client();
    gate.batch_execute("SELECT pg_advisory_lock(4242)")
        .expect("taking the advisory lock");
    let locker = util::lock_table(&dst, "other");
    let mut child = util::spawn_copy(&src, &dst, &["--parallel", "2"]);
    let deadline = Instant::now() + Duration::from_secs(120);
    let waiting = "SELECT count(*) FROM pg_stat_activity
                   WHERE application_name = 'pgcopy' AND datname = current_database()
                     AND wait_event_type = 'Lock' AND wait_event = 'advisory'
                     AND query ~ '(INDEX|ANALYZE).*slow'";
    while dst.scalar_i64(waiting) == 0 {
        if child.try_wait().expect("pgcopy").is_some() || Instant::now() > deadline {
            panic!("slow's indexes were never built: {:?}", util::finish(child));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    locker.rollback();
    let mut client = dst.client();
    client
        .batch_execute("SET lock_timeout = '50ms'")
        .expect("setting lock_timeout");
    // last comes while slow's build still waits: had it waited behind it, it would not
    // come before the gate opens, and the deadline would fail the test.
    loop {
        // Blocked while last's load transaction is open: not there yet.
        let copied = client
            .query_one("SELECT count(*) FROM last", &[])
            .map(|row| row.get::<_, i64>(0) == 100)
            .unwrap_or(false);
        if copied {
            break;
        }
        if child.try_wait().expect("pgcopy").is_some() || Instant::now() > deadline {
            panic!(
                "last was not copied while slow's index build waited: {:?}",
                util::finish(child)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        dst.scalar_i64(waiting) > 0,
        "slow's build went on without the gate"
    );
    gate.batch_execute("SELECT pg_advisory_unlock(4242)")
        .expect("letting the build go on");
    let out = util::finish(child);
    assert_exit!(out, exit::SUCCESS);
    assert_same_data(&src, &dst, &["slow", "other", "last"]);
}
