//! The `pgcopy` binary: parse arguments, set up logging, run, map the outcome to an exit code.
//! The modules follow the pipeline: arguments (`cli`), talking to PostgreSQL (`pg`), what
//! the databases hold (`schema`), what will be copied (`plan`), moving the rows
//! (`transfer`), what outlives a run (`state`), what the user sees (`output`), and the
//! commands that put them together (`commands`).

mod cli;
mod commands;
mod exit;
mod output;
mod pg;
mod plan;
mod schema;
mod state;
mod transfer;
mod units;

use cli::args::{self as cli_args, Parsed};
use cli::config;
use exit::Exit;
use output::logging;
use pg::error::describe;
use std::process::ExitCode;

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
                Exit::Usage.into()
            };
        }
    };
    let command = match config::from_args(args) {
        Ok(command) => command,
        Err(err) => {
            eprintln!("pgcopy: error: {}", describe(&err));
            return Exit::Usage.into();
        }
    };
    logging::init(command.verbosity());
    let json = command.json();
    match commands::run(command) {
        Ok(exit) => exit.into(),
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            let message = describe(&err);
            eprintln!("pgcopy: error: {message}");
            if json {
                let doc = serde_json::json!({
                    "pgcopy_version": env!("CARGO_PKG_VERSION"),
                    "status": Exit::Usage.status(),
                    "exit_code": Exit::Usage.code(),
                    "error": message,
                });
                // Nothing is left to tell if stdout is gone too.
                let _ = output::format::print_json(&doc);
            }
            Exit::Usage.into()
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
