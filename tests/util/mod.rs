//! Test harness: a database per test on throwaway PostgreSQL clusters (started by `cluster`),
//! data for those databases (in SQL: the tests need no client programs), and running the
//! `pgcopy` binary.
//!
//! Each test gets databases of its own, named after it, so tests run in parallel on the shared
//! clusters. Everything in `cluster` is re-exported, so tests write `util::start_cluster` and
//! `util::source()` as they do `util::pair`.

#![allow(dead_code)]

mod cluster;

pub use cluster::*;

use std::ffi::OsStr;
use std::fmt;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use postgres::{NoTls, SimpleQueryMessage};

/// How long `run` lets the binary work before it kills it and fails the test.
const DEFAULT_RUN_TIMEOUT: Duration = Duration::from_secs(300);

// ---------------------------------------------------------------------------------------------
// Per-test databases
// ---------------------------------------------------------------------------------------------

/// A fresh, empty database named after the test on the source cluster and another on the
/// destination cluster. An earlier database of that name is dropped first.
pub fn pair(name: &str) -> (TestDb, TestDb) {
    // Both clusters start on first use; start them side by side to halve the wait.
    thread::scope(|scope| {
        let src = scope.spawn(source);
        dest();
        if let Err(panic) = src.join() {
            std::panic::resume_unwind(panic);
        }
    });
    (source().create_db(name), dest().create_db(name))
}

/// One database on one cluster, with helpers that panic with the SQL and the server's error.
#[derive(Clone, Debug)]
pub struct TestDb {
    pub name: String,
    pub port: u16,
    socket_dir: PathBuf,
}

impl TestDb {
    /// The URL a user would pass to pgcopy: TCP on 127.0.0.1, user postgres, no password.
    pub fn url(&self) -> String {
        self.url_as(PG_USER)
    }

    /// `url` for another role (the clusters trust every role on 127.0.0.1).
    pub fn url_as(&self, role: &str) -> String {
        format!("postgres://{role}@127.0.0.1:{}/{}", self.port, self.name)
    }

    /// The name quoted for SQL, as in `ALTER DATABASE … SET`.
    pub fn quoted_name(&self) -> String {
        quote_ident(&self.name)
    }

    /// The directory of the cluster's unix-domain socket, for `host=` or `PGHOST`.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// A new connection over the unix socket, which works whatever pg_hba.conf says about TCP.
    pub fn client(&self) -> postgres::Client {
        connect(&self.socket_dir, self.port, &self.name)
    }

    /// Runs one or more statements.
    pub fn exec(&self, sql: &str) {
        if let Err(e) = self.client().batch_execute(sql) {
            panic!(
                "SQL failed on {}: {}\n--- SQL ---\n{sql}",
                self.name,
                describe(&e)
            );
        }
    }

    /// The first column of the first row, parsed as an integer (any integer type will do).
    pub fn scalar_i64(&self, sql: &str) -> i64 {
        let text = self.scalar_string(sql);
        text.trim()
            .parse()
            .unwrap_or_else(|e| panic!("{sql}\nreturned {text:?}, not an integer: {e}"))
    }

    /// The first column of the first row as text; panics on no row or NULL.
    pub fn scalar_string(&self, sql: &str) -> String {
        let rows = self.rows_text(sql);
        let first = rows
            .first()
            .unwrap_or_else(|| panic!("{sql}\nreturned no rows on {}", self.name));
        match first.first() {
            Some(Some(value)) => value.clone(),
            Some(None) => panic!("{sql}\nreturned NULL on {}", self.name),
            None => panic!("{sql}\nreturned no columns on {}", self.name),
        }
    }

    /// All rows of the last statement, every value in its text form (NULL as `None`).
    pub fn rows_text(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        simple_rows(&mut self.client(), sql, &self.name)
    }

    /// `count(*)` of an already quoted, possibly schema-qualified table.
    pub fn count(&self, table: &str) -> i64 {
        self.scalar_i64(&format!("SELECT count(*) FROM {table}"))
    }

