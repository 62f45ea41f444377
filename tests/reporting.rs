//! Reporting: the progress bar on a terminal, plain lines without one, the summary and the
//! JSON report, the listing of tables (text and JSON), and how much is said at each
//! verbosity.

use crate::util::{self, assert_exit, both, copy, copy_to, exit, pair, TestDb};
use std::process::Command;

/// A fresh pair (from `pair!()`) with pgbench's data on the source and its schema on the
/// destination.
fn with_pgbench((src, dst): (TestDb, TestDb)) -> (TestDb, TestDb) {
    util::load_pgbench(&src, 1);
    util::pgbench_schema(&dst);
    (src, dst)
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

/// `pgcopy copy` between the two under a pseudo-terminal (`script`), as a person at a
/// terminal would run it: its exit code and the screen it drew.
fn copy_on_a_terminal(src: &TestDb, dst: &TestDb) -> (util::Output, String) {
    let dir = util::scratch_dir(&format!("pty-{}", dst.name));
    std::fs::create_dir_all(&dir).expect("creating a temp dir");
    let typescript = dir.join("typescript");
    let binary = env!("CARGO_BIN_EXE_pgcopy");
    let inner = format!(
        "{binary} copy --yes --batch-size 8KiB --source {} --dest {}",
        src.url(),
        dst.url()
    );
    let out = util::run(
        Command::new("script")
            .args(["-q", "-e", "-c", &inner])
            .arg(&typescript)
            .env("XDG_STATE_HOME", util::state_home())
            .env("COLUMNS", "150"),
    );
    let screen = std::fs::read_to_string(&typescript).expect("reading the typescript");
    std::fs::remove_dir_all(&dir).expect("removing the temp dir");
    (out, screen)
}

#[test]
fn on_a_terminal_a_bar_stays_in_place_and_log_lines_stay_whole() {
    let (src, dst) = with_pgbench(pair!());
    let (out, screen) = copy_on_a_terminal(&src, &dst);
    assert_exit!(out, exit::SUCCESS);

    assert!(screen.contains("tables"), "a bar was drawn: {screen}");
    assert!(
        screen.contains("\r4/4 tables"),
        "the bar ends complete: {screen:?}"
    );
    assert!(screen.contains("100.00 %"), "{screen:?}");
    // The sizes in MiB, as every other line says them; none in pbr's MB.
    assert!(
        screen.contains(" MiB of ") && !screen.contains(" MB"),
        "{screen:?}"
    );
    // Every log line starts a line of its own: at a line start, or right after the erase
    // sequence that takes the bar's frame away first.
    for (at, _) in screen.match_indices("pgcopy: ") {
        let before = &screen[..at];
        assert!(
            before.is_empty() || before.ends_with('\n') || before.ends_with("\r\x1b[2K"),
            "a log line landed inside a frame: {:?}",
            &screen[at.saturating_sub(80)..(at + 40).min(screen.len())]
        );
    }
    assert!(screen.contains("total: 4 of 4 tables"), "{screen}");
    assert_eq!(
        src.checksum("pgbench_accounts", &[]),
        dst.checksum("pgbench_accounts", &[])
    );

    // A table that fails: the bar never says the copy is whole.
    both(&src, &dst, "CREATE TABLE broken (v int)");
    src.exec("INSERT INTO broken VALUES (500)");
    dst.exec("ALTER TABLE broken ADD CONSTRAINT small CHECK (v < 100)");
    let (out, screen) = copy_on_a_terminal(&src, &dst);
    assert_exit!(out, exit::TABLES_FAILED);
    assert!(screen.contains("4/5 tables, 1 failed"), "{screen:?}");
    assert!(!screen.contains("100.00 %"), "{screen:?}");
}

#[test]
fn without_a_terminal_progress_comes_as_plain_lines_without_carriage_returns() {
    let (src, dst) = pair!();
    both(
        &src,
        &dst,
        "CREATE TABLE t (id int); CREATE TABLE slow (id int)",
    );
    src.exec("INSERT INTO t SELECT generate_series(1, 1000); INSERT INTO slow VALUES (1)");
    // Hold the copy up for a few seconds so progress lines come.
    let mut locker = dst.client();
    locker
        .batch_execute("BEGIN; LOCK TABLE slow IN ACCESS EXCLUSIVE MODE")
        .expect("locking");
    let release = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(2500));
        locker.batch_execute("ROLLBACK").expect("unlocking");
    });
    let out = copy(&src, &dst, &["--progress-interval", "1"]);
    release.join().expect("the unlocking thread");

    assert_exit!(out, exit::SUCCESS);
    assert!(
        !out.stderr.contains('\r') && !out.stdout.contains('\r'),
        "{out:?}"
    );
    assert!(
        out.stderr.contains("pgcopy: info: progress: 1/2 tables, "),
        "{out:?}"
    );
    assert!(out.stderr.contains(" on disk, "), "{out:?}");
    assert!(out.stderr.contains("in flight: slow"), "{out:?}");
}

