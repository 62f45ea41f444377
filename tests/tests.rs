//! Integration tests: the real `pgcopy` binary against throwaway PostgreSQL clusters. One
//! test crate (as ripgrep does), with a module per area and the shared helpers here.

mod connections;
mod copying;
mod destination;
mod integrity;
mod operator;
mod reliability;
mod scale;
mod source;
mod speed;
mod util;
mod versions;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use util::{Output, TestDb};

/// `pgcopy copy --yes` from `src` to `dst` with extra arguments.
pub fn copy(src: &TestDb, dst: &TestDb, extra: &[&str]) -> Output {
    copy_to(&src.url(), &dst.url(), extra)
}

/// `pgcopy copy --yes` between two connection strings, for tests that spell them.
pub fn copy_to(source: &str, dest: &str, extra: &[&str]) -> Output {
    util::run(&mut copy_command(source, dest, extra))
}

/// The `pgcopy copy --yes` command line, not yet run.
pub fn copy_command(source: &str, dest: &str, extra: &[&str]) -> std::process::Command {
    let mut cmd = util::pgcopy();
    cmd.args(["copy", "--source", source, "--dest", dest, "--yes"])
        .args(extra);
    cmd
}

/// Runs the same SQL on both databases: the schema both sides share.
pub fn both(src: &TestDb, dst: &TestDb, sql: &str) {
    src.exec(sql);
    dst.exec(sql);
}

/// Shifts the destination's OID counter so that types created next get other OIDs than on
/// the source, as they do between real databases.
pub fn shift_oids(dst: &TestDb) {
    dst.exec("CREATE TYPE shift_oids AS ENUM ('x'); CREATE TABLE shift_oids_t (a int)");
}

/// A definition of every foreign key in a database, to compare before and after.
pub fn foreign_keys(db: &TestDb) -> Vec<Vec<Option<String>>> {
    db.rows_text(
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid), convalidated::text
         FROM pg_constraint WHERE contype = 'f' ORDER BY 1, 2",
    )
}

/// Just the names of `foreign_keys()`: what must be back even where a key could not be
/// validated yet.
pub fn key_names(keys: &[Vec<Option<String>>]) -> Vec<Option<String>> {
    keys.iter().map(|k| k[1].clone()).collect()
}

/// Every user trigger of a database and how it is enabled.
pub fn triggers(db: &TestDb) -> Vec<Vec<Option<String>>> {
    db.rows_text(
        "SELECT tgrelid::regclass::text, tgname, tgenabled::text
         FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1, 2",
    )
}

/// `pgcopy copy --yes` started in the background, for tests that act on it mid-copy.
pub fn spawn_copy(src: &TestDb, dst: &TestDb, extra: &[&str]) -> Child {
    copy_command(&src.url(), &dst.url(), extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting pgcopy")
}

/// Waits for a background pgcopy and collects what it printed. A run that hangs is killed
/// after `util::run_timeout()` and fails the test.
pub fn finish(mut child: Child) -> Output {
    // Read while it runs, so a chatty pgcopy never blocks on a full pipe.
    let stdout = util::drain(child.stdout.take());
    let stderr = util::drain(child.stderr.take());
    let status = util::wait_until(&mut child, Instant::now() + util::run_timeout());
    let stdout = stdout.join().expect("the stdout reader panicked");
    let stderr = stderr.join().expect("the stderr reader panicked");
    use std::os::unix::process::ExitStatusExt;
    let output = Output {
        command: "pgcopy copy (in the background)".into(),
        code: status.map_or(-1, |status| {
            status
                .code()
                .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
        }),
        stdout,
        stderr,
    };
    assert!(
        status.is_some(),
        "killed, still running after the timeout:{output:?}"
    );
    output
}

/// A session of another user of the database holding a transaction open, with what it did
/// in it (a lock taken, a table truncated), until `commit` or until dropped (rolled back).
pub struct Locker {
    client: postgres::Client,
    pub pid: i32,
}

impl Locker {
    pub fn commit(mut self) {
        self.client.batch_execute("COMMIT").expect("committing");
    }

    pub fn rollback(mut self) {
        self.client.batch_execute("ROLLBACK").expect("rolling back");
    }
}

/// Runs `sql` in a transaction left open.
pub fn hold(db: &TestDb, sql: &str) -> Locker {
    let mut client = db.client();
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .expect("asking for the backend pid")
        .get(0);
    client
        .batch_execute(&format!("BEGIN; {sql}"))
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    Locker { client, pid }
}

/// A session holding `ACCESS EXCLUSIVE` on a table until dropped (rolled back), so that
/// pgcopy's sessions for that table wait.
pub fn lock_table(db: &TestDb, table: &str) -> Locker {
    hold(db, &format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
}

/// Waits until one of pgcopy's sessions on `db` waits for the locker; returns its pid.
/// (Others may wait briefly for autovacuum: those are not the one.)
pub fn wait_for_blocked_pgcopy(db: &TestDb, locker: &Locker) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows = db.rows_text(&format!(
            "SELECT pid FROM pg_stat_activity
             WHERE application_name = 'pgcopy' AND datname = current_database()
               AND {} = ANY (pg_blocking_pids(pid))",
            locker.pid
        ));
        if let Some(Some(pid)) = rows.first().and_then(|r| r.first()) {
            return pid.parse().expect("a pid");
        }
        assert!(
            Instant::now() < deadline,
            "no session of pgcopy ever blocked"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until no session of pgcopy holds its advisory lock on `db` any more.
pub fn wait_for_pgcopy_gone(db: &TestDb) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while db.scalar_i64(
        "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
         WHERE l.locktype = 'advisory' AND d.datname = current_database()",
    ) > 0
    {
        assert!(
            Instant::now() < deadline,
            "pgcopy's session never went away"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn state_files() -> Vec<std::path::PathBuf> {
    std::fs::read_dir(util::state_dir())
        .map(|dir| {
            dir.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "state"))
                .collect()
        })
        .unwrap_or_default()
}

/// The lines of this database's state file, empty when it has none.
pub fn state_lines(db: &TestDb) -> Vec<String> {
    state_files()
        .iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&db.name))
        })
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

pub fn has_state_file(db: &TestDb) -> bool {
    !state_lines(db).is_empty()
}

/// Lines of the state file that start with `tag` (`fk`: keys to put back; `validate`: keys
/// to validate again; `done`: tables finished, for `--resume`).
pub fn state_count(db: &TestDb, tag: &str) -> usize {
    state_lines(db)
        .iter()
        .filter(|l| l.starts_with(&format!("{tag}\t")))
        .count()
}
