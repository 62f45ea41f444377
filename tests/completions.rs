//! `pgcopy completions bash|zsh|fish` and `pgcopy man`: every flag `pgcopy help COMMAND`
//! shows, for every command `pgcopy help` lists, is in each shell's script and in the manual
//! page; bash and fish complete it, and the values and file names help names; each shell
//! accepts its script, and man renders the page without a warning. No PostgreSQL needed.
//!
//! zsh and fish are checked where they are installed (`scripts/lib/cluster.sh` installs them
//! for `.ci/run`); bash always, and man or groff (or mandoc) must be there.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{self, assert_exit, exit};

/// What `pgcopy ARGS` prints, checked to be a success with nothing on stderr.
fn printed(args: &[&str]) -> String {
    let out = util::run(util::pgcopy().args(args));
    assert_exit!(out, exit::SUCCESS);
    assert!(out.stderr.is_empty(), "{out:?}");
    out.stdout
}

/// `pgcopy ARGS` written to a scratch file named `name`, and its path.
fn written(args: &[&str], name: &str) -> PathBuf {
    let path = util::scratch_dir(name);
    std::fs::write(&path, printed(args)).expect("writing a scratch file");
    path
}

/// The part of `text` from the line that starts with `start` to the line before the next
/// one that `ends` accepts.
fn block<'t>(text: &'t str, start: &str, ends: impl Fn(&str) -> bool) -> &'t str {
    let begin = text
        .find(&format!("\n{start}"))
        .unwrap_or_else(|| panic!("no {start:?} in\n{text}"))
        + 1;
    let rest = &text[begin..];
    let mut end = rest.len();
    let mut offset = 0;
    for (i, line) in rest.split_inclusive('\n').enumerate() {
        if i > 0 && ends(line) {
            end = offset;
            break;
        }
        offset += line.len();
    }
    &rest[..end]
}

/// Whether a line of the rendered page is a section heading (`OPTIONS`, `SEE ALSO`).
fn heading(line: &str) -> bool {
    line.starts_with(|c: char| !c.is_whitespace())
}

/// The roff spelling of a flag: every dash `\-`.
fn roff(flag: &str) -> String {
    flag.replace('-', "\\-")
}

/// The page as man (or groff) renders it for a reader, plain text.
fn rendered(page: &Path) -> String {
    let out = if util::installed("man") {
        util::run(
            Command::new("man")
                .arg("-l")
                .arg(page)
                .env("MANPAGER", "cat")
                .env("MANWIDTH", "100"),
        )
    } else {
        util::run(
            Command::new("groff")
                .args(["-man", "-Tutf8", "-P", "-cbou"])
                .arg(page),
        )
    };
    assert!(out.code == 0 && out.stderr.is_empty(), "{out:?}");
    out.stdout
}