#[test]
fn json_report_is_one_document_with_the_documented_fields() {
    let (src, dst) = with_pgbench(pair!());
    dst.exec("ALTER TABLE pgbench_tellers ADD CONSTRAINT few CHECK (tid < 5)");
    let out = copy(&src, &dst, &["--json"]);
    assert_exit!(out, exit::TABLES_FAILED);
    let doc = json(&out.stdout);
    for field in [
        "pgcopy_version",
        "status",
        "exit_code",
        "source",
        "destination",
        "elapsed_seconds",
        "tables",
        "totals",
        "fk_mode",
        "foreign_keys",
        "triggers_disabled",
        "sequences_set",
        "interrupted",
        "warnings",
        "failures",
    ] {
        assert!(doc.get(field).is_some(), "{field} missing: {doc:#}");
    }
    assert_eq!(doc["status"], "failed");
    assert_eq!(doc["exit_code"], 1);
    assert_eq!(doc["totals"]["tables"], 4);
    assert_eq!(doc["totals"]["tables_failed"], 1);
    assert_eq!(doc["foreign_keys"]["dropped"], 5);
    assert_eq!(doc["foreign_keys"]["restored"], 5);
    let tables = doc["tables"].as_array().expect("tables is a list");
    let accounts = tables
        .iter()
        .find(|t| t["table"] == "pgbench_accounts")
        .expect("pgbench_accounts is reported");
    for field in [
        "schema",
        "rows",
        "bytes",
        "seconds",
        "mib_per_second",
        "format",
        "pieces",
        "status",
        "error",
    ] {
        assert!(
            accounts.get(field).is_some(),
            "{field} missing: {accounts:#}"
        );
    }
    assert_eq!(accounts["rows"], 100_000);
    assert_eq!(accounts["status"], "ok");
    let tellers = tables
        .iter()
        .find(|t| t["table"] == "pgbench_tellers")
        .expect("tellers");
    assert_eq!(tellers["status"], "failed");
    assert!(
        tellers["error"].as_str().is_some_and(|e| e.contains("few")),
        "{tellers:#}"
    );

    let out = copy_to(&src.url(), "postgres://postgres@127.0.0.1:1/x", &["--json"]);
    assert_exit!(out, exit::USAGE);
    let doc = json(&out.stdout);
    assert_eq!(doc["status"], "error");
    assert!(
        doc["error"]
            .as_str()
            .is_some_and(|e| e.contains("connecting to")),
        "{doc:#}"
    );
}

#[test]
fn list_shows_tables_rows_and_sizes_with_partitions_under_their_parent() {
    let (src, _dst) = pair!();
    src.exec(
        "CREATE TABLE big (id int, pad text);
         INSERT INTO big SELECT i, repeat('x', 200) FROM generate_series(1, 5000) i;
         CREATE TABLE small (id int); INSERT INTO small VALUES (1), (2), (3);
         CREATE TABLE m (id int, at date) PARTITION BY RANGE (at);
         CREATE TABLE m_1 PARTITION OF m FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
         CREATE TABLE m_2 PARTITION OF m FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
         INSERT INTO m SELECT i, date '2024-12-01' + i FROM generate_series(1, 60) i;
         CREATE VIEW v AS SELECT * FROM big;
         CREATE MATERIALIZED VIEW mv AS SELECT * FROM small;
         ANALYZE",
    );

    let out = util::run(util::pgcopy().args(["list", "--source", &src.url(), "--exact"]));
    assert_exit!(out, exit::SUCCESS);
    let lines: Vec<Vec<&str>> = out
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        ["schema", "table", "rows", "on", "disk"],
        "{out:?}"
    );
    assert_eq!(
        &lines[1][..3],
        ["public", "big", "5000"],
        "largest first: {out:?}"
    );
    let m = lines.iter().position(|l| l[1] == "m").expect("parent row");
    assert_eq!(lines[m][2], "60", "{out:?}");
    let under: Vec<&str> = lines[m + 1..m + 3].iter().map(|l| l[1]).collect();
    assert!(under.contains(&"m_1") && under.contains(&"m_2"), "{out:?}");
    assert!(out.stdout.contains("small"), "{out:?}");
    assert!(
        !out.stdout.contains(" v ") && !out.stdout.contains("mv"),
        "no views: {out:?}"
    );
    let total = lines.last().expect("total line");
    assert_eq!(&total[..4], ["total", "4", "tables", "5063"], "{out:?}");

    let out = util::run(util::pgcopy().args([
        "list",
        "--source",
        &src.url(),
        "--include-tables",
        "small",
    ]));
    assert_exit!(out, exit::SUCCESS);
    assert!(out.stdout.contains("est. rows"), "{out:?}");
    assert!(!out.stdout.contains("big"), "{out:?}");
}

