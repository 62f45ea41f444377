//! What the completion and manual page tests ask of the machine: whether a shell or man page
//! checker is installed, what `pgcopy help` lists (its commands, a command's flags), and what
//! bash and fish complete a command line to with a script of pgcopy's loaded.

use std::path::Path;
use std::process::Command;

use super::run::{pgcopy, run};

/// Whether `program` is on the `PATH`.
pub fn installed(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// The commands `pgcopy help` lists.
pub fn help_commands() -> Vec<String> {
    let out = run(pgcopy().arg("help"));
    assert_eq!(out.code, 0, "{out:?}");
    let mut commands = Vec::new();
    let mut listing = false;
    for line in out.stdout.lines() {
        if line == "Commands:" {
            listing = true;
        } else if line.is_empty() {
            listing = false;
        } else if listing && line.starts_with("  ") && !line.starts_with("   ") {
            commands.extend(line.split_whitespace().next().map(str::to_string));
        }
    }
    assert!(!commands.is_empty(), "no commands in{out:?}");
    commands
}

/// The flags `pgcopy help COMMAND` (or `pgcopy help`) shows: the dashed names each option
/// line starts with (`-q`, `--quiet`, `--parallel`).
pub fn help_flags(command: Option<&str>) -> Vec<String> {
    let out = run(pgcopy().arg("help").args(command));
    assert_eq!(out.code, 0, "{out:?}");
    let mut flags = Vec::new();
    for line in out.stdout.lines().filter(|l| l.starts_with("  -")) {
        let names = line
            .split_whitespace()
            .map(|token| token.trim_end_matches(','))
            .take_while(|token| token.starts_with('-'));
        flags.extend(names.map(str::to_string));
    }
    assert!(!flags.is_empty(), "no flags in{out:?}");
    flags
}

/// What bash completes the last of `words` to (`COMPREPLY`), run in `dir` with `script`
/// loaded: `bash_completions(script, dir, &["pgcopy", "copy", "--fk-mode", ""])`.
pub fn bash_completions(script: &Path, dir: &Path, words: &[&str]) -> Vec<String> {
    let complete = r#"source "$1" || exit 1
shift
COMP_WORDS=("$@")
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
_pgcopy || exit 1
printf '%s\n' "${COMPREPLY[@]}""#;
    let mut cmd = Command::new("bash");
    cmd.args(["--norc", "--noprofile", "-c", complete, "bash"])
        .arg(script)
        .args(words)
        .current_dir(dir);
    completions(&mut cmd)
}

/// What fish completes `line` to (`complete -C`), run in `dir` with `script` loaded; the
/// candidates without their descriptions.
pub fn fish_completions(script: &Path, dir: &Path, line: &str) -> Vec<String> {
    let mut cmd = Command::new("fish");
    cmd.args([
        "--no-config",
        "-c",
        "source $argv[1]; and complete -C $argv[2]",
    ])
    .arg(script)
    .arg(line)
    .current_dir(dir);
    completions(&mut cmd)
}

fn completions(cmd: &mut Command) -> Vec<String> {
    let out = run(cmd);
    assert!(out.code == 0 && out.stderr.is_empty(), "{out:?}");
    out.stdout
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('\t').next().unwrap_or_default().to_string())
        .collect()
}
