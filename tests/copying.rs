//! Copying data: types of every kind, columns in another order, generated columns,
//! partitions, names that need quoting, the text fallback, filters, a table that fails while
//! the others are copied, the dry run, ANALYZE afterwards; and the harness itself.

use crate::util::{self, assert_exit, both, copy, exit, foreign_keys, pair, shift_oids, TestDb};

const MIXED_SCHEMA: &str = "
    CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
    CREATE TYPE point3 AS (x float8, y float8, label text);
    CREATE TABLE mixed (
        id int PRIMARY KEY,
        amount numeric(20, 5),
        note text,
        doc jsonb,
        blob bytea,
        at timestamptz,
        uid uuid,
        ints int[],
        words text[],
        feeling mood,
        spot point3,
        span interval,
        ratio float8
    );";

const MIXED_DATA: &str = "
    INSERT INTO mixed
    SELECT i, i * 1.23456, 'row ' || i || E'\\nwith a newline, a tab\\t and \\\\ backslash',
           jsonb_build_object('i', i, 'nested', jsonb_build_array(i, 'x')),
           decode(md5(i::text), 'hex'), timestamptz '2024-01-01 00:00+02' + i * interval '1 minute',
           md5(i::text)::uuid, ARRAY[i, -i, NULL], ARRAY['a', NULL, 'c ' || i],
           (ARRAY['sad', 'ok', 'happy'])[1 + i % 3]::mood, ROW(i / 3.0, -i, 'p' || i)::point3,
           i * interval '1 day 2 hours', 1.0 / i
    FROM generate_series(1, 2000) AS i;
    INSERT INTO mixed (id) VALUES (0);";

const MIXED_COLUMNS: &[&str] = &[
    "id", "amount", "note", "doc", "blob", "at", "uid", "ints", "words", "feeling", "spot", "span",
    "ratio",
];

#[test]
fn copies_pgbench_and_mixed_types_identically() {
    let (src, dst) = pair!();
    util::load_pgbench(&src, 1);
    src.exec(MIXED_SCHEMA);
    src.exec(MIXED_DATA);
    shift_oids(&dst);
    util::pgbench_schema(&dst);
    dst.exec(MIXED_SCHEMA);
    let keys_before = foreign_keys(&dst);
    assert_eq!(keys_before.len(), 5, "pgbench --foreign-keys makes 5 keys");

    let out = copy(&src, &dst, &[]);
    assert_exit!(out, exit::SUCCESS);

    for table in [
        "pgbench_accounts",
        "pgbench_branches",
        "pgbench_tellers",
        "pgbench_history",
    ] {
        assert_eq!(
            src.checksum(table, &[]),
            dst.checksum(table, &[]),
            "{table}"
        );
    }
    assert_eq!(src.count("pgbench_accounts"), 100_000);
    assert_eq!(
        src.checksum("mixed", MIXED_COLUMNS),
        dst.checksum("mixed", MIXED_COLUMNS)
    );
    assert_eq!(dst.count("mixed"), 2001);
    assert_eq!(foreign_keys(&dst), keys_before, "keys come back identical");
    assert!(out.stdout.contains("total: 5 of 5 tables"), "{out:?}");
    assert!(out.stdout.contains("public.pgbench_accounts"), "{out:?}");
}

#[test]
fn matches_columns_by_name_when_the_destination_orders_them_differently() {
    let (src, dst) = pair!();
    src.exec(MIXED_SCHEMA);
    src.exec(MIXED_DATA);
    shift_oids(&dst);
    dst.exec(
        "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
         CREATE TYPE point3 AS (x float8, y float8, label text);
         CREATE TABLE mixed (
             ratio float8, span interval, spot point3, feeling mood, words text[], ints int[],
             uid uuid, at timestamptz, blob bytea, doc jsonb, note text, amount numeric(20, 5),
             id int PRIMARY KEY, extra text DEFAULT 'dest only')",
    );

    let out = copy(&src, &dst, &[]);
    assert_exit!(out, exit::SUCCESS);
    assert_eq!(
        src.checksum("mixed", MIXED_COLUMNS),
        dst.checksum("mixed", MIXED_COLUMNS)
    );
    assert_eq!(
        dst.count("mixed WHERE extra = 'dest only'"),
        2001,
        "a destination-only column gets its default"
    );
}

