//! pgcopy copies the data of one PostgreSQL database into another whose schema already
//! exists. `main.rs` parses arguments and maps errors to exit codes; everything else is here
//! so that integration tests can reach it.

pub mod catalog;
pub mod cli;
pub mod config;
pub mod confirm;
pub mod conn;
pub mod conninfo;
pub mod constraints;
pub mod copy;
pub mod dry_run;
pub mod filter;
pub mod framing;
pub mod indexes;
pub mod interrupt;
pub mod large_objects;
pub mod list;
pub mod load;
pub mod logging;
pub mod matviews;
pub mod pgpass;
pub mod pipe;
pub mod plan;
pub mod progress;
pub mod recover;
pub mod report;
pub mod retry;
pub mod sequences;
pub mod session;
pub mod session_setup;
pub mod snapshot;
pub mod sql;
pub mod state;
pub mod tls;
pub mod triggers;
pub mod verify;
pub mod wire;

/// The exit codes, as documented in `--help` and the README.
pub mod exit {
    /// Every selected table was copied.
    pub const SUCCESS: u8 = 0;
    /// One or more tables failed; the others were copied and everything was put back.
    pub const TABLES_FAILED: u8 = 1;
    /// Usage, configuration, connection or schema error, before anything was written.
    pub const USAGE: u8 = 2;
    /// A verification found a table that differs.
    pub const VERIFY_MISMATCH: u8 = 3;
    /// Interrupted (Ctrl-C, SIGTERM); the destination was put back as far as it had changed.
    pub const INTERRUPTED: u8 = 130;
}

/// Runs a command; an `Err` is reported with exit code 2 (nothing was written).
pub fn run(command: config::Command) -> anyhow::Result<u8> {
    match command {
        config::Command::Version => {
            println!("pgcopy {}", env!("CARGO_PKG_VERSION"));
            Ok(exit::SUCCESS)
        }
        config::Command::List(cfg) => list::run(&cfg),
        config::Command::Copy(cfg) => copy::run(&cfg),
        config::Command::Recover(cfg) => recover::run(&cfg),
        config::Command::Verify(cfg) => verify::run(&cfg),
    }
}
