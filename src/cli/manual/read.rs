//! argh's help text read into a `Page`: the usage line, the description, and the sections
//! argh writes (`Positional Arguments`, `Options`, `Commands`, `Notes`, `Error codes`), with
//! each option's argument named from the usage line and the options put in help's groups
//! (`help::groups`). What an argument completes to is read from help too: the values its
//! description lists, or files and directories for arguments named so.

use super::{outside_parentheses, Argument, Completes, Flag, Group, Page, Positional};
use crate::cli::help;

/// The sections argh writes after the description.
const SECTIONS: &[&str] = &[
    "Positional Arguments",
    "Options",
    "Commands",
    "Notes",
    "Examples",
    "Error codes",
];

/// The page of the program (`name` "pgcopy") or of a command, from argh's help of it.
pub(crate) fn page(name: &str, help_text: &str) -> Page {
    let mut page = Page {
        name: name.to_string(),
        ..Page::default()
    };
    // Each section's entries: an entry's first line, then the lines continuing it.
    let mut section: Option<&str> = None;
    let mut entries: Vec<(&str, String, Vec<&str>)> = Vec::new();
    let mut description: Vec<&str> = Vec::new();
    for line in help_text.lines() {
        if let Some(usage) = line.strip_prefix("Usage: ") {
            page.usage = usage.trim().to_string();
        } else if let Some(heading) = line.strip_suffix(':').filter(|h| SECTIONS.contains(h)) {
            section = Some(heading);
        } else if let Some(section) = section {
            if line.starts_with("  ") && !line.starts_with("   ") {
                entries.push((section, line.trim().to_string(), Vec::new()));
            } else if let Some((_, _, more)) = entries.last_mut().filter(|_| !line.is_empty()) {
                more.push(line.trim());
            }
        } else if !line.trim().is_empty() {
            description.push(line.trim());
        }
    }
    page.description = description.join(" ");
    let names = help::argument_names(help_text);
    let mut flags = Vec::new();
    for (section, first, more) in entries {
        let joined = std::iter::once(first.as_str())
            .chain(more)
            .collect::<Vec<_>>()
            .join(" ");
        match section {
            "Options" => flags.push(flag(&joined, &names, &page.usage)),
            "Positional Arguments" => {
                let (name, text) = split_first(&joined);
                page.positionals.push(Positional {
                    argument: argument(name, text, false),
                    description: text.to_string(),
                });
            }
            "Commands" => {
                let (name, text) = split_first(&joined);
                page.commands.push((name.to_string(), text.to_string()));
            }
            "Error codes" => {
                let (code, text) = split_first(&joined);
                page.exit_codes.push((code.to_string(), text.to_string()));
            }
            _ => page.notes.push(joined),
        }
    }
    page.groups = grouped(flags);
    page
}

/// The first word of an entry, and the rest.
fn split_first(text: &str) -> (&str, &str) {
    let (first, rest) = text.split_once(' ').unwrap_or((text, ""));
    (first, rest.trim())
}

/// An option from its entry: argh joins its names with ", " (`-h, --help, help`) and starts
/// the description after the last of them, one space or more away.
fn flag(joined: &str, names: &[(String, String)], usage: &str) -> Flag {
    let mut listed = Vec::new();
    let mut rest = joined;
    loop {
        let (token, after) = rest.split_once(' ').unwrap_or((rest, ""));
        rest = after.trim_start();
        match token.strip_suffix(',') {
            Some(name) => listed.push(name.to_string()),
            None => {
                listed.push(token.to_string());
                break;
            }
        }
    }
    let description = rest.trim().to_string();
    let argument = listed.iter().find_map(|name| {
        let (_, arg) = names.iter().find(|(flag, _)| flag == name)?;
        let repeats = usage.contains(&format!("{name} <{arg}...>"));
        Some(argument(arg, &description, repeats))
    });
    Flag {
        names: listed,
        argument,
        description,
    }
}

/// An argument named `name` of an option or position described so.
fn argument(name: &str, description: &str, repeats: bool) -> Argument {
    let values = fixed_values(description);
    let completes = if !values.is_empty() {
        Completes::Words(values)
    } else {
        match name {
            "PATH" | "FILE" => Completes::Files,
            "DIR" => Completes::Directories,
            _ => Completes::Text,
        }
    };
    Argument {
        name: name.to_string(),
        repeats,
        completes,
    }
}

