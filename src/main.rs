//! The `pgcopy` binary: parse arguments, set up logging, run, map the outcome to an exit code.

use pgcopy::cli::{self, Parsed};
use pgcopy::{config, exit};
use std::io::Write;
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
    init_logging();
    match config::from_args(args).and_then(pgcopy::run) {
        Ok(code) => ExitCode::from(code),
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("pgcopy: error: {}", pgcopy::conn::describe(&err));
            ExitCode::from(exit::USAGE)
        }
    }
}

/// Logs go to stderr as `pgcopy: LEVEL: message`; `RUST_LOG` overrides the default level.
fn init_logging() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("pgcopy=info"))
        .format(|buf, record| {
            writeln!(
                buf,
                "pgcopy: {}: {}",
                record.level().as_str().to_ascii_lowercase(),
                record.args()
            )
        })
        .init();
}

/// Output cut short by a closed pipe (`pgcopy list | head`) is not an error.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
