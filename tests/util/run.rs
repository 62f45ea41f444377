//! Running the `pgcopy` binary as a user would: the one runner (`pgcopy()`), the commands
//! built on it (`copy`, `verify`, a copy in the background), what a run did (`Output`),
//! `assert_exit!`, which shows the command and everything it printed when the code is wrong,
//! and the files a run sees (its state directory, its `HOME`, a rules file).
//!
//! Every run is hermetic: no `PG*` variable of the caller's, state files in a directory of this
//! test process, an empty `HOME` (so the caller's `~/.pgpass` and `~/.postgresql/root.crt`
//! never take part), stdin closed, and a timeout that kills a hang.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use super::db::TestDb;

/// How long `run` lets the binary work before it kills it and fails the test.
const DEFAULT_RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// pgcopy's exit codes (`mod exit` in src/main.rs, documented in `--help` and the README).
pub mod exit {
    /// Every selected table was copied.
    pub const SUCCESS: i32 = 0;
    /// One or more tables failed; the others were copied and everything was put back.
    pub const TABLES_FAILED: i32 = 1;
    /// Usage, configuration, connection or schema error, before anything was written.
    pub const USAGE: i32 = 2;
    /// A verification found a table that differs.
    pub const VERIFY_MISMATCH: i32 = 3;
    /// Interrupted (Ctrl-C, SIGTERM); the destination was put back as far as it had changed.
    pub const INTERRUPTED: i32 = 130;
    /// Not pgcopy's: what `Output::code` says of a process that `kill -9` ended.
    pub const KILLED: i32 = 128 + 9;

    /// A few words on a code, for failure messages.
    pub fn meaning(code: i32) -> &'static str {
        match code {
            SUCCESS => "success",
            TABLES_FAILED => "tables failed",
            USAGE => "refused before writing",
            VERIFY_MISMATCH => "verify found a difference",
            INTERRUPTED => "interrupted",
            KILLED => "killed",
            _ => "not one of pgcopy's codes",
        }
    }
}

/// Asserts that a run exited with `code`; on failure shows the command, the code, stdout and
/// stderr, after the optional message: `assert_exit!(out, exit::USAGE, "{mode}")`.
macro_rules! assert_exit {
    ($out:expr, $code:expr $(,)?) => {
        $crate::util::check_exit(&$out, $code, ::std::format_args!(""))
    };
    ($out:expr, $code:expr, $($message:tt)+) => {
        $crate::util::check_exit(&$out, $code, ::std::format_args!($($message)+))
    };
}
pub(crate) use assert_exit;

