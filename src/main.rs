//! The `pgcopy` binary: parse arguments, set up logging, run, map the outcome to an exit code.
//! The modules, each naming only those before it here (beside the leaf helpers `exit` and
//! `units`), which `scripts/module-graph.sh` checks: talking to PostgreSQL (`pg`), what the
//! databases hold (`schema`), what outlives a run (`state`), what will be copied (`plan`),
//! what `--rules` means (`rules`), moving the rows (`transfer`), following a live source
//! (`replication`), the arguments as a validated configuration (`cli`), what the user sees
//! (`output`), and the commands that put them together (`commands`).
mod cli;
mod commands;
mod exit;
mod output;
mod pg;
mod plan;
mod replication;
mod rules;
mod schema;
mod state;
mod transfer;
mod units;

use cli::args::{self as cli_args, Parsed};
use exit::Exit;
use std::io::Write as _;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args = match cli_args::parse(&args) {
        Parsed::Args(args) => args,
        Parsed::Exit { output, success } if success => {
            let _ = writeln!(output::format::stdout(), "{output}");
            return ExitCode::SUCCESS;
        }
        Parsed::Exit { output, .. } => {
            let _ = writeln!(output::format::stderr(), "{output}");
            return Exit::Usage.into();
        }
    };
    let command = match cli::config::from_args(args) {
        Ok(command) => command,
        Err(err) => return output::fatal::exit_for(&err, false),
    };
    output::logging::init(command.verbosity());
    let json = command.json();
    match commands::run(command) {
        Ok(exit) => exit.into(),
        Err(err) => output::fatal::exit_for(&err, json),
    }
}
