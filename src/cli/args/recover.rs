//! The options of `recover`, which puts back what an interrupted copy left dropped.

use argh::FromArgs;
use std::path::PathBuf;

#[derive(FromArgs, Debug)]
/// Put back what an interrupted or killed copy left dropped on a destination.
#[argh(
    subcommand,
    name = "recover",
    help_triggers("-h", "--help", "help"),
    error_code(0, "success: nothing was left, or everything was put back"),
    error_code(
        1,
        "every key is back, but some stay NOT VALID until a copy makes the data whole again"
    ),
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

    /// at the end, also on failure, write the run's Prometheus metrics to PATH (the
    /// node_exporter textfile format, written atomically)
    #[argh(option, arg_name = "PATH")]
    pub(crate) metrics_file: Option<std::path::PathBuf>,

    /// how log lines on stderr look (json: one JSON object per line, for log collectors;
    /// text by default): text or json
    #[argh(option, arg_name = "FORMAT")]
    pub(crate) log_format: Option<String>,
}
