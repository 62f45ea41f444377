//! The validated configuration, one per command: connection strings resolved from flags,
//! files and the environment, sizes parsed, filters compiled, the rules file loaded, the
//! state directory found. Everything after the argh structs (`args`) reads this, not them.

use crate::cli::args;
use crate::pg::target::Target;
use crate::plan::filter::{parse_list, TableFilter};
use crate::plan::pieces::SplitMode;
use crate::rules::Rules;
use crate::schema::fk_mode::FkMode;
use crate::schema::indexes::IndexMode;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How much pgcopy says on stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Verbosity {
    /// Errors only (`-q`).
    Quiet,
    /// Steps, warnings and errors.
    #[default]
    Normal,
    /// Also per-table detail and every SQL statement sent (`-v`).
    Verbose,
}

/// Default chunk size on the byte pipe.
pub(crate) const DEFAULT_BATCH_SIZE: usize = 256 * 1024;
const MIN_BATCH_SIZE: usize = 4 * 1024;
const MAX_BATCH_SIZE: usize = 64 * 1024 * 1024;
const MAX_PARALLEL: usize = 64;

/// What the user asked for.
pub(crate) enum Command {
    Copy(Box<CopyConfig>),
    List(Box<ListConfig>),
    Status(Box<StatusConfig>),
    Cutover(Box<CutoverConfig>),
    Abandon(Box<AbandonConfig>),
    Recover(Box<RecoverConfig>),
    Verify(Box<VerifyConfig>),
    Version,
}

/// What `copy` does, chosen once from `--follow` and `--resume`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CopyMode {
    /// Copy once; `resume`: only the tables an interrupted copy did not finish.
    Copy { resume: bool },
    /// Copy, then follow the source (logical replication) until `cutover`; `resume`: go on
    /// from where an earlier follower of this destination got.
    Follow { resume: bool },
}

#[derive(Debug)]
pub(crate) struct CopyConfig {
    pub(crate) source: Target,
    pub(crate) dest: Target,
    pub(crate) parallel: usize,
    pub(crate) batch_size: usize,
    pub(crate) filter: TableFilter,
    pub(crate) dry_run: bool,
    pub(crate) yes: bool,
    pub(crate) progress: bool,
    pub(crate) fk_mode: FkMode,
    pub(crate) enable_triggers: bool,
    pub(crate) sequences: bool,
    /// Refresh the materialized views built from copied tables after the load.
    pub(crate) refresh_views: bool,
    /// Whether the large objects go with the copy.
    pub(crate) large_objects: crate::schema::large_objects::Selection,
    pub(crate) analyze: bool,
    pub(crate) index_mode: IndexMode,
    /// Which tables are copied in pieces.
    pub(crate) split: SplitMode,
    pub(crate) allow_outside_references: bool,
    /// Copy columns whose destination type may not take every source value.
    pub(crate) allow_narrowing: bool,
    pub(crate) state_dir: PathBuf,
    pub(crate) progress_interval: Duration,
    pub(crate) json: bool,
    pub(crate) verify: bool,
    /// A copy, or a copy and then following, each from the start or resumed.
    pub(crate) mode: CopyMode,
    /// The rules file: masks, and the column names that must be masked.
    pub(crate) rules: Option<Rules>,
    pub(crate) retries: u32,
    pub(crate) lock_timeout: Duration,
    pub(crate) verbosity: Verbosity,
}

#[derive(Debug)]
pub(crate) struct VerifyConfig {
    pub(crate) source: Target,
    pub(crate) dest: Target,
    pub(crate) filter: TableFilter,
    pub(crate) parallel: usize,
    /// How long taking the source snapshot waits for the locks on the tables.
    pub(crate) lock_timeout: Duration,
    /// Whether the large objects are compared too.
    pub(crate) large_objects: crate::schema::large_objects::Selection,
    /// The rules file the copy masked with.
    pub(crate) rules: Option<Rules>,
    pub(crate) json: bool,
    pub(crate) verbosity: Verbosity,
}

#[derive(Debug)]
pub(crate) struct RecoverConfig {
    pub(crate) dest: Target,
    pub(crate) state_dir: PathBuf,
    /// Forget what the state file lists for tables dropped since.
    pub(crate) forget_gone: bool,
    pub(crate) verbosity: Verbosity,
}

impl Command {
    pub(crate) fn verbosity(&self) -> Verbosity {
        match self {
            Command::Copy(c) => c.verbosity,
            Command::List(c) => c.verbosity,
            Command::Status(c) => c.verbosity,
            Command::Cutover(c) => c.verbosity,
            Command::Abandon(c) => c.verbosity,
            Command::Recover(c) => c.verbosity,
            Command::Verify(c) => c.verbosity,
            Command::Version => Verbosity::Normal,
        }
    }

