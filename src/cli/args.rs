//! Command-line syntax: the raw argh structs. Only `config.rs` reads them.
//!
//! Declared boilerplate: argh has no way to share a group of options between subcommands
//! (no `flatten`), so the options `copy`, `verify`, `list` and `status` have in common
//! (connections, filters, parallelism) are declared in each; `config.rs` reads and checks
//! each kind in one place.

use super::help;
use argh::FromArgs;
use std::path::PathBuf;

#[derive(FromArgs, Debug)]
/// Copy the data of one PostgreSQL database into another whose schema already exists.
#[argh(
    help_triggers("-h", "--help", "help"),
    note = "CONN is a postgres:// or postgresql:// URL or a libpq key=value string.\nRun `pgcopy help COMMAND` for the options of a command.",
    error_code(0, "success: every selected table was copied"),
    error_code(1, "one or more tables failed; the others were copied"),
    error_code(
        2,
        "usage, configuration, connection or schema error, before anything was written"
    ),
    error_code(
        3,
        "a verification (verify, copy --verify, cutover --verify) found a difference"
    ),
    error_code(130, "interrupted")
)]
pub(crate) struct Args {
    /// print the version and exit
    #[argh(switch, short = 'V')]
    pub(crate) version: bool,

    #[argh(subcommand)]
    pub(crate) command: Option<Command>,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub(crate) enum Command {
    Copy(CopyArgs),
    List(ListArgs),
    Recover(RecoverArgs),
    Status(StatusArgs),
    Cutover(CutoverArgs),
    Abandon(AbandonArgs),
    Verify(VerifyArgs),
    Version(VersionArgs),
}

#[derive(FromArgs, Debug)]
/// Replace the data of the selected destination tables with the source's.
#[argh(
    subcommand,
    name = "copy",
    help_triggers("-h", "--help", "help"),
    note = "Each table is replaced in one destination transaction (TRUNCATE, then COPY): a table that fails keeps its old rows. A big table copied in pieces (--split-tables-larger-than, or over 1 GiB into an empty table) is emptied first and each piece commits on its own: a failed one leaves the pieces before it, which --resume goes on from.\nThe destination schema must already exist and match the source's: columns are matched by name.",
    error_code(0, "success: every selected table was copied"),
    error_code(1, "one or more tables failed; the others were copied"),
    error_code(
        2,
        "usage, configuration, connection or schema error, before anything was written"
    ),
    error_code(3, "--verify found a table that differs"),
    error_code(130, "interrupted")
)]
pub(crate) struct CopyArgs {
    /// source connection: URL or key=value string (default: $PGCOPY_SOURCE)
    #[argh(option, arg_name = "CONN")]
    pub(crate) source: Option<String>,

    /// read the source connection from the first non-comment line of this file
    #[argh(option, arg_name = "PATH")]
    pub(crate) source_file: Option<PathBuf>,

    /// destination connection: URL or key=value string (default: $PGCOPY_DEST)
    #[argh(option, arg_name = "CONN")]
    pub(crate) dest: Option<String>,

    /// read the destination connection from the first non-comment line of this file
    #[argh(option, arg_name = "PATH")]
    pub(crate) dest_file: Option<PathBuf>,

    /// tables copied at once, each with one reader and one writer connection (default 4)
    #[argh(option, default = "4", arg_name = "N")]
    pub(crate) parallel: usize,

    /// bytes per chunk passed from reader to writer, with an optional KiB or MiB suffix
    /// (default 256KiB); data in flight is at most about parallel x 6 x batch size
    #[argh(option, arg_name = "SIZE")]
    pub(crate) batch_size: Option<String>,

    /// comma-separated glob patterns (* and ?) of tables to copy, matched against `table`
    /// and `schema.table`; may be repeated
    #[argh(option, arg_name = "LIST")]
    pub(crate) include_tables: Vec<String>,

    /// comma-separated glob patterns of tables to leave out (applied after the includes)
    #[argh(option, arg_name = "LIST")]
    pub(crate) exclude_tables: Vec<String>,

    /// comma-separated glob patterns of schemas to copy
    #[argh(option, arg_name = "LIST")]
    pub(crate) include_schemas: Vec<String>,

    /// comma-separated glob patterns of schemas to leave out
    #[argh(option, arg_name = "LIST")]
    pub(crate) exclude_schemas: Vec<String>,

    /// check everything and print the plan, but change nothing
    #[argh(switch)]
    pub(crate) dry_run: bool,

    /// replace the destination tables' data without asking
    #[argh(switch, short = 'y')]
    pub(crate) yes: bool,

