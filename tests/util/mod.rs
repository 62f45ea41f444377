//! Test harness: throwaway PostgreSQL clusters, a database per test, running the `pgcopy` binary.
//!
//! Every test talks to real servers that this module starts itself with `initdb` and `pg_ctl`
//! in a temporary directory, on a free port of 127.0.0.1, with the unix socket inside that
//! directory. Two shared clusters (`source()` and `dest()`) start once per test process; a test
//! that needs a server of its own (TLS, a restart mid-copy) calls `start_cluster`.
//!
//! Rust never drops statics, so teardown is done by a watchdog: a small `sh` loop started next to
//! each cluster that waits for the test process to go away (normal exit, panic, Ctrl-C or kill)
//! and then stops the server and removes its directory.
//!
//! PostgreSQL refuses to run as root, and CI runs as root: then the server tools run as the
//! `postgres` user through `runuser`, and the cluster directory belongs to that user.

#![allow(dead_code)]

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fmt;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use postgres::{NoTls, SimpleQueryMessage};

/// The user PostgreSQL runs as when the tests run as root, and the superuser of every cluster.
const PG_USER: &str = "postgres";

/// How long `run` lets the binary work before it kills it and fails the test.
const DEFAULT_RUN_TIMEOUT: Duration = Duration::from_secs(300);

// ---------------------------------------------------------------------------------------------
// Shared clusters and per-test databases
// ---------------------------------------------------------------------------------------------

static SOURCE: OnceLock<Result<Cluster, String>> = OnceLock::new();
static DEST: OnceLock<Result<Cluster, String>> = OnceLock::new();

/// The cluster that plays the source side, shared by all tests of this process.
pub fn source() -> &'static Cluster {
    shared(&SOURCE, "source")
}

/// The cluster that plays the destination side, shared by all tests of this process.
pub fn dest() -> &'static Cluster {
    shared(&DEST, "dest")
}

