//! Reliability: verification on both servers, resuming an interrupted copy, and the faults
//! and bad inputs an operator meets, each showing that nothing is lost.

use crate::integrity::{assert_same_data, keys_pair, BLOCKER_SCHEMA, KEYS_SCHEMA, KEY_TABLES};
use crate::util::{self, TestDb};
use crate::{
    both, copy, copy_to, finish, foreign_keys, key_names, lock_table, spawn_copy, state_count,
    wait_for_blocked_pgcopy, wait_for_pgcopy_gone,
};
use std::time::Duration;

fn verify(src: &TestDb, dst: &TestDb, extra: &[&str]) -> util::Output {
    util::run(
        util::pgcopy()
            .args(["verify", "--source", &src.url(), "--dest", &dst.url()])
            .args(extra),
    )
}

#[test]
fn verify_compares_counts_and_checksums_computed_on_each_server() {
    let (src, dst) = util::pair("verify_compares_counts_and_checksums");
    src.exec(
        "CREATE TABLE t (id int PRIMARY KEY, v text, f float8, at timestamptz, j jsonb);
         CREATE TABLE u (id int);
         INSERT INTO t SELECT i, 'v' || i, 1.0 / i, now(), jsonb_build_object('i', i)
         FROM generate_series(1, 3000) i;
         INSERT INTO u SELECT generate_series(1, 10)",
    );
    // The same columns in another physical order on the destination.
    dst.exec(
        "CREATE TABLE t (j jsonb, at timestamptz, f float8, v text, id int PRIMARY KEY);
         CREATE TABLE u (id int);
         SET TimeZone = 'Asia/Tokyo'",
    );
    let out = copy(&src, &dst, &[]);
    assert_eq!(out.code, 0, "{out:?}");

    let out = verify(&src, &dst, &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("verified 2 tables: 2 match, 0 differ"),
        "{out:?}"
    );

    dst.exec("UPDATE t SET v = 'changed' WHERE id = 1234");
    let out = verify(&src, &dst, &[]);
    assert_eq!(out.code, 3, "{out:?}");
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("public.t "))
        .unwrap_or_default();
    assert!(line.contains("contents differ"), "{out:?}");

    dst.exec("DELETE FROM u WHERE id = 1");
    let out = verify(&src, &dst, &["--json"]);
    assert_eq!(out.code, 3, "{out:?}");
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).expect("verify --json parses");
    assert_eq!(doc["status"], "mismatch");
    assert_eq!(doc["mismatches"], 2);
    let u = doc["tables"]
        .as_array()
        .and_then(|t| t.iter().find(|e| e["table"] == "u"))
        .expect("u is reported");
    assert_eq!(u["verdict"], "row counts differ");
    assert_eq!(u["source"]["rows"], 10);
    assert_eq!(u["destination"]["rows"], 9);
}

#[test]
fn copy_verify_reads_the_copy_snapshot_so_a_busy_source_still_verifies() {
    let (src, dst) = util::pair("copy_verify_reads_the_copy_snapshot");
    both(
        &src,
        &dst,
        "CREATE TABLE busy (id int); CREATE TABLE slow (id int)",
    );
    src.exec("INSERT INTO busy SELECT generate_series(1, 100); INSERT INTO slow VALUES (1)");
    let locker = lock_table(&dst, "slow");
    let child = spawn_copy(&src, &dst, &["--verify"]);
    wait_for_blocked_pgcopy(&dst, &locker);
    // Written after the copy's snapshot: the copy does not carry it, and must not see it.
    src.exec("INSERT INTO busy SELECT generate_series(101, 150)");
    drop(locker);
    let out = finish(child);

    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("verified: 2 of 2 copied tables match"),
        "{out:?}"
    );
    assert_eq!(dst.count("busy"), 100);
    let out = verify(&src, &dst, &[]);
    assert_eq!(out.code, 3, "a later verify sees the new rows: {out:?}");
}