    /// no progress bar; periodic progress lines go to the log instead
    #[argh(switch)]
    pub(crate) no_progress: bool,

    /// seconds between progress lines when there is no bar (default 5)
    #[argh(option, default = "5", arg_name = "SECONDS")]
    pub(crate) progress_interval: u64,

    /// print the report as one JSON document on stdout (and nothing else there)
    #[argh(switch)]
    pub(crate) json: bool,

    /// further tries for a table that fails with a transient error (lost connection,
    /// server restart, deadlock), and for following after one, with backoff (default 3)
    #[argh(option, default = "3", arg_name = "N")]
    pub(crate) retries: u32,

    /// seconds to wait for locks: on the source tables before the snapshot (else nothing
    /// is copied), on a destination table before that table fails (default 60)
    #[argh(option, default = "60", arg_name = "SECONDS")]
    pub(crate) lock_timeout: u64,

    /// copy only the tables an interrupted or failed run to this destination did not finish
    /// (they come from a new snapshot; refused if the selection changed); with --follow,
    /// go on following from the last source transaction the destination committed
    #[argh(switch)]
    pub(crate) resume: bool,

    /// after the copy, apply every change committed on the source since its snapshot, one
    /// source transaction after another, until `pgcopy cutover` (logical replication; see
    /// `pgcopy status` for what the source needs)
    #[argh(switch)]
    pub(crate) follow: bool,

    /// after copying, verify every copied table (row count and checksum) against the
    /// copy's own source snapshot
    #[argh(switch)]
    pub(crate) verify: bool,

    /// mask columns as this TOML file says, and refuse to copy columns its `require`
    /// patterns name unmasked (see conf/rules.example.toml)
    #[argh(option, arg_name = "FILE")]
    pub(crate) rules: Option<PathBuf>,

    /// errors only: no progress, no log lines below errors, no report unless it failed
    #[argh(switch, short = 'q')]
    pub(crate) quiet: bool,

    /// per-table detail and every SQL statement sent (RUST_LOG, when set, decides instead)
    #[argh(switch, short = 'v')]
    pub(crate) verbose: bool,

    /// how foreign keys and triggers are kept out of the load's way: auto (default:
    /// replica if the role may use it, else drop), replica, drop or none
    #[argh(option, arg_name = "MODE")]
    pub(crate) fk_mode: Option<String>,

    /// let the destination's user triggers fire for the copied rows
    #[argh(switch)]
    pub(crate) enable_triggers: bool,

    /// do not set the destination's sequences to the source's values
    #[argh(switch)]
    pub(crate) no_sequences: bool,

    /// do not refresh the destination's materialized views built from copied tables
    #[argh(switch)]
    pub(crate) no_refresh_materialized_views: bool,

    /// copy the large objects even though --include-tables or --include-schemas narrow the
    /// copy (by default they go with a copy of the whole database, as with pg_dump)
    #[argh(switch)]
    pub(crate) large_objects: bool,

    /// leave the destination's large objects as they are
    #[argh(switch)]
    pub(crate) no_large_objects: bool,

    /// the destination's indexes during the load: keep (maintained row by row), rebuild
    /// (dropped and built after the data, in the table's load transaction) or auto
    /// (default: rebuild for tables of 1 MiB and more)
    #[argh(option, arg_name = "MODE")]
    pub(crate) indexes: Option<String>,

    /// do not ANALYZE the copied tables afterwards (they then have no planner statistics
    /// until autovacuum gets to them)
    #[argh(switch)]
    pub(crate) no_analyze: bool,

    /// copy every table larger than SIZE (heap and TOAST, e.g. 10GiB) in pieces of about
    /// SIZE at once, also tables with rows on the destination; each piece commits on its
    /// own (default: tables over 1GiB whose destination table is empty)
    #[argh(option, arg_name = "SIZE")]
    pub(crate) split_tables_larger_than: Option<String>,

    /// copy every table as one stream, in one transaction
    #[argh(switch)]
    pub(crate) no_split: bool,

    /// accept tables outside the selection that reference copied tables; their foreign
    /// keys come back NOT VALID
    #[argh(switch)]
    pub(crate) allow_outside_references: bool,

    /// copy columns whose destination type may not take every source value (bigint to
    /// integer, text to varchar(5), …); a value that does not fit fails its table
    #[argh(switch)]
    pub(crate) allow_narrowing: bool,