/// Starts a shared cluster once. A failure is remembered so that every later test fails at once
/// with the same reason instead of trying `initdb` again.
fn shared(cell: &'static OnceLock<Result<Cluster, String>>, role: &str) -> &'static Cluster {
    let started = cell.get_or_init(|| {
        std::panic::catch_unwind(|| start_cluster(ClusterOptions::default())).map_err(|panic| {
            let reason = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".to_string());
            format!("starting the shared {role} cluster failed: {reason}")
        })
    });
    match started {
        Ok(cluster) => cluster,
        Err(reason) => panic!("{reason}"),
    }
}

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
        format!("postgres://{PG_USER}@127.0.0.1:{}/{}", self.port, self.name)
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
// Clusters
// ---------------------------------------------------------------------------------------------

/// How to set up a cluster of a test's own. The default is what the shared clusters use.
#[derive(Clone, Debug, Default)]
pub struct ClusterOptions {
    /// Extra server settings, passed as `-c name=value` after the harness's own (so they win).
    pub extra_conf: Vec<(String, String)>,
    /// Files written into the data directory before the first start (owned by the server's
    /// user, mode 0600), e.g. `server.crt` and `server.key`.
    pub files: Vec<(String, Vec<u8>)>,
    /// Replaces `pg_hba.conf`; the default trusts everyone. Keep a `local all all trust` line:
    /// the harness administers the cluster over the unix socket.
    pub hba_conf: Option<String>,
}

impl ClusterOptions {
    /// Adds a server setting.
    pub fn conf(mut self, name: &str, value: &str) -> Self {
        self.extra_conf.push((name.to_string(), value.to_string()));
        self
    }

    /// Adds a file to write into the data directory.
    pub fn file(mut self, name: &str, content: impl Into<Vec<u8>>) -> Self {
        self.files.push((name.to_string(), content.into()));
        self
    }

    /// Replaces `pg_hba.conf`.
    pub fn hba(mut self, content: &str) -> Self {
        self.hba_conf = Some(content.to_string());
        self
    }
}

/// A running throwaway cluster. Dropping it (a test's own cluster) stops it and removes its
/// directory; the shared clusters are removed by their watchdog when the test process ends.
pub struct Cluster {
    pub port: u16,
    /// The temporary directory that holds everything below.
    dir: PathBuf,
    data: PathBuf,
    socket_dir: PathBuf,
    log: PathBuf,
    /// The `-o` options for `pg_ctl start`, kept so `start` after `stop` is the same server.
    server_options: String,
}

/// Makes a temporary directory, initializes a cluster in it and starts the server.
pub fn start_cluster(opts: ClusterOptions) -> Cluster {
    let tools = tools();
    let dir = make_cluster_dir();
    // The watchdog exists before anything can fail, so even a failed start is cleaned up.
    spawn_watchdog(&dir);

    let data = dir.join("data");
    let socket_dir = dir.join("sock");
    let log = dir.join("server.log");
    std::fs::create_dir(&socket_dir)
        .unwrap_or_else(|e| panic!("creating {}: {e}", socket_dir.display()));
    give_to_server_user(&dir);

    let initdb = server_tool("initdb")
        .arg("-D")
        .arg(&data)
        .args(["-U", PG_USER, "--auth=trust", "-E", "UTF8", "--locale=C"])
        .arg("--no-sync")
        .current_dir(&dir)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", tools.bindir.join("initdb").display()));
    if !initdb.status.success() {
        panic!(
            "initdb failed ({}) in {}:\n{}{}",
            initdb.status,
            data.display(),
            String::from_utf8_lossy(&initdb.stdout),
            String::from_utf8_lossy(&initdb.stderr)
        );
    }

    if let Some(hba) = &opts.hba_conf {
        write_server_file(&data.join("pg_hba.conf"), hba.as_bytes());
    }
    for (name, content) in &opts.files {
        write_server_file(&data.join(name), content);
    }

    // Another process may take the port between our probe and the server's bind; then the
    // server fails with "Address already in use" and we simply try another port.
    let mut attempt = 0;
    loop {
        attempt += 1;
        let port = free_port();
        let cluster = Cluster {
            port,
            dir: dir.clone(),
            data: data.clone(),
            socket_dir: socket_dir.clone(),
            log: log.clone(),
            server_options: server_options(port, &socket_dir, &opts.extra_conf),
        };
        match cluster.try_start() {
            Ok(()) => return cluster,
            Err(failure) => {
                let log_tail = cluster.log_tail();
                // Forget the cluster without dropping it: Drop would delete the data directory.
                std::mem::forget(cluster);
                if attempt < 5 && log_tail.contains("Address already in use") {
                    continue;
                }
                panic!("starting PostgreSQL failed: {failure}\n--- server log ---\n{log_tail}");
            }
        }
    }
}

impl Cluster {
    /// `postgres://postgres@127.0.0.1:PORT/DB`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{PG_USER}@127.0.0.1:{}/{db}", self.port)
    }

    /// A new superuser connection to `db` over the unix socket.
    pub fn client(&self, db: &str) -> postgres::Client {
        connect(&self.socket_dir, self.port, db)
    }

    /// A handle to an existing database of this cluster.
    pub fn db(&self, name: &str) -> TestDb {
        TestDb {
            name: name.to_string(),
            port: self.port,
            socket_dir: self.socket_dir.clone(),
        }
    }

    /// Creates an empty database named after `name` (made a valid identifier), dropping an
    /// earlier one of that name first, even if something is still connected to it.
    pub fn create_db(&self, name: &str) -> TestDb {
        let db = db_name(name);
        let quoted = quote_ident(&db);
        // Two round trips: CREATE DATABASE refuses to run in the implicit transaction of a
        // multi-statement batch.
        let mut client = self.client("postgres");
        for statement in [
            format!("DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"),
            format!("CREATE DATABASE {quoted} TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C'"),
        ] {
            if let Err(e) = client.batch_execute(&statement) {
                panic!(
                    "{statement}\nfailed on port {}: {}",
                    self.port,
                    describe(&e)
                );
            }
        }
        self.db(&db)
    }

    /// The last 60 lines of the server log.
    pub fn log_tail(&self) -> String {
        match std::fs::read_to_string(&self.log) {
            Ok(log) => {
                let lines: Vec<&str> = log.lines().collect();
                lines[lines.len().saturating_sub(60)..].join("\n")
            }
            Err(e) => format!("(cannot read {}: {e})", self.log.display()),
        }
    }

    /// The data directory, e.g. to look at files the server wrote.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// Stops the server with `-m fast`: open connections are terminated.
    pub fn stop(&self) {
        let out = server_tool("pg_ctl")
            .args(["-w", "-t", "60", "-m", "fast", "-D"])
            .arg(&self.data)
            .arg("stop")
            .current_dir(&self.dir)
            .output()
            .expect("running pg_ctl stop");
        if !out.status.success() {
            panic!(
                "pg_ctl stop failed ({}):\n{}{}\n--- server log ---\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log_tail()
            );
        }
    }

    /// Starts the server again after `stop`, on the same port with the same settings.
    pub fn start(&self) {
        if let Err(failure) = self.try_start() {
            panic!(
                "starting PostgreSQL again failed: {failure}\n--- server log ---\n{}",
                self.log_tail()
            );
        }
    }

    /// `stop` then `start`.
    pub fn restart(&self) {
        self.stop();
        self.start();
    }

    fn try_start(&self) -> Result<(), String> {
        let out = server_tool("pg_ctl")
            .args(["-w", "-t", "60", "-D"])
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .arg("-o")
            .arg(&self.server_options)
            .arg("start")
            .current_dir(&self.dir)
            // pg_ctl sends the server's output to the log file, so these pipes close when
            // pg_ctl exits and `output()` does not wait for the server.
            .output()
            .map_err(|e| format!("running pg_ctl start: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "pg_ctl start on port {} exited with {}:\n{}{}",
                self.port,
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Best effort and silent: this may run while a failed test unwinds. The watchdog
        // stops watching once the directory is gone.
        let _ = server_tool("pg_ctl")
            .args(["-w", "-t", "30", "-m", "immediate", "-D"])
            .arg(&self.data)
            .arg("stop")
            .current_dir(std::env::temp_dir())
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `-o` string for `pg_ctl`. pg_ctl hands it to `/bin/sh`, hence the shell quoting.
fn server_options(port: u16, socket_dir: &Path, extra_conf: &[(String, String)]) -> String {
    let mut options = format!(
        "-p {port} -c listen_addresses=127.0.0.1 -k {} \
         -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
         -c max_connections=200 -c shared_buffers=64MB",
        shell_quote(&socket_dir.to_string_lossy())
    );
    for (name, value) in extra_conf {
        options.push_str(" -c ");
        options.push_str(&shell_quote(&format!("{name}={value}")));
    }
    options
}

/// Creates `$TMPDIR/pgcopy-test-PID-N`, mode 0755 so the server's user can reach its files.
fn make_cluster_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("pgcopy-test-{}-{n}", std::process::id()));
    if dir.exists() {
        // Left over from an earlier process with the same pid that was killed hard.
        std::fs::remove_dir_all(&dir)
            .unwrap_or_else(|e| panic!("removing stale {}: {e}", dir.display()));
    }
    std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod 0755 {}: {e}", dir.display()));
    dir
}

/// Hands a directory tree to the server's user when running as root, and checks it can work
/// there (a root-only TMPDIR such as /root/tmp would not do).
fn give_to_server_user(dir: &Path) {
    if !tools().as_root {
        return;
    }
    run_checked(
        Command::new("chown")
            .arg("-R")
            .arg(format!("{PG_USER}:"))
            .arg(dir),
    );
    let ok = Command::new("runuser")
        .args(["-u", PG_USER, "--", "test", "-w"])
        .arg(dir)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        panic!(
            "the {PG_USER} user cannot write to {} (is a parent directory closed to others?). \
             Point TMPDIR at a directory every user can enter, e.g. TMPDIR=/tmp",
            dir.display()
        );
    }
}

/// Writes a file the server reads (config, certificate, key): owned by its user, mode 0600.
fn write_server_file(path: &Path, content: &[u8]) {
    std::fs::write(path, content).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .unwrap_or_else(|e| panic!("chmod 0600 {}: {e}", path.display()));
    if tools().as_root {
        run_checked(Command::new("chown").arg(format!("{PG_USER}:")).arg(path));
    }
}

/// Starts the `sh` loop that tears a cluster down once this test process is gone. It runs in
/// the background of a shell that exits at once, so it is no child of ours, and it ignores the
/// signals a terminal or CI sends to the whole process group, so it outlives us.
fn spawn_watchdog(dir: &Path) {
    const SCRIPT: &str = r#"(
        trap '' HUP INT QUIT TERM
        pid=$1 dir=$2 pg_ctl=$3 as_root=$4
        while kill -0 "$pid" 2>/dev/null && [ -d "$dir" ]; do sleep 0.5; done
        if [ -f "$dir/data/postmaster.pid" ]; then
            if [ "$as_root" = 1 ]; then
                runuser -u postgres -- "$pg_ctl" -D "$dir/data" -m immediate -w -t 30 stop
            else
                "$pg_ctl" -D "$dir/data" -m immediate -w -t 30 stop
            fi
            if [ -f "$dir/data/postmaster.pid" ]; then
                kill -KILL "$(head -n 1 "$dir/data/postmaster.pid")"
            fi
        fi
        rm -rf "$dir"
    ) </dev/null >/dev/null 2>&1 &"#;
    let tools = tools();
    let status = Command::new("sh")
        .arg("-c")
        .arg(SCRIPT)
        .arg("pgcopy-test-watchdog")
        .arg(std::process::id().to_string())
        .arg(dir)
        .arg(tools.bindir.join("pg_ctl"))
        .arg(if tools.as_root { "1" } else { "0" })
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("starting the cluster watchdog (sh)");
    assert!(
        status.success(),
        "starting the cluster watchdog: sh exited with {status}"
    );
}

