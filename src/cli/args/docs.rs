//! The options of the commands that document pgcopy itself: `completions` (a shell's
//! completion script) and `man` (the manual page), both made from this folder's structs.

use argh::FromArgs;

#[derive(FromArgs, Debug)]
/// Print a completion script for a shell, made from the commands and options `--help` shows.
#[argh(
    subcommand,
    name = "completions",
    help_triggers("-h", "--help", "help"),
    note = "bash: source <(pgcopy completions bash), e.g. in ~/.bashrc\nzsh: pgcopy completions zsh > \"${{fpath[1]}}/_pgcopy\", then a new shell\nfish: pgcopy completions fish > ~/.config/fish/completions/pgcopy.fish",
    error_code(0, "success"),
    error_code(2, "usage error: no shell, or one pgcopy has no script for")
)]
pub(crate) struct CompletionsArgs {
    /// the shell to complete pgcopy's commands in: bash, zsh or fish
    #[argh(positional, arg_name = "SHELL")]
    pub(crate) shell: String,
}

#[derive(FromArgs, Debug)]
/// Print the manual page (roff, section 1), made from the commands and options `--help`
/// shows.
#[argh(
    subcommand,
    name = "man",
    help_triggers("-h", "--help", "help"),
    note = "Read it with: pgcopy man | man -l -\nInstall it with: pgcopy man > /usr/local/share/man/man1/pgcopy.1",
    error_code(0, "success"),
    error_code(2, "usage error")
)]
pub(crate) struct ManArgs {}