#[test]
fn leaves_generated_columns_to_the_destination() {
    let (src, dst) = pair!();
    both(
        &src,
        &dst,
        "CREATE TABLE g (id int, price numeric, qty int,
                         total numeric GENERATED ALWAYS AS (price * qty) STORED)",
    );
    src.exec(
        "INSERT INTO g (id, price, qty) SELECT i, i / 10.0, i % 7 FROM generate_series(1, 500) i",
    );

    let out = copy(&src, &dst, &[]);
    assert_exit!(out, exit::SUCCESS);
    assert_eq!(
        src.checksum("g", &["id", "price", "qty", "total"]),
        dst.checksum("g", &["id", "price", "qty", "total"])
    );

    let dry = copy(&src, &dst, &["--dry-run"]);
    assert_exit!(dry, exit::SUCCESS);
    assert!(dry.stdout.contains("total (generated)"), "{dry:?}");
}

#[test]
fn copies_partitioned_tables_through_their_partitions() {
    let (src, dst) = pair!();
    both(
        &src,
        &dst,
        "CREATE TABLE events (id bigint, at date, payload text) PARTITION BY RANGE (at);
         CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
         CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')
             PARTITION BY LIST (payload);
         CREATE TABLE events_2025_a PARTITION OF events_2025 FOR VALUES IN ('a');
         CREATE TABLE events_2025_rest PARTITION OF events_2025 DEFAULT;
         CREATE TABLE other (id int)",
    );
    src.exec(
        "INSERT INTO events SELECT i, date '2024-03-01' + i, CASE WHEN i % 2 = 0 THEN 'a' ELSE 'b' END
         FROM generate_series(1, 600) i;
         INSERT INTO other VALUES (1)",
    );

    let out = copy(&src, &dst, &["--include-tables", "events"]);
    assert_exit!(out, exit::SUCCESS);
    assert_eq!(
        src.checksum("events", &["id", "at", "payload"]),
        dst.checksum("events", &["id", "at", "payload"])
    );
    for leaf in ["events_2024", "events_2025_a", "events_2025_rest"] {
        assert!(out.stdout.contains(&format!("public.{leaf}")), "{out:?}");
        assert_eq!(src.count(leaf), dst.count(leaf), "{leaf}");
    }
    assert_eq!(dst.count("other"), 0, "not selected");
}