    /// directory for the state files that let an interrupted run be put back
    /// (default $XDG_STATE_HOME/pgcopy or ~/.local/state/pgcopy)
    #[argh(option, arg_name = "DIR")]
    pub(crate) state_dir: Option<PathBuf>,
}

#[derive(FromArgs, Debug)]
/// Put back what an interrupted or killed copy left dropped on a destination.
#[argh(
    subcommand,
    name = "recover",
    help_triggers("-h", "--help", "help"),
    error_code(0, "success: nothing was left, or everything was put back"),
    error_code(
        2,
        "usage, configuration or connection error, or something could not be put back"
    )
)]
pub(crate) struct RecoverArgs {
    /// destination connection: URL or key=value string (default: $PGCOPY_DEST)
    #[argh(option, arg_name = "CONN")]
    pub(crate) dest: Option<String>,

    /// read the destination connection from the first non-comment line of this file
    #[argh(option, arg_name = "PATH")]
    pub(crate) dest_file: Option<PathBuf>,

    /// directory of the state files (default $XDG_STATE_HOME/pgcopy or ~/.local/state/pgcopy)
    #[argh(option, arg_name = "DIR")]
    pub(crate) state_dir: Option<PathBuf>,

    /// forget what the state file lists for tables dropped since (their keys and indexes
    /// cannot be put back), after saying what
    #[argh(switch)]
    pub(crate) forget_gone: bool,

    /// errors only
    #[argh(switch, short = 'q')]
    pub(crate) quiet: bool,

    /// every SQL statement sent (RUST_LOG, when set, decides instead)
    #[argh(switch, short = 'v')]
    pub(crate) verbose: bool,
}

#[derive(FromArgs, Debug)]
/// List the source tables that a copy with the same filters would copy.
#[argh(
    subcommand,
    name = "list",
    help_triggers("-h", "--help", "help"),
    error_code(0, "success"),
    error_code(2, "usage, configuration or connection error")
)]
pub(crate) struct ListArgs {
    /// source connection: URL or key=value string (default: $PGCOPY_SOURCE)
    #[argh(option, arg_name = "CONN")]
    pub(crate) source: Option<String>,

    /// read the source connection from the first non-comment line of this file
    #[argh(option, arg_name = "PATH")]
    pub(crate) source_file: Option<PathBuf>,

    /// comma-separated glob patterns (* and ?) of tables to list; may be repeated
    #[argh(option, arg_name = "LIST")]
    pub(crate) include_tables: Vec<String>,

    /// comma-separated glob patterns of tables to leave out
    #[argh(option, arg_name = "LIST")]
    pub(crate) exclude_tables: Vec<String>,

    /// comma-separated glob patterns of schemas to list
    #[argh(option, arg_name = "LIST")]
    pub(crate) include_schemas: Vec<String>,

    /// comma-separated glob patterns of schemas to leave out
    #[argh(option, arg_name = "LIST")]
    pub(crate) exclude_schemas: Vec<String>,

    /// count rows exactly (reads every table) instead of using the planner's estimate
    #[argh(switch)]
    pub(crate) exact: bool,

    /// print the listing as one JSON document (sizes in bytes)
    #[argh(switch)]
    pub(crate) json: bool,

    /// errors only
    #[argh(switch, short = 'q')]
    pub(crate) quiet: bool,

    /// every SQL statement sent (RUST_LOG, when set, decides instead)
    #[argh(switch, short = 'v')]
    pub(crate) verbose: bool,
}

#[derive(FromArgs, Debug)]
/// Say whether the source can be followed by logical replication (copy --follow), and what
/// to do where it cannot.
#[argh(
    subcommand,
    name = "status",
    help_triggers("-h", "--help", "help"),
    error_code(0, "the source is ready to be followed"),
    error_code(
        2,
        "the source is not ready, or a usage, configuration or connection error"
    )
)]
pub(crate) struct StatusArgs {
    /// source connection: URL or key=value string (default: $PGCOPY_SOURCE)
    #[argh(option, arg_name = "CONN")]
    pub(crate) source: Option<String>,

    /// read the source connection from the first non-comment line of this file
    #[argh(option, arg_name = "PATH")]
    pub(crate) source_file: Option<PathBuf>,

    /// comma-separated glob patterns (* and ?) of tables to follow; may be repeated
    #[argh(option, arg_name = "LIST")]
    pub(crate) include_tables: Vec<String>,

    /// comma-separated glob patterns of tables to leave out
    #[argh(option, arg_name = "LIST")]
    pub(crate) exclude_tables: Vec<String>,

    /// comma-separated glob patterns of schemas to follow
    #[argh(option, arg_name = "LIST")]
    pub(crate) include_schemas: Vec<String>,

