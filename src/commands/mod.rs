//! The commands: `copy`, `list`, `verify`, `recover`, `status`, `cutover`, `abandon` (and
//! `version`), each from its validated configuration to an exit code.

pub(crate) mod abandon;
pub(crate) mod copy;
pub(crate) mod cutover;
pub(crate) mod list;
pub(crate) mod recover;
pub(crate) mod status;
pub(crate) mod verify;

use crate::cli::config::Command;
use crate::exit::Exit;
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
        Command::List(cfg) => list::run(&cfg),
        Command::Copy(cfg) => copy::run(&cfg),
        Command::Recover(cfg) => recover::run(&cfg),
        Command::Status(cfg) => status::run(&cfg),
        Command::Cutover(cfg) => cutover::run(&cfg),
        Command::Abandon(cfg) => abandon::run(&cfg),
        Command::Verify(cfg) => verify::run(&cfg),
    }
}