/// A port on 127.0.0.1 that nothing listens on now and that this process has not handed out.
fn free_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    loop {
        let listener =
            TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0 to find a free port");
        let port = listener
            .local_addr()
            .expect("reading the address of a bound socket")
            .port();
        if given.insert(port) {
            return port;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Finding and running PostgreSQL's programs
// ---------------------------------------------------------------------------------------------

struct Tools {
    bindir: PathBuf,
    /// PostgreSQL refuses to run as root; then server tools run as `postgres` via `runuser`.
    as_root: bool,
}

fn tools() -> &'static Tools {
    static TOOLS: OnceLock<Tools> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let bindir = find_bindir();
        let as_root = effective_uid_is_root();
        if as_root {
            let has_user = Command::new("id")
                .args(["-u", PG_USER])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if !has_user {
                panic!(
                    "the tests run as root, PostgreSQL refuses to, and there is no `{PG_USER}` \
                     user to run it as. Install the server package (`apt-get install postgresql` \
                     creates the user) or run the tests as an ordinary user."
                );
            }
            if !is_executable_on_path("runuser") {
                panic!(
                    "the tests run as root and need `runuser` to start PostgreSQL as \
                     `{PG_USER}`: apt-get install util-linux"
                );
            }
        }
        Tools { bindir, as_root }
    })
}

