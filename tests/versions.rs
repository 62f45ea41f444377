//! Across major versions: the heart of a copy — keys and triggers, sequences, a table of
//! many types, verify — between servers of two PostgreSQL versions, either way, and 18's own
//! features on both sides. The pairs are `PGCOPY_TEST_VERSION_PAIRS` (`13:18,18:13`, …),
//! default `13:18,18:13,18:18`; `scripts/version-matrix.sh` runs every pair of 13…18 and
//! prints the table this test prints. Server builds come from `scripts/fetch-postgres.sh`.

use crate::util::{self, assert_exit, exit, test_name, Cluster, ClusterOptions, TestDb};
use std::collections::{BTreeMap, BTreeSet};
use std::thread;

const DEFAULT_PAIRS: &str = "13:18,18:13,18:18";

/// The schema every pair copies: keys, a trigger that must not fire, serial, identity and
/// standalone sequences, and a table of many types.
const SCHEMA: &str = "
    CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
    CREATE TABLE parent (id serial PRIMARY KEY, name text NOT NULL);
    CREATE TABLE child (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        parent_id int REFERENCES parent ON DELETE CASCADE,
        amount numeric(12, 2), at timestamptz, day date, span interval,
        tags text[], doc jsonb, blob bytea, uid uuid, flag bool, ratio float8,
        m mood, moods mood[], r int4range, addr inet,
        twice numeric GENERATED ALWAYS AS (amount * 2) STORED);
    CREATE TABLE audit (what text);
    CREATE FUNCTION note() RETURNS trigger LANGUAGE plpgsql
        AS $$ BEGIN INSERT INTO public.audit VALUES (TG_TABLE_NAME); RETURN NEW; END $$;
    CREATE TRIGGER child_note AFTER INSERT ON child FOR EACH ROW EXECUTE FUNCTION note();
    CREATE SEQUENCE loose START 100;";

const DATA: &str = "
    INSERT INTO parent (name) SELECT 'p' || i FROM generate_series(1, 100) i;
    INSERT INTO child (parent_id, amount, at, day, span, tags, doc, blob, uid, flag, ratio,
                       m, moods, r, addr)
    SELECT 1 + i % 100, i * 1.25, '2024-01-01 00:00:00+00'::timestamptz + i * interval '1 hour',
           '2024-01-01'::date + i, i * interval '1 minute', ARRAY['a' || i, 'é'],
           jsonb_build_object('i', i, 'nested', jsonb_build_array(i, 'x')),
           decode(md5(i::text), 'hex'), md5(i::text)::uuid, i % 2 = 0, i / 7.0,
           (ARRAY['sad', 'ok', 'happy']::mood[])[1 + i % 3], ARRAY['ok', 'happy']::mood[],
           int4range(i, i + 10), ('10.0.' || (i % 250) || '.1')::inet
    FROM generate_series(1, 2000) i;
    TRUNCATE audit;
    SELECT setval('loose', 777);";

/// What PostgreSQL 18 brought that a copy meets: virtual generated columns, NOT ENFORCED
/// keys and checks, NOT NULL constraints in pg_constraint, uuidv7().
const SCHEMA_18: &str = "
    CREATE TABLE modern (
        id uuid DEFAULT uuidv7() PRIMARY KEY,
        a int NOT NULL,
        doubled int GENERATED ALWAYS AS (a * 2) VIRTUAL,
        parent_id int,
        CONSTRAINT modern_parent_fk FOREIGN KEY (parent_id) REFERENCES parent NOT ENFORCED,
        CONSTRAINT modern_a_positive CHECK (a > 0) NOT ENFORCED)";

const DATA_18: &str = "INSERT INTO modern (a, parent_id)
    SELECT CASE WHEN i % 10 = 0 THEN -i ELSE i END, 1000 + i FROM generate_series(1, 300) i";