    /// An order-independent checksum of a table's content, `"count:md5"`.
    ///
    /// Rows are rendered as `ROW(col, ...)::text` with the given, already quoted columns, so
    /// two tables whose physical column order differs compare equal when the columns are named
    /// in the same order. An empty `columns` uses the whole row in physical order. Output
    /// settings that change the text of floats, dates and intervals are pinned first.
    pub fn checksum(&self, table: &str, columns: &[&str]) -> String {
        let row = if columns.is_empty() {
            "t::text".to_string()
        } else {
            format!("ROW({})::text", columns.join(", "))
        };
        let sql = format!(
            "SET extra_float_digits = 3;
             SET DateStyle = 'ISO, MDY';
             SET IntervalStyle = postgres;
             SET TimeZone = 'UTC';
             SELECT count(*) || ':' || md5(coalesce(string_agg(r, E'\\n' ORDER BY r COLLATE \"C\"), ''))
             FROM (SELECT {row} AS r FROM {table} AS t) AS rows"
        );
        self.scalar_string(&sql)
    }
}

// ---------------------------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------------------------

/// libpq reads PGHOST, PGSSLMODE, PGSERVICE and friends; none of the caller's may leak in.
fn clear_pg_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(key);
        }
    }
}

fn run_checked(cmd: &mut Command) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// pgbench's four tables with their keys, as `pgbench -i --foreign-keys` makes them, in SQL:
/// the tests need no client programs, and the same schema goes to servers of any version.
const PGBENCH_SCHEMA: &str = "
    CREATE TABLE pgbench_history (tid int, bid int, aid int, delta int, mtime timestamp,
                                  filler char(22));
    CREATE TABLE pgbench_tellers (tid int NOT NULL, bid int, tbalance int, filler char(84))
        WITH (fillfactor = 100);
    CREATE TABLE pgbench_accounts (aid int NOT NULL, bid int, abalance int, filler char(84))
        WITH (fillfactor = 100);
    CREATE TABLE pgbench_branches (bid int NOT NULL, bbalance int, filler char(88))
        WITH (fillfactor = 100);
    ALTER TABLE pgbench_branches ADD PRIMARY KEY (bid);
    ALTER TABLE pgbench_tellers ADD PRIMARY KEY (tid);
    ALTER TABLE pgbench_accounts ADD PRIMARY KEY (aid);
    ALTER TABLE pgbench_tellers ADD CONSTRAINT pgbench_tellers_bid_fkey
        FOREIGN KEY (bid) REFERENCES pgbench_branches;
    ALTER TABLE pgbench_accounts ADD CONSTRAINT pgbench_accounts_bid_fkey
        FOREIGN KEY (bid) REFERENCES pgbench_branches;
    ALTER TABLE pgbench_history ADD CONSTRAINT pgbench_history_bid_fkey
        FOREIGN KEY (bid) REFERENCES pgbench_branches;
    ALTER TABLE pgbench_history ADD CONSTRAINT pgbench_history_tid_fkey
        FOREIGN KEY (tid) REFERENCES pgbench_tellers;
    ALTER TABLE pgbench_history ADD CONSTRAINT pgbench_history_aid_fkey
        FOREIGN KEY (aid) REFERENCES pgbench_accounts";

/// pgbench's tables, empty: the schema of a `load_pgbench` source.
pub fn pgbench_schema(db: &TestDb) {
    db.exec(PGBENCH_SCHEMA);
}

/// pgbench's tables filled as `pgbench -i -s SCALE --foreign-keys` fills them: 100,000
/// accounts, 10 tellers and a branch per unit of scale.
pub fn load_pgbench(db: &TestDb, scale: u32) {
    pgbench_schema(db);
    db.exec(&format!(
        "INSERT INTO pgbench_branches (bid, bbalance)
             SELECT b, 0 FROM generate_series(1, {scale}) b;
         INSERT INTO pgbench_tellers (tid, bid, tbalance)
             SELECT t, (t - 1) / 10 + 1, 0 FROM generate_series(1, {tellers}) t;
         INSERT INTO pgbench_accounts (aid, bid, abalance, filler)
             SELECT a, (a - 1) / 100000 + 1, 0, '' FROM generate_series(1, {accounts}) a;
         ANALYZE",
        tellers = 10 * scale,
        accounts = 100_000 * scale
    ));
}

// ---------------------------------------------------------------------------------------------
// Running pgcopy
// ---------------------------------------------------------------------------------------------

/// The `pgcopy` binary with no connection settings inherited from the caller's environment
/// (`PGCOPY_*`, `PGHOST`, `PGPORT`, ... and `RUST_LOG` are removed), state files under
/// `state_home()`, and stdin closed.
pub fn pgcopy() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgcopy"));
    clear_pg_env(&mut cmd);
    cmd.env_remove("RUST_LOG")
        .env("XDG_STATE_HOME", state_home())
        .stdin(Stdio::null());
    cmd
}

/// Where the binary keeps its state files in tests: a directory of this test process, so
/// runs never find the state of another process (or of the user running the tests).
pub fn state_home() -> PathBuf {
    std::env::temp_dir().join(format!("pgcopy-test-state-{}", std::process::id()))
}