/// What `assert_exit!` expands to.
#[track_caller]
pub fn check_exit(out: &Output, code: i32, message: fmt::Arguments<'_>) {
    if out.code != code {
        let message = message.to_string();
        let message = if message.is_empty() {
            message
        } else {
            format!("{message}: ")
        };
        panic!(
            "{message}exit code {} ({}), expected {code} ({}):{out:?}",
            out.code,
            exit::meaning(out.code),
            exit::meaning(code)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The runner and the commands built on it
// ---------------------------------------------------------------------------------------------

/// The `pgcopy` binary with no connection settings inherited from the caller's environment
/// (`PGCOPY_*`, `PGHOST`, `PGPORT`, ... and `RUST_LOG` are removed), state files under
/// `state_home()`, an empty `HOME`, and stdin closed.
pub fn pgcopy() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgcopy"));
    clear_pg_env(&mut cmd);
    cmd.env_remove("RUST_LOG")
        .env("XDG_STATE_HOME", state_home())
        .env("HOME", empty_home())
        .stdin(Stdio::null());
    cmd
}

/// `pgcopy copy --yes` from `src` to `dst` with extra arguments.
pub fn copy(src: &TestDb, dst: &TestDb, extra: &[&str]) -> Output {
    copy_to(&src.url(), &dst.url(), extra)
}

/// `pgcopy copy --yes` between two connection strings, for tests that spell them.
pub fn copy_to(source: &str, dest: &str, extra: &[&str]) -> Output {
    run(&mut copy_command(source, dest, extra))
}

/// The `pgcopy copy --yes` command line, not yet run.
pub fn copy_command(source: &str, dest: &str, extra: &[&str]) -> Command {
    let mut cmd = pgcopy();
    cmd.args(["copy", "--source", source, "--dest", dest, "--yes"])
        .args(extra);
    cmd
}

/// `pgcopy verify` from `src` to `dst` with extra arguments.
pub fn verify(src: &TestDb, dst: &TestDb, extra: &[&str]) -> Output {
    verify_to(&src.url(), &dst.url(), extra)
}

/// `pgcopy verify` between two connection strings.
pub fn verify_to(source: &str, dest: &str, extra: &[&str]) -> Output {
    run(pgcopy()
        .args(["verify", "--source", source, "--dest", dest])
        .args(extra))
}

/// `pgcopy copy --yes` started in the background, for tests that act on it mid-copy.
///
/// Its output goes to files, read when it is collected (`finish`, `spooled_stderr`): a pipe
/// nobody reads while the test does other things fills up, and then blocks the run.
pub fn spawn_copy(src: &TestDb, dst: &TestDb, extra: &[&str]) -> Child {
    static SPAWNED: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join("pgcopy-test-output");
    std::fs::create_dir_all(&dir).expect("making the directory for background output");
    let n = SPAWNED.fetch_add(1, Ordering::SeqCst);
    let path = |what: &str| dir.join(format!("{}-{n}.{what}", std::process::id()));
    let (out, err) = (path("out"), path("err"));
    let file = |path: &Path| std::fs::File::create(path).expect("a file for background output");
    let child = copy_command(&src.url(), &dst.url(), extra)
        .stdout(file(&out))
        .stderr(file(&err))
        .spawn()
        .expect("starting pgcopy");
    spooled().insert(child.id(), (out, err));
    child
}

/// Where the output of the background runs `spawn_copy` started goes, by process id.
fn spooled() -> std::sync::MutexGuard<'static, BTreeMap<u32, (PathBuf, PathBuf)>> {
    static SPOOLED: Mutex<BTreeMap<u32, (PathBuf, PathBuf)>> = Mutex::new(BTreeMap::new());
    SPOOLED.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a background run `spawn_copy` started (its process `id`) wrote on stderr so far.
pub fn spooled_stderr(id: u32) -> String {
    let path = spooled().get(&id).map(|(_, err)| err.clone());
    path.and_then(|p| std::fs::read(p).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Waits for a background pgcopy and collects what it printed. A run that hangs is killed
/// after `run_timeout()` and fails the test.
pub fn finish(child: Child) -> Output {
    collect(child, "pgcopy copy (in the background)".into())
}

// ---------------------------------------------------------------------------------------------
// Running a command
// ---------------------------------------------------------------------------------------------

/// What a finished command did. Its `Debug` shows everything, so `assert_exit!` and
/// `assert!(…, "{out:?}")` explain a failure.
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
/// `run_timeout()`, so a hang cannot stall the suite.
pub fn run(cmd: &mut Command) -> Output {
    let command = describe_command(cmd);
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {command}: {e}"));
    collect(child, command)
}

/// Waits for a child started with piped output and collects what it printed; kills it and
/// fails the test when it is still running after `run_timeout()`.
fn collect(mut child: Child, command: String) -> Output {
    let timeout = run_timeout();
    // Read while it runs, so a chatty child never blocks on a full pipe.
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let status = wait_until(&mut child, Instant::now() + timeout);
    let read = |path: &Path| {
        let bytes = std::fs::read(path).unwrap_or_default();
        let _ = std::fs::remove_file(path);
        String::from_utf8_lossy(&bytes).into_owned()
    };
    let (mut out, mut err) = (
        stdout.join().expect("the stdout reader panicked"),
        stderr.join().expect("the stderr reader panicked"),
    );
    if let Some((out_file, err_file)) = spooled().remove(&child.id()) {
        out = read(&out_file);
        err = read(&err_file);
    }
    let output = Output {
        command,
        code: status.map(exit_code).unwrap_or(-1),
        stdout: out,
        stderr: err,
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

/// Runs a helper program (not pgcopy) and fails the test if it fails.
pub(super) fn run_checked(cmd: &mut Command) -> std::process::Output {
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

/// libpq reads PGHOST, PGSSLMODE, PGSERVICE and friends; none of the caller's may leak in.
pub(super) fn clear_pg_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(key);
        }
    }
}

pub(super) fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@+".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

// ---------------------------------------------------------------------------------------------
// The files a run sees
// ---------------------------------------------------------------------------------------------

/// Where the binary keeps its state files in tests: a directory of this test process, so
/// runs never find the state of another process (or of the user running the tests).
pub fn state_home() -> PathBuf {
    scratch_dir("state")
}

/// The directory that holds pgcopy's state files under `state_home()`.
pub fn state_dir() -> PathBuf {
    state_home().join("pgcopy")
}

/// A rules file (`--rules`) of the test's, named after its database and `name`, in this
/// test process's scratch directory: the one way a test writes one.
pub fn rules_file(db: &TestDb, name: &str, text: &str) -> String {
    let path = scratch_dir(&format!("{}-{name}.toml", db.name));
    std::fs::write(&path, text).expect("writing the rules file");
    path.display().to_string()
}

/// The `HOME` of every run: an empty directory of this test process.
fn empty_home() -> &'static Path {
    static HOME: OnceLock<PathBuf> = OnceLock::new();
    HOME.get_or_init(|| {
        let home = scratch_dir("home");
        std::fs::create_dir_all(&home).expect("creating an empty HOME");
        home
    })
}

/// A path of this test process for files the tests write (an empty `HOME`, state files,
/// rules files, password files, certificates); not created. The first call removes those
/// of test processes that are gone, so no run leaves anything behind in `$TMPDIR` for good.
pub fn scratch_dir(name: &str) -> PathBuf {
    const PREFIX: &str = "pgcopy-test-scratch-";
    static SWEPT: OnceLock<()> = OnceLock::new();
    SWEPT.get_or_init(|| {
        for entry in std::fs::read_dir(std::env::temp_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            let file_name = entry.file_name();
            let pid = file_name
                .to_str()
                .and_then(|n| n.strip_prefix(PREFIX))
                .and_then(|rest| rest.split('-').next());
            if let Some(pid) = pid {
                if !Path::new("/proc").join(pid).exists() {
                    let path = entry.path();
                    let _ = if path.is_dir() {
                        std::fs::remove_dir_all(path)
                    } else {
                        std::fs::remove_file(path)
                    };
                }
            }
        }
    });
    std::env::temp_dir().join(format!("{PREFIX}{}-{name}", std::process::id()))
}