pub(crate) fn pairs() -> Vec<(u32, u32)> {
    let text = std::env::var("PGCOPY_TEST_VERSION_PAIRS").unwrap_or_default();
    let text = if text.trim().is_empty() {
        DEFAULT_PAIRS.to_string()
    } else {
        text
    };
    text.split(',')
        .map(|pair| {
            let (s, d) = pair
                .trim()
                .split_once(':')
                .unwrap_or_else(|| panic!("PGCOPY_TEST_VERSION_PAIRS: {pair:?} is not S:D"));
            let major = |v: &str| -> u32 {
                v.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("PGCOPY_TEST_VERSION_PAIRS: {v:?} is no major"))
            };
            (major(s), major(d))
        })
        .collect()
}

#[test]
fn copies_between_major_versions_either_way() {
    let pairs = pairs();
    let majors: BTreeSet<u32> = pairs.iter().flat_map(|&(s, d)| [s, d]).collect();
    // One server per version, started side by side; each pair gets databases of its own.
    let servers: BTreeMap<u32, Cluster> = thread::scope(|scope| {
        let started: Vec<_> = majors
            .iter()
            .map(|&major| {
                scope.spawn(move || {
                    let bindir = util::server_bindir_of(major);
                    let cluster =
                        util::start_cluster(ClusterOptions::default().server_bindir(&bindir));
                    (major, cluster)
                })
            })
            .collect();
        started
            .into_iter()
            .map(|thread| {
                thread
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p))
            })
            .collect()
    });
    let mut results = Vec::new();
    for &(s, d) in &pairs {
        // Two databases, on one server when the versions are the same.
        let src = servers[&s].create_db(&test_name!(format!("{s}_to_{d}_source")));
        let dst = servers[&d].create_db(&test_name!(format!("{s}_to_{d}_dest")));
        let outcome = std::panic::catch_unwind(|| copy_between(&src, &dst, s >= 18 && d >= 18));
        let verdict = match &outcome {
            Ok(()) => "ok".to_string(),
            Err(panic) => panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "failed".into()),
        };
        results.push((s, d, verdict));
    }
    println!("{}", table(&majors, &results));
    let failed: Vec<String> = results
        .iter()
        .filter(|(_, _, v)| v != "ok")
        .map(|(s, d, v)| format!("{s} -> {d}: {v}"))
        .collect();
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

/// The pairs as a matrix, source versions down, destination versions across.
fn table(majors: &BTreeSet<u32>, results: &[(u32, u32, String)]) -> String {
    let mut out = String::from("source \\ destination |");
    for d in majors {
        out.push_str(&format!(" {d} |"));
    }
    out.push_str(&format!("\n--- |{}", " :---: |".repeat(majors.len())));
    for s in majors {
        out.push_str(&format!("\n{s} |"));
        for d in majors {
            let cell = match results.iter().find(|(a, b, _)| a == s && b == d) {
                Some((_, _, v)) if v == "ok" => "ok",
                Some(_) => "FAILED",
                None => "",
            };
            out.push_str(&format!(" {cell} |"));
        }
    }
    out
}

