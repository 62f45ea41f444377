//! Scale: many small tables with catalog work that does not grow per table, and one very
//! large value.

use crate::util::{self, assert_exit, both, copy, exit, pair, test_name, ClusterOptions};

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