/// The directory with `initdb`, `pg_ctl`, `pgbench`, `pg_dump` and `psql`.
pub fn bindir() -> &'static Path {
    &tools().bindir
}

/// `PG_BINDIR`, else `pg_config --bindir`, else `initdb` on PATH, else the newest
/// `/usr/lib/postgresql/*/bin`. Never skips: without PostgreSQL the tests fail.
fn find_bindir() -> PathBuf {
    let has_initdb = |dir: &Path| dir.join("initdb").is_file();

    if let Some(dir) = std::env::var_os("PG_BINDIR").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        if has_initdb(&dir) {
            return dir;
        }
        panic!("PG_BINDIR={} has no initdb", dir.display());
    }

    let mut tried = Vec::new();
    match Command::new("pg_config").arg("--bindir").output() {
        Ok(out) if out.status.success() => {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if has_initdb(&dir) {
                return dir;
            }
            tried.push(format!(
                "pg_config --bindir says {}, which has no initdb",
                dir.display()
            ));
        }
        Ok(out) => tried.push(format!("pg_config --bindir failed: {}", out.status)),
        Err(e) => tried.push(format!("pg_config: {e}")),
    }

    // Debian links some server programs into /usr/local/bin or similar; the real directory
    // also has pgbench, pg_dump and psql of the same version.
    if let Some(initdb) = find_on_path("initdb") {
        let real = std::fs::canonicalize(&initdb).unwrap_or(initdb);
        if let Some(dir) = real.parent().filter(|dir| has_initdb(dir)) {
            return dir.to_path_buf();
        }
    }
    tried.push("no initdb on PATH".to_string());

    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let dir = entry.path().join("bin");
            has_initdb(&dir).then_some((version, dir))
        })
        .collect();
    versions.sort();
    if let Some((_, dir)) = versions.pop() {
        return dir;
    }
    tried.push("no /usr/lib/postgresql/*/bin/initdb".to_string());

    panic!(
        "cannot find the PostgreSQL server programs (initdb, pg_ctl): {}. The tests start real \
         PostgreSQL servers and never skip. Install them (Debian/Ubuntu: \
         `apt-get install postgresql`) or set PG_BINDIR to the directory that holds initdb.",
        tried.join("; ")
    );
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            candidate
                .metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