    /// Whether errors are to be reported as a JSON document on stdout.
    pub(crate) fn json(&self) -> bool {
        match self {
            Command::Copy(c) => c.json,
            Command::List(c) => c.json,
            Command::Status(c) => c.json,
            Command::Verify(c) => c.json,
            Command::Cutover(c) => c.json,
            _ => false,
        }
    }
}

#[derive(Debug)]
pub(crate) struct ListConfig {
    pub(crate) source: Target,
    pub(crate) filter: TableFilter,
    pub(crate) exact: bool,
    pub(crate) json: bool,
    pub(crate) verbosity: Verbosity,
}

#[derive(Debug)]
pub(crate) struct StatusConfig {
    pub(crate) source: Target,
    pub(crate) filter: TableFilter,
    pub(crate) json: bool,
    pub(crate) verbosity: Verbosity,
}

#[derive(Debug)]
pub(crate) struct CutoverConfig {
    pub(crate) source: Target,
    pub(crate) dest: Target,
    pub(crate) verify: bool,
    /// Cut over although selected tables are not followed.
    pub(crate) allow_unfollowed: bool,
    /// How long to wait for the follower to reach the mark.
    pub(crate) timeout: Duration,
    pub(crate) json: bool,
    pub(crate) verbosity: Verbosity,
}

#[derive(Debug)]
pub(crate) struct AbandonConfig {
    pub(crate) source: Target,
    pub(crate) dest: Target,
    pub(crate) state_dir: PathBuf,
    pub(crate) verbosity: Verbosity,
}

/// Validates the raw arguments; every error here is a usage error (exit code 2).
pub(crate) fn from_args(args: Box<args::Args>) -> Result<Command> {
    let command = match args.command {
        _ if args.version => return Ok(Command::Version),
        None => bail!("no command given; run `pgcopy help` for the commands"),
        Some(command) => command,
    };
    Ok(match command {
        args::Command::Version(_) => Command::Version,
        args::Command::Verify(a) => Command::Verify(Box::new(VerifyConfig {
            source: source(a.source, a.source_file.as_deref())?,
            dest: dest(a.dest, a.dest_file.as_deref())?,
            filter: filter(
                &a.include_tables,
                &a.exclude_tables,
                &a.include_schemas,
                &a.exclude_schemas,
            ),
            parallel: parallel(a.parallel)?,
            lock_timeout: lock_timeout(a.lock_timeout),
            large_objects: large_objects(a.large_objects, a.no_large_objects)?,
            rules: a.rules.as_deref().map(Rules::load).transpose()?,
            json: a.json,
            verbosity: verbosity(a.quiet, a.verbose)?,
        })),
        args::Command::Recover(a) => Command::Recover(Box::new(RecoverConfig {
            dest: dest(a.dest, a.dest_file.as_deref())?,
            state_dir: state_dir(a.state_dir)?,
            forget_gone: a.forget_gone,
            verbosity: verbosity(a.quiet, a.verbose)?,
        })),
        args::Command::Status(a) => Command::Status(Box::new(StatusConfig {
            source: source(a.source, a.source_file.as_deref())?,
            filter: filter(
                &a.include_tables,
                &a.exclude_tables,
                &a.include_schemas,
                &a.exclude_schemas,
            ),
            json: a.json,
            verbosity: verbosity(a.quiet, a.verbose)?,
        })),
        args::Command::Cutover(a) => Command::Cutover(Box::new(CutoverConfig {
            source: source(a.source, a.source_file.as_deref())?,
            dest: dest(a.dest, a.dest_file.as_deref())?,
            verify: a.verify,
            allow_unfollowed: a.allow_unfollowed,
            timeout: Duration::from_secs(a.timeout),
            json: a.json,
            verbosity: verbosity(a.quiet, a.verbose)?,
        })),
        args::Command::Abandon(a) => Command::Abandon(Box::new(AbandonConfig {
            source: source(a.source, a.source_file.as_deref())?,
            dest: dest(a.dest, a.dest_file.as_deref())?,
            state_dir: state_dir(a.state_dir)?,
            verbosity: verbosity(a.quiet, a.verbose)?,
        })),
        args::Command::List(a) => Command::List(Box::new(ListConfig {
            source: source(a.source, a.source_file.as_deref())?,
            filter: filter(
                &a.include_tables,
                &a.exclude_tables,
                &a.include_schemas,
                &a.exclude_schemas,
            ),
            exact: a.exact,
            json: a.json,
            verbosity: verbosity(a.quiet, a.verbose)?,
        })),
        args::Command::Copy(a) => {
            let parallel = parallel(a.parallel)?;
            let batch_size = match &a.batch_size {
                None => DEFAULT_BATCH_SIZE,
                Some(text) => parse_size(text).context("invalid --batch-size")?,
            };
            if !(MIN_BATCH_SIZE..=MAX_BATCH_SIZE).contains(&batch_size) {
                bail!("--batch-size must be between 4KiB and 64MiB");
            }
            let fk_mode: FkMode = a.fk_mode.as_deref().unwrap_or("auto").parse()?;
            if fk_mode == FkMode::Replica && a.enable_triggers {
                bail!("--enable-triggers cannot be used with --fk-mode replica, in which ordinary triggers never fire");
            }
            Command::Copy(Box::new(CopyConfig {
                source: source(a.source, a.source_file.as_deref())?,
                dest: dest(a.dest, a.dest_file.as_deref())?,
                parallel,
                batch_size,
                filter: filter(
                    &a.include_tables,
                    &a.exclude_tables,
                    &a.include_schemas,
                    &a.exclude_schemas,
                ),
                dry_run: a.dry_run,
                yes: a.yes,
                progress: !a.no_progress,
                fk_mode,
                enable_triggers: a.enable_triggers,
                sequences: !a.no_sequences,
                refresh_views: !a.no_refresh_materialized_views,
                large_objects: large_objects(a.large_objects, a.no_large_objects)?,
                analyze: !a.no_analyze,
                index_mode: a.indexes.as_deref().unwrap_or("auto").parse()?,
                split: split(a.split_tables_larger_than.as_deref(), a.no_split)?,
                allow_outside_references: a.allow_outside_references,
                allow_narrowing: a.allow_narrowing,
                state_dir: state_dir(a.state_dir)?,
                progress_interval: Duration::from_secs(a.progress_interval.max(1)),
                json: a.json,
                verify: a.verify,
                mode: match a.follow {
                    true => CopyMode::Follow { resume: a.resume },
                    false => CopyMode::Copy { resume: a.resume },
                },
                rules: rules_for_copy(a.rules.as_deref(), a.follow)?,
                retries: a.retries,
                lock_timeout: lock_timeout(a.lock_timeout),
                verbosity: verbosity(a.quiet, a.verbose)?,
            }))
        }
    })
}

