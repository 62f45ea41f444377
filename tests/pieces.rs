//! Big tables in pieces: split by an integer key, a composite key, heap pages, and a table
//! whose bytes are nearly all TOAST; every piece from the one snapshot, the table identical
//! afterwards, its indexes and keys as they were.

use crate::util::{self, assert_exit, assert_same_data, both, copy, exit, pair, TestDb};

/// Every index of the database with its definition, to compare before and after.
fn indexes(db: &TestDb) -> Vec<Vec<Option<String>>> {
    db.rows_text(
        "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid)
         FROM pg_index JOIN pg_class c ON c.oid = indrelid
         WHERE c.relnamespace = 'public'::regnamespace ORDER BY 1",
    )
}

/// The `pieces` the JSON report gives `table`.
fn pieces_of(stdout: &str, table: &str) -> u64 {
    let report: serde_json::Value = serde_json::from_str(stdout).expect("the JSON report");
    report["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .find(|t| t["table"] == table)
        .unwrap_or_else(|| panic!("{table} in {stdout}"))["pieces"]
        .as_u64()
        .expect("pieces")
}

/// Copies with pieces of 1 MiB and checks that `table` went in more than one piece and came
/// out identical, with every index as it was.
#[track_caller]
fn copy_in_pieces(src: &TestDb, dst: &TestDb, table: &str) -> u64 {
    let before = indexes(dst);
    let out = copy(
        src,
        dst,
        &[
            "--split-tables-larger-than",
            "1MiB",
            "--json",
            "--parallel",
            "3",
        ],
    );
    assert_exit!(out, exit::SUCCESS);
    let pieces = pieces_of(&out.stdout, table);
    assert!(pieces > 1, "{table} was not split: {}", out.stdout);
    assert_same_data(src, dst, &[table]);
    assert_eq!(indexes(dst), before);
    let verify = util::verify(src, dst, &[]);
    assert_exit!(verify, exit::SUCCESS);
    pieces
}

#[test]
fn splits_a_table_by_its_integer_key() {
    let (src, dst) = pair!();
    both(
        &src,
        &dst,
        "CREATE TABLE events (id bigint PRIMARY KEY, kind int, note text, at timestamptz);
         CREATE INDEX events_at ON events (at);
         CREATE INDEX events_kind_note ON events (kind, note);",
    );
    src.exec(
        "INSERT INTO events
         SELECT i, i % 7, repeat(md5(i::text), 3), timestamptz '2024-01-01' + i * interval '1 s'
         FROM generate_series(1, 60000) AS i;
         ANALYZE events",
    );
    // Stale rows the copy replaces, although pieces commit one by one.
    dst.exec("INSERT INTO events VALUES (-1, 0, 'stale', now())");
    let pieces = copy_in_pieces(&src, &dst, "events");
    assert!(pieces >= 4, "{pieces} pieces");
}

/// Index builds get at least 256 MB, and the server's own `maintenance_work_mem` where it is
/// larger: the split table's builds on their own sessions and the whole table's inside its
/// load. `trace_sort`, set for this database alone, logs each build's sort memory.
#[test]
fn index_builds_take_the_servers_larger_maintenance_work_mem() {
    let (src, dst) = pair!();
    both(
        &src,
        &dst,
        "CREATE TABLE big (id bigint PRIMARY KEY, note text);
         CREATE INDEX big_note ON big (note);
         CREATE TABLE small (id int PRIMARY KEY, note text);",
    );
    src.exec(
        "INSERT INTO big SELECT i, md5(i::text) FROM generate_series(1, 40000) AS i;
         INSERT INTO small SELECT i, md5(i::text) FROM generate_series(1, 1000) AS i;
         ANALYZE",
    );
    dst.exec(&format!(
        "ALTER DATABASE {0} SET maintenance_work_mem = '1GB';
         ALTER DATABASE {0} SET trace_sort = on",
        dst.quoted_name()
    ));
    let out = copy(
        &src,
        &dst,
        &[
            "--split-tables-larger-than",
            "1MiB",
            "--indexes",
            "rebuild",
            "--json",
        ],
    );
    assert_exit!(out, exit::SUCCESS);
    assert!(pieces_of(&out.stdout, "big") > 1, "{}", out.stdout);
    assert_same_data(&src, &dst, &["big", "small"]);
    // Only this test's database traces its sorts. A unique index's build also sorts its
    // dead rows apart, in work_mem.
    let log = util::dest().log();
    let builds = |memory: &str| {
        log.lines()
            .filter(|line| line.contains("begin index sort") && line.contains(memory))
            .count()
    };
    // big's two indexes, small's one.
    assert!(builds("workMem = 1048576,") >= 3, "{log}");
    assert_eq!(builds("workMem = 262144,"), 0, "{log}");
}

/// An analyzed table is cut at its key's histogram (ANALYZE samples rows from all over the
/// table), so its pieces hold about as many rows each; one changed much since is cut at a
/// sample of its pages, and its pieces still cover every row once.
#[test]
fn pieces_of_an_analyzed_table_hold_about_as_many_rows() {
    let (src, dst) = pair!();
    both(
        &src,
        &dst,
        "CREATE TABLE events (id bigint PRIMARY KEY, note text)",
    );
    src.exec(
        "INSERT INTO events SELECT i * 3, repeat(md5(i::text), 3)
         FROM generate_series(1, 60000) AS i",
    );
    // ANALYZE counts as fresh the rows whose insert the statistics already know of.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while src.scalar_i64("SELECT n_tup_ins FROM pg_stat_user_tables WHERE relname = 'events'")
        < 60000
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the inserts never showed"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    src.exec("ANALYZE events");
    // Before PostgreSQL 15 the statistics collector hears of the ANALYZE a moment later.
    while src
        .scalar_i64("SELECT n_mod_since_analyze FROM pg_stat_user_tables WHERE relname = 'events'")
        > 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the ANALYZE never showed"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let sizes = |src: &TestDb| -> Vec<i64> {
        let out = copy(
            src,
            &dst,
            &["--split-tables-larger-than", "1MiB", "--dry-run", "--json"],
        );
        assert_exit!(out, exit::SUCCESS);
        let plan: serde_json::Value = serde_json::from_str(&out.stdout).expect("the JSON plan");
        let table = plan["tables"]
            .as_array()
            .and_then(|tables| tables.iter().find(|t| t["table"] == "events"))
            .unwrap_or_else(|| panic!("events in {}", out.stdout));
        table["piece_ranges"]
            .as_array()
            .unwrap_or_else(|| panic!("piece ranges in {}", out.stdout))
            .iter()
            .map(|range| {
                src.scalar_i64(&format!(
                    "SELECT count(*) FROM events {}",
                    range.as_str().expect("a range")
                ))
            })
            .collect()
    };
    let even = sizes(&src);
    assert!(even.len() >= 4, "{even:?}");
    assert_eq!(even.iter().sum::<i64>(), 60000, "{even:?}");
    let (least, most) = (even.iter().min().unwrap(), even.iter().max().unwrap());
    assert!(most * 10 <= least * 13, "pieces of {even:?} rows");
    // Twice the rows since ANALYZE: its histogram no longer tells.
    src.exec(
        "INSERT INTO events SELECT i * 3 + 1, repeat(md5(i::text), 3)
         FROM generate_series(1, 60000) AS i",
    );
    let sampled = sizes(&src);
    assert!(sampled.len() >= 4, "{sampled:?}");
    assert_eq!(sampled.iter().sum::<i64>(), 120000, "{sampled:?}");
}