#[test]
fn every_flag_help_shows_is_in_each_completion_script_and_the_man_page() {
    let scratch = util::scratch_dir("completions-every-flag");
    std::fs::create_dir_all(&scratch).unwrap();
    let bash = written(&["completions", "bash"], "every-flag.bash");
    let zsh = printed(&["completions", "zsh"]);
    let fish_path = written(&["completions", "fish"], "every-flag.fish");
    let fish = std::fs::read_to_string(&fish_path).unwrap();
    let page_path = written(&["man"], "every-flag.1");
    let page = std::fs::read_to_string(&page_path).unwrap();
    let text = rendered(&page_path);
    let commands = util::help_commands();
    for required in ["copy", "verify", "completions", "man"] {
        assert!(commands.iter().any(|c| c == required), "{commands:?}");
    }

    // The program's own flags, then each command's; `None` is the program.
    let pages = std::iter::once(None).chain(commands.iter().map(|c| Some(c.as_str())));
    for command in pages {
        let flags = util::help_flags(command);
        let mut words = vec!["pgcopy"];
        words.extend(command);
        words.push("-");
        let offered = util::bash_completions(&bash, &scratch, &words);
        let line = format!("{} ", words[..words.len() - 1].join(" ")) + "-";
        let fish_offered =
            util::installed("fish").then(|| util::fish_completions(&fish_path, &scratch, &line));

        let zsh_block = match command {
            None => block(&zsh, "_pgcopy() {", |l| l == "}\n"),
            Some(c) => block(&zsh, &format!("_pgcopy_{c}() {{"), |l| l == "}\n"),
        };
        let zsh_tokens: Vec<&str> = zsh_block
            .split(|c: char| "'{},[]()* \n".contains(c))
            .collect();
        let condition = match command {
            None => "__pgcopy_in ''".to_string(),
            Some(c) => format!("__pgcopy_in {c}'"),
        };
        let fish_lines: Vec<&str> = fish.lines().filter(|l| l.contains(&condition)).collect();
        let (man_block, text_block) = match command {
            None => (
                block(&page, ".SH OPTIONS", |l| l.starts_with(".SH")),
                block(&text, "OPTIONS", heading),
            ),
            Some(c) => (
                block(&page, &format!(".SS \"pgcopy {c}"), |l| {
                    l.starts_with(".SS") || l.starts_with(".SH")
                }),
                block(&text, &format!("   pgcopy {c}"), |l| {
                    l.starts_with("   pgcopy ") || heading(l)
                }),
            ),
        };

        for flag in &flags {
            let at = format!("{flag} of pgcopy {}", command.unwrap_or(""));
            assert!(
                offered.contains(flag),
                "bash does not offer {at}: {offered:?}"
            );
            if let Some(fish_offered) = &fish_offered {
                assert!(fish_offered.contains(flag), "fish does not offer {at}");
            }
            assert!(
                zsh_tokens.contains(&flag.as_str()),
                "no {at} in\n{zsh_block}"
            );
            let fish_option = match flag.strip_prefix("--") {
                Some(long) => format!(" -l {long} "),
                None => format!(" -s {} ", &flag[1..]),
            };
            assert!(
                fish_lines.iter().any(|l| l.contains(&fish_option)),
                "no {at} in the fish script"
            );
            assert!(
                man_block.contains(&format!("\\fB{}\\fR", roff(flag))),
                "no {at} in\n{man_block}"
            );
            let shown = text_block
                .split(|c: char| c.is_whitespace() || c == ',')
                .any(|word| word == flag);
            assert!(shown, "no {at} in the rendered page:\n{text_block}");
        }
    }
}

#[test]
fn each_shell_accepts_its_script() {
    let bash = written(&["completions", "bash"], "accepts.bash");
    let out = util::run(Command::new("bash").arg("-n").arg(&bash));
    assert!(out.code == 0 && out.stderr.is_empty(), "bash -n:{out:?}");
    // Loaded, it completes pgcopy with its function.
    let out = util::run(
        Command::new("bash")
            .args([
                "--norc",
                "--noprofile",
                "-c",
                "source \"$1\" && complete -p pgcopy",
            ])
            .arg("bash")
            .arg(&bash),
    );
    assert!(out.stdout.contains("-F _pgcopy pgcopy"), "{out:?}");

    if util::installed("zsh") {
        let zsh = written(&["completions", "zsh"], "accepts.zsh");
        let out = util::run(Command::new("zsh").arg("-n").arg(&zsh));
        assert!(out.code == 0 && out.stderr.is_empty(), "zsh -n:{out:?}");
        // Sourced after compinit, it registers _pgcopy for pgcopy.
        let load =
            "autoload -U compinit && compinit -u -D && source $1 && print -r -- $_comps[pgcopy]";
        let out = util::run(
            Command::new("zsh")
                .args(["-f", "-c", load, "zsh"])
                .arg(&zsh),
        );
        assert!(
            out.code == 0 && out.stderr.is_empty() && out.stdout == "_pgcopy\n",
            "{out:?}"
        );
    } else {
        eprintln!("zsh is not installed: its script is not checked");
    }

    if util::installed("fish") {
        let fish = written(&["completions", "fish"], "accepts.fish");
        let out = util::run(Command::new("fish").arg("--no-execute").arg(&fish));
        assert!(
            out.code == 0 && out.stderr.is_empty(),
            "fish --no-execute:{out:?}"
        );
    } else {
        eprintln!("fish is not installed: its script is not checked");
    }
}

