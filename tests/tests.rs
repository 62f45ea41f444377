//! Integration tests: the real `pgcopy` binary against throwaway PostgreSQL clusters.

mod util;

#[test]
fn harness_starts_two_clusters_and_isolates_databases() {
    let (src, dst) = util::pair("harness_starts_two_clusters_and_isolates_databases");

    assert_ne!(util::source().port, util::dest().port);
    let system_id = "SELECT system_identifier FROM pg_control_system()";
    assert_ne!(
        src.scalar_string(system_id),
        dst.scalar_string(system_id),
        "source and dest must be two different servers"
    );

    let user_relations =
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                          WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
                            AND n.nspname NOT LIKE 'pg_toast%'";
    assert_eq!(
        src.scalar_i64(user_relations),
        0,
        "a fresh database is empty"
    );
    assert_eq!(
        dst.scalar_i64(user_relations),
        0,
        "a fresh database is empty"
    );

    // Same rows, different physical column order: the checksum names columns, so they match.
    src.exec(
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a'), (2, NULL)",
    );
    dst.exec("CREATE TABLE t (v text, id int PRIMARY KEY); INSERT INTO t (id, v) VALUES (2, NULL), (1, 'a')");
    assert_eq!(src.count("t"), 2);
    assert_eq!(
        src.checksum("t", &["id", "v"]),
        dst.checksum("t", &["id", "v"])
    );
    assert!(src.checksum("t", &["id", "v"]).starts_with("2:"));
    dst.exec("UPDATE t SET v = 'b' WHERE id = 2");
    assert_ne!(
        src.checksum("t", &["id", "v"]),
        dst.checksum("t", &["id", "v"])
    );

    // The URL pgcopy gets reaches the same database over TCP.
    let mut over_tcp = postgres::Client::connect(&src.url(), postgres::NoTls)
        .unwrap_or_else(|e| panic!("connecting to {}: {e}", src.url()));
    let row = over_tcp
        .query_one("SELECT current_database(), count(*) FROM t", &[])
        .expect("querying over TCP");
    assert_eq!(row.get::<_, String>(0), src.name);
    assert_eq!(row.get::<_, i64>(1), 2);

    // A second database of the same cluster does not see the first one's tables.
    let other = util::source().create_db("harness_other_database");
    assert_eq!(other.scalar_i64(user_relations), 0);
}