#[test]
fn resume_after_kill_9_copies_only_what_was_left_and_verifies() {
    let (src, dst) = keys_pair("resume_after_kill_9");
    let keys = foreign_keys(&dst);

    let out = copy(&src, &dst, &["--resume"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("nothing to resume"), "{out:?}");

    let locker = lock_table(&dst, "blocker");
    let mut child = spawn_copy(&src, &dst, &["--parallel", "2"]);
    wait_for_blocked_pgcopy(&dst, &locker);
    // Finished tables are recorded about once a second.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    // The blocked lane's reader may have started its next table too; the others finish.
    while state_count(&dst, "done") < KEY_TABLES.len() - 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "tables were never recorded as done: {:?}",
            crate::state_lines(&dst)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let done = state_count(&dst, "done");
    child.kill().expect("sending SIGKILL");
    finish(child);
    drop(locker);
    wait_for_pgcopy_gone(&dst);

    let out = copy(&src, &dst, &["--resume", "--exclude-tables", "a"]);
    assert_eq!(out.code, 2, "a changed selection is refused: {out:?}");
    assert!(out.stderr.contains("cannot resume"), "{out:?}");
    assert_eq!(
        key_names(&foreign_keys(&dst)),
        key_names(&keys),
        "but the keys were put back first (validated once the data is whole)"
    );

    src.exec("INSERT INTO a VALUES (5000)");
    let out = copy(&src, &dst, &["--resume", "--verify"]);
    assert_eq!(out.code, 0, "{out:?}");
    let left = KEY_TABLES.len() - done;
    let says = format!(
        "resuming: {done} tables were copied by the interrupted run, from its own older \
         snapshot; the {left} left are copied now, from a new one"
    );
    assert!(out.stderr.contains(&says), "{out:?}");
    assert!(
        out.stdout
            .contains(&format!("total: {left} of {left} tables")),
        "{out:?}"
    );
    assert!(out.stdout.contains("public.blocker"), "{out:?}");
    assert_eq!(dst.count("a"), 300, "a came from the older snapshot");
    assert_eq!(foreign_keys(&dst), keys);
    assert_eq!(state_count(&dst, "done"), 0, "nothing left to resume");

    let out = verify(&src, &dst, &["--exclude-tables", "a"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_same_data(&src, &dst, &KEY_TABLES[1..]);
}

/// Waits until pgcopy's reader on `db` is streaming a COPY; returns its pid.
fn wait_for_reader(db: &TestDb) -> i64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let rows = db.rows_text(
            "SELECT pid FROM pg_stat_activity
             WHERE application_name = 'pgcopy' AND datname = current_database()
               AND query LIKE 'COPY %TO STDOUT%' AND state = 'active'",
        );
        if let Some(Some(pid)) = rows.first().and_then(|r| r.first()) {
            return pid.parse().expect("a pid");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no reader ever streamed: {:?}",
            db.rows_text(
                "SELECT state, wait_event, left(query, 60) FROM pg_stat_activity
                 WHERE application_name = 'pgcopy'"
            )
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A table big enough that its reader is still streaming while its writer waits.
const BIG: &str = "CREATE TABLE big (id int PRIMARY KEY, pad text);";
const BIG_DATA: &str =
    "INSERT INTO big SELECT i, repeat(md5(i::text), 4) FROM generate_series(1, 60000) i";

#[test]
fn terminated_reader_and_writer_backends_are_retried_and_the_copy_completes() {
    let (src, dst) = keys_pair("terminated_backends_are_retried");
    both(&src, &dst, BIG);
    src.exec(BIG_DATA);
    let keys = foreign_keys(&dst);

    // The writer of `blocker` is killed while it waits for a lock.
    let locker = lock_table(&dst, "blocker");
    let child = spawn_copy(&src, &dst, &[]);
    let writer = wait_for_blocked_pgcopy(&dst, &locker);
    dst.exec(&format!("SELECT pg_terminate_backend({writer})"));
    drop(locker);
    let out = finish(child);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("public.blocker: "), "{out:?}");
    assert!(
        out.stderr.contains("trying again in 1.0s (try 2 of 4)"),
        "{out:?}"
    );
    assert_eq!(foreign_keys(&dst), keys);
    let mut tables = KEY_TABLES.to_vec();
    tables.push("big");
    assert_same_data(&src, &dst, &tables);

    // The reader of `big` is killed mid-stream, while its writer waits for a lock.
    dst.exec("TRUNCATE big");
    let locker = lock_table(&dst, "big");
    let child = spawn_copy(
        &src,
        &dst,
        &["--batch-size", "4KiB", "--include-tables", "big"],
    );
    wait_for_blocked_pgcopy(&dst, &locker);
    let reader = wait_for_reader(&src);
    src.exec(&format!("SELECT pg_terminate_backend({reader})"));
    drop(locker);
    let out = finish(child);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("public.big: "), "{out:?}");
    assert!(out.stderr.contains("trying again"), "{out:?}");
    assert_same_data(&src, &dst, &["big"]);
}

#[test]
fn a_destination_restart_mid_copy_is_survived() {
    let (src, _) = keys_pair("destination_restart_mid_copy");
    let cluster = util::start_cluster(util::ClusterOptions::default());
    let dst = cluster.create_db("destination_restart_mid_copy");
    dst.exec(KEYS_SCHEMA);
    dst.exec(BLOCKER_SCHEMA);
    dst.exec("ALTER TABLE blocker DISABLE TRIGGER blocker_reject; INSERT INTO blocker VALUES (-1)");
    dst.exec("ALTER TABLE blocker ENABLE TRIGGER blocker_reject");
    let keys = foreign_keys(&dst);

    let locker = lock_table(&dst, "blocker");
    let child = spawn_copy(&src, &dst, &[]);
    wait_for_blocked_pgcopy(&dst, &locker);
    // The restart ends every session: the locker's, and pgcopy's main and writer sessions.
    cluster.restart();
    drop(locker);
    let out = finish(child);

    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("trying again"), "{out:?}");
    // The other lanes' idle sessions died in the restart too: the retry, whichever lane
    // takes it, must not spend a try finding that out.
    assert!(!out.stderr.contains("(try 3 of"), "{out:?}");
    assert_eq!(foreign_keys(&dst), keys, "{out:?}");
    assert_same_data(&src, &dst, &KEY_TABLES);
}

#[test]
fn a_source_stopped_mid_copy_fails_cleanly_and_puts_everything_back() {
    let cluster = util::start_cluster(util::ClusterOptions::default());
    let (_, dst) = keys_pair("source_stopped_mid_copy");
    let src = cluster.create_db("source_stopped_mid_copy");
    src.exec(KEYS_SCHEMA);
    src.exec(BLOCKER_SCHEMA);
    src.exec(
        "ALTER TABLE blocker DISABLE TRIGGER USER;
         INSERT INTO a SELECT generate_series(1, 10); INSERT INTO blocker VALUES (1)",
    );
    let keys = foreign_keys(&dst);

    let locker = lock_table(&dst, "blocker");
    let child = spawn_copy(&src, &dst, &["--retries", "1", "--parallel", "1"]);
    wait_for_blocked_pgcopy(&dst, &locker);
    cluster.stop();
    drop(locker);
    let out = finish(child);

    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("FAILED"), "{out:?}");
    assert_eq!(foreign_keys(&dst), keys, "{out:?}");
    assert!(
        out.stderr
            .contains("the source session holding the snapshot was lost (terminating connection due to administrator command)"),
        "says why: {out:?}"
    );
    assert_eq!(
        dst.scalar_i64("SELECT id FROM node"),
        7,
        "a table not copied kept its rows"
    );
    assert_eq!(state_count(&dst, "fk"), 0);
    cluster.start();
}

