//! pgcopy documented from the definitions `--help` comes from: argh's help of the program and
//! of every command it lists, read into one `Manual` (`read`), written out as a completion
//! script for bash, zsh or fish (`bash`, `zsh`, `fish`) or as a manual page (`roff`). There
//! is no second list of commands or flags: a flag added to an argh struct appears in all of
//! them, grouped as `pgcopy help COMMAND` groups it, its argument named as help names it.

mod bash;
mod fish;
mod read;
mod roff;
mod zsh;

use super::args;
use super::config::Shell;

/// The completion script for `shell`.
pub(crate) fn completions(shell: Shell) -> String {
    let manual = Manual::read();
    match shell {
        Shell::Bash => bash::script(&manual),
        Shell::Zsh => zsh::script(&manual),
        Shell::Fish => fish::script(&manual),
    }
}

/// The manual page, in roff for section 1.
pub(crate) fn man_page() -> String {
    roff::page(&Manual::read())
}

/// Everything help says: the program's page and each command's, in help's order.
pub(crate) struct Manual {
    pub(crate) program: Page,
    pub(crate) commands: Vec<Page>,
}

impl Manual {
    /// argh's help of the program and of every command it lists.
    pub(crate) fn read() -> Manual {
        let program = read::page("pgcopy", &args::help(None));
        let commands = program
            .commands
            .iter()
            .map(|(name, _)| read::page(name, &args::help(Some(name))))
            .collect();
        Manual { program, commands }
    }
}

/// What `pgcopy help` or `pgcopy help COMMAND` says.
#[derive(Debug, Default)]
pub(crate) struct Page {
    /// `pgcopy`, or the command's name.
    pub(crate) name: String,
    /// The usage line, without `Usage: `.
    pub(crate) usage: String,
    pub(crate) description: String,
    pub(crate) positionals: Vec<Positional>,
    /// The options, in help's groups and order.
    pub(crate) groups: Vec<Group>,
    /// The commands the program's page lists, each with what it does.
    pub(crate) commands: Vec<(String, String)>,
    pub(crate) notes: Vec<String>,
    /// Each exit code with what it means.
    pub(crate) exit_codes: Vec<(String, String)>,
}

impl Page {
    /// Every option, group after group.
    pub(crate) fn flags(&self) -> impl Iterator<Item = &Flag> {
        self.groups.iter().flat_map(|group| &group.flags)
    }
}

/// Options under one heading of help ("Connections", "Output", …).
#[derive(Debug)]
pub(crate) struct Group {
    pub(crate) heading: String,
    pub(crate) flags: Vec<Flag>,
}

/// One option as help shows it.
#[derive(Debug, Clone)]
pub(crate) struct Flag {
    /// Its names, as help lists them: `-q`, `--quiet`, or a word such as `help`.
    pub(crate) names: Vec<String>,
    /// The argument it takes, if any.
    pub(crate) argument: Option<Argument>,
    pub(crate) description: String,
}

impl Flag {
    /// `-q` and `--quiet`: the names that start with a dash.
    pub(crate) fn dashed(&self) -> impl Iterator<Item = &str> {
        self.names
            .iter()
            .map(String::as_str)
            .filter(|n| n.starts_with('-'))
    }

    /// `--quiet`.
    pub(crate) fn long(&self) -> Option<&str> {
        self.dashed().find(|n| n.starts_with("--"))
    }

    /// `q` of `-q`.
    pub(crate) fn short(&self) -> Option<char> {
        let short = self.dashed().find(|n| !n.starts_with("--"))?;
        short.strip_prefix('-')?.chars().next()
    }

    /// Names without a dash: `help` of `-h, --help, help`.
    pub(crate) fn words(&self) -> impl Iterator<Item = &str> {
        self.names
            .iter()
            .map(String::as_str)
            .filter(|n| !n.starts_with('-'))
    }
}

/// A positional argument as help shows it.
#[derive(Debug)]
pub(crate) struct Positional {
    pub(crate) argument: Argument,
    pub(crate) description: String,
}

/// The argument of an option, or a positional one.
#[derive(Debug, Clone)]
pub(crate) struct Argument {
    /// As help names it: `N` of `--parallel N`.
    pub(crate) name: String,
    /// Whether the option may be given more than once (`<LIST...>` in the usage line).
    pub(crate) repeats: bool,
    pub(crate) completes: Completes,
}

/// What an argument completes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Completes {
    /// Text of the user's: nothing to offer.
    Text,
    /// One of the values its description names (`auto, replica, drop or none`).
    Words(Vec<String>),
    /// A file name (an argument named `PATH` or `FILE`).
    Files,
    /// A directory name (an argument named `DIR`).
    Directories,
}

/// The first clause of a description, for the one line a shell shows beside a completion:
/// without what it says in parentheses, up to the first `; ` or `: `, without a final period.
pub(crate) fn summary(description: &str) -> String {
    let plain = outside_parentheses(description)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace(" ,", ",")
        .replace(" ;", ";")
        .replace(" :", ":")
        .replace(" .", ".");
    let end = ["; ", ": "]
        .iter()
        .filter_map(|stop| plain.find(stop))
        .min()
        .unwrap_or(plain.len());
    plain[..end].trim_end_matches('.').to_string()
}

/// A text without what it says in parentheses.
fn outside_parentheses(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut depth = 0usize;
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            c if depth == 0 => plain.push(c),
            _ => {}
        }
    }
    plain
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_command_help_lists() {
        let manual = Manual::read();
        let names: Vec<&str> = manual.commands.iter().map(|p| p.name.as_str()).collect();
        for name in ["copy", "list", "verify", "completions", "man", "version"] {
            assert!(names.contains(&name), "{names:?}");
        }
        let copy = &manual.commands[0];
        assert_eq!(copy.name, "copy");
        assert!(copy.usage.starts_with("pgcopy copy [--source <CONN>]"));
        let headings: Vec<&str> = copy.groups.iter().map(|g| g.heading.as_str()).collect();
        assert_eq!(
            headings,
            [
                "Connections",
                "What to copy",
                "How it runs",
                "The destination",
                "Output"
            ]
        );
        assert!(manual
            .program
            .exit_codes
            .iter()
            .any(|(code, _)| code == "130"));
    }

    #[test]
    fn the_shells_help_names_are_the_ones_completions_takes() {
        let manual = Manual::read();
        let page = manual.commands.iter().find(|p| p.name == "completions");
        let shells = &page.expect("a completions command").positionals[0];
        let names: Vec<String> = Shell::ALL.iter().map(|s| s.name().to_string()).collect();
        assert_eq!(shells.argument.completes, Completes::Words(names));
    }

    #[test]
    fn summarises_a_description_by_its_first_clause() {
        assert_eq!(
            summary("source connection: URL or key=value string (default: $X)"),
            "source connection"
        );
        assert_eq!(summary("errors only; no progress"), "errors only");
        assert_eq!(summary("Print the version."), "Print the version");
        assert_eq!(
            summary("Say whether it can be followed (copy --follow), and what to do."),
            "Say whether it can be followed, and what to do"
        );
        assert_eq!(
            summary("End a `copy --follow` (run once …): mark the end"),
            "End a `copy --follow`"
        );
    }
}
