//! Following a live source from the tests' side: a cluster that can be followed
//! (`wal_level = logical`), pgbench writing in the background, waiting until a follower
//! follows, streams (again) or takes up a new table, cutting over, and checking what it
//! said and that nothing of it is left.

use super::cluster::{bindir, start_cluster, Cluster, ClusterOptions};
use super::db::TestDb;
use super::run::{assert_exit, exit, finish, pgcopy, run, Output};
use std::process::{Child, Command};

/// A source cluster that can be followed. Each test has its own, and a destination cluster
/// of its own too: slots and replication origins are the cluster's, not a database's.
pub fn logical_cluster() -> Cluster {
    start_cluster(logical_options())
}

/// A source cluster to follow and a destination cluster of its own, each with an empty
/// database named `name`: slots and origins are a cluster's, so each test has its pair.
pub fn logical_pair(name: &str) -> (Cluster, Cluster, TestDb, TestDb) {
    let (logical, destination) = (logical_cluster(), start_cluster(ClusterOptions::default()));
    let src = logical.create_db(name);
    let dst = destination.create_db(name);
    (logical, destination, src, dst)
}

/// A source's settings for following, on the source side's server programs.
pub fn logical_options() -> ClusterOptions {
    ClusterOptions::default()
        .server_bindir(&super::source_bindir())
        .conf("wal_level", "logical")
        .conf("max_replication_slots", "8")
        .conf("max_wal_senders", "8")
}

/// pgbench's TPC-B-like transactions from `clients` sessions for `seconds`, in the
/// background.
pub fn pgbench(db: &TestDb, clients: u32, seconds: u32) -> Child {
    std::process::Command::new(bindir().join("pgbench"))
        .args(["-n", "-c", &clients.to_string(), "-T", &seconds.to_string()])
        .arg(db.url())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting pgbench")
}

pub fn wait_pgbench(child: Child) {
    let out = child.wait_with_output().expect("waiting for pgbench");
    assert!(
        out.status.success(),
        "pgbench: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits until the follower's copy is done: the destination records its progress (in a
/// replication origin or in pgcopy's table), and no chunk of its copy is left to read.
pub fn wait_following(dst: &TestDb, follower: &mut Child) {
    wait_while_running(follower, 120, "following", || copy_over(dst));
}

/// Whether the follower into `dst` recorded its progress and has no chunk left to copy.
pub fn copy_over(dst: &TestDb) -> bool {
    let recorded = "SELECT (SELECT count(*) FROM pg_replication_origin)
                         + (to_regclass('pgcopy.follow_progress') IS NOT NULL)::int";
    let chunks = "SELECT (to_regclass('pgcopy.follow_chunks') IS NOT NULL)::int";
    dst.scalar_i64(recorded) == 1
        && (dst.scalar_i64(chunks) == 0
            || dst.scalar_i64("SELECT count(*) FROM pgcopy.follow_chunks WHERE snapshot IS NULL")
                == 0)
}

/// The backend that streams a slot of `src` now, 0 when none does: what
/// `wait_streaming_anew` is given before a session is lost.
pub fn streaming_pid(src: &TestDb) -> i64 {
    src.scalar_i64("SELECT coalesce(max(active_pid), 0) FROM pg_replication_slots")
}

/// Waits until a slot is streamed by a session other than `before` (a `streaming_pid`, or
/// 0 for a follower just started or resumed: any session).
pub fn wait_streaming_anew(src: &TestDb, follower: &mut Child, before: i64) {
    let query = "SELECT count(*) FROM pg_replication_slots WHERE active AND active_pid <> $1";
    let mut client = src.client();
    wait_while_running(follower, 60, "streaming (again)", || {
        client
            .query_one(query, &[&(before as i32)])
            .expect("asking for the slot")
            .get::<_, i64>(0)
            > 0
    });
}

/// Waits until the follower publishes `table`, a table made since its copy.
pub fn wait_published(src: &TestDb, follower: &mut Child, table: &str) {
    let query = format!("SELECT count(*) FROM pg_publication_tables WHERE tablename = '{table}'");
    wait_while_running(follower, 120, &format!("taking up {table}"), || {
        src.scalar_i64(&query) > 0
    });
}

/// The one wait of the follow tests: polls `done` until it holds, and fails the test when
/// the follower exits first (with what it said) or `done` still does not hold after
/// `limit` seconds.
pub fn wait_while_running(
    follower: &mut Child,
    limit: u64,
    what: &str,
    mut done: impl FnMut() -> bool,
) {
    let started = std::time::Instant::now();
    while !done() {
        if let Ok(Some(status)) = follower.try_wait() {
            panic!(
                "the follower exited with {status} before {what}: {}",
                said(follower)
            );
        }
        if started.elapsed().as_secs() >= limit {
            let _ = follower.kill();
            let _ = follower.wait();
            panic!(
                "the follower never got to {what} in {limit} s: {}",
                said(follower)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The `pgcopy cutover` command line between two connection strings, not yet run: a
/// cutover expected to refuse is `run`, one to wait for a follower is spawned.
pub fn cutover_command(source: &str, dest: &str, extra: &[&str]) -> Command {
    let mut cmd = pgcopy();
    cmd.args(["cutover", "--source", source, "--dest", dest])
        .args(extra);
    cmd
}

/// Cuts over between two connection strings and waits for the follower, both of which
/// must exit 0 (a follower still running after a failed cutover is killed, so the failure
/// shows what it said); returns what each printed.
pub fn cut_over(source: &str, dest: &str, mut follower: Child, extra: &[&str]) -> (Output, Output) {
    let out = run(&mut cutover_command(source, dest, extra));
    if out.code != 0 {
        follower.kill().ok();
    }
    let followed = finish(follower);
    assert_exit!(out, exit::SUCCESS, "the follower: {followed:?}");
    assert_exit!(followed, exit::SUCCESS);
    (out, followed)
}

/// Nothing of the follower is left on either side.
pub fn assert_nothing_left(src: &TestDb, dst: &TestDb) {
    assert_eq!(
        src.scalar_i64("SELECT count(*) FROM pg_replication_slots"),
        0
    );
    assert_eq!(src.scalar_i64("SELECT count(*) FROM pg_publication"), 0);
    assert_eq!(
        dst.scalar_i64("SELECT count(*) FROM pg_replication_origin"),
        0
    );
    assert_eq!(
        dst.scalar_i64("SELECT count(*) FROM pg_namespace WHERE nspname = 'pgcopy'"),
        0
    );
}

/// Asserts a follower's stderr says it went on from the destination's record at least
/// `times` times: once for each session it lost, or more while the destination was starting.
pub fn assert_went_on(followed: &Output, times: usize) {
    let said = followed
        .stderr
        .matches("going on from where the destination is")
        .count();
    assert!(
        said >= times,
        "went on {said} times, not {times}: {followed:?}"
    );
}

/// What an exited follower wrote on stderr, for the message of a test that expected it to
/// run on.
fn said(follower: &mut Child) -> String {
    let mut text = String::new();
    if let Some(mut stderr) = follower.stderr.take() {
        std::io::Read::read_to_string(&mut stderr, &mut text).ok();
    }
    text + &super::run::spooled_stderr(follower.id())
}