/// One pair: the schema on both sides, stale rows on the destination, a copy with
/// `--verify`, and everything a user would check afterwards.
fn copy_between(src: &TestDb, dst: &TestDb, eighteen: bool) {
    util::both(src, dst, SCHEMA);
    src.exec(DATA);
    if eighteen {
        util::both(src, dst, SCHEMA_18);
        src.exec(DATA_18);
    }
    dst.exec(
        "INSERT INTO parent (id, name) VALUES (9999, 'stale');
         INSERT INTO child (parent_id, amount) VALUES (9999, 1)",
    );
    // Widened columns, a view the destination's schema left unpopulated, a large object:
    // the catalog queries behind them on both versions.
    src.exec(
        "CREATE TABLE widened (id int PRIMARY KEY, n int, note varchar(10), doc json);
         INSERT INTO widened SELECT i, -i, 'n' || i, json_build_object('i', i)
         FROM generate_series(1, 100) i;
         CREATE MATERIALIZED VIEW constant AS SELECT 1 AS one;
         SELECT lo_from_bytea(717171, 'across versions')",
    );
    dst.exec(
        "CREATE TABLE widened (id bigint PRIMARY KEY, n numeric, note text, doc jsonb);
         CREATE MATERIALIZED VIEW constant AS SELECT 1 AS one WITH NO DATA",
    );
    let keys = util::foreign_keys(dst);
    let triggers = util::triggers(dst);
    let constraints = util::constraints(dst);

    let out = util::copy(src, dst, &["--verify"]);
    assert_exit!(out, exit::SUCCESS);
    // The tables, and the large objects.
    let tables = if eighteen { 6 } else { 5 };
    assert!(
        out.stdout.contains(&format!(
            "verified: {tables} of {tables} copied tables match"
        )),
        "{out:?}"
    );
    // Compared as the client reads them, so each server's own checksums play no part.
    for query in [
        "SELECT * FROM parent ORDER BY id",
        "SELECT * FROM child ORDER BY id",
        "SELECT count(*) FROM audit",
    ] {
        assert_eq!(dst.rows_text(query), src.rows_text(query), "{query}");
    }
    if eighteen {
        let query = "SELECT id, a, doubled, parent_id FROM modern ORDER BY id";
        assert_eq!(dst.rows_text(query), src.rows_text(query));
    }
    assert_eq!(
        dst.rows_text("SELECT id::text, n::text, note, doc::text FROM widened ORDER BY id"),
        src.rows_text("SELECT id::text, n::text, note, doc::jsonb::text FROM widened ORDER BY id"),
        "widened columns"
    );
    assert_eq!(
        dst.rows_text("TABLE constant"),
        src.rows_text("TABLE constant")
    );
    assert_eq!(
        dst.scalar_string("SELECT convert_from(lo_get(717171), 'UTF8')"),
        "across versions"
    );
    let out = util::run(util::pgcopy().args(["status", "--source", &src.url()]));
    assert_exit!(out, exit::USAGE);
    assert!(out.stdout.contains("wal_level = replica"), "{out:?}");
    for sequence in ["parent_id_seq", "child_id_seq", "loose"] {
        let query = format!("SELECT last_value, is_called FROM {sequence}");
        assert_eq!(dst.rows_text(&query), src.rows_text(&query), "{sequence}");
    }
    assert_eq!(util::foreign_keys(dst), keys, "keys as they were");
    assert_eq!(util::triggers(dst), triggers, "triggers as they were");
    assert_eq!(
        util::constraints(dst),
        constraints,
        "constraints as they were"
    );

    // A subset and masks inside JSON, in each version's SQL: the closure, jsonb_set, the
    // keyed rewrite, verify of the subset. (18's NOT ENFORCED key is not followed.)
    let rules = util::rules_file(
        dst,
        "rules",
        r#"
        [subset."public.parent"]
        limit = 10
        [mask."public.child"]
        "doc.nested" = "null"
        # Cast by the source to the destination's types, bigint and jsonb: hashed as those.
        [mask."public.widened"]
        id = "hash"
        "doc.i" = "hash"
        "#,
    );
    let mut cmd = util::copy_command(&src.url(), &dst.url(), &["--rules", &rules, "--verify"]);
    let out = util::run(cmd.env("PGCOPY_MASK_KEY", "a-key-across-versions-0123"));
    assert_exit!(out, exit::SUCCESS);
    assert_eq!(dst.count("parent"), 10);
    assert_eq!(dst.count("child"), src.count("child WHERE parent_id <= 10"));
    assert_eq!(
        dst.count("child WHERE doc->'nested' = 'null'::jsonb AND (doc->>'i')::bigint = id"),
        dst.count("child")
    );
    assert_eq!(
        dst.count(
            "widened WHERE id > 100 AND jsonb_typeof(doc->'i') = 'number'
                 AND (doc->>'i')::numeric > 100 AND n < 0"
        ),
        100
    );
    assert_eq!(
        dst.scalar_i64("SELECT count(DISTINCT id) FROM widened"),
        100
    );
    if eighteen {
        assert_eq!(dst.count("modern"), src.count("modern"), "comes whole");
    }
    assert_eq!(util::foreign_keys(dst), keys, "keys as they were");
}