#[test]
fn splits_a_table_by_its_composite_text_key() {
    let (src, dst) = pair!();
    both(
        &src,
        &dst,
        "CREATE TABLE readings (site text COLLATE \"C\", n int, value float8, PRIMARY KEY (site, n));",
    );
    src.exec(
        "INSERT INTO readings
         SELECT 'site ''' || (i % 13) || '''', i, random() FROM generate_series(1, 80000) AS i;
         ANALYZE readings",
    );
    copy_in_pieces(&src, &dst, "readings");
}

#[test]
fn splits_a_table_without_a_key_by_pages() {
    let (src, dst) = pair!();
    both(
        &src,
        &dst,
        "CREATE TABLE log_lines (line text, at timestamptz)",
    );
    src.exec(
        "INSERT INTO log_lines
         SELECT repeat(md5(i::text), 2), now() FROM generate_series(1, 50000) AS i;
         -- Holes and moved rows, as a table that lives has.
         DELETE FROM log_lines WHERE random() < 0.1;
         UPDATE log_lines SET at = at + interval '1 s' WHERE random() < 0.1",
    );
    let out = copy(
        &src,
        &dst,
        &["--split-tables-larger-than", "1MiB", "--dry-run"],
    );
    assert_exit!(out, exit::SUCCESS);
    // TID range scans came with PostgreSQL 14: a 13 source's table stays whole, and says so.
    if src.scalar_i64("SELECT current_setting('server_version_num')::int") < 140000 {
        assert!(
            out.stderr
                .contains("reading pages by TID range needs PostgreSQL 14"),
            "{out:?}"
        );
        return;
    }
    assert!(out.stdout.contains("by ranges of its pages"), "{out:?}");
    copy_in_pieces(&src, &dst, "log_lines");
}

#[test]
fn splits_a_table_whose_bytes_are_nearly_all_toast() {
    let (src, dst) = pair!();
    both(
        &src,
        &dst,
        "CREATE TABLE documents (id int PRIMARY KEY, body text);
         ALTER TABLE documents ALTER body SET STORAGE EXTERNAL;",
    );
    // 300 rows of 40 kB that do not compress: a heap of a few pages, 12 MB of TOAST.
    src.exec(
        "INSERT INTO documents
         SELECT i, (SELECT string_agg(md5(i::text || j::text), '') FROM generate_series(1, 1250) j)
         FROM generate_series(1, 300) AS i;
         ANALYZE documents",
    );
    assert!(src.scalar_i64("SELECT pg_relation_size('documents')") < 1024 * 1024);
    copy_in_pieces(&src, &dst, "documents");
}

#[test]
fn keys_to_a_split_table_come_back() {
    let (src, dst) = pair!();
    both(
        &src,
        &dst,
        "CREATE TABLE parent (id int PRIMARY KEY, pad text);
         CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent);",
    );
    src.exec(
        "INSERT INTO parent SELECT i, repeat('x', 100) FROM generate_series(1, 40000) AS i;
         INSERT INTO child SELECT i, i FROM generate_series(1, 1000) AS i;
         ANALYZE",
    );
    let keys = util::foreign_keys(&dst);
    copy_in_pieces(&src, &dst, "parent");
    assert_same_data(&src, &dst, &["child"]);
    assert_eq!(util::foreign_keys(&dst), keys);
}

/// Pieces the state file records as copied.
fn pieces_done(dst: &TestDb) -> usize {
    util::state_lines(dst)
        .iter()
        .filter(|l| l.starts_with("piece\t") && l.split('\t').nth(4) == Some("1"))
        .count()
}

#[test]
fn resume_after_kill_9_mid_split_copies_only_the_pieces_left() {
    let (src, dst) = pair!();
    // The key is the replica identity, so it stays through the load (and can make the last
    // piece wait below); `big_pad` is dropped before the first piece and built after the last.
    both(
        &src,
        &dst,
        "CREATE TABLE big (id bigint PRIMARY KEY, pad text);
         ALTER TABLE big REPLICA IDENTITY USING INDEX big_pkey;
         CREATE INDEX big_pad ON big (pad);",
    );
    src.exec(
        "INSERT INTO big SELECT i, repeat(md5(i::text), 4) FROM generate_series(1, 240000) AS i;
         ANALYZE big",
    );
    let rows = src.count("big");
    let before = indexes(&dst);
    // One lane, pieces of 1 MiB: the pieces go one after another.
    let split = ["--split-tables-larger-than", "1MiB", "--parallel", "1"];
    let mut child = util::spawn_copy(&src, &dst, &split);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    // Once the first piece is in (the table was emptied), another session inserts the last
    // key without committing: the last piece waits for it, the others are done.
    while dst.count("big") == 0 {
        assert!(std::time::Instant::now() < deadline, "no piece was copied");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let locker = util::hold(&dst, "INSERT INTO big VALUES (240000, 'in the way')");
    while pieces_done(&dst) + 1 < util::state_count(&dst, "piece") {
        assert!(
            std::time::Instant::now() < deadline,
            "the pieces were never recorded: {:?}",
            util::state_lines(&dst)
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().expect("sending SIGKILL");
    let killed = util::finish(child);
    locker.rollback();
    let done = pieces_done(&dst);
    let pieces = util::state_count(&dst, "piece");
    assert!(
        done < pieces,
        "the copy ended before it was stopped: {killed:?}"
    );
    util::wait_for_pgcopy_gone(&dst);
    assert!(
        dst.count("big") > 0,
        "the finished pieces' rows are in the table"
    );
    // The indexes went when the table was emptied, before the first piece; the state file
    // has what builds them again.
    assert_eq!(indexes(&dst).len(), 1, "only the key is left");
    assert_eq!(util::state_count(&dst, "index"), 1);
    // The rows of the pieces recorded as done; a piece committed but not yet recorded when
    // the copy was killed is copied again (its rows replaced), not doubled.
    let recorded: i64 = util::state_lines(&dst)
        .iter()
        .filter(|l| l.starts_with("piece\t") && l.split('\t').nth(4) == Some("1"))
        .map(|l| {
            let range = l.split('\t').nth(6).expect("the piece's range");
            src.scalar_i64(&format!("SELECT count(*) FROM big {range}"))
        })
        .sum();

    let mut resume = split.to_vec();
    resume.extend(["--resume", "--json"]);
    let out = copy(&src, &dst, &resume);
    assert_exit!(out, exit::SUCCESS);
    assert!(
        out.stderr.contains(&format!(
            "resuming public.big: {done} of its {pieces} pieces were copied"
        )),
        "{out:?}"
    );
    let report: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
    let copied_now = report["tables"][0]["rows"].as_i64().expect("rows");
    assert_eq!(
        copied_now,
        rows - recorded,
        "only the pieces left were copied"
    );
    assert_same_data(&src, &dst, &["big"]);
    assert_eq!(indexes(&dst), before);
    assert!(!util::has_state_file(&dst), "{:?}", util::state_lines(&dst));
}

/// A split table whose indexes back a primary key and unique constraints: built again side
/// by side after the last piece, each attached to its constraint, in every index mode.
#[test]
fn a_split_table_gets_its_primary_key_and_unique_constraints_back_in_every_index_mode() {
    let (src, dst) = pair!();
    both(
        &src,
        &dst,
        "CREATE TABLE accounts (id bigint PRIMARY KEY, code text UNIQUE, email text UNIQUE,
                                serial int UNIQUE, note text);",
    );
    src.exec(
        "INSERT INTO accounts
         SELECT i, 'c' || i, 'a' || i || '@x.invalid', i, repeat(md5(i::text), 2)
         FROM generate_series(1, 40000) AS i;
         ANALYZE accounts",
    );
    let before = util::constraints(&dst);
    for mode in ["auto", "rebuild", "keep"] {
        dst.exec("TRUNCATE accounts");
        let out = copy(
            &src,
            &dst,
            &[
                "--split-tables-larger-than",
                "1MiB",
                "--indexes",
                mode,
                "--json",
                "--parallel",
                "4",
            ],
        );
        assert_exit!(out, exit::SUCCESS, "--indexes {mode}");
        assert!(pieces_of(&out.stdout, "accounts") > 1, "{mode}: {out:?}");
        assert_same_data(&src, &dst, &["accounts"]);
        assert_eq!(util::constraints(&dst), before, "--indexes {mode}");
    }
}