    /// comma-separated glob patterns of schemas to leave out
    #[argh(option, arg_name = "LIST")]
    pub(crate) exclude_schemas: Vec<String>,

    /// print the status as one JSON document
    #[argh(switch)]
    pub(crate) json: bool,

    /// errors only
    #[argh(switch, short = 'q')]
    pub(crate) quiet: bool,

    /// every SQL statement sent (RUST_LOG, when set, decides instead)
    #[argh(switch, short = 'v')]
    pub(crate) verbose: bool,
}

#[derive(FromArgs, Debug)]
/// End a `copy --follow` (run once the application has stopped writing to the source): mark
/// the end in the source's WAL, wait until the follower applied everything before it, set
/// the sequences, and drop the slot and publication it made.
#[argh(
    subcommand,
    name = "cutover",
    help_triggers("-h", "--help", "help"),
    error_code(0, "the destination holds every transaction the source committed"),
    error_code(
        2,
        "usage, configuration or connection error, or no follower to cut over"
    ),
    error_code(3, "--verify found a table that differs")
)]
pub(crate) struct CutoverArgs {
    /// source connection: URL or key=value string (default: $PGCOPY_SOURCE)
    #[argh(option, arg_name = "CONN")]
    pub(crate) source: Option<String>,

    /// read the source connection from the first non-comment line of this file
    #[argh(option, arg_name = "PATH")]
    pub(crate) source_file: Option<PathBuf>,

    /// destination connection: URL or key=value string (default: $PGCOPY_DEST)
    #[argh(option, arg_name = "CONN")]
    pub(crate) dest: Option<String>,

    /// read the destination connection from the first non-comment line of this file
    #[argh(option, arg_name = "PATH")]
    pub(crate) dest_file: Option<PathBuf>,

    /// once the follower is done, compare every table its filters select now, those created
    /// while following too (row count and checksum)
    #[argh(switch)]
    pub(crate) verify: bool,

    /// cut over although tables the follower's filters select are not followed (created on
    /// the source only, without a replica identity, …); without it cutover refuses, naming
    /// them
    #[argh(switch)]
    pub(crate) allow_unfollowed: bool,

    /// seconds to wait for the follower to reach the mark (default 600)
    #[argh(option, default = "600", arg_name = "SECONDS")]
    pub(crate) timeout: u64,

    /// print the result (the mark, the downtime, the comparison) as one JSON document on
    /// stdout, and nothing else there
    #[argh(switch)]
    pub(crate) json: bool,

    /// errors only
    #[argh(switch, short = 'q')]
    pub(crate) quiet: bool,

    /// every SQL statement sent (RUST_LOG, when set, decides instead)
    #[argh(switch, short = 'v')]
    pub(crate) verbose: bool,
}

#[derive(FromArgs, Debug)]
/// Give up following: drop the replication slot and publication a `copy --follow` made on
/// the source, so it stops keeping WAL for it, and the destination's replication origin.
#[argh(
    subcommand,
    name = "abandon",
    help_triggers("-h", "--help", "help"),
    error_code(0, "nothing of a follower is left"),
    error_code(
        2,
        "usage, configuration or connection error, or the follower is running"
    )
)]
pub(crate) struct AbandonArgs {
    /// source connection: URL or key=value string (default: $PGCOPY_SOURCE)
    #[argh(option, arg_name = "CONN")]
    pub(crate) source: Option<String>,

    /// read the source connection from the first non-comment line of this file
    #[argh(option, arg_name = "PATH")]
    pub(crate) source_file: Option<PathBuf>,

    /// destination connection: URL or key=value string (default: $PGCOPY_DEST)
    #[argh(option, arg_name = "CONN")]
    pub(crate) dest: Option<String>,

    /// read the destination connection from the first non-comment line of this file
    #[argh(option, arg_name = "PATH")]
    pub(crate) dest_file: Option<PathBuf>,

    /// directory of the state files, where the foreign keys a follower kept dropped are
    /// recorded (default $XDG_STATE_HOME/pgcopy or ~/.local/state/pgcopy)
    #[argh(option, arg_name = "DIR")]
    pub(crate) state_dir: Option<PathBuf>,

    /// errors only
    #[argh(switch, short = 'q')]
    pub(crate) quiet: bool,

    /// every SQL statement sent (RUST_LOG, when set, decides instead)
    #[argh(switch, short = 'v')]
    pub(crate) verbose: bool,
}