#[test]
fn a_locked_destination_table_fails_after_the_lock_timeout_with_a_clear_message() {
    let (src, dst) = keys_pair("locked_destination_table");
    let keys = foreign_keys(&dst);
    let _locker = lock_table(&dst, "blocker");
    let out = copy(&src, &dst, &["--lock-timeout", "1"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout.contains("public.blocker: ")
            && out
                .stdout
                .contains("locked by another session; gave up after --lock-timeout 1s"),
        "{out:?}"
    );
    assert_eq!(foreign_keys(&dst), keys);
    assert_same_data(&src, &dst, &KEY_TABLES[..8]);
}

#[test]
fn bad_connection_input_fails_before_any_write_with_a_message_naming_the_cause() {
    let (src, dst) = util::pair("bad_connection_input");
    both(&src, &dst, "CREATE TABLE t (id int)");
    dst.exec("INSERT INTO t VALUES (-1)");
    let cases = [
        (
            "postgres://postgres@127.0.0.1:notaport/db",
            "invalid dest connection string",
        ),
        (
            "host=127.0.0.1 port=5432 dbname='unterminated",
            "invalid dest connection string",
        ),
        (
            "postgres://postgres@no-such-host.invalid/db",
            "no-such-host.invalid",
        ),
        ("postgres://postgres@127.0.0.1:1/db", "connection refused"),
        (
            &dst.url().replace(&dst.name, "no_such_database"),
            "database \"no_such_database\" does not exist",
        ),
    ];
    for (dest, cause) in cases {
        let out = copy_to(&src.url(), dest, &[]);
        assert_eq!(out.code, 2, "{dest}: {out:?}");
        assert!(
            out.stderr.contains(cause),
            "{dest}: expected {cause:?}: {out:?}"
        );
    }
    // Sessions scattered over the hosts could not share the source's snapshot.
    let scattered = format!("{}?load_balance_hosts=random", src.url());
    let out = copy_to(&scattered, &dst.url(), &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("load_balance_hosts=random cannot be used for the source"),
        "{out:?}"
    );
    assert_eq!(
        dst.scalar_i64("SELECT id FROM t"),
        -1,
        "nothing was written"
    );
}

#[test]
fn tables_the_roles_may_not_read_or_write_are_refused_while_planning() {
    let (src, dst) = util::pair("roles_may_not_read_or_truncate");
    both(
        &src,
        &dst,
        "CREATE TABLE open_t (id int); CREATE TABLE closed_t (id int)",
    );
    src.exec("INSERT INTO open_t VALUES (1); INSERT INTO closed_t VALUES (1)");
    dst.exec("INSERT INTO closed_t VALUES (-1)");
    let reader = "reader_without_select";
    let writer = "writer_without_truncate";
    src.exec(&format!(
        "CREATE ROLE {reader} LOGIN; GRANT SELECT ON open_t TO {reader}"
    ));
    dst.exec(&format!(
        "CREATE ROLE {writer} LOGIN; GRANT SELECT, INSERT, TRUNCATE ON open_t TO {writer};
         GRANT SELECT, INSERT ON closed_t TO {writer}"
    ));

    // The source role may not read closed_t: refused while planning, nothing changed.
    let as_reader = src.url().replace("postgres@", &format!("{reader}@"));
    let out = copy_to(&as_reader, &dst.url(), &["--fk-mode", "none"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("may not read these source tables")
            && out.stderr.contains("\n  public.closed_t\n")
            && out.stderr.contains("nothing was changed"),
        "{out:?}"
    );
    assert_eq!(dst.count("open_t"), 0);
    assert_eq!(dst.scalar_i64("SELECT id FROM closed_t"), -1);

    // The destination role may not truncate closed_t: refused as well, nothing changed.
    let as_writer = dst.url().replace("postgres@", &format!("{writer}@"));
    let out = copy_to(
        &src.url(),
        &as_writer,
        &["--fk-mode", "none", "--no-sequences"],
    );
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains(
            "may not TRUNCATE or INSERT into these destination tables:\n  public.closed_t\n"
        ),
        "{out:?}"
    );
    assert_eq!(dst.scalar_i64("SELECT id FROM closed_t"), -1);
    assert_eq!(dst.count("open_t"), 0);

    // Without the table it may not write, the rest is copied.
    let out = copy_to(
        &src.url(),
        &as_writer,
        &[
            "--fk-mode",
            "none",
            "--no-sequences",
            "--exclude-tables",
            "closed_t",
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(dst.count("open_t"), 1);
}
