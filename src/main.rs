//! The `pgcopy` binary: parse arguments, set up logging, run, map the outcome to an exit code.

use pgcopy::cli::{self, Parsed};
use pgcopy::conn::describe;
use pgcopy::{config, exit, logging};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args = match cli::parse(&args) {
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
    match pgcopy::run(command) {
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
                let _ = pgcopy::report::print_json(&doc);
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
