//! Faults: a backend terminated, `kill -9`, Ctrl-C, a server restarted, stopped or crashed
//! mid-copy, a lock that is never released, a clone in the destination's place. Each shows
//! that nothing is lost: keys and triggers are put back, a table that failed keeps its old
//! rows, and `recover` or `copy --resume` finish the job from the state file.

use crate::util::{
    self, assert_exit, assert_same_data, both, copy, exit, finish, foreign_keys, key_names,
    lock_table, make_config_table, pair, spawn_copy, state_count, state_lines, test_name, triggers,
    verify, wait_for_blocked_pgcopy, wait_for_pgcopy_gone, with_keys, ClusterOptions, TestDb,
    BLOCKER_SCHEMA, KEYS_SCHEMA, KEY_TABLES,
};
use std::time::{Duration, Instant};

#[test]
fn a_writer_terminated_mid_copy_leaves_keys_and_triggers_restored() {
    let (src, dst) = with_keys(pair!());
    let keys = foreign_keys(&dst);
    let before = triggers(&dst);
    let locker = lock_table(&dst, "blocker");

    let child = spawn_copy(&src, &dst, &["--fk-mode", "drop", "--retries", "0"]);
    let pid = wait_for_blocked_pgcopy(&dst, &locker);
    assert!(
        foreign_keys(&dst).is_empty(),
        "the keys are dropped mid-copy"
    );
    assert_eq!(state_count(&dst, "fk"), 6, "and recorded in the state file");
    dst.exec(&format!("SELECT pg_terminate_backend({pid})"));
    drop(locker);
    let out = finish(child);

    assert_exit!(out, exit::TABLES_FAILED);
    assert!(out.stdout.contains("public.blocker:"), "{out:?}");
    assert_eq!(foreign_keys(&dst), keys, "{out:?}");
    assert_eq!(triggers(&dst), before);
    assert_eq!(
        dst.scalar_i64("SELECT id FROM blocker"),
        -1,
        "old rows kept"
    );
    assert_same_data(&src, &dst, &KEY_TABLES[..8]);
    assert_eq!(state_count(&dst, "fk"), 0);
}

/// Waits until pgcopy's reader on `db` is streaming a COPY; returns its pid.
fn wait_for_reader(db: &TestDb) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(60);
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
            Instant::now() < deadline,
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
    let (src, dst) = with_keys(pair!());
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
    assert_exit!(out, exit::SUCCESS);
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
    assert_exit!(out, exit::SUCCESS);
    assert!(out.stderr.contains("public.big: "), "{out:?}");
    assert!(out.stderr.contains("trying again"), "{out:?}");
    assert_same_data(&src, &dst, &["big"]);
}

#[test]
fn a_destination_restart_mid_copy_is_survived() {
    let (src, _) = with_keys(pair!());
    let cluster = util::start_cluster(ClusterOptions::default());
    let dst = cluster.create_db(&test_name!());
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

    assert_exit!(out, exit::SUCCESS);
    assert!(out.stderr.contains("trying again"), "{out:?}");
    // The other lanes' idle sessions died in the restart too: the retry, whichever lane
    // takes it, must not spend a try finding that out.
    assert!(!out.stderr.contains("(try 3 of"), "{out:?}");
    assert_eq!(foreign_keys(&dst), keys, "{out:?}");
    assert_same_data(&src, &dst, &KEY_TABLES);
}