#[derive(FromArgs, Debug)]
/// Compare source and destination: exact row counts and content checksums, computed on
/// each server.
#[argh(
    subcommand,
    name = "verify",
    help_triggers("-h", "--help", "help"),
    error_code(0, "every table matches"),
    error_code(2, "usage, configuration, connection or schema error"),
    error_code(3, "a table differs")
)]
pub(crate) struct VerifyArgs {
    /// source connection: URL or key=value string (default: $PGCOPY_SOURCE)
    #[argh(option, arg_name = "CONN")]
    pub(crate) source: Option<String>,

    /// read the source connection from the first non-comment line of this file
    #[argh(option, arg_name = "PATH")]
    pub(crate) source_file: Option<PathBuf>,

    /// destination connection: URL or key=value string (default: $PGCOPY_DEST)
    #[argh(option, arg_name = "CONN")]
    pub(crate) dest: Option<String>,

    /// read the destination connection from the first non-comment line of this file
    #[argh(option, arg_name = "PATH")]
    pub(crate) dest_file: Option<PathBuf>,

    /// tables checked at once on each side (default 4)
    #[argh(option, default = "4", arg_name = "N")]
    pub(crate) parallel: usize,

    /// seconds to wait for the locks on the source tables before the snapshot (default 60)
    #[argh(option, default = "60", arg_name = "SECONDS")]
    pub(crate) lock_timeout: u64,

    /// compare the large objects even though --include-tables or --include-schemas narrow
    /// the comparison (by default they are compared for the whole database)
    #[argh(switch)]
    pub(crate) large_objects: bool,

    /// the rules file the copy masked with: masked columns are left out of the comparison
    #[argh(option, arg_name = "FILE")]
    pub(crate) rules: Option<PathBuf>,

    /// do not compare the large objects
    #[argh(switch)]
    pub(crate) no_large_objects: bool,

    /// comma-separated glob patterns (* and ?) of tables to verify; may be repeated
    #[argh(option, arg_name = "LIST")]
    pub(crate) include_tables: Vec<String>,

    /// comma-separated glob patterns of tables to leave out
    #[argh(option, arg_name = "LIST")]
    pub(crate) exclude_tables: Vec<String>,

    /// comma-separated glob patterns of schemas to verify
    #[argh(option, arg_name = "LIST")]
    pub(crate) include_schemas: Vec<String>,

    /// comma-separated glob patterns of schemas to leave out
    #[argh(option, arg_name = "LIST")]
    pub(crate) exclude_schemas: Vec<String>,

    /// print the result as one JSON document
    #[argh(switch)]
    pub(crate) json: bool,

    /// errors only
    #[argh(switch, short = 'q')]
    pub(crate) quiet: bool,

    /// every SQL statement sent (RUST_LOG, when set, decides instead)
    #[argh(switch, short = 'v')]
    pub(crate) verbose: bool,
}

#[derive(FromArgs, Debug)]
/// Print the version.
#[argh(subcommand, name = "version")]
pub(crate) struct VersionArgs {}

/// What parsing the command line gave: arguments, or text to print and an exit code.
pub(crate) enum Parsed {
    Args(Box<Args>),
    Exit { output: String, success: bool },
}

/// Parses the command line (without the program name).
pub(crate) fn parse(args: &[String]) -> Parsed {
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    match Args::from_args(&["pgcopy"], &strs) {
        Ok(args) => Parsed::Args(Box::new(args)),
        Err(exit) if exit.status.is_ok() => Parsed::Exit {
            output: help::grouped(&exit.output),
            success: true,
        },
        Err(exit) => Parsed::Exit {
            output: suggest(&strs, exit.output),
            success: false,
        },
    }
}

/// argh's error, and for an unknown option or command the closest known one.
fn suggest(args: &[&str], output: String) -> String {
    let Some(unknown) = output
        .lines()
        .find_map(|l| l.strip_prefix("Unrecognized argument: "))
    else {
        return output;
    };
    // The command's own help lists its options; the program's, its commands.
    let command = args.iter().find(|a| !a.starts_with('-') && **a != unknown);
    let help = match command {
        Some(command) => Args::from_args(&["pgcopy"], &[command, "--help"]),
        None => Args::from_args(&["pgcopy"], &["--help"]),
    };
    let offered = help
        .err()
        .map(|e| help::offered(&e.output))
        .unwrap_or_default();
    let known: Vec<&str> = offered.iter().map(String::as_str).collect();
    match help::did_you_mean(unknown, &known) {
        Some(meant) => format!("{}\nDid you mean {meant}?", output.trim_end()),
        None => output,
    }
}