fn is_executable_on_path(program: &str) -> bool {
    find_on_path(program).is_some()
}

/// libc is no dependency of ours, so ask `id -u`.
fn effective_uid_is_root() -> bool {
    let out = Command::new("id")
        .arg("-u")
        .output()
        .expect("running `id -u` to learn whether the tests run as root");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// A server program (`initdb`, `pg_ctl`), run as `postgres` when we are root.
fn server_tool(program: &str) -> Command {
    let tools = tools();
    let path = tools.bindir.join(program);
    let mut cmd = if tools.as_root {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", PG_USER, "--"]).arg(path);
        cmd
    } else {
        Command::new(path)
    };
    clear_pg_env(&mut cmd);
    cmd.stdin(Stdio::null());
    cmd
}

/// A client program (`pgbench`, `pg_dump`, `psql`) from the same directory, run as we are,
/// pointed at the database over its unix socket.
fn client_tool(program: &str, db: &TestDb) -> Command {
    let path = tools().bindir.join(program);
    if !path.is_file() {
        panic!(
            "{} is missing: initdb is there but not the client programs of the same \
             version (Debian: apt-get install postgresql, which brings pgbench, psql and \
             pg_dump)",
            path.display()
        );
    }
    let mut cmd = Command::new(path);
    clear_pg_env(&mut cmd);
    cmd.arg("-h")
        .arg(&db.socket_dir)
        .args(["-p", &db.port.to_string(), "-U", PG_USER])
        .stdin(Stdio::null());
    cmd
}

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

/// Fills a database with pgbench's tables (`pgbench -i -s SCALE -q --foreign-keys`):
/// 100,000 accounts per unit of scale.
pub fn load_pgbench(db: &TestDb, scale: u32) {
    run_checked(
        client_tool("pgbench", db)
            .args(["-i", "-s", &scale.to_string(), "-q", "--foreign-keys"])
            .arg(&db.name),
    );
}

/// Recreates `src`'s schema in `dst`: `pg_dump --schema-only --no-owner --no-privileges | psql`.
pub fn copy_schema(src: &TestDb, dst: &TestDb) {
    let dump = run_checked(
        client_tool("pg_dump", src)
            .args(["--schema-only", "--no-owner", "--no-privileges"])
            .arg(&src.name),
    )
    .stdout;
    let mut psql = client_tool("psql", dst)
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(&dst.name)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting psql");
    let mut stdin = psql.stdin.take().expect("psql's stdin is piped");
    // Written from another thread so a chatty psql cannot block us on a full pipe.
    let writer = thread::spawn(move || stdin.write_all(&dump));
    let out = psql.wait_with_output().expect("waiting for psql");
    let written = writer.join().expect("the thread feeding psql panicked");
    if !out.status.success() {
        panic!(
            "restoring the schema of {} into {} failed ({}):\n{}{}",
            src.name,
            dst.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    written.expect("writing the schema dump to psql");
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
    let timeout = std::env::var("PGCOPY_TEST_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_RUN_TIMEOUT);
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

fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
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

fn drain(stream: Option<impl Read + Send + 'static>) -> thread::JoinHandle<String> {
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