#[test]
fn a_source_stopped_mid_copy_fails_cleanly_and_puts_everything_back() {
    let cluster = util::start_cluster(ClusterOptions::default());
    let (_, dst) = with_keys(pair!());
    let src = cluster.create_db(&test_name!());
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

    assert_exit!(out, exit::TABLES_FAILED);
    assert!(out.stdout.contains("FAILED"), "{out:?}");
    // One lane: `a` went in before `blocker`, and `b` was never read. b's old row points at
    // a row `a` no longer has, so that key comes back NOT VALID, and the report says so.
    let mut expected = keys;
    for key in &mut expected {
        if key[1].as_deref() == Some("b_a_id_fkey") {
            key[2] = key[2]
                .as_ref()
                .map(|definition| format!("{definition} NOT VALID"));
            key[3] = Some("false".into());
        }
    }
    assert_eq!(foreign_keys(&dst), expected, "{out:?}");
    assert!(
        out.stdout
            .contains("foreign key b_a_id_fkey on public.b is back but NOT VALID"),
        "{out:?}"
    );
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
    let (src, dst) = with_keys(pair!());
    let keys = foreign_keys(&dst);
    let _locker = lock_table(&dst, "blocker");
    let out = copy(&src, &dst, &["--lock-timeout", "1"]);
    assert_exit!(out, exit::TABLES_FAILED);
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
fn sigint_mid_copy_puts_everything_back_and_exits_130() {
    let (src, dst) = with_keys(pair!());
    let keys = foreign_keys(&dst);
    let before = triggers(&dst);
    let locker = lock_table(&dst, "blocker");

    let child = spawn_copy(&src, &dst, &["--fk-mode", "drop"]);
    wait_for_blocked_pgcopy(&dst, &locker);
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("running kill");
    assert!(status.success());
    let out = finish(child);
    drop(locker);

    assert_exit!(out, exit::INTERRUPTED);
    assert!(out.stderr.contains("interrupted"), "{out:?}");
    assert_eq!(foreign_keys(&dst), keys);
    assert_eq!(triggers(&dst), before);
    assert_eq!(
        dst.scalar_i64("SELECT id FROM blocker"),
        -1,
        "old rows kept"
    );
    assert_eq!(state_count(&dst, "fk"), 0);
}

#[test]
fn after_kill_9_mid_copy_recover_and_the_next_copy_put_the_keys_back() {
    let (src, dst) = with_keys(pair!());
    let keys = foreign_keys(&dst);
    let before = triggers(&dst);

    for recovery in ["recover", "copy"] {
        let locker = lock_table(&dst, "blocker");
        let mut child = spawn_copy(&src, &dst, &[]);
        wait_for_blocked_pgcopy(&dst, &locker);
        assert!(
            foreign_keys(&dst).is_empty(),
            "the keys are dropped mid-copy"
        );
        child.kill().expect("sending SIGKILL");
        let killed = finish(child);
        assert_exit!(killed, exit::KILLED);
        drop(locker);
        wait_for_pgcopy_gone(&dst);
        assert!(foreign_keys(&dst).is_empty(), "nobody put them back yet");
        assert_eq!(state_count(&dst, "fk"), 6, "the state file survived");

        let out = match recovery {
            "recover" => util::run(util::pgcopy().args(["recover", "--dest", &dst.url()])),
            _ => copy(&src, &dst, &[]),
        };
        assert!(
            out.stderr.contains("did not finish")
                && out.stderr.contains("putting back the 6 constraints"),
            "{recovery} says what it does: {out:?}"
        );
        assert_eq!(
            key_names(&foreign_keys(&dst)),
            key_names(&keys),
            "{recovery}: every key is back"
        );
        assert_eq!(triggers(&dst), before, "{recovery}");
        if recovery == "copy" || out.code == 0 {
            assert_exit!(out, exit::SUCCESS, "{recovery}");
            assert_eq!(foreign_keys(&dst), keys, "{recovery}: valid as before");
            assert_eq!(
                state_count(&dst, "fk") + state_count(&dst, "validate"),
                0,
                "{recovery}"
            );
        } else {
            // Tables copied before the kill and tables not yet copied can disagree: a key
            // between them stays NOT VALID, and the state file remembers to validate it.
            assert_exit!(out, exit::TABLES_FAILED);
            assert!(
                out.stdout.contains("stay NOT VALID until a copy"),
                "{out:?}"
            );
            assert!(state_count(&dst, "validate") > 0, "{out:?}");
        }
    }
    assert_same_data(&src, &dst, &KEY_TABLES);

    let out = util::run(util::pgcopy().args(["recover", "--dest", &dst.url()]));
    assert_exit!(out, exit::SUCCESS);
    assert!(out.stdout.contains("nothing to recover"), "{out:?}");
}

#[test]
fn resume_after_kill_9_copies_only_what_was_left_and_verifies() {
    let (src, dst) = with_keys(pair!());
    let keys = foreign_keys(&dst);

    let out = copy(&src, &dst, &["--resume"]);
    assert_exit!(out, exit::USAGE);
    assert!(out.stderr.contains("nothing to resume"), "{out:?}");

    let locker = lock_table(&dst, "blocker");
    let mut child = spawn_copy(&src, &dst, &["--parallel", "2"]);
    wait_for_blocked_pgcopy(&dst, &locker);
    // Finished tables are recorded about once a second.
    let deadline = Instant::now() + Duration::from_secs(30);
    // The blocked lane's reader may have started its next table too; the others finish.
    while state_count(&dst, "done") < KEY_TABLES.len() - 3 {
        assert!(
            Instant::now() < deadline,
            "tables were never recorded as done: {:?}",
            state_lines(&dst)
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
    assert_exit!(out, exit::USAGE, "a changed selection is refused");
    assert!(out.stderr.contains("cannot resume"), "{out:?}");
    assert_eq!(
        key_names(&foreign_keys(&dst)),
        key_names(&keys),
        "but the keys were put back first (validated once the data is whole)"
    );

    src.exec("INSERT INTO a VALUES (5000)");
    let out = copy(&src, &dst, &["--resume", "--verify"]);
    assert_exit!(out, exit::SUCCESS);
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
    assert_exit!(out, exit::SUCCESS);
    assert_same_data(&src, &dst, &KEY_TABLES[1..]);
}

#[test]
fn a_table_counts_as_done_for_resume_only_once_its_commit_is_on_disk() {
    let cluster = util::start_cluster(ClusterOptions::default().conf("autovacuum", "off"));
    let src = util::source().create_db(&test_name!());
    let dst = cluster.create_db(&test_name!());
    both(
        &src,
        &dst,
        "CREATE TABLE first (id int); CREATE TABLE held (id int)",
    );
    // A load that truncates always waits for its WAL (PostgreSQL must not delete the old
    // file first); one that deletes some rows, as for an extension's configuration table,
    // does not.
    for db in [&src, &dst] {
        make_config_table(db, "first", "WHERE id > 0");
    }
    // The larger table goes first, so its lane is past it when it reaches `held`.
    src.exec(
        "INSERT INTO first SELECT generate_series(1, 2000);
         INSERT INTO held SELECT generate_series(1, 10)",
    );
    dst.exec("INSERT INTO first VALUES (7)");
    // On disk before the WAL writer stops (in a statement of its own, after the commit).
    dst.exec("CHECKPOINT");
    // The WAL writer stopped: a commit that does not wait for its WAL (as pgcopy's writers'
    // do not) stays in memory until another commit flushes it, or a crash loses it.
    let walwriter =
        dst.scalar_i64("SELECT pid FROM pg_stat_activity WHERE backend_type = 'walwriter'");
    let stopped = std::process::Command::new("kill")
        .args(["-STOP", &walwriter.to_string()])
        .status()
        .expect("running kill");
    assert!(stopped.success(), "stopping the WAL writer");

    // `first` is loaded; `held` waits for a lock; the destination crashes once the state
    // file says `first` is done, and pgcopy dies with it.
    let locker = lock_table(&dst, "held");
    let mut child = spawn_copy(&src, &dst, &["--parallel", "1", "--no-analyze"]);
    wait_for_blocked_pgcopy(&dst, &locker);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !state_lines(&dst)
        .iter()
        .any(|l| l.starts_with("done\tpublic\tfirst\t"))
    {
        assert!(
            Instant::now() < deadline,
            "first was never recorded as done: {:?}",
            state_lines(&dst)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The crash kills the stopped WAL writer too.
    cluster.crash();
    child.kill().expect("killing pgcopy");
    child.wait().expect("waiting for pgcopy");
    drop(locker);
    cluster.start();

    let out = copy(&src, &dst, &["--resume"]);
    assert_exit!(out, exit::SUCCESS);
    assert_eq!(
        src.checksum("first", &[]),
        dst.checksum("first", &[]),
        "the table the state file called done is there after the crash"
    );
    assert_eq!(src.checksum("held", &[]), dst.checksum("held", &[]));
}

#[test]
fn a_state_file_is_never_applied_to_a_clone_of_its_destination() {
    // pg_basebackup makes the clone: the system's, with a server of its own version.
    let a = util::start_cluster(ClusterOptions::default().server_bindir(util::bindir()));
    let src = util::source().create_db(&test_name!());
    let on_a = a.create_db(&test_name!());
    let schema = "CREATE TABLE parent (id int PRIMARY KEY);
                  CREATE TABLE child (id int, parent_id int REFERENCES parent);
                  CREATE TABLE held (id int)";
    src.exec(schema);
    on_a.exec(schema);
    src.exec(
        "INSERT INTO parent SELECT generate_series(1, 10);
         INSERT INTO child SELECT i, i FROM generate_series(1, 10) i;
         INSERT INTO held VALUES (1)",
    );
    // A clone of A: the same system identifier and database; promoted, then stopped.
    let mut b = util::start_standby(&a);
    b.db(&on_a.name).exec("SELECT pg_promote(); CHECKPOINT");
    b.stop();
    let keys = foreign_keys(&on_a);

    // A run on A drops the key and is killed: the state file records it.
    let locker = lock_table(&on_a, "held");
    let mut child = spawn_copy(&src, &on_a, &["--parallel", "1"]);
    wait_for_blocked_pgcopy(&on_a, &locker);
    child.kill().expect("killing pgcopy");
    child.wait().expect("waiting for pgcopy");
    drop(locker);
    assert_eq!(foreign_keys(&on_a), Vec::<Vec<Option<String>>>::new());

    // The clone takes A's place, same port: the file names this identity, but the key it
    // says is dropped is in place here. It is set aside, and the copy goes on.
    let port = a.port;
    a.stop();
    b.start_on_port(port);
    let on_b = b.db(&on_a.name);
    let out = copy(&src, &on_b, &[]);
    assert_exit!(out, exit::SUCCESS);
    assert!(
        out.stderr.contains("lists 1 constraints as dropped")
            && out.stderr.contains("It is set aside as"),
        "{out:?}"
    );
    assert_eq!(foreign_keys(&on_b), keys);

    // Back on A, recover finds the file set aside, and puts A's key back (NOT VALID: the
    // killed run left the data half copied), and the next copy validates it.
    b.stop();
    a.start();
    let out = util::run(util::pgcopy().args(["recover", "--dest", &on_a.url()]));
    assert_exit!(out, exit::TABLES_FAILED);
    assert!(
        out.stderr
            .contains("was set aside as another server's, but its dropped keys are missing"),
        "{out:?}"
    );
    assert_eq!(key_names(&foreign_keys(&on_a)), key_names(&keys));
    let out = copy(&src, &on_a, &[]);
    assert_exit!(out, exit::SUCCESS);
    assert_eq!(foreign_keys(&on_a), keys, "{out:?}");
}

/// A run killed with the keys dropped, then a table whose key it dropped is dropped too:
/// its key cannot come back. Every later copy says so and how to forget it; `recover
/// --forget-gone` forgets it, saying what, and puts back the rest.
#[test]
fn a_state_file_naming_a_table_dropped_since_is_explained_and_cleared() {
    let (src, dst) = with_keys(pair!());
    let locker = lock_table(&dst, "blocker");
    let mut child = spawn_copy(&src, &dst, &[]);
    wait_for_blocked_pgcopy(&dst, &locker);
    child.kill().expect("sending SIGKILL");
    assert_exit!(finish(child), exit::KILLED);
    drop(locker);
    wait_for_pgcopy_gone(&dst);
    // c references b: its key is in the state file, and c is gone.
    dst.exec("DROP TABLE c");
    src.exec("DROP TABLE c");
    let out = copy(&src, &dst, &[]);
    assert_exit!(out, exit::USAGE);
    assert!(
        out.stderr
            .contains("tables that no longer exist here (dropped since)")
            && out.stderr.contains("the key c_b_id_fkey on public.c")
            && out.stderr.contains("`pgcopy recover --forget-gone`"),
        "{out:?}"
    );
    let out = util::run(util::pgcopy().args(["recover", "--dest", &dst.url(), "--forget-gone"]));
    assert!(
        out.stderr
            .contains("forgetting what the state file lists for tables dropped since"),
        "{out:?}"
    );
    assert!(
        out.stderr.contains("started 20"),
        "an RFC 3339 time: {out:?}"
    );
    let out = copy(&src, &dst, &[]);
    assert_exit!(out, exit::SUCCESS);
    assert_eq!(state_count(&dst, "fk"), 0);
}