fn parallel(n: usize) -> Result<usize> {
    if n == 0 || n > MAX_PARALLEL {
        bail!("--parallel must be between 1 and {MAX_PARALLEL}, not {n}");
    }
    Ok(n)
}

/// `--large-objects` / `--no-large-objects`.
fn large_objects(always: bool, never: bool) -> Result<crate::schema::large_objects::Selection> {
    use crate::schema::large_objects::Selection;
    Ok(match (always, never) {
        (true, true) => bail!("give either --large-objects or --no-large-objects, not both"),
        (true, false) => Selection::Always,
        (false, true) => Selection::Never,
        (false, false) => Selection::Auto,
    })
}

/// `--lock-timeout` seconds; 0 would mean "wait for ever" to the server, so at least 1.
fn lock_timeout(seconds: u64) -> Duration {
    Duration::from_secs(seconds.max(1))
}

fn verbosity(quiet: bool, verbose: bool) -> Result<Verbosity> {
    Ok(match (quiet, verbose) {
        (true, true) => bail!("give either --quiet or --verbose, not both"),
        (true, false) => Verbosity::Quiet,
        (false, true) => Verbosity::Verbose,
        (false, false) => Verbosity::Normal,
    })
}

/// The copy's rules file, which following cannot honour: the changes it applies would
/// come unmasked.
fn rules_for_copy(path: Option<&Path>, follow: bool) -> Result<Option<Rules>> {
    let Some(path) = path else {
        return Ok(None);
    };
    if follow {
        bail!(
            "--rules with --follow: the changes following applies after the copy would come \
             unmasked; copy masked without --follow"
        );
    }
    Rules::load(path).map(Some)
}

fn state_dir(flag: Option<PathBuf>) -> Result<PathBuf> {
    match flag {
        Some(dir) => Ok(dir),
        None => crate::state::file::default_dir(),
    }
}

fn filter(it: &[String], et: &[String], is: &[String], es: &[String]) -> TableFilter {
    TableFilter {
        include_tables: parse_list(it),
        exclude_tables: parse_list(et),
        include_schemas: parse_list(is),
        exclude_schemas: parse_list(es),
    }
}

