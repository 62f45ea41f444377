//! The options of the commands that look without writing: `list` (what a copy would take)
//! and `verify` (whether both sides hold the same).

use argh::FromArgs;
use std::path::PathBuf;

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

    /// at the end, also on failure, write the run's Prometheus metrics to PATH (the
    /// node_exporter textfile format, written atomically)
    #[argh(option, arg_name = "PATH")]
    pub(crate) metrics_file: Option<std::path::PathBuf>,

    /// how log lines on stderr look (json: one JSON object per line, for log collectors;
    /// text by default): text or json
    #[argh(option, arg_name = "FORMAT")]
    pub(crate) log_format: Option<String>,
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

    /// at the end, also on failure, write the run's Prometheus metrics to PATH (the
    /// node_exporter textfile format, written atomically)
    #[argh(option, arg_name = "PATH")]
    pub(crate) metrics_file: Option<std::path::PathBuf>,

    /// how log lines on stderr look (json: one JSON object per line, for log collectors;
    /// text by default): text or json
    #[argh(option, arg_name = "FORMAT")]
    pub(crate) log_format: Option<String>,
}
