//! The options of `copy`: what to copy and how, and what follows a copy (`--follow`,
//! `--verify`).

use argh::FromArgs;
use std::path::PathBuf;

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

    /// while the copy goes and after it, apply every change committed on the source since
    /// the copy began, one source transaction after another, until `pgcopy cutover`
    /// (logical replication; see `pgcopy status` for what the source needs)
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

    /// at the end, also on failure, write the run's Prometheus metrics to PATH (the
    /// node_exporter textfile format, written atomically)
    #[argh(option, arg_name = "PATH")]
    pub(crate) metrics_file: Option<std::path::PathBuf>,

    /// how log lines on stderr look (json: one JSON object per line, for log collectors;
    /// text by default): text or json
    #[argh(option, arg_name = "FORMAT")]
    pub(crate) log_format: Option<String>,

    /// serve Prometheus metrics at http://ADDR/metrics while copying and following: PORT
    /// (on 127.0.0.1) or HOST:PORT (0.0.0.0:PORT for every interface)
    #[argh(option, arg_name = "ADDR")]
    pub(crate) metrics_listen: Option<String>,

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

    /// with --follow: read each table bigger than SIZE in ranges of its key of about SIZE,
    /// each in a short snapshot of its own, instead of --split-tables-larger-than's pieces
    /// (default 16MiB)
    #[argh(option, arg_name = "SIZE")]
    pub(crate) chunk_size: Option<String>,

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