/// The source's connection. Every session of a copy must reach the one server that holds
/// its snapshot: hosts picked at random would scatter them.
fn source(flag: Option<String>, file: Option<&Path>) -> Result<Target> {
    let target = resolve_target("source", flag, file, "PGCOPY_SOURCE")?;
    if target.balances_hosts() {
        bail!(
            "load_balance_hosts=random cannot be used for the source: every session of a copy \
             must reach the server that holds its snapshot (list the hosts without it; \
             target_session_attrs chooses among them)"
        );
    }
    Ok(target)
}

fn dest(flag: Option<String>, file: Option<&Path>) -> Result<Target> {
    resolve_target("dest", flag, file, "PGCOPY_DEST")
}

/// Finds a connection string: the flag, else the file flag, else the environment variable.
fn resolve_target(
    role: &str,
    flag: Option<String>,
    file: Option<&Path>,
    env_var: &str,
) -> Result<Target> {
    let text = match (flag, file) {
        (Some(_), Some(_)) => bail!("give either --{role} or --{role}-file, not both"),
        (Some(text), None) => text,
        (None, Some(path)) => read_conn_file(path)
            .with_context(|| format!("reading --{role}-file {}", path.display()))?,
        (None, None) => match std::env::var(env_var) {
            Ok(text) if !text.trim().is_empty() => text,
            _ => bail!("no {role} connection: pass --{role}, --{role}-file or set {env_var}"),
        },
    };
    let side = if role == "source" {
        "the source"
    } else {
        "the destination"
    };
    Target::parse(text.trim())
        .map(|target| target.with_side(side))
        .with_context(|| format!("invalid {role} connection string"))
}

/// The first line of a connection file that is neither blank nor a `#` comment.
fn read_conn_file(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_string)
        .context("the file has no connection line (only blank lines and # comments)")
}

/// `--split-tables-larger-than SIZE` or `--no-split`, not both.
fn split(larger_than: Option<&str>, off: bool) -> Result<SplitMode> {
    match (larger_than, off) {
        (Some(_), true) => bail!("--split-tables-larger-than and --no-split contradict each other"),
        (None, true) => Ok(SplitMode::Off),
        (None, false) => Ok(SplitMode::Auto),
        (Some(size), false) => {
            let bytes = parse_size(size).context("invalid --split-tables-larger-than")?;
            if bytes < 1024 * 1024 {
                bail!("--split-tables-larger-than must be at least 1MiB");
            }
            Ok(SplitMode::Above(bytes as u64))
        }
    }
}

/// Parses `65536`, `64KiB`, `64K`, `1MiB`, `1M`, `1GiB`, `1TiB` (binary units).
pub(crate) fn parse_size(text: &str) -> Result<usize> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: usize = digits
        .parse()
        .with_context(|| format!("{text:?} does not start with a number"))?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => bail!("unknown size unit {other:?}: use KiB, MiB, GiB or TiB"),
    };
    number
        .checked_mul(factor)
        .with_context(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes_with_binary_units() {
        assert_eq!(parse_size("65536").unwrap(), 65536);
        assert_eq!(parse_size("64KiB").unwrap(), 65536);
        assert_eq!(parse_size("64k").unwrap(), 65536);
        assert_eq!(parse_size("1MiB").unwrap(), 1 << 20);
        assert_eq!(parse_size(" 2 M ").unwrap(), 2 << 20);
        assert!(parse_size("MiB").is_err());
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("2t").unwrap(), 2 << 40);
        assert!(parse_size("1PiB").is_err());
    }

    #[test]
    fn splits_as_asked() {
        assert_eq!(split(None, false).unwrap(), SplitMode::Auto);
        assert_eq!(split(None, true).unwrap(), SplitMode::Off);
        assert_eq!(
            split(Some("10GiB"), false).unwrap(),
            SplitMode::Above(10 << 30)
        );
        assert!(split(Some("10GiB"), true).is_err());
        assert!(split(Some("64KiB"), false).is_err());
    }

    #[test]
    fn reads_the_first_non_comment_line_of_a_connection_file() {
        let dir = std::env::temp_dir().join(format!("pgcopy-conf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("source.conn");
        std::fs::write(
            &path,
            "# production\n\n  host=db1 dbname=app  \nhost=other\n",
        )
        .unwrap();
        assert_eq!(read_conn_file(&path).unwrap(), "host=db1 dbname=app");
        std::fs::write(&path, "# nothing\n").unwrap();
        assert!(read_conn_file(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
