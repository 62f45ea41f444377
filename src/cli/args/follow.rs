//! The options of the commands around a `copy --follow`: `status` (whether the source can
//! be followed), `cutover` (end it) and `abandon` (give it up).

use argh::FromArgs;
use std::path::PathBuf;

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

    /// destination connection: URL or key=value string (default: $PGCOPY_DEST); with it,
    /// also the chunks of its follower's initial copy, copied and to copy
    #[argh(option, arg_name = "CONN")]
    pub(crate) dest: Option<String>,

    /// read the destination connection from the first non-comment line of this file
    #[argh(option, arg_name = "PATH")]
    pub(crate) dest_file: Option<PathBuf>,

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

    /// at the end, also on failure, write the run's Prometheus metrics to PATH (the
    /// node_exporter textfile format, written atomically)
    #[argh(option, arg_name = "PATH")]
    pub(crate) metrics_file: Option<std::path::PathBuf>,

    /// how log lines on stderr look (json: one JSON object per line, for log collectors;
    /// text by default): text or json
    #[argh(option, arg_name = "FORMAT")]
    pub(crate) log_format: Option<String>,
}