#[test]
fn a_server_older_than_13_is_refused_at_connect_time() {
    let old =
        util::start_cluster(ClusterOptions::default().server_bindir(&util::server_bindir_of(12)));
    let out = util::run(util::pgcopy().args(["list", "--source", &old.url("postgres")]));
    assert_exit!(out, exit::USAGE);
    assert!(
        out.stderr.contains("runs PostgreSQL 12.")
            && out.stderr.contains("pgcopy needs 13 or newer"),
        "{out:?}"
    );
    let src = util::source().create_db(&test_name!());
    src.exec("CREATE TABLE t (id int)");
    let out = util::copy_to(&src.url(), &old.url("postgres"), &[]);
    assert_exit!(out, exit::USAGE);
    assert!(out.stderr.contains("pgcopy needs 13 or newer"), "{out:?}");
}

/// `EXPLAIN`'s row estimate for a query.
fn estimate(db: &TestDb, query: &str) -> i64 {
    let plan = db.scalar_string(&format!("EXPLAIN (FORMAT JSON) {query}"));
    let plan: serde_json::Value = serde_json::from_str(&plan).expect("EXPLAIN's JSON");
    plan[0]["Plan"]["Plan Rows"].as_i64().expect("Plan Rows")
}

#[test]
fn an_18_destination_gets_the_sources_statistics_instead_of_an_analyze() {
    let eighteen =
        util::start_cluster(ClusterOptions::default().server_bindir(&util::server_bindir_of(18)));
    let src = util::source().create_db(&test_name!("source"));
    let dst = eighteen.create_db(&test_name!("dest"));
    let schema = "CREATE TABLE measured (id int PRIMARY KEY, v int, tag text, tags text[]);
                  CREATE TABLE unmeasured (id int PRIMARY KEY)
                      WITH (autovacuum_enabled = false);";
    src.exec(schema);
    dst.exec(schema);
    src.exec(
        "ALTER TABLE measured SET (autovacuum_enabled = false);
         INSERT INTO measured
         SELECT i, (i * 7919) % 1000, 'tag ' || (i % 17), ARRAY['a' || i % 5, 'b']
         FROM generate_series(1, 20000) AS i;
         ANALYZE measured;
         INSERT INTO unmeasured SELECT generate_series(1, 100);",
    );

    let out = util::copy(&src, &dst, &["--parallel", "2"]);
    assert_exit!(out, exit::SUCCESS);
    assert!(out.stdout.contains("tables analyzed: 1"), "{out:?}");
    assert!(
        out.stdout
            .contains("tables given the source's planner statistics instead: 1"),
        "{out:?}"
    );
    // No ANALYZE ran on the table: its statistics are the source's.
    assert_eq!(
        dst.rows_text(
            "SELECT last_analyze::text FROM pg_stat_user_tables WHERE relname = 'measured'"
        ),
        vec![vec![None]]
    );
    let stats = "SELECT attname::text, null_frac::text, n_distinct::text,
                        most_common_vals::text, histogram_bounds::text, correlation::text,
                        most_common_elems::text
                 FROM pg_stats WHERE tablename = 'measured' ORDER BY attname";
    assert_eq!(dst.rows_text(stats), src.rows_text(stats));
    for query in [
        "SELECT * FROM measured",
        "SELECT * FROM measured WHERE v < 100",
        "SELECT * FROM measured WHERE tag = 'tag 3'",
    ] {
        assert_eq!(estimate(&dst, query), estimate(&src, query), "{query}");
    }
    // The table the source has no statistics for was analyzed.
    assert!(
        dst.scalar_i64("SELECT count(*) FROM pg_stats WHERE tablename = 'unmeasured'") > 0,
        "unmeasured was analyzed"
    );
}