/// The directory that holds pgcopy's state files under `state_home()`.
pub fn state_dir() -> PathBuf {
    state_home().join("pgcopy")
}

/// What a finished command did. Its `Debug` shows everything, so `assert_eq!(out.code, 0,
/// "{out:?}")` explains a failure.
pub struct Output {
    pub command: String,
    /// The exit code, or 128 + the signal number when a signal ended the process.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "\n$ {}\nexit code: {}", self.command, self.code)?;
        writeln!(f, "--- stdout ---\n{}", self.stdout)?;
        write!(f, "--- stderr ---\n{}", self.stderr)
    }
}

/// Runs a command to completion, capturing both streams. Kills it and fails the test after
/// five minutes, or after `PGCOPY_TEST_TIMEOUT_SECS`, so a hang cannot stall the suite.
pub fn run(cmd: &mut Command) -> Output {
    let timeout = run_timeout();
    let command = describe_command(cmd);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {command}: {e}"));
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let status = wait_until(&mut child, Instant::now() + timeout);
    let output = Output {
        command,
        code: status.map(exit_code).unwrap_or(-1),
        stdout: stdout.join().expect("the stdout reader panicked"),
        stderr: stderr.join().expect("the stderr reader panicked"),
    };
    if status.is_none() {
        panic!("killed after {timeout:?} without finishing:{output:?}");
    }
    output
}

/// How long a pgcopy run may take before the test kills it: five minutes, or
/// `PGCOPY_TEST_TIMEOUT_SECS`.
pub fn run_timeout() -> Duration {
    std::env::var("PGCOPY_TEST_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_RUN_TIMEOUT)
}

/// Waits for `child` until `deadline`; kills it and returns `None` if it is still running.
pub fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        if let Some(status) = child.try_wait().expect("waiting for a child process") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Reads a child's output to the end on a thread of its own.
pub fn drain(stream: Option<impl Read + Send + 'static>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut stream) = stream {
            let _ = stream.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|signal| 128 + signal))
        .unwrap_or(-1)
}

fn describe_command(cmd: &Command) -> String {
    let quote = |s: &OsStr| shell_quote(&s.to_string_lossy());
    std::iter::once(quote(cmd.get_program()))
        .chain(cmd.get_args().map(quote))
        .collect::<Vec<_>>()
        .join(" ")
}

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

fn connect(socket_dir: &Path, port: u16, db: &str) -> postgres::Client {
    let mut config = postgres::Config::new();
    config
        .host_path(socket_dir)
        .port(port)
        .user(PG_USER)
        .dbname(db)
        .connect_timeout(Duration::from_secs(10));
    config
        .connect(NoTls)
        .unwrap_or_else(|e| panic!("connecting to {db} on port {port}: {}", describe(&e)))
}

fn simple_rows(client: &mut postgres::Client, sql: &str, db: &str) -> Vec<Vec<Option<String>>> {
    let messages = client
        .simple_query(sql)
        .unwrap_or_else(|e| panic!("SQL failed on {db}: {}\n--- SQL ---\n{sql}", describe(&e)));
    // With several statements only the last one's rows count; a new RowDescription starts them.
    let mut rows = Vec::new();
    for message in messages {
        match message {
            SimpleQueryMessage::Row(row) => rows.push(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_string))
                    .collect(),
            ),
            SimpleQueryMessage::RowDescription(_) => rows.clear(),
            _ => {}
        }
    }
    rows
}

/// The server's whole message (severity, text, detail, hint, position) or the client error.
fn describe(e: &postgres::Error) -> String {
    let Some(db) = e.as_db_error() else {
        return format!("{e:#}");
    };
    let mut text = format!(
        "{}: {} (SQLSTATE {})",
        db.severity(),
        db.message(),
        db.code().code()
    );
    if let Some(detail) = db.detail() {
        text.push_str(&format!("\nDETAIL: {detail}"));
    }
    if let Some(hint) = db.hint() {
        text.push_str(&format!("\nHINT: {hint}"));
    }
    if let Some(context) = db.where_() {
        text.push_str(&format!("\nCONTEXT: {context}"));
    }
    text
}

/// A database name from a test name: lower case letters, digits and `_`, at most 63 bytes
/// (PostgreSQL's limit), with a hash suffix when it had to be cut so names stay distinct.
fn db_name(test: &str) -> String {
    let clean: String = test
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if clean.len() <= 63 {
        return clean;
    }
    // FNV-1a: stable across runs and Rust versions, unlike DefaultHasher.
    let hash = test.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{}_{:08x}", &clean[..54], hash as u32)
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@+".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}
