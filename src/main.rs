//! The `pgcopy` binary: parse arguments, set up logging, run, map the outcome to an exit code.
//! The modules follow the pipeline: arguments (`cli`), talking to PostgreSQL (`pg`), what
//! the databases hold (`schema`), what will be copied (`plan`), moving the rows
//! (`transfer`), what outlives a run (`state`), what the user sees (`output`), and the
//! commands that put them together (`commands`).

mod cli;
mod commands;
mod output;
mod pg;
mod plan;
mod schema;
mod state;
mod transfer;

use cli::args::{self as cli_args, Parsed};
use cli::config;
use output::logging;
use pg::error::describe;
use std::process::ExitCode;

/// The exit codes, as documented in `--help` and the README.
mod exit {
    /// Every selected table was copied.
    pub(crate) const SUCCESS: u8 = 0;
    /// One or more tables failed; the others were copied and everything was put back.
    pub(crate) const TABLES_FAILED: u8 = 1;
    /// Usage, configuration, connection or schema error, before anything was written.
    pub(crate) const USAGE: u8 = 2;
    /// A verification found a table that differs.
    pub(crate) const VERIFY_MISMATCH: u8 = 3;
    /// Interrupted (Ctrl-C, SIGTERM); the destination was put back as far as it had changed.
    pub(crate) const INTERRUPTED: u8 = 130;
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args = match cli_args::parse(&args) {
        Parsed::Args(args) => args,
        Parsed::Exit { output, success } => {
            return if success {
                println!("{output}");
                ExitCode::SUCCESS
            } else {
                eprintln!("{output}");
                ExitCode::from(exit::USAGE)
            };
        }
    };
    let command = match config::from_args(args) {
        Ok(command) => command,
        Err(err) => {
            eprintln!("pgcopy: error: {}", describe(&err));
            return ExitCode::from(exit::USAGE);
        }
    };
    logging::init(command.verbosity());
    let json = command.json();
    match commands::run(command) {
        Ok(code) => ExitCode::from(code),
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            let message = describe(&err);
            eprintln!("pgcopy: error: {message}");
            if json {
                let doc = serde_json::json!({
                    "pgcopy_version": env!("CARGO_PKG_VERSION"),
                    "status": "error",
                    "exit_code": exit::USAGE,
                    "error": message,
                });
                // Nothing is left to tell if stdout is gone too.
                let _ = output::report::print_json(&doc);
            }
            ExitCode::from(exit::USAGE)
        }
    }
}

/// Output cut short by a closed pipe (`pgcopy list | head`) is not an error.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