#[test]
fn an_18_destination_analyzes_masked_and_subset_tables_rather_than_take_the_sources_statistics() {
    let eighteen =
        util::start_cluster(ClusterOptions::default().server_bindir(&util::server_bindir_of(18)));
    let src = util::source().create_db(&test_name!("source"));
    let dst = eighteen.create_db(&test_name!("dest"));
    let schema = "CREATE TABLE person (id int PRIMARY KEY, email text)
                      WITH (autovacuum_enabled = false);
                  CREATE TABLE visit (id int PRIMARY KEY, person_id int REFERENCES person, day int)
                      WITH (autovacuum_enabled = false);";
    src.exec(schema);
    dst.exec(schema);
    src.exec(
        "INSERT INTO person SELECT i, 'p' || (i % 20) || '@corp.com' FROM generate_series(1, 5000) i;
         INSERT INTO visit SELECT i, 1 + i % 5000, i % 100 FROM generate_series(1, 20000) i;
         ANALYZE person, visit;",
    );
    let rules = util::rules_file(
        &dst,
        "rules",
        r#"
        [mask."public.person"]
        email = { rule = "sql", expr = "'user' || id || '@example.invalid'" }
        [subset."public.visit"]
        where = "day < 10"
        "#,
    );
    let out = util::copy(&src, &dst, &["--rules", &rules]);
    assert_exit!(out, exit::SUCCESS);
    assert!(out.stdout.contains("tables analyzed: 2"), "{out:?}");
    // The masked table's statistics are its masked values, never the source's.
    let stats = dst.rows_text(
        "SELECT coalesce(most_common_vals::text, '') || coalesce(histogram_bounds::text, '')
         FROM pg_stats WHERE tablename = 'person' AND attname = 'email'",
    );
    assert!(!format!("{stats:?}").contains("corp.com"), "{stats:?}");
    assert!(
        format!("{stats:?}").contains("example.invalid"),
        "{stats:?}"
    );
    // The subset's are its own rows'.
    assert_eq!(
        dst.scalar_i64("SELECT reltuples::int8 FROM pg_class WHERE relname = 'visit'"),
        2000
    );
}

/// PostgreSQL 13 runs its replication origin functions for superusers only, whoever may
/// call them: a follower whose destination role is no superuser records how far it got in
/// pgcopy's own table there, and follows until cutover.
#[test]
fn a_role_that_is_no_superuser_follows_into_a_13_destination() {
    let source = util::logical_cluster();
    let destination =
        util::start_cluster(ClusterOptions::default().server_bindir(&util::server_bindir_of(13)));
    let name = test_name!();
    let (src, dst) = (source.create_db(&name), destination.create_db(&name));
    util::both(&src, &dst, "CREATE TABLE t (id int PRIMARY KEY, v text)");
    src.exec("INSERT INTO t SELECT i, 'v' || i FROM generate_series(1, 100) i");
    let role = "follows_into_13";
    dst.exec(&format!(
        "CREATE ROLE {role} LOGIN; GRANT CREATE ON DATABASE {} TO {role};
         ALTER TABLE t OWNER TO {role}",
        dst.quoted_name()
    ));
    let as_role = dst.url_as(role);
    let mut follower = util::copy_command(&src.url(), &as_role, &["--follow"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting pgcopy");
    util::wait_following(&dst, &mut follower);
    src.exec(
        "INSERT INTO t VALUES (101, 'after the copy'); UPDATE t SET v = 'changed' WHERE id = 1",
    );
    let (_, followed) = util::cut_over(&src.url(), &as_role, follower, &["--verify"]);
    assert!(
        followed.stderr.contains("pgcopy.follow_progress"),
        "recorded in pgcopy's table: {followed:?}"
    );
    assert_eq!(dst.count("t"), 101);
    assert_eq!(dst.scalar_string("SELECT v FROM t WHERE id = 1"), "changed");
    util::assert_nothing_left(&src, &dst);
}
