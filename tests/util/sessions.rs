//! Other users of a database while pgcopy runs: a session that holds a transaction open with
//! what it did in it (a lock, a truncate), and waits for pgcopy's own sessions to block on it
//! or to go away. Tests that act mid-copy use these with `spawn_copy` and `finish`.

use std::time::{Duration, Instant};

use super::db::TestDb;

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