#[test]
fn list_json_gives_bytes_and_partitions() {
    let (src, _dst) = pair!();
    src.exec(
        "CREATE TABLE m (id int, at date) PARTITION BY RANGE (at);
         CREATE TABLE m_1 PARTITION OF m FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
         INSERT INTO m SELECT i, date '2024-01-01' + i FROM generate_series(1, 30) i;
         CREATE TABLE plain (id int); INSERT INTO plain VALUES (1)",
    );
    let out = util::run(util::pgcopy().args(["list", "--json", "--exact", "--source", &src.url()]));
    assert_exit!(out, exit::SUCCESS);
    let doc = json(&out.stdout);
    assert_eq!(doc["rows_exact"], true);
    assert_eq!(doc["totals"]["tables"], 2);
    assert_eq!(doc["totals"]["rows"], 31);
    let m = doc["tables"]
        .as_array()
        .and_then(|t| t.iter().find(|e| e["table"] == "m"))
        .expect("the partitioned table");
    assert_eq!(m["partitions"][0]["table"], "m_1");
    assert_eq!(m["rows"], 30);
    assert!(m["bytes"].as_u64().is_some_and(|b| b > 0), "{m:#}");
}

#[test]
fn quiet_says_nothing_on_success_and_verbose_shows_the_sql() {
    let (src, dst) = pair!();
    both(&src, &dst, "CREATE TABLE t (id int)");
    src.exec("INSERT INTO t VALUES (1)");

    let out = copy(&src, &dst, &["-q"]);
    assert_exit!(out, exit::SUCCESS);
    assert_eq!(out.stdout, "", "{out:?}");
    assert_eq!(out.stderr, "", "{out:?}");

    let out = copy(&src, &dst, &["--verbose"]);
    assert_exit!(out, exit::SUCCESS);
    assert!(
        out.stderr
            .contains("pgcopy: debug: destination: TRUNCATE ONLY \"public\".\"t\""),
        "{out:?}"
    );
    assert!(
        out.stderr
            .contains("pgcopy: debug: copied public.t (1 rows"),
        "{out:?}"
    );

    let out = util::run(
        util::pgcopy()
            .args([
                "copy",
                "--yes",
                "--source",
                &src.url(),
                "--dest",
                &dst.url(),
            ])
            .env("RUST_LOG", "pgcopy=warn"),
    );
    assert_exit!(out, exit::SUCCESS);
    assert!(!out.stderr.contains("info:"), "RUST_LOG decides: {out:?}");
    assert!(out.stdout.contains("total: 1 of 1 tables"), "{out:?}");
}

/// Every command with its stdout and stderr closed before it writes (a reader that stopped
/// early, `| head -1`): no panic, and the exit code the command earned.
#[test]
fn a_closed_pipe_ends_output_but_never_changes_the_exit_code() {
    // Nothing listens on port 1.
    let nowhere = "postgres://nobody@127.0.0.1:1/none?connect_timeout=2";
    for (args, code) in [
        (vec!["help"], exit::SUCCESS),
        (vec!["help", "copy"], exit::SUCCESS),
        (vec!["version"], exit::SUCCESS),
        (vec!["copy", "--paralel", "2"], exit::USAGE),
        (vec!["list", "--source", nowhere], exit::USAGE),
        (vec!["status", "--source", nowhere], exit::USAGE),
        (vec!["list", "--source", nowhere, "--json"], exit::USAGE),
        (
            vec!["verify", "--source", nowhere, "--dest", nowhere],
            exit::USAGE,
        ),
        (
            vec!["copy", "--source", nowhere, "--dest", nowhere, "--dry-run"],
            exit::USAGE,
        ),
    ] {
        for _ in 0..3 {
            let mut child = util::pgcopy()
                .args(&args)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("starting pgcopy");
            drop(child.stdout.take());
            drop(child.stderr.take());
            let status = child.wait().expect("waiting for pgcopy");
            assert_eq!(status.code(), Some(code), "pgcopy {}", args.join(" "));
        }
    }
}
