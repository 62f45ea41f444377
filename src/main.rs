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
use std::time::SystemTime;

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
    let (command, observe) = match cli::config::from_args(args) {
        Ok(parsed) => parsed,
        Err(err) => return output::fatal::exit_for(&err, false).into(),
    };
    output::logging::init(command.verbosity(), observe.log_format);
    let json = command.json();
    let name = command.name();
    let started = SystemTime::now();
    let exit = match commands::run(command) {
        Ok(exit) => exit,
        Err(err) => output::fatal::exit_for(&err, json),
    };
    if let Some(path) = &observe.metrics_file {
        output::metrics::textfile::after_run(path, name, started, exit);
    }
    exit.into()
}