#[test]
fn man_renders_the_page_without_warnings() {
    let page = written(&["man"], "renders.1");
    let mut checked = Vec::new();
    if util::installed("groff") {
        let out = util::run(
            Command::new("groff")
                .args(["-man", "-Tutf8", "-ww", "-z"])
                .arg(&page),
        );
        assert!(out.code == 0 && out.stderr.is_empty(), "groff:{out:?}");
        checked.push("groff");
    }
    if util::installed("man") {
        let out = util::run(
            Command::new("man")
                .args(["--warnings", "-l"])
                .arg(&page)
                .env("MANPAGER", "cat"),
        );
        assert!(out.code == 0 && out.stderr.is_empty(), "man:{out:?}");
        checked.push("man");
    }
    if util::installed("mandoc") {
        let out = util::run(
            Command::new("mandoc")
                .args(["-T", "lint", "-W", "warning"])
                .arg(&page),
        );
        assert!(
            out.code == 0 && out.stdout.is_empty() && out.stderr.is_empty(),
            "mandoc:{out:?}"
        );
        checked.push("mandoc");
    }
    assert!(
        !checked.is_empty(),
        "no man page checker here: apt-get install man-db groff-base (or mandoc)"
    );

    let text = rendered(&page);
    let headings: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with(char::is_uppercase))
        .collect();
    for heading in [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "OPTIONS",
        "COMMANDS",
        "EXIT STATUS",
        "ENVIRONMENT",
        "FILES",
        "SEE ALSO",
    ] {
        assert!(headings.contains(&heading), "no {heading} in {headings:?}");
    }
    for code in ["0", "1", "2", "3", "130"] {
        let exit_status = block(&text, "EXIT STATUS", heading);
        assert!(
            exit_status
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{code} "))),
            "no exit code {code} in\n{exit_status}"
        );
    }
    let environment = block(&text, "ENVIRONMENT", heading);
    for variable in [
        "PGCOPY_SOURCE",
        "PGCOPY_DEST",
        "PGCOPY_MASK_KEY",
        "PGHOST",
        "PGSSLMODE",
    ] {
        assert!(
            environment.contains(variable),
            "no {variable} in\n{environment}"
        );
    }
    assert!(text.contains("~/.local/state/pgcopy"), "{text}");
}

#[test]
fn options_complete_the_values_and_file_names_their_help_names() {
    let dir = util::scratch_dir("completions-values");
    std::fs::create_dir_all(dir.join("states")).unwrap();
    std::fs::write(dir.join("rules.toml"), "").unwrap();
    let bash = written(&["completions", "bash"], "values.bash");
    let fish = written(&["completions", "fish"], "values.fish");
    let commands = util::help_commands();

    let cases: &[(&[&str], &[&str])] = &[
        (
            &["pgcopy", "copy", "--fk-mode", ""],
            &["auto", "replica", "drop", "none"],
        ),
        (
            &["pgcopy", "copy", "--indexes", ""],
            &["keep", "rebuild", "auto"],
        ),
        (&["pgcopy", "copy", "--rules", "r"], &["rules.toml"]),
        (&["pgcopy", "verify", "--source-file", "r"], &["rules.toml"]),
        (&["pgcopy", "cutover", "--dest-file", "r"], &["rules.toml"]),
        (&["pgcopy", "recover", "--state-dir", "s"], &["states"]),
        (&["pgcopy", "copy", "--source", ""], &[]),
        (&["pgcopy", "completions", "z"], &["zsh"]),
    ];
    for (words, want) in cases {
        let mut got = util::bash_completions(&bash, &dir, words);
        got.sort();
        let mut want = want.to_vec();
        want.sort();
        assert_eq!(got, want, "bash: {words:?}");
        if util::installed("fish") {
            let mut got = util::fish_completions(&fish, &dir, &words.join(" "));
            got.sort();
            // fish writes a directory with its slash.
            let want: Vec<String> = want
                .iter()
                .map(|w| match *w {
                    "states" => "states/".to_string(),
                    w => w.to_string(),
                })
                .collect();
            assert_eq!(got, want, "fish: {words:?}");
        }
    }

    // The commands after pgcopy, and after `pgcopy help`.
    let got = util::bash_completions(&bash, &dir, &["pgcopy", ""]);
    for command in &commands {
        assert!(got.contains(command), "bash: {command} not in {got:?}");
    }
    let got = util::bash_completions(&bash, &dir, &["pgcopy", "help", ""]);
    assert_eq!(&got, &commands);
    let got = util::bash_completions(&bash, &dir, &["pgcopy", "completions", ""]);
    for shell in ["bash", "zsh", "fish"] {
        assert!(got.iter().any(|g| g == shell), "{got:?}");
    }
    if util::installed("fish") {
        let got = util::fish_completions(&fish, &dir, "pgcopy ");
        for command in &commands {
            assert!(got.contains(command), "fish: {command} not in {got:?}");
        }
    }
}

#[test]
fn completions_for_a_shell_without_a_script_is_a_usage_error() {
    let out = util::run(util::pgcopy().args(["completions", "tcsh"]));
    assert_exit!(out, exit::USAGE);
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(out.stderr.contains("give bash, zsh or fish"), "{out:?}");
}