/// The values a description names after its last colon, outside parentheses, when that is a
/// list of single lowercase words: `…the load's way: auto (default: …), replica, drop or
/// none` gives auto, replica, drop, none.
fn fixed_values(description: &str) -> Vec<String> {
    let plain = outside_parentheses(description);
    let Some((_, list)) = plain.rsplit_once(':') else {
        return Vec::new();
    };
    let values: Vec<&str> = list
        .split(',')
        .flat_map(|part| part.split(" or "))
        .map(|value| value.trim().trim_end_matches('.'))
        .collect();
    let word = |value: &&str| {
        !value.is_empty()
            && value
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    if values.len() >= 2 && values.iter().all(word) {
        values.into_iter().map(str::to_string).collect()
    } else {
        Vec::new()
    }
}

/// The options in help's groups (`help::groups`), each in its order there.
fn grouped(flags: Vec<Flag>) -> Vec<Group> {
    let longs: Vec<&str> = flags.iter().map(|f| f.long().unwrap_or("")).collect();
    help::groups(&longs)
        .into_iter()
        .map(|(heading, members)| Group {
            heading: heading.to_string(),
            flags: members.into_iter().map(|i| flags[i].clone()).collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::fk_mode::FkMode;
    use crate::schema::indexes::IndexMode;

    const HELP: &str = "Usage: pgcopy copy [--source <CONN>] [--include-tables <LIST...>] [--state-dir <DIR>] [--fk-mode <MODE>] [--enable-triggers] [-q]

Replace the data of the selected destination tables with the
source's.

Options:
  --source          source connection: URL or key=value string (default:
                    $PGCOPY_SOURCE)
  --include-tables  comma-separated glob patterns (* and ?) of tables to copy
  --state-dir       directory for the state files
  --fk-mode         how foreign keys are kept out of the load's way: auto
                    (default: replica if the role may use it, else drop),
                    replica, drop or none
  --enable-triggers let the destination's user triggers fire
  -q, --quiet       errors only: no progress, no log lines below errors
  -h, --help, help  display usage information

Notes:
  The destination schema must already exist.

Error codes:
  0 success: every selected table was copied
  130 interrupted
";

    #[test]
    fn reads_a_command_help_into_its_parts() {
        let page = page("copy", HELP);
        assert_eq!(
            page.description,
            "Replace the data of the selected destination tables with the source's."
        );
        assert_eq!(page.notes, ["The destination schema must already exist."]);
        assert_eq!(page.exit_codes[1], ("130".into(), "interrupted".into()));
        let groups: Vec<(&str, Vec<&str>)> = page
            .groups
            .iter()
            .map(|g| {
                let longs = g.flags.iter().map(|f| f.long().unwrap_or("")).collect();
                (g.heading.as_str(), longs)
            })
            .collect();
        assert_eq!(
            groups,
            [
                ("Connections", vec!["--source"]),
                ("What to copy", vec!["--include-tables"]),
                ("How it runs", vec!["--state-dir"]),
                ("The destination", vec!["--fk-mode", "--enable-triggers"]),
                ("Output", vec!["--quiet", "--help"]),
            ]
        );
        let flags: Vec<&Flag> = page.flags().collect();
        let source = flags[0].argument.as_ref().unwrap();
        assert_eq!(
            (source.name.as_str(), source.completes.clone()),
            ("CONN", Completes::Text)
        );
        assert!(flags[1].argument.as_ref().unwrap().repeats);
        assert!(!source.repeats);
        assert_eq!(
            flags[2].argument.as_ref().unwrap().completes,
            Completes::Directories
        );
        assert_eq!(
            flags[3].argument.as_ref().unwrap().completes,
            Completes::Words(vec![
                "auto".into(),
                "replica".into(),
                "drop".into(),
                "none".into()
            ])
        );
        assert_eq!(
            flags[4].description,
            "let the destination's user triggers fire"
        );
        assert_eq!(flags[5].names, ["-q", "--quiet"]);
        assert_eq!(flags[5].short(), Some('q'));
        assert!(flags[5].argument.is_none());
        assert_eq!(flags[6].names, ["-h", "--help", "help"]);
        assert_eq!(flags[6].words().collect::<Vec<_>>(), ["help"]);
    }

    #[test]
    fn lists_values_only_where_a_description_names_single_words() {
        assert_eq!(
            fixed_values("the shell: bash, zsh or fish"),
            ["bash", "zsh", "fish"]
        );
        assert!(fixed_values("source connection: URL or key=value string").is_empty());
        assert!(fixed_values("errors only: no progress, no log lines").is_empty());
        assert!(fixed_values("copy every table (default: a, b or c)").is_empty());
        assert!(fixed_values("tables copied at once").is_empty());
    }

    /// The values completion offers for `--fk-mode` and `--indexes` come from their help; each
    /// must be one the configuration accepts, and every mode must be offered.
    #[test]
    fn the_modes_help_names_are_the_ones_the_configuration_takes() {
        let manual = super::super::Manual::read();
        let copy = manual.commands.iter().find(|p| p.name == "copy").unwrap();
        let values = |long: &str| match copy.flags().find(|f| f.long() == Some(long)) {
            Some(Flag {
                argument:
                    Some(Argument {
                        completes: Completes::Words(values),
                        ..
                    }),
                ..
            }) => values.clone(),
            other => panic!("{long}: {other:?}"),
        };
        let fk_modes = values("--fk-mode");
        assert_eq!(fk_modes, ["auto", "replica", "drop", "none"]);
        for mode in &fk_modes {
            mode.parse::<FkMode>().unwrap();
        }
        let index_modes = values("--indexes");
        assert_eq!(index_modes, ["keep", "rebuild", "auto"]);
        for mode in &index_modes {
            mode.parse::<IndexMode>().unwrap();
        }
    }
}
