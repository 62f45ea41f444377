//! The commands: `copy` (and `copy --follow`, in `follow`), `list`, `verify`, `recover`,
//! `status`, `cutover`, `abandon` (and `completions`, `man` and `version`, which print what
//! `cli` makes), each from its validated configuration to an exit code; `keys` puts back the
//! foreign keys a run dropped, for all of them.

pub(crate) mod abandon;
pub(crate) mod copy;
pub(crate) mod cutover;
pub(crate) mod follow;
pub(crate) mod keys;
pub(crate) mod list;
pub(crate) mod recover;
pub(crate) mod status;
pub(crate) mod verify;

use crate::cli::config::{Command, CopyMode};
use crate::cli::manual;
use crate::exit::Exit;
use crate::output::metrics::serve;
use anyhow::Context as _;
use std::io::Write as _;

/// Runs a command; an `Err` is reported with exit code 2 (nothing was written).
pub(crate) fn run(command: Command) -> anyhow::Result<Exit> {
    match command {
        Command::Version => {
            let _ = writeln!(
                crate::output::format::stdout(),
                "pgcopy {}",
                env!("CARGO_PKG_VERSION")
            );
            Ok(Exit::Success)
        }
        Command::Completions(shell) => {
            crate::output::format::stdout()
                .write_all(manual::completions(shell).as_bytes())
                .with_context(|| format!("writing the {} completion script", shell.name()))?;
            Ok(Exit::Success)
        }
        Command::Man => {
            crate::output::format::stdout()
                .write_all(manual::man_page().as_bytes())
                .context("writing the manual page")?;
            Ok(Exit::Success)
        }
        Command::List(cfg) => list::run(&cfg),
        Command::Copy(cfg) => {
            // Served until the command ends, whichever way.
            let _endpoint = cfg.metrics_listen.map(serve::start).transpose()?;
            match cfg.mode {
                CopyMode::Copy { resume } => copy::run(&cfg, resume),
                CopyMode::Follow { resume } => follow::run(&cfg, resume),
            }
        }
        Command::Recover(cfg) => recover::run(&cfg),
        Command::Status(cfg) => status::run(&cfg),
        Command::Cutover(cfg) => cutover::run(&cfg),
        Command::Abandon(cfg) => abandon::run(&cfg),
        Command::Verify(cfg) => verify::run(&cfg),
    }
}