#[test]
fn copies_tables_and_columns_with_quotes_spaces_and_capitals() {
    let (src, dst) = pair!();
    both(
        &src,
        &dst,
        r#"CREATE SCHEMA "Sales Data";
           CREATE TABLE "Sales Data"."Order ""Lines""" ("Line ID" int, "qty""x" int, "Ünïcode" text)"#,
    );
    src.exec(
        r#"INSERT INTO "Sales Data"."Order ""Lines""" SELECT i, i * 2, 'ü' || i FROM generate_series(1, 50) i"#,
    );

    let out = copy(&src, &dst, &["--include-tables", r#"Order "Lines""#]);
    assert_exit!(out, exit::SUCCESS);
    // The report names it as SQL would need it written.
    assert!(
        out.stdout.contains(r#""Sales Data"."Order ""Lines""""#),
        "{out:?}"
    );
    let table = r#""Sales Data"."Order ""Lines""""#;
    let columns = [r#""Line ID""#, r#""qty""x""#, r#""Ünïcode""#];
    assert_eq!(src.checksum(table, &columns), dst.checksum(table, &columns));
    assert_eq!(dst.count(table), 50);
}

#[test]
fn empties_a_destination_table_whose_source_is_empty() {
    let (src, dst) = pair!();
    both(&src, &dst, "CREATE TABLE stale (id int, v text)");
    dst.exec("INSERT INTO stale SELECT i, 'old' FROM generate_series(1, 100) i");

    let out = copy(&src, &dst, &[]);
    assert_exit!(out, exit::SUCCESS);
    assert_eq!(dst.count("stale"), 0);
}

#[test]
fn falls_back_to_text_for_types_without_a_portable_binary_form() {
    let (src, dst) = pair!();
    shift_oids(&dst);
    let schema = "CREATE TYPE state AS ENUM ('new', 'done');
         CREATE TABLE grants (id int, acl aclitem[]);
         CREATE TABLE tasks (id int, states state[]);
         CREATE TABLE plain (id int, s state)";
    both(&src, &dst, schema);
    src.exec(
        "INSERT INTO grants SELECT i, ARRAY['postgres=arwdDxt/postgres'::aclitem] FROM generate_series(1, 20) i;
         INSERT INTO tasks SELECT i, ARRAY['new', 'done']::state[] FROM generate_series(1, 20) i;
         INSERT INTO plain SELECT i, 'done' FROM generate_series(1, 20) i",
    );

    let out = copy(&src, &dst, &[]);
    assert_exit!(out, exit::SUCCESS);
    for table in ["grants", "tasks", "plain"] {
        assert_eq!(
            src.checksum(table, &[]),
            dst.checksum(table, &[]),
            "{table}"
        );
    }
    assert!(
        out.stderr.contains("public.grants travels in text format")
            && out.stderr.contains("acl (aclitem[])"),
        "{out:?}"
    );
    assert!(
        out.stderr.contains("public.tasks travels in text format"),
        "{out:?}"
    );
    assert!(
        !out.stderr.contains("public.plain travels in text format"),
        "a bare enum goes in binary: {out:?}"
    );
    let line = |name: &str| {
        out.stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_default()
            .to_string()
    };
    assert!(line("public.grants ").contains("text"), "{out:?}");
    assert!(line("public.plain ").contains("binary"), "{out:?}");
}

#[test]
fn include_and_exclude_filters_select_tables() {
    let (src, dst) = pair!();
    both(
        &src,
        &dst,
        "CREATE SCHEMA audit;
         CREATE TABLE app_users (id int); CREATE TABLE app_orders (id int);
         CREATE TABLE app_log (id int); CREATE TABLE misc (id int);
         CREATE TABLE audit.app_trail (id int)",
    );
    for t in [
        "app_users",
        "app_orders",
        "app_log",
        "misc",
        "audit.app_trail",
    ] {
        src.exec(&format!("INSERT INTO {t} VALUES (1), (2)"));
    }

    let out = copy(
        &src,
        &dst,
        &[
            "--include-tables",
            "app_*,misc",
            "--exclude-tables",
            "*_log",
            "--exclude-schemas",
            "audit",
        ],
    );
    assert_exit!(out, exit::SUCCESS);
    let counts: Vec<i64> = [
        "app_users",
        "app_orders",
        "misc",
        "app_log",
        "audit.app_trail",
    ]
    .iter()
    .map(|t| dst.count(t))
    .collect();
    assert_eq!(counts, [2, 2, 2, 0, 0]);

    let out = copy(&src, &dst, &["--include-schemas", "audit"]);
    assert_exit!(out, exit::SUCCESS);
    assert_eq!(dst.count("audit.app_trail"), 2);

    let out = copy(&src, &dst, &["--include-tables", "nothing_like_this*"]);
    assert_exit!(out, exit::USAGE);
    assert!(
        out.stderr.contains("no source table matches the filters"),
        "{out:?}"
    );
    assert!(
        out.stderr
            .contains("\"nothing_like_this*\" matches no table"),
        "{out:?}"
    );
}

#[test]
fn a_parent_named_in_a_filter_warns_about_the_inheritance_children_it_leaves_out() {
    let (src, dst) = pair!();
    both(
        &src,
        &dst,
        "CREATE TABLE parent (id int); CREATE TABLE child (extra text) INHERITS (parent)",
    );
    src.exec("INSERT INTO parent VALUES (1); INSERT INTO child VALUES (2, 'x')");

    let out = copy(&src, &dst, &["--include-tables", "parent"]);
    assert_exit!(out, exit::SUCCESS);
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
    assert_exit!(out, exit::SUCCESS);
    assert!(!out.stderr.contains("inheritance children"), "{out:?}");
    assert_eq!(dst.count("parent"), 2, "the parent with its child's rows");
}

#[test]
fn a_failing_table_keeps_its_old_rows_while_the_others_are_copied() {
    let (src, dst) = pair!();
    src.exec(
        "CREATE TABLE good (id int PRIMARY KEY);
         CREATE TABLE bad (id int PRIMARY KEY, v int);
         INSERT INTO good SELECT generate_series(1, 100);
         INSERT INTO bad SELECT i, i FROM generate_series(1, 100) i",
    );
    dst.exec(
        "CREATE TABLE good (id int PRIMARY KEY);
         CREATE TABLE bad (id int PRIMARY KEY, v int CHECK (v < 50));
         INSERT INTO bad VALUES (-1, -1), (-2, -2)",
    );

    let out = copy(&src, &dst, &[]);
    assert_exit!(out, exit::TABLES_FAILED);
    assert_eq!(dst.count("good"), 100);
    assert_eq!(
        dst.scalar_i64("SELECT sum(id) FROM bad"),
        -3,
        "old rows kept"
    );
    assert!(out.stdout.contains("total: 1 of 2 tables"), "{out:?}");
    assert!(
        out.stdout.contains("public.bad:") && out.stdout.contains("bad_v_check"),
        "the failure names the table and the server's reason: {out:?}"
    );
}

#[test]
fn dry_run_prints_the_plan_and_changes_nothing() {
    let (src, dst) = pair!();
    both(
        &src,
        &dst,
        "CREATE TABLE p (id int PRIMARY KEY); CREATE TABLE c (id int REFERENCES p)",
    );
    src.exec("INSERT INTO p VALUES (1), (2); INSERT INTO c VALUES (1)");
    dst.exec("INSERT INTO p VALUES (9)");
    let keys = foreign_keys(&dst);

    let out = util::run(util::pgcopy().args([
        "copy",
        "--source",
        &src.url(),
        "--dest",
        &dst.url(),
        "--dry-run",
    ]));
    assert_exit!(out, exit::SUCCESS);
    assert!(
        out.stdout.contains("dry run: nothing was changed"),
        "{out:?}"
    );
    assert!(
        out.stdout.contains("public.p") && out.stdout.contains("public.c"),
        "{out:?}"
    );
    assert!(out.stdout.contains("c_id_fkey"), "{out:?}");
    assert_eq!(dst.scalar_i64("SELECT id FROM p"), 9);
    assert_eq!(dst.count("c"), 0);
    assert_eq!(foreign_keys(&dst), keys);
}

#[test]
fn analyzes_the_copied_tables_unless_told_not_to() {
    let (src, dst) = pair!();
    both(
        &src,
        &dst,
        "CREATE TABLE t (id int); CREATE TABLE u (id int)",
    );
    src.exec("INSERT INTO t SELECT generate_series(1, 500)");
    // Manual ANALYZE counts in analyze_count; autovacuum's in autoanalyze_count.
    let analyzed = |db: &TestDb| {
        db.scalar_i64(
            "SELECT sum(analyze_count) FROM pg_stat_user_tables WHERE relname IN ('t', 'u')",
        )
    };

    let out = copy(&src, &dst, &["--no-analyze"]);
    assert_exit!(out, exit::SUCCESS);
    assert!(out.stdout.contains("tables analyzed: 0"), "{out:?}");
    assert_eq!(analyzed(&dst), 0);

    let out = copy(&src, &dst, &[]);
    assert_exit!(out, exit::SUCCESS);
    assert!(out.stdout.contains("tables analyzed: 2"), "{out:?}");
    // Up to PostgreSQL 14 the statistics collector reports a moment later.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while analyzed(&dst) < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(analyzed(&dst), 2);
    assert_eq!(
        dst.scalar_i64("SELECT reltuples::int8 FROM pg_class WHERE relname = 't'"),
        500,
        "the planner knows the new row count"
    );
}

#[test]
fn harness_starts_two_clusters_and_isolates_databases() {
    let (src, dst) = pair!();
    assert_ne!(util::source().port, util::dest().port);
    let system_id = "SELECT system_identifier FROM pg_control_system()";
    assert_ne!(src.scalar_string(system_id), dst.scalar_string(system_id));
    src.exec(
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a'), (2, NULL)",
    );
    dst.exec("CREATE TABLE t (v text, id int PRIMARY KEY); INSERT INTO t (id, v) VALUES (2, NULL), (1, 'a')");
    assert_eq!(
        src.checksum("t", &["id", "v"]),
        dst.checksum("t", &["id", "v"])
    );
    dst.exec("UPDATE t SET v = 'b' WHERE id = 2");
    assert_ne!(
        src.checksum("t", &["id", "v"]),
        dst.checksum("t", &["id", "v"]),
        "the checksum can fail"
    );
}

#[test]
fn an_empty_source_is_no_error_unless_filters_were_given() {
    let (src, dst) = pair!();
    src.exec(
        "CREATE SEQUENCE counter; SELECT setval('counter', 41);
         SELECT lo_from_bytea(626262, 'alone')",
    );
    dst.exec("CREATE SEQUENCE counter");

    let out = copy(&src, &dst, &[]);
    assert_exit!(out, exit::SUCCESS);
    assert!(
        out.stderr.contains("the source has no tables to copy"),
        "{out:?}"
    );
    assert_eq!(
        dst.scalar_string("SELECT convert_from(lo_get(626262), 'UTF8')"),
        "alone",
        "large objects still come"
    );
    assert_eq!(
        dst.scalar_i64("SELECT last_value FROM counter"),
        41,
        "sequences too"
    );

    let out = copy(&src, &dst, &["--exclude-tables", "nothing"]);
    assert_exit!(out, exit::USAGE);
    assert!(
        out.stderr.contains("no source table matches the filters"),
        "{out:?}"
    );
}
