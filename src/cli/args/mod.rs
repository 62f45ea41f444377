//! Command-line syntax: the raw argh structs, the program's own (`Args`, its commands) here
//! and each command's options in the file of its kind, reading the command line into them
//! (`parse`: argh's help made readable, an unknown option answered with the closest known
//! one), and argh's help of any command (`help`), which the manual is made from. Only
//! `config.rs` reads the structs.
//!
//! Declared boilerplate: argh has no way to share a group of options between subcommands
//! (no `flatten`), so the options `copy`, `verify`, `list` and `status` have in common
//! (connections, filters, parallelism) are declared in each; `config.rs` reads and checks
//! each kind in one place.

mod check;
mod copy;
mod docs;
mod follow;
mod recover;

pub(crate) use check::{ListArgs, VerifyArgs};
pub(crate) use copy::CopyArgs;
pub(crate) use docs::{CompletionsArgs, ManArgs};
pub(crate) use follow::{AbandonArgs, CutoverArgs, StatusArgs};
pub(crate) use recover::RecoverArgs;

use super::help;
use argh::FromArgs;

#[derive(FromArgs, Debug)]
/// Copy the data of one PostgreSQL database into another whose schema already exists.
#[argh(
    help_triggers("-h", "--help", "help"),
    note = "CONN is a postgres:// or postgresql:// URL or a libpq key=value string.\nRun `pgcopy help COMMAND` for the options of a command.",
    error_code(0, "success: every selected table was copied"),
    error_code(1, "one or more tables failed; the others were copied"),
    error_code(
        2,
        "usage, configuration, connection or schema error, before anything was written"
    ),
    error_code(
        3,
        "a verification (verify, copy --verify, cutover --verify) found a difference"
    ),
    error_code(130, "interrupted")
)]
pub(crate) struct Args {
    /// print the version and exit
    #[argh(switch, short = 'V')]
    pub(crate) version: bool,

    #[argh(subcommand)]
    pub(crate) command: Option<Command>,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub(crate) enum Command {
    Copy(CopyArgs),
    List(ListArgs),
    Recover(RecoverArgs),
    Status(StatusArgs),
    Cutover(CutoverArgs),
    Abandon(AbandonArgs),
    Verify(VerifyArgs),
    Completions(CompletionsArgs),
    Man(ManArgs),
    Version(VersionArgs),
}

#[derive(FromArgs, Debug)]
/// Print the version.
#[argh(subcommand, name = "version")]
pub(crate) struct VersionArgs {}

/// What parsing the command line gave: arguments, or text to print and an exit code.
pub(crate) enum Parsed {
    Args(Box<Args>),
    Exit { output: String, success: bool },
}

/// Parses the command line (without the program name).
pub(crate) fn parse(args: &[String]) -> Parsed {
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    match Args::from_args(&["pgcopy"], &strs) {
        Ok(args) => Parsed::Args(Box::new(args)),
        Err(exit) if exit.status.is_ok() => Parsed::Exit {
            output: help::grouped(&exit.output),
            success: true,
        },
        Err(exit) => Parsed::Exit {
            output: suggest(&strs, exit.output),
            success: false,
        },
    }
}

/// argh's help, as `--help` prints it before `help::grouped`: the program's, or a command's
/// (empty for a command argh does not know).
pub(crate) fn help(command: Option<&str>) -> String {
    let args: Vec<&str> = command.into_iter().chain(["--help"]).collect();
    match Args::from_args(&["pgcopy"], &args) {
        Err(exit) if exit.status.is_ok() => exit.output,
        _ => String::new(),
    }
}

/// argh's error, and for an unknown option or command the closest known one.
fn suggest(args: &[&str], output: String) -> String {
    let Some(unknown) = output
        .lines()
        .find_map(|l| l.strip_prefix("Unrecognized argument: "))
    else {
        return output;
    };
    // The command's own help lists its options; the program's, its commands.
    let command = args.iter().find(|a| !a.starts_with('-') && **a != unknown);
    let offered = help::offered(&help(command.copied()));
    let known: Vec<&str> = offered.iter().map(String::as_str).collect();
    match help::did_you_mean(unknown, &known) {
        Some(meant) => format!("{}\nDid you mean {meant}?", output.trim_end()),
        None => output,
    }
}
