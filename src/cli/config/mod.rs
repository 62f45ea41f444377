//! The validated configuration, one per command: connection strings resolved from flags,
//! files and the environment, sizes parsed, filters compiled, the rules file loaded, the
//! state directory found (`values`), the shell of `completions` (`shell`), and what a
//! command does chosen once, as an enum (`CopyMode`). Everything after the argh structs
//! (`args`) reads this, not them.

mod shell;
mod values;

pub(crate) use shell::Shell;

use values::{
    chunk_bytes, dest, filter, large_objects, lock_timeout, metrics_listen, parallel, parse_size,
    rules_for_copy, source, split, state_dir, verbosity,
};

use crate::cli::args;
use crate::pg::target::Target;
use crate::plan::filter::TableFilter;
use crate::plan::pieces::SplitMode;
use crate::rules::Rules;
use crate::schema::fk_mode::FkMode;
use crate::schema::indexes::IndexMode;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
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
    /// Print the completion script for this shell.
    Completions(Shell),
    /// Print the manual page.
    Man,
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
    /// With `--follow`: the size of the ranges big tables are read in, each in a snapshot
    /// of its own.
    pub(crate) chunk_bytes: u64,
    pub(crate) allow_outside_references: bool,
    /// Copy columns whose destination type may not take every source value.
    pub(crate) allow_narrowing: bool,
    pub(crate) state_dir: PathBuf,
    pub(crate) progress_interval: Duration,
    pub(crate) json: bool,
    pub(crate) verify: bool,
    /// A copy, or a copy and then following, each from the start or resumed.
    pub(crate) mode: CopyMode,
    /// `--metrics-listen`: where to serve metrics while it runs.
    pub(crate) metrics_listen: Option<std::net::SocketAddr>,
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
            Command::Completions(_) | Command::Man | Command::Version => Verbosity::Normal,
        }
    }

    /// The command's name, as the metrics' `command` label.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Command::Copy(_) => "copy",
            Command::List(_) => "list",
            Command::Status(_) => "status",
            Command::Cutover(_) => "cutover",
            Command::Abandon(_) => "abandon",
            Command::Recover(_) => "recover",
            Command::Verify(_) => "verify",
            Command::Completions(_) => "completions",
            Command::Man => "man",
            Command::Version => "version",
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
    /// The destination whose follower's initial copy is shown, when one is given.
    pub(crate) dest: Option<Target>,
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

/// How a run reports beside its own output, for whoever runs it unattended: the log's
/// format, and where its metrics go at the end.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Observe {
    pub(crate) log_format: LogFormat,
    pub(crate) metrics_file: Option<PathBuf>,
}

/// `--log-format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum LogFormat {
    /// `pgcopy: info: …`, for people.
    #[default]
    Text,
    /// One JSON object per line, for journald and log shippers.
    Json,
}

/// Validates the raw arguments; every error here is a usage error (exit code 2).
pub(crate) fn from_args(args: Box<args::Args>) -> Result<(Command, Observe)> {
    let command = match args.command {
        _ if args.version => return Ok((Command::Version, Observe::default())),
        None => bail!("no command given; run `pgcopy help` for the commands"),
        Some(command) => command,
    };
    let (metrics_file, log_format) = match &command {
        args::Command::Copy(a) => (a.metrics_file.clone(), a.log_format.clone()),
        args::Command::List(a) => (a.metrics_file.clone(), a.log_format.clone()),
        args::Command::Verify(a) => (a.metrics_file.clone(), a.log_format.clone()),
        args::Command::Recover(a) => (a.metrics_file.clone(), a.log_format.clone()),
        args::Command::Status(a) => (a.metrics_file.clone(), a.log_format.clone()),
        args::Command::Cutover(a) => (a.metrics_file.clone(), a.log_format.clone()),
        args::Command::Abandon(a) => (a.metrics_file.clone(), a.log_format.clone()),
        args::Command::Version(_) | args::Command::Completions(_) | args::Command::Man(_) => {
            (None, None)
        }
    };
    let observe = Observe {
        log_format: values::log_format(log_format.as_deref())?,
        metrics_file,
    };
    Ok((command_of(command)?, observe))
}

/// Each command's configuration, from its raw arguments.
fn command_of(command: args::Command) -> Result<Command> {
    Ok(match command {
        args::Command::Version(_) => Command::Version,
        args::Command::Completions(a) => Command::Completions(a.shell.parse()?),
        args::Command::Man(_) => Command::Man,
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
            dest: match (&a.dest, &a.dest_file, std::env::var_os("PGCOPY_DEST")) {
                (None, None, None) => None,
                _ => Some(dest(a.dest, a.dest_file.as_deref())?),
            },
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
                chunk_bytes: chunk_bytes(a.chunk_size.as_deref(), a.follow)?,
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
                metrics_listen: a
                    .metrics_listen
                    .as_deref()
                    .map(metrics_listen)
                    .transpose()?,
                rules: rules_for_copy(a.rules.as_deref(), a.follow)?,
                retries: a.retries,
                lock_timeout: lock_timeout(a.lock_timeout),
                verbosity: verbosity(a.quiet, a.verbose)?,
            }))
        }
    })
}
